"""JSON that parses but lies about its shape, against a real receiver: the schema's side of hostile input.

The answer (docs/architecture.md, "A record that parses as JSON but fails its schema does not fail
the request"): 200, the record is quarantined under data/quarantine/records with every validation
error and the record exactly as received, the rest of the batch is accepted, and no raw body is
kept (the request as a whole was fine). Values the schema allows but that are not addresses
(`src` of `:::`) are accepted: the derived `srcIp`/`srcPort` then hold only what is valid, and are
left out otherwise, as README.md says.
"""

from __future__ import annotations

import copy
import gzip
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.e2e.conftest import Server
from tests.e2e.hostile import (
    JSON_AMPLIFICATION,
    MEMORY_MARGIN,
    Ledger,
    Memory,
    assert_serving,
    post,
    start_server,
)
from tests.samples import audit_event, envelope, network_event

AUDIT_URL = "/v1/tailscale/audit"
NETWORK_URL = "/v1/tailscale/network"


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("schema"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def uncapped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A receiver whose max_record_bytes lets a record of tens of MB through."""
    server = start_server(tmp_path_factory.mktemp("uncapped"), "--max-record-bytes", str(1 << 30))
    yield server
    server.stop()


def post_records(server: Server, path: str, records: list[Any]) -> tuple[dict[str, Any], Any]:
    """POST records concatenated; return the answer's JSON and what the request stored.

    Serialized by the standard library, which writes integers of any size (orjson stops at 64 bits)."""
    before = Ledger.of(server)
    answer = post(server, path, b"".join(json.dumps(record).encode() for record in records))
    assert answer.status_code == 200, answer.text
    return answer.json(), before.since(server)


def without(record: dict[str, Any], dotted: str, *, null: bool) -> dict[str, Any]:
    """A deep copy of `record` with the field at `dotted` removed, or set to null."""
    changed = copy.deepcopy(record)
    *parents, last = dotted.split(".")
    target = changed
    for key in parents:
        target = target[key]
    if null:
        target[last] = None
    else:
        del target[last]
    return changed


REQUIRED = [
    # route, record, required field, the error's loc
    (NETWORK_URL, envelope(network_event()), "time", "time"),
    (NETWORK_URL, envelope(network_event()), "event", "event"),
    (AUDIT_URL, envelope(audit_event()), "time", "time"),
    (AUDIT_URL, envelope(audit_event()), "event", "event"),
    (AUDIT_URL, envelope(audit_event()), "event.origin", "event.origin"),
    (AUDIT_URL, envelope(audit_event()), "event.actor", "event.actor"),
    (AUDIT_URL, envelope(audit_event()), "event.target", "event.target"),
    (AUDIT_URL, envelope(audit_event()), "event.action", "event.action"),
]


@pytest.mark.parametrize("null", [False, True], ids=["missing", "null"])
@pytest.mark.parametrize(("path", "valid", "field", "loc"), [pytest.param(*case, id=case[2]) for case in REQUIRED])
def test_each_required_field_missing_or_null_quarantines_only_that_record(
    receiver: Server, path: str, valid: dict[str, Any], field: str, loc: str, null: bool
):
    """A record without `event` is read as a bare record (Tailscale's S3 export shape), whose time
    comes from its own `end`/`eventTime`/`logged`: it has none, so the error is the missing `time`."""
    broken = without(valid, field, null=null)
    if field == "event" and not null:
        loc = "time"

    answer, stored = post_records(receiver, path, [valid, broken, valid])

    assert answer == {"text": "Success", "code": 0, "accepted": 2, "quarantined": 1}
    assert (stored.accepted, stored.quarantined, stored.bodies) == (2, 1, [])
    row = receiver.quarantine_rows()[-1]
    assert row["record"] == broken
    assert (loc, "missing") in {(error["loc"], error["type"]) for error in row["errors"]}  # type: ignore[attr-defined]
    assert_serving(receiver)


WRONG_NETWORK = {
    "time": "yesterday",
    "event": {
        "nodeId": 5,
        "start": 5,
        "end": "not a time",
        "virtualTraffic": "x",
        "subnetTraffic": [5],
        "exitTraffic": [
            {"proto": "xyz", "src": 5, "dst": [], "txPkts": 1.5, "txBytes": True, "rxPkts": "12a", "rxBytes": {}}
        ],
        "physicalTraffic": {},
    },
    "fields": "x",
}
WRONG_AUDIT = {
    "time": [],
    "event": {
        "origin": 5,
        "actor": "me",
        "target": [],
        "action": None,
        "deferredAt": "yesterday",
        "eventGroupID": 7,
        "actionDetails": {},
        "error": 1,
    },
    "fields": {"recorded": 5},
}
WRONG_AUDIT_INSIDE = {
    "time": 1780500776,
    "event": {
        "origin": "ADMIN_CONSOLE",
        "actor": {"id": [], "type": 1, "loginName": {}, "displayName": 2.5, "tags": "x"},
        "target": {"id": 1, "name": [], "type": {}, "property": 5},
        "action": "UPDATE",
    },
}


@pytest.mark.parametrize(
    ("path", "record", "errors"),
    [
        pytest.param(
            NETWORK_URL,
            WRONG_NETWORK,
            {
                ("time", "invalid_unix_time"),
                ("event.nodeId", "string_type"),
                ("event.start", "invalid_timestamp"),
                ("event.end", "invalid_timestamp"),
                ("event.virtualTraffic", "list_type"),
                ("event.subnetTraffic.0", "dict_type"),
                ("event.exitTraffic.0.proto", "invalid_proto"),
                ("event.exitTraffic.0.src", "string_type"),
                ("event.exitTraffic.0.dst", "string_type"),
                ("event.exitTraffic.0.txPkts", "invalid_bigint"),
                ("event.exitTraffic.0.txBytes", "invalid_bigint"),
                ("event.exitTraffic.0.rxPkts", "invalid_bigint"),
                ("event.exitTraffic.0.rxBytes", "invalid_bigint"),
                ("event.physicalTraffic", "list_type"),
                ("fields", "dict_type"),
            },
            id="network",
        ),
        pytest.param(
            AUDIT_URL,
            WRONG_AUDIT,
            {
                ("time", "invalid_unix_time"),
                ("event.deferredAt", "invalid_timestamp"),
                ("event.eventGroupID", "string_type"),
                ("event.origin", "string_type"),
                ("event.actor", "dict_type"),
                ("event.target", "dict_type"),
                ("event.action", "missing"),
                ("event.actionDetails", "string_type"),
                ("event.error", "string_type"),
                ("fields.recorded", "invalid_timestamp"),
            },
            id="audit",
        ),
        pytest.param(
            AUDIT_URL,
            WRONG_AUDIT_INSIDE,
            {
                ("event.actor.id", "string_type"),
                ("event.actor.type", "string_type"),
                ("event.actor.loginName", "string_type"),
                ("event.actor.displayName", "string_type"),
                ("event.actor.tags", "list_type"),
                ("event.target.id", "string_type"),
                ("event.target.name", "string_type"),
                ("event.target.type", "string_type"),
                ("event.target.property", "string_type"),
            },
            id="audit-actor-and-target",
        ),
    ],
)
def test_wrong_types_everywhere_are_all_reported_on_one_quarantined_record(
    receiver: Server, path: str, record: dict[str, Any], errors: set[tuple[str, str]]
):
    answer, stored = post_records(receiver, path, [record])

    assert answer == {"text": "Success", "code": 0, "accepted": 0, "quarantined": 1}
    assert (stored.accepted, stored.quarantined, stored.bodies) == (0, 1, [])
    row = receiver.quarantine_rows()[-1]
    assert row["record"] == record
    assert {(error["loc"], error["type"]) for error in row["errors"]} == errors  # type: ignore[attr-defined]
    assert_serving(receiver)


def traffic(**entry: Any) -> dict[str, Any]:
    return {"time": 1780500776, "event": {"nodeId": "n", "virtualTraffic": [entry]}}


OUT_OF_RANGE = [
    ("proto-70000", traffic(proto=70000), "event.virtualTraffic.0.proto", "invalid_proto"),
    ("proto-below-smallint", traffic(proto=-32769), "event.virtualTraffic.0.proto", "invalid_proto"),
    ("proto-float", traffic(proto=6.0), "event.virtualTraffic.0.proto", "invalid_proto"),
    ("proto-bool", traffic(proto=True), "event.virtualTraffic.0.proto", "invalid_proto"),
    ("txbytes-2**63", traffic(txBytes=2**63), "event.virtualTraffic.0.txBytes", "invalid_bigint"),
    ("txbytes-10**30", traffic(txBytes=10**30), "event.virtualTraffic.0.txBytes", "invalid_bigint"),
    ("txbytes-below-int64", traffic(txBytes=-(2**63) - 1), "event.virtualTraffic.0.txBytes", "invalid_bigint"),
    (
        "txbytes-digits-past-int64",
        traffic(txBytes="99999999999999999999"),
        "event.virtualTraffic.0.txBytes",
        "invalid_bigint",
    ),
    ("time-1e20", {"time": 1e20, "event": {}}, "time", "invalid_unix_time"),
    ("time-minus-1e20", {"time": -1e20, "event": {}}, "time", "invalid_unix_time"),
    ("time-year-10000", {"time": 253402300800, "event": {}}, "time", "invalid_unix_time"),
    ("time-bool", {"time": True, "event": {}}, "time", "invalid_unix_time"),
    ("time-nan-string", {"time": "nan", "event": {}}, "time", "invalid_unix_time"),
    ("start-month-13", {"time": 1, "event": {"start": "2026-13-01T00:00:00Z"}}, "event.start", "invalid_timestamp"),
    ("start-leap-second", {"time": 1, "event": {"start": "2026-06-30T23:59:60Z"}}, "event.start", "invalid_timestamp"),
]


@pytest.mark.parametrize(("record", "loc", "kind"), [pytest.param(*case[1:], id=case[0]) for case in OUT_OF_RANGE])
def test_out_of_range_numbers_and_times_are_quarantined(receiver: Server, record: dict[str, Any], loc: str, kind: str):
    """Ranges are Panther's: smallint proto, int64 counters, unix time within years 1-9999. orjson
    reads an integer past 64 bits as a float, which the integer types refuse like any fraction."""
    answer, stored = post_records(receiver, NETWORK_URL, [record])

    assert answer == {"text": "Success", "code": 0, "accepted": 0, "quarantined": 1}
    assert (stored.accepted, stored.quarantined, stored.bodies) == (0, 1, [])
    row = receiver.quarantine_rows()[-1]
    assert [(error["loc"], error["type"]) for error in row["errors"]] == [(loc, kind)]  # type: ignore[index]
    assert row["record"] == orjson.loads(json.dumps(record))  # as orjson read it: 10**30 became 1e30
    assert_serving(receiver)


def test_the_edges_of_each_range_are_accepted_and_normalized(receiver: Server):
    edges = [
        {"time": 1780500776, "event": {"nodeId": "edge-1", "virtualTraffic": [{"proto": 32767, "txBytes": 2**63 - 1}]}},
        {
            "time": "1780500776",
            "event": {"nodeId": "edge-2", "virtualTraffic": [{"proto": "TCP", "txBytes": -(2**63)}]},
        },
        {"time": -62135596800, "event": {"nodeId": "edge-3", "virtualTraffic": [{"proto": "", "rxPkts": "12"}]}},
    ]

    answer, stored = post_records(receiver, NETWORK_URL, edges)

    assert answer == {"text": "Success", "code": 0, "accepted": 3, "quarantined": 0}
    rows = {row["event"].get("nodeId"): row for row in receiver.archive_rows()}  # type: ignore[index]
    assert rows["edge-1"]["event"]["virtualTraffic"][0] == {"proto": 32767, "txBytes": 2**63 - 1}  # type: ignore[index]
    assert rows["edge-2"]["time"] == 1780500776 and rows["edge-2"]["event"]["virtualTraffic"][0]["proto"] == 6  # type: ignore[index]
    assert rows["edge-3"]["p_event_time"] == "0001-01-01T00:00:00.000000Z"
    assert_serving(receiver)


ADDRESSES = [
    # src, the srcIp and srcPort derived from it (None: left out)
    ("100.64.0.1:41641", "100.64.0.1", 41641),
    (":::", None, None),
    ("[::1]", "::1", None),
    ("1.2.3.4:99999", "1.2.3.4", None),
    ("[fe80::1%]:1", None, 1),
    ("[fe80::1%eth0]:22", "fe80::1%eth0", 22),
    ("1.2.3.4:-1", "1.2.3.4", None),
    ("1.2.3.4:-0", "1.2.3.4", None),
    ("1.2.3.4:", "1.2.3.4", None),
    ("[::1]:65536", "::1", None),
    ("[::1]:0", "::1", 0),
    ("256.1.1.1:80", None, 80),
    ("1.2.3.4:\u0663", "1.2.3.4", None),
    ("1.2.3.4:99999999999999999999", "1.2.3.4", None),
    ("1.2.3.4\u0000:80", None, 80),
    ("[" + "f" * 100_000 + "]:80", None, 80),
    ("", None, None),
    ("[", None, None),
]


@pytest.mark.parametrize(("src", "ip", "port"), [pytest.param(*case, id=repr(case[0][:24])) for case in ADDRESSES])
def test_hostile_src_values_are_accepted_with_only_valid_parts_derived(
    receiver: Server, src: str, ip: str | None, port: int | None
):
    """`src` is any string to the schema; the derived fields are authoritative, so a value the sender
    put in `srcIp`/`srcPort` is overwritten or removed, and `p_any_ip_addresses` holds valid IPs only."""
    node = f"src-{abs(hash(src))}"
    entry = {"proto": 6, "src": src, "dst": "100.64.0.2:443", "srcIp": "not-an-ip", "srcPort": -5}
    record = {"time": 1780500776, "event": {"nodeId": node, "virtualTraffic": [entry]}}

    answer, stored = post_records(receiver, NETWORK_URL, [record])

    assert answer == {"text": "Success", "code": 0, "accepted": 1, "quarantined": 0}
    [row] = [row for row in receiver.archive_rows() if row["event"].get("nodeId") == node]  # type: ignore[index]
    archived = row["event"]["virtualTraffic"][0]  # type: ignore[index]
    assert archived["src"] == src
    assert archived.get("srcIp") == ip and archived.get("srcPort") == port
    assert (archived["dstIp"], archived["dstPort"]) == ("100.64.0.2", 443)
    expected_ips = {"100.64.0.2"} | ({ip.partition("%")[0]} if ip else set())
    assert set(row["p_any_ip_addresses"]) == expected_ips  # type: ignore[arg-type]
    assert_serving(receiver)


@pytest.mark.parametrize(
    ("entries", "label"),
    [
        pytest.param(
            [{"proto": 6, "src": f"100.64.{i // 256 % 256}.{i % 256}:{i % 65536}"} for i in range(100_000)],
            100_000,
            id="100k-entries",
        ),
        pytest.param([None] * 1_000_000, 1_000_000, id="1M-nulls"),
    ],
)
def test_a_giant_traffic_array_is_accepted_whole_within_bounded_memory(
    uncapped: Server, entries: list[Any], label: int
):
    """No per-array limit: max_body_bytes, max_decompressed_bytes and max_record_bytes bound it (the last
    raised here). Every entry is split."""
    receiver = uncapped
    node = f"giant-{label}"
    record = {"time": 1780500776, "event": {"nodeId": node, "virtualTraffic": entries}}
    body = orjson.dumps(record)
    before = Ledger.of(receiver)

    with Memory(receiver).watch() as memory:
        answer = post(receiver, NETWORK_URL, body)

    assert answer.json() == {"text": "Success", "code": 0, "accepted": 1, "quarantined": 0}
    assert before.since(receiver).bodies == []
    [row] = [row for row in receiver.archive_rows() if row["event"].get("nodeId") == node]  # type: ignore[index]
    archived = row["event"]["virtualTraffic"]  # type: ignore[index]
    assert len(archived) == len(entries)
    if entries[0] is not None:
        assert archived[-1]["srcIp"] == "100.64.134.159" and archived[-1]["srcPort"] == 99_999 % 65536
    print(f"memory giant array {len(body)} bytes: {memory}")
    assert memory.growth <= JSON_AMPLIFICATION * len(body) + MEMORY_MARGIN, str(memory)
    assert_serving(receiver)


def test_a_record_over_max_record_bytes_is_quarantined_with_its_size_within_bounded_memory(receiver: Server):
    """The default cap, 4 MiB of stored row: a record of 100,000 flows is not one Tailscale sends
    (its client caps one at 256 KiB), and a row that large could stop a sink that cannot take it."""
    node = "over-the-cap"
    entries = [{"proto": 6, "src": f"100.64.{i // 256 % 256}.{i % 256}:{i % 65536}"} for i in range(100_000)]
    body = orjson.dumps({"time": 1780500776, "event": {"nodeId": node, "virtualTraffic": entries}})
    before = Ledger.of(receiver)

    with Memory(receiver).watch() as memory:
        answer = post(receiver, NETWORK_URL, body + orjson.dumps(envelope(network_event("under-the-cap"))))

    assert answer.json() == {"text": "Success", "code": 0, "accepted": 1, "quarantined": 1}
    stored = before.since(receiver)
    assert (stored.accepted, stored.quarantined, stored.bodies) == (1, 1, [])
    [row] = [row for row in receiver.quarantine_rows() if node in orjson.dumps(row["record"]).decode()[:200]]
    [error] = row["errors"]  # type: ignore[misc]
    assert error["type"] == "record_too_large" and "over max_record_bytes (4194304)" in error["msg"]
    assert len(row["record"]["event"]["virtualTraffic"]) == 100_000  # type: ignore[index]
    assert "p_row_id" not in row["record"]  # type: ignore[operator]
    nodes = [row["event"].get("nodeId", "") for row in receiver.archive_rows()]  # type: ignore[attr-defined]
    assert [node for node in nodes if node.endswith("-the-cap")] == ["under-the-cap"]
    assert memory.growth <= JSON_AMPLIFICATION * len(body) + MEMORY_MARGIN, str(memory)
    assert_serving(receiver)


def test_a_record_that_arrives_over_max_record_bytes_is_quarantined_unparsed_in_little_memory(receiver: Server):
    """Nine MB of empty flow entries, from a 9 KB gzip body: parsed, thirty times its bytes (262 MB); over
    the 4 MiB cap it is never parsed, and its text is what the quarantine keeps."""
    big = (
        b'{"time":1780500776,"event":{"nodeId":"unparsed","virtualTraffic":[' + b",".join([b"{}"] * 3_000_000) + b"]}}"
    )
    body = gzip.compress(big + orjson.dumps(envelope(network_event("beside-the-unparsed"))))
    before = Ledger.of(receiver)

    with Memory(receiver).watch() as memory:
        answer = post(receiver, NETWORK_URL, body, headers={"Content-Encoding": "gzip"})

    assert answer.json() == {"text": "Success", "code": 0, "accepted": 1, "quarantined": 1}
    stored = before.since(receiver)
    assert (stored.accepted, stored.quarantined, stored.bodies) == (1, 1, [])
    [row] = [row for row in receiver.quarantine_rows() if str(row.get("raw", "")).startswith(big[:60].decode())]
    assert row["raw"] == big.decode() and row["record"] is None
    [error] = row["errors"]  # type: ignore[misc]
    assert error["type"] == "record_too_large" and f"{len(big)} bytes as received" in error["msg"]
    assert "beside-the-unparsed" in [row["event"].get("nodeId") for row in receiver.archive_rows()]  # type: ignore[attr-defined]
    print(f"memory unparsed record {len(big)} bytes: {memory}")
    assert memory.growth <= 4 * len(big) + MEMORY_MARGIN, str(memory)
    assert_serving(receiver)
