"""Fuzzing properties: hostile bytes and JSON never escape as anything but the defined errors.

Every function a request body passes through is fed inputs no sender should send: arbitrary bytes,
arbitrary chunkings, corrupted compressed streams, mutated JSON, and arbitrary JSON values shaped
like Tailscale records. The only exceptions allowed out are the `IngestError`s each function
documents (`RecordInvalid` for validation); the pipeline raises nothing at all and quarantines
instead. Framing is also checked against a value-by-value reference framer, and random
concatenations of objects, arrays and `{"logs": [...]}` wrappers, written by several serializers,
frame back exactly.

What is already covered elsewhere is not repeated: tests/ingest/test_framing.py round-trips objects
(orjson, separators) and truncations of valid bodies; tests/ingest/test_decoders.py round-trips
valid streams of every encoding under any chunking; tests/test_addresses.py splits arbitrary text.

Hypothesis settings, decided once here (`FUZZ`):
- `max_examples` is bounded so the module runs in well under 30 s on the 2-core CI machine;
  `TAILSCRIBE_FUZZ_EXAMPLES` raises it for a longer local run (for instance beside `make fuzz`).
- Generation is random, not `derandomize`d: the point of fuzzing is to try new inputs on every run,
  and a failure in CI is a real bug, not flakiness. `print_blob=True` prints a
  `@reproduce_failure(...)` line to paste, because CI's fresh clone has no example database.
- The example database stays on (Hypothesis' default, `.hypothesis/`, git-ignored), so a failure
  found locally is replayed first on the next local run until it is fixed.
- `deadline=None`: a single example may legitimately take a while (a zstd window allocation, a
  slow-path framing walk), and timing is not what these properties are about.

Two bugs found on the way are regression tests at the end of the module.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import re
import zlib
from datetime import UTC, datetime
from unittest import mock

import orjson
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.addresses import MAX_IP_TEXT, canonical_ip, split_addr_port
from app.errors import (
    DecodeError,
    DecompressedTooLarge,
    FramingError,
    IngestError,
    NestingTooDeep,
    TooManyRecords,
    UnsupportedEncoding,
)
from app.ingest import framing
from app.ingest.body import decode_body
from app.ingest.decoders import GZIP_MAGIC, ZSTD_MAGIC, make_decoder
from app.ingest.framing import Unparsed, frame
from app.ingest.pipeline import RequestContext, build_batch
from app.schemas import ADAPTERS, RecordInvalid, validate, wrap_bare
from app.schemas.common import UNIX_END, UNIX_MIN
from app.schemas.fastpath import is_normal
from app.types import LOG_TYPES, PANTHER_LOG_TYPES

EXAMPLES = int(os.environ.get("TAILSCRIBE_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

FRAMING_ERRORS = (FramingError, NestingTooDeep, TooManyRecords)
"""What `frame` documents it raises."""
DECODING_ERRORS = (DecodeError, DecompressedTooLarge, UnsupportedEncoding)
"""What `make_decoder`, `Decoder.decode/flush` and `decode_body` document they raise."""
BOM = b"\xef\xbb\xbf"
NO_LIMIT = 1 << 40


# JSON values as orjson can produce them: integers within 64 bits, finite floats, any text.
# Biased towards what the schemas and enrichment look at: real keys, numeric and timestamp
# strings, addresses, protocol names, and the edges of the time and integer ranges.

RECORD_KEYS = (
    *("time", "event", "fields", "recorded", "logged", "eventTime", "logs"),
    *("origin", "actor", "target", "action", "id", "type", "loginName", "displayName", "tags", "name", "property"),
    *("deferredAt", "eventGroupID", "old", "new", "actionDetails", "error"),
    *("nodeId", "start", "end", "virtualTraffic", "subnetTraffic", "exitTraffic", "physicalTraffic"),
    *("proto", "src", "dst", "txPkts", "txBytes", "rxPkts", "rxBytes", "srcNode", "dstNodes", "addresses", "user"),
)
NUMBER_STRINGS = (
    *("6", "-1", "+5", "007", "65536", "9" * 30, "1e3", ".5", "1.", "-0", "1780500776.773"),
    *("253402300800", "-62135596801", "1e308", "NaN", "Infinity", "١٢٣"),
)
TIMESTAMP_STRINGS = (
    *("2026-06-03T15:32:51.552946176Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999-23:59"),
    *("2026-02-30T00:00:00Z", "2026-06-03T24:00:00Z", "2026-06-03T15:32:60Z", "2026-06-03 15:32:51Z"),
)
ADDRESS_STRINGS = ("100.64.0.1:41641", "[fd7a:115c:a1e0::1]:41641", "[fe80::1%eth0]:22", "1.2.3.4:99999", "[::1")
TRICKY_STRINGS = (
    *NUMBER_STRINGS,
    *TIMESTAMP_STRINGS,
    *ADDRESS_STRINGS,
    *("", "tcp", "UDP", "ipv6-icmp", "alice@example.com", "a@b@c", " @ ", "}{", '"', "\\", "\u2028", "😀"),
)
EDGE_NUMBERS = (
    *(0, -1, 2**15 - 1, 2**15, -(2**15) - 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)),
    *(253_402_300_799, 253_402_300_800, -62_135_596_800, -62_135_596_801),
    *(253_402_300_799.99997, 1.7976931348623157e308, -1.7976931348623157e308, 5e-324, -0.0, 0.5, 6.0),
)
json_keys = st.sampled_from(RECORD_KEYS) | st.text(max_size=6)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(EDGE_NUMBERS)
    | st.sampled_from(TRICKY_STRINGS)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_keys, children, max_size=5),
    max_leaves=20,
)


def weighted(*choices: tuple[int, st.SearchStrategy[object]]) -> st.SearchStrategy[object]:
    """One of the strategies, each drawn about as often as its weight (repeating one in `a | a | b` does not)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(table.__getitem__)


