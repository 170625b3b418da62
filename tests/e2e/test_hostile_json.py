"""Hostile JSON against a real receiver: truncated, bottomless, gigantic, not UTF-8, not JSON, too many.

The answers (docs/architecture.md; app/ingest/framing.py decides what is JSON):
- a body that is not a sequence of JSON objects/arrays is 400 `invalid_json` with the byte `offset`
  of the fault; nesting past max_depth is 400 `nesting_too_deep`. Either way the raw body is kept
  under data/quarantine/bodies and nothing of the request is accepted, not even the well-formed
  records before the fault: a 400 means "nothing of this was stored, fix it and re-send".
- RFC 8259 leaves these open; the receiver's choices: NaN/Infinity, invalid UTF-8, lone surrogates
  and numbers overflowing a double are refused (400); a duplicate key keeps its last value and the
  record is accepted; a leading UTF-8 BOM is skipped (accepted), one anywhere else is refused;
  an empty or whitespace-only body is a probe: 200 with nothing accepted and nothing stored.
- a top-level array's items that are not objects are records that fail their schema: quarantined
  one by one (200), never silently dropped.
- more than max_records records is 413 and nothing is kept, however tiny the records.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.e2e.conftest import Server
from tests.e2e.hostile import (
    JSON_AMPLIFICATION,
    MEMORY_MARGIN,
    NETWORK,
    NETWORK_URL,
    Ledger,
    Memory,
    MiB,
    assert_serving,
    post,
    start_server,
)
from tests.samples import concatenated, envelope, network_event

MAX_BODY = 8 * MiB
MAX_DECODED = 8 * MiB
DEEP = 100_000
BOM = b"\xef\xbb\xbf"
TIME = b'{"time":1780500776,"event":'


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        tmp_path_factory.mktemp("json"), "--max-body-bytes", str(MAX_BODY), "--max-decompressed-bytes", str(MAX_DECODED)
    )
    yield server
    server.stop()


def record(node: str) -> bytes:
    return concatenated([envelope(network_event(node))])


NOT_JSON: list[tuple[str, bytes, str, str]] = [
    # id, body, reason kept beside it, words of the detail
    ("truncated-object", TIME + b'{"nodeId":"n"', "invalid_json", "truncated JSON object"),
    ("truncated-after-a-good-record", NETWORK + NETWORK[:-10], "invalid_json", "truncated JSON object"),
    ("truncated-array", b"[" + NETWORK, "invalid_json", "truncated JSON array"),
    ("unterminated-string", TIME + b'{"nodeId":"n', "invalid_json", "truncated"),
    ("deep-arrays-100k", b"[" * DEEP + b"]" * DEEP, "nesting_too_deep", "max_depth"),
    ("deep-objects-100k", b'{"a":' * DEEP + b"1" + b"}" * DEEP, "nesting_too_deep", "max_depth"),
    ("deep-inside-a-record", TIME + b'{"x":' + b"[" * DEEP + b"]" * DEEP + b"}}", "nesting_too_deep", "max_depth"),
    ("deep-after-a-good-record", NETWORK + b"[" * DEEP + b"]" * DEEP, "nesting_too_deep", "max_depth"),
    ("deep-and-never-closed", b"[" * DEEP, "nesting_too_deep", "max_depth"),
    ("invalid-utf8", TIME + b'{"nodeId":"\xff\xfe"}}', "invalid_json", "invalid UTF-8"),
    ("overlong-utf8", TIME + b'{"nodeId":"\xc0\xaf"}}', "invalid_json", "invalid UTF-8"),
    ("surrogate-as-utf8-bytes", TIME + b'{"nodeId":"\xed\xa0\x80"}}', "invalid_json", "invalid UTF-8"),
    ("lone-high-surrogate", TIME + b'{"nodeId":"\\ud800"}}', "invalid_json", "surrogate"),
    ("lone-low-surrogate", TIME + b'{"nodeId":"\\udc00x"}}', "invalid_json", "surrogate"),
    ("invalid-utf8-between-records", NETWORK + b"\xff" + NETWORK, "invalid_json", "expected a JSON object"),
    ("nan", b'{"time":NaN,"event":{}}', "invalid_json", "invalid JSON"),
    ("infinity", b'{"time":Infinity,"event":{}}', "invalid_json", "invalid JSON"),
    ("minus-infinity", b'{"time":-Infinity,"event":{}}', "invalid_json", "invalid JSON"),
    ("number-overflowing-a-double", b'{"time":1e400,"event":{}}', "invalid_json", "infinity"),
    ("top-level-number", b"42", "invalid_json", "not a number"),
    ("top-level-string", b'"hello"', "invalid_json", "not a string"),
    ("top-level-null", b"null", "invalid_json", "not null"),
    ("top-level-true", b"true", "invalid_json", "not a boolean"),
    ("top-level-megabyte-string", b'"' + b"a" * MiB + b'"', "invalid_json", "not a string"),
    ("record-then-number", NETWORK + b" 42", "invalid_json", "expected a JSON object"),
    ("bom-between-records", NETWORK + BOM + NETWORK, "invalid_json", "expected a JSON object"),
    ("two-boms", BOM + BOM + NETWORK, "invalid_json", "expected a JSON object"),
    ("utf16-with-bom", b"\xff\xfe" + NETWORK.decode().encode("utf-16-le"), "invalid_json", "expected a JSON object"),
    ("comma-separated-objects", NETWORK + b"," + NETWORK, "invalid_json", "expected a JSON object"),
    ("single-quotes", b"{'time': 1}", "invalid_json", "invalid JSON"),
    ("comment", b"// Tailscale\n" + NETWORK, "invalid_json", "expected a JSON object"),
    ("trailing-garbage", NETWORK + b"garbage", "invalid_json", "expected a JSON object"),
]


@pytest.mark.parametrize(("body", "reason", "detail"), [pytest.param(*case[1:], id=case[0]) for case in NOT_JSON])
def test_a_body_that_is_not_json_objects_is_400_kept_raw_and_nothing_accepted(
    receiver: Server, body: bytes, reason: str, detail: str
):
    before = Ledger.of(receiver)

    with Memory(receiver).watch() as memory:
        answer = post(receiver, NETWORK_URL, body)

    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == 6 and answer.json()["text"] == "Invalid data format"
    assert detail in answer.json()["detail"]
    assert 0 <= answer.json()["offset"] <= len(body)
    stored = before.since(receiver)
    assert (stored.accepted, stored.quarantined) == (0, 0)
    assert stored.bodies == [body] and stored.reasons == [reason]
    assert memory.growth <= JSON_AMPLIFICATION * len(body) + MEMORY_MARGIN, str(memory)
    assert_serving(receiver)


def test_the_offset_of_invalid_utf8_points_at_the_bad_byte(receiver: Server):
    body = NETWORK + TIME + b'{"nodeId":"ok-\xff"}}'

    answer = post(receiver, NETWORK_URL, body)

    assert answer.status_code == 400
    assert body[answer.json()["offset"]] == 0xFF


def test_a_duplicate_key_keeps_its_last_value_and_the_record_is_accepted(receiver: Server):
    """RFC 8259 §4 leaves duplicate names to the implementation; orjson keeps the last one, as
    Go's encoding/json (Tailscale's and Panther's) does. The record is accepted as the last one says."""
    body = TIME + b'{"nodeId":"first"},"event":{"nodeId":"last","virtualTraffic":[],"virtualTraffic":null}}'
    before = Ledger.of(receiver)

    answer = post(receiver, NETWORK_URL, body)

    assert answer.json() == {"text": "Success", "code": 0, "accepted": 1, "quarantined": 0}
    assert before.since(receiver).bodies == []
    [row] = [row for row in receiver.archive_rows() if row["event"]["nodeId"] in ("first", "last")]  # type: ignore[index]
    assert row["event"] == {"nodeId": "last", "virtualTraffic": None}
    assert_serving(receiver)


