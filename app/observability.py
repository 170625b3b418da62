"""What an operator sees: Prometheus metrics and one JSON log line per request.

Metrics use prometheus-client (https://prometheus.github.io/client_python/), exposed at
`GET /metrics`. With several worker processes the CLI sets `PROMETHEUS_MULTIPROC_DIR` before the
workers start, each worker writes its values there, and `/metrics`, whichever worker answers,
sums them all (prometheus-client's multiprocess mode). Log lines are JSON objects on stderr (one
per request, with the rejection reason when there is one), human-readable on a terminal. Neither ever carries a
token or a record's contents: tokens are not passed here at all, and records are only counted.

A log line is formatted where it is logged but written to stderr by a thread of its own: written on
the event loop, one stalled reader of stderr (a log collector, a pipe nobody drains) stopped a
worker answering anything once the pipe was full, 175 requests in. Lines wait in a bounded queue;
when it is full they are dropped and counted (`tailscribe_log_lines_dropped_total`), never waited for.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import logging.handlers
import os
import queue
import sys
import time
from functools import cache
from typing import Any, Final

import orjson
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
LOG_QUEUE_LINES: Final = 10_000
"""Log lines that may wait for stderr (11 MB of access-log records when full); more are dropped and counted."""
EXIT_FLUSH_SECONDS: Final = 2.0
"""How long an exiting process waits for its queued log lines to reach a stuck stderr."""

REQUESTS = Counter("tailscribe_requests", "HTTP requests answered, by route and status code.", ["route", "code"])
REQUEST_DURATION = Histogram(
    "tailscribe_request_duration_seconds",
    "Time from request start to the end of the answer, by route.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REQUEST_BYTES = Counter(
    "tailscribe_request_bytes", "Request body bytes received on the wire, by Content-Encoding.", ["encoding"]
)
INFLIGHT = Gauge("tailscribe_inflight_requests", "Ingest requests being processed now.", multiprocess_mode="livesum")
RECORDS = Counter(
    "tailscribe_records", "Records received, by log type and outcome (accepted/quarantined).", ["log_type", "outcome"]
)
VALIDATION_ERRORS = Counter(
    "tailscribe_validation_errors", "Schema validation errors, by log type and error type.", ["log_type", "reason"]
)
AUTH_FAILURES = Counter("tailscribe_auth_failures", "Requests refused for authentication, by reason.", ["reason"])
REJECTIONS = Counter("tailscribe_rejected_requests", "Requests refused as a whole, by reason.", ["reason"])
CONNECTIONS_REBALANCED = Counter(
    "tailscribe_connections_rebalanced",
    "Keep-alive connections closed after an answer because their worker held more than its share.",
    [],
)
STORAGE_ERRORS = Counter("tailscribe_storage_errors", "Writes to the data directory that failed.", [])
STORAGE_WRITE = Histogram(
    "tailscribe_storage_write_seconds",
    "Time to make one request's rows durable (write + fsync).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

JOURNAL_BYTES = Gauge("tailscribe_journal_bytes", "Bytes held in the journal.", multiprocess_mode="livesum")
JOURNAL_SEGMENTS = Gauge("tailscribe_journal_segments", "Segment files in the journal.", multiprocess_mode="livesum")
SINK_ROWS = Counter("tailscribe_sink_rows", "Rows delivered by each sink.", ["sink"])
SINK_ERRORS = Counter(
    "tailscribe_sink_errors", "Failed sink starts and writes (each retried), by sink and kind.", ["sink", "kind"]
)
SINK_LAG_RECORDS = Gauge(
    "tailscribe_sink_lag_records",
    "Rows in the journal the sink has not delivered yet.",
    ["sink"],
    multiprocess_mode="livesum",
)
SINK_LAG_SECONDS = Gauge(
    "tailscribe_sink_lag_seconds",
    "Age of the oldest row the sink holds undelivered; 0 when it holds none.",
    ["sink"],
    multiprocess_mode="livemax",
)

LOG_LINES_DROPPED = Counter(
    "tailscribe_log_lines_dropped", "Log lines dropped because standard error was not read fast enough."
)

METRICS: tuple[Counter | Gauge | Histogram, ...] = (
    REQUESTS,
    REQUEST_DURATION,
    REQUEST_BYTES,
    INFLIGHT,
    RECORDS,
    VALIDATION_ERRORS,
    AUTH_FAILURES,
    REJECTIONS,
    CONNECTIONS_REBALANCED,
    STORAGE_ERRORS,
    STORAGE_WRITE,
    JOURNAL_BYTES,
    JOURNAL_SEGMENTS,
    SINK_ROWS,
    SINK_ERRORS,
    SINK_LAG_RECORDS,
    SINK_LAG_SECONDS,
    LOG_LINES_DROPPED,
)
"""Every metric, for the README's generated reference."""

logger = logging.getLogger("tailscribe")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; structured fields come from `extra={"fields": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class HumanFormatter(logging.Formatter):
    """`time level msg key=value ...` for people watching a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={value}" for key, value in getattr(record, "fields", {}).items())
        return f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.getMessage()} {fields}".rstrip()


def metrics_text() -> bytes:
    """The Prometheus exposition of this process, or of every worker in multiprocess mode."""
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class QueuedLines(logging.handlers.QueueHandler):
    """Formats each line in the logging thread and queues it for the writer; never waits."""

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            LOG_LINES_DROPPED.inc()


class StderrWriter(logging.handlers.QueueListener):
    """The thread that writes queued lines to stderr, in order, and is the one to wait when it is stuck."""

    def stop_within(self, seconds: float) -> None:
        """Write what is queued, then stop; give up after `seconds` if stderr stays stuck, since
        `stop()` would wait for it forever."""
        with contextlib.suppress(queue.Full):
            self.enqueue_sentinel()
        if self._thread is not None:  # QueueListener keeps its thread here and has no stop with a timeout
            self._thread.join(seconds)


@cache
def queued_handler() -> QueuedLines:
    """This process's one handler and writer thread, started on first use and flushed at exit."""
    lines: queue.Queue[logging.LogRecord] = queue.Queue(LOG_QUEUE_LINES)
    writer = StderrWriter(lines, logging.StreamHandler(sys.stderr))  # lines arrive formatted: message only
    writer.start()
    atexit.register(writer.stop_within, EXIT_FLUSH_SECONDS)
    return QueuedLines(lines)


def configure_logging(level: str, log_format: str = "auto") -> None:
    """Send tailscribe's and uvicorn's logs to stderr: JSON lines, or human text on a terminal."""
    json_lines = not sys.stderr.isatty() if log_format == "auto" else log_format == "json"
    formatter = JsonFormatter() if json_lines else HumanFormatter()
    formatter.converter = time.gmtime  # timestamps in UTC, like every time in a row
    handler = queued_handler()
    handler.setFormatter(formatter)
    for name in ("tailscribe", "app", "uvicorn", "uvicorn.error"):  # "app": modules log by __name__
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(level.upper())
        log.propagate = False


def log_event(level: int, msg: str, **fields: Any) -> None:
    logger.log(level, msg, extra={"fields": fields})
