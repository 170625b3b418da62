from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from app.errors import StorageUnavailable
from app.journal import SPARES, Journal, JournalFull, Position
from app.journal.checkpoints import CheckpointStore, Slot, undelivered_bytes
from app.journal.format import HEADER, list_segments, list_spares, segment_path
from tests.journal import append_lines


def journal(path: Path, **kwargs: int) -> Journal:
    options = {"segment_bytes": 1 << 20, "max_bytes": 1 << 30} | kwargs
    return Journal(path, **options)


def all_lines(j: Journal, start: Position | None = None) -> list[bytes]:
    entries = j.read(start or j.first_position, max_records=1 << 30, max_bytes=1 << 40)
    return [line for entry in entries for line in entry.lines]


def test_appended_batches_read_back_in_order_with_sequence_numbers(tmp_path: Path):
    j = journal(tmp_path)
    append_lines(j, [b'{"a":1}', b'{"a":2}'])
    append_lines(j, [b'{"a":3}'])

    entries = j.read(j.first_position, max_records=100, max_bytes=1 << 20)

    assert [entry.lines for entry in entries] == [[b'{"a":1}', b'{"a":2}'], [b'{"a":3}']]
    assert [entry.first_seq for entry in entries] == [0, 2]
    assert entries[-1].end.seq == 3 == j.durable_end.seq


def test_read_respects_limits_but_always_returns_one_entry(tmp_path: Path):
    j = journal(tmp_path)
    for n in range(5):
        append_lines(j, [b"x" * 100] * (n + 1))

    assert len(j.read(j.first_position, max_records=3, max_bytes=1 << 20)) == 2  # 1 + 2 rows
    assert len(j.read(j.first_position, max_records=1, max_bytes=1)) == 1


def test_segments_roll_and_reads_cross_them(tmp_path: Path):
    j = journal(tmp_path, segment_bytes=200)
    for n in range(10):
        append_lines(j, [f'{{"n":{n}}}'.encode() * 10])

    assert len(list_segments(tmp_path)) > 3
    assert [line[:7] for line in all_lines(j)] == [f'{{"n":{n}}}'.encode() for n in range(10)]


def test_torn_tail_is_truncated_on_reopen_and_whole_entries_survive(tmp_path: Path):
    j = journal(tmp_path)
    append_lines(j, [b'{"keep":1}'])
    append_lines(j, [b'{"keep":2}'])
    j.close()
    [first] = list_segments(tmp_path)
    path = segment_path(tmp_path, first)
    good_size = path.stat().st_size
    with path.open("ab") as segment:  # a crash part-way through a third entry
        segment.write(HEADER.pack(1000, 1, 2, 0.0, 0)[:20])

    reopened = journal(tmp_path)

    assert path.stat().st_size == good_size
    assert all_lines(reopened) == [b'{"keep":1}', b'{"keep":2}']
    append_lines(reopened, [b'{"after":3}'])
    assert all_lines(reopened)[-1] == b'{"after":3}'
    assert reopened.durable_end.seq == 3


def test_a_corrupted_entry_and_everything_after_it_is_cut(tmp_path: Path):
    j = journal(tmp_path)
    append_lines(j, [b'{"keep":1}'])
    append_lines(j, [b'{"flipped":2}'])
    j.close()
    path = segment_path(tmp_path, 0)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))

    assert all_lines(journal(tmp_path)) == [b'{"keep":1}']


