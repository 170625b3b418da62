"""glibc malloc tuning (app/allocator.py): applied in every process that serves requests."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from app.allocator import tune_allocator

GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_glibc_takes_the_settings() -> None:
    assert tune_allocator() is True


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_a_freed_large_buffer_goes_back_to_the_system() -> None:
    """With glibc's default, 1 MB buffers freed below a live allocation stay resident; tuned, they are unmapped."""
    script = """
import sys
from app.allocator import tune_allocator
if sys.argv[1] == "tuned":
    tune_allocator()
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024
big = bytearray(8 << 20); del big          # raises glibc's dynamic mmap threshold to 8 MB
before = rss()
parts = [bytearray(1 << 20) for _ in range(40)]  # 40 MB from the heap unless mmapped one by one
keep = bytearray(200_000)                         # allocated last, from the heap: pins its top
del parts
print(rss() - before)
"""
    grown = {
        mode: int(subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True).stdout)
        for mode in ("default", "tuned")
    }
    assert grown["tuned"] < 8 and grown["default"] >= 30, grown
