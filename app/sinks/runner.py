"""Draining the journal into sinks: one task per sink, each at its own pace, none ever skipping a row.

A `SinkRunner` reads whole journal entries from its checkpoint, keeps the rows of the log types its
sink wants, and hands them over in batches bounded by records, bytes and age. Its checkpoint
advances only after `write` returned (Vector's finalization rule), so a crash or a failing sink
means a batch is delivered again, never that one is lost. A failing write is retried, with
exponential backoff and jitter (or the sink's `retry_after`), for as long as it takes; meanwhile the
journal grows, and past its cap ingest answers 503 until the sink catches up.

`SinkGroup` starts and stops the runners and deletes journal segments once every runner is past.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final

from starlette.concurrency import run_in_threadpool

from app.journal import Entry, Journal, Position
from app.journal.checkpoints import CheckpointStore
from app.observability import SINK_ERRORS, SINK_LAG_RECORDS, SINK_LAG_SECONDS, SINK_ROWS, log_event
from app.settings import Settings
from app.sinks.base import RetryableSinkError, Sink, SinkBatch, SinkConfig, line_field
from app.types import PANTHER_LOG_TYPES

RETRY_BASE: Final = 0.5
RETRY_MAX: Final = 30.0
"""Retryable failures back off from half a second to at most 30 s."""
FATAL_RETRY_MAX: Final = 300.0
"""Non-retryable ones (bad credentials, refused payloads) are still retried, up to every 5 minutes."""
IDLE_WAIT: Final = 1.0
ALL_LOG_TYPES: Final = frozenset(PANTHER_LOG_TYPES.values())


class _LagBoard:
    """Each running runner's lag, so a sink's gauges sum (rows) and take the worst (age) over every
    journal the process drains: its own slot's and, for a while, an adopted one's (`app.sinks.adoption`).
    Runners report from the event loop and from appending threads, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lags: dict[str, dict[int, tuple[int, float]]] = defaultdict(dict)  # sink → runner → lag

    def report(self, sink: str, runner: int, records: int, seconds: float) -> None:
        with self._lock:
            lags = self._lags[sink]
            lags[runner] = (records, seconds)
            self._publish(sink, lags)

    def forget(self, sink: str, runner: int) -> None:
        with self._lock:
            lags = self._lags[sink]
            lags.pop(runner, None)
            self._publish(sink, lags)

    @staticmethod
    def _publish(sink: str, lags: dict[int, tuple[int, float]]) -> None:
        SINK_LAG_RECORDS.labels(sink).set(sum(records for records, _ in lags.values()))
        SINK_LAG_SECONDS.labels(sink).set(max((seconds for _, seconds in lags.values()), default=0.0))


LAGS: Final = _LagBoard()


