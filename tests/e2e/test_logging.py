"""End to end: the receiver keeps answering while nobody reads its standard error.

A log collector that stalls (or a pipe nobody drains) stops reading stderr; once the pipe is full
(64 KiB, about 175 access-log lines), a write to it waits. The receiver writes its log lines from a
thread of their own (app/observability.py), so ingest must go on regardless.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from bench.load import free_port
from tests.e2e.conftest import TOKEN
from tests.samples import concatenated, envelope, network_event

NETWORK = concatenated([envelope(network_event())])
REQUESTS = 600
"""About 3.5 pipes' worth of access-log lines."""


class Unread:
    """A receiver whose stderr is a pipe that is read only when the test says so."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._read_end, write_end = os.pipe()
        env = {key: value for key, value in os.environ.items() if not key.startswith("TAILSCRIBE_")}
        command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--data-dir", str(directory / "data"), "--token", TOKEN, "--log-format", "json"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=write_end, env=env)
        os.close(write_end)

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("the receiver did not start")

    def drain(self) -> list[dict[str, object]]:
        """Everything stderr holds once the receiver has exited, as JSON log lines."""
        with os.fdopen(self._read_end, "rb") as pipe:
            return [orjson.loads(line) for line in pipe.read().splitlines() if line.startswith(b"{")]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()


@pytest.fixture
def unread(tmp_path: Path) -> Iterator[Unread]:
    receiver = Unread(tmp_path)
    try:
        receiver.wait_healthy()
        yield receiver
    finally:
        receiver.stop()


def test_ingest_goes_on_while_stderr_is_not_read_and_the_lines_follow_once_it_is(unread: Unread) -> None:
    with httpx.Client(base_url=unread.url, timeout=5, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        statuses = [client.post("/v1/tailscale/network", content=NETWORK).status_code for _ in range(REQUESTS)]
        dropped = client.get("/metrics").text

    assert statuses == [200] * REQUESTS
    assert "tailscribe_log_lines_dropped_total 0.0" in dropped  # queued, not lost: the queue holds 10,000
    unread.process.terminate()  # exits with its lines still queued behind the full pipe
    lines = unread.drain()  # reading lets the writer thread go on; it flushes before the process exits
    assert unread.process.wait(timeout=20) == 0
    posts = [line for line in lines if line.get("msg") == "request" and line.get("method") == "POST"]
    assert len(posts) == REQUESTS
    assert "stopped" in [line["msg"] for line in lines]
    assert str(lines[-1]["msg"]).startswith("Finished server process")  # uvicorn's last word, flushed at exit