def with_extras(shape: st.SearchStrategy[dict[str, object]]) -> st.SearchStrategy[dict[str, object]]:
    """`shape` plus a few keys no schema describes (Tailscale adds fields; they must be kept)."""
    extras = st.dictionaries(st.text(min_size=1, max_size=6).map(lambda key: "x" + key), json_values, max_size=2)
    return st.builds(lambda known, extra: {**extra, **known}, shape, extras)


def nullable(valid: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """Mostly `valid`, sometimes null (every field but the required ones is nullable)."""
    return weighted((3, valid), (1, st.none()))


# Values each schema accepts, so that a good share of generated records passes validation and
# reaches enrichment; `corrupted` then breaks one place of an otherwise valid record.
texts = st.sampled_from(TRICKY_STRINGS) | st.text(max_size=12)
rfc3339 = st.builds(
    lambda moment, digits, zone: (
        moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{moment.microsecond:06d}"[: digits + 1] if digits else "") + zone
    ),
    st.datetimes(),
    st.integers(0, 6),
    st.sampled_from(["Z", "z", "+00:00", "-23:59", "+14:00"]),
)
timestamps = rfc3339 | st.sampled_from(TIMESTAMP_STRINGS[:3])
unix_times = (
    st.integers(UNIX_MIN, UNIX_END - 1)
    | st.floats(UNIX_MIN, UNIX_END - 1)
    | st.integers(UNIX_MIN, UNIX_END - 1).map(str)
    | st.sampled_from([UNIX_MIN, UNIX_END - 1, 253_402_300_799.99997, "1780500776.773", "+1780500776", "-0"])
)
protos = st.integers(-(2**15), 2**15 - 1) | st.sampled_from(["tcp", "UDP", "icmpv6", "", "17", "+6", "-0"])
counters = st.integers(-(2**63), 2**63 - 1) | st.integers(0, 2**63 - 1).map(str)
addresses = st.sampled_from(ADDRESS_STRINGS) | st.ip_addresses().map(str) | texts
traffic_entries = with_extras(
    st.fixed_dictionaries(
        {},
        optional={
            "proto": nullable(protos),
            "src": nullable(addresses),
            "dst": nullable(addresses),
            **{key: nullable(counters) for key in ("txPkts", "txBytes", "rxPkts", "rxBytes")},
        },
    )
)
nodes = (
    st.fixed_dictionaries({}, optional={"nodeId": texts, "addresses": st.lists(addresses, max_size=3), "user": texts})
    | json_values
)
network_events = with_extras(
    st.fixed_dictionaries(
        {"nodeId": nullable(texts)},
        optional={
            "start": nullable(timestamps),
            "end": nullable(timestamps),
            "logged": timestamps,
            **{
                key: nullable(st.lists(traffic_entries | st.none(), max_size=3))
                for key in ("virtualTraffic", "subnetTraffic", "exitTraffic", "physicalTraffic")
            },
            "srcNode": nodes,
            "dstNodes": st.lists(nodes, max_size=2),
        },
    )
)
audit_events = with_extras(
    st.fixed_dictionaries(
        {
            "origin": texts,
            "action": texts,
            "actor": with_extras(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "id": nullable(texts),
                        "loginName": nullable(texts),
                        "tags": nullable(st.lists(nullable(texts), max_size=3)),
                    },
                )
            ),
            "target": with_extras(st.fixed_dictionaries({}, optional={"id": nullable(texts), "type": nullable(texts)})),
        },
        optional={
            "eventTime": timestamps,
            "logged": timestamps,
            "deferredAt": nullable(timestamps),
            "old": json_values,
            "new": json_values,
        },
    )
)
events = network_events | audit_events
envelopes = with_extras(
    st.fixed_dictionaries(
        {"time": unix_times, "event": events},
        optional={"fields": nullable(with_extras(st.fixed_dictionaries({}, optional={"recorded": timestamps})))},
    )
)
valid_records = envelopes | events  # an event alone is a bare record, as in Tailscale's S3 export


