"""The Content-Encoding decoders: every format and stack decodes exactly, bad streams and bombs are refused.

The bomb tests are the point of `limit`: a few hundred KiB of gzip or zstd must not become 256 MiB.
"""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from collections.abc import Callable, Iterator

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from app.errors import DecodeError, DecompressedTooLarge, UnsupportedEncoding
from app.ingest.decoders import Decoder, make_decoder

NO_LIMIT = 1 << 40
MiB = 1 << 20
PAYLOAD = b'{"time":1780500776.773,"event":{"action":"CREATE"}}' * 50


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def zstd_streamed(data: bytes) -> bytes:
    """A frame that does not declare its content size, as a streaming sender writes it."""
    compressor = zstandard.ZstdCompressor().compressobj()
    return compressor.compress(data) + compressor.flush()


def zstd_checked(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(write_checksum=True).compress(data)


def zlib_deflate(data: bytes) -> bytes:
    return zlib.compress(data)


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def feed(decoder: Decoder, data: bytes, step: int = 1000) -> bytes:
    parts = [decoder.decode(data[start : start + step]) for start in range(0, len(data), step)]
    return b"".join(parts) + decoder.flush()


def decode(content_encoding: str | None, data: bytes, *, limit: int = NO_LIMIT, step: int = 1000) -> bytes:
    return feed(make_decoder(content_encoding, limit=limit), data, step)


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "identity": lambda data: data,
    "gzip": gzip.compress,
    "deflate-zlib": zlib_deflate,
    "deflate-raw": raw_deflate,
    "zstd": zstd,
}
HEADER = {"identity": "identity", "gzip": "gzip", "deflate-zlib": "deflate", "deflate-raw": "deflate", "zstd": "zstd"}
COMPRESSED = [name for name in ENCODERS if name != "identity"]


@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("step", [1, 7, 1000, 1 << 20])
def test_each_encoding_decodes_to_the_original_bytes_whatever_the_chunk_size(name: str, step: int) -> None:
    assert decode(HEADER[name], ENCODERS[name](PAYLOAD), step=step) == PAYLOAD


def test_x_gzip_is_decoded_as_gzip() -> None:
    assert decode("x-gzip", gzip.compress(PAYLOAD)) == PAYLOAD


@pytest.mark.parametrize("step", [1, 5, 64, 1 << 20])
def test_gzip_multi_member_body_is_fully_decoded(step: int) -> None:
    body = gzip.compress(b"first ") + gzip.compress(b"") + gzip.compress(b"second ") + gzip.compress(PAYLOAD)
    assert decode("gzip", body, step=step) == b"first second " + PAYLOAD


@pytest.mark.parametrize("step", [1, 5, 64, 1 << 20])
def test_zstd_multi_frame_body_is_fully_decoded(step: int) -> None:
    body = zstd(b"first ") + zstd(b"") + zstd_streamed(b"second ") + zstd(PAYLOAD)
    assert decode("zstd", body, step=step) == b"first second " + PAYLOAD


def test_zstd_frame_without_content_size_is_decoded() -> None:
    assert decode("zstd", zstd_streamed(PAYLOAD)) == PAYLOAD


@pytest.mark.parametrize("encode", [zlib_deflate, raw_deflate], ids=["zlib", "raw"])
def test_deflate_accepts_zlib_wrapped_and_raw_streams_even_byte_by_byte(encode: Callable[[bytes], bytes]) -> None:
    assert decode("deflate", encode(PAYLOAD), step=1) == PAYLOAD


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (gzip.compress(PAYLOAD), PAYLOAD),
        (zstd(PAYLOAD), PAYLOAD),
        (gzip.compress(b"a") + gzip.compress(b"b"), b"ab"),
        (zstd(b"a") + zstd(b"b"), b"ab"),
    ],
    ids=["gzip", "zstd", "gzip-members", "zstd-frames"],
)
@pytest.mark.parametrize("header", [None, "", " ", " , "])
def test_missing_header_sniffs_gzip_and_zstd_magic(body: bytes, expected: bytes, header: str | None) -> None:
    assert decode(header, body, step=1) == expected


@pytest.mark.parametrize("body", [PAYLOAD, b"\x1f not gzip", b"\x28\xb5\x2f plain", b"[1]"])
def test_missing_header_passes_a_plain_body_through(body: bytes) -> None:
    assert decode(None, body, step=1) == body


@pytest.mark.parametrize("body", [b"", b"\x1f", b"\x28", b"\x28\xb5", b"\x28\xb5\x2f"])
def test_body_shorter_than_a_magic_number_is_identity(body: bytes) -> None:
    assert decode(None, body, step=1) == body


def test_explicit_identity_does_not_sniff() -> None:
    body = gzip.compress(PAYLOAD)
    assert decode("identity", body) == body


