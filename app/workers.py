"""Several worker processes on one port, each accepting its own connections (SO_REUSEPORT).

uvicorn's `--workers` shares one listening socket between the processes, and whichever process's
event loop is idle accepts the next connection. Ours are almost always idle, because the CPU work
runs in worker threads, so one process accepted all 16 connections of the benchmark and the other
sat unused: 4,000 records/s on two cores, one of them idle (bench/RESULTS.md, "one port, two
processes"). Long-lived keep-alive connections, which is what Tailscale's streamer holds, stay
wherever they first landed.

With SO_REUSEPORT every worker listens on a socket of its own bound to the same address, and the
kernel spreads new connections across them by a hash of the connection's addresses. The parent
binds a socket too, to fail fast on a taken port and to resolve port 0, but never listens on it,
so no connection is ever queued there. Each worker re-creates its socket when it is spawned
(`ReusePortSocket.__reduce__`, called when uvicorn hands the parent's socket to a new worker), and a
restarted worker simply binds a new one.
"""

from __future__ import annotations

import logging
import socket

import uvicorn
from uvicorn.supervisors import Multiprocess

logger = logging.getLogger("app.workers")


class ReusePortSocket(socket.socket):
    """A TCP socket bound with SO_REUSEPORT that pickles as "bind another one to this address"."""

    def __reduce__(self) -> tuple[object, tuple[int, tuple[str, int]]]:  # type: ignore[override]
        host, port = self.getsockname()[:2]
        return bind_reuseport, (self.family, (host, port))


def bind_reuseport(family: int, address: tuple[str, int]) -> ReusePortSocket:
    """A new socket bound to `address` in the port's SO_REUSEPORT group; listening is uvicorn's job."""
    sock = ReusePortSocket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.set_inheritable(True)
    return sock


def run_workers(config: uvicorn.Config) -> None:
    """Serve `config` with `config.workers` processes, each with its own listening socket."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = bind_reuseport(family, (config.host, config.port))
    host, port = sock.getsockname()[:2]
    scheme = "https" if config.is_ssl else "http"
    logger.info("listening on %s://%s:%d with %d worker processes", scheme, host, port, config.workers)
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