@st.composite
def corrupted(draw: st.DrawFn, records: st.SearchStrategy[dict[str, object]]) -> dict[str, object]:
    """A record with one value somewhere inside replaced by any JSON value, or one key removed."""
    record = copy.deepcopy(draw(records))
    node: object = record
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            return record
        key = draw(st.sampled_from(keys))
        child = node[key]  # type: ignore[index]
        if not isinstance(child, dict | list) or draw(st.booleans()):
            break
        node = child
    if isinstance(node, dict) and draw(st.booleans()):
        del node[key]
    else:
        node[key] = draw(json_values)  # type: ignore[index]
    return record


record_like = valid_records | corrupted(valid_records) | st.dictionaries(json_keys, json_values, max_size=6)
any_record = weighted((3, record_like), (1, json_values))
validate_inputs = weighted((2, envelopes), (2, corrupted(envelopes)), (2, any_record))
"""What `validate` is given after `wrap_bare`: mostly envelopes, some broken in one place, some anything."""


# Bytes: arbitrary, JSON-token soup, and mutations of valid bodies and compressed streams.

JSON_TOKENS = (
    *(b"{", b"}", b"[", b"]", b'"', b":", b",", b"\\", b"}{", b"} {", b"][", b"\n", b" ", b"\t", b"\r\n"),
    *(b'{"a":', b'"logs":', b'{"logs":[', b'"event":', b"1", b"-0.5e3", b"true", b"null", b"NaN", b"1e400"),
    *(b'"x"', b'"\\u00e9"', b'"\\ud800"', b'"\\"', b"\xff", b"\xc3", b"\xed\xa0\x80", "é".encode(), BOM),
)
token_soup = st.lists(st.sampled_from(JSON_TOKENS), max_size=40).map(b"".join)
top_level_values = (
    st.dictionaries(json_keys, json_values, max_size=5)
    | st.lists(json_values, max_size=4)
    | st.builds(
        lambda logs, extra: {**extra, "logs": logs},
        st.lists(json_values, max_size=4),
        st.dictionaries(st.sampled_from(["version", "tailnet", "event"]), json_values, max_size=2),
    )
)
valid_bodies = st.lists(top_level_values, max_size=5).map(lambda values: b"\n".join(map(orjson.dumps, values)))


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """`base` with a few bytes flipped, inserted, deleted or cut off: mostly valid, wrong somewhere."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "append"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from(JSON_TOKENS) | st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[at:]
        else:
            data += draw(st.sampled_from(JSON_TOKENS) | st.binary(min_size=1, max_size=8))
    return bytes(data)


hostile_json_bytes = st.binary(max_size=200) | token_soup | mutated(valid_bodies) | mutated(token_soup)


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


COMPRESSORS = {"gzip": gzip.compress, "zstd": zstd, "deflate": zlib.compress, "raw-deflate": raw_deflate}
compressed = st.builds(lambda name, body: COMPRESSORS[name](body), st.sampled_from(sorted(COMPRESSORS)), valid_bodies)
hostile_compressed = (
    st.binary(max_size=300)
    | st.builds(lambda magic, tail: magic + tail, st.sampled_from([GZIP_MAGIC, ZSTD_MAGIC]), st.binary(max_size=200))
    | compressed
    | mutated(compressed)
    | st.lists(compressed | mutated(compressed), min_size=2, max_size=3).map(b"".join)
)
known_headers = st.sampled_from(
    [
        None,
        "",
        " , ",
        "identity",
        "gzip",
        "x-gzip",
        "deflate",
        "zstd",
        "GZIP",
        "gzip, zstd",
        "zstd, gzip",
        "deflate,gzip",
    ]
)
# One header in five is arbitrary text (UnsupportedEncoding at once); the rest reach the decoders.
any_header = weighted((4, known_headers), (1, st.text(max_size=20)))
limits = st.sampled_from([NO_LIMIT, 0, 1]) | st.integers(0, 4096)


@st.composite
def chunkings(draw: st.DrawFn, body: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=10)))
    edges = [0, *cuts, len(body)]
    return [body[start:stop] for start, stop in zip(edges, edges[1:], strict=False)]


# Framing


def reference_frame(body: bytes) -> list[object] | None:
    """The records of `body` found the slow, obvious way, value by value; None when it is invalid.

    json's scanner finds where each top-level value ends, orjson parses exactly that value (so NaN,
    lone surrogates and the 64-bit integer range follow the receiver's parser), and the same rules
    as `frame` turn values into records.
    """
    if body.startswith(BOM):
        body = body[len(BOM) :]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    records: list[object] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos == len(text):
            return records
        if text[pos] not in "{[":
            return None
        try:
            _, end = json.JSONDecoder().raw_decode(text, pos)
            value = orjson.loads(text[pos:end])
        except (json.JSONDecodeError, orjson.JSONDecodeError):
            return None
        records.extend(flatten(value))
        pos = end


def flatten(value: object) -> list[object]:
    """The records one top-level value contributes, as `frame` documents it."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and isinstance(value.get("logs"), list) and "event" not in value:
        return value["logs"]
    return [value]


