"""Durable appends: the one place that turns bytes into data that survives a crash.

A write is acknowledged only after `fsync` of the file and, when the file is new, of every
directory created on its way, because on Linux a new file's directory entry is not durable until
its directory is synced (see fsync(2)). A write that fails part-way is cut back off the file, so a
full disk or an I/O error never leaves a torn line in front of the next good one.

An appended file (the archive's part files, quarantine) is written once and never read back by the
receiver, so once its new bytes are durable their page-cache pages are let go (`drop_written`).

Also here: `try_lock`, the exclusive lock a process holds on a file for as long as it lives.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final

PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")
IOV_MAX: Final = max(16, os.sysconf("SC_IOV_MAX"))
"""The most buffers one `writev(2)` takes: 1024 on Linux, and never below POSIX's minimum of 16
(sysconf answers -1 where it sets no limit)."""

Buffer = bytes | bytearray | memoryview


def ensure_dir(path: Path) -> None:
    """Create `path` and its missing parents, fsyncing each parent that gained an entry."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue  # another writer created it meanwhile; its creator syncs the parent
        fsync_dir(directory.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_append(path: Path, parts: Sequence[Buffer]) -> None:
    """Append `parts`, one after the other, to `path` and fsync; on failure truncate back to the old
    end and re-raise.

    The parts are written as they are (`writev`), so a caller with many pieces, such as rows and
    their newlines, need not join them first: joining the archive's 8 MiB batches took a fresh
    mapping each time, one page fault per 4 KiB row (bench/RESULTS.md, "Archive writes without a join").
    """
    ensure_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        start = os.fstat(fd).st_size
        try:
            written = _write_all(fd, parts)
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, start)
            raise
        drop_written(fd, start, start + written)
    finally:
        os.close(fd)
    if start == 0:
        fsync_dir(path.parent)


def drop_written(fd: int, start: int, end: int) -> None:
    """Let the kernel free the page-cache pages of bytes `start`..`end`, written and synced.

    Kept, they would only grow the page cache by every byte archived, pushing out pages that are
    read again (the journal's, which the sinks read back), and each append would take fresh pages
    from free memory: on this project's benchmark VM writing into fresh pages cost 2.8-3.3 ns of CPU
    a byte, against 0.4 when the pages just dropped are reused (bench/RESULTS.md, "Page cache and
    connection counts"). Whole pages only, from the one the previous append left partly filled:
    the page this append leaves partly filled stays, or the next append would first read it back
    from disk. Synced pages are clean, so dropping them loses nothing; on a filesystem without a page
    cache of its own (tmpfs) the advice does nothing.
    """
    first, last = start - start % PAGE_SIZE, end - end % PAGE_SIZE
    if last > first:  # a length of 0 would mean "to the end of the file"
        with contextlib.suppress(OSError):  # advice: the bytes are durable whether it is taken or not
            os.posix_fadvise(fd, first, last - first, os.POSIX_FADV_DONTNEED)


def durable_write(path: Path, data: bytes, *, mode: int = 0o640) -> None:
    """Write a whole new file atomically: temp file, fsync, rename, fsync the directory."""
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            _write_all(fd, [data])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        # A full disk must not keep a half-written temp file: its space is what is missing.
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _write_all(fd: int, parts: Sequence[Buffer]) -> int:
    """Write `parts` in order, `IOV_MAX` buffers a system call; return how many bytes that was.

    `writev` may write less than asked (signals, some filesystems): it is called again from the first
    byte not written."""
    pending = list(parts)
    index = total = 0
    while index < len(pending):
        written = os.writev(fd, pending[index : index + IOV_MAX])
        total += written
        while index < len(pending) and written >= len(pending[index]):
            written -= len(pending[index])
            index += 1
        if written:
            pending[index] = memoryview(pending[index])[written:]
    return total


def try_lock(path: Path) -> int | None:
    """A descriptor of `path` (created if need be) holding an exclusive flock; None at once if another
    open file holds one.

    Never waits (`LOCK_NB`): a starting worker must not block on a sibling. The lock lasts until the
    descriptor is closed, and the kernel drops it when the process dies, so a crash leaves no stale
    lock. Locking a file this process already holds fails too, since flock locks belong to the open file.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
