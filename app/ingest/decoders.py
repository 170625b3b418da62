"""Undo a request's Content-Encoding incrementally, never holding much more than the decoded-size cap.

Tailscale may compress its log stream with gzip or zstd and may or may not say so in the header, so the
receiver accepts `Content-Encoding: gzip | x-gzip | deflate | zstd | identity` (RFC 9110 §8.4), stacked
encodings, and, when the header is absent, sniffs the magic bytes as Panther does. The formats:

- gzip, RFC 1952 (https://www.rfc-editor.org/rfc/rfc1952): a body may hold several members; all are
  decoded (httpx stops after the first).
- deflate, RFC 1950 (https://www.rfc-editor.org/rfc/rfc1950) zlib-wrapped as HTTP specifies, or raw
  RFC 1951 (https://www.rfc-editor.org/rfc/rfc1951) as many clients send it.
- zstd, RFC 8878 (https://www.rfc-editor.org/rfc/rfc8878): a body may hold several frames; all are decoded.

Every decoder counts its output and raises `DecompressedTooLarge` the moment it passes `limit`, so a
small compressed bomb costs at most `limit` plus a small bounded overshoot, never its full expansion.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Final, Protocol, TypeVar

import zstandard

from app.errors import DecodeError, DecompressedTooLarge, UnsupportedEncoding

GZIP_MAGIC: Final = b"\x1f\x8b"
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"

_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
"""Tells zlib to expect a gzip header and trailer."""

_ZSTD_MAX_WINDOW: Final = 1 << 27
"""128 MiB, zstd's own default cap: a frame declaring a bigger window is refused, not allocated."""

_ZSTD_MAX_HEADER: Final = 18
"""The longest zstd frame header (RFC 8878 §3.1.1): enough bytes to read a frame's content size."""

_ZSTD_SLICE: Final = 512
"""Compressed bytes fed to zstd per call, which is what bounds the overshoot past `limit`.

zstd's `decompress()` has no output cap, so the output of one call is bounded by its input instead.
The densest block is an RLE block: a 3-byte header plus 1 byte that expands to the maximum block size
of 128 KiB (RFC 8878 §3.1.1.2.3). 512 input bytes hold at most 512 / 4 = 128 such blocks, plus one
carried over from the previous slice: (128 + 1) * 128 KiB ≈ 16.1 MiB per call, checked after each call.
"""


Chunk = bytes | memoryview
"""A piece of a body: slices of the raw body are memoryviews, not copies, and the identity decoder
hands them on as they are."""
ChunkT = TypeVar("ChunkT", bound=Chunk)


class Decoder(Protocol):
    """One Content-Encoding undone incrementally: feed raw chunks, then flush once at the end."""

    def decode(self, chunk: Chunk) -> Chunk:
        """Decode the next raw chunk; may return b"" while a frame or header is incomplete."""
        ...

    def flush(self) -> bytes:
        """Finish the stream; raises `DecodeError` if it ended mid-member or mid-frame."""
        ...


DecoderFactory = Callable[[int], Decoder]
"""Builds a decoder from its decoded-size limit."""


class _OutputCap:
    """Counts one decoder's output and refuses it as soon as the total passes the limit."""

    __slots__ = ("encoding", "limit", "total")

    def __init__(self, limit: int, encoding: str) -> None:
        self.limit = limit
        self.encoding = encoding
        self.total = 0

    @property
    def room(self) -> int:
        return self.limit - self.total

    def take(self, data: ChunkT) -> ChunkT:
        self.total += len(data)
        if self.total > self.limit:
            raise DecompressedTooLarge(
                f"the {self.encoding}-decoded body is larger than max_decompressed_bytes ({self.limit} bytes); "
                "send smaller batches or raise max_decompressed_bytes"
            )
        return data


def _inflate(inflater: zlib._Decompress, data: Chunk, cap: _OutputCap) -> bytes:
    # Asking for one byte more than the room left means a full-length answer is always over the limit,
    # so input zlib left behind in `unconsumed_tail` never needs decoding: the caller raises instead.
    try:
        out = inflater.decompress(data, cap.room + 1)
    except zlib.error as exc:
        raise DecodeError(f"the {cap.encoding} body is corrupt: {exc}") from exc
    return cap.take(out)


