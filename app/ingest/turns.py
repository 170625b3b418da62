"""Turns at preparing a body, taken by the worker threads that prepare and store requests.

A request's body is prepared (decoded, framed, validated, enriched) and then stored (journal append,
fsync wait) in one worker thread, so a request costs one hand-off to a thread and back rather than
two. A hand-off is not cheap on this project's VMs, about 90 µs of CPU: without the second, a 1-record
request costs 8-25% less CPU (bench/RESULTS.md, "One thread hop a request"). The limit on
bodies prepared at once (`processing_concurrency`) is therefore taken in that thread, not on the
event loop, and released before the fsync wait, so the next body is prepared while this one's
append waits for its sync and appends still share fsyncs.
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType


class Turns:
    """A semaphore for threads that gives a freed slot to the thread that has waited longest.

    `threading.Semaphore` lets a thread arriving just as a slot frees take it ahead of the threads
    already waiting, so under load a request could wait for many others that came after it; with it
    in place of this, p99 latency at peak load rose from 108-120 to 161-381 ms (bench/RESULTS.md).
    Requests are prepared in the order they reached here, as they were while they queued on the
    event loop's FIFO `asyncio.Semaphore`.
    """

    def __init__(self, slots: int) -> None:
        self._lock = threading.Lock()
        self._free = slots
        self._waiting: deque[threading.Lock] = deque()

    def __enter__(self) -> None:
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiting.append(turn)
        turn.acquire()  # released by the `__exit__` that hands this thread its slot

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().release()  # the slot passes on without ever being free
            else:
                self._free += 1
