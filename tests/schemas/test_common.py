"""Rules every record shares: `time`, RFC 3339 timestamps, `fields`, the error format."""

from __future__ import annotations

import math

import pytest

from app.schemas import RecordInvalid, validate
from app.schemas.common import rfc3339_to_unix
from app.types import LOG_TYPES, LogType, Row
from tests.schemas.samples import RECORDED, streamed_audit, streamed_network


def _sample(log_type: LogType) -> Row:
    return streamed_audit() if log_type == "audit" else streamed_network()


def _errors(record: object, log_type: LogType = "network") -> list[dict[str, str]]:
    with pytest.raises(RecordInvalid) as caught:
        validate(record, log_type)  # type: ignore[arg-type]
    return caught.value.errors


@pytest.mark.parametrize("log_type", LOG_TYPES)
@pytest.mark.parametrize("value", [[], [{"time": 1, "event": {}}], "record", 42, 1.5, True, None])
def test_a_record_that_is_not_an_object_is_invalid(log_type: LogType, value: object) -> None:
    assert _errors(value, log_type) == [{"loc": "", "msg": "Input should be a valid dictionary", "type": "dict_type"}]


@pytest.mark.parametrize("log_type", LOG_TYPES)
@pytest.mark.parametrize("key", ["time", "event"])
@pytest.mark.parametrize("absent", ["missing", "null"])
def test_time_and_event_are_required_and_may_not_be_null(log_type: LogType, key: str, absent: str) -> None:
    record = _sample(log_type)
    if absent == "missing":
        del record[key]
    else:
        record[key] = None
    [error] = _errors(record, log_type)
    assert (error["loc"], error["type"]) == (key, "missing")


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        (1780500776.773, 1780500776.773),
        (1780500776, 1780500776),
        ("1780500776.773", 1780500776.773),
        ("1780500776", 1780500776),
        ("-1.5", -1.5),
        ("1.7805e9", 1.7805e9),
        (-62135596800, -62135596800),
        (253402300799.999, 253402300799.999),
    ],
)
def test_time_accepts_unix_seconds_as_number_or_numeric_string(sent: object, stored: float) -> None:
    record = streamed_network()
    record["time"] = sent
    result = validate(record, "network")["time"]
    assert result == stored
    assert type(result) is type(stored)


@pytest.mark.parametrize(
    "sent",
    [
        True,
        False,
        "",
        "abc",
        "1,5",
        "0x10",
        " 17",
        "nan",
        "inf",
        math.nan,
        math.inf,
        -math.inf,
        "1e400",
        253402300800,
        253402300800.0,
        -62135596801,
        "-62135596801",
        [1780500776],
        {"seconds": 1},
    ],
)
def test_time_rejects_non_numbers_non_finite_and_out_of_datetime_range(sent: object) -> None:
    record = streamed_network()
    record["time"] = sent
    [error] = _errors(record)
    assert error["loc"] == "time"
    assert error["type"] == "invalid_unix_time"
    assert "unix seconds" in error["msg"]


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00Z",
        "2026-06-03T15:33:01Z",
        "2026-06-03T15:33:01.5Z",
        RECORDED,
        "2026-06-03T15:33:01.552946176+05:30",
        "2026-06-03T15:33:01-08:00",
        "2026-06-03t15:33:01z",
        "2024-02-29T23:59:59.999999999Z",
        "9999-12-31T23:59:59.999999999Z",
    ],
)
def test_rfc3339_timestamps_pass_and_are_kept_as_sent(text: str) -> None:
    record = streamed_network()
    record["fields"]["recorded"] = text
    record["event"]["start"] = text
    result = validate(record, "network")
    assert result["fields"]["recorded"] == text
    assert result["event"]["start"] == text


