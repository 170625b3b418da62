"""Bare records get the streamed envelope; records are classified by shape for the HEC endpoint."""

from __future__ import annotations

import pytest

from app.schemas import RecordInvalid, classify, validate, wrap_bare
from app.schemas.common import rfc3339_to_unix
from app.types import LogType, Row
from tests.schemas.samples import hunters_audit, hunters_network, streamed_audit, streamed_network


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (streamed_audit(), "audit"),
        (streamed_network(), "network"),
        (hunters_audit(), "audit"),
        (hunters_network(), "network"),
        ({"time": 1, "event": {"actor": {}, "action": "LOGIN"}}, "audit"),
        ({"time": 1, "event": {"nodeId": "n1"}}, "network"),
        ({"time": 1, "event": {"exitTraffic": []}}, "network"),
        ({"someFutureTraffic": None}, "network"),
        ({"actor": {}, "action": "x", "nodeId": "n1"}, "audit"),
        ({"time": 1, "event": {"actor": {}}}, None),
        ({"time": 1, "event": {"action": "LOGIN"}}, None),
        ({"time": 1, "event": {"traffic": []}}, None),
        ({"time": 1, "event": {}}, None),
        ({}, None),
        ({"event": "text", "nodeId": "n1"}, "network"),
        ({"event": ["x"], "actor": {}, "action": "x"}, "audit"),
    ],
)
def test_classify_tells_the_log_type_by_shape(record: Row, expected: LogType | None) -> None:
    assert classify(record) == expected


def test_classify_looks_only_inside_an_object_event() -> None:
    assert classify({"nodeId": "n1", "event": {"actor": {}, "action": "x"}}) == "audit"
    assert classify({"actor": {}, "action": "x", "event": {}}) is None


@pytest.mark.parametrize("value", [[], "record", 1, None])
def test_classify_of_a_non_object_is_none(value: object) -> None:
    assert classify(value) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("log_type", ["audit", "network"])
def test_a_record_with_an_event_key_is_returned_as_is(log_type: LogType) -> None:
    record = streamed_audit() if log_type == "audit" else streamed_network()
    assert wrap_bare(record, log_type) is record
    odd = {"event": None}
    assert wrap_bare(odd, log_type) is odd


def test_hunters_bare_audit_record_is_wrapped_with_its_event_time() -> None:
    record = hunters_audit()
    wrapped = wrap_bare(record, "audit")
    assert list(wrapped) == ["time", "event"]  # no `logged`, so no `fields`
    assert wrapped["event"] is record
    assert wrapped["time"] == pytest.approx(1717687526.583893, abs=1e-6)
    result = validate(wrapped, "audit")
    assert result["event"] == hunters_audit()


def test_hunters_bare_network_record_is_wrapped_with_its_window_end_and_logged() -> None:
    record = hunters_network()
    wrapped = wrap_bare(record, "network")
    assert wrapped["time"] == pytest.approx(1717687586.583893, abs=1e-6)  # "end"
    assert wrapped["fields"] == {"recorded": "2024-06-06T15:27:26.583893Z"}
    assert wrapped["event"] is record
    result = validate(wrapped, "network")
    assert result["event"]["logged"] == "2024-06-06T15:27:26.583893Z"
    assert [result["event"][key][0]["proto"] for key in ("virtualTraffic", "physicalTraffic")] == [4, 4]


@pytest.mark.parametrize(("log_type", "own_key"), [("audit", "eventTime"), ("network", "end")])
@pytest.mark.parametrize("own_time", [None, "yesterday", 1717687526, "absent"])
def test_time_falls_back_to_logged_without_a_usable_event_time(
    log_type: LogType, own_key: str, own_time: object
) -> None:
    record: Row = {"logged": "2024-06-06T15:27:26.5Z", own_key: own_time}
    if own_time == "absent":
        del record[own_key]
    assert wrap_bare(record, log_type)["time"] == 1717687646.5


@pytest.mark.parametrize("log_type", ["audit", "network"])
def test_without_any_timestamp_time_is_left_out_and_validation_says_so(log_type: LogType) -> None:
    record = hunters_audit() if log_type == "audit" else hunters_network()
    record.pop("eventTime", None)
    record.pop("end", None)
    record.pop("logged", None)
    wrapped = wrap_bare(record, log_type)
    assert list(wrapped) == ["event"]
    with pytest.raises(RecordInvalid) as caught:
        validate(wrapped, log_type)
    assert [(e["loc"], e["type"]) for e in caught.value.errors] == [("time", "missing")]


def test_a_malformed_logged_is_carried_to_fields_so_validation_reports_it() -> None:
    record = hunters_network()
    record["logged"] = "later"
    wrapped = wrap_bare(record, "network")
    assert wrapped["time"] == rfc3339_to_unix(record["end"])
    with pytest.raises(RecordInvalid) as caught:
        validate(wrapped, "network")
    assert [(e["loc"], e["type"]) for e in caught.value.errors] == [("fields.recorded", "invalid_timestamp")]


def test_an_offset_event_time_becomes_the_same_unix_seconds() -> None:
    utc = wrap_bare({"eventTime": "2024-06-06T15:25:26.5Z"}, "audit")["time"]
    offset = wrap_bare({"eventTime": "2024-06-06T17:25:26.5+02:00"}, "audit")["time"]
    assert utc == offset == 1717687526.5
