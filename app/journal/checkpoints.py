"""Where each sink stands in the journal, and which journal directory this process owns.

A checkpoint is replaced atomically (temp file, fsync, rename), so after a crash it is either the
old position or the new one: a sink resumes where its last delivered batch ended and at worst
delivers that batch again (at-least-once; sinks that can dedupe do).

Several worker processes each need a journal of their own. Each claims a numbered slot directory
with an exclusive `flock`, which the kernel releases when the process dies, so a restarted worker
takes over a slot, recovers its tail and drains what its predecessor acknowledged.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Final

import orjson

from app.journal.format import Position
from app.storage.files import durable_write, ensure_dir

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


class Slot:
    """An exclusively held journal directory (`<root>/slot-<n>`); the lock lives as long as the object."""

    def __init__(self, root: Path) -> None:
        ensure_dir(root)
        for number in range(MAX_SLOTS):
            directory = root / f"slot-{number}"
            ensure_dir(directory)
            fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.number = number
            self.directory = directory
            self._fd = fd
            return
        raise RuntimeError(f"all {MAX_SLOTS} journal slots under {root} are held by running processes")

    def release(self) -> None:
        os.close(self._fd)  # closing the descriptor drops the lock
