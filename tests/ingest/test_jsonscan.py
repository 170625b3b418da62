"""app/jsonscan.pyx: framing's and the journal's byte scans in C.

`container_end`, where a JSON object or array ends, found without parsing it: framing trusts it to
refuse a record over `max_record_bytes` unparsed and carry on after it, so for valid JSON it must find
exactly the end a parser finds, whatever the strings hold, and a value cut short anywhere must not
seem to end.

`next_boundary`, `count_openers` and `split_lines` replace a regular expression, `bytes.count` and
`bytes.splitlines`, so each is held to give exactly what the one it replaced gives, on bytes made of
what they look for.
"""

from __future__ import annotations

import json
import re

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.jsonscan import container_end, count_openers, next_boundary, split_lines

# Strings full of what a bracket counter could trip on: quotes, backslashes, brackets, and non-ASCII.
tricky_text = st.text(st.sampled_from('{}[]"\\/ :,\n\t\u00e9\u2028\U0001f600ab'), max_size=12) | st.text(max_size=8)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | tricky_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(tricky_text, children, max_size=4),
    max_leaves=25,
)
containers = st.lists(values, max_size=4) | st.dictionaries(tricky_text, values, max_size=4)
SERIALIZERS = {
    "orjson": orjson.dumps,
    "json-ascii": lambda value: json.dumps(value).encode(),
    "json-utf8-indented": lambda value: json.dumps(value, ensure_ascii=False, indent=1).encode(),
}


@given(containers, st.sampled_from(sorted(SERIALIZERS)), st.binary(max_size=3), st.binary(max_size=10))
def test_the_end_of_any_serialized_object_or_array_is_found_exactly(
    value: object, serializer: str, before: bytes, after: bytes
) -> None:
    text = SERIALIZERS[serializer](value)

    assert container_end(before + text + after, len(before)) == len(before) + len(text)


@given(containers, st.sampled_from(sorted(SERIALIZERS)), st.data())
def test_a_value_cut_short_anywhere_has_no_end(value: object, serializer: str, data: st.DataObject) -> None:
    text = SERIALIZERS[serializer](value)
    cut = data.draw(st.integers(1, len(text) - 1))

    assert container_end(text[:cut], 0) == -1


def test_an_escaped_quote_or_backslash_does_not_end_a_string() -> None:
    assert container_end(rb'{"a":"\"}"}', 0) == 11
    assert container_end(rb'{"a":"\\"}', 0) == 10
    assert container_end(rb'["\\\"]"]', 0) == 9


def test_any_buffer_is_read_and_the_start_must_open_an_object_or_array() -> None:
    assert container_end(memoryview(b'x[{"k": [1]}]'), 1) == 13
    assert container_end(bytearray(b"{}"), 0) == 2
    for start in (0, 2, -1):
        with pytest.raises(ValueError, match="no object or array starts"):
            container_end(b"x{", start)


BOUNDARY = re.compile(rb"\}[ \t\r\n]*\{")
"""What framing searched with before `next_boundary`: the reference."""
scanned = st.binary(max_size=60) | st.lists(st.sampled_from(b'{}[] \t\r\n"x\xff'), max_size=60).map(bytes)


@given(scanned, st.data())
def test_next_boundary_finds_what_the_regular_expression_finds(data: bytes, draw: st.DataObject) -> None:
    pos = draw.draw(st.integers(0, len(data) + 2))
    match = BOUNDARY.search(data, pos)

    assert next_boundary(data, pos) == (None if match is None else (match.start(), match.end() - 1))


def test_next_boundary_skips_json_whitespace_only() -> None:
    assert next_boundary(b'{"a":1} \r\n\t{"b":2}', 0) == (6, 11)
    assert next_boundary(b"{}\x0b{}", 0) is None  # a vertical tab is not JSON whitespace
    assert next_boundary(b"}} {", 0) == (1, 3)
    with pytest.raises(ValueError, match="negative"):
        next_boundary(b"}{", -1)


@given(scanned, st.data())
def test_count_openers_counts_what_bytes_count_counts(data: bytes, draw: st.DataObject) -> None:
    start = draw.draw(st.integers(0, len(data) + 2))
    stop = draw.draw(st.integers(0, len(data) + 70))  # long enough for the vectorized loop to run

    assert count_openers(data, start, stop) == data.count(b"{", start, stop) + data.count(b"[", start, stop)


def test_count_openers_over_a_long_buffer() -> None:
    data = b'{"a":[1,{"b":[]}],"c":"{["}' * 1000

    assert count_openers(data, 0, len(data)) == 6000
    assert count_openers(data, 1, 27) == 5
    with pytest.raises(ValueError, match="negative"):
        count_openers(data, -1, 3)


@given(st.binary(max_size=64) | st.lists(st.sampled_from([b"\n", b"\r", b"{}", b"x", b"\xe9"])).map(b"".join))
def test_split_lines_cuts_at_each_newline_and_drops_only_the_piece_after_a_final_one(data: bytes) -> None:
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()

    assert split_lines(data) == pieces


@given(st.lists(values, max_size=8))
def test_split_lines_gives_back_the_rows_of_ndjson_as_splitlines_did(rows: list[object]) -> None:
    lines = [orjson.dumps(row) for row in rows]
    ndjson = b"".join(line + b"\n" for line in lines)

    assert split_lines(ndjson) == ndjson.splitlines() == lines