@pytest.mark.parametrize("header", ["gzip, zstd", "gzip,zstd", " GZIP ,  Zstd ", "gzip, identity, zstd", "gzip,,zstd"])
def test_stacked_encodings_are_undone_in_reverse_order(header: str) -> None:
    body = zstd(gzip.compress(PAYLOAD))
    assert decode(header, body, step=3) == PAYLOAD


def test_stack_of_three_encodings_is_undone() -> None:
    body = gzip.compress(zstd(raw_deflate(PAYLOAD)))
    assert decode("deflate, zstd, gzip", body, step=3) == PAYLOAD


@pytest.mark.parametrize("header", ["GZIP", " gzip ", "Gzip\t", "X-GZip"])
def test_header_value_is_case_and_whitespace_insensitive(header: str) -> None:
    assert decode(header, gzip.compress(PAYLOAD)) == PAYLOAD


@pytest.mark.parametrize("header", ["IDENTITY", "identity, identity"])
def test_identity_only_header_passes_bytes_through(header: str) -> None:
    assert decode(header, b"\x1f\x8b raw") == b"\x1f\x8b raw"


@pytest.mark.parametrize("header", ["br", "gzip, br", "compress", "gzip;q=1"])
def test_unknown_encoding_is_refused_with_the_supported_list(header: str) -> None:
    with pytest.raises(UnsupportedEncoding) as info:
        make_decoder(header, limit=NO_LIMIT)
    for name in ("identity", "gzip", "x-gzip", "deflate", "zstd"):
        assert name in info.value.detail


@pytest.mark.parametrize("header", [None, "identity", "gzip", "x-gzip", "deflate", "zstd", "gzip, zstd"])
def test_flush_without_any_input_returns_nothing(header: str | None) -> None:
    assert make_decoder(header, limit=NO_LIMIT).flush() == b""


@pytest.mark.parametrize("name", COMPRESSED)
@pytest.mark.parametrize("cut", [1, 2, 5, 0.5])
def test_truncated_stream_is_detected_at_flush(name: str, cut: int | float) -> None:
    body = ENCODERS[name](PAYLOAD)
    keep = int(len(body) * cut) if isinstance(cut, float) else len(body) - cut
    decoder = make_decoder(HEADER[name], limit=NO_LIMIT)
    decoder.decode(body[:keep])
    with pytest.raises(DecodeError, match="truncated"):
        decoder.flush()


@pytest.mark.parametrize(("header", "first_byte"), [("gzip", b"\x1f"), ("zstd", b"\x28"), ("deflate", b"\x78")])
def test_body_cut_after_its_first_byte_is_truncated(header: str, first_byte: bytes) -> None:
    decoder = make_decoder(header, limit=NO_LIMIT)
    assert decoder.decode(first_byte) == b""
    with pytest.raises(DecodeError, match=f"{header} body is truncated"):
        decoder.flush()


@pytest.mark.parametrize(
    ("header", "body"),
    [
        ("gzip", gzip.compress(b"a") + gzip.compress(b"b")[:-4]),
        ("zstd", zstd(b"a") + zstd(b"b")[:-1]),
    ],
    ids=["gzip", "zstd"],
)
def test_truncated_second_member_or_frame_is_detected(header: str, body: bytes) -> None:
    with pytest.raises(DecodeError, match="truncated"):
        decode(header, body)


def flip_middle_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


@pytest.mark.parametrize(
    ("header", "body", "cause"),
    [
        ("gzip", b"\x1f\x8b\x08\x00 this is not deflate data at all", zlib.error),
        ("gzip", flip_middle_byte(gzip.compress(PAYLOAD)), zlib.error),
        ("gzip", gzip.compress(PAYLOAD) + b"trailing garbage", zlib.error),
        ("deflate", b"\x78\x9c this is not deflate", zlib.error),
        ("deflate", flip_middle_byte(zlib.compress(PAYLOAD)), zlib.error),
        ("zstd", b"this is not zstd", zstandard.ZstdError),
        ("zstd", flip_middle_byte(zstd_checked(PAYLOAD)), zstandard.ZstdError),
        ("zstd", zstd(PAYLOAD) + b"trailing garbage", zstandard.ZstdError),
    ],
    ids=[
        "gzip-garbage",
        "gzip-flipped",
        "gzip-trailing",
        "deflate-garbage",
        "deflate-flipped",
        "zstd-garbage",
        "zstd-flipped",
        "zstd-trailing",
    ],
)
def test_corrupt_stream_raises_decode_error_chained_to_the_library_error(
    header: str, body: bytes, cause: type[Exception]
) -> None:
    with pytest.raises(DecodeError, match=f"{header} body is corrupt") as info:
        decode(header, body)
    assert isinstance(info.value.__cause__, cause)


def test_data_after_the_end_of_a_deflate_stream_is_refused() -> None:
    with pytest.raises(DecodeError, match="after the end"):
        decode("deflate", zlib.compress(PAYLOAD) + b"x")


