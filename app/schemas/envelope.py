"""Bring every record into the HEC envelope shape, and tell a record's log type by its shape.

Tailscale's log stream (https://tailscale.com/kb/1255/log-streaming) sends HEC envelopes
`{"time", "event", "fields"}`, which is what Panther's schemas describe
(https://docs.panther.com/data-onboarding/supported-logs/tailscale). Tailscale's S3 export and
poll API send bare records instead; wrapping them here lets one schema and one row shape serve
both. The Splunk HEC endpoint carries both log types on one URL, hence `classify`.
"""

from __future__ import annotations

from typing import Final

from app.schemas.common import rfc3339_to_unix
from app.types import LogType, Row

BARE_TIME_KEYS: Final[dict[LogType, str]] = {"audit": "eventTime", "network": "end"}
"""The bare record's own event time; `logged` (when Tailscale stored it) is the fallback."""


def _unix(value: object) -> float | None:
    return rfc3339_to_unix(value) if isinstance(value, str) else None


def wrap_bare(record: Row, log_type: LogType) -> Row:
    """Wrap a bare record (no `event` key) into an envelope; return an envelope as it is.

    The bare record becomes `event` unchanged, `eventTime`/`logged` included. `time` is left out
    when no usable timestamp exists, so validation reports it missing instead of inventing one.
    `logged` is copied to `fields.recorded` whenever present, so a malformed one is reported too.
    """
    if "event" in record:
        return record
    envelope: Row = {}
    seconds = _unix(record.get(BARE_TIME_KEYS[log_type]))
    if seconds is None:
        seconds = _unix(record.get("logged"))
    if seconds is not None:
        envelope["time"] = seconds
    envelope["event"] = record
    if record.get("logged") is not None:
        envelope["fields"] = {"recorded": record["logged"]}
    return envelope


def classify(record: Row) -> LogType | None:
    """The log type a record's shape shows (audit: `actor` and `action`; network: `nodeId` or a
    `*Traffic` key), looking inside `event` when it is an object; None when neither fits."""
    if not isinstance(record, dict):
        return None
    event = record.get("event")
    body = event if isinstance(event, dict) else record
    if "actor" in body and "action" in body:
        return "audit"
    if "nodeId" in body or any(key.endswith("Traffic") for key in body if isinstance(key, str)):
        return "network"
    return None
