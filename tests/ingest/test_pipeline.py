"""`build_batch`'s cap on one record (`max_record_bytes`): a row over it, or a record framing left unparsed for
arriving over it, is quarantined, not accepted."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from app.ingest.framing import Unparsed
from app.ingest.pipeline import RequestContext, build_batch
from app.settings import DEFAULT_MAX_RECORD_BYTES, Settings
from tests.samples import audit_event, envelope

CONTEXT = RequestContext(request_id="r1", log_type="audit", source_id="s", source_label="l")
PARSE_TIME = datetime(2026, 6, 3, 15, 0, tzinfo=UTC)


def audit_with_policy(size: int) -> dict[str, object]:
    """An audit record whose `new` holds a policy file of `size` characters, as a policy change does."""
    record = envelope(audit_event())
    record["event"]["new"] = "x" * size  # type: ignore[index]
    return record


def stored_size(record: dict[str, object]) -> int:
    """How long `record`'s stored row is, by running it through the pipeline without a cap."""
    batch = build_batch([record], CONTEXT, PARSE_TIME, max_record_bytes=1 << 40)
    return len(batch.ndjson)


def test_a_row_of_exactly_max_record_bytes_is_accepted_and_one_byte_more_is_quarantined():
    record = audit_with_policy(5_000)
    size = stored_size(record)

    at_limit = build_batch([audit_with_policy(5_000)], CONTEXT, PARSE_TIME, max_record_bytes=size)
    over = build_batch([audit_with_policy(5_000)], CONTEXT, PARSE_TIME, max_record_bytes=size - 1)

    assert (at_limit.accepted, len(at_limit.quarantined)) == (1, 0)
    assert (over.accepted, len(over.quarantined), bytes(over.ndjson)) == (0, 1, b"")
    [error] = over.quarantined[0]["errors"]
    assert error["type"] == "record_too_large"
    assert f"{size} bytes, over max_record_bytes ({size - 1})" in error["msg"]


def test_the_quarantined_record_is_the_record_without_the_receivers_fields_and_the_rest_is_accepted():
    small, big = envelope(audit_event("CREATE")), audit_with_policy(20_000)
    expected = orjson.loads(orjson.dumps(big))

    batch = build_batch([small, big, small], CONTEXT, PARSE_TIME, max_record_bytes=10_000)

    assert batch.accepted == 2 and len(batch.quarantined) == 1
    quarantined = batch.quarantined[0]
    assert quarantined["record"] == expected
    assert (quarantined["p_log_type"], quarantined["p_request_id"]) == ("Tailscale.Audit", "r1")
    assert [orjson.loads(line)["event"]["action"] for line in bytes(batch.ndjson).splitlines()] == ["CREATE"] * 2


def test_the_default_leaves_room_for_a_policy_file_in_old_and_new():
    """Tailscale's largest records: an audit record with a whole policy file before and after (1 MiB each)."""
    record = audit_with_policy(1 << 20)
    record["event"]["old"] = "y" * (1 << 20)  # type: ignore[index]

    batch = build_batch([record], CONTEXT, PARSE_TIME)

    assert batch.accepted == 1
    assert Settings.model_fields["max_record_bytes"].default == DEFAULT_MAX_RECORD_BYTES


def test_an_unparsed_record_is_quarantined_as_text_with_its_size_as_received():
    """Framing's `Unparsed` (arrived over the cap): its bytes kept as text, an invalid byte as \\xNN."""
    raw = b'{"event": {"new": "caf\xc3\xa9 \xff"}}'
    small = envelope(audit_event("CREATE"))

    batch = build_batch([small, Unparsed(memoryview(raw), 7), small], CONTEXT, PARSE_TIME, max_record_bytes=10_000)

    assert batch.accepted == 2
    [row] = batch.quarantined
    assert row["record"] is None and row["raw"] == '{"event": {"new": "caf\u00e9 \\xff"}}'
    assert row["p_log_type"] == "Tailscale.Audit" and row["p_request_id"] == "r1"
    [error] = row["errors"]
    assert (
        error["type"] == "record_too_large"
        and f"{len(raw)} bytes as received, over max_record_bytes (10000)" in error["msg"]
    )
