"""Add Panther's derived fields to a validated row: split addresses, indicators and `p_*` fields.

Follows Panther's normalisation (https://docs.panther.com/data-onboarding/supported-logs/tailscale),
so detections and queries written for Panther's Tailscale tables work on our rows:

- every traffic entry gets `srcIp`/`srcPort`/`dstIp`/`dstPort`, split IPv6-aware from `src`/`dst`.
  The derived values are authoritative: a value the sender put there is overwritten, or removed
  when nothing valid can be derived, so these fields always hold a valid IP and port;
- `p_any_ip_addresses`, `p_any_emails`, `p_any_actor_ids` hold only valid values, deduped and
  sorted, and are omitted when empty (a sender-provided one is removed too);
- the standard fields `p_log_type`, `p_row_id`, `p_event_time`, `p_parse_time`, `p_schema_version`,
  `p_source_id`, `p_source_label`.

A stored row is the record's canonical JSON (keys sorted at every level, as
`orjson.dumps(..., option=OPT_SORT_KEYS)` writes them), split fields included, followed by the
`p_*` fields. `p_row_id` is a hash of that canonical JSON, so it depends on the record's content
only: a record Tailscale re-sends after an outage (delivery is at-least-once,
https://tailscale.com/kb/1255/log-streaming) gets the same id whatever order its keys came in, and
sinks can drop the duplicate; a row forwarded to another tailscribe (`app.sinks.http`) keeps its id
there too, since the receiver's own fields are replaced and the split gives the same values again.
One dump serves as both the row and the id's input: until 2026-12-06 the id hashed a sorted dump of
the record before its split and the row was dumped again in the order received, which cost the
pipeline about 3 µs a network record more (30.2 against 27.5 µs at 73 records a body, best of five
interleaved runs; bench/RESULTS.md, "Canonical rows").
"""

from __future__ import annotations

import re
from binascii import hexlify
from datetime import UTC, datetime
from hashlib import sha256
from typing import Final

import orjson

from app.addresses import canonical_ip, sorted_unique, split_traffic, split_traffic_slots
from app.schemas import network_structs
from app.schemas.network import TRAFFIC_KEYS
from app.schemas.network_structs import NetworkRecord
from app.timestamps import format_unix
from app.types import PANTHER_LOG_TYPES, LogType, Row

SCHEMA_VERSION: Final = 0
RECEIVER_FIELDS: Final = frozenset(
    (
        "p_log_type",
        "p_row_id",
        "p_event_time",
        "p_parse_time",
        "p_schema_version",
        "p_source_id",
        "p_source_label",
        "p_any_ip_addresses",
        "p_any_emails",
        "p_any_actor_ids",
    )
)
"""Every field a stored row ends with: a sender's value for any of them is replaced (or removed, for an
indicator with nothing valid to hold)."""

_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+")
"""One `@` between non-empty parts without whitespace. No dot is required in the domain on purpose:
Tailscale names GitHub and passkey users `octocat@github` / `name@passkey`, and those logins are
the identity an analyst pivots on, just like a real address."""
_COMMA: Final = ord(",")
_INDICATORS: Final = (b',"p_any_ip_addresses":', b',"p_any_emails":', b',"p_any_actor_ids":')


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds and `Z` (`2026-06-03T15:32:56.773000Z`); naive means UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    # isoformat zero-pads years before 1000 (strftime("%Y") does not, on glibc). A row's
    # p_event_time, from unix seconds, is written by `app.timestamps.format_unix` in the same form.
    return moment.isoformat(timespec="microseconds") + "Z"


def _add_email(value: object, emails: list[str]) -> None:
    if isinstance(value, str) and _EMAIL.fullmatch(value):
        emails.append(value)


def _add_node(addresses: object, user: object, ips: list[str], emails: list[str]) -> None:
    """`srcNode` / `dstNodes[]` (client v1.92+): `addresses` holds IPs or prefixes, `user` a login."""
    if isinstance(addresses, list):
        for address in addresses:
            if isinstance(address, str) and (canonical := canonical_ip(address.partition("/")[0])) is not None:
                ips.append(canonical)
    _add_email(user, emails)


def _row_id(canonical: bytes) -> bytes:
    """`p_row_id` from a row's canonical JSON, as the ASCII of its hex digits.

    SHA-256, cut to 128 bits: as collision-resistant as an id needs, and twice as fast as BLAKE2b
    here (1.7 against 3.2 µs for a 2 KB record), since x86-64 and ARMv8 CPUs compute it in hardware.
    A non-cryptographic hash would be faster still, but anyone who can put text in a record could
    then craft one whose id collides with another's, and a sink that drops duplicates by id would
    drop that other record."""
    return hexlify(sha256(canonical).digest()[:16])


