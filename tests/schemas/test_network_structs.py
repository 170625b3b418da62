"""The network lane (`app.schemas.network_structs`) writes exactly the rows the general path writes.

The pipeline decodes a network record in normal form straight into structs and writes its row with
msgspec; anything else takes the general path (orjson, pydantic, `append_row`). Both lanes must agree
on every record, whatever order its keys come in: which records are accepted, and each row's bytes,
`p_row_id` included.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from app.errors import NestingTooDeep
from app.ingest.framing import iter_records
from app.ingest.pipeline import RequestContext, build_batch, frame_records
from app.schemas import network_structs
from app.schemas.common import UNIX_END, UNIX_MIN
from app.schemas.network_structs import NetworkRecord, decode
from app.settings import DEFAULT_MAX_RECORD_BYTES, Settings
from app.storage import Batch
from app.types import LogType
from bench.workload import records as workload_records
from tests.schemas.samples import streamed_network

PARSE_TIME = datetime(2026, 6, 3, 15, 0, tzinfo=UTC)
SETTINGS = Settings()


def _json(value: Any) -> bytes:
    """JSON text of `value`, integers past 64 bits included (orjson refuses to write those)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _context(log_type: LogType | None) -> RequestContext:
    return RequestContext(request_id="r1", log_type=log_type, source_id="s", source_label="l")


def _both_lanes(body: bytes, log_type: LogType | None, max_record_bytes: int) -> tuple[Batch, Batch]:
    """The batch of `body` through the pipeline as shipped, and through the general path alone."""
    ctx = _context(log_type)
    limits = SETTINGS.model_copy(update={"max_record_bytes": max_record_bytes})
    shipped = build_batch(frame_records(body, ctx, limits), ctx, PARSE_TIME, max_record_bytes=max_record_bytes)
    general_records = iter_records(
        body, max_records=limits.max_records, max_depth=limits.max_depth, max_record_bytes=max_record_bytes
    )
    general = build_batch(general_records, ctx, PARSE_TIME, max_record_bytes=max_record_bytes)
    return shipped, general


# Values of every JSON type, including those the lane must leave to the general path.
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(["", "tcp", "UDP", "12", "6.0", " 7", "x"]),
    st.integers(-(2**65), 2**65),
    st.floats(allow_nan=False, allow_infinity=False),
    st.just([]),
    st.just({}),
)
INTEGERS = st.one_of(
    st.integers(-(2**64), 2**64),
    st.sampled_from([0, 6, 2**15 - 1, 2**15, -(2**15), -(2**15) - 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1]),
)
ADDRESSES = st.one_of(
    st.sampled_from(
        [
            "100.64.0.1:443",
            "100.64.0.1:0",
            "100.64.0.1",
            "[fd7a:115c:a1e0::1]:41641",
            "[fe80::1%eth0]:22",
            "fd7a:115c:a1e0::2",
            "[::ffff:1.2.3.4]:80",
            "1.O.3.22:2341",
            "100.64.0.1:70000",
            "100.064.0.1:1",
            "",
        ]
    ),
    st.text(max_size=12),
)
TIMESTAMPS = st.one_of(
    st.sampled_from(
        [
            "2026-06-03T15:32:51.552946176Z",
            "0001-01-01T00:00:00Z",
            "2026-06-03T15:32:51+01:00",
            "2026-06-03 15:32:51Z",
            "2026-06-03T15:32:60Z",
        ]
    ),
    st.text(max_size=6),
)
PREFIXES = st.sampled_from(["100.64.0.2/32", "fd7a::2/128", "100.64.0.0/10"])
TEXT = st.one_of(st.text(max_size=8), st.sampled_from(["a@b.io", "octocat@github", "tag:server", 'é\u2028\x7f\\"']))


