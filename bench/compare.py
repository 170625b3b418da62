"""Before and after: the receiver of several git revisions measured in one run, with today's harness.

Each variant is an `app/` package taken from a revision (optionally with some files from another
revision laid over it, to measure one change of a commit that made several), unpacked into its own
directory. The benchmark code stays the current one, so only the receiver differs between rows.

    .venv/bin/python -m bench.compare baseline=62b4863 fast-path=ca8aae5 \\
        'reuseport-only=62b4863+ca8aae5:app/workers.py,app/cli.py' [--seconds 8]

Per variant: the in-process pipeline (one core, best of several runs, 73 and 3,375 records per
body), its instructions a record (`bench/instructions.py`, callgrind: the one figure here that does
not move with the machine; "n/a" without valgrind or for revisions older than the lazy framing),
end-to-end records/s and CPU per record (2 workers, wrk, 16 clients, 73-record plain bodies), and
peak RSS per process while 16 clients post 11 MB bodies. End-to-end figures on this shared 2-core
machine vary by ±20% from run to run, so each variant is run `--rounds` times, round-robin, and the
medians are shown; the in-process figures (best of several runs) are steadier.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from bench import instructions
from bench.load import REPOSITORY, tailscribe
from bench.run import big_body_memory, run_peak, warm_up
from bench.workload import body, records

IN_PROCESS = """
import json, sys, time
from datetime import UTC, datetime
import orjson
import app
from app.ingest import framing, pipeline
from app.ingest.pipeline import RequestContext, build_batch
from bench.workload import body, records

assert app.__file__.startswith(sys.argv[1]), app.__file__
ctx = RequestContext(request_id="bench", log_type="network", source_id="bench", source_label="bench")
if hasattr(pipeline, "frame_records"):  # since the network lane, which framing is told to take
    from app.settings import Settings
    settings = Settings(max_records=10**6)
    records_of = lambda data, **limits: pipeline.frame_records(data, ctx, settings)
else:
    records_of = getattr(framing, "iter_records", None) or framing.frame  # revisions before lazy framing

def run(data):
    batch = build_batch(records_of(data, max_records=10**6, max_depth=64), ctx, datetime.now(UTC))
    if hasattr(batch, "ndjson"):
        return len(batch.ndjson)
    # Earlier revisions: rows as dicts (dumped by storage), then rows as lines.
    return len(b"".join(row if isinstance(row, bytes) else orjson.dumps(row) for row in batch.accepted))

result = {}
for count, repeat in ((73, 40), (3375, 5)):
    data = body(records("network", count)).data
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run(data)
        best = min(best, time.perf_counter() - started)
    result[count] = best / count * 1e6
print(json.dumps(result))
"""


def unpack(spec: str, root: Path) -> tuple[str, Path]:
    """`label=rev[+overlay_rev:path,path]` → (label, directory holding that `app/`)."""
    label, _, source = spec.partition("=")
    base, _, overlay = source.partition("+")
    directory = root / label
    directory.mkdir(parents=True)
    # Revisions from app/addresses.pyx on carry a setup.py that compiles it.
    exists = subprocess.run(["git", "cat-file", "-e", f"{base}:setup.py"], cwd=REPOSITORY, capture_output=True)
    compiled = exists.returncode == 0
    members = ["app", "setup.py"] if compiled else ["app"]
    archive = subprocess.run(["git", "archive", base, *members], cwd=REPOSITORY, capture_output=True, check=True).stdout
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(directory, filter="data")
    if overlay:
        revision, _, paths = overlay.partition(":")
        for path in paths.split(","):
            content = subprocess.run(
                ["git", "show", f"{revision}:{path}"], cwd=REPOSITORY, capture_output=True, check=True
            )
            (directory / path).write_bytes(content.stdout)
    if compiled:
        build = [sys.executable, "setup.py", "--quiet", "build_ext", "--inplace"]
        subprocess.run(build, cwd=directory, capture_output=True, check=True)
    return label, directory


def in_process(directory: Path) -> dict[str, float]:
    env = {"PYTHONPATH": str(REPOSITORY)}
    output = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, str(directory)], cwd=directory, env=env, capture_output=True, text=True
    )
    if output.returncode:
        raise RuntimeError(output.stderr)
    return json.loads(output.stdout)


def end_to_end(directory: Path, seconds: int, *, memory: bool) -> dict[str, float]:
    own_sockets = (directory / "app" / "workers.py").exists()
    receiver = tailscribe(2)
    receiver.cwd = directory
    receiver.listeners = 2 if own_sockets else 1
    receiver.start()
    try:
        time.sleep(0 if own_sockets else 3)  # with one shared socket, let the second worker start too
        load = body(records("network", 73))
        warm_up(receiver, load)
        peak = run_peak(receiver, load, seconds)
        measured = {"rps": peak["rps"], "cpu_us": peak["cpu_10k"] * 100, "p99": peak["p99"]}  # s/10k → µs/record
        if memory:
            measured["rss"] = big_body_memory(receiver, seconds)[1]
        return measured
    finally:
        receiver.stop()


def instruction_count(directory: Path) -> str:
    """The variant's instructions a record, or "n/a" (no valgrind; a pipeline `bench.inprocess` cannot call)."""
    if shutil.which("valgrind") is None:
        return "n/a"
    try:
        return f"{instructions.count(directory)[0]:,.0f}"
    except subprocess.CalledProcessError:
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="label=rev or label=rev+rev2:path,path")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="end-to-end runs per variant, interleaved; medians shown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tailscribe-compare-") as root:
        unpacked = [unpack(spec, Path(root)) for spec in args.variants]
        pipelines: dict[str, dict[str, float]] = {label: {} for label, _ in unpacked}
        runs: dict[str, list[dict[str, float]]] = {label: [] for label, _ in unpacked}
        counted = {label: instruction_count(directory) for label, directory in unpacked}
        for round_ in range(args.rounds):  # round-robin, so a slow minute of the machine hits every variant
            for label, directory in unpacked:
                for count, micros in in_process(directory).items():  # the best of all rounds
                    pipelines[label][count] = min(micros, pipelines[label].get(count, micros))
                runs[label].append(end_to_end(directory, args.seconds, memory=round_ == 0))
                print(f"round {round_ + 1}: {label} {runs[label][-1]}", file=sys.stderr, flush=True)
    print(
        "| variant | in-process µs/record (73) | (3,375) | instructions/record (73) | end-to-end records/s "
        "| CPU µs/record | p99 ms | peak RSS MB, 16 × 11 MB |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, _ in unpacked:
        pipeline, measured = pipelines[label], runs[label]

        def median(key: str, measured: list[dict[str, float]] = measured) -> float:
            return statistics.median(run[key] for run in measured)

        print(
            f"| {label} | {pipeline['73']:.1f} | {pipeline['3375']:.1f} | {counted[label]} | {median('rps'):,.0f} "
            f"| {median('cpu_us'):.0f} | {median('p99'):.0f} | {measured[0]['rss']:.0f} |"
        )


if __name__ == "__main__":
    main()
