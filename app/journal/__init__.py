"""The durable journal between the request path and the sinks: nothing acknowledged is ever lost.

A request's accepted rows are appended as one entry, and its 2xx is sent only once that entry is
fsynced. Sinks read the journal at their own pace from their checkpoints (`app.sinks.runner`), so a
slow or dead sink delays delivery but never loses a row and never blocks ingest, until the journal
passes `max_bytes`: then appends fail with `JournalFull` (503 + Retry-After) and Tailscale re-sends
later, while the sinks catch up and free whole segments.

Group commit: appends come from worker threads (one per request). Each writes its entry under a
lock, then waits until some fsync covers it; the first waiter to find no fsync running does one
for everyone written so far. Concurrent requests therefore share an fsync, as in a database's
write-ahead log. If an fsync fails, the file is cut back to the last durable byte and every entry
that fsync was to cover fails: Linux may have dropped those pages (fsync(2), "fsyncgate").

Recycling: a released segment is not deleted but renamed to a spare (up to `SPARES`), and the next
new segment takes a spare's file and overwrites it in place, as PostgreSQL recycles WAL segments.
Deleting a 64 MiB file made ext4 free (and, on a `discard` mount, trim) its blocks while appends
waited on their fsyncs, and writing a new file allocates blocks and page-cache pages anew. In place,
on this project's machine, appending and fsyncing took 0.5-0.7 against 1.4-3.9 ns of CPU a byte, and
the median fsync 0.3 against 0.7-1.1 ms (bench/RESULTS.md, "Journal segments recycled"). Writes
therefore go at explicit offsets (`pwritev`), not O_APPEND, and a segment is cut to its last entry
when it is finished, so only the one being written can hold old entries past its end; reading stops
at them (`app.journal.format`). Spares are not counted in `max_bytes`: the journal's files take at
most `SPARES` segments more.

File layout and entry format: `app.journal.format`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from app.errors import ServerBusy, StorageUnavailable
from app.journal.format import (
    Entry,
    Position,
    encode_header,
    list_segments,
    list_spares,
    read_entries,
    recover_tail,
    segment_path,
    spare_path,
)
from app.observability import JOURNAL_BYTES, JOURNAL_SEGMENTS
from app.storage.files import ensure_dir, fsync_dir

__all__ = ["Entry", "Journal", "JournalFull", "Position"]

SPARES: Final = 2
"""Released segment files kept for reuse: one per roll would do; two leave room for a release of several."""


class JournalFull(ServerBusy):
    reason = "journal_full"


class Journal:
    """One process's journal in its own directory; thread-safe appends, any number of readers."""

    def __init__(self, directory: Path, *, segment_bytes: int, max_bytes: int, retention: float = 0.0) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.retention = retention
        self._cond = threading.Condition()
        self._releasing = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._syncing = False
        self._written = 0  # tickets: one per appended entry
        self._synced = 0
        self._failed: tuple[int, int] = (0, 0)  # tickets (after, upto] whose fsync failed
        self._reported = (0, 0)  # bytes and segments this journal has added to the process's gauges
        ensure_dir(directory)
        segments = list_segments(directory) or [0]
        self._sizes = {first: segment_path(directory, first).stat().st_size for first in segments[:-2]}
        # A crash while the last segment was being finished can leave it uncut: recovered like the tail.
        for first in segments[-2:-1]:
            self._sizes[first] = recover_tail(segment_path(directory, first), first).offset
        self._end = recover_tail(self._touch(segments[-1]), segments[-1])
        self._durable = self._end
        self._sizes[segments[-1]] = self._end.offset
        self._fd = os.open(segment_path(directory, segments[-1]), os.O_WRONLY)
        self._report()

    def _touch(self, first_seq: int) -> Path:
        """The segment file starting at `first_seq`: a spare renamed, or a new empty file."""
        path = segment_path(self.directory, first_seq)
        if not path.exists():
            spares = list_spares(self.directory)
            if spares:
                spares[0].rename(path)
            else:
                path.touch(mode=0o640)
            fsync_dir(self.directory)
        return path

    @property
    def durable_end(self) -> Position:
        """Everything before this position is on disk; readers never go past it."""
        with self._cond:
            return self._durable

    @property
    def first_position(self) -> Position:
        with self._cond:
            first = min(self._sizes)
        return Position(first, 0, first)

    @property
    def total_bytes(self) -> int:
        with self._cond:
            return sum(self._sizes.values())

    @property
    def segment_count(self) -> int:
        with self._cond:
            return len(self._sizes)

    def is_full(self) -> bool:
        return self.total_bytes >= self.max_bytes

    def check_room(self) -> None:
        """Raise `JournalFull` when an append would be refused for the byte cap."""
        if self.is_full():  # the lock is reentrant: `append` calls this holding it
            raise JournalFull("the journal is full: sinks are behind; retry later", retry_after=30)

    def add_listener(self, callback: Callable[[], None]) -> None:
        """`callback` runs (in the appending thread) after each durable append."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        self._listeners.remove(callback)

    def append(self, ndjson: bytes | bytearray, count: int) -> None:
        """Store one batch of `count` rows, newline-terminated JSON lines, durably; return once fsynced.

        Raises `JournalFull` over the byte cap and `StorageUnavailable` when the disk fails.
        """
        with self._cond:
            self.check_room()
            while self._end.offset >= self.segment_bytes:
                self._roll()
            header = encode_header(ndjson, count, self._end.seq, time.time())
            size = self._write(header, ndjson)
            self._end = Position(self._end.segment, self._end.offset + size, self._end.seq + count)
            self._sizes[self._end.segment] = self._end.offset
            self._written += 1
            ticket = self._written
            self._wait_durable(ticket)
            self._report()
        for listener in self._listeners:
            listener()

    def _write(self, header: bytes, payload: bytes | bytearray) -> int:
        """Write one entry at the end, header and payload in one system call without joining them; return
        its size."""
        size, offset = len(header) + len(payload), self._end.offset
        try:
            written = os.pwritev(self._fd, [header, payload], offset)
            if written < size:  # a short write (a signal, a nearly full disk): finish it piece by piece
                rest = memoryview(header + payload)[written:]
                while rest:
                    done = os.pwrite(self._fd, rest, offset + size - len(rest))
                    rest = rest[done:]
        except OSError as exc:
            os.ftruncate(self._fd, self._end.offset)
            raise StorageUnavailable(f"could not write to the journal: {exc.strerror}") from exc
        return size

    def _wait_durable(self, ticket: int) -> None:
        """Called with the lock held: return once `ticket` is fsynced, doing the fsync if nobody is."""
        while self._synced < ticket:
            if self._syncing:
                self._cond.wait()
                continue
            self._syncing = True
            target, end, fd = self._written, self._end, self._fd
            self._cond.release()
            try:
                # fdatasync, as PostgreSQL syncs its WAL: the data, and the size when the write grew the
                # file, but not the timestamps. In a recycled file the size rarely changes, so this
                # needs no ext4 journal commit, and does not wait behind other files' (the archive's)
                # data that a commit must write first: the longest sync beside an archive writer was
                # 93-162 ms, against 185-279 ms with fsync (bench/RESULTS.md, "Journal segments recycled").
                os.fdatasync(fd)
                error = None
            except OSError as exc:
                error = exc
            finally:
                self._cond.acquire()
                self._syncing = False
            if error is None:
                self._durable = end
            else:
                # Cut back everything written since the last durable point, this fsync's and any later.
                os.ftruncate(fd, self._durable.offset)
                self._failed = (self._synced, self._written)
                self._end = self._durable
                self._sizes[self._end.segment] = self._end.offset
                target = self._written
            self._synced = target
            self._cond.notify_all()
        if self._failed[0] < ticket <= self._failed[1]:
            raise StorageUnavailable("could not fsync the journal; nothing of this request was kept")

    def _roll(self) -> None:
        """Start a new segment; called with the lock held. Everything written so far is fsynced first."""
        while self._syncing:
            self._cond.wait()
        if self._end.offset < self.segment_bytes:
            return  # another appender rolled while this one waited
        # The new segment is opened before the old one is let go: if it cannot be (no inode, no
        # descriptor), the request fails with 503 and the journal carries on in the old segment.
        try:
            os.ftruncate(self._fd, self._end.offset)  # a recycled file's old entries past the last one
            os.fsync(self._fd)
            fd = os.open(self._touch(self._end.seq), os.O_WRONLY)
        except OSError as exc:
            raise StorageUnavailable(f"could not start a new journal segment: {exc.strerror}") from exc
        os.close(self._fd)
        self._fd = fd
        self._durable = self._end
        self._synced = self._written
        self._end = Position(self._end.seq, 0, self._end.seq)
        self._sizes[self._end.segment] = 0

    def read(self, position: Position, *, max_records: int, max_bytes: int) -> list[Entry]:
        """Whole durable entries from `position` on, at least one if any, within the two limits."""
        durable = self.durable_end
        with self._cond:
            segments = sorted(first for first in self._sizes if first >= position.segment)
        entries: list[Entry] = []
        records = size = 0
        for first in segments:
            start = position if first == position.segment else Position(first, 0, first)
            end_offset = durable.offset if first == durable.segment else self._sizes.get(first, 0)
            if first > durable.segment:
                break
            for entry in read_entries(segment_path(self.directory, first), start, end_offset):
                if entries and (records + len(entry.lines) > max_records or size + entry.size > max_bytes):
                    return entries
                entries.append(entry)
                records += len(entry.lines)
                size += entry.size
        return entries

    def release(self, checkpoints: Iterable[Position]) -> None:
        """Delete the segments every checkpoint has left behind (and that are older than retention)."""
        oldest = min(checkpoints, default=None)
        if oldest is None:
            return
        cutoff = time.time() - self.retention
        # The files are removed outside the append lock: freeing a 64 MiB segment took ext4 30-37 ms
        # under load, and every request's append waited for it. Releases take turns on a lock of their
        # own (each sink's runner releases), and no reader needs a segment before every checkpoint.
        with self._releasing:
            with self._cond:
                passed = [first for first in self._sizes if first < oldest.segment and first != self._end.segment]
            removed = 0
            for first in passed:
                path = segment_path(self.directory, first)
                if self.retention and path.stat().st_mtime > cutoff:
                    continue
                if len(list_spares(self.directory)) < SPARES:
                    path.rename(spare_path(self.directory, first))
                else:
                    path.unlink()
                removed += 1
                with self._cond:
                    del self._sizes[first]
                    self._report()
            if removed:
                fsync_dir(self.directory)

    def drop_spares(self) -> None:
        """Delete the spare files, for a journal nothing will append to: an adopted slot, once drained,
        would otherwise keep up to `SPARES` segments of disk until a worker claims it again."""
        with self._cond:  # a roll takes spares under this lock
            spares = list_spares(self.directory)
            for spare in spares:
                spare.unlink()
            if spares:
                fsync_dir(self.directory)

    def _report(self) -> None:
        """Update this journal's share of the journal gauges; called with the lock held.

        A share, not the value: while a process drains a slot it adopted (`app.sinks.adoption`), it
        holds two journals, and the gauges count both.
        """
        size, segments = sum(self._sizes.values()), len(self._sizes)
        JOURNAL_BYTES.inc(size - self._reported[0])
        JOURNAL_SEGMENTS.inc(segments - self._reported[1])
        self._reported = (size, segments)

    def close(self) -> None:
        with self._cond:
            while self._syncing:
                self._cond.wait()
            # Cut a recycled file's old entries, so the file's size is what it holds (`undelivered_bytes`).
            os.ftruncate(self._fd, self._end.offset)
            os.fsync(self._fd)
            os.close(self._fd)
            JOURNAL_BYTES.dec(self._reported[0])
            JOURNAL_SEGMENTS.dec(self._reported[1])
            self._reported = (0, 0)
