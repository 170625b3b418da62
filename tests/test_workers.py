"""`pin_worker`: a CPU of its own for each worker, claimed with lock files, only when the workers cover
every CPU. Each case runs in real processes, since pinning changes the process that asks for it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

CPUS = sorted(os.sched_getaffinity(0))
WORKER = """
import os, sys, threading
from pathlib import Path
import orjson
from app.workers import pin_worker

pin = pin_worker(int(sys.argv[1]), Path(sys.argv[2]))
seen = []
later = threading.Thread(target=lambda: seen.append(sorted(os.sched_getaffinity(0))))
later.start()
later.join()
print(orjson.dumps({"cpu": pin.cpu if pin else None, "later_thread": seen[0]}).decode(), flush=True)
sys.stdin.read()  # hold the claim until the test closes stdin
"""


class Worker:
    """A process that pins itself as one of `workers` and reports what it got."""

    def __init__(self, workers: int, directory: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(workers), str(directory)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        report = orjson.loads(self.process.stdout.readline())
        self.cpu: int | None = report["cpu"]
        self.later_thread: list[int] = report["later_thread"]
        self.affinity = sorted(os.sched_getaffinity(self.process.pid))

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


StartWorker = Callable[[int], Worker]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[StartWorker]:
    started: list[Worker] = []

    def start(count: int) -> Worker:
        started.append(Worker(count, tmp_path / "cpus"))
        return started[-1]

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.stop()


@pytest.mark.skipif(len(CPUS) < 2, reason="pinning needs two CPUs to choose from")
def test_each_worker_gets_a_cpu_of_its_own_and_a_restarted_one_gets_the_freed_cpu(workers: StartWorker) -> None:
    pinned = [workers(len(CPUS)) for _ in CPUS]

    assert sorted(worker.cpu for worker in pinned) == CPUS
    for worker in pinned:
        assert worker.affinity == worker.later_thread == [worker.cpu]
    extra = workers(len(CPUS))  # more workers than CPUs: the last ones float
    assert extra.cpu is None and extra.affinity == CPUS

    pinned[0].stop()
    assert workers(len(CPUS)).cpu == pinned[0].cpu


@pytest.mark.parametrize("count", sorted({1, len(CPUS) - 1} - {0}))
def test_fewer_workers_than_cpus_or_a_single_one_are_not_pinned(
    workers: StartWorker, tmp_path: Path, count: int
) -> None:
    worker = workers(count)

    assert worker.cpu is None and worker.affinity == worker.later_thread == CPUS
    assert not (tmp_path / "cpus").exists()
