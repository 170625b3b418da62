"""`tailscribe validate FILE...`: what the receiver would make of log files, without a receiver.

Before pointing Tailscale (or `tailscribe send`) at a receiver, or when a quarantine fills up, one
wants to know which records pass Panther's Tailscale.Audit / Tailscale.Network schemas
(https://docs.panther.com/data-onboarding/supported-logs/tailscale) and why the others fail. This
runs each file through the pipeline's own `build_batch`, so the verdicts and the enriched rows are
exactly the receiver's, and nothing is sent or stored unless `--output` / `--failures` ask for it.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final

import orjson

from app.ingest.pipeline import RequestContext, build_batch
from app.storage import Batch
from app.tools import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from app.tools.files import FileFailure, Limits, add_limit_arguments, limits_from_args, load_files, unreadable
from app.types import LOG_TYPES, LogType, Row

AUTO: Final = "auto"
STDOUT: Final = "-"
REQUEST_ID: Final = "validate"

Reason = tuple[str, str]
"""A validation error's `type` and `loc`, list indexes in `loc` replaced by `*`."""


@dataclass(slots=True)
class FileReport:
    """One file's counts; a file that failed as a whole has a `failure` and no records."""

    path: str
    records: int = 0
    accepted: int = 0
    failed: int = 0
    reasons: Counter[Reason] = field(default_factory=Counter)
    """Failed records per reason; a record with several errors counts once for each distinct reason."""
    failure: FileFailure | None = None


@dataclass(slots=True)
class Report:
    files: list[FileReport]

    @property
    def total(self) -> FileReport:
        total = FileReport("TOTAL")
        for report in self.files:
            total.records += report.records
            total.accepted += report.accepted
            total.failed += report.failed
            total.reasons.update(report.reasons)
        return total

    @property
    def ok(self) -> bool:
        return all(report.failed == 0 and report.failure is None for report in self.files)


def make_context(log_type: LogType | None, *, source_id: str, source_label: str) -> RequestContext:
    """The context of an offline "request"; `log_type` None tells each record's type by its shape."""
    return RequestContext(request_id=REQUEST_ID, log_type=log_type, source_id=source_id, source_label=source_label)


def failure_reasons(row: Row) -> set[Reason]:
    """The distinct reasons a quarantine row failed.

    Indexes are generalised (`event.virtualTraffic.*.proto`), so one bad field in many traffic
    entries or many records adds up to one line of the summary, not one per index.
    """
    reasons: set[Reason] = set()
    for error in row["errors"]:
        parts = ["*" if part.isdigit() else part for part in error["loc"].split(".")]
        reasons.add((error["type"], ".".join(parts) or "(record)"))
    return reasons


def validate_files(
    paths: Sequence[Path], ctx: RequestContext, limits: Limits, *, on_batch: Callable[[Batch], None] | None = None
) -> Report:
    """Validate and enrich every record of every file; `on_batch` receives each file's rows in turn."""
    parse_time = datetime.now(UTC)
    reports: list[FileReport] = []
    for loaded in load_files(paths, limits):
        report = FileReport(str(loaded.path), failure=loaded.failure)
        reports.append(report)
        if loaded.failure is not None:
            continue
        batch = build_batch(loaded.records, ctx, parse_time, max_record_bytes=limits.max_record_bytes)
        report.records = len(loaded.records)
        report.accepted = batch.accepted
        report.failed = len(batch.quarantined)
        for row in batch.quarantined:
            report.reasons.update(failure_reasons(row))
        if on_batch is not None:
            on_batch(batch)
    return Report(reports)