ARRAYS = pytest.mark.parametrize("whole_array_bytes", [framing.WHOLE_ARRAY_BYTES, 0], ids=["arrays-whole", "items"])
"""Each framing property twice: top-level arrays parsed whole (small ones, as usual), and item by item
(as arrays over `WHOLE_ARRAY_BYTES` are), by setting that threshold to 0."""


@ARRAYS
@FUZZ
@given(hostile_json_bytes, st.sampled_from([1, 3, 100_000]), st.sampled_from([2, 3, 64]))
def test_frame_of_any_bytes_raises_only_its_documented_errors(
    whole_array_bytes: int, body: bytes, max_records: int, max_depth: int
) -> None:
    try:
        with mock.patch.object(framing, "WHOLE_ARRAY_BYTES", whole_array_bytes):
            records = frame(body, max_records=max_records, max_depth=max_depth)
    except FramingError as error:
        assert 0 <= error.offset <= len(body)
        assert error.body()["offset"] == error.offset
    except FRAMING_ERRORS:
        pass
    else:
        assert isinstance(records, list)
        assert len(records) <= max_records


@ARRAYS
@FUZZ
@given(hostile_json_bytes)
def test_frame_accepts_exactly_what_a_value_by_value_reference_accepts(whole_array_bytes: int, body: bytes) -> None:
    # Limits far above anything generated: the fast path (whole body, then cuts at "}{") must agree
    # with walking value by value, both on whether the body is valid and on its records.
    try:
        with mock.patch.object(framing, "WHOLE_ARRAY_BYTES", whole_array_bytes):
            records: list[object] | None = frame(body, max_records=1_000_000, max_depth=500)
    except FramingError:
        records = None
    assert records == reference_frame(body)


