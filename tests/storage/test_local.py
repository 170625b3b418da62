from __future__ import annotations

import errno
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from app.errors import StorageUnavailable
from app.journal import Journal, JournalFull
from app.storage import Batch, RejectedBody
from app.storage import files as storage_files
from app.storage.local import LocalStorage, partition_path


def row(event_time: str, log_type: str = "Tailscale.Network", **extra: object) -> dict[str, object]:
    return {"p_log_type": log_type, "p_event_time": event_time, "p_parse_time": "2026-11-21T10:00:00.000000Z", **extra}


def batch_of(*rows: dict[str, object]) -> Batch:
    """A batch of accepted network rows, as the pipeline builds one."""
    batch = Batch()
    for accepted in rows:
        batch.ndjson += orjson.dumps(accepted, option=orjson.OPT_APPEND_NEWLINE)
        batch.counts["network"] += 1
    return batch


def storage(tmp_path: Path, **journal_options: int) -> LocalStorage:
    options = {"segment_bytes": 1 << 20, "max_bytes": 1 << 30} | journal_options
    return LocalStorage(tmp_path, Journal(tmp_path / "journal", **options))


def test_partition_path_is_hive_style():
    assert partition_path("2026-06-03T15:32:56.773000Z") == "year=2026/month=06/day=03/hour=15"
    assert partition_path("2026-06-03T15:32:56.773000Z", hours=False) == "year=2026/month=06/day=03"


def test_accepted_rows_go_to_the_journal_and_failed_ones_to_quarantine(tmp_path: Path):
    local = storage(tmp_path)

    local.store(batch_of(row("2026-06-03T15:00:00Z", n=1), row("2026-06-03T16:00:00Z", n=2)))
    local.store(Batch(quarantined=[{"p_parse_time": "2026-11-21T10:00:00.000000Z", "record": 5}]))

    entries = local.journal.read(local.journal.first_position, max_records=100, max_bytes=1 << 20)
    assert [orjson.loads(line)["n"] for entry in entries for line in entry.lines] == [1, 2]
    [quarantine] = (tmp_path / "quarantine/records/year=2026/month=11/day=21/hour=10").glob("*.ndjson")
    assert orjson.loads(quarantine.read_bytes())["record"] == 5
    assert not list((tmp_path / "archive").glob("**/*")), "the archive is the archive sink's job now"


def test_failed_quarantine_write_is_cut_back_and_reported_as_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    local = storage(tmp_path)
    bad = {"p_parse_time": "2026-11-21T10:00:00.000000Z", "record": 1}
    local.store(Batch(quarantined=[bad]))
    [path] = (tmp_path / "quarantine").glob("**/*.ndjson")
    before = path.read_bytes()
    real_writev = storage_files.os.writev
    calls = {"n": 0}

    def write_half_then_fail(fd: int, buffers: list[bytes]) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_writev(fd, [buffers[0][: len(buffers[0]) // 2]])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage_files.os, "writev", write_half_then_fail)
    with pytest.raises(StorageUnavailable, match="No space left"):
        local.store(Batch(quarantined=[dict(bad, pad="x" * 1000)]))

    assert path.read_bytes() == before


def test_rejected_body_is_kept_with_its_reason(tmp_path: Path):
    storage(tmp_path).store_rejected_body(
        RejectedBody(
            request_id="abc",
            received_at="2026-11-21T10:11:12.000000Z",
            reason="invalid_json",
            detail="truncated",
            body=b'{"time":',
            metadata={"user-agent": "TailscaleLogStreamPublisher"},
        )
    )

    [body] = (tmp_path / "quarantine/bodies/year=2026/month=11/day=21").glob("*.body")
    assert body.read_bytes() == b'{"time":'
    meta = orjson.loads(body.with_suffix(".json").read_bytes())
    assert meta["reason"] == "invalid_json" and meta["bytes"] == 8 and meta["user-agent"].startswith("Tailscale")


def test_unwritable_data_dir_is_reported(tmp_path: Path):
    local = storage(tmp_path)
    local.check_writable()
    # Permissions do not stop root (CI runs as root); a file where the directory was stops everyone.
    (tmp_path / "quarantine").rmdir()
    (tmp_path / "quarantine").write_bytes(b"")

    with pytest.raises(StorageUnavailable, match="not writable"):
        local.check_writable()


def test_probes_at_once_in_two_workers_and_threads_all_pass_and_leave_nothing(tmp_path: Path):
    """The quarantine directory is every worker's: probes of one file name took each other's file."""
    workers = [
        storage(tmp_path),
        LocalStorage(tmp_path, Journal(tmp_path / "journal-2", segment_bytes=1 << 20, max_bytes=1 << 30)),
    ]
    start = threading.Barrier(8)

    def probe(local: LocalStorage) -> None:
        start.wait()
        for _ in range(40):
            local.check_writable()

    with ThreadPoolExecutor(8) as pool:
        for done in [pool.submit(probe, workers[n % 2]) for n in range(8)]:
            done.result()  # raises what the thread raised

    assert not [path for path in tmp_path.rglob(".writable*")]


def test_a_full_journal_makes_storage_unready(tmp_path: Path):
    local = storage(tmp_path, max_bytes=10)
    local.store(batch_of(row("2026-06-03T15:00:00Z")))

    with pytest.raises(JournalFull):
        local.check_writable()


def test_a_failed_quarantine_write_leaves_nothing_in_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The sender retries a 503: rows journaled before the failure would then reach the sinks twice."""
    local = storage(tmp_path)
    batch = batch_of(row("2026-06-03T15:00:00Z", n=1))
    batch.quarantined.append({"p_parse_time": "2026-11-21T10:00:00.000000Z", "record": 1})

    def no_space(fd: int, buffers: list[bytes]) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage_files.os, "writev", no_space)
    with pytest.raises(StorageUnavailable, match="No space left"):
        local.store(batch)

    assert local.journal.read(local.journal.first_position, max_records=100, max_bytes=1 << 20) == []


def test_a_full_journal_refuses_before_anything_is_quarantined(tmp_path: Path):
    local = storage(tmp_path, max_bytes=1)
    local.store(batch_of(row("2026-06-03T15:00:00Z", n=1)))  # the journal is now over its cap
    batch = batch_of(row("2026-06-03T15:00:00Z", n=2))
    batch.quarantined.append({"p_parse_time": "2026-11-21T10:00:00.000000Z", "record": 2})

    with pytest.raises(JournalFull):
        local.store(batch)

    assert not list((tmp_path / "quarantine").glob("**/*.ndjson"))
