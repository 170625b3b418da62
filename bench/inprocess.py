"""In-process costs on one core: tailscribe's pipeline against the orjson ceiling, no HTTP, no disk.

- pipeline: `iter_records` → per record `wrap_bare`/`validate`/`append_row` (the receiver's
  `build_batch`), exactly what a request costs before the journal write;
- ceiling: `orjson.loads` + `orjson.dumps` of the same records, the least any JSON receiver does. It
  is given the records already cut apart: until 2026-11-22 it cut an NDJSON body with
  `bytes.splitlines`, which tests every byte in a loop of its own (0.5 ns a byte, about 1.2 µs of a
  2.3 KB record's 8-9), so it measured more than its name and flattered the ratio.

    .venv/bin/python -m bench.inprocess [--records 73] [--repeat 30]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

import orjson

from app.ingest.pipeline import RequestContext, build_batch, frame_records
from app.settings import Settings
from app.types import LOG_TYPES, LogType
from bench.workload import body, records

Input = TypeVar("Input")
SETTINGS = Settings(max_records=1_000_000)
CONTEXTS: dict[LogType, RequestContext] = {
    kind: RequestContext(request_id="bench", log_type=kind, source_id="bench", source_label="bench")
    for kind in LOG_TYPES
}
"""Each log type on its own route, as Tailscale posts them (until 2026-11-22 audit records went through the
network route, where the open network schema accepted them as network records)."""


def pipeline(data: bytes, kind: LogType = "network") -> int:
    context = CONTEXTS[kind]
    batch = build_batch(frame_records(data, context, SETTINGS), context, datetime.now(UTC))
    return len(batch.ndjson)


def ceiling(lines: list[bytes]) -> int:
    return len(b"".join(orjson.dumps(orjson.loads(line)) for line in lines))


def best_seconds(function: Callable[[Input], int], data: Input, repeat: int) -> float:
    """The fastest of `repeat` runs: the least disturbed by whatever else the machine is doing."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function(data)
        best = min(best, time.perf_counter() - started)
    return best


def measure(kind: LogType, count: int, repeat: int) -> dict[str, float]:
    rows = records(kind, count)
    concatenated, lines = body(rows).data, body(rows, ndjson=True).data.splitlines()
    pipeline_s = best_seconds(partial(pipeline, kind=kind), concatenated, repeat)
    ceiling_s = best_seconds(ceiling, lines, repeat)
    return {
        "pipeline_rps": count / pipeline_s,
        "ceiling_rps": count / ceiling_s,
        "ratio": ceiling_s / pipeline_s,
        "us_per_record": pipeline_s / count * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3375)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print("| log type | records/request | pipeline rec/s | µs/record | orjson ceiling rec/s | pipeline / ceiling |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for kind in ("network", "audit"):
        result = measure(kind, args.records, args.repeat)
        print(
            f"| {kind} | {args.records} | {result['pipeline_rps']:,.0f} | {result['us_per_record']:.1f} "
            f"| {result['ceiling_rps']:,.0f} | {result['ratio']:.0%} |"
        )


if __name__ == "__main__":
    main()
