"""Adopting orphaned journal slots, with real journals, checkpoints, locks and the archive sink."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable
from pathlib import Path

import orjson

from app.journal import SPARES, Journal
from app.journal.checkpoints import CheckpointStore, Slot
from app.journal.format import list_spares
from app.settings import Settings
from app.sinks.adoption import SlotAdopter
from tests.journal import append_lines, lock_is_free


def row(row_id: str) -> bytes:
    return orjson.dumps(
        {"p_log_type": "Tailscale.Network", "p_event_time": "2026-06-03T15:32:56.773000Z", "p_row_id": row_id}
    )


def leave_rows(slot_dir: Path, *batches: list[str]) -> Journal:
    """A journal as a worker of an earlier run left it: rows appended, closed, its sinks never ran."""
    journal = Journal(slot_dir, segment_bytes=1 << 20, max_bytes=1 << 30)
    for ids in batches:
        append_lines(journal, [row(row_id) for row_id in ids])
    journal.close()
    return journal


def archived_ids(data_dir: Path) -> list[str]:
    paths = sorted((data_dir / "archive").glob("log_type=*/**/*.ndjson"))
    return [orjson.loads(line)["p_row_id"] for path in paths for line in path.read_bytes().splitlines()]


def adopt_until(settings: Settings, own: Slot, done: Callable[[], bool]) -> bool:
    """Run an adopter beside `own` until `done()` holds (True) or five seconds pass (False), then stop it."""

    async def adopt() -> bool:
        adopter = SlotAdopter(settings, own, ["archive"])
        adopter.start()
        try:
            for _ in range(500):
                await asyncio.sleep(0.01)
                if done():
                    return True
            return False
        finally:
            await adopter.stop()

    return asyncio.run(adopt())


def test_an_orphaned_slot_is_drained_into_the_archive_then_released(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, token="adoption-token")
    orphan = tmp_path / "journal" / "slot-1"
    left = leave_rows(orphan, ["a", "b"], ["c"])
    own = Slot.first_free(tmp_path / "journal")

    drained = adopt_until(settings, own, lambda: archived_ids(tmp_path) == ["a", "b", "c"] and lock_is_free(orphan))
    assert drained, f"slot-1 was not drained and released: {archived_ids(tmp_path)}"
    assert CheckpointStore(orphan / "checkpoints").load("archive") == left.durable_end
    own.release()


def test_a_drained_slot_keeps_no_spare_segments(tmp_path: Path):
    """Spares are for a journal that grows; an orphan, once drained, would hold them for nothing."""
    settings = Settings(data_dir=tmp_path, token="adoption-token")
    orphan = tmp_path / "journal" / "slot-1"
    journal = Journal(orphan, segment_bytes=200, max_bytes=1 << 30)
    for row_id in "abcdef":  # one entry a segment
        append_lines(journal, [row(row_id * 100)])
    journal.release([journal.durable_end])  # as its runner did before the process died: two spares
    append_lines(journal, [row("g")])  # not delivered; its segment took one of them
    journal.close()
    assert len(list_spares(orphan)) == SPARES - 1
    own = Slot.first_free(tmp_path / "journal")

    drained = adopt_until(settings, own, lambda: lock_is_free(orphan) and archived_ids(tmp_path)[-1:] == ["g"])
    assert drained, f"slot-1 was not drained and released: {archived_ids(tmp_path)}"
    assert list_spares(orphan) == []
    own.release()


def test_a_slot_held_by_a_live_process_is_not_adopted(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, token="adoption-token")
    held = tmp_path / "journal" / "slot-1"
    leave_rows(held, ["a"])
    own = Slot.first_free(tmp_path / "journal")
    adopter = SlotAdopter(settings, own, ["archive"])
    fd = os.open(held / "lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as its live owner does

    assert adopter.claim_orphans(frozenset({own.directory})) == []
    os.close(fd)  # the owner died: now it is an orphan
    adopted = adopter.claim_orphans(frozenset({own.directory}))
    assert [(slot.directory, behind) for slot, behind in adopted] == [(held, (held / f"{0:020d}.log").stat().st_size)]
    assert not lock_is_free(held)
    adopted[0][0].release()
    own.release()


def test_a_slot_whose_sinks_have_everything_is_left_alone_and_unlocked(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, token="adoption-token")
    done = tmp_path / "journal" / "slot-1"
    left = leave_rows(done, ["a"])
    CheckpointStore(done / "checkpoints").save("archive", left.durable_end)
    own = Slot.first_free(tmp_path / "journal")

    assert SlotAdopter(settings, own, ["archive"]).claim_orphans(frozenset({own.directory})) == []
    assert lock_is_free(done)
    own.release()
