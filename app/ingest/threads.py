"""The threads that prepare and store request bodies, off the event loop, with few hand-offs between them.

    event loop ──body──► preparer thread(s) ──batch──► storer thread ──answers──► event loop
                         decode, frame,                quarantine rows, journal writes,
                         validate, enrich              then one fsync for every batch it holds

A request's body is CPU work (`prepare_request`) and then a durable write (`app.storage`), and waking
a sleeping thread is what costs on this project's VMs: a hand-off to a thread and back took 90 µs of
CPU (bench/RESULTS.md). With a worker thread per request, each request woke its thread, waited its
turn at preparing, woke the next one's, and woke again after the journal's fsync, alongside every
other request of that fsync's group. Here the threads are long-lived and each does one kind of work:

- `processing_concurrency` preparer threads (one by default: under the GIL a second body in parallel
  does not finish sooner, and a parsed 11 MB body is several hundred MB of Python objects) take bodies
  from one FIFO queue, in the order they were received. A busy preparer finds the next body waiting
  and takes it without sleeping, so under load a body costs no wake-up at all;
- one storer thread takes every prepared batch waiting, writes each (quarantine rows, then its journal
  entry), waits once for the fsync that covers them all (the journal's group commit), and answers the
  whole group with one call into the event loop. Meanwhile the preparers go on with the next bodies.

Nothing is acknowledged before it is durable: a request's future is resolved only after the fsync that
covers its entry, and a batch whose write or fsync failed gets that error (503), as before.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass
from typing import IO

from app.ingest.body import read_spooled
from app.ingest.pipeline import RequestContext, count_outcomes, prepare_request
from app.observability import STORAGE_WRITE
from app.settings import Settings
from app.storage import Batch, Storage

Outcome = tuple["asyncio.Future[Batch]", Batch | BaseException]


@dataclass(slots=True, frozen=True)
class _Body:
    spool: IO[bytes]
    ctx: RequestContext
    storage: Storage
    future: asyncio.Future[Batch]


@dataclass(slots=True, frozen=True)
class _Prepared:
    batch: Batch
    storage: Storage
    future: asyncio.Future[Batch]


class IngestThreads:
    """One worker process's preparer and storer threads; `submit` hands them a request's body."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._bodies: queue.SimpleQueue[_Body | None] = queue.SimpleQueue()
        self._batches: queue.SimpleQueue[_Prepared | None] = queue.SimpleQueue()
        self._preparers: list[threading.Thread] = []
        self._storer: threading.Thread | None = None

    def start(self) -> None:
        """Start the threads; called on the event loop that will await their answers."""
        self._loop = asyncio.get_running_loop()
        self._preparers = [
            threading.Thread(target=self._prepare, name=f"tailscribe-prepare-{number}", daemon=True)
            for number in range(self._settings.processing_concurrency)
        ]
        self._storer = threading.Thread(target=self._store, name="tailscribe-store", daemon=True)
        for thread in (*self._preparers, self._storer):
            thread.start()

    async def stop(self) -> None:
        """Finish every body already submitted, then end the threads. The server stops taking requests
        first, so nothing is submitted after this is called."""
        for _ in self._preparers:
            self._bodies.put(None)
        await asyncio.to_thread(_join, self._preparers)
        self._batches.put(None)  # after every preparer's last batch
        if self._storer is not None:
            await asyncio.to_thread(_join, [self._storer])

    def submit(self, spool: IO[bytes], ctx: RequestContext, storage: Storage) -> asyncio.Future[Batch]:
        """Prepare one request's spooled body and store it in `storage`; the future holds its batch
        once durable.

        The spool is the preparer's from here on: it reads and closes it. A request cancelled while it
        waits (its client gone) is still prepared and stored, like any body received in full; only its
        answer is dropped, and the spool is not closed under the thread reading it.
        """
        future: asyncio.Future[Batch] = self._loop.create_future()
        self._bodies.put(_Body(spool, ctx, storage, future))
        return future

    def _prepare(self) -> None:
        while (body := self._bodies.get()) is not None:
            try:
                with body.spool:  # closing removes a spooled body's file
                    raw = read_spooled(body.spool)
                batch = prepare_request(raw, body.ctx, self._settings, body.storage)
            except Exception as exc:  # the request's answer (an IngestError), or a bug answered 500
                self._answer([(body.future, exc)])
                continue
            self._batches.put(_Prepared(batch, body.storage, body.future))

    def _store(self) -> None:
        stopping = False
        while not stopping and (first := self._batches.get()) is not None:
            group = [first]
            while True:  # every batch prepared meanwhile joins this fsync
                try:
                    waiting = self._batches.get_nowait()
                except queue.Empty:
                    break
                if waiting is None:
                    stopping = True
                    break
                group.append(waiting)
            self._answer(self._store_group(group))

    def _store_group(self, group: list[_Prepared]) -> list[Outcome]:
        """Write every batch of `group`, then wait until each is durable: the first wait does the fsync
        that covers them all, the later ones find it done. Each batch gets its own error, if any."""
        outcomes: list[Outcome] = []
        written: list[tuple[_Prepared, int, float]] = []
        for prepared in group:
            started = time.perf_counter()
            try:
                written.append((prepared, prepared.storage.write(prepared.batch), started))
            except Exception as exc:
                outcomes.append((prepared.future, exc))
        for prepared, ticket, started in written:
            try:
                prepared.storage.wait(ticket)
            except Exception as exc:
                outcomes.append((prepared.future, exc))
                continue
            STORAGE_WRITE.observe(time.perf_counter() - started)
            count_outcomes(prepared.batch)  # only now: rows of a request refused with 503 were never accepted
            outcomes.append((prepared.future, prepared.batch))
        return outcomes

    def _answer(self, outcomes: list[Outcome]) -> None:
        """Resolve the futures on the event loop, in one call for a whole group."""
        self._loop.call_soon_threadsafe(_resolve, outcomes)


def _resolve(outcomes: list[Outcome]) -> None:
    for future, outcome in outcomes:
        if future.done():  # cancelled: the request's task is gone
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join()
