"""Running a receiver and loading it: processes, wrk and hey, and what /proc says about their cost.

Every server binds 127.0.0.1 on a free port; every load run is bounded in time and stops by itself.
wrk (closed loop, `bench/post.lua`) finds peak throughput; hey's per-worker rate limit (`-q`)
gives latency at a chosen fraction of that peak.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx

from app.balancing import ESTABLISHED, LISTEN, tcp_sockets

TOKEN: Final = "bench-token-0123456789"
LUA: Final = Path(__file__).with_name("post.lua")
REPOSITORY: Final = Path(__file__).parent.parent
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def listening_inodes(port: int) -> set[int]:
    """Inodes of the TCP sockets listening on `port`: one per worker with SO_REUSEPORT (app/workers.py).

    The e2e tests use it too."""
    return {entry.inode for entry in tcp_sockets(port, 1 << LISTEN)}


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process `pid` holds open; with `tcp_sockets`, which process holds which
    connection. The e2e tests use it too."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Receiver:
    """One receiver process tree (uvicorn parent and its workers) serving on 127.0.0.1."""

    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tailscribe-bench-")))
    process: subprocess.Popen[bytes] | None = None
    listeners: int = 1
    """Listening sockets to wait for: one per worker with SO_REUSEPORT (app/workers.py). A load run
    started while only the first worker listens would keep all its connections on that worker."""
    cwd: Path = REPOSITORY
    """Where the command runs, hence which `app` package `python -m app.cli` imports (bench/compare.py)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/tailscale/network"

    def start(self) -> None:
        command = [part.format(port=self.port, workdir=self.workdir) for part in self.command]
        env = {**os.environ, "TOKEN": TOKEN, "NAIVE_OUTPUT": str(self.workdir / "naive.ndjson"), **self.env}
        self.process = subprocess.Popen(
            command, cwd=self.cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.post(self.url, content=b"", timeout=1)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            if len(listening_inodes(self.port)) >= self.listeners:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start: {command}")

    def pids(self) -> list[int]:
        """The parent and every descendant (uvicorn's workers)."""
        assert self.process is not None
        found, queue = [], [self.process.pid]
        while queue:
            pid = queue.pop()
            found.append(pid)
            children = Path(f"/proc/{pid}/task/{pid}/children")
            if children.exists():
                queue += [int(child) for child in children.read_text().split()]
        return found

    def _stat_fields(self) -> list[list[str]]:
        """/proc/<pid>/stat of each process of the tree, from field 3 (state) on: proc(5) numbers
        fields from 1, so field n is at index n - 3."""
        found = []
        for pid in self.pids():
            try:
                found.append(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split())
            except FileNotFoundError:
                continue
        return found

    def cpu_seconds(self) -> float:
        return sum(int(fields[11]) + int(fields[12]) for fields in self._stat_fields()) / CLOCK_TICKS  # utime, stime

    def minor_faults(self) -> int:
        """Page faults served without disk (minflt): fresh memory touched, each a few µs on this VM."""
        return sum(int(fields[7]) for fields in self._stat_fields())

    def connection_split(self) -> str:
        """Established connections per process, most first (`16`, `9/7`, `8/8`): how the kernel and
        the receiver spread the load's connections over the workers, which sets how much of the
        machine a receiver can use (uvicorn's workers share one socket and may leave one idle)."""
        inodes = {entry.inode for entry in tcp_sockets(self.port, 1 << ESTABLISHED)}
        held = [len(socket_inodes(pid) & inodes) for pid in self.pids()]
        return "/".join(str(count) for count in sorted(held, reverse=True) if count) or "0"

    def peak_rss_mb(self) -> float:
        """The largest peak resident set (VmHWM) of any one process of the tree, in MB."""
        peaks = []
        for pid in self.pids():
            status = Path(f"/proc/{pid}/status")
            if status.exists() and (match := re.search(r"VmHWM:\s+(\d+) kB", status.read_text())):
                peaks.append(int(match[1]) / 1024)
        return max(peaks, default=0.0)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def tailscribe(workers: int, *, pinned: bool = False) -> Receiver:
    """tailscribe as shipped, or with `pin_workers` (a worker per CPU, each pinned to its own)."""
    return Receiver(
        f"tailscribe ({workers} worker{'s' if workers > 1 else ''}{', pinned' if pinned else ''})",
        [sys.executable, "-m", "app.cli", "serve", "--port", "{port}", "--data-dir", "{workdir}/data"]
        + ["--token", TOKEN, "--workers", str(workers), "--log-level", "warning"]
        + (["--pin-workers", "true"] if pinned else []),
        listeners=workers,
    )


def uvicorn_app(name: str, target: str, workers: int) -> Receiver:
    return Receiver(
        name,
        [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", "{port}"]
        + [
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
    )


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def wrk(url: str, body: bytes, *, encoding: str | None, seconds: int, connections: int) -> LoadResult:
    """Closed-loop peak load: `connections` clients posting `body` back to back for `seconds`."""
    with tempfile.NamedTemporaryFile(suffix=".body") as file:
        file.write(body)
        file.flush()
        env = {**os.environ, "BODY_FILE": file.name, "TOKEN": TOKEN, "CONTENT_ENCODING": encoding or ""}
        command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "-s", str(LUA), url]
        output = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60).stdout
    summary = json.loads(output.strip().splitlines()[-1])
    return LoadResult(
        requests=summary["requests"] - summary["status_errors"],
        seconds=summary["duration_us"] / 1e6,
        errors=summary["status_errors"] + summary["socket_errors"],
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        max_ms=summary["max_us"] / 1000,
    )


def hey(url: str, body: bytes, *, encoding: str | None, seconds: int, clients: int, rate: float) -> LoadResult:
    """Open-loop load: `clients` independent clients, each sending `rate` requests a second.

    One hey process per client, their starts spread evenly over one period (1 / rate). A single
    `hey -c N -q rate` ticks all N clients at the same instant, so every period began with a burst
    of N simultaneous requests: its latency measured that burst, not a load of N clients. The
    per-request times of all processes (`-o csv`) are merged into one distribution.
    """
    with tempfile.NamedTemporaryFile(suffix=".body") as file:
        file.write(body)
        file.flush()
        command = ["hey", "-z", f"{seconds}s", "-c", "1", "-q", f"{max(rate, 0.01):.3f}", "-m", "POST", "-o", "csv"]
        command += ["-D", file.name, "-H", f"Authorization: Bearer {TOKEN}", "-t", "30"]
        if encoding:
            command += ["-H", f"Content-Encoding: {encoding}"]
        processes = []
        for _ in range(clients):
            processes.append(subprocess.Popen([*command, url], stdout=subprocess.PIPE, text=True))
            time.sleep(1 / max(rate, 0.01) / clients)
        outputs = [process.communicate(timeout=seconds + 90)[0] for process in processes]
    times, errors = [], 0
    for output in outputs:
        for line in output.splitlines()[1:]:  # response-time,DNS+dialup,...,status-code,offset
            fields = line.split(",")
            if len(fields) >= 7 and fields[6] == "200":
                times.append(float(fields[0]) * 1000)
            else:
                errors += 1
    times.sort()

    def percentile(fraction: float) -> float:
        return times[min(len(times) - 1, int(fraction * len(times)))] if times else float("nan")

    slowest = max(times, default=float("nan"))
    return LoadResult(len(times), float(seconds), errors, percentile(0.5), percentile(0.99), slowest)