@pytest.mark.parametrize(
    ("body", "accepted"),
    [
        pytest.param(BOM + record("bom-1"), 1, id="bom-then-record"),
        pytest.param(BOM + record("bom-2") + b"\n" + record("bom-3") + b"\n", 2, id="bom-then-ndjson"),
        pytest.param(BOM + b"[" + record("bom-4") + b"]", 1, id="bom-then-array"),
        pytest.param(b"", 0, id="empty"),
        pytest.param(b" \t\r\n" * 1000, 0, id="whitespace-only"),
        pytest.param(BOM, 0, id="bom-only"),
        pytest.param(BOM + b"\n\n", 0, id="bom-and-whitespace"),
        pytest.param(b"[]", 0, id="empty-array"),
        pytest.param(b'{"logs":[]}', 0, id="empty-logs-wrapper"),
        pytest.param(b"[][][]", 0, id="empty-arrays"),
    ],
)
def test_boms_empty_bodies_and_empty_arrays_are_accepted_as_what_they_hold(
    receiver: Server, body: bytes, accepted: int
):
    """A leading UTF-8 BOM is skipped (RFC 8259 §8.1 lets a parser ignore it; Windows tools write
    one). A body with no record (empty, whitespace, `[]`) is a probe: 200, nothing stored."""
    before = Ledger.of(receiver)

    answer = post(receiver, NETWORK_URL, body)

    assert answer.json() == {"text": "Success", "code": 0, "accepted": accepted, "quarantined": 0}
    stored = before.since(receiver)
    assert (stored.accepted, stored.quarantined, stored.bodies) == (accepted, 0, [])
    assert_serving(receiver)