SERIALIZERS = {
    "orjson": orjson.dumps,
    "json-compact": lambda value: json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(),
    "json-ascii": lambda value: json.dumps(value).encode(),
    "json-indented": lambda value: json.dumps(value, indent=2, ensure_ascii=False).encode(),
}
separators = st.sampled_from([b"", b"\n", b"\r\n", b" ", b"\t", b"\n\n  "])


@st.composite
def concatenations(draw: st.DrawFn) -> tuple[bytes, list[object]]:
    """Random top-level objects, arrays and logs wrappers, each written by a random serializer."""
    values = draw(st.lists(top_level_values, max_size=6))
    body = draw(st.sampled_from([b"", BOM])) + draw(separators)
    for index, value in enumerate(values):
        body += (draw(separators) if index else b"") + SERIALIZERS[draw(st.sampled_from(sorted(SERIALIZERS)))](value)
    body += draw(separators)
    return body, [record for value in values for record in flatten(value)]


@ARRAYS
@FUZZ
@given(concatenations())
def test_random_concatenations_of_objects_arrays_and_wrappers_frame_back_exactly(
    whole_array_bytes: int, case: tuple[bytes, list[object]]
) -> None:
    body, records = case
    with mock.patch.object(framing, "WHOLE_ARRAY_BYTES", whole_array_bytes):
        assert frame(body, max_records=1_000_000, max_depth=64) == records


WRAPPER_START = re.compile(r'\{[ \t\r\n]*"logs"[ \t\r\n]*:[ \t\r\n]*\[')