class SinkRunner:
    """One sink fed from one journal, with its own checkpoint."""

    def __init__(self, config: SinkConfig, sink: Sink, journal: Journal, checkpoints: CheckpointStore) -> None:
        self.config = config
        self.sink = sink
        self.journal = journal
        self.checkpoints = checkpoints
        self.position = checkpoints.load(config.name) or journal.first_position
        self._wanted = frozenset(PANTHER_LOG_TYPES[log_type] for log_type in config.log_types)
        self._woken = asyncio.Event()
        self._full_at: Position | None = None
        """Where the journal's durable end would fill the batch being gathered; None while the runner
        holds no rows. Read by `wake` in appending threads."""
        self._stopping = False
        self._rng = random.Random()
        self._oldest: float | None = None
        """When the oldest row this runner holds undelivered was appended; None when it holds none."""
        self._report_lag()  # from the start, so a restart's backlog shows before the first read

    def wake(self) -> None:
        """Called from the appending thread after each append: the lag grew, and there is more to read.

        The gauge is set here so it stays current while a failing sink sleeps between retries. A runner
        gathering a batch is woken only once the journal holds enough to fill it; until then it reads
        at the batch's deadline (`_drain`).
        """
        full_at, end = self._full_at, self.journal.durable_end
        self._report_lag(end)
        if full_at is None or end.segment != full_at.segment or end.offset >= full_at.offset or end.seq >= full_at.seq:
            self._loop.call_soon_threadsafe(self._woken.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.journal.add_listener(self.wake)
        try:
            await self._drain()
        finally:
            self.journal.remove_listener(self.wake)
            LAGS.forget(self.config.name, id(self))  # a finished drain of an adopted slot leaves no lag behind

    async def _drain(self) -> None:
        await self._retry("start", self.sink.start)
        pending: list[Entry] = []
        while not self._stopping:
            self._report_lag()
            # A runner gathering a batch is woken by the append that can fill it, not by every one: it
            # read the journal twice per request, a thread hand-off each (6% of the CPU of a one-record
            # request). Otherwise it reads at the batch's deadline. The event is cleared before the
            # read, so an append after the read is never missed.
            self._woken.clear()
            read_from = pending[-1].end if pending else self.position
            rows, size = self._room(pending)
            entries = await run_in_threadpool(self.journal.read, read_from, max_records=rows, max_bytes=size)
            pending += entries
            self._full_at = self._filled_by(pending)
            self._oldest = pending[0].appended_at if pending else None
            if pending and self._batch_ready(pending, more=bool(entries)):
                await self._deliver(pending)
                pending, self._full_at = [], None
                continue
            # A batch that is not ready holds everything durable, within its limits: wait for more.
            timeout = (
                IDLE_WAIT if not pending else max(0.0, pending[0].appended_at + self.config.batch_max_age - time.time())
            )
            try:
                await asyncio.wait_for(self._woken.wait(), timeout=min(timeout, IDLE_WAIT))
            except TimeoutError:
                pass
        if pending:
            await self._deliver(pending)

    def _room(self, pending: list[Entry]) -> tuple[int, int]:
        """Rows and bytes the batch being gathered can still take (at most 0 when it is full)."""
        rows = self.config.batch_max_records - sum(len(entry.lines) for entry in pending)
        return rows, self.config.batch_max_bytes - sum(entry.size for entry in pending)

    def _filled_by(self, pending: list[Entry]) -> Position | None:
        """Where the journal's durable end, reaching it, holds a full batch with `pending`'s rows: the
        same place for every read of one batch. None for no rows, when any append is worth a read.

        Past the end of `pending`'s last segment nothing is known of sizes, so any later segment counts
        as full (`wake` compares the segment first)."""
        if not pending:
            return None
        end = pending[-1].end
        rows, size = self._room(pending)
        return Position(end.segment, end.offset + size, end.seq + rows)

    def _batch_ready(self, pending: list[Entry], *, more: bool) -> bool:
        rows, size = self._room(pending)
        if rows <= 0 or size <= 0:
            return True
        if time.time() - pending[0].appended_at >= self.config.batch_max_age:
            return True
        return self._stopping or (not more and self.config.batch_max_age == 0)

    async def _deliver(self, entries: list[Entry]) -> None:
        lines = [line for entry in entries for line in entry.lines]
        if self._wanted != ALL_LOG_TYPES:  # most sinks take every row: no need to look into each
            lines = [line for line in lines if line_field(line, "p_log_type") in self._wanted]
        if lines:
            batch = SinkBatch(lines=lines, first_seq=entries[0].first_seq, stream=self.journal.directory.name)
            await self._retry("write", lambda: self.sink.write(batch))
            SINK_ROWS.labels(self.config.name).inc(len(lines))
        self.position = entries[-1].end
        self._oldest = None
        await self._save_checkpoint()

    async def _save_checkpoint(self) -> None:
        """Persist the position, retrying while the disk refuses (full, out of inodes).

        Until it is saved, a restart would deliver these rows again: at least once, never lost.
        """
        failures = 0
        while True:
            try:
                await run_in_threadpool(self.checkpoints.save, self.config.name, self.position)
                return
            except OSError as exc:
                failures += 1
                SINK_ERRORS.labels(self.config.name, "checkpoint").inc()
                delay = min(RETRY_MAX, RETRY_BASE * 2 ** min(failures, 16))
                log_event(logging.ERROR, "sink checkpoint not saved", sink=self.config.name, error=str(exc))
                if self._stopping:
                    return
                await asyncio.sleep(delay)

    async def _retry(self, what: str, attempt: Callable[[], Awaitable[None]]) -> None:
        """Await `attempt()` until it succeeds; only a stop abandons it (the journal keeps the rows)."""
        failures = 0
        while True:
            try:
                await attempt()
                return
            except Exception as exc:  # noqa: BLE001 - a plugin's bug must not end delivery: it is retried like SinkError
                retryable = isinstance(exc, RetryableSinkError)
                failures += 1
                SINK_ERRORS.labels(self.config.name, "retryable" if retryable else "fatal").inc()
                self._report_lag()
                cap = RETRY_MAX if retryable else FATAL_RETRY_MAX
                delay = min(cap, RETRY_BASE * 2 ** min(failures, 16)) * self._rng.uniform(0.5, 1.0)
                if isinstance(exc, RetryableSinkError) and exc.retry_after is not None:
                    delay = min(FATAL_RETRY_MAX, exc.retry_after)
                log_event(
                    logging.WARNING if retryable else logging.ERROR,
                    f"sink {what} failed",
                    sink=self.config.name,
                    error=str(exc),
                    failures=failures,
                    retry_in=round(delay, 2),
                )
                if self._stopping:
                    raise
                await asyncio.sleep(delay)

    def _report_lag(self, durable_end: Position | None = None) -> None:
        """Set this runner's lag gauges; `durable_end` spares a second read of it by a caller that has it."""
        records = (durable_end or self.journal.durable_end).seq - self.position.seq
        LAGS.report(self.config.name, id(self), records, time.time() - self._oldest if self._oldest else 0.0)

    def stop(self) -> None:
        self._stopping = True
        self._woken.set()


def open_slot(directory: Path, settings: Settings, sinks: Sequence[tuple[SinkConfig, Sink]]) -> SinkGroup:
    """A journal slot's journal and a runner of each sink over it, from the sink's checkpoint there.

    The same for a process's own slot and for one it adopts (`app.sinks.adoption`). Opening the
    journal recovers its torn tail, so the caller holds the slot's lock; it may read up to a segment.
    """
    journal = Journal(
        directory,
        segment_bytes=settings.journal_segment_bytes,
        max_bytes=settings.journal_max_bytes,
        retention=settings.journal_retention,
    )
    checkpoints = CheckpointStore(directory / "checkpoints")
    return SinkGroup([SinkRunner(config, sink, journal, checkpoints) for config, sink in sinks], journal)


class SinkGroup:
    """Every configured sink's runner over one journal, and segment clean-up behind them all."""

    def __init__(self, runners: Sequence[SinkRunner], journal: Journal) -> None:
        self.runners = list(runners)
        self.journal = journal
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(runner), name=f"sink:{runner.config.name}") for runner in self.runners
        ]

    async def _run(self, runner: SinkRunner) -> None:
        position = runner.position
        run = asyncio.create_task(runner.run())
        while not run.done():
            await asyncio.wait({run}, timeout=IDLE_WAIT)
            if runner.position != position:
                position = runner.position
                await run_in_threadpool(self.journal.release, self.positions())
        run.result()

    def positions(self) -> list[Position]:
        return [runner.position for runner in self.runners]

    def caught_up(self) -> bool:
        """Whether every runner has delivered all the journal holds now (reads the journal: call off the loop).

        Asked of what is left to read, not of positions: a position is where a runner resumes, and
        after an empty segment it can stand before the journal's end with nothing left to deliver.
        """
        return not any(self.journal.read(position, max_records=1, max_bytes=1) for position in self.positions())

    async def stop(self, timeout: float) -> None:
        """Let each runner flush what it holds within `timeout`, then close every sink."""
        for runner in self.runners:
            runner.stop()
        done, running = await asyncio.wait(self._tasks, timeout=timeout) if self._tasks else (set(), set())
        for task in running:
            task.cancel()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log_event(logging.WARNING, "sink stopped with undelivered rows", error=str(task.exception()))
        for runner in self.runners:
            try:
                await runner.sink.close()
            except Exception as exc:  # noqa: BLE001 - one sink's close must not keep the others open
                log_event(logging.WARNING, "sink close failed", sink=runner.config.name, error=str(exc))
