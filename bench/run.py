"""The benchmark: tailscribe against the null floor, the naive receiver and the orjson ceiling, in one run.

    .venv/bin/python -m bench.run [--seconds 8] [--output bench/RESULTS.md]   (or `make bench`)

Needs `wrk` and `hey` (Debian packages; `make bench` installs them). Everything runs on this
machine against 127.0.0.1; each load run is bounded by `--seconds`. Prints markdown tables and
writes them, with the machine and the date, to `--output`.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict

from bench.inprocess import measure
from bench.load import LoadResult, Receiver, hey, tailscribe, uvicorn_app, wrk
from bench.workload import Body, body, records

CONNECTIONS = {1: 16, 73: 16, 3375: 4}
"""Concurrent clients per body size: enough to saturate two cores without queueing minutes of work."""


def receivers(workers: int) -> dict[str, Callable[[], Receiver]]:
    return {
        "tailscribe": lambda: tailscribe(workers),
        "null": lambda: uvicorn_app("null receiver", "bench.null:app", workers),
        "naive": lambda: uvicorn_app("naive receiver", "bench.naive:app", workers),
    }


WARM_UP_SECONDS = 2


def warm_up(receiver: Receiver, load: Body) -> None:
    """The same load for a few seconds before a fresh receiver is measured: its first requests pay for
    one-time work (the first journal segment and archive files, thread pools, lazy imports), and one
    run measured a fresh tailscribe at 9,332 records/s against 13,677 a minute later."""
    wrk(receiver.url, load.data, encoding=load.encoding, seconds=WARM_UP_SECONDS, connections=CONNECTIONS[load.records])


class Peak(TypedDict):
    """One closed-loop run: records/s, MB/s, latency in ms, peak RSS in MB, CPU s per 10k records."""

    rps: float
    mbps: float
    p50: float
    p99: float
    max: float
    errors: float
    rss: float
    cpu_10k: float
    split: str
    """`Receiver.connection_split` halfway through the run."""


def run_peak(receiver: Receiver, load: Body, seconds: int) -> Peak:
    """Peak closed-loop load against a started receiver: throughput, latency, CPU and memory, and how
    its workers shared the connections halfway through."""
    cpu_before = receiver.cpu_seconds()
    split: list[str] = []
    watch = threading.Timer(seconds / 2, lambda: split.append(receiver.connection_split()))
    watch.start()
    result: LoadResult = wrk(
        receiver.url, load.data, encoding=load.encoding, seconds=seconds, connections=CONNECTIONS[load.records]
    )
    watch.join()
    time.sleep(1.0)  # let sinks drain what was acknowledged: their CPU is part of the cost
    records = result.requests * load.records
    cpu = receiver.cpu_seconds() - cpu_before
    return {
        "split": split[0] if split else "?",
        "rps": records / result.seconds,
        "mbps": result.requests * load.raw_bytes / result.seconds / 1e6,
        "p50": result.p50_ms,
        "p99": result.p99_ms,
        "max": result.max_ms,
        "errors": result.errors,
        "rss": receiver.peak_rss_mb(),
        "cpu_10k": cpu / records * 10_000 if records else float("nan"),
    }


def big_body_memory(receiver: Receiver, seconds: int) -> tuple[float, float]:
    """(body MB, peak RSS MB per process) while 16 clients post ~11 MB bodies, the largest Tailscale
    was seen to send."""
    big = body(records("network", 4900))
    hey(receiver.url, big.data, encoding=None, seconds=seconds, clients=16, rate=100)
    return len(big.data) / 1e6, receiver.peak_rss_mb()


def row(name: str, shape: str, m: Peak) -> str:
    return (
        f"| {name} | {shape} | {m['rps']:,.0f} | {m['mbps']:.1f} | {m['p50']:.1f} | {m['p99']:.1f} | {m['max']:.0f} "
        f"| {m['rss']:.0f} | {m['cpu_10k']:.2f} | {m['errors']:.0f} | {m['split']} |"
    )


HEADER = (
    "| receiver | body | records/s | MB/s | p50 ms | p99 ms | max ms | peak RSS MB/process "
    "| CPU s / 10k records | errors | connections per worker |\n"
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args()
    network = {count: records("network", count) for count in (1, 73, 3375)}
    lines: list[str] = []

    def emit(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    emit(f"# Benchmark results\n\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}\n")
    emit("Network records (~2.3 KB each, bench/workload.py), 2 workers each; tailscribe answers once durable.\n")
    emit(HEADER)
    peaks: dict[tuple[str, int, str], Peak] = {}
    for name, make in receivers(2).items():
        receiver = make()
        receiver.start()
        try:
            warm_up(receiver, body(network[73], ndjson=name == "naive"))
            for count in (73, 3375):
                for compress in (False, True):
                    if name == "naive" and compress:
                        continue  # the naive receiver reads plain NDJSON only
                    load = body(network[count], ndjson=name == "naive", compress=compress)
                    shape = f"{count} rec, {'gzip' if compress else 'plain'}"
                    peaks[(name, count, shape)] = measured = run_peak(receiver, load, args.seconds)
                    emit(row(receiver.name, shape, measured))
        finally:
            receiver.stop()

    emit("\n## How cost grows\n")
    emit(HEADER)
    for workers, pinned in ((1, False), (2, False), (2, True)):
        receiver = tailscribe(workers, pinned=pinned)
        receiver.start()
        try:
            warm_up(receiver, body(network[73]))
            for count in (1, 73, 3375) if (workers, pinned) == (2, False) else (73,):
                measured = run_peak(receiver, body(network[count]), args.seconds)
                emit(row(receiver.name, f"{count} rec, plain", measured))
        finally:
            receiver.stop()

    emit("\n## Latency at 70% of peak (open loop: one rate-limited hey per client, starts spread over the period)\n")
    emit("| receiver | body | peak just before, rec/s | target rec/s | achieved rec/s | p50 ms | p99 ms | max ms |")
    emit("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    receiver = tailscribe(2)
    receiver.start()
    try:
        warm_up(receiver, body(network[73]))
        for count in (73, 3375):
            # The peak again, on this receiver, just before: the first table's was measured minutes
            # earlier, and this machine's speed drifts over minutes. In the runs of 2026-11-21 22:44 and
            # 2026-11-22 08:08 and 09:07 the receiver fell 3-21% short of 70% of that peak, so the phase
            # meant to be at 70% was an overload, and requests queued.
            peak = run_peak(receiver, body(network[count]), args.seconds)["rps"]
            clients = CONNECTIONS[count]
            rate = 0.7 * peak / count / clients
            # Long enough for a percentile to mean something. A 3,375-record body goes out about once a
            # second. 73-record bodies go out ~170 times a second, but slow requests come in clusters:
            # a slow fdatasync holds every request of its group commit, and a worker that falls behind
            # keeps every request queued on it waiting, up to 16 at once. In 8 s (1,350 requests) 14 are
            # past the p99, so it measured whether one such moment fell in the window; in 30 s it takes four.
            seconds = max(args.seconds, 30) if count < 1000 else max(args.seconds, 40)
            result = hey(
                receiver.url, body(network[count]).data, encoding=None, seconds=seconds, clients=clients, rate=rate
            )
            achieved = result.requests * count / result.seconds
            latency = f"{result.p50_ms:.1f} | {result.p99_ms:.1f} | {result.max_ms:.0f}"
            rates = f"{peak:,.0f} | {0.7 * peak:,.0f} | {achieved:,.0f}"
            emit(f"| tailscribe (2 workers) | {count} rec | {rates} | {latency} |")
        size, rss = big_body_memory(receiver, args.seconds)
        emit(f"\nPeak RSS per process while 16 clients post {size:.1f} MB bodies: {rss:.0f} MB\n")
    finally:
        receiver.stop()

    emit("## In process, one core (no HTTP, no disk)\n")
    emit("| body | tailscribe pipeline rec/s | µs/record | orjson ceiling rec/s | pipeline / ceiling |")
    emit("| --- | ---: | ---: | ---: | ---: |")
    for count in (73, 3375):
        costs = measure("network", count, repeat=max(5, 20_000 // count))
        rates = f"{costs['pipeline_rps']:,.0f} | {costs['us_per_record']:.1f} | {costs['ceiling_rps']:,.0f}"
        emit(f"| {count} network rec | {rates} | {costs['ratio']:.0%} |")

    ts, naive = peaks[("tailscribe", 73, "73 rec, plain")], peaks[("naive", 73, "73 rec, plain")]
    # uvicorn's workers share one listening socket, so the naive receiver's split varies from run to run:
    # with all 16 connections on one worker it reached about half of what it did with 8/8.
    emit(
        f"\ntailscribe / naive, 73 records per request: {ts['rps'] / naive['rps']:.2f}x "
        f"(connections per worker: tailscribe {ts['split']}, naive {naive['split']})\n"
    )
    args.output.write_text("\n".join(lines) + "\n")


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return (
        f"{os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}, {wrk_version.strip()}, "
        f"load average {load:.2f} at start; the load generator shares the machine"
    )


if __name__ == "__main__":
    main()
