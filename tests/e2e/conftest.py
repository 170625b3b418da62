"""A real `tailscribe serve` in a subprocess on 127.0.0.1 and a random port, one per test."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import trustme
from prometheus_client.parser import text_string_to_metric_families

from bench.load import free_port, listening_inodes

TOKEN = "e2e-test-token-0123456789abcdef"


def _is_python(pid: int) -> bool:
    """uvicorn's workers, not multiprocessing's resource tracker or other helpers."""
    try:
        return b"multiprocessing.resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class Server:
    """One receiver process: its URL, data directory and captured log output."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        env: dict[str, str],
        args: list[str],
        https_ca: str | None = None,
        port: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = port or free_port()
        self.url = f"{'https' if https_ca else 'http'}://127.0.0.1:{self.port}"
        self.verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=https_ca) if https_ca else True
        self._env = env
        self._args = args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, "--data-dir", str(self.data_dir), *self._args], stdout=log, stderr=log, env=self._env
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                answered = httpx.get(f"{self.url}/healthz", timeout=0.5, verify=self.verify).status_code == 200
            except httpx.TransportError:
                answered = False
            # Every worker listens on its own socket (app/workers.py): wait for all, or the first
            # connections would all go to the first worker up.
            if answered and len(listening_inodes(self.port)) >= self.workers:
                return
            time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log_path.read_text()}")

    @property
    def workers(self) -> int:
        return int(self._args[self._args.index("--workers") + 1]) if "--workers" in self._args else 1

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(child) for child in children if _is_python(int(child))]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=15)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include `labels` (0 when there are none)."""
        text = httpx.get(f"{self.url}/metrics", verify=self.verify).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    total += sample.value
        return total

    def drained(self, sink: str = "archive", timeout: float = 20) -> None:
        """Wait until `sink` has delivered every accepted row (sinks run behind the 2xx)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            accepted = self.metric("tailscribe_records_total", outcome="accepted")
            delivered = self.metric("tailscribe_sink_rows_total", sink=sink)
            if delivered >= accepted and self.metric("tailscribe_sink_lag_records", sink=sink) == 0:
                return
            time.sleep(0.05)
        raise AssertionError(f"sink {sink} did not catch up within {timeout} s:\n{self.logs()[-3000:]}")

    def archive_rows(self, log_type: str | None = None) -> list[dict[str, object]]:
        """Archived rows, once the archive sink has caught up (when the server is running)."""
        if self.running():
            self.drained()
        pattern = f"log_type={log_type}/**/*.ndjson" if log_type else "**/*.ndjson"
        return _rows(sorted((self.data_dir / "archive").glob(pattern)))

    def quarantine_rows(self) -> list[dict[str, object]]:
        return _rows(sorted((self.data_dir / "quarantine" / "records").glob("**/*.ndjson")))

    def quarantined_bodies(self) -> list[Path]:
        return sorted((self.data_dir / "quarantine" / "bodies").glob("**/*.body"))


def _rows(paths: list[Path]) -> list[dict[str, object]]:
    return [orjson.loads(line) for path in paths for line in path.read_bytes().splitlines()]


MakeServer = Callable[..., Server]


def tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A certificate for 127.0.0.1, its key, and the test CA that signed it (trustme), as PEM files."""
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    cert, key, ca = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    certificate.private_key_pem.write_to_path(str(key))
    certificate.cert_chain_pems[0].write_to_path(str(cert))
    authority.cert_pem.write_to_path(str(ca))
    return cert, key, ca


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[MakeServer]:
    """Factory: `make_server(*cli_args, env={...})` starts a server; all are stopped afterwards."""
    servers: list[Server] = []

    def factory(
        *args: str, env: dict[str, str] | None = None, token: str | None = TOKEN, https_ca: str | None = None
    ) -> Server:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("TAILSCRIBE_")}
        full_env.update(env or {})
        token_args = ["--token", token] if token else []
        log = tmp_path / f"server-{len(servers)}.log"
        server = Server(tmp_path / "data", log, full_env, [*token_args, *args], https_ca=https_ca)
        servers.append(server)
        server.start()
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: MakeServer) -> Server:
    return make_server()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
        yield http
