"""uvicorn's httptools protocol with the two limits it leaves out: a deadline and a size cap on request heads.

uvicorn arms `timeout_keep_alive` only after a response, so a connection that never completes its
request line and headers is held forever (slowloris), and httptools accumulates header bytes
without limit (quadratic CPU on the event loop, unbounded memory: a 64 MiB header stalled every
client for seconds in tests/e2e/test_hostile_http.py). This subclass answers 408 when a head is not
complete within `header_timeout` seconds of its first byte (or of the connection), and 431 when it
passes `max_header_bytes`, then closes the connection.

uvicorn takes the class where it takes "httptools" (`uvicorn.run(..., http=GuardedHttpToolsProtocol)`)
and pickles it by reference for its workers, so the limits are class attributes: `create_app`
sets them from the settings in every process, before the first connection.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_END: Final = b"\r\n\r\n"
LINGER: Final = 1.0
"""Seconds input is read and dropped after a refusal before closing: closing with unread input makes
the kernel send a reset, which can destroy the answer before the client reads it (RFC 9112 §9.6)."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout: ClassVar[float] = 10.0
    max_header_bytes: ClassVar[int] = 64 * 1024

    @classmethod
    def configure(cls, *, header_timeout: float, max_header_bytes: int) -> None:
        cls.header_timeout = header_timeout
        cls.max_header_bytes = max_header_bytes

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = True
        self._head_bytes = 0
        self._tail = b""
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: drop what the client is still sending
        if self._in_head:
            # Count only bytes up to the end of this head: the rest of the chunk is body or the next request.
            window = self._tail + data
            end = window.find(_END)
            self._head_bytes += len(data) if end < 0 else max(0, end + len(_END) - len(self._tail))
            self._tail = window[-3:]
            if self._head_bytes > self.max_header_bytes:
                self._refuse(431, b"Request Header Fields Too Large")
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

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Waiting for the next request is keep-alive's business (its own timer); the head timer starts
        # again with the next request's first byte (on_message_begin).
        self._in_head, self._head_bytes, self._tail = True, 0, b""

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
            self._refuse(408, b"Request Timeout")

    def _refuse(self, status: int, phrase: bytes) -> None:
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
