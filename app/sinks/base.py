"""The sink plugin contract: how rows leave the journal for archives, object stores, NATS, HTTP.

Modelled on Vector's sinks (https://vector.dev/docs/about/under-the-hood/architecture/): a sink
only delivers a batch it is given, and raises if it could not. The runner (`app.sinks.runner`)
owns everything else: reading the journal, batching, retries with backoff, and the checkpoint,
which advances only after `write` returned (Vector's finalization rule). A sink can therefore stay
small, and a row is never skipped: a failed batch is retried until it is delivered.

Sinks are found by `type` name: the built-ins in `BUILTIN_SINKS`, third parties through the
entry-point group `tailscribe.sinks` (`[project.entry-points."tailscribe.sinks"] mysink =
"mypkg.sink:MySink"`), looked up lazily so a missing optional dependency only matters to the sink
that needs it (fsspec's registry shape).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from importlib.metadata import entry_points
from typing import Any, ClassVar, Final, Protocol, runtime_checkable

import orjson
from pydantic import BaseModel, ConfigDict, Field

from app.storage.local import partition_path
from app.types import LOG_TYPES, LogType, Row

ENTRY_POINT_GROUP: Final = "tailscribe.sinks"

BUILTIN_SINKS: Final[dict[str, str]] = {
    "archive": "app.sinks.archive:ArchiveSink",
    "objectstore": "app.sinks.objectstore:ObjectStoreSink",
    "nats": "app.sinks.nats:NatsSink",
    "http": "app.sinks.http:HttpSink",
    "stdout": "app.sinks.stdout:StdoutSink",
}

INSTALL_HINTS: Final[dict[str, str]] = {
    "objectstore": "pip install 'tailscribe[objectstore]'",
    "nats": "pip install 'tailscribe[nats]'",
}


class SinkError(Exception):
    """Delivery failed in a way retrying will not fix soon (bad credentials, a refused payload).

    The runner still retries (a row is never skipped), but slower and logging at error level, so
    an operator can fix the cause while the journal holds the rows.
    """


class RetryableSinkError(SinkError):
    """Delivery failed for a passing reason (timeout, 5xx, connection refused): retry soon.

    `retry_after` carries the receiving end's own wish (HTTP `Retry-After`), which the runner
    honours instead of its backoff when given.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SinkConfig(BaseModel):
    """Options every sink has; a sink's own options live in its subclass of this model.

    Subclasses keep `extra="forbid"`, so a misspelt option fails at start naming the key.
    """

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="Which sink: archive, objectstore, nats, http, stdout, or an entry-point name.")
    name: str = Field(
        "",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Unique name; its checkpoint is kept under it. Defaults to the type.",
    )
    log_types: list[LogType] = Field(default_factory=lambda: list(LOG_TYPES), description="Log types it receives.")
    batch_max_records: int = Field(5_000, gt=0, description="Most rows handed to one write.")
    batch_max_bytes: int = Field(8 * 1024 * 1024, gt=0, description="Most row bytes handed to one write.")
    batch_max_age: float = Field(
        0.0, ge=0, description="Seconds to wait for a batch to fill before writing it anyway; 0 writes at once."
    )


class SinkBatch:
    """Rows for one `write`, in journal order, as dicts (`rows`) or as their JSON lines (`lines`).

    The runner builds it from the journal's lines, and a sink that only moves bytes (archive, NATS,
    stdout) never pays for parsing them; `rows` parses once, on first use. Tests and tools may build
    it from rows instead, and `lines` then serializes once.

    `first_seq` is the sequence number of the first row the batch was read from, within the journal
    named `stream` (each worker process has a journal of its own, numbered from 0). The same rows
    replayed after a restart carry the same (`stream`, `first_seq`), so a sink can make a retried
    write idempotent (the archive truncates back; object keys and NATS message ids use row ids).
    """

    __slots__ = ("_lines", "_rows", "first_seq", "stream")

    def __init__(
        self,
        rows: list[Row] | None = None,
        first_seq: int = 0,
        stream: str = "journal",
        *,
        lines: list[bytes] | None = None,
    ) -> None:
        if (rows is None) == (lines is None):
            raise ValueError("give a batch either rows or lines")
        self._rows = rows
        self._lines = lines
        self.first_seq = first_seq
        self.stream = stream

    @property
    def rows(self) -> list[Row]:
        if self._rows is None:
            self._rows = [orjson.loads(line) for line in self.lines]
        return self._rows

    @property
    def lines(self) -> list[bytes]:
        if self._lines is None:
            self._lines = [orjson.dumps(row) for row in self.rows]
        return self._lines

    def __len__(self) -> int:
        return len(self._lines if self._lines is not None else self.rows)


@cache
def _marker(key: str) -> bytes:
    """`"key":"` as bytes, built once per key: `line_field` runs for every row a sink handles."""
    return f'"{key}":"'.encode()


