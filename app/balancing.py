"""Keeping each worker's share of the port's connections even, by asking the extra ones to reconnect.

With several workers each listens on a socket of its own (`app.workers`), and the kernel hands each
new connection to one of them by a hash of its addresses: a fair coin per connection, blind to load.
Keep-alive connections then stay where they landed for hours. Sixteen connections split anywhere
from 8/8 to 14/2 between two workers in the benchmark, and two streams (a tailnet's audit and
network logs) share one worker half the time while the other idles. At a steady load that one
worker must carry all of it: at 9,000 records/s (70% of two workers' peak), p99 was 79 ms with 8/8
and 707 ms with 14/2 (bench/RESULTS.md, "Connections spread over workers").

So a worker holding more than its share of the port's established connections (their number over
the workers', rounded up) closes the extra ones, one response at a time: the response to a request
goes out with `Connection: close` and the connection is closed after it, as uvicorn does on
shutdown. The client reconnects, and the kernel hashes the new connection afresh; half the time it
lands elsewhere, and the next check sheds again until the split is even. Only whole exchanges end
this way: the request was stored and answered before the close, so nothing is lost or repeated.
This is how least-connection balancers (nginx `least_conn`, HAProxy `leastconn`) spread load,
applied after the fact since the kernel picks first.

The count comes from the kernel (established sockets on the port), so workers share no state and
one that died counts for nothing. It is read only by a worker holding two connections or more (one
connection is never more than a share), on the event loop, so it must be quick (`tcp_sockets`) and
rare: at most every `CHECK_INTERVAL` seconds while connections come and go or this worker holds too
many, and ever less often, up to `QUIET_INTERVAL`, while neither happens. A count walks the kernel's
whole table of connections, 1.2 ms of CPU a family on this project's machine (262,144 buckets for
24 GiB), so counting twice a second at peak, and both families, took 1-2% of the receiver's CPU.
A steady stream (Tailscale's streamer keeps its connections for hours) changes nothing to count.
"""

from __future__ import annotations

import math
import os
import socket
import struct
from typing import Final, NamedTuple

ESTABLISHED: Final = 0x01
LISTEN: Final = 0x0A
ALL_STATES: Final = 0xFFF
CHECK_INTERVAL: Final = 0.5
"""Seconds between two counts while the split may be moving: an imbalance of k extra connections
halves about every count."""
QUIET_INTERVAL: Final = 8.0
"""The longest wait between two counts, reached by doubling from `CHECK_INTERVAL` while every count finds
this worker within its share and none of its connections opens or closes. A connection that lands
here or leaves resets the wait, so a worker that restarts (and a sibling that sheds connections onto
this one) is seen within `CHECK_INTERVAL`; a sibling losing all its connections, the one change this
worker has no sign of, within `QUIET_INTERVAL`."""

FAMILIES: Final = (socket.AF_INET, socket.AF_INET6)
"""Dumped one after the other; a family the kernel lacks (IPv6 disabled) is skipped."""

# The sock_diag netlink protocol (linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h), as `ss` speaks it.
NETLINK_SOCK_DIAG: Final = 4
SOCK_DIAG_BY_FAMILY: Final = 20
NLM_F_REQUEST_DUMP: Final = 0x1 | 0x300
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
INET_DIAG_REQ_BYTECODE: Final = 1
INET_DIAG_BC_S_GE: Final = 2
INET_DIAG_BC_S_LE: Final = 3
_NLMSGHDR: Final = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_REQUEST: Final = struct.Struct("=BBBBI48x")  # inet_diag_req_v2: family, protocol, ext, pad, states, any socket id
_ATTRIBUTE: Final = struct.Struct("=HH")  # rtattr: length, type
_PORT_FILTER: Final = struct.Struct("=BBHBBHBBHBBH")
"""Two port comparisons (inet_diag_bc_op: code, yes, no; the port in a second op's `no`): local port
>= p, then <= p. A comparison that holds steps 8 bytes on, to the next one or exactly to the end,
which accepts the socket; one that fails jumps 4 bytes past the end, which rejects it."""
_DIAG_MSG: Final = struct.Struct("=xBxx2x2s60xI")  # inet_diag_msg: state, remote port, inode


class TcpSocket(NamedTuple):
    """One TCP socket whose local port is the one asked about."""

    remote_port: int
    state: int
    inode: int
    """0 for a connection still waiting in a listening socket's queue, not yet accepted."""


