from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from app.ingest.body import decode_body
from app.sinks.archive import ArchiveSink, ArchiveSinkConfig
from app.sinks.base import SinkBatch


def row(n: int, log_type: str = "Tailscale.Network", hour: str = "15") -> dict[str, object]:
    return {"n": n, "p_log_type": log_type, "p_event_time": f"2026-06-03T{hour}:32:56.773000Z", "p_row_id": f"{n:032x}"}


def sink(root: Path, **options: object) -> ArchiveSink:
    archive = ArchiveSink(ArchiveSinkConfig(type="archive", name="archive", path=root, **options))
    asyncio.run(archive.start())
    return archive


def archived(root: Path) -> list[int]:
    lines = []
    for path in sorted(root.glob("log_type=*/**/*.ndjson*")):
        data = decode_body(path.read_bytes(), None, limit=1 << 30)  # every gzip member, every zstd frame
        lines += [orjson.loads(line)["n"] for line in data.splitlines()]
    return sorted(lines)


def test_rows_are_partitioned_by_log_type_and_event_hour(tmp_path: Path):
    archive = sink(tmp_path)

    asyncio.run(archive.write(SinkBatch([row(1), row(2, hour="16"), row(3, "Tailscale.Audit")], first_seq=0)))

    assert len(list(tmp_path.glob("log_type=Tailscale.Network/year=2026/month=06/day=03/hour=15/*.ndjson"))) == 1
    assert len(list(tmp_path.glob("log_type=Tailscale.Network/year=2026/month=06/day=03/hour=16/*.ndjson"))) == 1
    assert len(list(tmp_path.glob("log_type=Tailscale.Audit/**/*.ndjson"))) == 1
    assert archived(tmp_path) == [1, 2, 3]


def test_a_replayed_batch_is_written_once_even_after_a_restart(tmp_path: Path):
    first = sink(tmp_path)
    asyncio.run(first.write(SinkBatch([row(1)], first_seq=0, stream="slot-0")))
    asyncio.run(first.write(SinkBatch([row(2), row(3)], first_seq=1, stream="slot-0")))

    # The process died before the runner's checkpoint passed seq 1: the batch comes again,
    # this time with more rows behind it, to a new process.
    restarted = sink(tmp_path)
    asyncio.run(restarted.write(SinkBatch([row(2), row(3), row(4)], first_seq=1, stream="slot-0")))

    assert archived(tmp_path) == [1, 2, 3, 4]


def test_streams_never_undo_each_others_rows(tmp_path: Path):
    one, two = sink(tmp_path), sink(tmp_path)

    asyncio.run(one.write(SinkBatch([row(1)], first_seq=0, stream="slot-0")))
    asyncio.run(two.write(SinkBatch([row(2)], first_seq=0, stream="slot-1")))
    asyncio.run(sink(tmp_path).write(SinkBatch([row(3)], first_seq=0, stream="slot-1")))  # slot-1 replays

    assert archived(tmp_path) == [1, 3]  # row 2 was slot-1's interrupted batch, replaced by its replay


def test_compressed_part_files_hold_every_batch(tmp_path: Path):
    for compression, suffix in (("gzip", ".gz"), ("zstd", ".zst")):
        root = tmp_path / compression
        archive = sink(root, compression=compression)
        asyncio.run(archive.write(SinkBatch([row(1), row(2)], first_seq=0)))
        asyncio.run(archive.write(SinkBatch([row(3)], first_seq=2)))

        [path] = root.glob("log_type=*/**/*.ndjson*")
        assert path.suffix == suffix
        assert archived(root) == [1, 2, 3]


def test_part_files_rotate_at_max_file_bytes(tmp_path: Path):
    archive = sink(tmp_path, max_file_bytes=150)

    for n in range(4):
        asyncio.run(archive.write(SinkBatch([row(n)], first_seq=n)))

    assert len(list(tmp_path.glob("log_type=*/**/*.ndjson"))) == 2
    assert archived(tmp_path) == [0, 1, 2, 3]
