"""Draining journal slots that no running process owns, so no acknowledged row is stranded on disk.

Each worker process appends to a slot of its own (`app.journal.checkpoints.Slot`) and its sinks drain
that slot. Restarted with fewer workers, the receiver would never claim the highest slots again, and
rows acknowledged there but not yet delivered would stay on disk forever. So a process, once it holds
its own slot, also adopts orphans: slots whose lock no live process holds and whose journal has bytes
past some configured sink's checkpoint (`undelivered_bytes`). A slot whose sinks all caught up is left
alone, even though its last segment stays on disk.

An adopted slot gets a drain-only `SinkGroup` with its own checkpoints and sinks built afresh: sinks
keep per-stream state and expect one runner each. Nothing is ever appended to it. Once every runner
has nothing left to read, the journal's spare segment files are deleted, the group stops, the
journal is closed and the lock let go, so a worker can claim the directory again. A stop first
(shutdown) leaves the rest for the next run, as it does for a process's own slot.

Siblings start together and each takes the first free slot, so a sibling starting while this process
holds a slot (to look at it for a moment, or to drain it) takes the next free number instead. Slot
numbers are only names: that costs a directory, never a row.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack, suppress
from pathlib import Path
from typing import Final

from starlette.concurrency import run_in_threadpool

from app.journal.checkpoints import CheckpointStore, Slot, undelivered_bytes
from app.observability import log_event
from app.settings import Settings
from app.sinks import build_sinks
from app.sinks.runner import IDLE_WAIT, open_slot

ADOPTION_INTERVAL: Final = 30.0
"""Seconds between looks for orphaned slots. Not only at start-up: a sibling may let its slot go while
this process starts, or a worker may exit for good later. Rows in an orphan are already durable, so
waiting only delays their delivery, and each look costs a lock attempt and a few `stat`s per slot."""


class SlotAdopter:
    """Finds orphaned journal slots under the root of `own`, and drains each into sinks of its own."""

    def __init__(self, settings: Settings, own: Slot, sink_names: list[str]) -> None:
        self.settings = settings
        self.own = own
        self._sink_names = sink_names
        self._drains: dict[Path, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._watch = asyncio.create_task(self._look_periodically(), name="journal-adoption")

    async def _look_periodically(self) -> None:
        while not self._stopping.is_set():
            busy = frozenset({self.own.directory, *self._drains})
            try:
                claimed = await run_in_threadpool(self.claim_orphans, busy)
            except OSError as exc:  # the journal root itself cannot be listed: look again later
                log_event(logging.WARNING, "could not look for orphaned journal slots", error=str(exc))
                claimed = []
            for slot, behind in claimed:
                log_event(logging.INFO, "journal slot adopted", journal_slot=slot.number, undelivered_bytes=behind)
                self._drains[slot.directory] = asyncio.create_task(self._drain(slot), name=f"adopted:{slot.number}")
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=ADOPTION_INTERVAL)

    def claim_orphans(self, busy: frozenset[Path]) -> list[tuple[Slot, int]]:
        """Claim every slot but those in `busy` that no process holds and some sink is behind in.

        Returns each with its undelivered bytes. A slot that cannot be looked at (the disk) is
        skipped until the next look.
        """
        adopted: list[tuple[Slot, int]] = []
        for directory in sorted(self.own.directory.parent.glob("slot-*")):
            if directory in busy or not directory.name.removeprefix("slot-").isdigit():
                continue
            try:
                claimed = self._claim_if_behind(directory)
            except OSError as exc:
                log_event(logging.WARNING, "could not look at a journal slot", path=str(directory), error=str(exc))
                continue
            if claimed is not None:
                adopted.append(claimed)
        return adopted

    def _claim_if_behind(self, directory: Path) -> tuple[Slot, int] | None:
        """The slot at `directory` and its undelivered bytes; None, and the lock let go, if nothing is behind."""
        slot = Slot.try_claim(directory)
        if slot is None:
            return None  # a live process owns it, and drains it itself
        behind = 0
        try:
            behind = undelivered_bytes(directory, CheckpointStore(directory / "checkpoints"), self._sink_names)
        finally:
            if not behind:
                slot.release()
        return (slot, behind) if behind else None

    async def _drain(self, slot: Slot) -> None:
        """Deliver everything in `slot`'s journal, then close it and release the slot.

        A failure (the disk, or a bug) is logged and also releases it: the rows stay, and the next look
        adopts it again.
        """
        settings = self.settings
        drained = False
        try:
            async with AsyncExitStack() as stack:
                stack.callback(slot.release)
                group = await run_in_threadpool(open_slot, slot.directory, settings, build_sinks(settings))
                stack.callback(group.journal.close)
                group.start()
                stack.push_async_callback(group.stop, timeout=settings.shutdown_timeout)
                while not self._stopping.is_set():
                    # Nothing is appended to an adopted journal, so once caught up it stays so.
                    if drained := await run_in_threadpool(group.caught_up):
                        await run_in_threadpool(group.journal.drop_spares)
                        break
                    with suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=IDLE_WAIT)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the rows stay and the next look retries
            level = logging.WARNING if isinstance(exc, OSError) else logging.ERROR
            log_event(level, "adopted journal slot not drained", journal_slot=slot.number, error=repr(exc))
        finally:
            del self._drains[slot.directory]
        if drained:
            log_event(logging.INFO, "journal slot drained and released", journal_slot=slot.number)

    async def stop(self) -> None:
        """Stop looking, and stop each drain as the main `SinkGroup` stops, within `shutdown_timeout`."""
        self._stopping.set()
        if self._watch is not None:
            await self._watch
        await asyncio.gather(*self._drains.values())  # each drain logs its own failure
