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
- the common case, `a.b.c.d:port`, checks the host before the last colon as a dotted quad, in C
  (exactly Go's form, as glibc's `inet_pton` takes it: no leading zeros, no short forms);
- IPv6 goes through `_canonical`, Python's `socket.inet_pton`/`inet_ntop`, memoized since a
  tailnet has few distinct addresses. It accepts what `ipaddress` accepts and prints RFC 5952
  canonical text, as Go's netip does (`::ffff:1.2.3.4` for an IPv4-mapped address). The memo is a
  plain dict read in C (~100 instructions a lookup), not `functools.lru_cache`, whose call from here
  cost ~2,700; an IPv6 side takes two lookups, one to validate it and one for its canonical text.
"""

import socket
import types

import msgspec

from app.schemas.network_structs import TrafficEntry

from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.string cimport memcpy


cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object text)
    Py_ssize_t PyUnicode_GET_LENGTH(object text)
    void *PyUnicode_DATA(object text)
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    object PyUnicode_DecodeUTF8(const char *data, Py_ssize_t size, const char *errors)
    const char *PyUnicode_AsUTF8AndSize(object text, Py_ssize_t *size) except NULL


MAX_IP_TEXT = 80
"""Longer text is no IP (IPv6 is at most 45 characters, plus a zone); it is refused before the
cache, so huge hostile strings neither cost a parse nor stay in memory."""

cdef Py_ssize_t _MAX_IP_TEXT = MAX_IP_TEXT
cdef Py_ssize_t _MAX_IPV4_TEXT = 15  # 255.255.255.255
cdef long _NO_PORT = -1


MEMO_SIZE = 65_536
"""At most this many addresses are memoized; a full memo is emptied and refills (hostile text
of endless distinct addresses then costs a parse each, never unbounded memory)."""

cdef dict _memo = {}
cdef Py_ssize_t _MEMO_SIZE = MEMO_SIZE


cdef str _parse(str text):
    """Canonical text of an IPv4 or IPv6 address (zone dropped), or "" when it is not one."""
    # An IPv6 zone names an interface of the logging host: the address itself is the indicator.
    host, percent, zone = text.partition("%")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # `ipaddress` refuses a "/" anywhere, a zone's included (it would read as a prefix length).
    if percent and (family == socket.AF_INET or not zone or "%" in zone or "/" in zone):
        return ""
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, host))
    except (OSError, ValueError):  # ValueError: an embedded NUL or a lone surrogate
        return ""


cdef str _canonical(str text):
    """`_parse(text)` memoized, or None when `text` is longer than any IP; "" means not an IP."""
    if len(text) > _MAX_IP_TEXT:
        return None
    canonical = _memo.get(text)
    if canonical is None:
        if len(_memo) >= _MEMO_SIZE:
            _memo.clear()
        canonical = _memo[text] = _parse(text)
    return canonical


def canonical_ip(str text):
    """The canonical text of an IP address without its zone (`fd7a::1`), or None when invalid."""
    return _canonical(text) or None


cdef bint _is_ipv4(const char *text, Py_ssize_t length) noexcept:
    """Whether the `length` bytes at `text` are a dotted quad, hence IPv4 already canonical: four
    decimal octets of 0-255 without leading zeros, exactly what Go writes and what glibc's
    `inet_pton` and Go's `netip.ParseAddr` accept. Read in the one pass over the characters that
    copying them into a C string for `inet_pton` took, which cost as much again (~500 instructions
    an address)."""
    cdef Py_ssize_t index
    cdef char character
    cdef int dots = 0, digits = 0, octet = 0
    if length > _MAX_IPV4_TEXT:
        return False
    for index in range(length):
        character = text[index]
        if character == b".":
            if digits == 0 or dots == 3:
                return False
            dots += 1
            digits = octet = 0
        elif b"0" <= character <= b"9":
            if digits == 1 and octet == 0:  # a leading zero
                return False
            octet = octet * 10 + (character - 48)
            if octet > 255:
                return False
            digits += 1
        else:
            return False
    return dots == 3 and digits > 0


cdef long _port(const char *text, Py_ssize_t length) noexcept:
    """The port written in the `length` bytes at `text`: 1-5 ASCII digits (leading zeros pass, as
    Go's strconv takes them) up to 65535, else `_NO_PORT`."""
    cdef Py_ssize_t index
    cdef long port = 0
    if length < 1 or length > 5:
        return _NO_PORT
    for index in range(length):
        if not b"0" <= text[index] <= b"9":
            return _NO_PORT
        port = port * 10 + (text[index] - 48)
    return port if port <= 65_535 else _NO_PORT


cdef Py_ssize_t _rfind(const char *text, char wanted, Py_ssize_t end) noexcept:
    """The index of the last `wanted` in the first `end` bytes at `text`, or -1."""
    cdef Py_ssize_t index
    for index in range(end - 1, -1, -1):
        if text[index] == wanted:
            return index
    return -1


cdef const char *_utf8(str value, Py_ssize_t *length):
    """`value` as UTF-8, read in place when it is ASCII (nearly always), or NULL when it holds a lone
    surrogate, which no address does. The bytes that structure an address (`[`, `]`, `:`, digits, dots)
    are ASCII, which UTF-8 never uses inside a longer character, so they are found as bytes."""
    if PyUnicode_IS_ASCII(value):
        length[0] = PyUnicode_GET_LENGTH(value)
        return <const char *> PyUnicode_DATA(value)
    try:
        return PyUnicode_AsUTF8AndSize(value, length)
    except UnicodeEncodeError:
        return NULL


cdef str _ascii(const char *text, Py_ssize_t length):
    """A new str of the `length` ASCII bytes at `text`, copied without being checked again."""
    result = PyUnicode_New(length, 127)
    memcpy(PyUnicode_DATA(result), text, length)
    return result


cdef object _split(str value, long *port, bint *dotted_quad):
    """The IP of `ip:port`, `[ipv6]:port` or a bare address as written (zone kept), or None when
    not valid; the port goes to `port` (`_NO_PORT` when none or not valid), and `dotted_quad` says
    whether the IP is IPv4 as Go writes it, hence canonical as it stands.

    Unbracketed text with several colons is IPv6 without a port. One branch per shape. The text is
    read as bytes in place and the IP copied off once: read character by character and sliced, a
    network record's 29 addresses took 6.5 µs to split, against 5.2 (three interleaved timings)."""
    cdef Py_ssize_t length, colon, end
    cdef const char *text = _utf8(value, &length)
    port[0] = _NO_PORT
    dotted_quad[0] = False
    if text == NULL or length == 0:
        return None
    if text[0] != b"[":
        colon = _rfind(text, b":", length)
        if colon < 0:  # no colon: a bare address
            dotted_quad[0] = _is_ipv4(text, length)
            return value if dotted_quad[0] else None
        port[0] = _port(text + colon + 1, length - colon - 1)
        if _is_ipv4(text, colon):  # a.b.c.d:port, by far the most common
            dotted_quad[0] = True
            return _ascii(text, colon)
        if _rfind(text, b":", colon) >= 0:  # several colons, no brackets: IPv6 without a port
            port[0] = _NO_PORT
            return value if _canonical(value) else None
        return None  # one colon, the host no dotted quad
    end = _rfind(text, b"]", length)  # the last one: a zone may itself hold "]"
    if end < 0:
        return None
    if end + 1 < length and text[end + 1] == b":":
        port[0] = _port(text + end + 2, length - end - 2)
    host = PyUnicode_DecodeUTF8(text + 1, end - 1, NULL)
    return host if _canonical(host) else None


def split_addr_port(str value):
    """(ip, port) of `ip:port`, `[ipv6]:port`, or a bare address; each None when not valid.

    The IP is returned as written (zone kept), when it is a valid address; the port when it is
    decimal digits in 0..65535."""
    cdef long port
    cdef bint dotted_quad
    ip = _split(value, &port, &dotted_quad)
    return ip, (None if port == _NO_PORT else port)


cdef int _split_side(dict entry, list found, str side, str ip_key, str port_key) except -1:
    """Set `ip_key`/`port_key` of one traffic entry from its `side`, or remove what is not valid."""
    cdef long port = _NO_PORT
    cdef bint dotted_quad = False
    text = entry.get(side)
    ip = None if text is None else _split(<str?> text, &port, &dotted_quad)
    if ip is None:
        if ip_key in entry:
            del entry[ip_key]
    else:
        entry[ip_key] = ip
        # A dotted quad is canonical as written; any other IP is canonicalised from the memo that
        # validating it just filled.
        found.append(ip if dotted_quad else _canonical(ip))
    if port == _NO_PORT:
        if port_key in entry:
            del entry[port_key]
    else:
        entry[port_key] = port
    return 0


def split_traffic(dict event, tuple keys):
    """Set `srcIp`/`srcPort`/`dstIp`/`dstPort` of every entry of the traffic arrays `keys` of a
    validated network `event`; return the IPs found, canonical and without zones (the split fields
    keep them as written), in a list that may repeat one: `sorted_unique` makes the indicator of it.

    The derived fields are authoritative: a value the sender put there is overwritten, or removed
    when nothing valid can be derived. Validation guarantees a traffic array is a list or null, an
    entry an object or null, `src`/`dst` a string or null (checked casts raise TypeError otherwise)."""
    cdef list found = []
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


cdef object _UNSET = msgspec.UNSET


cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member


cdef Py_ssize_t _offset(object struct, str field) except -1:
    """Where `struct` keeps `field` in each instance: msgspec declares a struct's fields as slots,
    whose member descriptors say where."""
    descriptor = struct.__dict__[field]
    if type(descriptor) is not types.MemberDescriptorType:
        raise TypeError(f"{struct.__name__}.{field} is not a slot")
    return (<PyMemberDescrObject *> <PyObject *> descriptor).d_member.offset


# The traffic entry's slots, read and written in place: through getattr and setattr (each a type
# lookup, a descriptor call and msgspec's `__setattr__`) a network record's split took 5.1 µs,
# against 3.9 (best of 300 runs of a 73-record body, twice each). Safe for this struct alone: its
# values are never NULL (msgspec fills every field, UNSET included) and it is not tracked by the
# garbage collector (`gc=False`), so a slot needs no more than its reference counts kept.
cdef object _ENTRY = TrafficEntry
cdef Py_ssize_t _SRC = _offset(TrafficEntry, "src")
cdef Py_ssize_t _SRC_IP = _offset(TrafficEntry, "srcIp")
cdef Py_ssize_t _SRC_PORT = _offset(TrafficEntry, "srcPort")
cdef Py_ssize_t _DST = _offset(TrafficEntry, "dst")
cdef Py_ssize_t _DST_IP = _offset(TrafficEntry, "dstIp")
cdef Py_ssize_t _DST_PORT = _offset(TrafficEntry, "dstPort")


cdef inline PyObject **_slot(object entry, Py_ssize_t offset):
    return <PyObject **> (<char *> <PyObject *> entry + offset)


cdef inline void _put(object entry, Py_ssize_t offset, object value):
    cdef PyObject **slot = _slot(entry, offset)
    cdef PyObject *old = slot[0]
    Py_INCREF(value)
    slot[0] = <PyObject *> value
    Py_XDECREF(old)


cdef int _split_slots(
    object entry, list found, Py_ssize_t side, Py_ssize_t ip_key, Py_ssize_t port_key
) except -1:
    """`_split_side` for a traffic entry that is a `TrafficEntry` struct, its fields given by their
    slots' offsets: what is not valid is set to `UNSET`, which msgspec never writes."""
    cdef long port = _NO_PORT
    cdef bint dotted_quad = False
    text = <object> _slot(entry, side)[0]
    ip = None if text is None or text is _UNSET else _split(<str?> text, &port, &dotted_quad)
    if ip is None:
        _put(entry, ip_key, _UNSET)
    else:
        _put(entry, ip_key, ip)
        found.append(ip if dotted_quad else _canonical(ip))
    _put(entry, port_key, _UNSET if port == _NO_PORT else port)
    return 0


def split_traffic_slots(object event, tuple keys):
    """`split_traffic` for a network event decoded into structs (`app.schemas.network_structs`):
    each traffic array `keys` is a list, null or `UNSET`, each entry a `TrafficEntry` or null."""
    cdef list found = []
    for key in keys:
        entries = getattr(event, key)
        if entries is None or entries is _UNSET:
            continue
        for item in <list?> entries:
            if item is None:
                continue
            if type(item) is not _ENTRY:
                raise TypeError(f"a traffic entry must be a TrafficEntry, not {type(item).__name__}")
            _split_slots(item, found, _SRC, _SRC_IP, _SRC_PORT)
            _split_slots(item, found, _DST, _DST_IP, _DST_PORT)
    return found


def sorted_unique(list texts):
    """`sorted(set(texts))` for a list of str, made in place: sorted, then each run of equal
    neighbours kept once. An indicator field is this of the values a row holds. Collected into a
    set, a network record's ~29 IPs were each hashed, then copied out to be sorted: the pipeline
    took 26.3 against 24.2 µs a record at 73 records a body (best of five interleaved runs). Sorted
    with C's `qsort` on each text's first 8 bytes as one integer instead of `list.sort`, the same
    2.0 µs a record: `list.sort` already compares str by `memcmp`."""
    cdef Py_ssize_t index, kept = 0
    texts.sort()
    for index in range(len(texts)):
        if kept == 0 or texts[index] != texts[kept - 1]:
            texts[kept] = texts[index]
            kept += 1
    del texts[kept:]
    return texts
