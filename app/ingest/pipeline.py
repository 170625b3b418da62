"""One request's records from raw bytes to durable rows: decode, frame, validate, enrich, store.

This is the receiver's core and knows nothing of HTTP, so the CLI, tests and benchmarks call it
directly. It runs in a worker thread (it is CPU work and blocking fsync), one call per request:

    prepare_request:  raw ─► decode_body ─► iter_records ─► each: wrap_bare ─► classify ─► validate ─► append_row
                             │            │   │                      └─ failure: quarantine row (why + record)
                             │            │   └─ a network record in normal form: structs ─► append_network_row
                             └────────────┴─► failure: the raw body goes to quarantine, the request gets 400
    store_batch:      storage.store(batch) (fsynced) ─► the caller may now answer 2xx

A network record in normal form, nearly every one Tailscale streams, takes a lane of its own: framing
decodes it straight into msgspec structs, and `app.enrich.append_network_row` writes its row, the
same bytes the general path would (`app.schemas.network_structs` says why and how that is held).

Each record becomes its stored JSON line as soon as it is enriched, before the next one is parsed, so
a request holds its body and its lines but never all of its records as Python objects (about nine
times the bytes they were parsed from).

A record that is JSON but fails its schema never fails the request; it is kept in quarantine with
every validation error, and the rest of the batch is accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import msgspec

from app.enrich import RowFields, append_network_row, append_row, format_timestamp
from app.errors import DecodeError, FramingError, NestingTooDeep
from app.ingest.body import decode_body
from app.ingest.framing import Unparsed, iter_records
from app.observability import RECORDS, STORAGE_WRITE, VALIDATION_ERRORS
from app.schemas import RecordInvalid, classify, network_structs, validate, wrap_bare
from app.schemas.network_structs import NetworkRecord
from app.settings import DEFAULT_MAX_RECORD_BYTES, Settings
from app.storage import Batch, RejectedBody, Storage
from app.types import LOG_TYPES, PANTHER_LOG_TYPES, LogType, Row

QUARANTINABLE_BODY_ERRORS = (DecodeError, FramingError, NestingTooDeep)
"""Whole-body failures whose raw bytes are kept for inspection. Oversized bodies are not kept:
keeping what the caps exist to refuse would defeat them."""


@dataclass(slots=True, frozen=True)
class RequestContext:
    """What the HTTP layer knows about a request that the pipeline needs."""

    request_id: str
    log_type: LogType | None
    """The route's log type, or None on the Splunk HEC route where each record's shape tells."""
    source_id: str
    source_label: str
    allowed_log_types: frozenset[LogType] = frozenset(LOG_TYPES)
    """What the source may post; on the HEC route other records are quarantined, not accepted."""
    content_encoding: str | None = None
    metadata: dict[str, str] | None = None
    """Request facts kept beside a rejected body (user agent, content type); never credentials."""


def prepare_request(raw: bytes, ctx: RequestContext, settings: Settings, storage: Storage) -> Batch:
    """Decode, frame, validate and enrich one body: the CPU half of a request.

    A body that fails as a whole is kept in quarantine and the `IngestError` raised.
    """
    parse_time = datetime.now(UTC)
    try:
        decoded = decode_body(raw, ctx.content_encoding, limit=settings.max_decompressed_bytes)
        records = frame_records(decoded, ctx, settings)
        return build_batch(records, ctx, parse_time, max_record_bytes=settings.max_record_bytes)
    except QUARANTINABLE_BODY_ERRORS as exc:
        storage.store_rejected_body(
            RejectedBody(
                request_id=ctx.request_id,
                received_at=format_timestamp(parse_time),
                reason=exc.reason,
                detail=exc.detail,
                body=raw,
                metadata=ctx.metadata or {},
            )
        )
        raise


def frame_records(body: bytes, ctx: RequestContext, settings: Settings) -> Iterator[object]:
    """The records of a decoded body (`app.ingest.framing.iter_records`), network records in normal
    form decoded into structs (`app.schemas.network_structs`) where the request may hold them."""
    typed = None
    if settings.max_depth >= network_structs.DEPTH and "network" in ctx.allowed_log_types and ctx.log_type != "audit":
        typed = partial(network_structs.decode, shaped=ctx.log_type is None)
    return iter_records(
        body,
        max_records=settings.max_records,
        max_depth=settings.max_depth,
        max_record_bytes=settings.max_record_bytes,
        typed=typed,
    )


def store_batch(batch: Batch, storage: Storage) -> None:
    """Make the batch durable: the I/O half of a request, after which it may be answered 2xx.

    Kept apart from `prepare_request` so a worker prepares the next body while this one waits for
    its fsync, and concurrent requests' appends share one fsync (the journal's group commit).
    """
    with STORAGE_WRITE.time():
        storage.store(batch)
    count_outcomes(batch)  # only now: rows of a request refused with 503 were never accepted


def build_batch(
    records: Iterable[object],
    ctx: RequestContext,
    parse_time: datetime,
    *,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Batch:
    """Validate and enrich each record into its stored line; those that fail become quarantine rows.

    A row longer than `max_record_bytes` is quarantined too: no sink would be sure to take it. So is
    a record framing left `Unparsed` because it arrived longer than that.
    """
    batch = Batch()
    fields = RowFields(source_id=ctx.source_id, source_label=ctx.source_label, parse_time=parse_time)
    for record in records:
        if type(record) is NetworkRecord:
            size = append_network_row(batch.ndjson, record, fields)
            if size > max_record_bytes:
                del batch.ndjson[-size:]
                row = msgspec.to_builtins(record)
                batch.quarantined.append(_too_large(row, "network", size, max_record_bytes, ctx, parse_time))
            else:
                batch.counts["network"] += 1
            continue
        log_type = ctx.log_type
        if isinstance(record, Unparsed):
            batch.quarantined.append(_unparsed(record, log_type, max_record_bytes, ctx, parse_time))
            continue
        try:
            if not isinstance(record, dict):
                raise RecordInvalid([{"loc": "", "msg": "a record must be a JSON object", "type": "not_an_object"}])
            if log_type is None:
                log_type = classify(record)
            if log_type is None:
                raise RecordInvalid(
                    [{"loc": "event", "msg": "neither an audit nor a network record", "type": "unclassified"}]
                )
            if log_type not in ctx.allowed_log_types:
                message = f"source {ctx.source_id!r} may not post {PANTHER_LOG_TYPES[log_type]} records"
                raise RecordInvalid([{"loc": "event", "msg": message, "type": "log_type_not_allowed"}])
            row = validate(wrap_bare(record, log_type), log_type)
        except RecordInvalid as exc:
            batch.quarantined.append(quarantine_row(record, log_type, exc.errors, ctx, parse_time))
            continue
        size = append_row(batch.ndjson, row, log_type, fields)
        if size > max_record_bytes:
            del batch.ndjson[-size:]
            batch.quarantined.append(_too_large(row, log_type, size, max_record_bytes, ctx, parse_time))
            continue
        batch.counts[log_type] += 1
    return batch


def _too_large(row: Row, log_type: LogType, size: int, limit: int, ctx: RequestContext, parse_time: datetime) -> Row:
    """The quarantine row of a record whose stored row is over `limit` (`row`: the record with its
    split fields, which `append_row` leaves without `p_*` fields)."""
    message = f"the stored row would be {size} bytes, over max_record_bytes ({limit})"
    return quarantine_row(row, log_type, [{"loc": "", "msg": message, "type": "record_too_large"}], ctx, parse_time)


def _unparsed(record: Unparsed, log_type: LogType | None, limit: int, ctx: RequestContext, parse_time: datetime) -> Row:
    """The quarantine row of a record too long to parse: `record` is null and `raw` holds its text
    (an invalid UTF-8 byte as `\\xNN`), since it may not even be JSON."""
    size = len(record.data)
    message = f"the record is {size} bytes as received, over max_record_bytes ({limit}); kept unparsed in raw"
    row = quarantine_row(None, log_type, [{"loc": "", "msg": message, "type": "record_too_large"}], ctx, parse_time)
    row["raw"] = str(record.data, "utf-8", "backslashreplace")
    return row


def quarantine_row(
    record: object, log_type: LogType | None, errors: list[dict[str, str]], ctx: RequestContext, parse_time: datetime
) -> Row:
    """Everything needed to understand and replay a failed record: why, where from, and the record."""
    return {
        "p_log_type": PANTHER_LOG_TYPES[log_type] if log_type else None,
        "p_parse_time": format_timestamp(parse_time),
        "p_source_id": ctx.source_id,
        "p_source_label": ctx.source_label,
        "p_request_id": ctx.request_id,
        "errors": errors,
        "record": record,
    }


def count_outcomes(batch: Batch) -> None:
    """Metrics per log type and outcome, counted once per batch rather than once per record."""
    for log_type, count in batch.counts.items():
        if count:
            RECORDS.labels(PANTHER_LOG_TYPES[log_type], "accepted").inc(count)
    for row in batch.quarantined:
        label = row["p_log_type"] or "unknown"
        RECORDS.labels(label, "quarantined").inc()
        for error in row["errors"]:
            VALIDATION_ERRORS.labels(label, error["type"]).inc()
