"""What an operator sees: Prometheus metrics and one JSON log line per request.

Metrics use prometheus-client's default registry (https://prometheus.github.io/client_python/),
exposed at `GET /metrics`. Log lines are JSON objects on stderr (one per request, plus one per
rejection with its reason), human-readable when stderr is a terminal. Neither ever carries a
token or a record's contents: tokens are not passed here at all, and records are only counted.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson
from prometheus_client import Counter

REQUESTS = Counter("tailscribe_requests", "HTTP requests answered, by route and status code.", ["route", "code"])
RECORDS = Counter(
    "tailscribe_records", "Records received, by log type and outcome (accepted/quarantined).", ["log_type", "outcome"]
)
VALIDATION_ERRORS = Counter(
    "tailscribe_validation_errors", "Schema validation errors, by log type and error type.", ["log_type", "reason"]
)
AUTH_FAILURES = Counter("tailscribe_auth_failures", "Requests refused for authentication, by reason.", ["reason"])
REJECTIONS = Counter("tailscribe_rejected_requests", "Requests refused as a whole, by reason.", ["reason"])
STORAGE_ERRORS = Counter("tailscribe_storage_errors", "Writes to the data directory that failed.", [])

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


def configure_logging(level: str, *, json_lines: bool | None = None) -> None:
    """Send tailscribe's and uvicorn's logs to stderr, JSON unless stderr is a terminal."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    formatter = JsonFormatter() if json_lines else HumanFormatter()
    formatter.converter = time.gmtime  # timestamps in UTC, like every time in a row
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    for name in ("tailscribe", "uvicorn", "uvicorn.error"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(level.upper())
        log.propagate = False


def log_event(level: int, msg: str, **fields: Any) -> None:
    logger.log(level, msg, extra={"fields": fields})