@pytest.mark.parametrize(
    "value",
    [
        "",
        "2026-06-03",
        "2026-06-03T15:33:01",
        "2026-06-03 15:33:01Z",
        "2026-06-03T15:33:01.Z",
        "2026-06-03T15:33:01.1234567890Z",
        "2026-13-01T00:00:00Z",
        "2025-02-29T00:00:00Z",
        "2026-06-03T24:00:00Z",
        "2026-06-03T15:60:00Z",
        "2026-06-03T15:33:60Z",
        "2026-06-03T15:33:01+24:00",
        "2026-06-03T15:33:01+0530",
        "2026-06-03T15:33:01Z\n",
        "0000-01-01T00:00:00Z",
        "２０２６-06-03T15:33:01Z",
        1780500776,
        True,
        ["2026-06-03T15:33:01Z"],
    ],
)
def test_malformed_rfc3339_timestamps_fail(value: object) -> None:
    record = streamed_network()
    record["fields"]["recorded"] = value
    [error] = _errors(record)
    assert (error["loc"], error["type"]) == ("fields.recorded", "invalid_timestamp")


def test_rfc3339_to_unix_applies_the_offset_and_keeps_the_fraction() -> None:
    assert rfc3339_to_unix("1970-01-01T00:00:01.25Z") == 1.25
    assert rfc3339_to_unix("1970-01-01T01:00:00+01:00") == 0
    assert rfc3339_to_unix("1969-12-31T23:00:00-01:00") == 0
    assert rfc3339_to_unix("0001-01-01T00:00:00Z") == -62135596800
    assert rfc3339_to_unix("2026-06-03T15:32:56.773Z") == pytest.approx(1780500776.773, abs=1e-6)


@pytest.mark.parametrize("log_type", LOG_TYPES)
def test_fields_and_unknown_top_level_keys_are_kept(log_type: LogType) -> None:
    record = _sample(log_type)
    record["fields"]["source"] = "tailscale"
    record["host"] = "log-stream"
    result = validate(record, log_type)
    assert result["fields"] == {"recorded": RECORDED, "source": "tailscale"}
    assert result["host"] == "log-stream"


@pytest.mark.parametrize("log_type", LOG_TYPES)
def test_fields_may_be_absent_or_null_or_empty(log_type: LogType) -> None:
    for fields in (None, {}, {"recorded": None}):
        record = _sample(log_type)
        record["fields"] = fields
        assert validate(record, log_type)["fields"] == fields
    record = _sample(log_type)
    del record["fields"]
    assert "fields" not in validate(record, log_type)


def test_fields_must_be_an_object() -> None:
    record = streamed_network()
    record["fields"] = "recorded"
    [error] = _errors(record)
    assert (error["loc"], error["type"]) == ("fields", "dict_type")


@pytest.mark.parametrize("log_type", LOG_TYPES)
def test_validation_returns_a_new_dict_and_leaves_the_record_alone(log_type: LogType) -> None:
    record = _sample(log_type)
    record["time"] = "1780500776.773"
    result = validate(record, log_type)
    assert result is not record
    assert result["event"] is not record["event"]
    assert record["time"] == "1780500776.773"
    assert result["time"] == 1780500776.773


def test_errors_never_carry_the_input_value() -> None:
    record = streamed_audit()
    record["time"] = "s3cr3t-time"
    record["event"]["origin"] = {"token": "s3cr3t-token"}
    record["fields"]["recorded"] = "s3cr3t-recorded"
    with pytest.raises(RecordInvalid) as caught:
        validate(record, "audit")
    errors = caught.value.errors
    assert [error["loc"] for error in errors] == ["time", "event.origin", "fields.recorded"]
    assert all(set(error) == {"loc", "msg", "type"} for error in errors)
    assert "s3cr3t" not in repr(errors)
    assert "s3cr3t" not in str(caught.value)


def test_record_invalid_message_names_each_location() -> None:
    record = streamed_audit()
    del record["event"]["actor"]
    with pytest.raises(RecordInvalid, match=r"^event\.actor: Field required$"):
        validate(record, "audit")
