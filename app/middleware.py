"""Per-request bookkeeping around every endpoint: a request id, one log line, one metric.

A pure ASGI middleware (not Starlette's BaseHTTPMiddleware, which buffers and costs a task per
request). Handlers leave what they learned (source, records, bytes, rejection reason) in
`request.state`, which is `scope["state"]`, and this writes it out once the answer is sent.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability import REQUEST_DURATION, REQUESTS, log_event

QUIET_PATHS: Final = frozenset({"/", "/healthz", "/readyz", "/metrics", "/services/collector/health"})
"""Probed every few seconds by orchestrators (and the status page refreshes itself): debug level only."""

LOGGED_STATE: Final = ("source_id", "accepted", "quarantined", "bytes", "reason", "detail")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, *, known_paths: frozenset[str]) -> None:
        self.app = app
        self.known_paths = known_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = scope["path"]
            # Scanners probe endless paths; only known routes become metric labels.
            route = path if path in self.known_paths else "unmatched"
            duration = time.perf_counter() - started
            REQUESTS.labels(route, str(status)).inc()
            REQUEST_DURATION.labels(route).observe(duration)
            fields = {key: state[key] for key in LOGGED_STATE if key in state}
            log_event(
                logging.DEBUG if path in QUIET_PATHS and status < 500 else logging.INFO,
                "request",
                request_id=request_id,
                method=scope["method"],
                route=route,
                status=status,
                duration_ms=round(duration * 1000, 2),
                user_agent=_header(scope, b"user-agent"),
                **fields,
            )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
