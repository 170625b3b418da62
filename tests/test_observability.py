from __future__ import annotations

import io
import logging
import queue
import threading
import time

from prometheus_client import REGISTRY

from app.observability import JsonFormatter, QueuedLines, StderrWriter


def dropped() -> float:
    return REGISTRY.get_sample_value("tailscribe_log_lines_dropped_total") or 0.0


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("tailscribe", logging.INFO, __file__, 1, message, None, None)


class StuckStream(io.StringIO):
    """A stderr whose reader has stopped: every write waits until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait()
        return super().write(text)


def test_a_full_queue_drops_lines_and_counts_them_instead_of_waiting() -> None:
    lines: queue.Queue[logging.LogRecord] = queue.Queue(2)
    handler = QueuedLines(lines)
    handler.setFormatter(JsonFormatter())
    before = dropped()

    started = time.monotonic()
    for number in range(5):
        handler.handle(record(f"line {number}"))

    assert time.monotonic() - started < 1
    assert dropped() == before + 3
    queued = [lines.get_nowait().getMessage() for _ in range(2)]
    assert '"msg":"line 0"' in queued[0] and '"msg":"line 1"' in queued[1]  # formatted as JSON before queueing


def test_lines_reach_the_stream_in_order_and_a_stop_flushes_them() -> None:
    lines: queue.Queue[logging.LogRecord] = queue.Queue(100)
    stream = io.StringIO()
    handler = QueuedLines(lines)
    writer = StderrWriter(lines, logging.StreamHandler(stream))
    writer.start()
    for number in range(20):
        handler.handle(record(f"line {number}"))

    writer.stop_within(5)

    assert stream.getvalue().splitlines() == [f"line {number}" for number in range(20)]


def test_stopping_gives_up_on_a_stuck_stream_instead_of_hanging_the_exit() -> None:
    lines: queue.Queue[logging.LogRecord] = queue.Queue(100)
    stream = StuckStream()
    handler = QueuedLines(lines)
    writer = StderrWriter(lines, logging.StreamHandler(stream))
    writer.start()
    handler.handle(record("first"))
    handler.handle(record("second"))

    started = time.monotonic()
    writer.stop_within(0.2)
    waited = time.monotonic() - started

    assert 0.2 <= waited < 2
    stream.release.set()  # the reader comes back: what was queued still goes out
    writer.stop_within(5)
    assert stream.getvalue().splitlines() == ["first", "second"]
