"""The standard benchmark workload: seeded, reproducible Tailscale records and request bodies.

Network records follow what Tailscale sends (docs/tailscale-wire-format.md): the HEC envelope,
each of the four traffic arrays present with probability 0.6 holding 1-12 entries, 20% IPv6
addresses, proto from {6, 17, 1, 58, 99} except on physical and exit traffic, each counter present
with probability 0.85; about 2 KB a record. Audit records are about 400 bytes, with `old`/`new` of
mixed JSON types. Bodies are Tailscale's own shape (objects concatenated with no separator) or
NDJSON for the naive receiver, each plain or gzip.
"""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass
from typing import Any, Final

import orjson

TRAFFIC_KEYS: Final = ("virtualTraffic", "subnetTraffic", "exitTraffic", "physicalTraffic")
PROTOS: Final = (6, 17, 1, 58, 99)
COUNTERS: Final = ("txPkts", "txBytes", "rxPkts", "rxBytes")
BASE_TIME: Final = 1_780_500_000.0


def _address(rng: random.Random) -> str:
    port = rng.randrange(1, 65536)
    if rng.random() < 0.2:
        return f"[fd7a:115c:a1e0::{rng.randrange(1, 0xFFFF):x}]:{port}"
    return f"100.{rng.randrange(64, 128)}.{rng.randrange(256)}.{rng.randrange(1, 255)}:{port}"


def _timestamp(seconds: float, rng: random.Random) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole % 86_400, 3600)
    return f"2026-06-03T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}.{rng.randrange(10**9):09d}Z"


def network_record(rng: random.Random, n: int) -> dict[str, Any]:
    when = BASE_TIME + n * 0.01
    event: dict[str, Any] = {
        "nodeId": f"n{rng.randrange(10**12):012x}CNTRL",
        "start": _timestamp(when - 5, rng),
        "end": _timestamp(when, rng),
    }
    for key in TRAFFIC_KEYS:
        if rng.random() >= 0.6:
            continue
        entries = []
        for _ in range(rng.randint(1, 12)):
            entry: dict[str, Any] = {}
            if key in ("virtualTraffic", "subnetTraffic"):
                entry["proto"] = rng.choice(PROTOS)
            entry["src"] = _address(rng)
            entry["dst"] = _address(rng)
            for counter in COUNTERS:
                if rng.random() < 0.85:
                    entry[counter] = rng.randrange(1, 10**7)
            entries.append(entry)
        event[key] = entries
    return {"time": round(when, 3), "event": event, "fields": {"recorded": _timestamp(when + 5, rng)}}


def audit_record(rng: random.Random, n: int) -> dict[str, Any]:
    when = BASE_TIME + n * 0.01
    values: list[Any] = ["", {}, True, 42, "tag:prod", {"expiry": "2026-07-01T00:00:00Z", "keys": [1, 2]}, None]
    return {
        "time": round(when, 3),
        "event": {
            "eventGroupID": f"{rng.randrange(16**32):032x}",
            "origin": rng.choice(("ADMIN_CONSOLE", "CONFIG_API", "CONTROL", "NODE")),
            "actor": {
                "id": f"u{rng.randrange(10**9)}CNTRL",
                "type": "USER",
                "loginName": f"user{rng.randrange(1000)}@example.com",
                "displayName": "A User",
            },
            "target": {"id": f"n{rng.randrange(10**9)}CNTRL", "name": "host.example.ts.net", "type": "NODE"},
            "action": rng.choice(("UPDATE", "CREATE", "DELETE", "LOGIN")),
            "old": rng.choice(values),
            "new": rng.choice(values),
        },
        "fields": {"recorded": _timestamp(when + 1, rng)},
    }


@dataclass(frozen=True, slots=True)
class Body:
    """One pre-built request body and what it holds."""

    data: bytes
    records: int
    raw_bytes: int
    """Size before compression."""
    encoding: str | None


def records(kind: str, count: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    make = network_record if kind == "network" else audit_record
    return [make(rng, n) for n in range(count)]


def body(rows: list[dict[str, Any]], *, ndjson: bool = False, compress: bool = False) -> Body:
    """Rows as Tailscale's concatenated shape (or NDJSON), optionally gzip-compressed."""
    separator = b"\n" if ndjson else b""
    raw = separator.join(orjson.dumps(row) for row in rows) + separator
    data = gzip.compress(raw, compresslevel=6) if compress else raw
    return Body(data, len(rows), len(raw), "gzip" if compress else None)
