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

The count comes from the kernel (/proc/net/tcp and tcp6: established sockets on the port), so
workers share no state and one that died counts for nothing. It is read at most every
`CHECK_INTERVAL` seconds and only by a worker holding two connections or more (one connection is
never more than a share), on the event loop: a few dozen lines of text on a receiver's host.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Final, NamedTuple

TCP_TABLES: Final = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
ESTABLISHED: Final = 0x01
LISTEN: Final = 0x0A
CHECK_INTERVAL: Final = 0.5
"""Seconds between two counts: an imbalance of k extra connections halves about every count."""


class TcpSocket(NamedTuple):
    """One row of /proc/net/tcp{,6}: a socket whose local port is the one asked about."""

    remote_port: int
    state: int
    inode: int
    """0 for a connection still waiting in a listening socket's queue, not yet accepted."""


def tcp_sockets(port: int) -> list[TcpSocket]:
    """Every IPv4 and IPv6 TCP socket of this network namespace with local port `port` (Linux only)."""
    suffix = f":{port:04X}"
    found = []
    for table in TCP_TABLES:
        try:
            lines = table.read_text().splitlines()[1:]
        except FileNotFoundError:  # no IPv6 in this kernel or namespace
            continue
        for line in lines:
            # sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
            fields = line.split()
            if fields[1].endswith(suffix):
                found.append(TcpSocket(int(fields[2].rsplit(":", 1)[1], 16), int(fields[3], 16), int(fields[9])))
    return found


def established_connections(port: int) -> int:
    return sum(1 for entry in tcp_sockets(port) if entry.state == ESTABLISHED)


class ConnectionBalancer:
    """One worker's view: the connections it holds, and how many of them to close next."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.held = 0
        self.port = 0
        self._next_check = 0.0
        self._excess = 0

    def opened(self, port: int) -> None:
        self.held += 1
        self.port = port

    def closed(self) -> None:
        self.held -= 1

    def should_close(self, now: float) -> bool:
        """Whether the connection whose request just arrived should close after answering it."""
        if self.held < 2:
            return False
        if now >= self._next_check:
            self._next_check = now + CHECK_INTERVAL
            total = established_connections(self.port)
            # Fewer than this worker holds: no /proc to read (not Linux), so no count to act on.
            self._excess = self.held - math.ceil(total / self.workers) if total >= self.held else 0
        if self._excess > 0:
            self._excess -= 1
            return True
        return False
