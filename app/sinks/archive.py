"""The local archive sink: NDJSON rows laid out Hive style, the default place rows end up.

    <path>/log_type=Tailscale.Network/year=2026/month=06/day=03/hour=15/part-<start>-<stream>-<pid>-<n>.ndjson[.gz|.zst]

Partitioned by event hour, so DuckDB (`read_json('data/archive/**/*.ndjson*', hive_partitioning =
true)`), Athena or Spark read the tree as a table. A part file rotates at `max_file_bytes` or
`max_file_age`. Compressed files grow by one gzip member or zstd frame per write, which every
reader of those formats decodes as one stream (RFC 1952 §2.2, RFC 8878 §3.1).

Exactly once, although the runner delivers at least once: before appending a batch, the sink
durably notes the batch's (`stream`, `first_seq`) and the sizes of the files it is about to grow,
in a state file per stream (each worker's journal is a stream of its own). If the process dies
before the runner's checkpoint passes that batch, the batch comes again with the same `first_seq`,
and the sink first cuts those files back to the noted sizes, so no row is written twice. Files are
never shared between streams, so cutting one back never touches another worker's rows.
"""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path
from typing import ClassVar, Final, Literal

import orjson
import zstandard
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from app.sinks.base import RetryableSinkError, SinkBatch, SinkConfig, by_partition, join_lines
from app.storage.files import durable_append, durable_write, ensure_dir

MiB: Final = 1024 * 1024
EXTENSIONS: Final = {"none": ".ndjson", "gzip": ".ndjson.gz", "zstd": ".ndjson.zst"}
STATE_DIR: Final = ".tailscribe"
NEWLINE: Final = b"\n"


class ArchiveSinkConfig(SinkConfig):
    type: Literal["archive"] = "archive"
    path: Path = Field(Path("data/archive"), description="Root of the archive tree; <data_dir>/archive by default.")
    compression: Literal["none", "gzip", "zstd"] = Field("none", description="Compress part files.")
    max_file_bytes: int = Field(256 * MiB, gt=0, description="Start a new part file past this size.")
    max_file_age: float = Field(3600.0, gt=0, description="Start a new part file after this many seconds.")
    batch_max_age: float = Field(
        0.25,
        ge=0,
        description="Seconds to gather rows before a write: the journal already holds them durably, and each "
        "write costs a few fsyncs, so small requests are archived together.",
    )


class ArchiveSink:
    config_model: ClassVar[type[SinkConfig]] = ArchiveSinkConfig

    def __init__(self, config: ArchiveSinkConfig) -> None:
        self.config = config
        self.root = config.path
        self._states: dict[str, dict[str, object]] = {}  # stream → its last write's first_seq and file sizes
        self._files: dict[str, tuple[str, float]] = {}  # stream/partition → (current part file, opened at)
        self._stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self._counter = 0

    async def start(self) -> None:
        await run_in_threadpool(ensure_dir, self.root)

    def _state_path(self, stream: str) -> Path:
        return self.root / STATE_DIR / f"{self.config.name or 'archive'}-{stream}.json"

    def _state(self, stream: str) -> dict[str, object]:
        if stream not in self._states:
            path = self._state_path(stream)
            self._states[stream] = orjson.loads(path.read_bytes()) if path.exists() else {}
        return self._states[stream]

    async def write(self, batch: SinkBatch) -> None:
        try:
            await run_in_threadpool(self._write, batch)
        except OSError as exc:
            raise RetryableSinkError(f"could not write the archive under {self.root}: {exc.strerror}") from exc

    def _write(self, batch: SinkBatch) -> None:
        state = self._state(batch.stream)
        if state.get("first_seq") == batch.first_seq:
            self._undo(state["sizes"])  # type: ignore[arg-type]
        grouped = by_partition(batch.lines, lambda log_type: f"log_type={log_type}")
        targets = {self._part_file(partition, batch.stream): rows for partition, rows in grouped.items()}
        sizes = {name: self._size(name) for name in targets}
        self._states[batch.stream] = {"first_seq": batch.first_seq, "sizes": sizes}
        durable_write(self._state_path(batch.stream), orjson.dumps(self._states[batch.stream]))
        for name, rows in targets.items():
            durable_append(self.root / name, self._encode(rows))

    def _undo(self, sizes: dict[str, int]) -> None:
        """Cut files back to what they held before an interrupted write of the same batch."""
        for name, size in sizes.items():
            path = self.root / name
            if path.exists() and path.stat().st_size > size:
                with path.open("r+b") as file:
                    file.truncate(size)
                    os.fsync(file.fileno())

    def _part_file(self, partition: str, stream: str) -> str:
        """The part file rows of `partition` from `stream` go to now, rotating by size and age."""
        current = self._files.get(f"{stream}/{partition}")
        now = time.time()
        if current is not None:
            name, opened = current
            if self._size(name) < self.config.max_file_bytes and now - opened < self.config.max_file_age:
                return name
        self._counter += 1
        name = f"{partition}/part-{self._stamp}-{stream}-{os.getpid()}-{self._counter:04d}"
        name += EXTENSIONS[self.config.compression]
        self._files[f"{stream}/{partition}"] = (name, now)
        return name

    def _size(self, name: str) -> int:
        path = self.root / name
        return path.stat().st_size if path.exists() else 0

    def _encode(self, lines: list[bytes]) -> list[bytes]:
        """The pieces to append for `lines`: each line and a newline, written as they are, or one
        compressed member or frame of them all."""
        if self.config.compression == "none":
            return [piece for line in lines for piece in (line, NEWLINE)]
        data = join_lines(lines)
        if self.config.compression == "gzip":
            return [gzip.compress(data, compresslevel=6)]
        return [zstandard.ZstdCompressor().compress(data)]

    async def close(self) -> None:
        self._files.clear()
