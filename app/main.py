"""`create_app(settings)`: the FastAPI application, wired from one `Settings`.

Called by the CLI with explicit settings, or by uvicorn in factory mode
(`uvicorn app.main:create_app --factory`) where it reads `TAILSCRIBE_*` from the environment.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app import __version__
from app.auth import TokenChecker
from app.errors import AuthError, IngestError, StorageUnavailable
from app.middleware import AccessLogMiddleware
from app.observability import AUTH_FAILURES, REJECTIONS, STORAGE_ERRORS, log_event
from app.routes import router
from app.settings import Settings
from app.storage.local import LocalStorage


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    tokens = TokenChecker(settings.all_tokens())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.storage = LocalStorage(settings.data_dir)
        log_event(logging.INFO, "started", version=__version__, data_dir=str(settings.data_dir))
        yield

    app = FastAPI(title="tailscribe", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.tokens = tokens
    app.include_router(router)
    app.add_exception_handler(IngestError, handle_ingest_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, handle_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, handle_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, handle_unexpected_error)
    known_paths = frozenset(route.path for route in router.routes if hasattr(route, "path"))
    app.add_middleware(AccessLogMiddleware, known_paths=known_paths)
    return app


async def handle_ingest_error(request: Request, exc: IngestError) -> JSONResponse:
    """The one place an `IngestError` becomes its status, HEC body, metric and log fields."""
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
