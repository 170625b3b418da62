"""Where a record's CPU goes end to end, and what that leaves for the 2×-naive target.

    .venv/bin/python -m bench.stages [--rounds 2] [--seconds 10]

Four receivers at peak (73-record plain bodies, 2 workers, wrk, 16 clients), interleaved round by
round since this machine's speed drifts by ±20% over minutes; medians shown:

- tailscribe as shipped;
- tailscribe with its pipeline precomputed: each worker prepares a body the first time it sees it
  and answers every later copy with that same batch (`precompute_pipeline`, loaded into the
  receiver's processes by `bench/probe/sitecustomize.py`). Everything else is as shipped: HTTP,
  authentication, the spool, the hand-off to a worker thread, the journal's write and fdatasync, the
  sink runner and the archive, with the same bytes. Its CPU a record is the cost of all but the
  pipeline; the shipped receiver's minus it is what the pipeline costs inside the server;
- the naive and null receivers (`bench/naive.py`, `bench/null.py`).

Then the per-record work alone, in process on one core: the naive receiver's (`bench.naive.rows`),
tailscribe's pipeline and the orjson ceiling, best and median of interleaved runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bench.inprocess import ceiling, pipeline
from bench.load import Receiver, tailscribe
from bench.run import receivers, run_peak, warm_up
from bench.workload import body, records

PROBE = Path(__file__).with_name("probe")
RECORDS = 73


def precompute_pipeline() -> None:
    """Make this process's receiver prepare each body once (see the module's docstring).

    Bodies are told apart by their length: hashing a 160 KB body would itself cost ~100 µs a request,
    and a benchmark run posts one body, so the length is enough.
    """
    from app import routes
    from app.ingest.pipeline import RequestContext
    from app.settings import Settings
    from app.storage import Batch, Storage

    prepare = routes.prepare_request
    batches: dict[int, Batch] = {}

    def prepare_once(raw: bytes, ctx: RequestContext, settings: Settings, storage: Storage) -> Batch:
        if len(raw) not in batches:
            batches[len(raw)] = prepare(raw, ctx, settings, storage)
        return batches[len(raw)]

    routes.prepare_request = prepare_once


def stage_receivers() -> dict[str, Callable[[], Receiver]]:
    shipped = receivers(2)

    def precomputed() -> Receiver:
        receiver = tailscribe(2)
        receiver.name = "tailscribe, pipeline precomputed"
        receiver.env = {"PYTHONPATH": str(PROBE), "TAILSCRIBE_BENCH_PROBE": "precomputed"}
        return receiver

    return {
        "tailscribe": shipped["tailscribe"],
        "precomputed": precomputed,
        "naive": shipped["naive"],
        "null": shipped["null"],
    }


def end_to_end(rounds: int, seconds: int) -> dict[str, tuple[str, float, float]]:
    """Per receiver: its name, and the medians of records/s and CPU µs a record over `rounds`."""
    network = records("network", RECORDS)
    measured: dict[str, list[tuple[float, float]]] = {}
    names: dict[str, str] = {}
    for _ in range(rounds):
        for key, make in stage_receivers().items():
            receiver = make()
            load = body(network, ndjson=key == "naive")
            receiver.start()
            try:
                warm_up(receiver, load)
                peak = run_peak(receiver, load, seconds)
            finally:
                receiver.stop()
            names[key] = receiver.name
            measured.setdefault(key, []).append((peak["rps"], peak["cpu_10k"] * 100))  # s/10k → µs/record
            print(f"{receiver.name}: {peak['rps']:,.0f} records/s, {peak['cpu_10k'] * 100:.1f} µs/record", flush=True)
    return {
        key: (names[key], statistics.median(r for r, _ in runs), statistics.median(c for _, c in runs))
        for key, runs in measured.items()
    }


def in_process(repeat: int) -> dict[str, tuple[float, float]]:
    """Best and median µs a record of each per-record loop, the three interleaved run by run."""
    os.environ.setdefault("NAIVE_OUTPUT", os.devnull)  # bench.naive opens its output when imported
    from bench import naive

    network = records("network", RECORDS)
    ndjson = body(network, ndjson=True).data
    concatenated, lines = body(network).data, ndjson.splitlines()
    loops: dict[str, Callable[[], object]] = {
        "naive receiver (json.loads, a pydantic model, model_dump_json)": lambda: naive.rows(ndjson),
        "tailscribe pipeline": lambda: pipeline(concatenated),
        "orjson ceiling (loads + dumps)": lambda: ceiling(lines),
    }
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repeat):
        for name, loop in loops.items():
            started = time.perf_counter()
            loop()
            times[name].append((time.perf_counter() - started) / RECORDS * 1e6)
    return {name: (min(runs), statistics.median(runs)) for name, runs in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=300, help="in-process runs of each loop")
    args = parser.parse_args()

    peaks = end_to_end(args.rounds, args.seconds)
    print(f"\n| receiver ({RECORDS}-record bodies, peak, medians of {args.rounds}) | records/s | CPU µs/record |")
    print("| --- | ---: | ---: |")
    for name, rps, cpu in peaks.values():
        print(f"| {name} | {rps:,.0f} | {cpu:.1f} |")

    loops = in_process(args.repeat)
    print(f"\n| in process, one core, {RECORDS} records a body | best µs/record | median µs/record |")
    print("| --- | ---: | ---: |")
    for name, (best, median) in loops.items():
        print(f"| {name} | {best:.1f} | {median:.1f} |")

    shipped, rest, naive = (peaks[key][2] for key in ("tailscribe", "precomputed", "naive"))
    budget = naive / 2
    print(
        f"\nTwice the naive receiver's records/s on the same CPU takes at most half its CPU a record: "
        f"{budget:.1f} µs. All but the pipeline costs {rest:.1f}, which leaves {budget - rest:.1f} µs for the "
        f"pipeline; inside the server it took {shipped - rest:.1f}, in process "
        f"{loops['tailscribe pipeline'][0]:.1f} at best."
    )


if __name__ == "__main__":
    main()
