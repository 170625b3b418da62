"""Splitting Go netip.AddrPort text: IPv4, bracketed IPv6, zones, and hostile input."""

from __future__ import annotations

import ipaddress
import re
import sys
import tracemalloc

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.addresses import MAX_IP_TEXT, MEMO_SIZE, canonical_ip, sorted_unique, split_addr_port, split_traffic_slots
from app.schemas.network_structs import NetworkEvent, TrafficEntry


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100.64.0.1:443", ("100.64.0.1", 443)),
        ("[fd7a:115c:a1e0::1]:41641", ("fd7a:115c:a1e0::1", 41641)),
        ("[fe80::1%eth0]:22", ("fe80::1%eth0", 22)),
        ("fd7a::1", ("fd7a::1", None)),
        ("1.2.3.4", ("1.2.3.4", None)),
        ("[::1]", ("::1", None)),
        ("100.64.0.1:0", ("100.64.0.1", 0)),
        ("127.3.3.40:1", ("127.3.3.40", 1)),
        ("1.2.3.4:65535", ("1.2.3.4", 65535)),
        ("1.2.3.4:00080", ("1.2.3.4", 80)),
        ("[::ffff:1.2.3.4]:80", ("::ffff:1.2.3.4", 80)),
    ],
)
def test_go_addr_port_text_splits_into_ip_and_port(text: str, expected: tuple[str | None, int | None]) -> None:
    assert split_addr_port(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3.4:99999", ("1.2.3.4", None)),
        ("1.2.3.4:65536", ("1.2.3.4", None)),
        ("1.2.3.4:-1", ("1.2.3.4", None)),
        ("1.2.3.4:abc", ("1.2.3.4", None)),
        ("1.2.3.4:", ("1.2.3.4", None)),
        ("1.2.3.4:²", ("1.2.3.4", None)),
        ("1.2.3.4: 80", ("1.2.3.4", None)),
        ("1.2.3.4:+80", ("1.2.3.4", None)),
        ("1.O.3.22:2341", (None, 2341)),
        ("01.2.3.4:80", (None, 80)),
        ("256.1.1.1:80", (None, 80)),
        ("1.2.3.4%eth0:80", (None, 80)),
        ("host.example:80", (None, 80)),
        (":80", (None, 80)),
        ("", (None, None)),
        (":", (None, None)),
        (":::", (None, None)),
        ("fd7a::1:443:", (None, None)),
        ("[fe80::1%]:1", (None, 1)),
        ("[::1", (None, None)),
        ("::1]", (None, None)),
        ("[]:80", (None, 80)),
        ("[::1]80", ("::1", None)),
        ("[::1]:", ("::1", None)),
        ("[[::1]]:80", (None, 80)),
        ("[1.2.3.4]:80", ("1.2.3.4", 80)),
        ("x" * 1_000_000, (None, None)),
        ("[" + "1" * 1_000_000 + "]:1", (None, 1)),
    ],
)
def test_invalid_halves_are_left_out_never_invented(text: str, expected: tuple[str | None, int | None]) -> None:
    assert split_addr_port(text) == expected


def test_canonical_ip_drops_the_zone_and_normalizes_case_and_zeros() -> None:
    assert canonical_ip("fe80::1%eth0") == "fe80::1"
    assert canonical_ip("FD7A:115C:A1E0:0:0:0:0:1") == "fd7a:115c:a1e0::1"
    assert canonical_ip("100.64.0.1") == "100.64.0.1"
    assert canonical_ip("1.O.33.O") is None
    assert canonical_ip("") is None
    assert canonical_ip("1" * (MAX_IP_TEXT + 1)) is None


