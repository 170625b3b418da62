"""glibc malloc tuning (app/allocator.py): applied in every process that serves requests."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from app.allocator import ENVIRONMENT, tune_allocator

GLIBC = platform.libc_ver()[0] == "glibc"


def _without_tuning() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in ENVIRONMENT}


@pytest.fixture
def untuned(monkeypatch: pytest.MonkeyPatch) -> None:
    """No glibc variable set, and none left set after the test, whatever `tune_allocator` sets."""
    for name in ENVIRONMENT:
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
@pytest.mark.usefixtures("untuned")
def test_glibc_takes_the_settings_and_processes_started_later_inherit_them() -> None:
    assert tune_allocator() is True
    assert {name: os.environ[name] for name in ENVIRONMENT} == {
        "MALLOC_MMAP_THRESHOLD_": "262144",
        "MALLOC_ARENA_MAX": "2",
    }


@pytest.mark.usefixtures("untuned")
def test_an_operators_own_setting_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    tune_allocator()
    assert os.environ["MALLOC_ARENA_MAX"] == "4"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_a_freed_large_buffer_goes_back_to_the_system() -> None:
    """With glibc's default, 1 MB buffers freed below a live allocation stay resident; tuned, they are unmapped."""
    script = """
import sys
from app.allocator import ENVIRONMENT, tune_allocator
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
        mode: int(
            subprocess.run(
                [sys.executable, "-c", script, mode], capture_output=True, text=True, env=_without_tuning()
            ).stdout
        )
        for mode in ("default", "tuned")
    }
    assert grown["tuned"] < 8 and grown["default"] >= 30, grown