def line_field(line: bytes, key: str) -> str | None:
    """A top-level `p_*` string field of a row as the receiver serialized it, without parsing the row.

    A row's `p_*` fields follow the record's canonical JSON (`app.enrich`), so the last `"key":"`
    in the line is the top-level one even if a sender hid the same key deeper in the record. The
    values read this way (log type, event time, row id) never hold a quote.
    """
    raw = _raw_field(line, _marker(key))
    return None if raw is None else raw.decode()


def _raw_field(line: bytes, marker: bytes) -> bytes | None:
    """`line_field`'s value as the line's bytes."""
    start = line.rfind(marker)
    if start < 0:
        return None
    start += len(marker)
    end = line.find(b'"', start)
    return line[start:end] if end > 0 else None


_LOG_TYPE: Final = _marker("p_log_type")
_EVENT_TIME: Final = _marker("p_event_time")
_HOUR: Final = len("2026-06-03T15")
"""The characters of a `p_event_time` that its partition's path is made of (`partition_path`)."""


def by_partition(lines: Iterable[bytes], prefix: Callable[[str | None], str]) -> dict[str, list[bytes]]:
    """`lines` grouped, in order, under `<prefix(p_log_type)>/year=…/hour=…` of their `p_event_time`,
    both read off the line (`line_field`): grouping a batch parses none of its rows.

    A batch's rows fall into a few partitions, so each line's path is looked up by the raw bytes that
    decide it, and built once per partition: decoding both fields and formatting the path for every
    line took 2-3 µs a row, the archive's largest cost at peak (py-spy). Those bytes run from the
    last `"p_log_type":"` to the first `_HOUR` characters of the last `p_event_time`, which follows
    it in every row the receiver writes: they hold both values, or as much of the time as the path
    takes. They are a row's last two fields since 2026-12-06 (`app.enrich.RowFields`), so both
    searches from the end cover a few dozen bytes. Reading the two fields apart took 2.9 µs a row
    when the indicators came after them and 1.9 when they did not; this takes 0.5 (a network row of
    4.4 KB). Any other line (no such pair, or the time first) has no key and is read field by field.
    A key that is not ASCII is not kept: its bytes need not end on the hour's last character."""
    groups: dict[str, list[bytes]] = {}
    paths: dict[bytes, str] = {}
    for line in lines:
        start, hour = line.rfind(_LOG_TYPE), line.rfind(_EVENT_TIME)
        key = line[start : hour + len(_EVENT_TIME) + _HOUR] if 0 <= start < hour else b""
        path = paths.get(key)
        if path is None:
            log_type, text = line_field(line, "p_log_type"), line_field(line, "p_event_time")
            path = f"{prefix(log_type)}/{partition_path(text or '')}"
            if key and key.isascii():
                paths[key] = path
        groups.setdefault(path, []).append(line)
    return groups


def join_lines(lines: Sequence[bytes]) -> bytes:
    """The lines as one NDJSON document, each newline-terminated and copied once."""
    return b"\n".join([*lines, b""])


@runtime_checkable
class Sink(Protocol):
    """What the runner calls. `config_model` validates the sink's `[[sinks]]` table."""

    config_model: ClassVar[type[SinkConfig]]

    async def start(self) -> None:
        """Connect, create what is missing; raise `SinkError` when it cannot work at all."""

    async def write(self, batch: SinkBatch) -> None:
        """Deliver every row of `batch` durably, or raise `RetryableSinkError` / `SinkError`."""

    async def close(self) -> None:
        """Flush and disconnect; called once, also after a failed start."""


def sink_class(kind: str) -> type[Sink]:
    """The class registered for `kind`, imported on first use with an install hint if it cannot be."""
    target = BUILTIN_SINKS.get(kind) or discover_sinks().get(kind)
    if target is None:
        known = ", ".join(sorted(BUILTIN_SINKS.keys() | discover_sinks().keys()))
        raise ValueError(f"sinks: unknown sink type {kind!r}; known types: {known}")
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = INSTALL_HINTS.get(kind, f"install the package providing {module_name}")
        raise ValueError(f"sinks: the {kind!r} sink needs a missing package ({exc.name}): {hint}") from exc
    cls: type[Sink] = getattr(module, attribute)
    return cls


def discover_sinks() -> dict[str, str]:
    """Third-party sinks declared in the `tailscribe.sinks` entry-point group, by name."""
    return {entry.name: entry.value for entry in entry_points(group=ENTRY_POINT_GROUP)}


def build_sink(options: dict[str, Any]) -> tuple[SinkConfig, Sink]:
    """Validate one `[[sinks]]` table with its sink's own model, then construct the sink."""
    kind = options.get("type")
    if not isinstance(kind, str):
        raise ValueError("sinks: every sink needs a type")
    cls = sink_class(kind)
    config = cls.config_model.model_validate(options)
    if not config.name:
        config = config.model_copy(update={"name": kind})
    return config, cls(config)  # type: ignore[call-arg]
