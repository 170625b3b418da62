"""The object-store sink: rows as NDJSON objects in S3, GCS, Azure Blob or a local directory.

One client for every store through obstore (https://developmentseed.org/obstore/), which also does
multipart uploads. The runner batches rows by size and age (64 MiB / 60 s here); each `write`
uploads one object per partition of its batch before returning, and buffers nothing across calls:

    panther: <url path>/log_type=Tailscale.Audit/year=2026/month=06/day=03/hour=15/<stream>-<seq>-<row id>.ndjson.gz
    hunters: <url path>/tailscale_configuration_audit_logs/year=2026/.../hour=15/<stream>-<seq>-<row id>.ndjson.gz

The hour is the row's `p_event_time`; `<stream>` and `<seq>` name the journal (one per worker) and
the batch's first sequence number in it; `<row id>` is the `p_row_id` of the object's first row. A
retried batch starts at the same sequence number, so it overwrites its own objects; a later batch
starting with a row Tailscale re-sent cannot overwrite an earlier object with the same first row,
because its sequence number differs. (The issue asked for `<first-row-id>` alone; that would let
such a re-send overwrite, and so lose, the rows after the first in the earlier object.)

`format = "panther"` writes the full enriched row per line. `format = "hunters"` writes the bare
record as Tailscale's own S3 export does, which is what Hunters ingests
(https://docs.hunters.ai/docs/tailscale): the row's `event` as received (with the receiver's
`srcIp`/`srcPort`/`dstIp`/`dstPort` in traffic entries), plus, only where absent, the export's
`logged` (from `fields.recorded`) and, for audit records, `eventTime` (the row's `p_event_time`).
"""

from __future__ import annotations

import asyncio
import gzip
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal
from urllib.parse import urlsplit

import obstore
import orjson
import zstandard
from obstore.exceptions import (
    BaseError,
    InvalidPathError,
    NotSupportedError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnknownConfigurationKeyError,
)
from obstore.store import from_url
from pydantic import Field, SecretStr, field_validator

from app.sinks.base import RetryableSinkError, SinkBatch, SinkConfig, SinkError, by_partition, join_lines, line_field
from app.types import PANTHER_LOG_TYPES, Row

if TYPE_CHECKING:
    from obstore.store import ObjectStore

Compression = Literal["none", "gzip", "zstd"]

EXTENSIONS: Final[dict[Compression, str]] = {"none": ".ndjson", "gzip": ".ndjson.gz", "zstd": ".ndjson.zst"}

CLIENT_OPTIONS: Final = frozenset(
    "allow_http allow_invalid_certificates connect_timeout default_content_type http1_only http2_keep_alive_interval "
    "http2_keep_alive_timeout http2_keep_alive_while_idle http2_only pool_idle_timeout pool_max_idle_per_host "
    "proxy_url proxy_ca_certificate proxy_excludes randomize_addresses read_timeout root_certificate timeout "
    "user_agent".split()
)
"""obstore's HTTP client options (`ClientConfig`); every other key of `options` configures the store."""

_STATUS: Final = re.compile(r"status code: (\d{3})")
_PASSING_STATUS: Final = frozenset({408, 429})
_TABLE: Final = r"^[A-Za-z0-9_=-][A-Za-z0-9_.=-]*(/[A-Za-z0-9_=-][A-Za-z0-9_.=-]*)*$"
"""A table prefix: path segments of safe characters, none of them `.` or `..`."""


class ObjectStoreSinkConfig(SinkConfig):
    url: str = Field(
        description="Where objects go, its path being the key prefix: s3://bucket/prefix, gs://bucket/prefix, "
        "az://account/container/prefix, file:///absolute/dir or memory:///."
    )
    options: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="obstore options, e.g. region, endpoint, access_key_id, secret_access_key, allow_http, "
        "timeout, connect_timeout; unset ones come from the environment (AWS_*, GOOGLE_*, AZURE_*). Kept secret.",
    )
    compression: Compression = Field(default="gzip", description="none, gzip (.ndjson.gz) or zstd (.ndjson.zst).")
    format: Literal["panther", "hunters"] = Field(
        default="panther", description="panther: the full enriched row per line; hunters: the bare Tailscale record."
    )
    audit_table: str = Field(
        default="tailscale_configuration_audit_logs", pattern=_TABLE, description="Hunters format: audit rows' prefix."
    )
    network_table: str = Field(
        default="tailscale_network_flow_logs", pattern=_TABLE, description="Hunters format: network rows' prefix."
    )
    max_retries: int = Field(default=3, ge=0, description="obstore's own retries of a request before write fails.")
    retry_timeout: float = Field(default=30.0, gt=0, description="Seconds after which obstore stops retrying.")
    verify: bool = Field(
        default=True,
        description="List the prefix at start to catch a wrong bucket or credentials early; "
        "turn off for write-only credentials (no s3:ListBucket).",
    )
    batch_max_records: int = Field(default=1_000_000, gt=0, description="Most rows in one write.")
    batch_max_bytes: int = Field(default=64 * 1024 * 1024, gt=0, description="Most row bytes in one write.")
    batch_max_age: float = Field(default=60.0, ge=0, description="Seconds to gather rows before writing anyway.")

    @field_validator("options", mode="before")
    @classmethod
    def _as_strings(cls, value: Any) -> Any:
        """TOML gives `allow_http = true`; obstore parses every option from a string."""
        if not isinstance(value, dict):
            return value
        return {key: _text(item) for key, item in value.items()}


def _text(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float) else value


