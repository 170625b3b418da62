"""Several revisions at one steady load, long enough for the journal to roll and recycle its segments.

    .venv/bin/python -m bench.steady before=f3404e2 after=64b0e87 [--rate 8000] [--seconds 45] [--rounds 3]

`bench/compare.py` measures peak throughput in 8-second runs: too short for a worker's journal to
fill a 64 MiB segment, release it and start another (about 4 s each at 8,000 records/s over two
workers), and a closed loop says little about latency. Here each variant (`label=rev`, as in
`bench.compare`) gets two seconds of warm-up, then `--seconds` of open-loop load at `--rate`
records/s (73-record bodies, 16 hey clients, `bench.load.hey`). Rounds alternate the variants'
order, so neither always follows the other's clean-up. Per run: records/s achieved, CPU and page
faults per record (every process of the receiver), request latency, the share of journal writes
(write + fsync, from `tailscribe_storage_write_seconds`) over 5 and 25 ms, and how the connections
ended up split between the two workers a second before the end (`Receiver.connection_split`).
"""

from __future__ import annotations

import argparse
import re
import tempfile
import threading
from pathlib import Path

import httpx

from bench.compare import unpack
from bench.load import Receiver, hey, tailscribe
from bench.run import warm_up
from bench.workload import body, records

CLIENTS = 16
BUCKET = re.compile(r'tailscribe_storage_write_seconds_bucket\{le="([^"]+)"\} (\S+)')


def journal_writes(receiver: Receiver) -> dict[str, float]:
    """The journal write histogram's cumulative bucket counts, by upper bound ("+Inf" is every write)."""
    text = httpx.get(receiver.url.replace("/v1/tailscale/network", "/metrics")).text
    return {bound: float(count) for bound, count in BUCKET.findall(text)}


def run(directory: Path, rate: float, seconds: int) -> str:
    receiver = tailscribe(2)
    receiver.cwd = directory
    receiver.start()
    try:
        load = body(records("network", 73))
        warm_up(receiver, load)
        before, cpu, faults = journal_writes(receiver), receiver.cpu_seconds(), receiver.minor_faults()
        spread: list[str] = []  # read a second before the end, while the clients are still connected
        watch = threading.Timer(seconds - 1, lambda: spread.append(receiver.connection_split()))
        watch.start()
        result = hey(receiver.url, load.data, encoding=None, seconds=seconds, clients=CLIENTS, rate=rate / 73 / CLIENTS)
        watch.join()
        cpu, faults = receiver.cpu_seconds() - cpu, receiver.minor_faults() - faults
        after = journal_writes(receiver)
        writes = after["+Inf"] - before["+Inf"]

        def over(bound: str) -> float:
            return (writes - (after[bound] - before[bound])) / writes * 100

        done = result.requests * 73
        return (
            f"{done / result.seconds:,.0f} | {cpu / done * 1e6:.0f} | {faults / done:.2f} "
            f"| {result.p50_ms:.1f} | {result.p99_ms:.1f} | {result.max_ms:.0f} "
            f"| {over('0.005'):.1f}% | {over('0.025'):.1f}% | {spread[0]} |"
        )
    finally:
        receiver.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="label=rev, as in bench.compare")
    parser.add_argument("--rate", type=float, default=8000, help="records/s offered")
    parser.add_argument("--seconds", type=int, default=45)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        "| round | variant | records/s | CPU µs/record | page faults/record | p50 ms | p99 ms | max ms "
        "| journal writes > 5 ms | > 25 ms | connections per worker |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    with tempfile.TemporaryDirectory(prefix="tailscribe-steady-") as root:
        unpacked = [unpack(spec, Path(root)) for spec in args.variants]
        for round_ in range(args.rounds):
            for label, directory in unpacked if round_ % 2 == 0 else unpacked[::-1]:
                print(f"| {round_ + 1} | {label} | {run(directory, args.rate, args.seconds)}", flush=True)


if __name__ == "__main__":
    main()
