from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from app.settings import Settings
from tests.samples import concatenated, envelope, network_event
from tests.servers.app import serving


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