def test_concurrent_appends_share_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    j = journal(tmp_path)
    calls = {"fsync": 0}
    real_fdatasync = os.fdatasync
    gate = threading.Event()

    def slow_fdatasync(fd: int) -> None:
        calls["fsync"] += 1
        gate.wait(0.05)  # while one sync runs, the other appenders queue up behind it
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    threads = [threading.Thread(target=j.append, args=(f'{{"t":{n}}}\n'.encode(), 1)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(all_lines(j)) == 40
    assert calls["fsync"] < 20


def test_failed_fsync_fails_the_append_and_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    j = journal(tmp_path)
    append_lines(j, [b'{"ok":1}'])

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    with pytest.raises(StorageUnavailable):
        append_lines(j, [b'{"lost":2}'])
    monkeypatch.undo()

    append_lines(j, [b'{"ok":3}'])
    assert all_lines(j) == [b'{"ok":1}', b'{"ok":3}']


def test_full_journal_refuses_appends_until_segments_are_released(tmp_path: Path):
    j = journal(tmp_path, segment_bytes=100, max_bytes=400)
    while True:
        try:
            append_lines(j, [b"y" * 80])
        except JournalFull as exc:
            assert exc.status == 503 and "Retry-After" in exc.headers()
            break
    assert j.is_full()

    j.release([j.durable_end])

    assert not j.is_full()
    append_lines(j, [b"y" * 80])


def test_release_keeps_segments_a_reader_still_needs(tmp_path: Path):
    j = journal(tmp_path, segment_bytes=100)
    for _ in range(6):
        append_lines(j, [b"z" * 80])
    slow_reader = j.first_position

    j.release([j.durable_end, slow_reader])
    assert len(all_lines(j)) == 6

    j.release([j.durable_end])
    assert len(list_segments(tmp_path)) == 1


def test_appends_go_on_while_a_release_removes_segments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    j = journal(tmp_path, segment_bytes=100)
    for _ in range(SPARES + 2):  # one segment each: the release keeps SPARES of them and deletes one
        append_lines(j, [b"z" * 80])
    unlinking, finish = threading.Event(), threading.Event()
    unlink = Path.unlink

    def slow_unlink(path: Path, missing_ok: bool = False) -> None:
        # What ext4 did under load: freeing a large segment's blocks took tens of milliseconds.
        unlinking.set()
        finish.wait(10)
        unlink(path, missing_ok)

    monkeypatch.setattr(Path, "unlink", slow_unlink)
    checkpoint = j.durable_end
    release = threading.Thread(target=j.release, args=([checkpoint],))
    release.start()
    assert unlinking.wait(10)

    appended = threading.Thread(target=append_lines, args=(j, [b'{"during":1}']))
    appended.start()
    appended.join(5)
    still_releasing = release.is_alive()
    finish.set()
    release.join(10)

    assert not appended.is_alive() and still_releasing
    assert list_segments(tmp_path)[0] == checkpoint.segment
    assert all_lines(j, j.first_position)[-1] == b'{"during":1}'


def lines(tag: str, count: int) -> list[list[bytes]]:
    """`count` one-row entries of 80 bytes each: equal sizes, so a new entry exactly covers an old one."""
    return [[f'{{"{tag}":{n:03d}}}'.encode().ljust(80, b" ")] for n in range(count)]


def test_released_segments_are_recycled_and_their_old_entries_never_read(tmp_path: Path):
    j = journal(tmp_path, segment_bytes=300)  # three 113-byte entries a segment
    for entry in lines("old", 12):
        append_lines(j, entry)
    passed = list_segments(tmp_path)[:-1]
    j.release([j.durable_end])
    spares = list_spares(tmp_path)
    assert len(spares) == SPARES and len(list_segments(tmp_path)) == 1
    assert {spare.stem for spare in spares} <= {f"{first:020d}" for first in passed}
    spare_inodes = {spare.stat().st_ino for spare in spares}

    start = j.durable_end
    for entry in lines("new", 7):
        append_lines(j, entry)

    assert list_spares(tmp_path) == []
    reused = {segment_path(tmp_path, first).stat().st_ino for first in list_segments(tmp_path)}
    assert spare_inodes <= reused
    assert all_lines(j, start) == [entry[0] for entry in lines("new", 7)]
    end = j.durable_end
    j.close()
    # Closed, every segment file is exactly its entries: nothing of a previous life is left behind.
    assert all(segment_path(tmp_path, first).stat().st_size % 113 == 0 for first in list_segments(tmp_path))
    reopened = journal(tmp_path, segment_bytes=300)
    assert reopened.durable_end == end
    assert all_lines(reopened, start) == [entry[0] for entry in lines("new", 7)]


def test_a_crash_in_a_recycled_segment_recovers_this_lifes_entries_only(tmp_path: Path):
    """The old entries past the new ones are whole, checksums and all: only their numbers give them away."""
    j = journal(tmp_path, segment_bytes=300)
    for entry in lines("old", 6):  # two segments of three entries, the second still being written
        append_lines(j, entry)
    j.release([j.durable_end])  # the first becomes a spare
    start = j.durable_end
    append_lines(j, *lines("new", 1))  # starts a segment in the spare's file, over its first old entry
    crashed = j.durable_end
    tail = segment_path(tmp_path, crashed.segment)
    assert tail.stat().st_size == 3 * 113  # one new entry, then two old ones

    reopened = journal(tmp_path, segment_bytes=300)  # without close: as after a crash

    assert reopened.durable_end == crashed
    assert tail.stat().st_size == 113
    assert all_lines(reopened, start) == lines("new", 1)[0]
    append_lines(reopened, [b'{"after":1}'])
    assert all_lines(reopened, start) == [*lines("new", 1)[0], b'{"after":1}']
    assert reopened.durable_end.seq == crashed.seq + 1


def test_a_finished_segment_left_uncut_by_a_crash_is_recovered_on_reopen(tmp_path: Path):
    """A crash between finishing a segment and fsyncing its cut: its old entries must not count."""
    j = journal(tmp_path, segment_bytes=300)
    for entry in lines("a", 4):
        append_lines(j, entry)
    j.close()
    first, _ = list_segments(tmp_path)
    finished = segment_path(tmp_path, first)
    size = finished.stat().st_size
    with finished.open("ab") as segment:  # a whole entry of an earlier life, as an uncut recycled file holds
        segment.write(finished.read_bytes()[:113])

    reopened = journal(tmp_path, segment_bytes=300)

    assert finished.stat().st_size == size
    assert reopened.total_bytes == size + 113
    assert all_lines(reopened) == [entry[0] for entry in lines("a", 4)]


def test_checkpoints_round_trip(tmp_path: Path):
    store = CheckpointStore(tmp_path / "checkpoints")

    assert store.load("archive") is None
    store.save("archive", Position(10, 200, 7))
    assert store.load("archive") == Position(10, 200, 7)


def test_each_slot_is_held_by_one_owner_at_a_time(tmp_path: Path):
    first = Slot.first_free(tmp_path)
    second = Slot.first_free(tmp_path)

    assert (first.number, second.number) == (0, 1)
    assert Slot.try_claim(tmp_path / "slot-1") is None  # held, even by this very process
    first.release()
    assert Slot.first_free(tmp_path).number == 0


def test_undelivered_bytes_are_counted_from_the_sink_furthest_behind(tmp_path: Path):
    j = journal(tmp_path, segment_bytes=64)
    store = CheckpointStore(tmp_path / "checkpoints")
    append_lines(j, [b'{"a":1}'])
    middle = j.durable_end
    append_lines(j, [b'{"a":2}'])
    append_lines(j, [b'{"a":3}'])  # in a second segment
    total = j.total_bytes

    assert len(list_segments(tmp_path)) == 2
    assert undelivered_bytes(tmp_path, store, ["archive", "nats"]) == total  # no checkpoints: everything
    store.save("archive", j.durable_end)
    store.save("nats", middle)
    assert undelivered_bytes(tmp_path, store, ["archive"]) == 0
    assert undelivered_bytes(tmp_path, store, ["archive", "nats"]) == total - middle.offset
    assert undelivered_bytes(tmp_path / "empty", store, ["archive"]) == 0