def _truncated(encoding: str) -> DecodeError:
    return DecodeError(f"the {encoding} body is truncated: it ended in the middle of a compressed stream")


class IdentityDecoder:
    """No encoding; still counts bytes so every path enforces `max_decompressed_bytes`."""

    def __init__(self, limit: int) -> None:
        self._cap = _OutputCap(limit, "identity")

    def decode(self, chunk: Chunk) -> Chunk:
        return self._cap.take(chunk)

    def flush(self) -> bytes:
        return b""


class GzipDecoder:
    """gzip, decoding member after member: `cat a.gz b.gz` is a valid gzip body (RFC 1952 §2.2)."""

    def __init__(self, limit: int) -> None:
        self._cap = _OutputCap(limit, "gzip")
        self._member: zlib._Decompress | None = None

    def decode(self, chunk: Chunk) -> Chunk:
        out: list[bytes] = []
        data = chunk
        while data:
            if self._member is None:
                self._member = zlib.decompressobj(_GZIP_WBITS)
            out.append(_inflate(self._member, data, self._cap))
            if not self._member.eof:
                break
            # The member ended inside this chunk; whatever follows must be the next member.
            data = self._member.unused_data
            self._member = None
        return b"".join(out)

    def flush(self) -> bytes:
        if self._member is not None:
            raise _truncated("gzip")
        return b""


class DeflateDecoder:
    """HTTP deflate: zlib-wrapped per RFC 9110, or raw deflate as many clients send it.

    Like httpx's DeflateDecoder it tries zlib first and falls back to raw, but it decides on the
    2-byte zlib header (RFC 1950 §2.2: method 8, window ≤ 32 KiB, header divisible by 31), so the
    choice does not depend on how the body happens to be split into chunks. A raw stream never
    passes that check, since its first byte would need non-zero padding bits.
    """

    def __init__(self, limit: int) -> None:
        self._cap = _OutputCap(limit, "deflate")
        self._head = b""
        self._inflater: zlib._Decompress | None = None

    def decode(self, chunk: Chunk) -> Chunk:
        if self._inflater is None:
            self._head += chunk
            if len(self._head) < 2:
                return b""
            chunk, self._head = self._head, b""
            cmf, flg = chunk[0], chunk[1]
            is_zlib = cmf & 0x0F == 8 and cmf >> 4 <= 7 and ((cmf << 8) | flg) % 31 == 0
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS if is_zlib else -zlib.MAX_WBITS)
        out = _inflate(self._inflater, chunk, self._cap)
        if self._inflater.unused_data:
            raise DecodeError("the deflate body is corrupt: it has data after the end of the compressed stream")
        return out

    def flush(self) -> bytes:
        if self._head or (self._inflater is not None and not self._inflater.eof):
            raise _truncated("deflate")
        return b""


class ZstdDecoder:
    """zstd, decoding frame after frame, fed in small slices so output stays near the limit."""

    def __init__(self, limit: int) -> None:
        self._cap = _OutputCap(limit, "zstd")
        self._context = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
        self._frame: zstandard.ZstdDecompressionObj | None = None
        self._head = b""  # the current frame's first bytes: its header declares its content size
        self._produced = 0

    def decode(self, chunk: Chunk) -> Chunk:
        out: list[bytes] = []
        for start in range(0, len(chunk), _ZSTD_SLICE):
            data = chunk[start : start + _ZSTD_SLICE]
            while data:
                if self._frame is None:
                    self._frame, self._head, self._produced = self._context.decompressobj(), b"", 0
                self._head += data[: _ZSTD_MAX_HEADER - len(self._head)]
                try:
                    produced = self._frame.decompress(data)
                except zstandard.ZstdError as exc:
                    raise DecodeError(f"the zstd body is corrupt: {exc}") from exc
                self._produced += len(produced)
                out.append(self._cap.take(produced))
                if not self._frame.eof:
                    break
                self._check_content_size()
                # A decompressobj decodes one frame; what is left of the slice starts the next.
                data = self._frame.unused_data
                self._frame = None
        return b"".join(out)

    def _check_content_size(self) -> None:
        """Refuse a frame shorter or longer than its header declares.

        libzstd checks this only when a frame is decoded in one call; fed in slices, a frame ending
        in an empty last block passes with data missing (found by fuzz/fuzz_framing.py), so the
        answer would depend on how the body happened to be cut.
        """
        try:
            declared = zstandard.get_frame_parameters(self._head).content_size
        except zstandard.ZstdError:
            return  # a skippable frame: no content size to hold it to
        if declared != zstandard.CONTENTSIZE_UNKNOWN and declared != self._produced:
            raise DecodeError(f"a zstd frame declares {declared} bytes but holds {self._produced}: it is corrupt")

    def flush(self) -> bytes:
        if self._frame is not None:
            raise _truncated("zstd")
        return b""


