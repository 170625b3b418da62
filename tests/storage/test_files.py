from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
from pathlib import Path

import pytest

from app.storage import files
from app.storage.files import IOV_MAX, PAGE_SIZE, durable_append

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]


def resident_pages(path: Path) -> list[int]:
    """The indexes of `path`'s pages in the page cache, by mincore(2) on a read-only mapping of it."""
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert address != ctypes.c_void_p(-1).value, os.strerror(ctypes.get_errno())
        try:
            pages = ctypes.create_string_buffer(-(-size // PAGE_SIZE))
            assert libc.mincore(address, size, pages) == 0, os.strerror(ctypes.get_errno())
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)
    return [index for index, flags in enumerate(pages.raw) if flags & 1]


@pytest.fixture
def droppable(tmp_path: Path) -> Path:
    """`tmp_path`, if its filesystem lets written pages go when asked (tmpfs has no other copy to keep)."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"x" * 4 * PAGE_SIZE)
    fd = os.open(probe, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    if resident_pages(probe):
        pytest.skip("this filesystem keeps written pages in memory whatever it is advised")
    return tmp_path


def test_appended_bytes_leave_the_page_cache_once_durable_but_for_the_partly_filled_last_page(droppable: Path) -> None:
    path = droppable / "part.ndjson"
    written = b""
    for size in (100, 5 * PAGE_SIZE + 17, PAGE_SIZE - 200, 3 * PAGE_SIZE + 1):
        chunk = bytes([len(written) % 251]) * size
        durable_append(path, [chunk])
        written += chunk
        # Kept: only the page the next append writes into, so it need not be read back from disk first.
        assert resident_pages(path) == [(len(written) - 1) // PAGE_SIZE]
    assert path.read_bytes() == written


def test_an_append_ending_on_a_page_boundary_keeps_no_page(droppable: Path) -> None:
    path = droppable / "part.ndjson"
    durable_append(path, [b"a" * 100])
    durable_append(path, [b"b" * (2 * PAGE_SIZE - 100)])
    assert resident_pages(path) == []
    assert path.read_bytes() == b"a" * 100 + b"b" * (2 * PAGE_SIZE - 100)


def test_parts_are_appended_in_order_across_short_writes_and_more_than_iov_max_buffers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "part.ndjson"
    durable_append(path, [b"old\n"])
    parts = [b"%d" % n if n % 7 else b"" for n in range(IOV_MAX * 2 + 5)]  # empty ones too
    real_writev = os.writev
    calls = []

    def short_writev(fd: int, buffers: list[bytes]) -> int:
        """At most 5 bytes a call, cutting buffers anywhere, as a signal or a full disk may."""
        calls.append(len(buffers))
        return real_writev(fd, [b"".join(bytes(buffer) for buffer in buffers)[:5]])

    monkeypatch.setattr(files.os, "writev", short_writev)
    durable_append(path, parts)
    assert path.read_bytes() == b"old\n" + b"".join(parts)
    assert max(calls) == IOV_MAX  # never more buffers than one call takes


def test_a_large_append_is_one_writev_per_iov_max_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "part.ndjson"
    lines = [b"x" * 100, b"\n"] * (IOV_MAX + 1)
    calls = []
    real_writev = os.writev

    def counting_writev(fd: int, buffers: list[bytes]) -> int:
        calls.append(len(buffers))
        return real_writev(fd, buffers)

    monkeypatch.setattr(files.os, "writev", counting_writev)
    durable_append(path, lines)
    assert calls == [IOV_MAX, IOV_MAX, 2]
    assert path.read_bytes() == (b"x" * 100 + b"\n") * (IOV_MAX + 1)