def hunters_record(row: Row) -> Row:
    """The bare record as Tailscale's S3 export writes it (see the module docstring)."""
    record: Row = dict(row["event"])
    fields = row.get("fields")
    if "logged" not in record and isinstance(fields, dict) and isinstance(fields.get("recorded"), str):
        record["logged"] = fields["recorded"]
    if row["p_log_type"] == PANTHER_LOG_TYPES["audit"] and "eventTime" not in record:
        record["eventTime"] = row["p_event_time"]
    return record


def _summary(exc: Exception) -> str:
    """The error's first part on one line; obstore appends a debug dump of 30 lines after it."""
    return " ".join(str(exc).split("\n\nDebug source", 1)[0].split())


def translate(exc: Exception, what: str) -> SinkError:
    """Map an obstore error to a retryable one (network, timeout, 5xx, throttling) or not (the rest)."""
    text = _summary(exc)
    status = int(match.group(1)) if (match := _STATUS.search(text)) else None
    if isinstance(exc, PermissionDeniedError | UnauthenticatedError | PermissionError) or status in (401, 403):
        return SinkError(f"{what}: access denied; check the credentials in `options` and their permissions: {text}")
    if isinstance(exc, FileNotFoundError) or "NoSuchBucket" in text or "ContainerNotFound" in text:
        return SinkError(f"{what}: the bucket does not exist; create it or correct `url`: {text}")
    if isinstance(exc, UnknownConfigurationKeyError | InvalidPathError | NotSupportedError):
        return SinkError(f"{what}: {text}")
    if status is not None and status < 500 and status not in _PASSING_STATUS:
        return SinkError(f"{what}: refused (HTTP {status}); check `url` and `options` (region, endpoint): {text}")
    return RetryableSinkError(f"{what}: {text}")


class ObjectStoreSink:
    """Uploads each batch as one NDJSON object per partition; see the module docstring for keys."""

    config_model: ClassVar[type[SinkConfig]] = ObjectStoreSinkConfig

    def __init__(self, config: ObjectStoreSinkConfig) -> None:
        self.config = config
        self._store: ObjectStore | None = None
        audit, network = PANTHER_LOG_TYPES["audit"], PANTHER_LOG_TYPES["network"]
        self._tables = {audit: config.audit_table, network: config.network_table}

    def _build(self) -> ObjectStore:
        options: dict[str, Any] = {key: secret.get_secret_value() for key, secret in self.config.options.items()}
        options["client_options"] = {key: options.pop(key) for key in list(options) if key in CLIENT_OPTIONS}
        options["retry_config"] = {
            "max_retries": self.config.max_retries,
            "retry_timeout": timedelta(seconds=self.config.retry_timeout),
        }
        if urlsplit(self.config.url).scheme == "file":  # LocalStore refuses a missing root directory
            options["mkdir"] = True
        try:
            store: ObjectStore = from_url(self.config.url, **options)
        except (BaseError, ValueError, TypeError) as exc:
            raise SinkError(f"objectstore: cannot use {self.config.url}: {_summary(exc)}") from exc
        return store

    async def start(self) -> None:
        """Build the store and, unless `verify` is off, list one page of the prefix to prove it works."""
        store = self._build()
        if self.config.verify:
            try:
                await anext(obstore.list(store, chunk_size=1), None)
            except (BaseError, OSError) as exc:
                raise translate(exc, f"objectstore: cannot list {self.config.url}") from exc
        self._store = store

    async def write(self, batch: SinkBatch) -> None:
        store = self._build() if self._store is None else self._store
        # Both in threads: a batch is up to 64 MiB of rows, and grouping it (or, for hunters, parsing it)
        # and compressing it would stall the event loop, and every request this worker is answering.
        objects = await asyncio.to_thread(self.objects, batch)
        for key, lines in objects.items():
            data = await asyncio.to_thread(self.encode, lines)
            try:
                await obstore.put_async(store, key, data)
            except (BaseError, OSError) as exc:
                raise translate(exc, f"objectstore: cannot upload {key} to {self.config.url}") from exc

    async def close(self) -> None:
        self._store = None  # obstore holds no open handles worth closing; its pool goes with the store

    def objects(self, batch: SinkBatch) -> dict[str, list[bytes]]:
        """The batch's rows, as their JSON lines, grouped by object key, in journal order.

        The partition and the first row's id are read off each line (`line_field`), so grouping a
        batch parses none of its rows."""
        groups = by_partition(batch.lines, self._top)
        extension = EXTENSIONS[self.config.compression]
        return {
            f"{path}/{batch.stream}-{batch.first_seq:020d}-{line_field(lines[0], 'p_row_id')}{extension}": lines
            for path, lines in groups.items()
        }

    def _top(self, log_type: str | None) -> str:
        """The key prefix of a log type's objects: its table for hunters, `log_type=…` for panther."""
        if self.config.format == "hunters":
            return self._tables[log_type or ""]
        return f"log_type={log_type or ''}"

    def encode(self, lines: list[bytes]) -> bytes:
        """NDJSON, one `\\n`-terminated line per row, compressed; the same rows always give the same bytes.

        The panther format keeps each row's line as the journal holds it; hunters parses it for the
        bare record."""
        if self.config.format == "hunters":
            lines = [orjson.dumps(hunters_record(orjson.loads(line))) for line in lines]
        data = join_lines(lines)
        if self.config.compression == "gzip":
            return gzip.compress(data, compresslevel=6, mtime=0)
        if self.config.compression == "zstd":
            return zstandard.ZstdCompressor(level=3).compress(data)
        return data