class SniffingDecoder:
    """No Content-Encoding header: choose gzip, zstd or identity from the body's magic bytes.

    Tailscale's HTTP compression is undocumented (see docs/tailscale-wire-format.md), so, like Panther,
    a compressed body without the header is still understood. A body shorter than a magic number is
    taken as is.
    """

    _MAGICS: Final[tuple[tuple[bytes, DecoderFactory], ...]] = ((GZIP_MAGIC, GzipDecoder), (ZSTD_MAGIC, ZstdDecoder))

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._head = b""
        self._inner: Decoder | None = None

    def decode(self, chunk: Chunk) -> Chunk:
        if self._inner is None:
            self._head += chunk
            factory = self._choose(self._head)
            if factory is None:
                return b""
            self._inner = factory(self._limit)
            chunk, self._head = self._head, b""
        return self._inner.decode(chunk)

    def flush(self) -> bytes:
        if self._inner is None:
            # Too short to hold a magic number, so it cannot be compressed.
            self._inner = IdentityDecoder(self._limit)
            return b"".join((self._inner.decode(self._head), self._inner.flush()))
        return self._inner.flush()

    def _choose(self, head: bytes) -> DecoderFactory | None:
        """The decoder the head calls for, or None while it is still a prefix of some magic number."""
        for magic, factory in self._MAGICS:
            if head.startswith(magic):
                return factory
        if any(magic.startswith(head) for magic, _ in self._MAGICS):
            return None
        return IdentityDecoder


class StackedDecoder:
    """Several encodings in one header; `stages` is already in decoding order (the header reversed)."""

    def __init__(self, stages: list[Decoder]) -> None:
        self._stages = stages

    def decode(self, chunk: Chunk) -> Chunk:
        for stage in self._stages:
            chunk = stage.decode(chunk)
        return chunk

    def flush(self) -> bytes:
        # Each stage's tail is the next stage's last input.
        data = b""
        for stage in self._stages:
            data = b"".join((stage.decode(data), stage.flush()))
        return data


SUPPORTED_DECODERS: Final[dict[str, DecoderFactory]] = {
    "identity": IdentityDecoder,
    "gzip": GzipDecoder,
    "x-gzip": GzipDecoder,
    "deflate": DeflateDecoder,
    "zstd": ZstdDecoder,
}
"""Content-Encoding tokens (lower case) and the decoder for each."""


def make_decoder(content_encoding: str | None, *, limit: int) -> Decoder:
    """The decoder for a Content-Encoding header value, each stage capped at `limit` decoded bytes.

    The value is a case-insensitive comma list in the order the encodings were applied, so they are
    undone in reverse (RFC 9110 §8.4). Empty list elements are ignored (RFC 9110 §5.6.1); no
    encoding at all means "sniff the body".
    """
    names = [name.strip().lower() for name in (content_encoding or "").split(",")]
    names = [name for name in names if name]
    if not names:
        return SniffingDecoder(limit)
    for name in names:
        if name not in SUPPORTED_DECODERS:
            raise UnsupportedEncoding(
                f"Content-Encoding {name!r} is not supported; use one of: {', '.join(SUPPORTED_DECODERS)}"
            )
    stages = [SUPPORTED_DECODERS[name](limit) for name in reversed(names) if name != "identity"]
    if not stages:
        return IdentityDecoder(limit)
    return stages[0] if len(stages) == 1 else StackedDecoder(stages)
