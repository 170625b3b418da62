"""Realistic Tailscale records, shaped after real deliveries (docs/tailscale-wire-format.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from app.enrich import RowFields, append_row
from app.types import LogType

Record = dict[str, Any]


def network_event(node: str = "nXyZ1CNTRL", *, src: str = "100.64.0.1:41641", dst: str = "100.64.0.2:443") -> Record:
    return {
        "nodeId": node,
        "start": "2026-06-03T15:32:51.552946176Z",
        "end": "2026-06-03T15:32:56.552946176Z",
        "virtualTraffic": [
            {"proto": 6, "src": src, "dst": dst, "txPkts": 12, "txBytes": 1800, "rxPkts": 10, "rxBytes": 5200},
            {"proto": 17, "src": "[fd7a:115c:a1e0::1]:41641", "dst": "[fd7a:115c:a1e0::2]:53", "txPkts": 1},
        ],
        "physicalTraffic": [{"src": "100.64.0.1:0", "dst": "127.3.3.40:2", "txBytes": 96}],
        "srcNode": {"nodeId": node, "name": "laptop", "addresses": ["100.64.0.1"], "os": "linux", "user": "a@b.io"},
    }


def audit_event(action: str = "UPDATE") -> Record:
    return {
        "eventGroupID": "0378d8f57300d172ef7ae3826e097ef0",
        "origin": "ADMIN_CONSOLE",
        "actor": {"id": "uZKk3KSfrH11CNTRL", "type": "USER", "loginName": "john.doe@example.com", "displayName": "J"},
        "target": {"id": "nBLYviWLGB21CNTRL", "name": "host.example.ts.net", "type": "NODE", "property": "KEY"},
        "action": action,
        "old": {"expiry": "2026-01-01T00:00:00Z"},
        "new": "",
        "deferredAt": "0001-01-01T00:00:00Z",
    }


def envelope(event: Record, time: float = 1780500776.773) -> Record:
    return {"time": time, "event": event, "fields": {"recorded": "2026-06-03T15:33:01.552946176Z"}}


def concatenated(records: list[Record]) -> bytes:
    """Tailscale's wire shape: JSON objects back to back, with no separator at all."""
    return b"".join(orjson.dumps(record) for record in records)


def stored_line(
    row: Record,
    log_type: LogType = "network",
    *,
    source_id: str = "s",
    source_label: str = "l",
    parse_time: datetime | None = None,
) -> bytes:
    """The line, newline included, that the request path stores for `row`, a validated record
    (`app.enrich.append_row`, which enriches `row` in place)."""
    out = bytearray()
    fields = RowFields(source_id=source_id, source_label=source_label, parse_time=parse_time or datetime.now(UTC))
    append_row(out, row, log_type, fields)
    return bytes(out)


def enriched(row: Record, log_type: LogType = "network", **options: Any) -> Record:
    """The stored row of `row`, a validated record, read back (`stored_line`)."""
    return orjson.loads(stored_line(row, log_type, **options))
