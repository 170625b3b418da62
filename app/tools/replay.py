"""Replaying records to a receiver in order: batching within a receiver's limits, then delivering.

This is `tailscribe send` without its command line. Batches follow the limits of the strictest
receiver one may replay to, Panther's HTTP source (1 MB a request:
https://docs.panther.com/data-onboarding/data-transports/http), and are posted in the order the
records were read, at most `concurrency` at a time, each through `delivery.post`.
"""

from __future__ import annotations

import gzip
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import httpx
import orjson
from tqdm import tqdm

from app import __version__
from app.ingest.framing import Unparsed
from app.tools.delivery import Outcome, RetryPolicy, post
from app.tools.files import Limits, load_files

BodyFormat = Literal["concatenated", "ndjson"]

BODY_FORMATS: Final[dict[BodyFormat, tuple[bytes, str]]] = {
    "concatenated": (b"", "application/json"),  # Tailscale's shape: no separator at all
    "ndjson": (b"\n", "application/x-ndjson"),
}
"""What follows each record in a body, and the body's Content-Type."""


@dataclass(frozen=True, slots=True)
class SendOptions:
    url: str
    authorization: str
    body_format: BodyFormat = "concatenated"
    gzip: bool = False
    records_per_request: int = 500
    max_request_bytes: int = 1_000_000
    """Bounds the uncompressed body, so a gzip body is always smaller; a bigger record goes alone."""
    concurrency: int = 1
    timeout: float = 30.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True, slots=True)
class Payload:
    """One request's records, serialized, numbered from 1 in sending order."""

    number: int
    parts: list[bytes]
    files: tuple[str, ...]


@dataclass(slots=True)
class SendReport:
    files: int = 0
    file_failures: int = 0
    records_read: int = 0
    skipped: int = 0
    """Values in an array that are not JSON objects: every receiver would refuse them, so they are not sent."""
    batches: int = 0
    failed_batches: int = 0
    records_sent: int = 0
    records_not_sent: int = 0
    accepted: int = 0
    quarantined: int = 0
    counted_batches: int = 0
    """Delivered batches whose answer told accepted/quarantined counts."""
    requests: int = 0
    bytes_sent: int = 0
    duration: float = 0.0
    stopped: bool = False

    @property
    def ok(self) -> bool:
        return not (self.failed_batches or self.file_failures or self.skipped or self.stopped)

    def add(self, payload: Payload, outcome: Outcome) -> None:
        self.batches += 1
        self.requests += outcome.requests
        self.bytes_sent += outcome.bytes_sent
        if not outcome.delivered:
            self.failed_batches += 1
            self.records_not_sent += len(payload.parts)
            return
        self.records_sent += len(payload.parts)
        if outcome.counts is not None:
            self.counted_batches += 1
            self.accepted += outcome.counts[0]
            self.quarantined += outcome.counts[1]


def batches(
    parts: Iterable[tuple[str, bytes]], *, records_per_request: int, max_request_bytes: int
) -> Iterator[Payload]:
    """Group `(file, serialized record)` pairs, in order, into payloads within both limits."""
    current: list[bytes] = []
    files: dict[str, None] = {}
    size = number = 0
    for source, part in parts:
        # A record over the byte limit still goes, alone: the receiver may take more than the limit says.
        if current and (len(current) == records_per_request or size + len(part) > max_request_bytes):
            number += 1
            yield Payload(number, current, tuple(files))
            current, files, size = [], {}, 0
        current.append(part)
        files[source] = None
        size += len(part)
    if current:
        yield Payload(number + 1, current, tuple(files))


def send_files(
    paths: Sequence[Path],
    options: SendOptions,
    limits: Limits,
    *,
    show_progress: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    notify: Callable[[str], None] | None = None,
) -> SendReport:
    """Read, batch and post every file's records in order; failures are counted and told, never raised."""
    report = SendReport()
    started = time.monotonic()
    terminator, content_type = BODY_FORMATS[options.body_format]
    headers = {"Authorization": options.authorization, "Content-Type": content_type}
    if options.gzip:
        headers["Content-Encoding"] = "gzip"
    with (
        tqdm(total=0, unit="rec", file=sys.stderr, disable=not show_progress, dynamic_ncols=True) as bar,
        httpx.Client(timeout=options.timeout, headers={"User-Agent": f"tailscribe-send/{__version__}"}) as client,
        ThreadPoolExecutor(max_workers=options.concurrency) as pool,
    ):
        say: Callable[[str], None] = notify or (lambda message: bar.write(message, file=sys.stderr))

        def parts() -> Iterator[tuple[str, bytes]]:
            for loaded in load_files(paths, limits):
                report.files += 1
                if loaded.failure is not None:
                    report.file_failures += 1
                    say(f"{loaded.path}: not sent: {loaded.failure.detail}")
                    continue
                report.records_read += len(loaded.records)
                bar.total = (bar.total or 0) + len(loaded.records)
                bar.refresh()
                skipped = 0
                for record in loaded.records:
                    if isinstance(record, dict):
                        yield str(loaded.path), orjson.dumps(record) + terminator
                    elif isinstance(record, Unparsed):  # over max_record_bytes: as read, for the receiver to judge
                        yield str(loaded.path), bytes(record.data) + terminator
                    else:
                        skipped += 1
                if skipped:
                    report.skipped += skipped
                    bar.update(skipped)
                    say(f"{loaded.path}: {skipped} values that are not JSON objects were not sent")

        def deliver(payload: Payload) -> Outcome:
            body = b"".join(payload.parts)
            body = gzip.compress(body, mtime=0) if options.gzip else body
            label = f"batch {payload.number}"
            return post(
                client, options.url, body, headers, options.policy, label=label, sleep=sleep, rng=rng, notify=say
            )

        def settle(payload: Payload, future: Future[Outcome]) -> None:
            outcome = future.result()
            report.add(payload, outcome)
            bar.update(len(payload.parts))
            if outcome.error is not None:
                origin = f"{len(payload.parts)} records from {', '.join(payload.files)}"
                say(f"batch {payload.number} ({origin}) not delivered: {outcome.error}")
            if outcome.stop and not report.stopped:
                report.stopped = True
                say("stopping: every later batch would be refused the same way")

        pending = batches(
            parts(), records_per_request=options.records_per_request, max_request_bytes=options.max_request_bytes
        )
        # At most `concurrency` requests in flight, settled in sending order, so the report is deterministic.
        in_flight: list[tuple[Payload, Future[Outcome]]] = []
        for payload in pending:
            in_flight.append((payload, pool.submit(deliver, payload)))
            if len(in_flight) >= options.concurrency:
                settle(*in_flight.pop(0))
            if report.stopped:
                break
        for payload, future in in_flight:
            settle(payload, future)
        # After a stop, the rest is read only to count what was not sent.
        report.records_not_sent += sum(len(payload.parts) for payload in pending)
    report.duration = time.monotonic() - started
    return report