def tcp_sockets(port: int, states: int = ALL_STATES, families: tuple[int, ...] | None = None) -> list[TcpSocket]:
    """Every TCP socket of `families` (IPv4 and IPv6 unless told) in this network namespace with local
    port `port` in `states` (a mask of 1 << state), by asking the kernel over netlink (sock_diag, Linux
    only; elsewhere none).

    Not /proc/net/tcp: reading it walks the kernel's whole established-socket table a few entries at
    a time, 4.3 ms of CPU per file on this project's machine (262,144 buckets for 24 GiB), which was a
    stall of the worker's event loop twice a second and 1.6% of the receiver's CPU under load. A dump
    filtered by port in the kernel, as `ss sport = :p` asks it, took 0.27 ms a family there then and
    1.2 ms on 2026-12-06: the kernel walks the same table, but in one loop that skips empty buckets.
    Both families share that table, so each family asked for is a walk of it. pyroute2 would speak the
    protocol for us, but it is 5 MB, takes 0.2 s to import in every worker, and has no port filter,
    where this is one fixed request and fixed-size answers.
    """
    found: list[TcpSocket] = []
    try:
        diag = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
    except (AttributeError, OSError):  # not Linux, or a kernel without sock_diag
        return found
    bytecode = _PORT_FILTER.pack(INET_DIAG_BC_S_GE, 8, 20, 0, 0, port, INET_DIAG_BC_S_LE, 8, 12, 0, 0, port)
    attribute = _ATTRIBUTE.pack(_ATTRIBUTE.size + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
    with diag:
        for family in FAMILIES if families is None else families:
            request = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, states) + attribute
            header = _NLMSGHDR.pack(_NLMSGHDR.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST_DUMP, family, 0)
            try:
                diag.send(header + request)
                found += _answers(diag)
            except OSError:  # no such family in this kernel or namespace (IPv6 disabled)
                continue
    return found


def _answers(diag: socket.socket) -> list[TcpSocket]:
    """The sockets of one dump: its messages until NLMSG_DONE, or the error the kernel answered."""
    found: list[TcpSocket] = []
    while True:
        data = diag.recv(65536)
        offset = 0
        while offset < len(data):
            length, kind = _NLMSGHDR.unpack_from(data, offset)[:2]
            if kind == NLMSG_DONE:
                return found
            if kind == NLMSG_ERROR:
                error = -struct.unpack_from("=i", data, offset + _NLMSGHDR.size)[0]
                raise OSError(error, os.strerror(error))
            state, remote, inode = _DIAG_MSG.unpack_from(data, offset + _NLMSGHDR.size)
            found.append(TcpSocket(int.from_bytes(remote, "big"), state, inode))
            offset += (length + 3) & ~3


def established_connections(port: int, families: tuple[int, ...] | None = None) -> int:
    return len(tcp_sockets(port, 1 << ESTABLISHED, families))


class ConnectionBalancer:
    """One worker's view: the connections it holds, and how many of them to close next."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.held = 0
        self.port = 0
        self.families: tuple[int, ...] | None = None
        """The family of this worker's connections: every worker listens on the same address, so
        the port's connections are all of it (an IPv4 client of a `::` listener is an IPv6 socket)."""
        self._counted = 0.0
        self._wait = CHECK_INTERVAL
        self._next_check = 0.0
        self._excess = 0

    def opened(self, port: int, family: int | None = None) -> None:
        self.held += 1
        self.port = port
        self.families = None if family is None else (family,)
        self._changed()

    def closed(self) -> None:
        self.held -= 1
        self._changed()

    def _changed(self) -> None:
        """A connection came or went: count again at most `CHECK_INTERVAL` after the last count."""
        self._wait = CHECK_INTERVAL
        self._next_check = min(self._next_check, self._counted + CHECK_INTERVAL)

    def should_close(self, now: float) -> bool:
        """Whether the connection whose request just arrived should close after answering it."""
        if self.held < 2:
            return False
        if now >= self._next_check:
            total = established_connections(self.port, self.families)
            # Fewer than this worker holds: no count to read (not Linux), so none to act on.
            self._excess = self.held - math.ceil(total / self.workers) if total >= self.held else 0
            if self._excess > 0:
                self._wait = CHECK_INTERVAL
            else:
                self._wait = min(self._wait * 2, QUIET_INTERVAL)
            self._counted, self._next_check = now, now + self._wait
        if self._excess > 0:
            self._excess -= 1
            return True
        return False
