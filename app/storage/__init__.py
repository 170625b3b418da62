"""Where accepted and quarantined rows go before the answer: the local archive and quarantine.

The request path talks only to the `Storage` protocol, so the durable journal and its sinks
(a later stage of the architecture) can take the archive's place without touching the pipeline.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from app.types import LogType, Row


@dataclass(slots=True)
class Batch:
    """What one request produced: rows to keep, and rows that failed their schema."""

    ndjson: bytearray = field(default_factory=bytearray)
    """The accepted rows exactly as the journal stores them: one JSON line each, newline-terminated.

    One buffer, not a bytes object per row: orjson over-allocates each result it returns (11.7 MB
    held for 4.6 MB of rows in a test), which made an 11 MB body's rows take 58 MB."""
    counts: Counter[LogType] = field(default_factory=Counter)
    """Accepted rows per log type."""
    quarantined: list[Row] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(self.counts.values())


@dataclass(slots=True, frozen=True)
class RejectedBody:
    """A request body that could not be read as records, kept whole for inspection."""

    request_id: str
    received_at: str
    reason: str
    detail: str
    body: bytes
    metadata: dict[str, str]


class Storage(Protocol):
    def store(self, batch: Batch) -> None:
        """Make every row of `batch` durable; raise `StorageUnavailable` if any could not be."""

    def store_rejected_body(self, rejected: RejectedBody) -> None:
        """Keep a body that failed as a whole (not JSON, truncated, corrupt compression)."""

    def check_writable(self) -> None:
        """Raise `StorageUnavailable` when nothing could be stored right now."""
