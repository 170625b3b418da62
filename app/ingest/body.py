"""Reading a request body without trusting the sender about its size.

Tailscale streams bodies with `Transfer-Encoding: chunked` and no Content-Length, so the body is
read from the ASGI stream (Starlette's `Request.stream()`), never from Content-Length alone. The
cap is checked before reading when a Content-Length is declared, and again on every chunk, so an
oversized body is refused without being held in memory.

A received body waits for its turn to be processed (one at a time per worker), and many may wait at
once: 64 concurrent requests of 32 MB would be 2 GB of memory. So a body larger than
`SPOOL_THRESHOLD` waits in an unnamed temporary file in the data directory instead, where it costs
page cache the kernel can reclaim, and is read back only when its turn comes. With 16 clients
posting 11 MB bodies, peak RSS per worker went from 288-300 MB to 207 MB (bench/RESULTS.md).
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Final

from app.errors import BodyTooLarge, StorageUnavailable
from app.ingest.decoders import make_decoder

DECODE_SLICE = 64 * 1024
"""Bytes fed to a decoder per call: small enough that a decoder's output per call stays bounded."""
SPOOL_THRESHOLD: Final = 1024 * 1024
"""Bodies up to this size wait in memory (Tailscale's usual ones are a few hundred KB); larger ones on disk."""


async def read_capped(
    chunks: AsyncIterator[bytes], *, content_length: str | None, limit: int, spool_dir: Path
) -> IO[bytes]:
    """The whole raw body, spooled; or `BodyTooLarge` as soon as it is known to exceed `limit` bytes.

    The caller closes the returned file, which removes it. A body that cannot be spooled (a full
    disk) raises `StorageUnavailable`: it could not have been stored either.
    """
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise BodyTooLarge(_too_large(f"Content-Length {content_length}", limit))
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_THRESHOLD, dir=str(spool_dir))
    try:
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(_too_large("the body", limit))
            spool.write(chunk)
    except OSError as exc:
        spool.close()
        raise StorageUnavailable(f"could not spool the body to the data directory: {exc.strerror}") from exc
    except BaseException:
        spool.close()
        raise
    return spool


def read_spooled(spool: IO[bytes]) -> bytes:
    """The bytes of a body `read_capped` spooled; call it in a worker thread (it may read from disk)."""
    spool.seek(0)
    return spool.read()


def decode_body(raw: bytes, content_encoding: str | None, *, limit: int, step: int = DECODE_SLICE) -> bytes:
    """Undo the body's Content-Encoding (or sniffed compression), capped at `limit` output bytes.

    The decoder is fed `step` bytes at a time; the fuzzers vary it to check that the way a body is cut
    never changes the result.
    """
    decoder = make_decoder(content_encoding, limit=limit)
    view = memoryview(raw)  # slices of a view are not copies
    parts = [decoder.decode(view[start : start + step]) for start in range(0, len(raw), step)]
    parts.append(decoder.flush())
    return b"".join(parts)


def _too_large(what: str, limit: int) -> str:
    return f"{what} exceeds max_body_bytes ({limit} bytes); send smaller batches or raise TAILSCRIBE_MAX_BODY_BYTES"
