"""Tailscale.Network: the one traffic entry type, Panther's integer types, protocol names."""

from __future__ import annotations

import copy

import pytest

from app.schemas import RecordInvalid, validate
from app.schemas.common import PROTO_NAMES
from app.schemas.network import TRAFFIC_KEYS
from app.types import Row
from tests.schemas.samples import streamed_network

COUNTERS = ("txPkts", "txBytes", "rxPkts", "rxBytes")


def _with_entry(entry: Row, key: str = "virtualTraffic") -> Row:
    record = streamed_network()
    record["event"][key] = [entry]
    return record


def _error(record: Row) -> dict[str, str]:
    with pytest.raises(RecordInvalid) as caught:
        validate(record, "network")
    [error] = caught.value.errors
    return error


def test_streamed_network_record_validates_and_keeps_every_key() -> None:
    record = streamed_network()
    expected = copy.deepcopy(record)
    result = validate(record, "network")
    assert result == expected
    assert result["event"]["srcNode"] == expected["event"]["srcNode"]
    assert "proto" not in result["event"]["physicalTraffic"][0]


def test_an_empty_event_is_a_valid_network_record() -> None:
    assert validate({"time": 1, "event": {}}, "network") == {"time": 1, "event": {}}


def test_traffic_entry_fields_may_all_be_absent_or_null() -> None:
    record = _with_entry({})
    record["event"]["subnetTraffic"] = [dict.fromkeys(("proto", "src", "dst", *COUNTERS))]
    record["event"]["exitTraffic"] = None
    record["event"]["physicalTraffic"] = [None]
    assert validate(record, "network") == record


def test_unknown_entry_keys_and_sender_split_fields_are_kept_by_validation() -> None:
    entry = {"proto": 6, "src": "100.64.0.1:1", "srcIp": "bogus", "dstPort": "x", "flags": ["SYN"]}
    assert validate(_with_entry(entry), "network")["event"]["virtualTraffic"] == [entry]


@pytest.mark.parametrize("key", TRAFFIC_KEYS)
def test_every_traffic_array_normalizes_numeric_strings(key: str) -> None:
    entry = {"proto": "17", "txPkts": "3", "txBytes": "9223372036854775807", "rxPkts": "+2", "rxBytes": "-1"}
    [result] = validate(_with_entry(entry, key), "network")["event"][key]
    assert result == {"proto": 17, "txPkts": 3, "txBytes": 2**63 - 1, "rxPkts": 2, "rxBytes": -1}


@pytest.mark.parametrize("key", TRAFFIC_KEYS)
@pytest.mark.parametrize("counter", COUNTERS)
def test_every_counter_of_every_array_rejects_an_out_of_range_value(key: str, counter: str) -> None:
    error = _error(_with_entry({counter: 2**63}, key))
    assert (error["loc"], error["type"]) == (f"event.{key}.0.{counter}", "invalid_bigint")


@pytest.mark.parametrize("value", [-(2**63), 2**63 - 1, "-9223372036854775808", 0, "0"])
def test_bigint_bounds_are_inclusive(value: object) -> None:
    validate(_with_entry({"txBytes": value}), "network")


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, "9223372036854775808", "99999999999999999999999"])
def test_bigint_outside_64_bits_fails(value: object) -> None:
    assert _error(_with_entry({"txBytes": value}))["type"] == "invalid_bigint"


@pytest.mark.parametrize("value", [32767, -32768, "32767", "-32768", 0, 255])
def test_proto_smallint_bounds_are_inclusive(value: object) -> None:
    [entry] = validate(_with_entry({"proto": value}), "network")["event"]["virtualTraffic"]
    assert entry["proto"] == int(value)  # type: ignore[call-overload]


@pytest.mark.parametrize("value", [32768, -32769, "32768", "40000"])
def test_proto_outside_smallint_fails(value: object) -> None:
    error = _error(_with_entry({"proto": value}))
    assert (error["loc"], error["type"]) == ("event.virtualTraffic.0.proto", "invalid_proto")


