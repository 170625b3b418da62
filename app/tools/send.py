"""`tailscribe send FILE... --url URL`: replay log files to a receiver as Tailscale would stream them.

For backfilling an archive from Tailscale's S3 export, re-sending records after fixing what
quarantined them, or load-testing a receiver. Files are read exactly as `validate` reads them, then
posted in order (`replay.py`) in batches small enough for Panther's HTTP source, in Tailscale's own
body shape (objects back to back) or NDJSON, optionally gzip-compressed, with Bearer, Splunk HEC or
Basic auth, retrying as `delivery.py` says. Records are not validated here: the receiver does that.
This module is the command line: flags, the token, the summary.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final, Literal

import httpx

from app.settings import read_token_file
from app.tools import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from app.tools.delivery import RetryPolicy
from app.tools.files import add_limit_arguments, limits_from_args, unreadable
from app.tools.replay import BODY_FORMATS, SendOptions, SendReport, send_files

AuthScheme = Literal["bearer", "splunk", "basic"]

AUTH_SCHEMES: Final[dict[AuthScheme, Callable[[str], str]]] = {
    "bearer": lambda token: f"Bearer {token}",
    "splunk": lambda token: f"Splunk {token}",
    "basic": lambda token: "Basic " + base64.b64encode(f"tailscale:{token}".encode()).decode(),
}
"""The Authorization header of each scheme; tailscribe ignores Basic's user name."""

TOKEN_ENV: Final = "TAILSCRIBE_SEND_TOKEN"


def format_report(report: SendReport) -> str:
    """The final summary, one aligned `name  value` line each."""
    if report.counted_batches == report.batches - report.failed_batches:
        accepted, quarantined = str(report.accepted), str(report.quarantined)
    else:
        # Panther and Splunk answer without counts; a partial sum would mislead.
        accepted = quarantined = "unknown (the receiver's answers do not say)"
    rate = report.records_sent / report.duration if report.duration else 0.0
    lines = {
        "files": f"{report.files} ({report.file_failures} not readable as records)",
        "records read": str(report.records_read),
        "records sent": str(report.records_sent),
        "  accepted": accepted,
        "  quarantined": quarantined,
        "records not sent": str(report.records_not_sent + report.skipped),
        "batches": f"{report.batches} ({report.failed_batches} not delivered)",
        "requests": f"{report.requests} ({report.requests - report.batches} retries)",
        "bytes sent": str(report.bytes_sent),
        "duration": f"{report.duration:.2f} s",
        "rate": f"{rate:.0f} records/s",
    }
    width = max(map(len, lines))
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in lines.items())


def resolve_token(token: str | None, token_file: Path | None, environ: Mapping[str, str]) -> str | None:
    """`--token`, else the first token of `--token-file`, else `$TAILSCRIBE_SEND_TOKEN`; OSError if unreadable."""
    if token:
        return token
    if token_file is not None:
        return next(iter(read_token_file(token_file)), None)
    return environ.get(TOKEN_ENV) or None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="log files: plain, .gz or .zst")
    parser.add_argument(
        "--url", required=True, help="the receiver's endpoint, e.g. http://host:8080/v1/tailscale/network"
    )
    parser.add_argument(
        "--token", help=f"the receiver's token (visible to other users in ps; prefer --token-file or {TOKEN_ENV})"
    )
    parser.add_argument(
        "--token-file", type=Path, metavar="PATH", help="file holding the token (first non-comment line)"
    )
    parser.add_argument(
        "--auth",
        choices=tuple(AUTH_SCHEMES),
        default="bearer",
        help="Authorization scheme (default: %(default)s; basic sends user 'tailscale')",
    )
    parser.add_argument(
        "--format",
        dest="body_format",
        choices=tuple(BODY_FORMATS),
        default="concatenated",
        help="body shape: concatenated objects as Tailscale sends, or NDJSON (default: %(default)s)",
    )
    parser.add_argument("--gzip", action="store_true", help="gzip each body (Content-Encoding: gzip)")
    parser.add_argument(
        "--records-per-request",
        type=_at_least(1),
        default=500,
        metavar="N",
        help="most records in one request (default: %(default)s)",
    )
    parser.add_argument(
        "--max-request-bytes",
        type=_at_least(1),
        default=1_000_000,
        metavar="N",
        help="largest uncompressed body; a bigger record is sent alone (default: %(default)s, Panther's limit)",
    )
    parser.add_argument(
        "--concurrency",
        type=_at_least(1),
        default=1,
        metavar="N",
        help="requests in flight at once (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=_seconds, default=30.0, metavar="SECONDS", help="per request (default: %(default)s)"
    )
    parser.add_argument(
        "--retries",
        type=_at_least(0),
        default=5,
        metavar="N",
        help="retries of a batch after connection errors, 429 and 5xx (default: %(default)s)",
    )
    parser.add_argument(
        "--max-backoff",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="longest wait before a retry, Retry-After included (default: %(default)s)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar (there is none when stderr is not a terminal)"
    )
    add_limit_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        token = resolve_token(args.token, args.token_file, os.environ)
    except OSError as exc:
        return _usage(f"cannot read the token file {args.token_file}: {exc.strerror}")
    if token is None:
        return _usage(f"no token: pass --token or --token-file, or set {TOKEN_ENV}")
    try:
        url = httpx.URL(args.url)
    except httpx.InvalidURL:
        url = httpx.URL()
    if url.scheme not in ("http", "https") or not url.host:
        return _usage(f"--url must be an http:// or https:// URL, not {args.url!r}")
    problems = unreadable(args.files)
    if problems:
        return _usage("; ".join(problems))
    options = SendOptions(
        url=args.url,
        authorization=AUTH_SCHEMES[args.auth](token),
        body_format=args.body_format,
        gzip=args.gzip,
        records_per_request=args.records_per_request,
        max_request_bytes=args.max_request_bytes,
        concurrency=args.concurrency,
        timeout=args.timeout,
        policy=RetryPolicy(retries=args.retries, max_backoff=args.max_backoff),
    )
    show_progress = not args.quiet and sys.stderr.isatty()
    try:
        report = send_files(args.files, options, limits_from_args(args), show_progress=show_progress)
    except OSError as exc:
        return _usage(f"cannot read {exc.filename}: {exc.strerror}")
    print(format_report(report))
    if report.stopped:
        print(f"tailscribe send: check the token (--token, --token-file or {TOKEN_ENV}) and --auth", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAILED


def _usage(message: str) -> int:
    print(f"tailscribe send: {message}", file=sys.stderr)
    return EXIT_USAGE


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse `type` for whole numbers of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of at least {minimum}")
        return value

    return parse


def _seconds(text: str) -> float:
    """An argparse `type` for a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number of seconds")
    return value
