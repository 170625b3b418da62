from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import routes
from app.ingest.pipeline import prepare_request
from app.main import create_app
from app.settings import Settings
from app.storage import Batch
from tests.samples import concatenated, envelope, network_event
from tests.servers.app import serving

WAIT = 10.0


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    with (
        serving(create_app(Settings(data_dir=tmp_path, token="main-token"))) as url,
        httpx.Client(base_url=url) as client,
    ):
        yield client


@pytest.mark.parametrize("path", ["/v1/tailscale/network/", "/services/collector/event/", "/healthz/"])
def test_a_trailing_slash_is_404_never_a_redirect_that_would_carry_the_token_elsewhere(client: httpx.Client, path: str):
    answer = client.post(
        path,
        content=concatenated([envelope(network_event())]),
        headers={"Authorization": "Bearer main-token", "Host": "attacker.example"},
        follow_redirects=False,
    )

    assert answer.status_code in (404, 405)
    assert "location" not in answer.headers


def test_several_authorization_headers_are_401(client: httpx.Client):
    answer = client.post(
        "/v1/tailscale/network",
        content=concatenated([envelope(network_event())]),
        headers=[("Authorization", "Bearer main-token"), ("Authorization", "Bearer main-token")],
    )

    assert answer.status_code == 401 and answer.json()["code"] == 4
    assert "several Authorization headers" in answer.json()["detail"]


class SlowPreparation:
    """`prepare_request` that counts the bodies being prepared at once and can be held at its start."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lock = threading.Lock()
        self.now = self.most = self.started = 0
        self.go = threading.Event()
        self.go.set()
        monkeypatch.setattr(routes, "prepare_request", self)

    def __call__(self, *args: Any) -> Batch:
        with self.lock:
            self.started += 1
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            self.go.wait(WAIT)
            time.sleep(0.02)
            return prepare_request(*args)
        finally:
            with self.lock:
                self.now -= 1


def post_at_once(url: str, count: int) -> list[int]:
    async def post_all() -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=WAIT * 2) as client:
            body = concatenated([envelope(network_event())])
            answers = await asyncio.gather(
                *(
                    client.post("/v1/tailscale/network", content=body, headers={"Authorization": "Bearer main-token"})
                    for _ in range(count)
                )
            )
        return [answer.status_code for answer in answers]

    return asyncio.run(post_all())


@pytest.mark.parametrize("bodies", [1, 3])
def test_a_worker_prepares_processing_concurrency_bodies_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bodies: int
):
    preparation = SlowPreparation(monkeypatch)
    settings = Settings(data_dir=tmp_path, token="main-token", processing_concurrency=bodies)
    with serving(create_app(settings)) as url:
        statuses = post_at_once(url, 12)

    assert statuses == [200] * 12
    assert preparation.most == bodies


def test_readiness_is_answered_while_more_requests_wait_their_turn_than_the_thread_pool_has_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Requests waiting for their turn each hold a thread: from a limiter of their own, not from the 40
    that /readyz shares with the sink runners and the status page."""
    preparation = SlowPreparation(monkeypatch)
    preparation.go.clear()
    app = create_app(Settings(data_dir=tmp_path, token="main-token"))
    with serving(app) as url:
        statuses: list[int] = []
        posting = threading.Thread(target=lambda: statuses.extend(post_at_once(url, 50)))
        posting.start()
        deadline = time.monotonic() + WAIT
        while app.state.inflight < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # for the requests to reach their threads

        ready = httpx.get(f"{url}/readyz", timeout=2)

        preparation.go.set()
        posting.join(WAIT * 2)

    assert ready.status_code == 200
    assert preparation.started == 50 and statuses == [200] * 50