class RowFields:
    """The `p_*` fields of one request's rows, and the writing of each row's line.

    A line is the record's canonical JSON, its closing brace giving way to the row's own `p_row_id`
    and indicators (each left out when empty), then `p_parse_time`, `p_schema_version`,
    `p_source_id`, `p_source_label` and `p_log_type`, which every row of a request shares and which
    are written once here for all of them, and last the row's `p_event_time`. A dict of them built
    and dumped by orjson for each row cost the pipeline 0.1-0.3 µs a network record more (24.2
    against 24.0 µs at 73 records a body, best of five interleaved runs; bench/RESULTS.md,
    "Canonical rows").

    The log type and event time come last because sinks read them off every line to choose its
    partition (`app.sinks.base.by_partition`, searching from the line's end): after the indicators,
    as they were until 2026-12-06, each search went back across a network row's few hundred bytes of
    addresses, and grouping a batch took 2.9 µs a row (bench/RESULTS.md, "Where a record's CPU goes").
    """

    __slots__ = ("_tails", "parse_time")

    def __init__(self, *, source_id: str, source_label: str, parse_time: datetime) -> None:
        self.parse_time = format_timestamp(parse_time)
        """The request's parse time, RFC 3339: also a row's `p_event_time` when it has no `time`."""
        shared = orjson.dumps(
            {
                "p_parse_time": self.parse_time,
                "p_schema_version": SCHEMA_VERSION,
                "p_source_id": source_id,
                "p_source_label": source_label,
            }
        )[1:-1]
        self._tails = {
            log_type: b"," + shared + b',"p_log_type":' + orjson.dumps(name) + b',"p_event_time":"'
            for log_type, name in PANTHER_LOG_TYPES.items()
        }

    def append_line(
        self,
        out: bytearray,
        canonical: bytes,
        log_type: LogType,
        event_time: str,
        indicators: tuple[list[str], list[str], list[str]],
    ) -> int:
        """Append a row's line to `out`: its `canonical` JSON, then its `p_*` fields; return the line's
        length. An indicator is given the values found, repeats and all, and written sorted and
        deduplicated. `event_time` is RFC 3339 (`format_unix`), written as it is: it needs no escape."""
        start = len(out)
        out += canonical
        out[-1] = _COMMA
        if len(canonical) == len(b"{}"):
            del out[-1]
        out += b'"p_row_id":"'
        out += _row_id(canonical)
        out += b'"'
        for name, values in zip(_INDICATORS, indicators, strict=True):
            if values:
                out += name
                out += orjson.dumps(sorted_unique(values))
        out += self._tails[log_type]
        out += event_time.encode()
        out += b'"}\n'
        return len(out) - start


def append_row(out: bytearray, row: Row, log_type: LogType, fields: RowFields) -> int:
    """Enrich `row`, a dict returned by `app.schemas.validate`, in place and append its stored line
    to `out`; return the line's length."""
    ips: list[str] = []
    emails: list[str] = []
    actor_ids: list[str] = []
    event = row.get("event")
    if isinstance(event, dict):
        ips = split_traffic(event, TRAFFIC_KEYS)
        nodes = [event.get("srcNode")]
        if isinstance(destinations := event.get("dstNodes"), list):
            nodes += destinations
        for node in nodes:
            if isinstance(node, dict):
                _add_node(node.get("addresses"), node.get("user"), ips, emails)
        actor = event.get("actor")
        if isinstance(actor, dict):
            _add_email(actor.get("loginName"), emails)
            if isinstance(actor_id := actor.get("id"), str) and actor_id:
                actor_ids.append(actor_id)

    seconds = row.get("time")  # validated rows always have it; Panther falls back to the parse time
    event_time = format_unix(seconds) if isinstance(seconds, int | float) else fields.parse_time
    if not RECEIVER_FIELDS.isdisjoint(row):
        # A sender's own values go: the receiver's p_* fields follow the canonical JSON, after
        # anything a sender put there (`app.sinks.base.line_field` relies on that).
        for key in RECEIVER_FIELDS:
            row.pop(key, None)
    canonical = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
    return fields.append_line(out, canonical, log_type, event_time, (ips, emails, actor_ids))


def append_network_row(out: bytearray, record: NetworkRecord, fields: RowFields) -> int:
    """`append_row` for a record decoded into structs (`app.schemas.network_structs`): the line is
    the same, byte for byte, as `append_row` writes of the same record in dicts. Such a record has
    no `p_*` field of its own (its struct declares none)."""
    event = record.event
    ips = split_traffic_slots(event, TRAFFIC_KEYS)
    emails: list[str] = []
    for node in (event.srcNode, *(event.dstNodes or ())):  # UNSET is false, as None is
        if isinstance(node, network_structs.Node):
            _add_node(node.addresses, node.user, ips, emails)
    # Encoded to bytes of its own, not with `encode_into(record, out, -1)`: that grows `out` by half
    # again each time it is short, and an 11 MB body's rows then peaked 6 MB higher (36 MB allocated
    # for 21.5 MB of rows).
    canonical = network_structs.ENCODER.encode(record)
    return fields.append_line(out, canonical, "network", format_unix(record.time), (ips, emails, []))
