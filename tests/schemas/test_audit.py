"""Tailscale.Audit: required fields, open strings, any-JSON `old`/`new`, kept extras."""

from __future__ import annotations

import copy

import pytest

from app.schemas import RecordInvalid, validate
from tests.schemas.samples import streamed_audit


def _error(record: object) -> dict[str, str]:
    with pytest.raises(RecordInvalid) as caught:
        validate(record, "audit")  # type: ignore[arg-type]
    [error] = caught.value.errors
    return error


def test_streamed_audit_record_validates_and_keeps_every_key() -> None:
    record = streamed_audit()
    expected = copy.deepcopy(record)
    assert validate(record, "audit") == expected


def test_poll_api_keys_and_unknown_nested_keys_are_kept() -> None:
    record = streamed_audit()
    record["event"].update(eventTime="2026-06-03T15:32:56.773Z", type="CONFIG", future={"x": [1]})
    record["event"]["actor"]["future"] = 1
    result = validate(record, "audit")["event"]
    assert result["eventTime"] == "2026-06-03T15:32:56.773Z"
    assert result["type"] == "CONFIG"
    assert result["future"] == {"x": [1]}
    assert result["actor"]["future"] == 1
    assert result["target"]["isEphemeral"] is False


@pytest.mark.parametrize("field", ["origin", "actor", "target", "action"])
@pytest.mark.parametrize("absent", ["missing", "null"])
def test_each_required_event_field_fails_when_missing_or_null(field: str, absent: str) -> None:
    record = streamed_audit()
    if absent == "missing":
        del record["event"][field]
    else:
        record["event"][field] = None
    error = _error(record)
    assert (error["loc"], error["type"]) == (f"event.{field}", "missing")
    assert error["msg"].startswith("Field required")


def test_every_missing_required_field_is_reported() -> None:
    with pytest.raises(RecordInvalid) as caught:
        validate({"time": 1, "event": {}}, "audit")
    assert [(e["loc"], e["type"]) for e in caught.value.errors] == [
        ("event.origin", "missing"),
        ("event.actor", "missing"),
        ("event.target", "missing"),
        ("event.action", "missing"),
    ]


def test_empty_strings_and_empty_objects_satisfy_required_fields() -> None:
    record = {"time": 1, "event": {"origin": "", "actor": {}, "target": {}, "action": ""}}
    assert validate(record, "audit") == record


def test_optional_fields_may_be_null_and_the_null_is_kept() -> None:
    record = streamed_audit()
    for key in ("eventGroupID", "deferredAt", "old", "new", "actionDetails", "error"):
        record["event"][key] = None
    for key in ("id", "type", "loginName", "displayName", "tags"):
        record["event"]["actor"][key] = None
    for key in ("id", "name", "type", "property"):
        record["event"]["target"][key] = None
    assert validate(record, "audit") == record


def test_open_enums_accept_values_never_seen_before() -> None:
    record = streamed_audit()
    record["event"].update(origin="SOMETHING_NEW", action="TRANSMOGRIFY")
    record["event"]["actor"]["type"] = "LOGSTREAM"
    record["event"]["target"]["type"] = "OAUTH_ACCESS_TOKEN"
    assert validate(record, "audit") == record


@pytest.mark.parametrize(
    "value",
    [
        "",
        {},
        [],
        None,
        0,
        -1.5,
        True,
        False,
        "ssh-ed25519 AAAA",
        ["tag:a", 1, None],
        {"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}], "tagOwners": {}},
    ],
)
def test_old_and_new_accept_any_json_value_unchanged(value: object) -> None:
    record = streamed_audit()
    record["event"]["old"] = value
    record["event"]["new"] = copy.deepcopy(value)
    result = validate(record, "audit")["event"]
    assert result["old"] == value
    assert result["new"] == value
    assert type(result["old"]) is type(value)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("origin",), 5),
        (("action",), ["UPDATE"]),
        (("eventGroupID",), 42),
        (("actionDetails",), {"a": 1}),
        (("error",), False),
        (("actor", "id"), 1),
        (("actor", "loginName"), ["a@b.c"]),
        (("actor", "displayName"), 1.5),
        (("target", "name"), True),
        (("target", "property"), {}),
    ],
)
def test_string_fields_reject_other_json_types(path: tuple[str, ...], value: object) -> None:
    record = streamed_audit()
    parent = record["event"]
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    error = _error(record)
    assert (error["loc"], error["type"]) == (".".join(("event", *path)), "string_type")


def test_actor_and_target_must_be_objects() -> None:
    record = streamed_audit()
    record["event"]["actor"] = "john.doe@example.com"
    assert (_error(record)["loc"], _error(record)["type"]) == ("event.actor", "dict_type")


def test_actor_tags_is_a_list_of_strings() -> None:
    record = streamed_audit()
    record["event"]["actor"]["tags"] = ["tag:ci", "tag:prod"]
    assert validate(record, "audit")["event"]["actor"]["tags"] == ["tag:ci", "tag:prod"]
    record["event"]["actor"]["tags"] = ["tag:ci", 7]
    assert (_error(record)["loc"], _error(record)["type"]) == ("event.actor.tags.1", "string_type")
    record["event"]["actor"]["tags"] = "tag:ci"
    assert (_error(record)["loc"], _error(record)["type"]) == ("event.actor.tags", "list_type")


def test_deferred_at_zero_time_is_valid_and_garbage_is_not() -> None:
    record = streamed_audit()
    assert validate(record, "audit")["event"]["deferredAt"] == "0001-01-01T00:00:00Z"
    record["event"]["deferredAt"] = "never"
    assert (_error(record)["loc"], _error(record)["type"]) == ("event.deferredAt", "invalid_timestamp")