def _mostly(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`value` nine times in ten, else an odd value: most records valid, each field sometimes not."""
    return st.integers(0, 9).flatmap(lambda draw: ODD if draw == 0 else value)


def _object(required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]) -> Any:
    """Objects with each optional key present or not, each value mostly of its kind, and one time in
    ten a key no struct declares (a sender's own `p_*` or a field Tailscale adds)."""
    unknown = st.integers(0, 9).flatmap(
        lambda draw: (
            st.dictionaries(st.sampled_from(["p_row_id", "p_log_type", "extra"]), ODD, max_size=1)
            if draw == 0
            else st.just({})
        )
    )
    fields = st.fixed_dictionaries(
        {key: _mostly(value) for key, value in required.items()},
        optional={key: _mostly(value) for key, value in optional.items()},
    )
    return st.tuples(fields, unknown).map(lambda parts: parts[0] | parts[1])


ENTRY = _object(
    {},
    {
        "proto": INTEGERS,
        "src": ADDRESSES,
        "dst": ADDRESSES,
        "txPkts": INTEGERS,
        "txBytes": INTEGERS,
        "rxPkts": INTEGERS,
        "rxBytes": INTEGERS,
        "srcIp": ADDRESSES,
        "srcPort": INTEGERS,
        "dstIp": ADDRESSES,
        "dstPort": INTEGERS,
    },
)
NODE = _object(
    {},
    {
        "nodeId": TEXT,
        "name": TEXT,
        "addresses": st.lists(_mostly(st.one_of(ADDRESSES, PREFIXES)), max_size=3),
        "os": TEXT,
        "user": TEXT,
        "tags": st.lists(_mostly(TEXT), max_size=2),
    },
)
TRAFFIC = st.lists(_mostly(st.one_of(ENTRY, st.none())), max_size=4)
EVENT = _object(
    {},
    {
        "nodeId": TEXT,
        "start": TIMESTAMPS,
        "end": TIMESTAMPS,
        "virtualTraffic": TRAFFIC,
        "subnetTraffic": TRAFFIC,
        "exitTraffic": TRAFFIC,
        "physicalTraffic": TRAFFIC,
        "srcNode": NODE,
        "dstNodes": st.lists(_mostly(st.one_of(NODE, st.none())), max_size=2),
    },
)
TIME = st.one_of(
    st.integers(UNIX_MIN - 2, UNIX_END + 2),
    st.floats(UNIX_MIN - 10, UNIX_END + 10),
    st.sampled_from([1780500776.773, 1780500776, 1e-7, -0.0, 0, UNIX_MIN, UNIX_END - 1, "1780500776"]),
)
RECORD = _object({"time": TIME, "event": EVENT}, {"fields": _object({}, {"recorded": TIMESTAMPS})})


def _rows(batch: Batch) -> list[Any]:
    return [orjson.loads(line) for line in bytes(batch.ndjson).splitlines()]


@settings(max_examples=400, deadline=None)
@given(
    records=st.lists(RECORD, min_size=1, max_size=3),
    log_type=st.sampled_from(["network", None]),
    max_record_bytes=st.sampled_from([DEFAULT_MAX_RECORD_BYTES, 700]),
)
@example(records=[streamed_network()], log_type=None, max_record_bytes=DEFAULT_MAX_RECORD_BYTES)
@example(records=[streamed_network()], log_type="network", max_record_bytes=1_000)
def test_both_lanes_write_the_same_rows_and_quarantine_the_same_records(
    records: list[dict[str, Any]], log_type: LogType | None, max_record_bytes: int
) -> None:
    for record in records:
        event("network lane" if decode(_json(record), shaped=log_type is None) else "general path")
    # Keys in Tailscale's order and in another: rows are canonical JSON, the same bytes either way.
    reversed_keys = [dict(reversed(record.items())) for record in records]
    for ordered in (records, reversed_keys):
        shipped, general = _both_lanes(b"".join(_json(record) for record in ordered), log_type, max_record_bytes)
        assert bytes(shipped.ndjson) == bytes(general.ndjson)
        assert shipped.quarantined == general.quarantined
        assert shipped.counts == general.counts


@pytest.mark.parametrize(
    "struct",
    [
        network_structs.TrafficEntry,
        network_structs.Node,
        network_structs.NetworkEvent,
        network_structs.Fields,
        NetworkRecord,
    ],
)
def test_every_struct_declares_its_fields_in_sorted_order_so_rows_are_canonical_json(struct: type) -> None:
    """The row of a record is its canonical JSON (`app.enrich`): msgspec writes fields in declared order."""
    fields = struct.__struct_fields__  # type: ignore[attr-defined]
    assert list(fields) == sorted(fields)


def _line(record: dict[str, Any]) -> bytes:
    shipped, general = _both_lanes(_json(record), "network", DEFAULT_MAX_RECORD_BYTES)
    assert bytes(shipped.ndjson) == bytes(general.ndjson)
    return bytes(shipped.ndjson)


def test_what_tailscale_streams_takes_the_lane_with_its_nodes():
    record = decode(orjson.dumps(streamed_network()), shaped=True)

    assert isinstance(record, NetworkRecord)
    row = orjson.loads(_line(streamed_network()))
    assert row["p_any_ip_addresses"][:3] == ["100.64.0.1", "100.64.0.2", "127.3.3.40"]
    assert row["p_any_emails"] == ["alice@example.com"]
    assert row["event"]["virtualTraffic"][1]["srcIp"] == "fd7a:115c:a1e0::1"


def test_every_record_of_the_benchmark_workload_takes_the_lane():
    """What the benchmark measures is the lane, not the general path behind it."""
    ctx = _context("network")
    records = list(frame_records(b"".join(orjson.dumps(r) for r in workload_records("network", 73)), ctx, SETTINGS))
    assert all(type(record) is NetworkRecord for record in records)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda r: r["event"].update(extra=1), "an unknown key is kept by the general path"),
        (lambda r: r.update(p_row_id="mine"), "a sender's own p_* field is replaced there"),
        (lambda r: r["event"]["virtualTraffic"][0].update(proto="tcp"), "a protocol name is normalized"),
        (lambda r: r["event"]["virtualTraffic"][0].update(txBytes="12"), "a counter as a string is normalized"),
        (lambda r: r["event"]["virtualTraffic"][0].update(txBytes=2**63), "past 64 bits orjson reads a float"),
        (lambda r: r["event"].update(start="2026-06-03 15:32:51Z"), "not RFC 3339: pydantic says why"),
        (lambda r: r["fields"].update(recorded="yesterday"), "not RFC 3339 either"),
        (lambda r: r.update(time="1780500776"), "unix seconds as a string are normalized"),
        (lambda r: r.update(time=True), "a boolean is no time"),
        (lambda r: r.pop("time"), "time is required"),
        (lambda r: r["event"]["srcNode"].update(addresses="100.64.0.1"), "the general path keeps any value"),
    ],
)
def test_a_record_the_lane_cannot_write_as_is_takes_the_general_path(change: Any, why: str) -> None:
    record = streamed_network()
    change(record)
    assert decode(_json(record), shaped=False) is None, why
    _line(record)