@pytest.mark.parametrize("field", ["proto", "txPkts"])
@pytest.mark.parametrize(
    "value", [True, False, 6.0, 6.5, "6.0", "6.5", "1e3", " 6", "6 ", "6_0", "0x6", "٦", [6], {"n": 6}]
)
def test_integers_reject_bools_fractions_and_non_digit_strings(field: str, value: object) -> None:
    error = _error(_with_entry({field: value}))
    assert error["loc"] == f"event.virtualTraffic.0.{field}"
    assert error["type"] == ("invalid_proto" if field == "proto" else "invalid_bigint")
    assert "integer" in error["msg"]


def test_an_empty_string_is_proto_zero_as_for_tailscale_but_no_counter() -> None:
    [entry] = validate(_with_entry({"proto": ""}), "network")["event"]["virtualTraffic"]
    assert entry["proto"] == 0
    assert _error(_with_entry({"txPkts": ""}))["type"] == "invalid_bigint"


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("tcp", 6),
        ("TCP", 6),
        ("Udp", 17),
        ("icmp", 1),
        ("icmpv4", 1),
        ("ICMPv6", 58),
        ("ipv6-icmp", 58),
        ("igmp", 2),
        ("ipv4", 4),
        ("ip-in-ip", 4),
        ("gre", 47),
        ("sctp", 132),
        ("dccp", 33),
        ("tsmp", 99),
        ("ah", 51),
        ("esp", 50),
        ("egp", 8),
        ("igp", 9),
        ("", 0),
    ],
)
def test_proto_names_map_to_iana_numbers(name: str, number: int) -> None:
    [entry] = validate(_with_entry({"proto": name}), "network")["event"]["virtualTraffic"]
    assert entry["proto"] == number


def test_every_accepted_proto_name_is_lower_case_and_a_valid_smallint() -> None:
    assert all(name == name.lower() and 0 <= number <= 255 for name, number in PROTO_NAMES.items())


@pytest.mark.parametrize("name", ["http", "tcp ", "tcp6", "ipv6", "icmp-v6", "TCP/IP", "ｔｃｐ"])
def test_unknown_proto_names_fail(name: str) -> None:
    error = _error(_with_entry({"proto": name}))
    assert (error["loc"], error["type"]) == ("event.virtualTraffic.0.proto", "invalid_proto")
    assert "protocol name" in error["msg"]


@pytest.mark.parametrize(("field", "value"), [("src", 100), ("dst", ["100.64.0.1:1"]), ("nodeId", 7)])
def test_string_fields_reject_other_json_types(field: str, value: object) -> None:
    record = _with_entry({"src": "100.64.0.1:1"})
    if field == "nodeId":
        record["event"]["nodeId"] = value
        loc = "event.nodeId"
    else:
        record["event"]["virtualTraffic"][0][field] = value
        loc = f"event.virtualTraffic.0.{field}"
    assert (_error(record)["loc"], _error(record)["type"]) == (loc, "string_type")


@pytest.mark.parametrize("key", TRAFFIC_KEYS)
def test_a_traffic_array_must_be_a_list_of_objects(key: str) -> None:
    record = streamed_network()
    record["event"][key] = {"proto": 6}
    assert (_error(record)["loc"], _error(record)["type"]) == (f"event.{key}", "list_type")
    record["event"][key] = [{"proto": 6}, "100.64.0.1:1"]
    assert (_error(record)["loc"], _error(record)["type"]) == (f"event.{key}.1", "dict_type")


@pytest.mark.parametrize("field", ["start", "end"])
def test_window_bounds_must_be_rfc3339(field: str) -> None:
    record = streamed_network()
    record["event"][field] = "2026-06-03T15:32:51.773109845"
    assert (_error(record)["loc"], _error(record)["type"]) == (f"event.{field}", "invalid_timestamp")


def test_errors_of_several_entries_are_all_reported_with_their_index() -> None:
    record = streamed_network()
    record["event"]["virtualTraffic"][0]["proto"] = "bogus"
    record["event"]["physicalTraffic"][1]["txBytes"] = 1.5
    with pytest.raises(RecordInvalid) as caught:
        validate(record, "network")
    assert [e["loc"] for e in caught.value.errors] == [
        "event.virtualTraffic.0.proto",
        "event.physicalTraffic.1.txBytes",
    ]
