"""Tailscale.Network: network flow records, as Panther's schema declares them.

Schema: https://docs.panther.com/data-onboarding/supported-logs/tailscale (Tailscale.Network);
records: https://tailscale.com/kb/1255/log-streaming. Nothing inside `event` is required. The
four traffic arrays share one entry type whose every field may be absent, because Tailscale's Go
encoder omits zero values (`omitzero`). `srcIp`/`srcPort`/`dstIp`/`dstPort` are not declared: they
are derived by `app.enrich`, not received. `srcNode`/`dstNodes` (client v1.92+, not in Panther's
schema) and other unknown keys are kept as received.
"""

from __future__ import annotations

from typing import Final

from pydantic import TypeAdapter, with_config
from typing_extensions import TypedDict

from app.schemas.common import OPEN, BigInt, Envelope, Proto, Timestamp

TRAFFIC_KEYS: Final = ("virtualTraffic", "subnetTraffic", "exitTraffic", "physicalTraffic")
"""The `event` keys holding traffic arrays, all of `TrafficEntry`."""


@with_config(OPEN)
class TrafficEntry(TypedDict, total=False):
    """One connection's counters in a window; `src`/`dst` are Go `netip.AddrPort` strings."""

    proto: Proto | None
    src: str | None
    dst: str | None
    txPkts: BigInt | None
    txBytes: BigInt | None
    rxPkts: BigInt | None
    rxBytes: BigInt | None


Traffic = list[TrafficEntry | None] | None


@with_config(OPEN)
class NetworkEvent(TypedDict, total=False):
    nodeId: str | None
    start: Timestamp | None
    end: Timestamp | None
    virtualTraffic: Traffic
    subnetTraffic: Traffic
    exitTraffic: Traffic
    physicalTraffic: Traffic


NETWORK_ADAPTER: Final = TypeAdapter(Envelope[NetworkEvent])
