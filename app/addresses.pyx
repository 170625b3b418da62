# cython: language_level=3, boundscheck=False, wraparound=False
"""Split Go `netip.AddrPort` strings into IP and port, the way Panther's split indicators mean to.

Panther's Tailscale.Network schema (https://docs.panther.com/data-onboarding/supported-logs/tailscale)
derives `srcIp`/`srcPort` by splitting `src` on `:`, which breaks on IPv6. Tailscale writes Go
`netip.AddrPort` text (https://tailscale.com/kb/1255/log-streaming): `100.64.0.1:443`,
`[fd7a:115c:a1e0::1]:41641`, `[fe80::1%eth0]:22`. This module splits those correctly and returns
only what is valid, never raising on hostile input.

It runs for every `src` and `dst` of every flow (about 30 per network record). In Python it was
the receiver's largest cost, 0.5-0.8 µs an address (~24 of a record's ~58 µs in process, measured
with bench/inprocess.py and py-spy), spread over calls, tuples and method lookups rather than any
one step. So it is Cython, compiled by setup.py, and the loop over a record's traffic entries is
here too, so no Python call is made per address:
- the common case, `a.b.c.d:port`, checks the host before the last colon with libc's `inet_pton`
  (glibc's accepts exactly Go's dotted quads: no leading zeros, no short forms), in C;
- IPv6 goes through `_canonical`, Python's `socket.inet_pton`/`inet_ntop`, memoized since a
  tailnet has few distinct addresses. It accepts what `ipaddress` accepts and prints RFC 5952
  canonical text, as Go's netip does (`::ffff:1.2.3.4` for an IPv4-mapped address).
"""

import socket
from functools import lru_cache


cdef extern from "arpa/inet.h" nogil:
    int inet_pton(int af, const char *src, void *dst)

cdef extern from "sys/socket.h" nogil:
    int AF_INET


MAX_IP_TEXT = 80
"""Longer text is no IP (IPv6 is at most 45 characters, plus a zone); it is refused before the
cache, so huge hostile strings neither cost a parse nor stay in memory."""

cdef Py_ssize_t _MAX_IP_TEXT = MAX_IP_TEXT
cdef Py_ssize_t _MAX_IPV4_TEXT = 15  # 255.255.255.255
cdef long _NO_PORT = -1


@lru_cache(maxsize=65_536)
def _canonical(str text):
    """Canonical text of an IPv4 or IPv6 address (zone dropped), or None when it is not one."""
    # An IPv6 zone names an interface of the logging host: the address itself is the indicator.
    host, percent, zone = text.partition("%")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if percent and (family == socket.AF_INET or not zone or "%" in zone):
        return None
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, host))
    except (OSError, ValueError):  # ValueError: an embedded NUL or a lone surrogate
        return None


def canonical_ip(str text):
    """The canonical text of an IP address without its zone (`fd7a::1`), or None when invalid."""
    return _canonical(text) if len(text) <= _MAX_IP_TEXT else None


cdef bint _is_ipv4(str text, Py_ssize_t length):
    """Whether `text[:length]` is a dotted-quad IPv4 address, hence already canonical."""
    cdef char buffer[16]
    cdef unsigned char address[4]
    cdef Py_ssize_t index
    cdef Py_UCS4 character
    if length > _MAX_IPV4_TEXT:
        return False
    for index in range(length):
        character = text[index]
        if character == 0 or character > 127:  # a NUL would end the C string early
            return False
        buffer[index] = <char> character
    buffer[length] = 0
    return inet_pton(AF_INET, buffer, address) == 1


cdef bint _is_ip(str text):
    """Whether `text` is an IPv4 or IPv6 address, zone allowed."""
    return len(text) <= _MAX_IP_TEXT and _canonical(text) is not None


