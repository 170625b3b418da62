"""The HTTP endpoints: thin wrappers that authenticate, read the body and hand it to the pipeline.

Endpoints and answers follow the contract in docs/architecture.md; ingest answers are Splunk HEC
JSON (https://docs.splunk.com/Documentation/Splunk/latest/Data/TroubleshootHTTPEventCollector).
Each source with a `path_prefix` also gets its own three ingest routes, open to its tokens only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import IO, Any, Final

from anyio import to_thread
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from app.auth import Authenticator, Source, single_authorization
from app.errors import BodyTimeout, InvalidToken, LogTypeNotAllowed, Overloaded, StorageUnavailable
from app.ingest.body import read_capped, read_spooled
from app.ingest.decoders import SUPPORTED_DECODERS
from app.ingest.pipeline import RequestContext, prepare_request, store_batch
from app.ingest.turns import Turns
from app.observability import INFLIGHT, REQUEST_BYTES, metrics_text
from app.settings import Settings
from app.status import record_outcome
from app.storage import Batch, Storage
from app.types import PANTHER_LOG_TYPES, LogType

router = APIRouter()

INGEST_OPENAPI: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "description": "Tailscale log records: concatenated or newline-delimited JSON objects, an array, "
        "or {'logs': [...]}; optionally gzip, zstd or deflate compressed.",
        "content": {"application/json": {"schema": {}}, "application/octet-stream": {"schema": {}}},
    },
}
KEPT_HEADERS: Final = ("user-agent", "content-type", "content-encoding", "content-length", "transfer-encoding")
"""Request headers stored beside a rejected body; Authorization is never among them."""

INGEST_ROUTES: Final[tuple[tuple[str, LogType | None, str], ...]] = (
    ("/audit", "audit", "Receive Tailscale.Audit records"),
    ("/network", "network", "Receive Tailscale.Network records"),
    ("/services/collector/event", None, "Splunk HEC: the log type is told by each record's shape"),
)
"""Path suffix, log type (None: by shape) and summary of each ingest route."""
DEFAULT_PREFIX: Final = "/v1/tailscale"


def encoding_label(header: str | None) -> str:
    """A bounded metric label for a Content-Encoding header: senders choose the header freely."""
    if not header:
        return "none"
    value = header.strip().lower()
    return value if value in SUPPORTED_DECODERS else "other"


async def ingest(request: Request, log_type: LogType | None, *, only_source: str | None = None) -> JSONResponse:
    """Authenticate, read, process and store one request; answer only once it is durable."""
    settings: Settings = request.app.state.settings
    authenticator: Authenticator = request.app.state.authenticator
    request.state.log_type = log_type
    source = authenticator.authenticate(single_authorization(request.headers.getlist("authorization")))
    request.state.source_id = source.id
    if only_source is not None and source.id != only_source:
        raise InvalidToken(f"this URL belongs to source {only_source!r}; the token is another source's")
    if log_type is not None and log_type not in source.log_types:
        raise LogTypeNotAllowed(f"source {source.id!r} may not post {PANTHER_LOG_TYPES[log_type]} records")
    if request.app.state.inflight >= settings.max_concurrent_requests:
        raise Overloaded(f"{settings.max_concurrent_requests} requests are already in progress; retry shortly")
    request.app.state.inflight += 1
    INFLIGHT.inc()
    try:
        return await _receive(request, settings, source, log_type)
    finally:
        request.app.state.inflight -= 1
        INFLIGHT.dec()


async def _receive(request: Request, settings: Settings, source: Source, log_type: LogType | None) -> JSONResponse:
    content_encoding = request.headers.get("content-encoding")
    try:
        async with asyncio.timeout(settings.body_timeout):
            spool = await read_capped(
                request.stream(),
                content_length=request.headers.get("content-length"),
                limit=settings.max_body_bytes,
                spool_dir=request.app.state.spool_dir,
            )
    except TimeoutError as exc:
        raise BodyTimeout(f"the body was not received within body_timeout ({settings.body_timeout:g} s)") from exc
    except ClientDisconnect:
        # Nobody is left to answer; the log line and the metric are all that remain of it.
        request.state.reason = "client_disconnected"
        return JSONResponse({"text": "Client disconnected", "code": 6}, status_code=400)
    with spool:  # closing removes a spooled body's file
        size = spool.tell()
        REQUEST_BYTES.labels(encoding_label(content_encoding)).inc(size)
        request.state.bytes = size
        ctx = RequestContext(
            request_id=request.state.request_id,
            log_type=log_type,
            source_id=source.id,
            source_label=source.label,
            allowed_log_types=source.log_types,
            content_encoding=content_encoding,
            metadata={name: request.headers[name] for name in KEPT_HEADERS if name in request.headers},
        )
        state = request.app.state
        batch = await to_thread.run_sync(
            _prepare_and_store, spool, ctx, settings, state.storage, state.turns, limiter=state.ingest_threads
        )
    request.state.accepted = batch.accepted
    request.state.quarantined = len(batch.quarantined)
    record_outcome(request, status=200)
    return JSONResponse(
        {"text": "Success", "code": 0, "accepted": batch.accepted, "quarantined": len(batch.quarantined)}
    )


def _prepare_and_store(
    spool: IO[bytes], ctx: RequestContext, settings: Settings, storage: Storage, turns: Turns
) -> Batch:
    """Read the spooled body back, prepare it and store it, in one worker thread (`app.ingest.turns`).

    One body at a time per worker (processing_concurrency): a parsed 11 MB body is several hundred MB
    of Python objects, and under the GIL a second one in parallel would not finish sooner. The fsync
    wait is outside the turn, so the next body is prepared meanwhile and appends share fsyncs.

    A request waiting for its turn holds its thread, so these threads come from a limiter of their
    own (`max_concurrent_requests` of them, one for every request that may be in progress), not from
    the 40 that the sink runners, the archive, /readyz and the status page share: queued behind
    waiting requests, those would stall just when the worker is busiest.
    """
    with turns:
        batch = prepare_request(read_spooled(spool), ctx, settings, storage)
    store_batch(batch, storage)
    return batch


def add_ingest_routes(app: FastAPI, sources: list[Source]) -> None:
    """The shared ingest routes, then each prefixed source's own."""
    prefixes: list[tuple[str, str | None]] = [(DEFAULT_PREFIX, None)]
    prefixes += [(source.path_prefix, source.id) for source in sources if source.path_prefix]
    for prefix, only_source in prefixes:
        for suffix, log_type, summary in INGEST_ROUTES:
            path = suffix if suffix.startswith("/services") and only_source is None else prefix + suffix
            app.add_api_route(
                path,
                _endpoint(log_type, only_source),
                methods=["POST"],
                summary=summary,
                openapi_extra=INGEST_OPENAPI,
                name=f"{only_source or 'shared'}:{path}",
            )


def _endpoint(log_type: LogType | None, only_source: str | None) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def endpoint(request: Request) -> JSONResponse:
        return await ingest(request, log_type, only_source=only_source)

    return endpoint


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the data directory takes writes")
async def readyz(request: Request) -> JSONResponse:
    storage: Storage = request.app.state.storage
    try:
        await run_in_threadpool(storage.check_writable)
    except StorageUnavailable as exc:
        return JSONResponse({"status": "unavailable", "detail": exc.detail}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/services/collector/health", summary="Splunk HEC health check")
async def hec_health() -> dict[str, str | int]:
    return {"text": "HEC is healthy", "code": 17}


@router.get("/metrics", summary="Prometheus metrics")
async def metrics() -> Response:
    return Response(metrics_text(), media_type=CONTENT_TYPE_LATEST)
