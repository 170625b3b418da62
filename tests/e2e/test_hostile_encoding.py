"""Hostile Content-Encoding against a real receiver: bombs, lying headers, truncated and unknown encodings.

The answers (docs/architecture.md, app/errors.py):
- a body that decodes past max_decompressed_bytes is 413 and nothing of it is kept: keeping what the
  cap exists to refuse would defeat it. The receiver's memory stays near the cap, not the bomb.
- a body its encoding cannot undo (corrupt, truncated, mislabelled, a zstd window over 128 MiB) is
  400 `decode_error`, or 400 `invalid_json` when the decoding worked but left no JSON; either way the
  raw body is kept under data/quarantine/bodies for inspection, byte for byte.
- an encoding the receiver does not know is 415 and nothing is kept.
- encodings are undone exactly as declared, in reverse order (RFC 9110 §8.4), and only sniffed when
  no Content-Encoding is sent: gzip inside gzip under a single `gzip` is not JSON (400), under
  `gzip, gzip` it is (200).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Callable, Iterator

import pytest
import zstandard

from tests.e2e.conftest import Server
from tests.e2e.hostile import (
    MEMORY_MARGIN,
    NETWORK,
    NETWORK_URL,
    ZSTD_OVERSHOOT,
    Ledger,
    Memory,
    MiB,
    assert_serving,
    bearer,
    post,
    raw_answer,
    request_bytes,
    start_server,
)

MAX_BODY = 2 * MiB
MAX_DECODED = 16 * MiB
BOMB_SIZE = 1 << 30
"""Every bomb below expands to 1 GiB of zeros, 64 times the decoded cap."""


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        tmp_path_factory.mktemp("encoding"),
        "--max-body-bytes",
        str(MAX_BODY),
        "--max-decompressed-bytes",
        str(MAX_DECODED),
    )
    yield server
    server.stop()


# --- bombs, built in milliseconds rather than by compressing 1 GiB -------------------------------------

ZEROS = bytes(MiB)


def deflate_of_zeros(size: int) -> tuple[bytes, bytes, bytes]:
    """Raw deflate of `size` zeros as (segment, count, end): each 1 MiB segment ends in a full flush,
    which byte-aligns it and resets the window, so repeating its bytes is a valid stream."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = compressor.compress(ZEROS) + compressor.flush(zlib.Z_FULL_FLUSH)
    return segment, struct.pack("<I", size // MiB), compressor.flush(zlib.Z_FINISH)


def gzip_bomb() -> bytes:
    """One gzip member (RFC 1952) holding 1 GiB of zeros, CRC and length included: ~1 MiB."""
    segment, _, end = deflate_of_zeros(BOMB_SIZE)
    crc = 0
    for _ in range(BOMB_SIZE // MiB):
        crc = zlib.crc32(ZEROS, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + segment * (BOMB_SIZE // MiB) + end + struct.pack("<II", crc, BOMB_SIZE & 0xFFFFFFFF)


def raw_deflate_bomb() -> bytes:
    segment, _, end = deflate_of_zeros(BOMB_SIZE)
    return segment * (BOMB_SIZE // MiB) + end


def gzip_members_bomb() -> bytes:
    """1,024 gzip members of 1 MiB of zeros each: the member loop must count across members."""
    return gzip.compress(ZEROS, compresslevel=9, mtime=0) * (BOMB_SIZE // MiB)


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def zstd_block(kind: int, size: int, *, last: bool, payload: bytes) -> bytes:
    """RFC 8878 §3.1.1.2: a 3-byte little-endian header (last, type, size), then the content."""
    return struct.pack("<I", (size << 3) | (kind << 1) | int(last))[:3] + payload


def zstd_rle_bomb() -> bytes:
    """The densest zstd there is: RLE blocks of 128 KiB, 4 bytes each; 1 GiB in 32 KiB."""
    blocks = BOMB_SIZE // (128 * 1024)
    # Frame header: no content size, no checksum; window descriptor 0x38 = 128 KiB.
    return (
        ZSTD_MAGIC
        + b"\x00\x38"
        + b"".join(zstd_block(1, 128 * 1024, last=i == blocks - 1, payload=b"\0") for i in range(blocks))
    )


def zstd_huge_window() -> bytes:
    """A frame declaring the largest window zstd can express (window descriptor 0xFF: about 3.75 TiB)."""
    return ZSTD_MAGIC + b"\x00\xff" + zstd_block(0, 1, last=True, payload=b"{")


def zstd_huge_content() -> bytes:
    """A single-segment frame whose declared content size (2**62 bytes) is its window."""
    return ZSTD_MAGIC + b"\xe0" + struct.pack("<Q", 1 << 62) + zstd_block(0, 1, last=True, payload=b"{")


@pytest.fixture(scope="session")
def bombs() -> dict[str, bytes]:
    """Built once per session (~0.3 s, the gzip CRC over 1 GiB being most of it)."""
    single = gzip_bomb()
    assert zlib.decompressobj(31).decompress(single[:65536], 1) == b"\0"  # a real gzip stream
    return {
        "gzip": single,
        "gzip-members": gzip_members_bomb(),
        "deflate": raw_deflate_bomb(),
        "zstd": zstd_rle_bomb(),
        "gzip-in-gzip": gzip.compress(single, compresslevel=1, mtime=0),
    }


@pytest.mark.parametrize(
    ("bomb", "content_encoding", "overshoot"),
    [
        pytest.param("gzip", "gzip", 0, id="gzip-1GiB"),
        pytest.param("gzip", None, 0, id="gzip-1GiB-sniffed"),
        pytest.param("gzip-members", "gzip", 0, id="gzip-1024-members"),
        pytest.param("deflate", "deflate", 0, id="raw-deflate-1GiB"),
        pytest.param("zstd", "zstd", ZSTD_OVERSHOOT, id="zstd-rle-1GiB"),
        pytest.param("zstd", None, ZSTD_OVERSHOOT, id="zstd-rle-1GiB-sniffed"),
        pytest.param("gzip-in-gzip", "gzip, gzip", 0, id="nested-gzip-bomb"),
    ],
)
def test_a_decompression_bomb_is_413_keeps_nothing_and_stays_within_the_cap(
    receiver: Server, bombs: dict[str, bytes], bomb: str, content_encoding: str | None, overshoot: int
):
    """1 GiB of zeros in at most 1 MiB on the wire. Memory bound: the raw body, the decoded parts and
    their join (2 x max_decompressed_bytes), zstd's per-call overshoot, and `MEMORY_MARGIN`."""
    body = bombs[bomb]
    before = Ledger.of(receiver)
    headers = {"Content-Encoding": content_encoding} if content_encoding else {}

    with Memory(receiver).watch() as memory:
        answer = post(receiver, NETWORK_URL, body, headers)

    assert answer.status_code == 413, answer.text
    assert answer.json()["code"] == 6 and answer.json()["text"] == "Request entity too large"
    assert "max_decompressed_bytes" in answer.json()["detail"]
    assert before.since(receiver).nothing
    print(f"memory {bomb} ({content_encoding}): {memory}")
    assert memory.growth <= len(body) + 2 * MAX_DECODED + overshoot + MEMORY_MARGIN, str(memory)
    assert_serving(receiver)


def test_repeated_bombs_do_not_grow_the_process(receiver: Server, bombs: dict[str, bytes]):
    """Ten bombs in a row: whatever the first one leaves in the allocator is reused, never accumulated."""
    memory = Memory(receiver)
    post(receiver, NETWORK_URL, bombs["gzip"], {"Content-Encoding": "gzip"})
    after_first = memory.rss()

    for _ in range(10):
        assert post(receiver, NETWORK_URL, bombs["gzip"], {"Content-Encoding": "gzip"}).status_code == 413

    assert memory.rss() <= after_first + MEMORY_MARGIN, (after_first, memory.rss())
    assert_serving(receiver)


def gzip_of(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zstd_of(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def corrupt_crc(data: bytes) -> bytes:
    return data[:-8] + bytes([data[-8] ^ 0xFF]) + data[-7:]


MALFORMED: list[tuple[str, Callable[[], bytes], str | None, str, str]] = [
    # id, body, Content-Encoding, reason kept beside the body, words of the detail
    ("zstd-window-3.75TiB", zstd_huge_window, "zstd", "decode_error", "too much memory"),
    ("zstd-window-3.75TiB-sniffed", zstd_huge_window, None, "decode_error", "too much memory"),
    ("zstd-content-size-2**62", zstd_huge_content, "zstd", "decode_error", "too much memory"),
    ("gzip-in-gzip-declared-once", lambda: gzip_of(gzip_of(NETWORK)), "gzip", "invalid_json", "expected a JSON"),
    ("gzip-in-gzip-sniffed", lambda: gzip_of(gzip_of(NETWORK)), None, "invalid_json", "expected a JSON"),
    ("plain-json-labelled-gzip", lambda: NETWORK, "gzip", "decode_error", "gzip body is corrupt"),
    ("plain-json-labelled-zstd", lambda: NETWORK, "zstd", "decode_error", "zstd body is corrupt"),
    ("gzip-labelled-zstd", lambda: gzip_of(NETWORK), "zstd", "decode_error", "zstd body is corrupt"),
    ("zstd-labelled-gzip", lambda: zstd_of(NETWORK), "gzip", "decode_error", "gzip body is corrupt"),
    ("zstd-labelled-deflate", lambda: zstd_of(NETWORK), "deflate", "decode_error", "deflate body"),
    ("gzip-labelled-identity", lambda: gzip_of(NETWORK), "identity", "invalid_json", "JSON"),
    ("gzip-cut-in-half", lambda: gzip_of(NETWORK)[: len(gzip_of(NETWORK)) // 2], "gzip", "decode_error", "truncated"),
    ("gzip-without-trailer", lambda: gzip_of(NETWORK)[:-8], "gzip", "decode_error", "truncated"),
    ("gzip-wrong-crc", lambda: corrupt_crc(gzip_of(NETWORK)), "gzip", "decode_error", "corrupt"),
    ("gzip-then-garbage", lambda: gzip_of(NETWORK) + b"garbage!", "gzip", "decode_error", "corrupt"),
    ("zstd-cut-in-half", lambda: zstd_of(NETWORK)[: len(zstd_of(NETWORK)) // 2], "zstd", "decode_error", "truncated"),
    ("zstd-cut-sniffed", lambda: zstd_of(NETWORK)[:-3], None, "decode_error", "truncated"),
    ("deflate-cut-in-half", lambda: zlib.compress(NETWORK)[:20], "deflate", "decode_error", "truncated"),
]


@pytest.mark.parametrize(
    ("make_body", "content_encoding", "reason", "detail"),
    [pytest.param(*case[1:], id=case[0]) for case in MALFORMED],
)
def test_a_body_its_encoding_cannot_undo_is_400_and_kept_raw(
    receiver: Server, make_body: Callable[[], bytes], content_encoding: str | None, reason: str, detail: str
):
    """Corrupt, truncated or mislabelled: 400, and the raw body (not a decoded part of it) is kept,
    with its reason and request headers, never the Authorization header. Nothing is accepted, not
    even the records a truncated stream had already yielded."""
    body = make_body()
    before = Ledger.of(receiver)
    headers = {"Content-Encoding": content_encoding} if content_encoding else {}

    with Memory(receiver).watch() as memory:
        answer = post(receiver, NETWORK_URL, body, headers)

    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == 6 and answer.json()["text"] == "Invalid data format"
    assert detail in answer.json()["detail"]
    stored = before.since(receiver)
    assert (stored.accepted, stored.quarantined) == (0, 0)
    assert stored.bodies == [body] and stored.reasons == [reason]
    assert "authorization" not in stored.metadata[0]
    assert stored.metadata[0].get("content-encoding") == content_encoding
    assert memory.growth <= MEMORY_MARGIN, str(memory)
    assert_serving(receiver)


@pytest.mark.parametrize("content_encoding", ["br", "compress", "gzip, br", "x-custom", "gzip;q=1", "*"])
def test_an_unknown_content_encoding_is_415_and_nothing_is_kept(receiver: Server, content_encoding: str):
    before = Ledger.of(receiver)

    answer = post(receiver, NETWORK_URL, gzip_of(NETWORK), {"Content-Encoding": content_encoding})

    assert answer.status_code == 415, answer.text
    assert answer.json()["code"] == 6 and answer.json()["text"] == "Unsupported Content-Encoding"
    assert "gzip, x-gzip, deflate, zstd" in answer.json()["detail"]
    assert before.since(receiver).nothing
    assert_serving(receiver)


def test_a_content_encoding_of_non_utf8_bytes_is_415(receiver: Server):
    """Header bytes are latin-1 to the receiver: 415 naming them, never a 500."""
    before = Ledger.of(receiver)
    headers = [(b"Authorization", bearer()["Authorization"].encode()), (b"Content-Encoding", b"gz\xffip\x80")]

    answer = raw_answer(receiver, request_bytes("POST", NETWORK_URL, headers=headers, body=gzip_of(NETWORK)))

    assert answer.status == 415
    assert answer.json()["text"] == "Unsupported Content-Encoding"
    assert before.since(receiver).nothing
    assert_serving(receiver)


@pytest.mark.parametrize(
    ("body", "content_encoding"),
    [
        pytest.param(gzip_of(gzip_of(NETWORK)), "gzip, gzip", id="gzip-gzip"),
        pytest.param(gzip_of(zstd_of(NETWORK)), "zstd, gzip", id="zstd-then-gzip"),
        pytest.param(gzip_of(NETWORK), "GZIP , identity ,", id="case-spaces-empty-elements"),
    ],
)
def test_stacked_encodings_declared_as_applied_are_undone_in_reverse(
    receiver: Server, body: bytes, content_encoding: str
):
    """The counterpart of the nested cases above: declared as applied, the record is accepted."""
    before = Ledger.of(receiver)

    answer = post(receiver, NETWORK_URL, body, {"Content-Encoding": content_encoding})

    assert answer.json() == {"text": "Success", "code": 0, "accepted": 1, "quarantined": 0}
    stored = before.since(receiver)
    assert (stored.accepted, stored.quarantined, stored.bodies) == (1, 0, [])
    assert_serving(receiver)
