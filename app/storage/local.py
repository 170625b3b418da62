"""The local archive: NDJSON rows laid out Hive style, plus the quarantine beside it.

    data/archive/log_type=Tailscale.Network/year=2026/month=06/day=03/hour=15/part-<writer>.ndjson
    data/quarantine/records/year=.../hour=HH/part-<writer>.ndjson     rows that failed their schema
    data/quarantine/bodies/year=.../day=DD/<time>-<request id>.body   bodies that failed as a whole
                                                         (+ .json)    why, and the request's headers

Archive rows are partitioned by event time, so DuckDB (`read_json('data/archive/**/*.ndjson',
hive_partitioning=true)`), Athena or Spark read the tree as a table. Each process writes its own
`part-<start time>-<pid>` file, so several workers never interleave their lines, and a restarted
process never appends behind a line a crash may have cut short.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

import orjson

from app.errors import StorageUnavailable
from app.storage import Batch, RejectedBody
from app.storage.files import durable_append, durable_write, ensure_dir
from app.types import Row


def partition_path(timestamp: str, *, hours: bool = True) -> str:
    """`year=YYYY/month=MM/day=DD[/hour=HH]` of an RFC 3339 UTC timestamp such as p_event_time."""
    path = f"year={timestamp[0:4]}/month={timestamp[5:7]}/day={timestamp[8:10]}"
    return f"{path}/hour={timestamp[11:13]}" if hours else path


def ndjson(rows: list[Row]) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


class LocalStorage:
    """The archive and quarantine under one data directory; every write is fsynced before return."""

    def __init__(self, data_dir: Path) -> None:
        self.archive_dir = data_dir / "archive"
        self.quarantine_dir = data_dir / "quarantine"
        self.part_name = f"part-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}.ndjson"
        ensure_dir(self.archive_dir)
        ensure_dir(self.quarantine_dir)

    def store(self, batch: Batch) -> None:
        files: defaultdict[Path, list[Row]] = defaultdict(list)
        for row in batch.accepted:
            partition = f"log_type={row['p_log_type']}/{partition_path(row['p_event_time'])}"
            files[self.archive_dir / partition / self.part_name].append(row)
        for row in batch.quarantined:
            files[self.quarantine_dir / "records" / partition_path(row["p_parse_time"]) / self.part_name].append(row)
        try:
            for path, rows in files.items():
                durable_append(path, ndjson(rows))
        except OSError as exc:
            raise StorageUnavailable(f"could not write to the data directory: {exc.strerror}") from exc

    def store_rejected_body(self, rejected: RejectedBody) -> None:
        directory = self.quarantine_dir / "bodies" / partition_path(rejected.received_at, hours=False)
        stem = f"{rejected.received_at.replace(':', '')}-{rejected.request_id}"
        meta = {
            "request_id": rejected.request_id,
            "received_at": rejected.received_at,
            "reason": rejected.reason,
            "detail": rejected.detail,
            "bytes": len(rejected.body),
            **rejected.metadata,
        }
        try:
            durable_write(directory / f"{stem}.body", rejected.body)
            durable_write(directory / f"{stem}.json", orjson.dumps(meta, option=orjson.OPT_INDENT_2))
        except OSError as exc:
            raise StorageUnavailable(f"could not keep the rejected body: {exc.strerror}") from exc

    def check_writable(self) -> None:
        probe = self.archive_dir / ".writable"
        try:
            durable_write(probe, b"ok")
            probe.unlink()
        except OSError as exc:
            raise StorageUnavailable(f"the data directory is not writable: {exc.strerror}") from exc
