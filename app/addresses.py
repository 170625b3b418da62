"""Split Go `netip.AddrPort` strings into IP and port, the way Panther's split indicators mean to.

Panther's Tailscale.Network schema (https://docs.panther.com/data-onboarding/supported-logs/tailscale)
derives `srcIp`/`srcPort` by splitting `src` on `:`, which breaks on IPv6. Tailscale writes Go
`netip.AddrPort` text (https://tailscale.com/kb/1255/log-streaming): `100.64.0.1:443`,
`[fd7a:115c:a1e0::1]:41641`, `[fe80::1%eth0]:22`. This module splits those correctly and returns
only what is valid, never raising on hostile input.

It runs for every `src` and `dst` of every flow (tens of thousands of calls a second), and a
tailnet has few distinct addresses, so IP parsing is memoized: a cache hit costs ~0.05 µs where
`ipaddress.ip_address` costs 3-10 µs (and raises on every invalid value). A whole IPv4 split costs
~0.55 µs.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Final

MAX_IP_TEXT: Final = 80
"""Longer text is no IP (IPv6 is at most 45 characters, plus a zone); it is refused before the
cache, so huge hostile strings neither cost a parse nor stay in memory."""


@lru_cache(maxsize=65_536)
def _canonical(text: str) -> str | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # An IPv6 zone names an interface of the logging host: the address itself is the indicator.
    return str(address).partition("%")[0]


def canonical_ip(text: str) -> str | None:
    """The canonical text of an IP address without its zone (`fd7a::1`), or None when invalid."""
    return _canonical(text) if len(text) <= MAX_IP_TEXT else None


def split_addr_port(value: str) -> tuple[str | None, int | None]:
    """(ip, port) of `ip:port`, `[ipv6]:port`, or a bare address; each None when not valid.

    The IP is returned as written (zone kept), when `ipaddress` accepts it; the port when it is
    decimal digits in 0..65535. Unbracketed text with several colons is IPv6 without a port.
    Written flat, without helper calls: it runs for every `src` and `dst`.
    """
    if value[:1] == "[":
        end = value.rfind("]")  # the last one: a zone may itself hold "]"
        if end < 0:
            return None, None
        host = value[1:end]
        port_text = value[end + 2 :] if value[end + 1 : end + 2] == ":" else ""
    elif value.count(":") > 1:
        host, port_text = value, ""
    else:
        host, _, port_text = value.partition(":")
    ip = host if len(host) <= MAX_IP_TEXT and _canonical(host) is not None else None
    # isascii() first: str.isdigit() also accepts digits such as "²" that int() refuses.
    if 0 < len(port_text) <= 5 and port_text.isascii() and port_text.isdigit():
        port = int(port_text)
        return ip, (port if port <= 65_535 else None)
    return ip, None
