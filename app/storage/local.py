"""What the request path stores before it answers: accepted rows in the journal, the rest in quarantine.

    data/journal/slot-<n>/<first seq>.log                           accepted rows, until every sink has them
    data/quarantine/records/year=.../hour=HH/part-<writer>.ndjson   rows that failed their schema
    data/quarantine/bodies/year=.../day=DD/<time>-<request id>.body bodies that failed as a whole
                                                        (+ .json)   why, and the request's headers

The journal is fsynced before the answer (`app.journal`); so is the quarantine, which stays local
and outside the sinks: it is for an operator to inspect and replay (`tailscribe send`). Each
process writes its own quarantine `part-<start time>-<pid>` file, so workers never interleave lines.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from pathlib import Path

import orjson

from app.errors import StorageUnavailable
from app.journal import Journal, JournalFull
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
    """The journal plus the quarantine under one data directory; every write is fsynced before return."""

    def __init__(self, data_dir: Path, journal: Journal) -> None:
        self.journal = journal
        self.quarantine_dir = data_dir / "quarantine"
        self.part_name = f"part-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}.ndjson"
        ensure_dir(self.quarantine_dir)

    def store(self, batch: Batch) -> None:
        """Quarantine first, then the journal: a failure between the two makes the sender retry the
        request, and the rows written before it are written again. Duplicated quarantine rows stay on
        this disk; duplicated journal rows would reach every sink. A full journal, the usual refusal
        (sinks behind), is checked before anything is written."""
        if batch.accepted:
            self.journal.check_room()
        files: defaultdict[Path, list[Row]] = defaultdict(list)
        for row in batch.quarantined:
            files[self.quarantine_dir / "records" / partition_path(row["p_parse_time"]) / self.part_name].append(row)
        try:
            for path, rows in files.items():
                durable_append(path, [ndjson(rows)])
        except OSError as exc:
            raise StorageUnavailable(f"could not write to the data directory: {exc.strerror}") from exc
        if batch.accepted:
            self.journal.append(batch.ndjson, batch.accepted)

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
        """Write, fsync and remove a probe file in the journal's and the quarantine's directories.

        The probe is named for its process and thread: the quarantine directory is every worker's, and
        two probes of one name raced (one's unlink took the other's file, which then failed with 503).
        """
        if self.journal.is_full():
            raise JournalFull("the journal is over journal_max_bytes: sinks are behind", retry_after=30)
        for directory in (self.journal.directory, self.quarantine_dir):
            probe = directory / f".writable-{os.getpid()}-{threading.get_ident()}"
            try:
                durable_write(probe, b"ok")
                probe.unlink()
            except OSError as exc:
                raise StorageUnavailable(f"{directory} is not writable: {exc.strerror}") from exc
