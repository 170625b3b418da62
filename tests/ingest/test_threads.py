"""app/ingest/threads.py: bodies prepared in order and answered only once durable, with shared fsyncs.

Each test runs `IngestThreads` on its own event loop against a real journal and quarantine in a
temporary directory; only `os.fdatasync` is wrapped, to count, slow down or fail the syncs.
"""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from app.errors import FramingError, StorageUnavailable
from app.ingest import threads as threads_module
from app.ingest.pipeline import RequestContext, prepare_request
from app.ingest.threads import IngestThreads
from app.journal import Journal, JournalFull
from app.settings import Settings
from app.storage import Batch
from app.storage.local import LocalStorage
from tests.samples import concatenated, envelope, network_event


def context(number: int) -> RequestContext:
    return RequestContext(request_id=f"r{number}", log_type="network", source_id="s", source_label="l")


def body(records: int = 1) -> io.BytesIO:
    return io.BytesIO(concatenated([envelope(network_event()) for _ in range(records)]))


def run(
    tmp_path: Path, test: Callable[[IngestThreads, Journal, LocalStorage], Awaitable[None]], **settings: Any
) -> None:
    """`test(threads, journal, storage)` on a fresh loop, with storage in `tmp_path`."""
    journal = Journal(tmp_path / "journal", segment_bytes=1 << 20, max_bytes=settings.pop("max_bytes", 1 << 30))
    threads = IngestThreads(Settings(data_dir=tmp_path, token="t", **settings))

    async def main() -> None:
        threads.start()
        try:
            await test(threads, journal, LocalStorage(tmp_path, journal))
        finally:
            await threads.stop()

    try:
        asyncio.run(main())
    finally:
        journal.close()


class Recorder:
    """`prepare_request` that records the order bodies reach it and can hold them at its start."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.order: list[str] = []
        self.go = threading.Event()
        self.go.set()
        monkeypatch.setattr(threads_module, "prepare_request", self)

    def __call__(self, raw: bytes, ctx: RequestContext, *args: Any) -> Batch:
        self.go.wait(10)
        self.order.append(ctx.request_id)
        return prepare_request(raw, ctx, *args)


def test_bodies_are_prepared_in_the_order_they_were_submitted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    recorder = Recorder(monkeypatch)
    recorder.go.clear()

    async def test(threads: IngestThreads, journal: Journal, storage: LocalStorage) -> None:
        futures = [threads.submit(body(), context(number), storage) for number in range(20)]
        recorder.go.set()
        batches = await asyncio.gather(*futures)
        assert [batch.accepted for batch in batches] == [1] * 20

    run(tmp_path, test)

    assert recorder.order == [f"r{number}" for number in range(20)]


def test_an_answer_comes_only_once_its_rows_are_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    real_fdatasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (time.sleep(0.05), real_fdatasync(fd)))

    async def test(threads: IngestThreads, journal: Journal, storage: LocalStorage) -> None:
        for number in range(5):
            batch = await threads.submit(body(3), context(number), storage)
            assert batch.accepted == 3
            assert journal.durable_end.seq == 3 * (number + 1)

    run(tmp_path, test)


def test_batches_prepared_while_a_sync_runs_share_the_next_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    syncs: list[float] = []
    real_fdatasync = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        syncs.append(time.monotonic())
        time.sleep(0.2)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)

    async def test(threads: IngestThreads, journal: Journal, storage: LocalStorage) -> None:
        batches = await asyncio.gather(*(threads.submit(body(), context(number), storage) for number in range(30)))
        assert sum(batch.accepted for batch in batches) == 30 == journal.durable_end.seq

    run(tmp_path, test)

    assert 1 <= len(syncs) <= 3  # 30 requests, one write each: every sync after the first covers many


def test_a_failed_sync_fails_every_request_it_was_to_cover_and_the_next_ones_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    real_fdatasync = os.fdatasync
    failing = threading.Event()

    def fdatasync(fd: int) -> None:
        if failing.is_set():
            raise OSError(5, "Input/output error")
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)

    async def test(threads: IngestThreads, journal: Journal, storage: LocalStorage) -> None:
        failing.set()
        outcomes = await asyncio.gather(
            *(threads.submit(body(), context(number), storage) for number in range(8)), return_exceptions=True
        )
        assert all(isinstance(outcome, StorageUnavailable) for outcome in outcomes)
        assert journal.durable_end.seq == 0

        failing.clear()
        assert (await threads.submit(body(2), context(9), storage)).accepted == 2
        assert journal.durable_end.seq == 2

    run(tmp_path, test)


def test_a_body_that_fails_gets_its_own_error_and_the_others_are_stored(tmp_path: Path):
    async def test(threads: IngestThreads, journal: Journal, storage: LocalStorage) -> None:
        futures = [
            threads.submit(body(), context(0), storage),
            threads.submit(io.BytesIO(b'{"cut short'), context(1), storage),
            threads.submit(body(), context(2), storage),
        ]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        assert isinstance(outcomes[1], FramingError)
        assert [outcome.accepted for outcome in (outcomes[0], outcomes[2])] == [1, 1]  # type: ignore[union-attr]
        assert journal.durable_end.seq == 2

    run(tmp_path, test)


def test_a_full_journal_refuses_the_requests_that_do_not_fit(tmp_path: Path):
    async def test(threads: IngestThreads, journal: Journal, storage: LocalStorage) -> None:
        assert (await threads.submit(body(), context(0), storage)).accepted == 1
        with pytest.raises(JournalFull):
            await threads.submit(body(), context(1), storage)

    run(tmp_path, test, max_bytes=1)


def test_stopping_finishes_every_body_already_submitted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    recorder = Recorder(monkeypatch)
    recorder.go.clear()
    futures: list[asyncio.Future[Batch]] = []

    async def test(threads: IngestThreads, journal: Journal, storage: LocalStorage) -> None:
        futures.extend(threads.submit(body(), context(number), storage) for number in range(10))
        asyncio.get_running_loop().call_later(0.2, recorder.go.set)

    run(tmp_path, test)

    assert len(recorder.order) == 10
    journal = Journal(tmp_path / "journal", segment_bytes=1 << 20, max_bytes=1 << 30)
    assert journal.durable_end.seq == 10
    journal.close()


def test_a_cancelled_request_is_still_stored_and_its_body_closed_by_the_preparer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    recorder = Recorder(monkeypatch)
    recorder.go.clear()
    spool = body()

    async def test(threads: IngestThreads, journal: Journal, storage: LocalStorage) -> None:
        future = threads.submit(spool, context(0), storage)
        future.cancel()
        recorder.go.set()
        assert (await threads.submit(body(), context(1), storage)).accepted == 1
        assert journal.durable_end.seq == 2

    run(tmp_path, test)

    assert spool.closed
