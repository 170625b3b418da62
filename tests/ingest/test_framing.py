"""Framing: every body shape Tailscale and other senders use becomes the same records, and bad bodies fail.

Property tests cover what hand-written cases miss: strings full of "}{", quotes and backslashes, any
separators, any truncation point, and nesting measured against a recursive reference.
"""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Callable

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import FramingError, NestingTooDeep, TooManyRecords
from app.ingest.framing import WHOLE_ARRAY_BYTES, Unparsed, frame, iter_records

A = {"time": 1780500776.773, "event": {"action": "CREATE", "origin": "ADMIN_CONSOLE"}}
B = {"time": 1780500777.1, "event": {"virtualTraffic": [{"proto": 6, "txBytes": 12}]}, "fields": {"recorded": "x"}}
C = {"logged": "2026-06-03T15:33:01Z", "nodeId": "n1"}


def framed(body: bytes, *, max_records: int = 100_000, max_depth: int = 64) -> list[object]:
    return frame(body, max_records=max_records, max_depth=max_depth)


def dumps(*records: object, sep: bytes = b"") -> bytes:
    return sep.join(orjson.dumps(record) for record in records)


def framing_error(body: bytes, **limits: int) -> FramingError:
    with pytest.raises(FramingError) as info:
        framed(body, **limits)
    return info.value


@pytest.mark.parametrize("sep", [b"", b"\n", b"\r\n", b" ", b"\t", b" \r\n\t \n"])
def test_objects_separated_by_nothing_or_any_json_whitespace_are_split(sep: bytes) -> None:
    assert framed(dumps(A, B, C, sep=sep)) == [A, B, C]


def test_leading_and_trailing_whitespace_is_ignored() -> None:
    assert framed(b" \r\n\t" + dumps(A, B, sep=b"\n") + b"\n\n ") == [A, B]


def test_single_object_is_one_record() -> None:
    assert framed(orjson.dumps(A)) == [A]


def test_array_items_are_the_records() -> None:
    assert framed(orjson.dumps([A, B, C])) == [A, B, C]


def test_array_items_that_are_not_objects_are_left_for_the_caller() -> None:
    assert framed(b'[{"a":1}, 2, "x", null, [3]]') == [{"a": 1}, 2, "x", None, [3]]


@pytest.mark.parametrize("wrapper", [{"logs": [A, B]}, {"version": "1.1", "tailnet": "example.com", "logs": [A, B]}])
def test_poll_api_logs_wrapper_is_unwrapped(wrapper: dict[str, object]) -> None:
    assert framed(orjson.dumps(wrapper)) == [A, B]


@pytest.mark.parametrize("record", [{"logs": [1], "event": {}}, {"logs": "not a list"}, {"logs": {"a": 1}}])
def test_object_with_logs_that_is_not_a_wrapper_is_a_record(record: dict[str, object]) -> None:
    assert framed(orjson.dumps(record)) == [record]


def test_sequence_may_mix_objects_arrays_and_wrappers() -> None:
    body = dumps(A, [B, C], {"logs": [C]}, A, sep=b"\n") + b"[]" + orjson.dumps(B)
    assert framed(body) == [A, B, C, C, A, B]


@pytest.mark.parametrize(
    "text",
    [
        "}{",
        "} {",
        "}\n{",
        "{",
        "}",
        "[",
        "]",
        '"',
        '\\"}{\\"',
        "\\",
        "\\\\",
        "\\\\}{",
        "é",
        "😀",
        "}😀{",
        '{"a":1}',
        "\u2028",
    ],
)
def test_strings_holding_braces_quotes_backslashes_or_non_ascii_do_not_fool_framing(text: str) -> None:
    records = [{"s": text, "n": 1}, {text: [text, {"k": text}]}, {"s": text}]
    for sep in (b"", b"\n"):
        assert framed(dumps(*records, sep=sep)) == records