def test_zstd_frame_declaring_a_huge_window_is_refused() -> None:
    # Frame header: magic, descriptor 0x00 (no content size, not single-segment), then a window
    # descriptor of exponent 20 = 2**30 bytes, then one empty last raw block.
    frame = bytes.fromhex("28b52ffd00a0010000")
    with pytest.raises(DecodeError, match="zstd"):
        decode("zstd", frame)


def test_zstd_frame_with_an_allowed_window_is_accepted() -> None:
    frame = bytes.fromhex("28b52ffd0058010000")  # exponent 11: a 2 MiB window
    assert decode("zstd", frame) == b""


@pytest.mark.parametrize("name", list(ENCODERS))
def test_output_of_exactly_the_limit_is_accepted_and_one_more_byte_is_refused(name: str) -> None:
    body = ENCODERS[name](PAYLOAD)
    assert decode(HEADER[name], body, limit=len(PAYLOAD)) == PAYLOAD
    with pytest.raises(DecompressedTooLarge) as info:
        decode(HEADER[name], body, limit=len(PAYLOAD) - 1)
    assert "max_decompressed_bytes" in info.value.detail
    assert str(len(PAYLOAD) - 1) in info.value.detail


def test_limit_counts_output_across_all_calls_and_members() -> None:
    body = gzip.compress(b"x" * 600) + gzip.compress(b"y" * 600)
    with pytest.raises(DecompressedTooLarge):
        decode("gzip", body, limit=1000, step=10)


def test_sniffed_body_is_held_to_the_limit() -> None:
    with pytest.raises(DecompressedTooLarge):
        decode(None, zstd(PAYLOAD), limit=100)
    with pytest.raises(DecompressedTooLarge):
        decode(None, PAYLOAD, limit=100)


def test_every_stage_of_a_stack_is_held_to_the_limit() -> None:
    # zstd's output, a stored gzip stream, is over the limit even though the final output is not.
    inner = gzip.compress(PAYLOAD, compresslevel=0)
    assert len(inner) > len(PAYLOAD)
    with pytest.raises(DecompressedTooLarge, match="zstd"):
        decode("gzip, zstd", zstd(inner), limit=len(PAYLOAD))


BOMB_SIZE = 256 * MiB
BOMB_LIMIT = 8 * MiB
ZSTD_OVERSHOOT = 129 * 128 * 1024  # see _ZSTD_SLICE: 512 / 4 RLE blocks, plus one, of 128 KiB each


def zeros(total: int) -> Iterator[bytes]:
    block = bytes(MiB)
    for _ in range(total // MiB):
        yield block


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return b"".join(compressor.compress(block) for block in zeros(BOMB_SIZE)) + compressor.flush()


@pytest.fixture(scope="module")
def zstd_bomb() -> bytes:
    compressor = zstandard.ZstdCompressor().compressobj()
    return b"".join(compressor.compress(block) for block in zeros(BOMB_SIZE)) + compressor.flush()


@pytest.mark.parametrize(("header", "bomb_name"), [("gzip", "gzip_bomb"), ("zstd", "zstd_bomb"), (None, "zstd_bomb")])
def test_decompression_bomb_is_refused_without_materialising_it(
    header: str | None, bomb_name: str, request: pytest.FixtureRequest
) -> None:
    bomb: bytes = request.getfixturevalue(bomb_name)
    assert len(bomb) < MiB
    decoder = make_decoder(header, limit=BOMB_LIMIT)
    returned = 0
    tracemalloc.start()
    try:
        with pytest.raises(DecompressedTooLarge):
            for start in range(0, len(bomb), 64 * 1024):
                returned += len(decoder.decode(bomb[start : start + 64 * 1024]))
            decoder.flush()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert returned <= BOMB_LIMIT
    assert peak <= BOMB_LIMIT + ZSTD_OVERSHOOT + MiB


@st.composite
def chunked(draw: st.DrawFn, body: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=12)))
    edges = [0, *cuts, len(body)]
    return [body[start:stop] for start, stop in zip(edges, edges[1:], strict=False)]


@given(
    name=st.sampled_from(list(ENCODERS)),
    pieces=st.lists(st.binary(max_size=3000), min_size=1, max_size=3),
    data=st.data(),
)
def test_any_split_of_a_stream_decodes_to_the_same_bytes(name: str, pieces: list[bytes], data: st.DataObject) -> None:
    # gzip and zstd bodies may hold several members or frames; deflate and identity are one stream.
    if name in ("gzip", "zstd"):
        body = b"".join(ENCODERS[name](piece) for piece in pieces)
    else:
        body = ENCODERS[name](b"".join(pieces))
    chunks = data.draw(chunked(body))
    decoder = make_decoder(HEADER[name], limit=NO_LIMIT)
    assert b"".join(decoder.decode(chunk) for chunk in chunks) + decoder.flush() == b"".join(pieces)
