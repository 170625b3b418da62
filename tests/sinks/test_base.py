from __future__ import annotations

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.schemas import validate
from app.sinks.base import SinkBatch, by_partition, line_field
from app.storage.local import partition_path
from tests.samples import envelope, network_event, stored_line


def journal_line(record: dict[str, object]) -> bytes:
    """A row exactly as the request path serializes it into the journal (without its newline)."""
    return stored_line(validate(record, "network")).rstrip(b"\n")


def test_line_field_reads_the_top_level_p_fields_of_a_stored_row():
    line = journal_line(envelope(network_event()))
    row = orjson.loads(line)

    for key in ("p_log_type", "p_event_time", "p_row_id", "p_source_id"):
        assert line_field(line, key) == row[key]
    assert line_field(line, "p_missing") is None


def test_a_sender_hiding_p_fields_inside_the_record_cannot_steer_partitioning():
    event = network_event() | {"p_log_type": "Tailscale.Audit", "p_event_time": "1999-01-01T00:00:00Z"}
    record = envelope(event) | {"p_log_type": "Tailscale.Audit", "zzz": {"p_log_type": "Tailscale.Audit"}}
    line = journal_line(record)

    assert line_field(line, "p_log_type") == "Tailscale.Network"
    assert line_field(line, "p_event_time").startswith("2026-06-03T15")


def test_a_batch_built_from_lines_parses_rows_once_and_from_rows_serializes_once():
    rows = [{"p_row_id": "a", "n": 1}, {"p_row_id": "b", "n": 2}]
    from_lines = SinkBatch(lines=[orjson.dumps(row) for row in rows], first_seq=3)
    from_rows = SinkBatch(rows, first_seq=3)

    assert from_lines.rows == rows and from_lines.rows is from_lines.rows
    assert from_rows.lines == [orjson.dumps(row) for row in rows] and from_rows.lines is from_rows.lines
    assert len(from_lines) == len(from_rows) == 2
    with pytest.raises(ValueError, match="either rows or lines"):
        SinkBatch(rows, lines=[b"{}"])


# Rows of partition fields in any order and at any depth, with event times of any length and script.
partition_texts = st.sampled_from(["Tailscale.Network", "Tailscale.Audit", "", "2026-06-03T15:20:00.000000Z"])
partition_texts |= st.text(st.sampled_from("2026-T:Z\u00e9\u4e00x"), max_size=16)
partition_keys = st.sampled_from(["p_log_type", "p_event_time", "p_row_id", "event"])
partition_rows = st.recursive(
    st.dictionaries(partition_keys, partition_texts, max_size=4),
    lambda children: st.dictionaries(partition_keys, children, max_size=3),
    max_leaves=8,
)


@given(st.lists(partition_rows, max_size=12))
# The same first 13 bytes, but not the same first 13 characters: the path takes characters.
@example([{"p_log_type": "A", "p_event_time": "\u00e9" * 6 + "2" + digits} for digits in ("0123456", "9876543")])
def test_by_partition_groups_each_line_by_its_own_line_fields(rows: list[dict[str, object]]) -> None:
    lines = [orjson.dumps(row) for row in rows]
    expected: dict[str, list[bytes]] = {}
    for line in lines:
        log_type, event_time = line_field(line, "p_log_type"), line_field(line, "p_event_time")
        expected.setdefault(f"log_type={log_type}/{partition_path(event_time or '')}", []).append(line)

    assert by_partition(lines, lambda log_type: f"log_type={log_type}") == expected


def test_by_partition_splits_a_batch_at_an_hour_and_a_log_type():
    lines = [
        orjson.dumps({"p_log_type": log_type, "p_event_time": f"2026-06-03T{hour}:59:59.000000Z"})
        for log_type, hour in [("A", "15"), ("A", "16"), ("B", "15"), ("A", "15")]
    ]

    assert by_partition(lines, lambda log_type: f"t={log_type}") == {
        "t=A/year=2026/month=06/day=03/hour=15": [lines[0], lines[3]],
        "t=A/year=2026/month=06/day=03/hour=16": [lines[1]],
        "t=B/year=2026/month=06/day=03/hour=15": [lines[2]],
    }


def test_rows_written_before_the_partition_fields_came_last_still_group_by_them():
    """Journals written before 2026-12-06 hold rows with `p_log_type` first among the `p_*` fields and
    the indicators after `p_event_time`; an upgraded receiver's sinks read them back."""
    fields = {"p_parse_time": "2026-06-03T18:00:00.000000Z", "p_source_id": "s", "p_row_id": "0" * 32}
    old = [
        orjson.dumps(
            {"n": n, "p_log_type": "Tailscale.Network"}
            | fields
            | {"p_event_time": f"2026-06-03T{hour}:00:00.000000Z", "p_any_ip_addresses": ["100.64.0.1"]}
        )
        for n, hour in enumerate(["15", "16", "15"])
    ]
    new = journal_line(envelope(network_event()))

    assert by_partition([*old, new], lambda log_type: f"t={log_type}") == {
        "t=Tailscale.Network/year=2026/month=06/day=03/hour=15": [old[0], old[2], new],
        "t=Tailscale.Network/year=2026/month=06/day=03/hour=16": [old[1]],
    }
