"""Reading a request body without trusting the sender about its size.

Tailscale streams bodies with `Transfer-Encoding: chunked` and no Content-Length, so the body is
read from the ASGI stream (Starlette's `Request.stream()`), never from Content-Length alone. The
cap is checked before reading when a Content-Length is declared, and again on every chunk, so an
oversized body is refused without being held in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from app.errors import BodyTooLarge
from app.ingest.decoders import make_decoder

DECODE_SLICE = 64 * 1024
"""Bytes fed to a decoder per call: small enough that a decoder's output per call stays bounded."""


async def read_capped(chunks: AsyncIterator[bytes], *, content_length: str | None, limit: int) -> bytes:
    """The whole raw body, or `BodyTooLarge` as soon as it is known to exceed `limit` bytes."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise BodyTooLarge(_too_large(f"Content-Length {content_length}", limit))
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(_too_large("the body", limit))
    return bytes(body)


def decode_body(raw: bytes, content_encoding: str | None, *, limit: int) -> bytes:
    """Undo the body's Content-Encoding (or sniffed compression), capped at `limit` output bytes."""
    decoder = make_decoder(content_encoding, limit=limit)
    view = memoryview(raw)  # slices of a view are not copies
    parts = [decoder.decode(view[start : start + DECODE_SLICE]) for start in range(0, len(raw), DECODE_SLICE)]
    parts.append(decoder.flush())
    return b"".join(parts)


def _too_large(what: str, limit: int) -> str:
    return f"{what} exceeds max_body_bytes ({limit} bytes); send smaller batches or raise TAILSCRIBE_MAX_BODY_BYTES"
