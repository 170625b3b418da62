"""`create_app(settings)`: the FastAPI application, wired from one `Settings`.

Called by the CLI with explicit settings, or by uvicorn in factory mode
(`uvicorn app.main:create_app --factory`) where it reads `TAILSCRIBE_*` from the environment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import CapacityLimiter
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from app import __version__
from app.auth import Authenticator
from app.errors import AuthError, IngestError, StorageUnavailable
from app.ingest.turns import Turns
from app.journal.checkpoints import Slot
from app.middleware import AccessLogMiddleware
from app.observability import AUTH_FAILURES, REJECTIONS, STORAGE_ERRORS, configure_logging, log_event
from app.protocol import GuardedHttpToolsProtocol
from app.routes import add_ingest_routes, router
from app.settings import Settings
from app.sinks import build_sinks
from app.sinks.adoption import SlotAdopter
from app.sinks.runner import open_slot
from app.status import StatusBoard, record_outcome
from app.status import router as status_router
from app.storage.files import ensure_dir
from app.storage.local import LocalStorage
from app.workers import pin_worker


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application; raises `ValueError`/`OSError` naming the problem when tokens cannot be loaded."""
    settings = settings or Settings()
    authenticator = Authenticator(settings.effective_sources())
    sinks = build_sinks(settings)
    GuardedHttpToolsProtocol.configure(
        header_timeout=settings.header_timeout,
        max_header_bytes=settings.max_header_bytes,
        balance_workers=settings.workers if settings.rebalance_connections else 1,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        slot = Slot.first_free(settings.data_dir / "journal")
        pin = pin_worker(settings.workers, settings.data_dir / "cpus") if settings.pin_workers else None
        group = open_slot(slot.directory, settings, sinks)
        journal = group.journal
        # Drains slots left behind by a run with more workers.
        adopter = SlotAdopter(settings, slot, [config.name for config, _ in sinks])
        app.state.storage = LocalStorage(settings.data_dir, journal)
        app.state.spool_dir = settings.data_dir / "spool"  # large bodies wait here (app.ingest.body)
        ensure_dir(app.state.spool_dir)
        group.start()
        adopter.start()
        log_event(
            logging.INFO,
            "started",
            version=__version__,
            data_dir=str(settings.data_dir),
            journal_slot=slot.number,
            cpu=pin.cpu if pin else None,
            sinks=[config.name for config, _ in sinks],
        )
        try:
            yield
        finally:
            # Acknowledged rows are already in the journal; this only lets sinks deliver what they hold.
            await asyncio.gather(group.stop(timeout=settings.shutdown_timeout), adopter.stop())
            journal.close()
            slot.release()
            if pin:
                pin.release()
            log_event(logging.INFO, "stopped")

    # No redirect_slashes: Starlette would answer `POST .../network/` with a 307 to a URL built from
    # the request's Host and scheme. Behind a TLS-terminating proxy that scheme is http, and a sender
    # following the 307 on the same host re-sends its Authorization header in clear text. A 404 is
    # the honest answer to a mistyped URL.
    app = FastAPI(title="tailscribe", version=__version__, lifespan=lifespan, redirect_slashes=False)
    app.state.settings = settings
    app.state.authenticator = authenticator
    app.state.inflight = 0
    app.state.turns = Turns(settings.processing_concurrency)
    app.state.ingest_threads = CapacityLimiter(settings.max_concurrent_requests)  # app.routes._prepare_and_store
    app.state.status = StatusBoard()
    add_ingest_routes(app, authenticator.sources)
    app.include_router(router)
    app.include_router(status_router)
    app.add_exception_handler(IngestError, handle_ingest_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, handle_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, handle_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, handle_unexpected_error)
    known_paths = frozenset(route.path for route in app.routes if isinstance(route, APIRoute))
    app.add_middleware(AccessLogMiddleware, known_paths=known_paths)
    return app


def create_worker_app() -> FastAPI:
    """Factory for uvicorn's worker processes: settings from the environment the CLI exported."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)  # malloc is tuned by the environment `serve` exported (app.allocator)


async def handle_ingest_error(request: Request, exc: IngestError) -> JSONResponse:
    """The one place an `IngestError` becomes its status, HEC body, metric and log fields."""
    record_outcome(request, status=exc.status)
    request.state.reason = exc.reason
    request.state.detail = exc.detail
    if isinstance(exc, AuthError):
        AUTH_FAILURES.labels(exc.reason).inc()
    else:
        REJECTIONS.labels(exc.reason).inc()
    if isinstance(exc, StorageUnavailable):
        STORAGE_ERRORS.inc()
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())


async def handle_http_error(request: Request, exc: HTTPException | RequestValidationError) -> JSONResponse:
    """Unknown paths and wrong methods answer in the same JSON shape as everything else."""
    status = exc.status_code if isinstance(exc, HTTPException) else 422
    detail = exc.detail if isinstance(exc, HTTPException) else "invalid request"
    request.state.reason = f"http_{status}"
    REJECTIONS.labels(request.state.reason).inc()
    headers = getattr(exc, "headers", None)
    return JSONResponse(
        {"text": str(detail), "code": status, "detail": str(detail)}, status_code=status, headers=headers
    )


async def handle_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug: log it with its traceback, answer HEC's 'Internal server error', never the traceback."""
    request.state.reason = "internal_error"
    REJECTIONS.labels("internal_error").inc()
    logging.getLogger("tailscribe").error("unexpected error", exc_info=exc)
    return JSONResponse({"text": "Internal server error", "code": 8}, status_code=500)
