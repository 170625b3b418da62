"""glibc malloc settings that keep a worker's memory close to what it actually holds.

A request body of several MB, and the rows made from it, are large buffers allocated in one worker
thread and freed in another. Left to its defaults, glibc malloc (Debian's, and the container's) keeps
such memory: it raises its mmap threshold after the first large buffer is freed, so later ones come
from the heap, and gives each thread its own arena, whose freed space no other thread reuses. Under
16 clients posting 11 MB bodies that cost hundreds of MB of resident memory per worker.

With a fixed threshold of 256 KiB, every large buffer is its own mapping, returned to the system as
soon as it is freed; two arenas bound how much freed small-object memory can be held apart. Measured
with bench/run.py's 11 MB bodies, one client, one worker: peak RSS 326 MB with the defaults, 170 MB
with both settings from process start, 243 MB when set with `mallopt` after start-up (arenas
already exist). So the settings are applied both ways: `mallopt` for this process, and glibc's
environment variables for the worker processes it starts, which read them before anything else.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from typing import Final

logger = logging.getLogger("app.allocator")

M_MMAP_THRESHOLD: Final = -3
M_ARENA_MAX: Final = -8
"""`mallopt` parameters, from glibc's malloc.h."""
MMAP_THRESHOLD_BYTES: Final = 256 * 1024
ARENAS: Final = 2
ENVIRONMENT: Final = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD_BYTES), "MALLOC_ARENA_MAX": str(ARENAS)}
"""The same settings as glibc reads them at a process's start (an operator's own values are kept)."""


def tune_allocator() -> bool:
    """Apply the settings above to this process and the ones it starts; False where there is no glibc."""
    for variable, value in ENVIRONMENT.items():
        os.environ.setdefault(variable, value)
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to tune
        return False
    applied = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and mallopt(M_ARENA_MAX, ARENAS) == 1
    if not applied:
        logger.warning("could not tune glibc malloc; large bodies may leave memory resident")
    return applied
