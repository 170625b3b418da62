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

With `pin_workers` and a worker for every CPU the process may run on, each worker is also pinned to
a CPU of its own (`pin_worker`). Left to the scheduler, a worker's threads (event loop, body
processing, sinks) and the kernel's work for its sockets and files wander between CPUs. On the
2-core benchmark machine, pinned workers were faster at peak in 17 of 19 interleaved pairs (median
+14%, from -8% to +35%; bench/RESULTS.md, "Pinned workers"). At a fixed load their p99 was no
better, and 2 of 16 pinned rounds had a stall of 0.7 and 2.3 s that no unpinned round had: a pinned
worker cannot move off a CPU the hypervisor or another process holds. That trade is the operator's to
make, so pinning is off by default. With fewer workers than CPUs nothing is pinned even when asked:
the scheduler then spreads them over whichever CPUs are idle, which a fixed choice could not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from uvicorn.supervisors import Multiprocess

from app.storage.files import ensure_dir, try_lock

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


@dataclass(frozen=True, slots=True)
class CpuPin:
    """This process's claim on one CPU: a lock on `<directory>/cpu-<n>.lock`, held until `release`."""

    cpu: int
    fd: int

    def release(self) -> None:
        os.close(self.fd)


def pin_worker(workers: int, directory: Path) -> CpuPin | None:
    """Pin this worker process, every thread it has and will start, to a CPU no sibling holds.

    Only when `workers` cover every CPU the process may run on (`sched_getaffinity`, so a container's
    cpuset counts, not the host's CPUs), and only on Linux. CPUs are claimed with a lock file each in
    `directory`, not chosen by the journal slot's number: a worker restarted after a crash gets the
    CPU its predecessor held, and two live workers never share one. A worker beyond the CPUs' count
    stays unpinned. Returns None when nothing was pinned.
    """
    if workers < 2 or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if workers < len(cpus):
        return None
    ensure_dir(directory)
    for cpu in cpus:
        fd = try_lock(directory / f"cpu-{cpu}.lock")
        if fd is not None:
            for thread in os.listdir("/proc/self/task"):  # threads started later inherit the mask
                with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile needs none
                    os.sched_setaffinity(int(thread), {cpu})
            return CpuPin(cpu, fd)
    return None