def test_hand_written_escapes_round_trip() -> None:
    body = rb'{"a":"x\"}{\"y","b":"\\"}{"c":"\u00e9\ud83d\ude00}{"}'
    assert framed(body) == [{"a": 'x"}{"y', "b": "\\"}, {"c": "é😀}{"}]


def test_duplicate_keys_keep_the_last_value() -> None:
    assert framed(b'{"a":1,"a":2}{"b":1}') == [{"a": 2}, {"b": 1}]


def test_leading_byte_order_mark_is_skipped() -> None:
    assert framed(b"\xef\xbb\xbf" + dumps(A, B)) == [A, B]
    assert framed(b"\xef\xbb\xbf" + orjson.dumps([A])) == [A]


def test_error_offsets_count_the_byte_order_mark() -> None:
    assert framing_error(b"\xef\xbb\xbf{}x").offset == 5


@pytest.mark.parametrize("body", [b"", b" ", b"\r\n", b" \t\n\r ", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n"])
def test_empty_or_whitespace_body_has_no_records(body: bytes) -> None:
    assert framed(body) == []


@pytest.mark.parametrize("body", [b"[]", b'{"logs":[]}'])
def test_empty_array_or_wrapper_has_no_records(body: bytes) -> None:
    assert framed(body) == []


@pytest.mark.parametrize(
    ("body", "offset", "kind"),
    [
        (b"5", 0, "a number"),
        (b" -1.5e3 ", 1, "a number"),
        (b'"text"', 0, "a string"),
        (b"true", 0, "a boolean"),
        (b"null", 0, "null"),
        (b'{"a":1}\n42', 8, "a number"),
        (b'{"a":1}"}{"', 7, "a string"),
    ],
)
def test_top_level_scalar_is_refused_where_it_starts(body: bytes, offset: int, kind: str) -> None:
    error = framing_error(body)
    assert error.offset == offset
    assert f"expected a JSON object or array, not {kind}" in error.detail


@pytest.mark.parametrize(
    ("body", "offset"),
    [
        (b'{"a":1}xyz', 7),
        (b'{"a":1} ]', 8),
        (b'{"a":1}{"b":2} {"c":3}}', 22),
        (b"not json", 0),
        (b"\x00", 0),
    ],
)
def test_trailing_garbage_is_refused_at_its_first_byte(body: bytes, offset: int) -> None:
    error = framing_error(body)
    assert error.offset == offset
    assert "expected a JSON object or array" in error.detail


@pytest.mark.parametrize(
    ("body", "offset"),
    [(b'{"a":1', 0), (b'{"a":1}{"b":[1,2', 7), (b'{"a":1}\n{"b":"x}{', 8), (b'[{"a":1},', 0), (b'{"a":1}{"b":1.5 ', 7)],
)
def test_truncated_value_is_reported_where_it_starts(body: bytes, offset: int) -> None:
    error = framing_error(body)
    assert error.offset == offset
    assert "truncated JSON" in error.detail


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_refused(constant: bytes) -> None:
    # The offset is where the constant starts, or just past its sign, where orjson gives up.
    assert framing_error(b'{"a":1}{"b":' + constant + b"}").offset in (12, 13)
    assert framing_error(b'{"b":' + constant + b"}").offset in (5, 6)


@pytest.mark.parametrize("bad", [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf0\x9f\x98"])
def test_invalid_utf8_is_refused_at_the_offending_byte(bad: bytes) -> None:
    head = '{"é":"ok"}\n{"b":"é'.encode()
    error = framing_error(head + bad + b'"}{"c":1}')
    assert error.offset == len(head)
    assert "UTF-8" in error.detail


def test_invalid_utf8_between_records_is_refused_at_its_byte() -> None:
    assert framing_error(b'{"a":1}\xff{"b":1}').offset == 7


def test_lone_surrogate_escape_is_refused() -> None:
    body = b'{"a":1}{"b":"\\ud800"}'
    error = framing_error(body)
    assert 7 <= error.offset < len(body)


def test_invalid_json_inside_a_record_is_reported_at_the_error() -> None:
    body = '{"é":1}{"😀":1 "b":2}'.encode()
    assert framing_error(body).offset == body.index(b' "b"') + 1


def test_framing_error_detail_carries_the_offset() -> None:
    error = framing_error(b'{"a":1}xyz')
    assert error.detail.endswith("(at byte 7)")
    assert error.body()["offset"] == 7


@pytest.mark.parametrize(
    "body",
    [
        b"".join(orjson.dumps({"i": i}) for i in range(10)),
        orjson.dumps([{"i": i} for i in range(10)]),
        orjson.dumps({"logs": [{"i": i} for i in range(10)]}),
        orjson.dumps([{"i": i} for i in range(5)]) + orjson.dumps([{"i": i} for i in range(5)]),
    ],
    ids=["concatenated", "array", "wrapper", "arrays"],
)
def test_exactly_max_records_is_accepted_and_one_more_is_refused(body: bytes) -> None:
    assert len(framed(body, max_records=10)) == 10
    with pytest.raises(TooManyRecords) as info:
        framed(body, max_records=9)
    assert "max_records" in info.value.detail
    assert "9" in info.value.detail


def test_too_many_records_is_raised_before_the_rest_is_parsed() -> None:
    with pytest.raises(TooManyRecords):
        framed(dumps(A, B, C) + b"{not json at all", max_records=2)


def test_each_empty_top_level_array_takes_a_record_slot() -> None:
    assert framed(b"[] {}", max_records=2) == [{}]
    with pytest.raises(TooManyRecords):
        framed(b"[] " * 1_000_000 + b"{}{}", max_records=1000)


def nested(depth: int) -> object:
    """A record `depth` levels deep, alternating objects and arrays, with an object outermost."""
    value: object = {"leaf": 1}
    for level in range(depth - 1, 0, -1):
        value = [value] if level % 2 == 0 else {"o": value}
    return value


def true_depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(true_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(true_depth, value), default=0)
    return 0


@pytest.mark.parametrize("shape", ["single", "concatenated", "array", "wrapper"])
def test_record_at_max_depth_is_accepted_and_one_level_more_is_refused(shape: str) -> None:
    def body(record: object) -> bytes:
        if shape == "concatenated":
            return dumps(A, record, B)
        if shape == "array":
            return orjson.dumps([A, record])
        if shape == "wrapper":
            return orjson.dumps({"logs": [record]})
        return orjson.dumps(record)

    ok, deep = nested(10), nested(11)
    assert true_depth(ok) == 10
    assert deep in framed(body(deep), max_depth=11)
    assert ok in framed(body(ok), max_depth=10)
    with pytest.raises(NestingTooDeep) as info:
        framed(body(deep), max_depth=10)
    assert "max_depth" in info.value.detail
    assert "10" in info.value.detail


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    record = {"s": "[[[[{{{{" * 10, "t": '\\"[{\\', "u": ["]]]}}}" * 10]}
    assert framed(dumps(record, record), max_depth=2) == [record, record]


def test_closing_brackets_inside_strings_do_not_hide_nesting() -> None:
    record = {"a": {"b": {"c": ["]]]]}}}}" * 5, '\\"]}', {"d": "x"}]}}}
    assert true_depth(record) == 5
    with pytest.raises(NestingTooDeep):
        framed(dumps(A, record), max_depth=4)


@pytest.mark.parametrize("opening", [b"[", b'{"a":'])
@pytest.mark.parametrize("prefix", [b"", b'{"ok":1}\n'])
def test_hundred_thousand_levels_raise_nesting_too_deep_not_recursion_error(opening: bytes, prefix: bytes) -> None:
    closing = b"]" if opening == b"[" else b"}"
    body = prefix + opening * 100_000 + b"1" + closing * 100_000
    with pytest.raises(NestingTooDeep):
        framed(body)


def test_orjson_depth_limit_maps_to_nesting_too_deep_when_python_allows_deeper_recursion() -> None:
    # With a raised recursion limit json's scanner gets past 1024 levels, and orjson is the one refusing.
    body = b'{"ok":1}' + b"[" * 2000 + b"]" * 2000
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    try:
        with pytest.raises(NestingTooDeep):
            framed(body, max_depth=5000)
    finally:
        sys.setrecursionlimit(old)


def test_string_full_of_boundaries_frames_correctly_and_fast() -> None:
    big = {"s": "}{" * 200_000, "t": "} {" * 1000}
    records = [A, big, B, {"s": "}\n{" * 50_000}, C]
    assert framed(dumps(*records)) == records


def test_many_records_with_boundaries_in_strings_stay_linear() -> None:
    records = [{"i": i, "s": "}{" * 100, "t": '"}{"'} for i in range(3000)]
    assert framed(dumps(*records, sep=b"\n")) == records


def test_huge_single_string_of_boundaries_frames() -> None:
    records = [{"s": "}{" * 5_000_000}, A]
    assert framed(dumps(*records)) == records


json_text = st.lists(
    st.sampled_from(["}{", "} {", "{", "}", "[", "]", '"', "\\", "\\u0041", "é", "😀", "\n"])
    | st.characters(codec="utf-8"),
    max_size=8,
).map("".join)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4),
    max_leaves=12,
)
json_records = st.dictionaries(json_text.filter(lambda key: key != "logs"), json_values, max_size=5)
separators = st.sampled_from([b"", b"\n", b"\r\n", b" ", b"\t\n"])


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, list[object]]:
    records: list[object] = list(draw(st.lists(json_records, max_size=6)))
    body = b""
    for index, record in enumerate(records):
        body += (draw(separators) if index else b"") + orjson.dumps(record)
    return body, records


@given(bodies())
def test_serialized_records_joined_by_any_separators_frame_back_exactly(case: tuple[bytes, list[object]]) -> None:
    body, records = case
    assert framed(body) == records


@given(bodies(), st.data())
def test_truncated_body_raises_with_a_valid_offset_or_yields_a_prefix(
    case: tuple[bytes, list[object]], data: st.DataObject
) -> None:
    body, records = case
    cut = body[: data.draw(st.integers(0, len(body)))]
    try:
        result = framed(cut)
    except FramingError as error:
        assert 0 <= error.offset <= len(cut)
    else:
        assert result == records[: len(result)]


@given(json_records)
def test_nesting_limit_matches_the_true_depth_of_any_record(record: dict[str, object]) -> None:
    depth = true_depth(record)
    assert framed(dumps(A, record), max_depth=max(depth, 2)) == [A, record]
    if depth > 2:
        with pytest.raises(NestingTooDeep):
            framed(dumps(A, record), max_depth=depth - 1)


# Arrays over WHOLE_ARRAY_BYTES are framed item by item.

PADDED = {"time": 1780500776.773, "event": {"nodeId": "n1", "note": "x" * 2000}}


def large_array(count: int, *extra: object) -> bytes:
    """An array of `count` 2 KB records (then `extra`), well over WHOLE_ARRAY_BYTES."""
    body = orjson.dumps([*({**PADDED, "i": i} for i in range(count)), *extra], option=orjson.OPT_INDENT_2)
    assert len(body) > WHOLE_ARRAY_BYTES
    return body


def test_a_large_array_frames_to_the_same_records_as_parsed_whole() -> None:
    body = large_array(600, 5, "x}{", [A], {"c": [1, {"d": "]}"}]}, None)

    assert framed(body) == orjson.loads(body)
    assert framed(body + b"\n" + dumps(A, B)) == [*orjson.loads(body), A, B]


def test_a_large_array_item_is_held_to_max_depth_where_it_starts() -> None:
    deep = orjson.dumps(nested(65))
    body = large_array(600, nested(64))
    assert framed(body)[-1] == nested(64)

    body = large_array(600)[:-1] + b"," + deep + b"]"
    with pytest.raises(NestingTooDeep) as info:
        framed(body)
    assert info.value.extra["offset"] == body.rindex(deep)


@pytest.mark.parametrize(
    ("tail", "detail"),
    [
        (b',{"b":', "truncated JSON array"),
        (b",", "truncated JSON array"),
        (b"", "truncated JSON array"),
        (b",]", "invalid JSON: Expecting value"),
        (b' {"b":1}]', "invalid JSON: expected ',' or ']' after an array item"),
    ],
)
def test_a_large_array_cut_short_or_malformed_is_reported_precisely(tail: bytes, detail: str) -> None:
    body = large_array(600)[:-1].rstrip() + tail  # the closing bracket dropped
    error = framing_error(body)

    assert detail in error.detail
    assert error.offset == (0 if "truncated" in detail else len(large_array(600)[:-1].rstrip()) + 1)


def large_wrapper(count: int, **after: object) -> bytes:
    """`{"logs": [...]}` of `count` 2 KB records (then the keys `after`), well over WHOLE_ARRAY_BYTES."""
    body = orjson.dumps({"logs": [{**PADDED, "i": i} for i in range(count)], **after})
    assert len(body) > WHOLE_ARRAY_BYTES
    return body


def test_a_large_logs_wrapper_frames_to_its_records_and_one_with_an_event_is_a_record() -> None:
    wrapper = large_wrapper(600)
    assert framed(dumps(A) + wrapper + dumps(B)) == [A, *orjson.loads(wrapper)["logs"], B]

    record = large_wrapper(600, event={"nodeId": "n1"})  # "event" after "logs": a record, not a wrapper
    assert framed(record) == [orjson.loads(record)]
    other = large_wrapper(600, more=1)  # another key, parsed whole: still a wrapper, as `frame` documents
    assert framed(other) == orjson.loads(other)["logs"]


@pytest.mark.parametrize("cut", [1, 2, 3, 500_000])
def test_a_large_logs_wrapper_cut_short_is_truncated_where_it_starts(cut: int) -> None:
    body = dumps(A) + b"\n" + large_wrapper(600)[:-cut]
    error = framing_error(body)

    assert error.offset == len(dumps(A)) + 1
    assert "truncated JSON object" in error.detail


LARGE_SHAPES = pytest.mark.parametrize("make", [large_array, large_wrapper], ids=["array", "logs-wrapper"])


@LARGE_SHAPES
def test_a_large_array_or_wrapper_is_framed_item_by_item_in_memory_bounded_by_its_items(
    make: Callable[[int], bytes],
) -> None:
    """Parsed whole, a 24 MB array of records took about thirteen times its bytes; item by item, the
    body's text (for json's scanner) and one item at a time."""
    body = make(12_000)
    tracemalloc.start()
    try:
        count = sum(1 for record in iter_records(body, max_records=100_000, max_depth=64) if record)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert count == 12_000
    assert peak < 2 * len(body), f"peak {peak / 1e6:.0f} MB for a {len(body) / 1e6:.0f} MB body"


@LARGE_SHAPES
def test_a_large_array_or_wrapper_is_held_to_max_records_per_item(make: Callable[[int], bytes]) -> None:
    body = make(600)

    assert len(framed(body, max_records=600)) == 600
    with pytest.raises(TooManyRecords):
        framed(body, max_records=599)


# Records over max_record_bytes: refused unparsed, so none costs more memory than one at the cap


BIG = {"time": 1780500776.773, "event": {"nodeId": "big", "note": "x" * 5_000}}
CUT_BIG = {"time": 1780500776.773, "event": {"note": "}{" + "x" * 5_000}}
"""Over 5,000 bytes; the second has a "}{" in a string, which sends framing down its slow path."""


def unparsed(body: bytes, record: bytes) -> Unparsed:
    offset = body.index(record)
    return Unparsed(memoryview(body)[offset : offset + len(record)], offset)


@pytest.mark.parametrize("record", [BIG, CUT_BIG], ids=["fast-path", "slow-path"])
@pytest.mark.parametrize("sep", [b"", b"\n"])
def test_a_record_over_max_record_bytes_is_unparsed_and_those_around_it_are_framed(record: object, sep: bytes) -> None:
    big = orjson.dumps(record)
    body = sep.join([dumps(A), big, dumps(B)])

    assert frame(body, max_records=9, max_depth=64, max_record_bytes=len(big) - 1) == [A, unparsed(body, big), B]
    assert frame(body, max_records=9, max_depth=64, max_record_bytes=len(big)) == [A, record, B]


@pytest.mark.parametrize(("before", "after"), [(b"[", b"]"), (b'{"logs": [', b"]}")], ids=["array", "logs-wrapper"])
def test_an_item_over_max_record_bytes_is_unparsed_and_the_others_are_framed(before: bytes, after: bytes) -> None:
    items = [{**PADDED, "i": i} for i in range(600)]
    big = orjson.dumps(CUT_BIG)
    head = before + b",".join(orjson.dumps(item) for item in items[:7]) + b","
    body = head + big + b"," + b",".join(orjson.dumps(item) for item in items[7:]) + after
    assert len(body) > WHOLE_ARRAY_BYTES

    records = frame(body, max_records=1_000, max_depth=64, max_record_bytes=len(big) - 1)

    assert records == [*items[:7], Unparsed(memoryview(body)[len(head) : len(head) + len(big)], len(head)), *items[7:]]


def test_an_unparsed_record_takes_a_slot_but_is_not_held_to_max_depth() -> None:
    deep = orjson.dumps({"pad": "x" * 100, "deep": nested(80)})
    body = dumps(A) + deep + dumps(B)

    assert frame(body, max_records=3, max_depth=64, max_record_bytes=100)[1] == unparsed(body, deep)
    with pytest.raises(TooManyRecords):
        frame(body, max_records=2, max_depth=64, max_record_bytes=100)
    with pytest.raises(NestingTooDeep):
        frame(body, max_records=3, max_depth=64, max_record_bytes=len(deep))


@pytest.mark.parametrize("record", [BIG, CUT_BIG], ids=["fast-path", "slow-path"])
def test_a_record_over_max_record_bytes_cut_short_is_truncated_where_it_starts(record: object) -> None:
    body = dumps(A) + orjson.dumps(record)[:-1]

    with pytest.raises(FramingError) as info:
        frame(body, max_records=9, max_depth=64, max_record_bytes=100)

    assert "truncated JSON object" in info.value.detail and info.value.offset == len(dumps(A))


@pytest.mark.parametrize("prefix", [b"", b'"}{","z":'], ids=["fast-path", "slow-path"])
def test_a_record_over_max_record_bytes_costs_no_memory_whatever_it_holds(prefix: bytes) -> None:
    """Nine MB of empty objects: parsed, 262 MB (thirty times its bytes)."""

    def record(entries: int) -> bytes:
        return b'{"time":1,"x":' + prefix + b'"y","event":{"virtualTraffic":[' + b",".join([b"{}"] * entries) + b"]}}"

    orjson.loads(record(3))  # valid JSON, so its end is the one a parser would find
    body = record(3_000_000)
    tracemalloc.start()
    try:
        [unparsed] = iter_records(body, max_records=9, max_depth=64, max_record_bytes=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert unparsed == Unparsed(memoryview(body), 0)
    assert peak < 100_000, f"peak {peak / 1e6:.1f} MB for a {len(body) / 1e6:.0f} MB record"
