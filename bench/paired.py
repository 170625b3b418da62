"""Two receivers side by side, at the same time, under the same fixed load: CPU a record of each.

    .venv/bin/python -m bench.paired before=e18e73c after=HEAD [--rate 7000] [--rounds 4] [--seconds 20]
    .venv/bin/python -m bench.paired base=HEAD 'trim=HEAD@MALLOC_TRIM_THRESHOLD_=8388608'

Variants are written as for `bench.compare` (`label=rev[+rev2:path,path]`), optionally followed by
`@VAR=value,VAR=value`: environment variables for that receiver's processes.

Why: this machine's speed drifts by ±20% over minutes, so receivers measured one after the other, even
interleaved (`bench.compare`), differ by more between rounds than a change of a few percent moves them.
Two receivers loaded at the same time go through the same slow and fast spells together. Each gets
`--rate` records a second (73-record bodies, open loop: `bench.load.hey`, 8 clients), a rate both
can keep up with, and the figure is each one's CPU a record over the same seconds. In the first
use, four rounds of one receiver against itself with other malloc settings read 82.0/82.7,
82.2/82.1, 81.9/82.3 and 91.0/91.5 µs a record while the machine moved from 82 to 91. The receivers
start in alternating order each round. What this cannot show is peak throughput, where the two would
take CPU from each other: that is `bench.compare`'s and `bench.run`'s job.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.compare import unpack
from bench.load import LoadResult, Receiver, hey, tailscribe
from bench.run import warm_up
from bench.workload import body, records

RECORDS = 73
CLIENTS = 8


@dataclass(frozen=True)
class Variant:
    label: str
    directory: Path
    env: dict[str, str]

    def receiver(self) -> Receiver:
        receiver = tailscribe(2)
        receiver.cwd = self.directory
        receiver.env = self.env
        return receiver


def parse(spec: str, root: Path) -> Variant:
    """`label=rev[+rev2:path,path][@VAR=value,...]` → the variant, its `app/` unpacked under `root`."""
    source, _, variables = spec.partition("@")
    label, directory = unpack(source, root)
    env = dict(variable.split("=", 1) for variable in variables.split(",")) if variables else {}
    return Variant(label, directory, env)


@dataclass(frozen=True)
class Measured:
    cpu_us: float
    faults: float
    load: LoadResult


def paired_round(variants: list[Variant], rate: float, seconds: int) -> dict[str, Measured]:
    """Start every variant's receiver, warm each up, then load all of them at once for `seconds`."""
    load = body(records("network", RECORDS))
    receivers = [variant.receiver() for variant in variants]
    try:
        for receiver in receivers:
            receiver.start()
        for receiver in receivers:
            warm_up(receiver, load)
        before = [(receiver.cpu_seconds(), receiver.minor_faults()) for receiver in receivers]
        results: dict[int, LoadResult] = {}

        def drive(index: int) -> None:
            per_client = rate / RECORDS / CLIENTS
            results[index] = hey(
                receivers[index].url, load.data, encoding=None, seconds=seconds, clients=CLIENTS, rate=per_client
            )

        threads = [threading.Thread(target=drive, args=(index,)) for index in range(len(receivers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(1.5)  # let the sinks drain what was acknowledged: their CPU is part of the cost
        measured = {}
        for index, (variant, receiver) in enumerate(zip(variants, receivers, strict=True)):
            done = results[index].requests * RECORDS
            cpu, faults = receiver.cpu_seconds() - before[index][0], receiver.minor_faults() - before[index][1]
            measured[variant.label] = Measured(cpu / done * 1e6, faults / done, results[index])
        return measured
    finally:
        for receiver in receivers:
            receiver.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs=2, help="label=rev[+rev2:path,path][@VAR=value,...]")
    parser.add_argument("--rate", type=float, default=7000, help="records/s posted to each receiver")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    print("| round | variant | records/s | CPU µs/record | page faults/record | p50 ms | p99 ms |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    changes = []
    with tempfile.TemporaryDirectory(prefix="tailscribe-paired-") as root:
        variants = [parse(spec, Path(root)) for spec in args.variants]
        for round_ in range(args.rounds):
            order = variants if round_ % 2 == 0 else variants[::-1]
            measured = paired_round(order, args.rate, args.seconds)
            for variant in variants:
                m = measured[variant.label]
                done = m.load.requests * RECORDS / m.load.seconds
                print(
                    f"| {round_ + 1} | {variant.label} | {done:,.0f} | {m.cpu_us:.1f} | {m.faults:.2f} "
                    f"| {m.load.p50_ms:.1f} | {m.load.p99_ms:.1f} |",
                    flush=True,
                )
            first, second = (measured[variant.label].cpu_us for variant in variants)
            changes.append((second - first) / first)
    low, high = min(changes), max(changes)
    print(
        f"\n{variants[1].label} against {variants[0].label}: CPU a record {statistics.median(changes):+.1%} "
        f"(median of {args.rounds} rounds; from {low:+.1%} to {high:+.1%})"
    )


if __name__ == "__main__":
    main()
