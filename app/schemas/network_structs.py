"""Network records decoded straight from their bytes into msgspec structs: the pipeline's fast lane.

The general path parses a record into dicts with orjson, checks it with `app.schemas.fastpath`,
adds the split fields to each traffic entry's dict and dumps the row. For a network record in
normal form, nearly every one Tailscale sends, this module does the same in fewer steps: msgspec
parses and type-checks the bytes in one pass into structs, the split fields are slots declared on
each entry (a dict orjson sized for seven keys had to grow for four more), and msgspec writes the
row back (bench/RESULTS.md, "A network lane").

It may refuse more than the general path, never accept more. `decode` returns None for anything
but a network envelope in normal form whose every key is declared here: an unknown key (a field
Tailscale adds, a sender's own `p_*`), a counter as a string, a protocol name, a bare record, bad
JSON. The caller then parses that piece with orjson and takes the general path, which keeps
unknown keys, normalizes, or says what is wrong. tests/schemas/test_network_structs.py holds it to
that: on any record, a row this lane writes equals, byte for byte, the row the general path writes.

What that equality rests on, each checked there:
- msgspec and orjson refuse the same bad JSON (invalid UTF-8, lone surrogates, NaN, control
  characters) and keep the last of duplicate keys;
- every integer is range-checked to what orjson parses as an integer (64 bits), and `time` to
  years 1-9999, so numbers come back as the same Python values and print as the same text;
- a field absent from the record stays `UNSET`, which msgspec never writes, while an explicit
  null is kept;
- every struct declares its fields in sorted order, so `ENCODER` writes a record as
  `orjson.dumps(row, option=OPT_SORT_KEYS)` writes its dict: the canonical JSON `app.enrich`
  stores and takes `p_row_id` from. msgspec's own `order="sorted"` writes the same but sorts on
  every call: 3.4 against 2.3 µs a record, and declared in Tailscale's order the structs decoded
  only 0.9 µs faster (5.5 against 6.4; best of 300 runs of a 73-record body each).
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from app.schemas.common import UNIX_END, UNIX_MIN
from app.schemas.network import TRAFFIC_KEYS
from app.timestamps import rfc3339_texts

DEPTH: Final = 5
"""The deepest a decoded record nests (envelope, event, `dstNodes`, a node, its `addresses`), so
framing need not count its brackets when `max_depth` is at least this."""

Int16 = Annotated[int, Meta(ge=-(2**15), le=2**15 - 1)]
Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
UnixSeconds = Annotated[int, Meta(ge=UNIX_MIN, lt=UNIX_END)] | Annotated[float, Meta(ge=UNIX_MIN, lt=UNIX_END)]
"""An int stays an int and a float a float, as in the general path; numeric strings take that path."""

Text = str | None | UnsetType
Texts = list[str | None] | None | UnsetType


class _Strict(Struct, forbid_unknown_fields=True, gc=False):
    """A record's structs hold only strings, numbers, lists of them and other such structs: no
    reference cycle can pass through one, so the garbage collector need not track them."""


class TrafficEntry(_Strict):
    """`app.schemas.network.TrafficEntry` in normal form, plus the four fields `app.enrich` derives."""

    dst: Text = UNSET
    dstIp: Text = UNSET
    dstPort: Int64 | None | UnsetType = UNSET
    proto: Int16 | None | UnsetType = UNSET
    rxBytes: Int64 | None | UnsetType = UNSET
    rxPkts: Int64 | None | UnsetType = UNSET
    src: Text = UNSET
    srcIp: Text = UNSET
    srcPort: Int64 | None | UnsetType = UNSET
    txBytes: Int64 | None | UnsetType = UNSET
    txPkts: Int64 | None | UnsetType = UNSET


class Node(_Strict):
    """`srcNode` and each of `dstNodes` (client v1.92+; docs/tailscale-wire-format.md)."""

    addresses: Texts = UNSET
    name: Text = UNSET
    nodeId: Text = UNSET
    os: Text = UNSET
    tags: Texts = UNSET
    user: Text = UNSET


Traffic = list[TrafficEntry | None] | None | UnsetType


class NetworkEvent(_Strict):
    dstNodes: list[Node | None] | None | UnsetType = UNSET
    end: Text = UNSET
    exitTraffic: Traffic = UNSET
    nodeId: Text = UNSET
    physicalTraffic: Traffic = UNSET
    srcNode: Node | None | UnsetType = UNSET
    start: Text = UNSET
    subnetTraffic: Traffic = UNSET
    virtualTraffic: Traffic = UNSET


class Fields(_Strict):
    recorded: Text = UNSET


class NetworkRecord(_Strict, kw_only=True):  # kw_only: the required `time` is declared last, in its sorted place
    event: NetworkEvent
    fields: Fields | None | UnsetType = UNSET
    time: UnixSeconds


# One of each for every worker thread: msgspec's encoders and decoders are thread-safe since 0.15
# (https://github.com/jcrist/msgspec/pull/402).
ENCODER: Final = msgspec.json.Encoder()
"""Writes a record's fields in declared, hence sorted, order (above)."""
_DECODER: Final = msgspec.json.Decoder(NetworkRecord)


def decode(data: bytes | memoryview, *, shaped: bool) -> NetworkRecord | None:
    """The network record `data` holds in normal form, or None when the general path must decide.

    `shaped` asks for what `app.schemas.classify` calls a network record (an event with `nodeId` or
    a traffic array), for a route where each record's shape tells its log type.
    """
    try:
        record = _DECODER.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):  # ValidationError is a DecodeError; bad UTF-8 is neither
        return None
    event = record.event
    if shaped and event.nodeId is UNSET and all(getattr(event, key) is UNSET for key in TRAFFIC_KEYS):
        return None
    fields = record.fields
    recorded = fields.recorded if isinstance(fields, Fields) else None
    return record if rfc3339_texts(event.start, event.end, recorded) else None