def capped_reference(body: bytes, max_record_bytes: int) -> list[object]:
    """The records of a valid `body` when those over `max_record_bytes` are refused unparsed, found value
    by value and item by item: an item of an array or of an exact `{"logs": [...]}` wrapper is a record,
    as is any other top-level object (or, if it has `logs` and no `event`, what it holds, if parsed)."""
    text = body.decode("utf-8")
    decoder = json.JSONDecoder()

    def skip(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    def span(pos: int) -> tuple[int, int]:  # byte offsets of the value at char `pos`
        return len(text[:pos].encode()), len(text[: decoder.raw_decode(text, pos)[1]].encode())

    def record(start: int, stop: int) -> object:
        if stop - start > max_record_bytes:
            return Unparsed(memoryview(body)[start:stop], start)
        return orjson.loads(body[start:stop])

    def items(pos: int) -> tuple[list[object], int]:  # the items of the array at `pos`, and where it ends
        found: list[object] = []
        pos = skip(pos + 1)
        while text[pos] != "]":
            end = decoder.raw_decode(text, pos)[1]
            found.append(record(*span(pos)))
            pos = skip(end)
            pos = skip(pos + 1) if text[pos] == "," else pos
        return found, pos + 1

    records: list[object] = []
    pos = skip(1 if text.startswith("\ufeff") else 0)
    while pos < len(text):
        end = decoder.raw_decode(text, pos)[1]
        wrapper = WRAPPER_START.match(text, pos)
        logs = items(wrapper.end() - 1) if wrapper else None
        if text[pos] == "[":
            records += items(pos)[0]
        elif logs and skip(logs[1]) + 1 == end:  # exactly {"logs": [...]}: only the "}" after the array
            records += logs[0]
        else:
            value = record(*span(pos))
            records += [value] if isinstance(value, Unparsed) else flatten(value)
        pos = skip(end)
    return records


@ARRAYS
@FUZZ
@given(concatenations(), st.integers(0, 400))
def test_records_over_max_record_bytes_are_unparsed_and_the_rest_frame_back_exactly(
    whole_array_bytes: int, case: tuple[bytes, list[object]], max_record_bytes: int
) -> None:
    body, _ = case
    with mock.patch.object(framing, "WHOLE_ARRAY_BYTES", whole_array_bytes):
        records = frame(body, max_records=1_000_000, max_depth=64, max_record_bytes=max_record_bytes)
    assert records == capped_reference(body, max_record_bytes)


@ARRAYS
@FUZZ
@given(hostile_json_bytes, st.integers(0, 100))
def test_frame_of_any_bytes_under_a_record_cap_raises_only_its_documented_errors(
    whole_array_bytes: int, body: bytes, max_record_bytes: int
) -> None:
    try:
        with mock.patch.object(framing, "WHOLE_ARRAY_BYTES", whole_array_bytes):
            records = frame(body, max_records=100, max_depth=8, max_record_bytes=max_record_bytes)
    except FramingError as error:
        assert 0 <= error.offset <= len(body)
    except FRAMING_ERRORS:
        pass
    else:
        for record in records:
            if isinstance(record, Unparsed):
                assert len(record.data) > max_record_bytes
                assert body[record.offset : record.offset + len(record.data)] == record.data


# Decompression


def decode_all(header: str | None, chunks: list[bytes], limit: int) -> bytes:
    decoder = make_decoder(header, limit=limit)
    return b"".join(decoder.decode(chunk) for chunk in chunks) + decoder.flush()


@FUZZ
@given(any_header, hostile_compressed, limits, st.data())
def test_decoders_raise_only_their_documented_errors_for_any_bytes_and_chunking(
    header: str | None, body: bytes, limit: int, data: st.DataObject
) -> None:
    chunks = data.draw(chunkings(body))
    try:
        output = decode_all(header, chunks, limit)
    except DECODING_ERRORS:
        return
    assert len(output) <= limit


@FUZZ
@given(any_header, hostile_compressed, limits)
def test_decode_body_raises_only_decoding_errors(header: str | None, body: bytes, limit: int) -> None:
    try:
        output = decode_body(body, header, limit=limit)
    except DECODING_ERRORS:
        return
    assert len(output) <= limit


@FUZZ
@given(st.binary(max_size=300).filter(lambda body: not body.startswith((GZIP_MAGIC, ZSTD_MAGIC))), st.data())
def test_sniffing_passes_any_body_without_a_magic_number_through_unchanged(body: bytes, data: st.DataObject) -> None:
    assert decode_all(None, data.draw(chunkings(body)), NO_LIMIT) == body


@FUZZ
@given(any_header, hostile_compressed | hostile_json_bytes, st.sampled_from([1, 1000]), st.sampled_from([2, 64]))
def test_decoding_then_framing_raises_only_ingest_errors(
    header: str | None, body: bytes, max_records: int, max_depth: int
) -> None:
    try:
        frame(decode_body(body, header, limit=64 * 1024), max_records=max_records, max_depth=max_depth)
    except IngestError:
        pass


# Address splitting

ADDRESS_PARTS = ("[", "]", ":", "%", "::", ".", "]:", "%eth0", "%]", "0", "65535", "65536", "99999", "²", "٣", " ")


@FUZZ
@given(
    st.lists(
        st.sampled_from(ADDRESS_PARTS)
        | st.ip_addresses().map(str)
        | st.integers(0, 70000).map(str)
        | st.text(max_size=4)
        | st.just("1" * (MAX_IP_TEXT + 1)),
        max_size=8,
    ).map("".join)
)
def test_address_grammar_fragments_split_without_raising_into_valid_halves(text: str) -> None:
    # tests/test_addresses.py feeds arbitrary text; this assembles the pieces its branches look for
    # (brackets, zones holding "]", over-long hosts, non-ASCII digits), which random text rarely does.
    ip, port = split_addr_port(text)
    assert ip is None or (ip in text and canonical_ip(ip) is not None and len(ip) <= MAX_IP_TEXT)
    if port is not None:
        # A port is only ever the ASCII digits after the last colon, and within range.
        written = re.search(r":([0-9]{1,5})\Z", text)
        assert written is not None and int(written.group(1)) == port <= 65_535
    assert canonical_ip(text) is None or len(text) <= MAX_IP_TEXT


# Validation


def assert_keeps_every_key(received: object, validated: object, path: str = "record") -> None:
    """Every object in `received` is an object with the same keys at the same place in `validated`,
    and every array keeps its length: validation normalizes values but never drops or invents data."""
    if isinstance(received, dict):
        assert isinstance(validated, dict), path
        assert validated.keys() == received.keys(), path
        for key, value in received.items():
            assert_keeps_every_key(value, validated[key], f"{path}.{key}")
    elif isinstance(received, list):
        assert isinstance(validated, list), path
        assert len(validated) == len(received), path
        for index, (item, kept) in enumerate(zip(received, validated, strict=True)):
            assert_keeps_every_key(item, kept, f"{path}.{index}")


@FUZZ
@given(validate_inputs, st.sampled_from(LOG_TYPES))
def test_validate_raises_only_record_invalid_and_keeps_every_key(record: object, log_type: str) -> None:
    received = copy.deepcopy(record)
    try:
        row = validate(record, log_type)  # type: ignore[arg-type]
    except RecordInvalid as exc:
        assert exc.errors
        assert all(set(error) == {"loc", "msg", "type"} for error in exc.errors)
        assert all(isinstance(value, str) for error in exc.errors for value in error.values())
    else:
        assert_keeps_every_key(record, row)
        orjson.dumps(row)  # what storage will do with it
    assert record == received, "validate must not modify its input"


@FUZZ
@given(record_like, st.sampled_from(LOG_TYPES))
def test_wrapped_bare_records_validate_or_raise_record_invalid(record: dict[str, object], log_type: str) -> None:
    try:
        row = validate(wrap_bare(record, log_type), log_type)  # type: ignore[arg-type]
    except RecordInvalid:
        return
    if "event" in record:
        assert_keeps_every_key(record, row)
    else:
        # A bare record becomes the envelope's event, whole.
        assert row.keys() <= {"time", "event", "fields"}
        assert_keeps_every_key(record, row["event"])


# The whole pipeline after framing

PARSE_TIME = datetime(2026, 6, 3, 15, 33, 1, tzinfo=UTC)
contexts = st.builds(
    lambda log_type, allowed: RequestContext(
        request_id="r" * 32,
        log_type=log_type,
        source_id="fuzz",
        source_label="Fuzz",
        allowed_log_types=frozenset(allowed),
    ),
    st.sampled_from([None, *LOG_TYPES]),
    st.sets(st.sampled_from(LOG_TYPES), min_size=1),
)


@FUZZ
@given(st.lists(any_record, max_size=8), contexts)
def test_build_batch_never_raises_and_accounts_for_every_record(records: list[object], ctx: RequestContext) -> None:
    batch = build_batch(records, ctx, PARSE_TIME)

    assert batch.accepted + len(batch.quarantined) == len(records)
    allowed = {PANTHER_LOG_TYPES[log_type] for log_type in ctx.allowed_log_types}
    for line in batch.ndjson.splitlines():
        row = orjson.loads(line)
        assert row["p_log_type"] in allowed
        assert (row["p_source_id"], row["p_source_label"]) == ("fuzz", "Fuzz")
        assert len(row["p_row_id"]) == 32
    # Quarantined rows hold the received records themselves, in order, each with at least one reason.
    remaining = iter(records)
    for row in batch.quarantined:
        assert any(row["record"] is record for record in remaining)
        assert row["errors"] and row["p_request_id"] == ctx.request_id
    for row in batch.quarantined:
        orjson.dumps(row)  # storage writes every row with orjson: it must serialize


@pytest.mark.parametrize("log_type", LOG_TYPES)
def test_build_batch_quarantines_a_record_that_is_not_an_object(log_type: str) -> None:
    ctx = RequestContext(request_id="r", log_type=log_type, source_id="s", source_label="l")  # type: ignore[arg-type]
    batch = build_batch([1, "x", None, [], [{}]], ctx, PARSE_TIME)
    assert batch.accepted == 0 and batch.ndjson == b""
    assert [row["errors"][0]["type"] for row in batch.quarantined] == ["not_an_object"] * 5


# Regressions for two bugs these properties and the fuzz harnesses found.


@pytest.mark.parametrize("step", [1, 4, 8])
def test_zstd_frame_shorter_than_its_declared_size_is_refused_whatever_the_chunking(step: int) -> None:
    # Magic, single-segment frame declaring 10 bytes, a raw block "abc", then an empty last raw block.
    body = bytes.fromhex("28b52ffd200a") + (3 << 3).to_bytes(3, "little") + b"abc" + (1).to_bytes(3, "little")
    with pytest.raises(DecodeError):
        decode_all("zstd", [body], NO_LIMIT)  # in one piece: refused, as it should be
    with pytest.raises(DecodeError):
        decode_all("zstd", [body[start : start + step] for start in range(0, len(body), step)], NO_LIMIT)


def nested_record(depth: int) -> dict[str, object]:
    """A network envelope `depth` levels deep, counted as framing counts (the envelope is level 1)."""
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(depth - 3):
        deep = {"o": deep}
    return {"time": 1780500776, "event": {"nodeId": "n", "deep": deep}}


@pytest.mark.parametrize("valid", [True, False], ids=["accepted", "quarantined"])
def test_the_deepest_record_max_depth_allows_is_stored_without_error(valid: bool) -> None:
    from app.settings import Settings

    deepest = Settings.model_fields["max_depth"].metadata
    max_depth = min(bound.le for bound in deepest if hasattr(bound, "le"))
    record = nested_record(max_depth)
    if not valid:
        record["time"] = "never"
    body = json.dumps(record).encode()  # orjson itself refuses to write it
    records = frame(body, max_records=1, max_depth=max_depth)
    ctx = RequestContext(request_id="r", log_type="network", source_id="s", source_label="l")
    batch = build_batch(records, ctx, PARSE_TIME)  # accepted rows are serialized here
    assert batch.accepted == valid
    for row in batch.quarantined:
        orjson.dumps(row)  # what storage does with every row


odd_timestamps = st.builds(
    "{}-{}-{}{}{}:{}:{}{}{}".format,
    st.sampled_from(["0000", "0001", "2024", "2026", "9999"]),
    st.sampled_from(["00", "01", "02", "12", "13"]),
    st.sampled_from(["00", "01", "28", "29", "30", "31", "32"]),
    st.sampled_from(["T", "t", " ", "_"]),
    st.sampled_from(["00", "23", "24"]),
    st.sampled_from(["00", "59", "60"]),
    st.sampled_from(["00", "59", "60"]),
    st.sampled_from(["", ".", ".5", ".123456789", ".1234567891", ",5"]),
    st.sampled_from(["Z", "z", "", "+01:00", "-23:59", "+24:00", "+01:60", "+0100", "+01"]),
)
"""Every way a timestamp can be almost right: the fast path must never accept one pydantic refuses."""
fast_path_inputs = weighted(
    (3, envelopes),
    (2, corrupted(envelopes)),
    (1, envelopes.map(lambda record: {**record, "fields": {"recorded": "2026-06-03T15:33:01Z"}})),
)


@FUZZ
@given(fast_path_inputs, odd_timestamps, st.sampled_from(LOG_TYPES), st.sampled_from(["start", "deferredAt", "fields"]))
def test_the_fast_path_accepts_only_records_pydantic_returns_unchanged(
    record: dict[str, object], timestamp: str, log_type: str, where: str
) -> None:
    """`is_normal` may refuse more than pydantic, never accept more, nor accept what pydantic would change."""
    event = record.get("event")
    if isinstance(event, dict) and where != "fields":
        record = {**record, "event": {**event, where: timestamp}}
    elif where == "fields":
        record = {**record, "fields": {"recorded": timestamp}}
    if is_normal(record, log_type):  # type: ignore[arg-type]
        normalized = ADAPTERS[log_type].validate_python(record)  # type: ignore[index]
        # Compared as JSON, where 1 and 1.0 or True and 1 differ, not as Python values, where they do not.
        assert orjson.dumps(normalized, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
            record, option=orjson.OPT_SORT_KEYS
        )
