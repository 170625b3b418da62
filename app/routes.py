"""The HTTP endpoints: thin wrappers that authenticate, read the body and hand it to the pipeline.

Endpoints and answers follow the contract in docs/architecture.md; ingest answers are Splunk HEC
JSON (https://docs.splunk.com/Documentation/Splunk/latest/Data/TroubleshootHTTPEventCollector).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from app.auth import TokenChecker
from app.errors import StorageUnavailable
from app.ingest.body import read_capped
from app.ingest.pipeline import RequestContext, process_request
from app.settings import Settings
from app.storage import Storage
from app.types import LogType

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


async def ingest(request: Request, log_type: LogType | None) -> JSONResponse:
    """Authenticate, read, process and store one request; answer only once it is durable."""
    settings: Settings = request.app.state.settings
    tokens: TokenChecker = request.app.state.tokens
    storage: Storage = request.app.state.storage
    tokens.check(request.headers.get("authorization"))
    request.state.source_id = settings.source_id
    try:
        raw = await read_capped(
            request.stream(), content_length=request.headers.get("content-length"), limit=settings.max_body_bytes
        )
    except ClientDisconnect:
        # Nobody is left to answer; the log line and the metric are all that remain of it.
        request.state.reason = "client_disconnected"
        return JSONResponse({"text": "Client disconnected", "code": 6}, status_code=400)
    request.state.bytes = len(raw)
    ctx = RequestContext(
        request_id=request.state.request_id,
        log_type=log_type,
        source_id=settings.source_id,
        source_label=settings.source_label,
        content_encoding=request.headers.get("content-encoding"),
        metadata={name: request.headers[name] for name in KEPT_HEADERS if name in request.headers},
    )
    batch = await run_in_threadpool(process_request, raw, ctx, settings, storage)
    request.state.accepted = len(batch.accepted)
    request.state.quarantined = len(batch.quarantined)
    return JSONResponse(
        {"text": "Success", "code": 0, "accepted": len(batch.accepted), "quarantined": len(batch.quarantined)}
    )


@router.post("/v1/tailscale/audit", openapi_extra=INGEST_OPENAPI, summary="Receive Tailscale.Audit records")
async def audit(request: Request) -> JSONResponse:
    return await ingest(request, "audit")


@router.post("/v1/tailscale/network", openapi_extra=INGEST_OPENAPI, summary="Receive Tailscale.Network records")
async def network(request: Request) -> JSONResponse:
    return await ingest(request, "network")


@router.post(
    "/services/collector/event", openapi_extra=INGEST_OPENAPI, summary="Splunk HEC: log type told by each record"
)
async def hec_event(request: Request) -> JSONResponse:
    return await ingest(request, None)


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
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
