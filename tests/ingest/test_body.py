"""Reading bodies (app/ingest/body.py): capped, and spooled to disk while they wait when large."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.errors import BodyTooLarge, StorageUnavailable
from app.ingest.body import SPOOL_THRESHOLD, read_capped, read_spooled


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _read(data: bytes, spool_dir: Path, *, limit: int = 1 << 30, content_length: str | None = None):
    return asyncio.run(read_capped(_chunks(data), content_length=content_length, limit=limit, spool_dir=spool_dir))


def _files_open_in(directory: Path) -> int:
    links = (os.readlink(fd) for fd in Path("/proc/self/fd").iterdir() if fd.is_symlink())
    return sum(1 for link in links if link.startswith(str(directory)))


@pytest.mark.parametrize("size", [0, 1, SPOOL_THRESHOLD])
def test_a_small_body_waits_in_memory(size: int, tmp_path: Path) -> None:
    data = os.urandom(size)
    with _read(data, tmp_path) as spool:
        assert _files_open_in(tmp_path) == 0
        assert read_spooled(spool) == data


def test_a_large_body_waits_in_an_unnamed_file_that_closing_removes(tmp_path: Path) -> None:
    data = os.urandom(SPOOL_THRESHOLD + 1)
    with _read(data, tmp_path) as spool:
        assert _files_open_in(tmp_path) == 1
        assert list(tmp_path.iterdir()) == []  # nothing named, nothing left behind by a crash
        assert read_spooled(spool) == data
        assert spool.tell() == len(data)
    assert _files_open_in(tmp_path) == 0


def test_over_the_limit_is_refused_and_nothing_is_left_open(tmp_path: Path) -> None:
    with pytest.raises(BodyTooLarge):
        _read(os.urandom(3 * SPOOL_THRESHOLD), tmp_path, limit=2 * SPOOL_THRESHOLD)
    assert _files_open_in(tmp_path) == 0
    with pytest.raises(BodyTooLarge, match="Content-Length"):
        _read(b"", tmp_path, limit=10, content_length="11")


def test_a_body_that_cannot_be_spooled_is_a_storage_failure(tmp_path: Path) -> None:
    """A 503 the client retries, not a 500: a disk that cannot take the body could not store it either."""
    not_a_directory = tmp_path / "file"
    not_a_directory.write_bytes(b"")
    with pytest.raises(StorageUnavailable, match="spool"):
        _read(os.urandom(SPOOL_THRESHOLD + 1), not_a_directory)
