"""Split Go `netip.AddrPort` strings into IP and port, the way Panther's split indicators mean to.

Panther's Tailscale.Network schema (https://docs.panther.com/data-onboarding/supported-logs/tailscale)
derives `srcIp`/`srcPort` by splitting `src` on `:`, which breaks on IPv6. Tailscale writes Go
`netip.AddrPort` text (https://tailscale.com/kb/1255/log-streaming): `100.64.0.1:443`,
`[fd7a:115c:a1e0::1]:41641`, `[fe80::1%eth0]:22`. This module splits those correctly and returns
only what is valid, never raising on hostile input.

It runs for every `src` and `dst` of every flow (about 30 per network record), so it is built for
speed, measured with bench/inprocess.py and pyinstrument:
- the common case, `a.b.c.d:port`, is one `rpartition` and one `inet_pton` that either accepts the
  host or sends the value down the general path (545 ns an address on the standard workload, where
  counting colons first took 635 ns; a strict regex was twice as slow: its octet alternation
  backtracks);
- addresses are checked and canonicalised by the C routines `inet_pton`/`inet_ntop` (~0.8 µs),
  not `ipaddress.ip_address` (3-10 µs, and an exception per invalid value), and memoized, since a
  tailnet has few distinct addresses. They accept what `ipaddress` accepts and print RFC 5952
  canonical text, as Go's netip does (`::ffff:1.2.3.4` for an IPv4-mapped address).
"""

from __future__ import annotations

import socket
from functools import lru_cache
from typing import Final

MAX_IP_TEXT: Final = 80
"""Longer text is no IP (IPv6 is at most 45 characters, plus a zone); it is refused before the
cache, so huge hostile strings neither cost a parse nor stay in memory."""


def _is_ipv4(text: str) -> bool:
    """Dotted-quad IPv4 without leading zeros (glibc's `inet_pton`, like Go): already canonical."""
    try:
        socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):  # ValueError: an embedded NUL character
        return False
    return True


@lru_cache(maxsize=65_536)
def _canonical(text: str) -> str | None:
    """Canonical text of an IPv4 or IPv6 address (zone dropped), or None when it is not one."""
    # An IPv6 zone names an interface of the logging host: the address itself is the indicator.
    host, percent, zone = text.partition("%")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if percent and (family == socket.AF_INET or not zone or "%" in zone):
        return None
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, host))
    except (OSError, ValueError):  # ValueError: an embedded NUL character
        return None


def canonical_ip(text: str) -> str | None:
    """The canonical text of an IP address without its zone (`fd7a::1`), or None when invalid."""
    return _canonical(text) if len(text) <= MAX_IP_TEXT else None


def split_addr_port(value: str) -> tuple[str | None, int | None]:
    """(ip, port) of `ip:port`, `[ipv6]:port`, or a bare address; each None when not valid.

    The IP is returned as written (zone kept), when it is a valid address; the port when it is
    decimal digits in 0..65535. Unbracketed text with several colons is IPv6 without a port.
    Written flat, one branch per shape: it runs for every `src` and `dst`.
    """
    if value[:1] != "[":
        host, colon, port_text = value.rpartition(":")
        if _is_ipv4(host):  # a.b.c.d:port, by far the most common (no "[" or ":" can pass)
            ip: str | None = host
        elif colon and ":" in host:  # several colons, no brackets: IPv6 without a port
            port_text = ""
            ip = value if len(value) <= MAX_IP_TEXT and _canonical(value) is not None else None
        elif colon:  # one colon, the host no dotted quad
            ip = None
        else:  # no colon: a bare address (rpartition put all of it in port_text)
            port_text = ""
            ip = value if _is_ipv4(value) else None
    else:
        end = value.rfind("]")  # the last one: a zone may itself hold "]"
        if end < 0:
            return None, None
        host = value[1:end]
        port_text = value[end + 2 :] if value[end + 1 : end + 2] == ":" else ""
        ip = host if len(host) <= MAX_IP_TEXT and _canonical(host) is not None else None
    # isascii() too: str.isdigit() also accepts digits such as "²" that int() refuses. Leading zeros
    # pass, as Go's strconv takes them. (A dict of the 65,536 port strings was slower: its table
    # does not stay in the CPU cache, and this line was the hottest of the receiver in py-spy.)
    if port_text.isdigit() and port_text.isascii() and len(port_text) <= 5:
        port = int(port_text)
        return ip, (port if port <= 65_535 else None)
    return ip, None