cdef long _port(str text, Py_ssize_t start):
    """The port written in `text[start:]`: 1-5 ASCII digits (leading zeros pass, as Go's strconv
    takes them) up to 65535, else `_NO_PORT`."""
    cdef Py_ssize_t length = len(text) - start
    cdef Py_ssize_t index
    cdef Py_UCS4 digit
    cdef long port = 0
    if length < 1 or length > 5:
        return _NO_PORT
    for index in range(start, start + length):
        digit = text[index]
        if digit < 48 or digit > 57:  # "0".."9"
            return _NO_PORT
        port = port * 10 + (<long> digit - 48)
    return port if port <= 65_535 else _NO_PORT


cdef Py_ssize_t _rfind(str text, Py_UCS4 wanted, Py_ssize_t end):
    """The index of the last `wanted` in `text[:end]`, or -1."""
    cdef Py_ssize_t index
    for index in range(end - 1, -1, -1):
        if text[index] == wanted:
            return index
    return -1


cdef object _split(str value, long *port):
    """The IP of `ip:port`, `[ipv6]:port` or a bare address as written (zone kept), or None when
    not valid; the port goes to `port` (`_NO_PORT` when none or not valid).

    Unbracketed text with several colons is IPv6 without a port. One branch per shape."""
    cdef Py_ssize_t length = len(value)
    cdef Py_ssize_t colon, end
    port[0] = _NO_PORT
    if length == 0:
        return None
    if value[0] != "[":
        colon = _rfind(value, ":", length)
        if colon < 0:  # no colon: a bare address
            return value if _is_ipv4(value, length) else None
        port[0] = _port(value, colon + 1)
        if _is_ipv4(value, colon):  # a.b.c.d:port, by far the most common
            return value[:colon]
        if _rfind(value, ":", colon) >= 0:  # several colons, no brackets: IPv6 without a port
            port[0] = _NO_PORT
            return value if _is_ip(value) else None
        return None  # one colon, the host no dotted quad
    end = _rfind(value, "]", length)  # the last one: a zone may itself hold "]"
    if end < 0:
        return None
    if end + 1 < length and value[end + 1] == ":":
        port[0] = _port(value, end + 2)
    host = value[1:end]
    return host if _is_ip(host) else None


def split_addr_port(str value):
    """(ip, port) of `ip:port`, `[ipv6]:port`, or a bare address; each None when not valid.

    The IP is returned as written (zone kept), when it is a valid address; the port when it is
    decimal digits in 0..65535."""
    cdef long port
    ip = _split(value, &port)
    return ip, (None if port == _NO_PORT else port)


cdef int _split_side(dict entry, set found, str side, str ip_key, str port_key) except -1:
    """Set `ip_key`/`port_key` of one traffic entry from its `side`, or remove what is not valid."""
    cdef long port = _NO_PORT
    text = entry.get(side)
    ip = None if text is None else _split(<str?> text, &port)
    if ip is None:
        if ip_key in entry:
            del entry[ip_key]
    else:
        entry[ip_key] = ip
        # A valid IPv4 address is canonical as written; IPv6 is canonicalised from the cache that
        # validating it just filled.
        found.add(_canonical(ip) if ":" in ip else ip)
    if port == _NO_PORT:
        if port_key in entry:
            del entry[port_key]
    else:
        entry[port_key] = port
    return 0


def split_traffic(dict event, tuple keys):
    """Set `srcIp`/`srcPort`/`dstIp`/`dstPort` of every entry of the traffic arrays `keys` of a
    validated network `event`; return the distinct IPs found, canonical and without zones (the
    split fields keep them as written).

    The derived fields are authoritative: a value the sender put there is overwritten, or removed
    when nothing valid can be derived. Validation guarantees a traffic array is a list or null, an
    entry an object or null, `src`/`dst` a string or null (checked casts raise TypeError otherwise)."""
    cdef set found = set()
    for key in keys:
        entries = event.get(key)
        if entries is None:
            continue
        for item in <list?> entries:
            if item is None:
                continue
            _split_side(<dict?> item, found, "src", "srcIp", "srcPort")
            _split_side(<dict?> item, found, "dst", "dstIp", "dstPort")
    return found
