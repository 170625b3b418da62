from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from app.enrich import enrich
from app.schemas import validate
from app.sinks.base import SinkBatch, line_field
from tests.samples import envelope, network_event


def stored_line(record: dict[str, object]) -> bytes:
    """A row exactly as the request path serializes it into the journal."""
    row = enrich(validate(record, "network"), "network", source_id="s", source_label="l", parse_time=datetime.now(UTC))
    return orjson.dumps(row)


def test_line_field_reads_the_top_level_p_fields_of_a_stored_row():
    line = stored_line(envelope(network_event()))
    row = orjson.loads(line)

    for key in ("p_log_type", "p_event_time", "p_row_id", "p_source_id"):
        assert line_field(line, key) == row[key]
    assert line_field(line, "p_missing") is None


def test_a_sender_hiding_p_fields_inside_the_record_cannot_steer_partitioning():
    event = network_event() | {"p_log_type": "Tailscale.Audit", "p_event_time": "1999-01-01T00:00:00Z"}
    record = envelope(event) | {"p_log_type": "Tailscale.Audit", "zzz": {"p_log_type": "Tailscale.Audit"}}
    line = stored_line(record)

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