def test_array_items_that_are_not_objects_are_each_quarantined(receiver: Server):
    items: list[object] = [1, "a", None, True, [], 2.5, [{"nodeId": "inner"}]]
    before = Ledger.of(receiver)

    answer = post(receiver, NETWORK_URL, orjson.dumps(items))

    assert answer.json() == {"text": "Success", "code": 0, "accepted": 0, "quarantined": len(items)}
    stored = before.since(receiver)
    assert (stored.accepted, stored.quarantined, stored.bodies) == (0, len(items), [])
    rows = receiver.quarantine_rows()[-len(items) :]
    assert [row["record"] for row in rows] == items
    assert {error["type"] for row in rows for error in row["errors"]} == {"not_an_object"}  # type: ignore[attr-defined]
    assert_serving(receiver)


TINY = 1_000_000


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{}" * TINY, id="concatenated"),
        pytest.param(b"{}\n" * TINY, id="ndjson"),
        pytest.param(b"[" + b",".join([b"{}"] * TINY) + b"]", id="one-array"),
        pytest.param(b'{"logs":[' + b",".join([b"{}"] * TINY) + b"]}", id="logs-wrapper"),
        pytest.param(b"[]" * TINY, id="empty-arrays"),
    ],
)
def test_a_million_tiny_records_are_413_and_nothing_is_kept(receiver: Server, body: bytes):
    """max_records (100,000 by default) counts records, not bytes: 2-3 MB of `{}` is refused as a
    whole. Each shape stops at the 100,001st record (an array or wrapper over 1 MiB is framed item by
    item); memory is what 100,000 tiny records and their quarantine rows take (63-85 MiB measured),
    within `JSON_AMPLIFICATION` times the body (see hostile.py)."""
    before = Ledger.of(receiver)

    with Memory(receiver).watch() as memory:
        answer = post(receiver, NETWORK_URL, body)

    assert answer.status_code == 413, answer.text
    assert answer.json()["code"] == 6 and "max_records" in answer.json()["detail"]
    assert before.since(receiver).nothing
    print(f"memory {len(body)} bytes of tiny records: {memory}")
    assert memory.growth <= JSON_AMPLIFICATION * len(body) + MEMORY_MARGIN, str(memory)
    assert_serving(receiver)


FIFTY_MB = 50 * 1000 * 1000


def fifty_megabyte_string_record(node: str = "huge", filler: bytes = b"}{") -> bytes:
    """A valid record whose `event.note` is a 50 MB string of `}{`: the worst case for framing, which
    first cuts the body at every `}{`."""
    return TIME + b'{"nodeId":"' + node.encode() + b'","note":"' + filler * (FIFTY_MB // len(filler)) + b'"}}'


def test_a_50_mb_string_over_the_body_cap_is_413_before_it_is_read(receiver: Server):
    """Declared by Content-Length: refused before a byte of the body is read."""
    body = fifty_megabyte_string_record()
    before = Ledger.of(receiver)

    with Memory(receiver).watch() as memory:
        answer = post(receiver, NETWORK_URL, body)

    assert answer.status_code == 413 and "max_body_bytes" in answer.json()["detail"]
    assert before.since(receiver).nothing
    assert memory.growth <= MEMORY_MARGIN, str(memory)
    assert_serving(receiver)


def test_a_50_mb_string_streamed_chunked_is_413_once_the_cap_is_passed(receiver: Server):
    body = fifty_megabyte_string_record()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), MiB):
            yield body[start : start + MiB]

    before = Ledger.of(receiver)

    with Memory(receiver).watch() as memory:
        answer = post(receiver, NETWORK_URL, chunks())

    assert answer.status_code == 413 and "max_body_bytes" in answer.json()["detail"]
    assert before.since(receiver).nothing
    assert memory.growth <= 2 * MAX_BODY + MEMORY_MARGIN, str(memory)
    assert_serving(receiver)


def test_a_50_mb_string_inside_a_record_is_accepted_when_the_caps_allow_it(tmp_path: Path):
    """The caps are the only size policy, so a valid record holding a 50 MB string is accepted whole
    when it fits max_body_bytes, max_decompressed_bytes and max_record_bytes. Memory: the string exists
    about eight times at the peak (raw body, the text json's scanner walks, the parsed value, the
    journal line, and the archive sink's read, parse and write); ten are allowed."""
    caps = ["--max-body-bytes", str(64 * MiB), "--max-decompressed-bytes", str(64 * MiB)]
    server = start_server(tmp_path, *caps, "--max-record-bytes", str(64 * MiB))
    try:
        body = fifty_megabyte_string_record() + record("after-huge")  # two records: framing's slow path
        before = Ledger.of(server)

        with Memory(server).watch() as memory:
            answer = post(server, NETWORK_URL, body)
            rows = server.archive_rows()

        assert answer.json() == {"text": "Success", "code": 0, "accepted": 2, "quarantined": 0}
        assert before.since(server).bodies == []
        assert [row["event"]["nodeId"] for row in rows] == ["huge", "after-huge"]  # type: ignore[index]
        assert len(rows[0]["event"]["note"]) == FIFTY_MB  # type: ignore[index]
        print(f"memory 50 MB string record: {memory}")
        assert memory.growth <= 10 * FIFTY_MB + MEMORY_MARGIN, str(memory)
        assert_serving(server)
    finally:
        server.stop()
