"""The fast path (app.schemas.fastpath): it takes what Tailscale sends, and nothing pydantic would change.

tests/fuzz/test_properties.py checks the same on generated records; these are the known edges.
"""

from __future__ import annotations

import typing

import msgspec
import orjson
import pytest

from app.schemas import ADAPTERS, common
from app.schemas import audit as audit_schema
from app.schemas import fastpath as fast
from app.schemas import network as network_schema
from app.schemas.common import UNIX_END, UNIX_MIN, rfc3339_to_unix
from app.schemas.traffic import TRAFFIC_FIELDS
from app.types import LogType, Row
from bench.workload import records
from tests.schemas.samples import hunters_audit, hunters_network, streamed_audit, streamed_network

PAIRS = [
    (common.Fields, fast.Fields),
    (network_schema.NetworkEvent, fast.NetworkEvent),
    (audit_schema.Actor, fast.Actor),
    (audit_schema.Target, fast.Target),
    (audit_schema.AuditEvent, fast.AuditEvent),
    (common.Envelope, fast.NetworkEnvelope),
    (common.Envelope, fast.AuditEnvelope),
]


@pytest.mark.parametrize(("typed_dict", "struct"), PAIRS, ids=lambda value: value.__name__)
def test_each_struct_declares_the_fields_of_its_typed_dict(typed_dict: type, struct: type[msgspec.Struct]) -> None:
    """A field added to a schema and not to the fast path would let a wrong value through unchecked."""
    assert set(typing.get_type_hints(typed_dict)) == set(struct.__struct_fields__)


def test_the_compiled_traffic_check_reads_the_fields_of_a_traffic_entry() -> None:
    assert set(TRAFFIC_FIELDS) == set(typing.get_type_hints(network_schema.TrafficEntry))


def _agrees_with_pydantic(record: Row, log_type: LogType) -> bool:
    """Whether the fast path takes `record`, having checked that pydantic returns it unchanged if so."""
    taken = fast.is_normal(record, log_type)
    if taken:
        normalized = ADAPTERS[log_type].validate_python(record)
        assert orjson.dumps(normalized, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
            record, option=orjson.OPT_SORT_KEYS
        )
    return taken


@pytest.mark.parametrize(
    ("record", "log_type"),
    [
        (streamed_network(), "network"),
        (streamed_audit(), "audit"),
        *[(record, "network") for record in records("network", 50)],
        *[(record, "audit") for record in records("audit", 50)],
    ],
)
def test_what_tailscale_streams_takes_the_fast_path(record: Row, log_type: LogType) -> None:
    assert _agrees_with_pydantic(record, log_type)


@pytest.mark.parametrize(("record", "log_type"), [(hunters_network(), "network"), (hunters_audit(), "audit")])
def test_a_bare_record_is_not_an_envelope_and_goes_to_pydantic(record: Row, log_type: LogType) -> None:
    assert not fast.is_normal(record, log_type)


def _entry_value(key: str, value: object) -> Row:
    record = streamed_network()
    record["event"]["virtualTraffic"] = [{"src": "100.64.0.1:1", key: value}]
    return record


@pytest.mark.parametrize(
    ("traffic", "taken"),
    [
        (None, True),
        ([], True),
        ([None, {}], True),
        ({"src": "100.64.0.1:1"}, False),
        ("100.64.0.1:1", False),
        ([["100.64.0.1:1"]], False),
        ([1], False),
        ([True], False),
    ],
)
def test_a_traffic_array_takes_the_fast_path_only_as_a_list_of_objects_or_nulls(traffic: object, taken: bool) -> None:
    record = streamed_network()
    record["event"]["subnetTraffic"] = traffic
    assert _agrees_with_pydantic(record, "network") is taken


COUNTERS = ("txPkts", "txBytes", "rxPkts", "rxBytes")
WRONG_FOR = {
    **{counter: ["12", True, False, 1.5, 2**63, -(2**63) - 1, [1], {"n": 1}] for counter in COUNTERS},
    "proto": ["tcp", "6", True, 6.0, 2**15, -(2**15) - 1, [6]],  # "tcp" and "6" valid: pydantic makes them 6
    "src": [5, True, ["100.64.0.1:1"], {"ip": "100.64.0.1"}],
    "dst": [5, True, ["100.64.0.1:1"], {"ip": "100.64.0.1"}],
}


