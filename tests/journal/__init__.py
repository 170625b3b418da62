from __future__ import annotations

import fcntl
import os
from pathlib import Path

from app.journal import Journal


def append_lines(journal: Journal, lines: list[bytes]) -> None:
    """`Journal.append` of rows given one line each, as tests write them."""
    journal.append(b"".join(line + b"\n" for line in lines), len(lines))


def lock_is_free(slot_dir: Path) -> bool:
    """Whether no process holds the slot's lock: taken and dropped at once if free."""
    fd = os.open(slot_dir / "lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # drops the lock if this took it