def test_on_the_hec_route_an_event_without_nodeid_or_traffic_is_left_to_classify():
    record = {"time": 1780500776, "event": {"start": "2026-06-03T15:32:51Z"}}
    data = orjson.dumps(record)

    assert decode(data, shaped=True) is None
    assert isinstance(decode(data, shaped=False), NetworkRecord)
    shipped, _ = _both_lanes(data, None, DEFAULT_MAX_RECORD_BYTES)
    assert shipped.quarantined[0]["errors"][0]["type"] == "unclassified"


@pytest.mark.parametrize(
    "data",
    [
        b'{"time":1,"event":{"nodeId":"\xff"}}',
        b'{"time":1,"event":{"nodeId":"\\ud800"}}',
        b'{"time":1,"event":{"nodeId":"a\x01"}}',
        b'{"time":NaN,"event":{}}',
        b'{"time":1,"event":{}}{"time":1',
    ],
)
def test_json_orjson_refuses_is_refused_by_the_lane_too(data: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(data)
    assert decode(data, shaped=False) is None


def test_duplicate_keys_keep_the_last_value_in_both():
    data = b'{"time":1,"time":2,"event":{"nodeId":"a","nodeId":"b"}}'
    record = decode(data, shaped=True)
    assert record is not None and (record.time, record.event.nodeId) == (2, "b")
    assert orjson.loads(data) == {"time": 2, "event": {"nodeId": "b"}}


def test_time_keeps_its_json_type():
    assert b'"time":1780500776,' in _line({"time": 1780500776, "event": {"nodeId": "n"}})
    assert b'"time":1780500776.0,' in _line({"time": 1780500776.0, "event": {"nodeId": "n"}})


def test_below_the_structs_depth_max_depth_turns_the_lane_off():
    """The lane's records are not counted bracket by bracket, so they may not nest deeper than max_depth."""
    ctx = _context("network")
    with_nodes = orjson.dumps(streamed_network())  # dstNodes[].addresses[]: five levels
    without = streamed_network()
    del without["event"]["srcNode"], without["event"]["dstNodes"]
    shallow = SETTINGS.model_copy(update={"max_depth": network_structs.DEPTH - 1})

    assert [type(r) for r in frame_records(with_nodes, ctx, SETTINGS)] == [NetworkRecord]
    assert [type(r) for r in frame_records(orjson.dumps(without), ctx, shallow)] == [dict]
    with pytest.raises(NestingTooDeep):
        list(frame_records(with_nodes, ctx, shallow))


def test_only_routes_that_may_hold_network_records_use_the_lane():
    data = orjson.dumps(streamed_network())
    audit_only = RequestContext(
        request_id="r", log_type=None, source_id="s", source_label="l", allowed_log_types=frozenset({"audit"})
    )
    for ctx in (_context("audit"), audit_only):
        assert [type(r) for r in frame_records(data, ctx, SETTINGS)] == [dict]


def test_a_record_cut_inside_a_string_is_refused_by_the_lane_and_framed_whole_by_the_general_path():
    """Framing cuts at each `}{`, also one inside a string: the lane must refuse the half it is given,
    and the records after it still take the lane."""
    tricky = streamed_network()
    tricky["event"]["nodeId"] = 'n}{"time":1,"event":{}}{x'
    body = _json(tricky) + _json(streamed_network())
    ctx = _context(None)

    assert [type(r) for r in frame_records(body, ctx, SETTINGS)] == [dict, NetworkRecord]
    shipped, general = _both_lanes(body, None, DEFAULT_MAX_RECORD_BYTES)
    assert bytes(shipped.ndjson) == bytes(general.ndjson)
    assert [row["event"]["nodeId"] for row in _rows(shipped)] == [tricky["event"]["nodeId"], "nXYZ1CNTRL"]