def test_every_field_of_a_traffic_entry_is_checked() -> None:
    assert set(WRONG_FOR) == set(TRAFFIC_FIELDS)


@pytest.mark.parametrize(("key", "value"), [(key, value) for key, values in WRONG_FOR.items() for value in values])
@pytest.mark.parametrize("position", [0, 2], ids=["first entry", "third entry"])
def test_a_traffic_value_pydantic_changes_or_refuses_takes_the_slow_path(
    key: str, value: object, position: int
) -> None:
    record = streamed_network()
    entries: list[object] = [{"src": "100.64.0.1:1", "dst": "100.64.0.2:2", "proto": 6, "txPkts": 1} for _ in range(3)]
    entries[position] = {**entries[position], key: value}  # type: ignore[dict-item]
    record["event"]["exitTraffic"] = entries
    assert not fast.is_normal(record, "network")


@pytest.mark.parametrize(
    ("key", "value"),
    [("proto", -(2**15)), ("proto", 2**15 - 1), *[(c, b) for c in COUNTERS for b in (2**63 - 1, -(2**63))]],
)
def test_integers_at_the_bounds_take_the_fast_path(key: str, value: int) -> None:
    assert _agrees_with_pydantic(_entry_value(key, value), "network")


@pytest.mark.parametrize(
    ("time", "taken"),
    [
        (1780500776, True),
        (1780500776.773, True),
        (UNIX_MIN, True),
        (UNIX_END - 1, True),
        (UNIX_END, False),
        (UNIX_MIN - 1, False),
        ("1780500776", False),  # valid, but pydantic turns it into a number
        (True, False),
        (None, False),
    ],
)
def test_time(time: object, taken: bool) -> None:
    record = streamed_network()
    record["time"] = time
    assert _agrees_with_pydantic(record, "network") is taken


VALID = "2026-06-03T15:32:51.773109845Z"
ONE_PART_CHANGED = [
    VALID.replace("T", "t"),
    VALID.replace("T", " "),
    VALID.replace("Z", "z"),
    VALID.replace("Z", ""),
    VALID.replace("Z", "+01:00"),
    VALID.replace("Z", "+0100"),
    VALID.replace("Z", "+01"),
    VALID.replace("Z", "+24:00"),
    VALID.replace("Z", "-00:60"),
    VALID.replace(".773109845", ""),
    VALID.replace(".773109845", "."),
    VALID.replace(".773109845", ".7731098451"),
    VALID.replace(".773109845", ",5"),
    VALID.replace("2026-06-03", "2026-06-31"),
    VALID.replace("2026-06-03", "2026-02-29"),
    VALID.replace("2026-06-03", "2024-02-29"),
    VALID.replace("2026-06-03", "2026-13-01"),
    VALID.replace("2026-06-03", "0000-01-01"),
    VALID.replace("2026-06-03", "0001-01-01"),
    VALID.replace("2026-06-03", "+2026-06-03"),
    VALID.replace("15:32:51", "24:00:00"),
    VALID.replace("15:32:51", "23:59:60"),
    VALID.replace("15:32:51", "15:60:00"),
    VALID.replace("15:32:51", "15:32"),
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999Z",  # msgspec's datetime rounded this past year 9999
    "",
]


@pytest.mark.parametrize("timestamp", [VALID, *ONE_PART_CHANGED])
@pytest.mark.parametrize(("log_type", "where"), [("network", "start"), ("audit", "deferredAt"), ("network", "fields")])
def test_a_timestamp_takes_the_fast_path_exactly_when_it_is_valid(
    timestamp: str, log_type: LogType, where: str
) -> None:
    record = streamed_network() if log_type == "network" else streamed_audit()
    if where == "fields":
        record["fields"] = {"recorded": timestamp}
    else:
        record["event"][where] = timestamp
    valid = rfc3339_to_unix(timestamp) is not None
    assert _agrees_with_pydantic(record, log_type) is valid


def test_an_audit_record_missing_a_required_field_takes_the_slow_path() -> None:
    record = streamed_audit()
    del record["event"]["action"]
    assert not fast.is_normal(record, "audit")
    record = streamed_audit()
    record["event"]["actor"] = None
    assert not fast.is_normal(record, "audit")
