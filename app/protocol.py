"""uvicorn's httptools protocol with the limits it leaves out, and refusals in the receiver's own shape.

uvicorn arms `timeout_keep_alive` only after a response, so a connection that never completes its
request line and headers is held forever (slowloris), and httptools accumulates header bytes
without limit (quadratic CPU on the event loop, unbounded memory: a 64 MiB header stalled every
client for seconds in tests/e2e/test_hostile_http.py). This subclass answers 408 when a head is not
complete within `header_timeout` seconds of its first byte (or of the connection), and 431 when it
passes `max_header_bytes`, then closes the connection.

Bytes httptools cannot parse get 400. uvicorn's own answer is text/plain, sent at once: it logged
no event and counted nothing, and when the bad bytes followed a complete request in the same packet
the 400 went out first and the connection closed before that request, already stored, was answered.
Here the 400 is JSON like every other refusal, and waits for the answers of the requests ahead of it.
Every refusal made at this level is logged as a "request refused" event and counted in
`tailscribe_rejected_requests{reason}`, since the application (and its access log) never sees it.

With several workers, the protocol also keeps the worker's share of connections even
(`app.balancing`): it counts the connections it holds, and a request that arrives while the worker
holds more than its share is answered with `Connection: close`.

uvicorn takes the class where it takes "httptools" (`uvicorn.run(..., http=GuardedHttpToolsProtocol)`)
and pickles it by reference for its workers, so the limits are class attributes: `create_app`
sets them from the settings in every process, before the first connection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.balancing import ConnectionBalancer
from app.observability import CONNECTIONS_REBALANCED, REJECTIONS, log_event

_END: Final = b"\r\n\r\n"
LINGER: Final = 1.0
"""Seconds input is read and dropped after a refusal before closing: closing with unread input makes
the kernel send a reset, which can destroy the answer before the client reads it (RFC 9112 §9.6)."""


MALFORMED: Final = "malformed_http"


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout: ClassVar[float] = 10.0
    max_header_bytes: ClassVar[int] = 64 * 1024
    balancer: ClassVar[ConnectionBalancer | None] = None

    @classmethod
    def configure(cls, *, header_timeout: float, max_header_bytes: int, balance_workers: int = 1) -> None:
        """Set the limits; `balance_workers` > 1 keeps this worker's share of connections even."""
        cls.header_timeout = header_timeout
        cls.max_header_bytes = max_header_bytes
        cls.balancer = ConnectionBalancer(balance_workers) if balance_workers > 1 else None

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = True
        self._head_bytes = 0
        self._tail = b""
        self._refused = False
        self._refuse_after_response = False
        """Bad bytes followed a complete request: refuse once the answers ahead of them are sent."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.balancer is not None:
            connection = transport.get_extra_info("socket")  # its family: which connections to count
            family = None if connection is None else connection.family
            self.balancer.opened(transport.get_extra_info("sockname")[1], family)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.balancer is not None:
            self.balancer.closed()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self._refuse_after_response:
            return  # lingering: drop what the client is still sending
        if self._in_head:
            # Count only bytes up to the end of this head: the rest of the chunk is body or the next request.
            window = self._tail + data
            end = window.find(_END)
            self._head_bytes += len(data) if end < 0 else max(0, end + len(_END) - len(self._tail))
            self._tail = window[-3:]
            if self._head_bytes > self.max_header_bytes:
                self._refuse(431, b"Request Header Fields Too Large", "headers_too_large")
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:
            self._in_head, self._head_bytes, self._tail = True, 0, b""
        self._arm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()
        if self.balancer is not None and self.cycle.keep_alive and self.balancer.should_close(self.loop.time()):
            # uvicorn's own way to end a connection gracefully (its `shutdown`): the answer to this
            # request carries `Connection: close`, and the connection closes once it is sent.
            self.cycle.keep_alive = False
            CONNECTIONS_REBALANCED.inc()
            log_event(logging.DEBUG, "connection rebalanced", held=self.balancer.held)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Waiting for the next request is keep-alive's business (its own timer); the head timer starts
        # again with the next request's first byte (on_message_begin).
        self._in_head, self._head_bytes, self._tail = True, 0, b""
        if self._refuse_after_response and self.cycle.response_complete:  # no pipelined request left
            self._answer(400, b"Bad Request")  # counted and logged when the bytes came

    def send_400_response(self, msg: str) -> None:
        """Called by uvicorn when httptools cannot parse what the client sent (`msg` is uvicorn's text)."""
        cycle = self.cycle
        if cycle is not None and not cycle.more_body and not cycle.response_complete:
            # The bad bytes came after a complete request that is still being processed: answer it first.
            # (If that answer closes the connection, the 400 is never sent; the refusal still counts.)
            self._refuse_after_response = True
            _count_refusal(400, MALFORMED)
            return
        if cycle is not None and not cycle.response_complete:
            # The request itself is broken mid-body: the application sees a disconnect, as when uvicorn closes.
            cycle.disconnected = True
            cycle.message_event.set()
        self._refuse(400, b"Bad Request", MALFORMED)

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head:
            self._refuse(408, b"Request Timeout", "header_timeout")

    def _refuse(self, status: int, phrase: bytes, reason: str) -> None:
        """Count and log the refusal, then answer it; one that cannot be sent any more is not counted."""
        if not (self.transport.is_closing() or self._refused):
            _count_refusal(status, reason)
        self._answer(status, phrase)

    def _answer(self, status: int, phrase: bytes) -> None:
        """Answer in the receiver's JSON shape and close: the parser's state cannot be trusted any more."""
        self._disarm()
        if self.transport.is_closing() or self._refused:
            return
        self._refused = True
        body = b'{"text":"%s","code":6}' % phrase
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        self.transport.write(head % (status, phrase, len(body)) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER, self.transport.close)


def _count_refusal(status: int, reason: str) -> None:
    """The metric and log line of a refusal the application never sees (so its access log cannot)."""
    REJECTIONS.labels(reason).inc()
    log_event(logging.WARNING, "request refused", status=status, reason=reason)