def test_the_address_memo_stays_bounded_and_right_past_its_size() -> None:
    """Endless distinct addresses (hostile, or a huge tailnet) empty the memo rather than grow it,
    and every answer stays right across the emptying."""
    texts = [f"fd7a:115c:a1e0::{index >> 16:x}:{index & 0xFFFF:x}" for index in range(3 * MEMO_SIZE)]
    expected = [str(ipaddress.IPv6Address(text)) for text in texts]
    tracemalloc.start()
    try:
        wrong = sum(canonical_ip(text) != want for text, want in zip(texts, expected, strict=True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert wrong == 0
    # A memo of MEMO_SIZE entries holds ~7 MB (their canonical texts and the table); one of all
    # 196,608 would hold ~25 MB.
    assert peak < 12_000_000


_ZONES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=1, max_size=15)
_PORTS = st.integers(min_value=0, max_value=65535)


@given(st.ip_addresses(v=4), _PORTS)
def test_ipv4_addr_port_round_trips(address: ipaddress.IPv4Address, port: int) -> None:
    assert split_addr_port(f"{address}:{port}") == (str(address), port)
    assert split_addr_port(str(address)) == (str(address), None)


@given(st.ip_addresses(v=6), _PORTS, st.none() | _ZONES)
def test_ipv6_addr_port_round_trips_with_and_without_zone(
    address: ipaddress.IPv6Address, port: int, zone: str | None
) -> None:
    text = f"{address}%{zone}" if zone else str(address)
    assert split_addr_port(f"[{text}]:{port}") == (text, port)
    assert split_addr_port(text) == (text, None)
    canonical = canonical_ip(text)
    # The same address, in a form that canonicalises to itself (RFC 5952; IPv4-mapped addresses
    # keep their dotted tail, `::ffff:1.2.3.4`, as Go's netip prints them).
    assert canonical is not None and ipaddress.ip_address(canonical) == address
    assert canonical_ip(canonical) == canonical
    embeds_ipv4 = address.ipv4_mapped is not None or address.packed[:12] == bytes(12)
    if not embeds_ipv4:
        assert canonical == str(address)


@given(st.text(max_size=200))
def test_any_text_splits_without_raising_into_valid_halves(text: str) -> None:
    ip, port = split_addr_port(text)
    assert ip is None or canonical_ip(ip) is not None
    assert port is None or 0 <= port <= 65535


@given(st.text(alphabet="0123456789abcdef:.[]%", max_size=60))
def test_address_like_text_splits_without_raising_into_valid_halves(text: str) -> None:
    ip, port = split_addr_port(text)
    if ip is not None:
        ipaddress.ip_address(ip)
        assert ip in text
    assert port is None or 0 <= port <= 65535


def _reference_ip(host: str, version: int | None = None) -> str | None:
    """`host` if `ipaddress` reads it as an address (of `version`; IPv6 may carry a zone), else None."""
    try:
        address = ipaddress.ip_address(host) if len(host) <= MAX_IP_TEXT else None
    except ValueError:
        return None
    return host if address is not None and version in (None, address.version) else None


def _reference_split(text: str) -> tuple[str | None, int | None]:
    """split_addr_port's documented rules, written plainly with `ipaddress`."""
    if text.startswith("["):  # [ipv6]:port, [ipv6]
        end = text.rfind("]")
        if end < 0:
            return None, None
        host, rest = text[1:end], text[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:  # a bare IPv4 address
            return _reference_ip(text, 4), None
        if ":" in host:  # several colons: IPv6 without a port
            return _reference_ip(text, 6), None
        host = _reference_ip(host, 4) or ""  # a.b.c.d:port
    port = int(port_text) if re.fullmatch(r"[0-9]{1,5}", port_text) else None
    return (_reference_ip(host) if host else None), (port if port is not None and port <= 65_535 else None)


@given(
    st.lists(
        st.sampled_from(["[", "]", ":", "::", "%", ".", "0", "00", "255", "256", "65535", "65536", "eth0", "²", "\x00"])
        | st.ip_addresses().map(str)
        | st.integers(0, 70_000).map(str)
        | st.text(max_size=3),
        max_size=7,
    ).map("".join)
)
@example("::%/")  # found by hypothesis: a zone holding "/"
@example("[fe80::1%eth/0]:22")
def test_compiled_split_matches_a_plain_ipaddress_reading(text: str) -> None:
    assert split_addr_port(text) == _reference_split(text)


def test_split_traffic_slots_writes_each_entrys_slots_and_keeps_reference_counts():
    """The split writes a `TrafficEntry`'s slots in place (app/addresses.pyx): values must read back
    through msgspec, and writing them again and again must neither leak nor free what it replaced."""
    forged = "".join(["6.6.6.", "6"])  # a string of its own, not an interned constant
    entry = TrafficEntry(src="100.64.0.1:443", dst="[FD7A::1%eth0]:53", srcIp=forged, dstPort=1)
    event = NetworkEvent(virtualTraffic=[entry, None], exitTraffic=[TrafficEntry(src="nonsense")])
    keys = ("virtualTraffic", "subnetTraffic", "exitTraffic")
    held = sys.getrefcount(forged)
    found = split_traffic_slots(event, keys)
    assert sys.getrefcount(forged) == held - 1  # let go of once, by the slot it was replaced in
    unset = msgspec.UNSET
    before = sys.getrefcount(unset)
    for _ in range(1_000):
        found = split_traffic_slots(event, keys)
    after = sys.getrefcount(unset)  # (outside the assert, whose rewriting holds what it reads)
    assert after == before  # written 4,000 times into slots that already held it
    assert found == ["100.64.0.1", "fd7a::1"]  # each side's IP, canonical, in the entries' order
    assert (entry.srcIp, entry.srcPort, entry.dstIp, entry.dstPort) == ("100.64.0.1", 443, "FD7A::1%eth0", 53)
    assert msgspec.to_builtins(event.exitTraffic) == [{"src": "nonsense"}]  # srcIp etc. UNSET, not written


def test_split_traffic_slots_refuses_an_entry_of_another_type():
    """Its slots are written by their offsets in `TrafficEntry`: any other object would be corrupted."""

    class Lookalike(msgspec.Struct):
        src: str = "100.64.0.1:1"

    with pytest.raises(TypeError, match="TrafficEntry"):
        split_traffic_slots(NetworkEvent(virtualTraffic=[Lookalike()]), ("virtualTraffic",))  # type: ignore[list-item]


@given(st.lists(st.one_of(st.sampled_from(["100.64.0.1", "100.64.0.10", "fd7a::1", "", "é"]), st.text(max_size=6))))
def test_sorted_unique_is_sorted_set_made_in_place(texts: list[str]) -> None:
    expected = sorted(set(texts))
    assert sorted_unique(texts) is texts
    assert texts == expected
