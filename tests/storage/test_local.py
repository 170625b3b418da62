from __future__ import annotations

import errno
from pathlib import Path

import orjson
import pytest

from app.errors import StorageUnavailable
from app.storage import Batch, RejectedBody
from app.storage import files as storage_files
from app.storage.local import LocalStorage, partition_path


def row(event_time: str, log_type: str = "Tailscale.Network", **extra: object) -> dict[str, object]:
    return {"p_log_type": log_type, "p_event_time": event_time, "p_parse_time": "2026-11-21T10:00:00.000000Z", **extra}


def test_partition_path_is_hive_style():
    assert partition_path("2026-06-03T15:32:56.773000Z") == "year=2026/month=06/day=03/hour=15"
    assert partition_path("2026-06-03T15:32:56.773000Z", hours=False) == "year=2026/month=06/day=03"


def test_rows_land_in_one_file_per_log_type_and_event_hour(tmp_path: Path):
    storage = LocalStorage(tmp_path)
    batch = Batch(
        accepted=[row("2026-06-03T15:00:00Z", n=1), row("2026-06-03T16:59:59Z", n=2), row("2026-06-03T15:30:00Z", n=3)]
        + [row("2026-06-03T15:00:00Z", "Tailscale.Audit", n=4)],
        quarantined=[{"p_parse_time": "2026-11-21T10:00:00.000000Z", "record": 5}],
    )

    storage.store(batch)

    archive = tmp_path / "archive"
    hour15 = list(archive.glob("log_type=Tailscale.Network/year=2026/month=06/day=03/hour=15/*.ndjson"))
    hour16 = list(archive.glob("log_type=Tailscale.Network/year=2026/month=06/day=03/hour=16/*.ndjson"))
    audit = list(archive.glob("log_type=Tailscale.Audit/**/*.ndjson"))
    quarantine = list((tmp_path / "quarantine/records/year=2026/month=11/day=21/hour=10").glob("*.ndjson"))
    assert [orjson.loads(line)["n"] for line in hour15[0].read_bytes().splitlines()] == [1, 3]
    assert [orjson.loads(line)["n"] for line in hour16[0].read_bytes().splitlines()] == [2]
    assert len(audit) == 1 and len(quarantine) == 1


def test_second_batch_appends_to_the_same_file(tmp_path: Path):
    storage = LocalStorage(tmp_path)
    storage.store(Batch(accepted=[row("2026-06-03T15:00:00Z", n=1)]))
    storage.store(Batch(accepted=[row("2026-06-03T15:00:00Z", n=2)]))

    [path] = (tmp_path / "archive").glob("**/*.ndjson")
    assert path.read_bytes().count(b"\n") == 2


def test_failed_write_is_cut_back_and_reported_as_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    storage = LocalStorage(tmp_path)
    storage.store(Batch(accepted=[row("2026-06-03T15:00:00Z", n=1)]))
    [path] = (tmp_path / "archive").glob("**/*.ndjson")
    before = path.read_bytes()
    real_write = storage_files.os.write
    calls = {"n": 0}

    def write_half_then_fail(fd: int, data: memoryview) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage_files.os, "write", write_half_then_fail)
    with pytest.raises(StorageUnavailable, match="No space left"):
        storage.store(Batch(accepted=[row("2026-06-03T15:00:00Z", n=2, pad="x" * 1000)]))

    assert path.read_bytes() == before


def test_rejected_body_is_kept_with_its_reason(tmp_path: Path):
    storage = LocalStorage(tmp_path)

    storage.store_rejected_body(
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
    storage = LocalStorage(tmp_path)
    storage.check_writable()
    # Permissions do not stop root (CI runs as root); a file where the directory was stops everyone.
    (tmp_path / "archive").rmdir()
    (tmp_path / "archive").write_bytes(b"")

    with pytest.raises(StorageUnavailable, match="not writable"):
        storage.check_writable()