def format_report(report: Report) -> str:
    """The summary: counts per file and in total, failed records by reason, and whole-file failures."""
    total = report.total
    failed_files = sum(file.failure is not None for file in report.files)
    counts = [(f.path, f.records, f.accepted, f.failed, _status(f)) for f in report.files]
    counts.append(
        ("TOTAL", total.records, total.accepted, total.failed, f"{failed_files} of {len(report.files)} files failed")
    )
    lines = format_table(("FILE", "RECORDS", "ACCEPTED", "FAILED", "STATUS"), counts)
    if total.reasons:
        # Per file, then in total when there is more than one file; most frequent first.
        groups = [*report.files, total] if len(report.files) > 1 else report.files
        reasons = [
            (group.path, error_type, loc, count)
            for group in groups
            for (error_type, loc), count in sorted(group.reasons.items(), key=lambda item: (-item[1], item[0]))
        ]
        lines += ["", "FAILED RECORDS BY REASON (a record counts once for each of its reasons)"]
        lines += format_table(("FILE", "TYPE", "LOC", "RECORDS"), reasons)
    failures = [(f.path, f.failure.reason, f.failure.offset, f.failure.detail) for f in report.files if f.failure]
    if failures:
        lines += ["", "FILE FAILURES (offsets are bytes into the decompressed file)"]
        lines += format_table(("FILE", "REASON", "OFFSET", "DETAIL"), failures)
    return "\n".join(lines)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str | int | None]]) -> list[str]:
    """Aligned columns: numbers to the right, text to the left, None as "-"; the last column is not padded."""
    cells = [list(header)] + [["-" if value is None else str(value) for value in row] for row in rows]
    numeric = [any(isinstance(row[column], int) for row in rows) for column in range(len(header))]
    widths = [max(len(line[column]) for line in cells) for column in range(len(header))]
    lines = []
    for line in cells:
        padded = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(line, widths, numeric, strict=True)
        ]
        if not numeric[-1]:
            padded[-1] = line[-1]
        lines.append("  ".join(padded).rstrip())
    return lines


def _status(report: FileReport) -> str:
    if report.failure is not None:
        return f"file failed ({report.failure.reason})"
    return "records failed" if report.failed else "ok"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="log files: plain, .gz or .zst")
    parser.add_argument(
        "--log-type",
        choices=(AUTO, *LOG_TYPES),
        default=AUTO,
        help="validate every record as this type; auto tells each record's type by its shape (default: %(default)s)",
    )
    parser.add_argument(
        "--source-id", default="offline", help="p_source_id of the enriched rows (default: %(default)s)"
    )
    parser.add_argument(
        "--source-label", default="validate", help="p_source_label of the enriched rows (default: %(default)s)"
    )
    parser.add_argument(
        "--output",
        metavar="PATH",
        help="write the accepted records, enriched as the archive would hold them, as NDJSON to PATH "
        "('-' for stdout; the summary then goes to stderr)",
    )
    parser.add_argument(
        "--failures",
        metavar="PATH",
        help="write the failed records as NDJSON quarantine rows (errors + record) to PATH",
    )
    add_limit_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.failures == STDOUT:
        print("tailscribe validate: --failures needs a file path; only --output may be '-'", file=sys.stderr)
        return EXIT_USAGE
    problems = unreadable(args.files)
    for problem in problems:
        print(f"tailscribe validate: {problem}", file=sys.stderr)
    if problems:
        return EXIT_USAGE
    log_type: LogType | None = None if args.log_type == AUTO else args.log_type
    ctx = make_context(log_type, source_id=args.source_id, source_label=args.source_label)
    with ExitStack() as stack:
        try:
            output = _open(args.output, stack)
            failures = _open(args.failures, stack)
        except OSError as exc:
            print(f"tailscribe validate: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE

        def write(batch: Batch) -> None:
            if output is not None:
                output.write(batch.ndjson)
            if failures is not None:
                failures.writelines(orjson.dumps(row) + b"\n" for row in batch.quarantined)

        try:
            report = validate_files(args.files, ctx, limits_from_args(args), on_batch=write)
        except OSError as exc:
            print(f"tailscribe validate: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
    print(format_report(report), file=sys.stderr if args.output == STDOUT else sys.stdout)
    return EXIT_OK if report.ok else EXIT_FAILED


def _open(target: str | None, stack: ExitStack) -> IO[bytes] | None:
    if target is None:
        return None
    if target == STDOUT:
        return sys.stdout.buffer
    return stack.enter_context(Path(target).open("wb"))
