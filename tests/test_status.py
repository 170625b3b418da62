from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request

from app import __version__
from app.errors import StorageUnavailable
from app.journal import Journal
from app.settings import Settings
from app.status import (
    SECURITY_HEADERS,
    UNKNOWN_SOURCE,
    WINDOW_MINUTES,
    StatusBoard,
    duration,
    record_outcome,
    router,
    sources_of,
)
from app.storage.local import LocalStorage
from tests.servers.app import serving

T0 = 1_780_500_000.0  # a whole minute: 2026-06-03T15:20:00Z


class Clock:
    """A settable stand-in for `time.time`."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(board: StatusBoard, *, accepted: int = 0, quarantined: int = 0, log_type: str | None = "network") -> None:
    board.record(source_id="default", log_type=log_type, accepted=accepted, quarantined=quarantined, status=200)


def test_counts_of_the_last_hour_are_summed_per_minute():
    clock = Clock()
    board = StatusBoard(clock=clock)
    record(board, accepted=5, quarantined=1)
    clock.now += 30
    record(board, accepted=2)
    clock.now += 60
    record(board, accepted=3, quarantined=2)

    snapshot = board.snapshot()

    assert (snapshot.accepted_last_hour, snapshot.quarantined_last_hour) == (10, 3)
    assert len(snapshot.per_minute) == WINDOW_MINUTES
    assert snapshot.per_minute[-2:] == [(7, 1), (3, 2)]


def test_a_minute_expires_sixty_minutes_later():
    clock = Clock()
    board = StatusBoard(clock=clock)
    record(board, accepted=5, quarantined=1)

    clock.now = T0 + 59 * 60 + 59
    assert board.snapshot().accepted_last_hour == 5
    assert board.snapshot().per_minute[0] == (5, 1)

    clock.now = T0 + 60 * 60
    assert (board.snapshot().accepted_last_hour, board.snapshot().quarantined_last_hour) == (0, 0)


def test_a_reused_ring_slot_starts_from_zero():
    clock = Clock()
    board = StatusBoard(clock=clock)
    record(board, accepted=5)
    clock.now += 60 * 60  # the same slot of the ring, one hour later
    record(board, accepted=1)

    snapshot = board.snapshot()

    assert snapshot.accepted_last_hour == 1
    assert snapshot.per_minute[-1] == (1, 0)


def test_after_a_long_silence_nothing_is_left():
    clock = Clock()
    board = StatusBoard(clock=clock)
    for _ in range(120):
        record(board, accepted=1)
        clock.now += 60

    clock.now += 3 * 3600

    assert board.snapshot().per_minute == [(0, 0)] * WINDOW_MINUTES


def test_last_request_is_kept_per_source_and_log_type():
    clock = Clock()
    board = StatusBoard(clock=clock)
    board.record(source_id="default", log_type="audit", accepted=1, quarantined=0, status=200)
    clock.now += 10
    board.record(source_id="default", log_type="network", accepted=1, quarantined=0, status=200)
    clock.now += 10
    board.record(source_id="default", log_type="audit", accepted=0, quarantined=0, status=503)
    board.record(source_id="other", log_type=None, accepted=2, quarantined=0, status=200)

    last = board.snapshot().last_requests

    assert set(last) == {("default", "audit"), ("default", "network"), ("other", None)}
    assert (last[("default", "audit")].status, last[("default", "audit")].at) == (503, T0 + 20)
    assert (last[("default", "network")].status, last[("default", "network")].at) == (200, T0 + 10)


def test_snapshot_knows_when_the_board_started():
    clock = Clock()
    board = StatusBoard(clock=clock)
    clock.now += 3725

    snapshot = board.snapshot()

    assert (snapshot.started_at, snapshot.taken_at) == (T0, T0 + 3725)
    assert duration(snapshot.taken_at - snapshot.started_at) == "1 h 2 min"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (42.9, "42 s"),
        (300, "5 min"),
        (303, "5 min 3 s"),
        (3600, "1 h"),
        (2 * 86400 + 4 * 3600 + 5, "2 d 4 h"),
    ],
)
def test_durations_show_at_most_two_units(seconds: float, text: str):
    assert duration(seconds) == text


def test_the_default_source_is_the_one_source_today():
    settings = Settings(token="t", source_id="corp", source_label="Corp tailnet")

    assert sources_of(settings) == [("corp", "Corp tailnet", ["audit", "network"])]


# The rendered page, served by a small app of just this router.


@pytest.fixture
def board() -> StatusBoard:
    return StatusBoard()


@pytest.fixture
def app(tmp_path: Path, board: StatusBoard) -> FastAPI:
    app = FastAPI()
    app.include_router(router)
    app.state.settings = Settings(
        token="secret-token-value", data_dir=tmp_path, source_id="corp", source_label="<script>alert(1)</script>"
    )
    app.state.status = board
    app.state.storage = LocalStorage(tmp_path, Journal(tmp_path / "journal", segment_bytes=1 << 20, max_bytes=1 << 30))
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[httpx.Client]:
    with serving(app) as url, httpx.Client(base_url=url) as client:
        yield client


def test_page_is_html_with_security_headers(client: httpx.Client):
    answer = client.get("/")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers[name] == value
    assert answer.headers["content-security-policy"] == "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    assert answer.text.startswith("<!doctype html>")


def test_page_escapes_the_source_label_and_never_shows_a_token(client: httpx.Client):
    page = client.get("/").text

    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "secret-token-value" not in page


def test_page_loads_nothing_from_elsewhere(client: httpx.Client):
    page = client.get("/").text

    assert "<script" not in page
    assert "<link" not in page
    assert "http://" not in page and "https://" not in page
    assert "@import" not in page and "url(" not in page


def test_page_shows_version_counts_last_requests_storage_and_links(
    client: httpx.Client, board: StatusBoard, tmp_path: Path
):
    board.record(source_id="corp", log_type="network", accepted=1234, quarantined=2, status=200)
    board.record(source_id="corp", log_type="audit", accepted=0, quarantined=0, status=401)

    page = client.get("/").text

    assert __version__ in page
    assert '<div class="value" id="accepted">1,234</div>' in page
    assert '<div class="value" id="quarantined">2</div>' in page
    assert "200 OK" in page and "401 Unauthorized" in page
    assert "any (HEC)" in page and "never" in page  # the HEC route has not been used
    assert "writable" in page
    assert str(tmp_path) in page
    for path in ("/metrics", "/healthz", "/readyz"):
        assert f'href="{path}"' in page


def test_page_shows_why_storage_is_unavailable(client: httpx.Client, app: FastAPI):
    class BrokenStorage(LocalStorage):
        def check_writable(self) -> None:
            raise StorageUnavailable("the data directory is not writable: <Read-only file system>")

    app.state.storage = BrokenStorage(app.state.settings.data_dir, app.state.storage.journal)

    page = client.get("/").text

    assert "unavailable" in page
    assert "the data directory is not writable: &lt;Read-only file system&gt;" in page


def test_page_escapes_source_ids_and_log_types_it_did_not_configure(client: httpx.Client, board: StatusBoard):
    board.record(source_id='"><img src=x>', log_type="<b>", accepted=1, quarantined=0, status=599)

    page = client.get("/").text

    assert "<img" not in page and "<b>" not in page
    assert "&quot;&gt;&lt;img src=x&gt;" in page
    assert "599" in page


def test_record_outcome_reads_what_the_handler_left_in_request_state(app: FastAPI, board: StatusBoard):
    @app.post("/ingest")
    async def ingest_stub(request: Request) -> dict[str, str]:
        request.state.source_id = "corp"
        request.state.log_type = "audit"
        request.state.accepted = 3
        request.state.quarantined = 1
        record_outcome(request, status=200)
        return {}

    @app.post("/refused")
    async def refused_stub(request: Request) -> dict[str, str]:
        record_outcome(request, status=401)  # before the token was checked: no source, no counts
        return {}

    with serving(app) as url, httpx.Client(base_url=url) as client:
        client.post("/ingest")
        client.post("/refused")

    snapshot = board.snapshot()
    assert (snapshot.accepted_last_hour, snapshot.quarantined_last_hour) == (3, 1)
    assert snapshot.last_requests[("corp", "audit")].status == 200
    assert snapshot.last_requests[(UNKNOWN_SOURCE, None)].status == 401
