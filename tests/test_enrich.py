"""Enrichment: split addresses, indicator fields and the standard p_* fields, Panther-style."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta, timezone
from hashlib import sha256

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.addresses import canonical_ip
from app.enrich import RowFields, format_timestamp
from app.schemas import validate, wrap_bare
from app.types import LogType, Row
from tests.samples import enriched, stored_line
from tests.schemas.samples import hunters_network, streamed_audit, streamed_network

PARSE_TIME = datetime(2026, 6, 3, 15, 33, 2, 123456, tzinfo=UTC)


def _enriched(record: Row, log_type: LogType = "network", **overrides: object) -> Row:
    options: dict[str, object] = {"source_id": "src-1", "source_label": "corp tailnet", "parse_time": PARSE_TIME}
    options.update(overrides)
    return enriched(validate(record, log_type), log_type, **options)


def _split(entry: Row) -> tuple[object, ...]:
    return tuple(entry.get(key) for key in ("srcIp", "srcPort", "dstIp", "dstPort"))


def test_streamed_network_entries_get_split_addresses_and_keep_src_and_dst() -> None:
    event = _enriched(streamed_network())["event"]
    assert [_split(entry) for entry in event["virtualTraffic"]] == [
        ("100.64.0.1", 52734, "100.64.0.2", 443),
        ("fd7a:115c:a1e0::1", 41641, "fd7a:115c:a1e0::2", 53),
        ("100.64.0.1", None, "100.64.0.2", None),
    ]
    assert [_split(entry) for entry in event["physicalTraffic"]] == [
        ("100.64.0.1", 0, "203.0.113.7", 41641),
        ("100.64.0.1", 0, "127.3.3.40", 1),  # DERP region 1
    ]
    assert _split(event["subnetTraffic"][0]) == ("100.64.0.1", 50000, "192.168.1.10", 22)
    assert event["exitTraffic"] == [{"txPkts": 40, "txBytes": 9000, "rxPkts": 38, "rxBytes": 41000}]
    assert event["virtualTraffic"][1]["src"] == "[fd7a:115c:a1e0::1]:41641"
    assert "srcPort" not in event["virtualTraffic"][2]


def test_streamed_network_indicators_include_node_addresses_without_prefix_length() -> None:
    row = _enriched(streamed_network())
    assert row["p_any_ip_addresses"] == [
        "100.64.0.1",
        "100.64.0.2",
        "127.3.3.40",
        "192.168.1.10",
        "203.0.113.7",
        "fd7a:115c:a1e0::1",
        "fd7a:115c:a1e0::2",
    ]
    assert row["p_any_emails"] == ["alice@example.com"]
    assert "p_any_actor_ids" not in row


def test_a_zoned_address_keeps_its_zone_in_the_entry_but_not_in_the_indicator() -> None:
    record = streamed_network()
    record["event"] = {"virtualTraffic": [{"src": "[fe80::1%eth0]:22", "dst": "[FE80::2%eth0]:50000"}]}
    row = _enriched(record)
    assert _split(row["event"]["virtualTraffic"][0]) == ("fe80::1%eth0", 22, "FE80::2%eth0", 50000)
    assert row["p_any_ip_addresses"] == ["fe80::1", "fe80::2"]


def test_hunters_invalid_addresses_are_left_out_without_raising() -> None:
    row = _enriched(wrap_bare(hunters_network(), "network"))
    for key in ("virtualTraffic", "subnetTraffic", "exitTraffic", "physicalTraffic"):
        [entry] = row["event"][key]
        assert _split(entry) == (None, 2341, None, 98)
        assert "srcIp" not in entry and "dstIp" not in entry
    assert "p_any_ip_addresses" not in row
    assert row["p_event_time"] == "2024-06-06T15:26:26.583893Z"


def test_derived_split_fields_replace_or_remove_what_the_sender_put_there() -> None:
    record = streamed_network()
    record["event"] = {
        "virtualTraffic": [
            {"src": "100.64.0.9:80", "srcIp": "6.6.6.6", "srcPort": 1},
            {"src": "garbage", "srcIp": "6.6.6.6", "srcPort": 1, "dstIp": "7.7.7.7", "dstPort": "x"},
        ]
    }
    entries = _enriched(record)["event"]["virtualTraffic"]
    assert _split(entries[0]) == ("100.64.0.9", 80, None, None)
    assert _split(entries[1]) == (None, None, None, None)
    assert [set(entry) for entry in entries] == [{"src", "srcIp", "srcPort"}, {"src"}]


def test_null_traffic_arrays_entries_and_odd_nodes_are_skipped() -> None:
    record = streamed_network()
    record["event"].update(
        exitTraffic=None,
        physicalTraffic=[None, {"src": None}],
        srcNode={"addresses": "100.64.0.1", "user": ["alice@example.com"]},
        dstNodes=[None, "node", {"addresses": [None, 5, "not-an-ip", "100.100.100.100/32"], "user": "bob@example.com"}],
    )
    record["event"]["virtualTraffic"] = []
    record["event"]["subnetTraffic"] = None
    row = _enriched(record)
    assert row["event"]["physicalTraffic"] == [None, {"src": None}]
    assert row["p_any_ip_addresses"] == ["100.100.100.100"]
    assert row["p_any_emails"] == ["bob@example.com"]


def test_audit_row_gets_actor_email_and_id_and_standard_fields() -> None:
    row = _enriched(streamed_audit(), "audit")
    assert row["p_any_emails"] == ["john.doe@example.com"]
    assert row["p_any_actor_ids"] == ["uZKk3KSfrH11CNTRL"]
    assert "p_any_ip_addresses" not in row
    assert {key: value for key, value in row.items() if key.startswith("p_") and key != "p_row_id"} == {
        "p_log_type": "Tailscale.Audit",
        "p_event_time": "2026-06-03T15:32:56.773000Z",
        "p_parse_time": "2026-06-03T15:33:02.123456Z",
        "p_schema_version": 0,
        "p_source_id": "src-1",
        "p_source_label": "corp tailnet",
        "p_any_emails": ["john.doe@example.com"],
        "p_any_actor_ids": ["uZKk3KSfrH11CNTRL"],
    }


@pytest.mark.parametrize(
    ("login", "kept"),
    [
        ("john.doe@example.com", True),
        ("octocat@github", True),
        ("name@passkey", True),
        ("", False),
        ("oauth-client", False),
        ("@example.com", False),
        ("john@", False),
        ("a@b@example.com", False),
        ("john doe@example.com", False),
        ("john@example.com\n", False),
        (None, False),
    ],
)
def test_login_names_count_as_emails_only_when_they_look_like_one(login: str | None, kept: bool) -> None:
    record = streamed_audit()
    record["event"]["actor"]["loginName"] = login
    row = _enriched(record, "audit")
    assert row.get("p_any_emails") == ([login] if kept else None)


@pytest.mark.parametrize("actor_id", ["", None])
def test_an_empty_actor_id_is_no_indicator(actor_id: str | None) -> None:
    record = streamed_audit()
    record["event"]["actor"]["id"] = actor_id
    assert "p_any_actor_ids" not in _enriched(record, "audit")


def test_sender_provided_indicator_fields_are_replaced_or_removed() -> None:
    record = streamed_audit()
    record.update(p_any_emails=["forged@example.com"], p_any_ip_addresses=["6.6.6.6"], p_log_type="Other")
    row = _enriched(record, "audit")
    assert row["p_any_emails"] == ["john.doe@example.com"]
    assert "p_any_ip_addresses" not in row
    assert row["p_log_type"] == "Tailscale.Audit"


@pytest.mark.parametrize("log_type", ["network", "audit"])
def test_a_row_is_the_canonical_json_of_the_split_record_then_its_p_fields_and_its_id_hashes_that_json(
    log_type: LogType,
) -> None:
    record = streamed_network() if log_type == "network" else streamed_audit()
    record["p_source_id"] = "forged"  # a sender's own p_* field is neither stored nor hashed
    line = stored_line(validate(record, log_type), log_type, parse_time=PARSE_TIME)
    row = orjson.loads(line)
    content = {key: value for key, value in row.items() if not key.startswith("p_")}
    canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    assert line.startswith(canonical[:-1] + b',"p_row_id":')
    assert [key for key in row if key.startswith("p_")] == [key for key in row][len(content) :]
    assert [key for key in row][-2:] == ["p_log_type", "p_event_time"]  # sinks read them off the line's end
    assert row["p_row_id"] == sha256(canonical).hexdigest()[:32]
    assert row["p_source_id"] == "s"
    if log_type == "network":
        assert content["event"]["virtualTraffic"][0]["srcIp"] == "100.64.0.1"  # split fields are content too


def test_a_row_without_content_still_gets_a_json_line_of_its_p_fields() -> None:
    out = bytearray(b"previous line\n")
    fields = RowFields(source_id="s", source_label="l", parse_time=PARSE_TIME)
    size = fields.append_line(out, b"{}", "audit", "2026-06-03T15:32:56.773000Z", ([], ["a@b"], []))
    row = orjson.loads(out[-size:])
    assert out.endswith(b"\n") and out.startswith(b"previous line\n")
    assert row["p_row_id"] == sha256(b"{}").hexdigest()[:32]
    assert row["p_any_emails"] == ["a@b"] and "p_any_ip_addresses" not in row


def test_a_forwarded_row_keeps_its_id_in_a_downstream_tailscribe() -> None:
    """`app.sinks.http` forwards stored rows as they are: the receiver's own fields are replaced, and the
    split gives the same values, so the downstream row is the same row with the same id."""
    upstream = stored_line(validate(streamed_network(), "network"), parse_time=PARSE_TIME, source_id="edge")
    downstream = stored_line(validate(orjson.loads(upstream), "network"), parse_time=PARSE_TIME, source_id="edge")
    assert downstream == upstream


def test_p_row_id_ignores_parse_time_and_source_so_a_resent_record_keeps_its_id() -> None:
    first = _enriched(streamed_network())
    again = _enriched(streamed_network(), source_id="other", parse_time=PARSE_TIME + timedelta(hours=3))
    assert first["p_row_id"] == again["p_row_id"]


def _reordered(value: object, rng: random.Random) -> object:
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: _reordered(value[key], rng) for key in keys}
    if isinstance(value, list):
        return [_reordered(item, rng) for item in value]
    return value


@given(st.randoms(use_true_random=False))
def test_p_row_id_does_not_depend_on_key_order(rng: random.Random) -> None:
    record = streamed_network()
    shuffled = _reordered(copy.deepcopy(record), rng)
    assert _enriched(shuffled)["p_row_id"] == _enriched(record)["p_row_id"]  # type: ignore[arg-type]


def _leaf_paths(value: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in _leaf_paths(item, (*path, key))]
    if isinstance(value, list):
        return [leaf for index, item in enumerate(value) for leaf in _leaf_paths(item, (*path, index))]
    return [path]


_LEAVES = _leaf_paths(streamed_network())


def _changed(key: object, old: object) -> object:
    if key in ("start", "end", "recorded"):
        return str(old).replace("Z", "+00:00")  # another instant's text, still a valid timestamp
    if isinstance(old, int | float):
        return old + 1
    return f"{old}x"


@given(st.sampled_from(_LEAVES))
def test_p_row_id_changes_when_any_value_changes(path: tuple[object, ...]) -> None:
    record = streamed_network()
    parent: object = record
    for key in path[:-1]:
        parent = parent[key]  # type: ignore[index]
    parent[path[-1]] = _changed(path[-1], parent[path[-1]])  # type: ignore[index]
    assert _enriched(record)["p_row_id"] != _enriched(streamed_network())["p_row_id"]


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (1780500776.773, "2026-06-03T15:32:56.773000Z"),
        (1780500776, "2026-06-03T15:32:56.000000Z"),
        ("1780500776.5", "2026-06-03T15:32:56.500000Z"),
        (0, "1970-01-01T00:00:00.000000Z"),
        (-62135596800, "0001-01-01T00:00:00.000000Z"),
        (253402300799.5, "9999-12-31T23:59:59.500000Z"),
    ],
)
def test_p_event_time_is_time_in_rfc3339_utc_with_microseconds(seconds: object, expected: str) -> None:
    record = streamed_network()
    record["time"] = seconds
    assert _enriched(record)["p_event_time"] == expected


def test_format_timestamp_converts_to_utc_and_treats_naive_as_utc() -> None:
    east = timezone(timedelta(hours=2))
    assert format_timestamp(datetime(2026, 6, 3, 17, 0, tzinfo=east)) == "2026-06-03T15:00:00.000000Z"
    assert format_timestamp(datetime(2026, 6, 3, 15, 0, 0, 7)) == "2026-06-03T15:00:00.000007Z"
    assert format_timestamp(datetime(12, 1, 2, tzinfo=UTC)) == "0012-01-02T00:00:00.000000Z"


def test_a_record_in_normal_form_is_enriched_in_place() -> None:
    """The fast path (app.schemas.fastpath): no copy of a record that needs no normalizing."""
    record = streamed_network()
    validated = validate(record, "network")
    assert validated is record
    stored_line(validated, parse_time=PARSE_TIME)
    assert record["event"]["virtualTraffic"][0]["srcIp"] == "100.64.0.1"


def test_a_record_needing_normalization_is_copied_and_the_received_one_left_alone() -> None:
    record = streamed_network()
    record["event"]["virtualTraffic"][0]["proto"] = "tcp"
    received = copy.deepcopy(record)
    validated = validate(record, "network")
    assert validated is not record and validated["event"]["virtualTraffic"][0]["proto"] == 6
    stored_line(validated, parse_time=PARSE_TIME)
    assert validated["event"]["virtualTraffic"][0]["srcIp"] == "100.64.0.1"
    assert record == received


_ADDR_TEXT = st.one_of(
    st.ip_addresses().map(lambda ip: f"[{ip}]:443" if ip.version == 6 else f"{ip}:443"),
    st.ip_addresses().map(str),
    st.text(alphabet="0123456789abcdefO.:[]%", max_size=24),
)


@given(
    st.lists(st.fixed_dictionaries({}, optional={"src": _ADDR_TEXT, "dst": _ADDR_TEXT}), max_size=6),
    st.lists(
        st.one_of(_ADDR_TEXT, st.tuples(st.ip_addresses(), st.integers(0, 32)).map("{0[0]}/{0[1]}".format)), max_size=4
    ),
    st.lists(st.text(alphabet="ab@. \t", max_size=8), max_size=4),
)
def test_indicators_are_sorted_deduped_valid_and_omitted_when_empty(
    entries: list[Row], addresses: list[str], users: list[str]
) -> None:
    record = streamed_network()
    record["event"] = {
        "virtualTraffic": entries,
        "exitTraffic": copy.deepcopy(entries),
        "srcNode": {"addresses": addresses},
        "dstNodes": [{"user": user} for user in users],
    }
    row = _enriched(record)
    for key in ("p_any_ip_addresses", "p_any_emails"):
        if key in row:
            assert row[key], "present only when non-empty"
            assert row[key] == sorted(set(row[key]))
    ips = row.get("p_any_ip_addresses", [])
    assert all(canonical_ip(ip) == ip for ip in ips)
    derived = {canonical_ip(e[k]) for e in row["event"]["virtualTraffic"] for k in ("srcIp", "dstIp") if k in e}
    assert derived <= set(ips)
    for email in row.get("p_any_emails", []):
        local, at, domain = email.partition("@")
        assert local and at and domain and "@" not in domain and not any(c.isspace() for c in email)
