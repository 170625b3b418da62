"""A fast check that a record is valid *and* already in normal form, so it is stored as parsed.

pydantic (`app.schemas.validate`) is the authority on the schemas, but it builds a new dict at every
level of every record: about 20 µs for a 2 KB network record, more than parsing it. Almost every
record Tailscale sends is already in normal form (counters and `proto` are JSON integers, `time` a
number), and for those pydantic's result equals its input. This module checks exactly that case in C,
without building dicts (about 3 µs): msgspec structs for the envelope and the event, each timestamp
with `app.timestamps.rfc3339_values` (the compiled check pydantic's validator uses too), and a
network event's traffic entries with `app.schemas.traffic`, which reads them in place where msgspec
built a struct per entry. A record it accepts skips pydantic and is used as it is.

A network record whose every key the structs of `app.schemas.network_structs` declare does not get
here: framing decodes it into those structs straight from its bytes. This check serves audit records,
and the network records that lane leaves (a key those structs do not know, such as a field Tailscale
adds, or a `max_depth` below theirs).

The check may refuse more than pydantic, never accept more: anything it refuses (an invalid record,
or a valid one needing normalization such as `"proto": "tcp"` or `"txBytes": "12"`) goes through
pydantic, which normalizes it or explains what is wrong. tests/test_fastpath.py holds it to that: for
every record it accepts, pydantic accepts it too and returns an equal dict, and the structs (and
`TRAFFIC_FIELDS`) declare the same fields as the TypedDicts.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, get_args, get_type_hints

import msgspec

from app.schemas.common import UNIX_END, UNIX_MIN
from app.schemas.network import TRAFFIC_KEYS
from app.schemas.traffic import traffic_is_normal
from app.timestamps import rfc3339_values
from app.types import LogType, Row

UnixTime = Annotated[float, msgspec.Meta(ge=UNIX_MIN, lt=UNIX_END)]
Timestamp = Annotated[str, msgspec.Meta(title="RFC 3339 timestamp")]
"""A string here, checked by `app.timestamps.rfc3339_values` after msgspec: msgspec's own datetime
parser also takes a space separator, ten or more fractional digits and `+hhmm`, which Go's RFC 3339
refuses, and it built a datetime per timestamp only to have it thrown away."""


class Fields(msgspec.Struct):
    recorded: Timestamp | None = None


Traffic = Any
"""Taken as it is by msgspec, then checked by `traffic_is_normal`."""


class NetworkEvent(msgspec.Struct):
    nodeId: str | None = None
    start: Timestamp | None = None
    end: Timestamp | None = None
    virtualTraffic: Traffic = None
    subnetTraffic: Traffic = None
    exitTraffic: Traffic = None
    physicalTraffic: Traffic = None


class Actor(msgspec.Struct):
    id: str | None = None
    type: str | None = None
    loginName: str | None = None
    displayName: str | None = None
    tags: list[str | None] | None = None


class Target(msgspec.Struct):
    id: str | None = None
    name: str | None = None
    type: str | None = None
    property: str | None = None


class AuditEvent(msgspec.Struct):
    origin: str
    actor: Actor
    target: Target
    action: str
    deferredAt: Timestamp | None = None
    eventGroupID: str | None = None
    old: Any = None
    new: Any = None
    actionDetails: str | None = None
    error: str | None = None


class NetworkEnvelope(msgspec.Struct):
    time: UnixTime
    event: NetworkEvent
    fields: Fields | None = None


class AuditEnvelope(msgspec.Struct):
    time: UnixTime
    event: AuditEvent
    fields: Fields | None = None


ENVELOPES: Final[dict[LogType, type[msgspec.Struct]]] = {"audit": AuditEnvelope, "network": NetworkEnvelope}


def _timestamp_keys(struct: type[msgspec.Struct]) -> tuple[str, ...]:
    """The fields of `struct` typed `Timestamp`, read from its annotations so none can be forgotten."""
    hints = get_type_hints(struct, include_extras=True)
    return tuple(name for name, hint in hints.items() if Timestamp in get_args(hint))


TIMESTAMP_KEYS: Final[dict[LogType, tuple[str, ...]]] = {
    "audit": _timestamp_keys(AuditEvent),
    "network": _timestamp_keys(NetworkEvent),
}
"""The `event` keys typed `Timestamp`, checked after msgspec has checked the record's shape."""
_FIELDS_TIMESTAMP_KEYS: Final = _timestamp_keys(Fields)


def is_normal(record: Row, log_type: LogType) -> bool:
    """True when `record` is a valid `log_type` envelope that pydantic would return unchanged."""
    try:
        msgspec.convert(record, ENVELOPES[log_type], strict=True)
    except msgspec.ValidationError:
        return False
    event = record["event"]
    fields = record.get("fields")
    return (
        (fields is None or rfc3339_values(fields, _FIELDS_TIMESTAMP_KEYS))
        and rfc3339_values(event, TIMESTAMP_KEYS[log_type])
        and (log_type != "network" or traffic_is_normal(event, TRAFFIC_KEYS))
    )
