"""Where each sink stands in the journal, and which journal directory this process owns.

A checkpoint is replaced atomically (temp file, fsync, rename), so after a crash it is either the
old position or the new one: a sink resumes where its last delivered batch ended and at worst
delivers that batch again (at-least-once; sinks that can dedupe do).

Several worker processes each need a journal of their own. Each claims a numbered slot directory
with an exclusive `flock`, which the kernel releases when the process dies, so a restarted worker
takes over a slot, recovers its tail and drains what its predecessor acknowledged. A slot no worker
takes again (the receiver restarted with fewer workers) is adopted and drained by a running one
(`app.sinks.adoption`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import orjson

from app.journal.format import Position, list_segments, segment_path
from app.storage.files import durable_write, ensure_dir, try_lock

MAX_SLOTS: Final = 256


class CheckpointStore:
    """One small JSON file per sink name under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        ensure_dir(directory)

    def load(self, name: str) -> Position | None:
        path = self.directory / f"{name}.json"
        if not path.exists():
            return None
        saved = orjson.loads(path.read_bytes())
        return Position(saved["segment"], saved["offset"], saved["seq"])

    def save(self, name: str, position: Position) -> None:
        durable_write(self.directory / f"{name}.json", orjson.dumps(position._asdict()))


def undelivered_bytes(directory: Path, checkpoints: CheckpointStore, names: Iterable[str]) -> int:
    """Journal bytes in `directory` past the checkpoint of the sink in `names` furthest behind; 0 when none is.

    Only sizes and checkpoints are read, no entry, so this is cheap enough to ask of every idle slot on
    a timer. A sink without a checkpoint starts at the oldest segment, as its runner would. Bytes past
    the last whole entry (a torn tail) count too: opening the journal cuts them off, and then nothing
    is behind.
    """
    sizes = {first: segment_path(directory, first).stat().st_size for first in list_segments(directory)}
    if not sizes:
        return 0
    start = Position(min(sizes), 0, min(sizes))
    behind = 0
    for name in names:
        position = checkpoints.load(name) or start
        remaining = sum(
            size - position.offset if first == position.segment else size
            for first, size in sizes.items()
            if first >= position.segment
        )
        behind = max(behind, remaining)
    return behind


class Slot:
    """An exclusively held journal directory (`<root>/slot-<n>`); the lock lives as long as the object.

    A process claims its own slot with `first_free`, and adopts an orphaned one with `try_claim`.
    """

    def __init__(self, directory: Path, fd: int) -> None:
        """Use `first_free` or `try_claim`: `fd` is the descriptor holding the lock this object stands for."""
        self.number = int(directory.name.removeprefix("slot-"))
        self.directory = directory
        self._fd = fd

    @classmethod
    def try_claim(cls, directory: Path) -> Slot | None:
        """The slot at `directory`, or None at once if a live process, this one included, holds it."""
        ensure_dir(directory)
        fd = try_lock(directory / "lock")
        return None if fd is None else cls(directory, fd)

    @classmethod
    def first_free(cls, root: Path) -> Slot:
        """The lowest-numbered slot under `root` no live process holds, created if need be."""
        ensure_dir(root)
        for number in range(MAX_SLOTS):
            slot = cls.try_claim(root / f"slot-{number}")
            if slot is not None:
                return slot
        raise RuntimeError(f"all {MAX_SLOTS} journal slots under {root} are held by running processes")

    def release(self) -> None:
        os.close(self._fd)  # closing the descriptor drops the lock
