"""The runner with a real journal and checkpoints; the sink is a small recording implementation
of the plugin protocol, whose failures the tests script."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path
from typing import ClassVar

import orjson
import pytest
from prometheus_client import REGISTRY

from app.journal import Entry, Journal, Position
from app.journal.checkpoints import CheckpointStore
from app.sinks import runner as runner_module
from app.sinks.base import RetryableSinkError, SinkBatch, SinkConfig, SinkError, build_sink, sink_class
from app.sinks.runner import SinkGroup, SinkRunner
from tests.journal import append_lines


class RecordingSink:
    config_model: ClassVar[type[SinkConfig]] = SinkConfig

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.failures = failures or []
        self.batches: list[SinkBatch] = []
        self.closed = False

    async def start(self) -> None:
        pass

    async def write(self, batch: SinkBatch) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.batches.append(batch)

    async def close(self) -> None:
        self.closed = True

    def row_ids(self) -> list[str]:
        return [row["p_row_id"] for batch in self.batches for row in batch.rows]


def rows(*ids: str, log_type: str = "Tailscale.Network") -> list[bytes]:
    return [orjson.dumps({"p_row_id": i, "p_log_type": log_type}) for i in ids]


async def drain(group: SinkGroup, sink: RecordingSink, count: int) -> None:
    group.start()
    for _ in range(400):
        if len(sink.row_ids()) >= count:
            break
        await asyncio.sleep(0.01)
    await group.stop(timeout=5)


def make(tmp_path: Path, sink: RecordingSink, **options: object) -> tuple[Journal, SinkGroup, SinkRunner]:
    journal = Journal(tmp_path / "journal", segment_bytes=1 << 20, max_bytes=1 << 30)
    config = SinkConfig(type="recording", name="rec", **options)
    runner = SinkRunner(config, sink, journal, CheckpointStore(tmp_path / "checkpoints"))
    return journal, SinkGroup([runner], journal), runner


def test_every_row_is_delivered_in_order_and_the_checkpoint_follows(tmp_path: Path):
    sink = RecordingSink()
    journal, group, runner = make(tmp_path, sink)
    append_lines(journal, rows("a", "b"))
    append_lines(journal, rows("c"))

    asyncio.run(drain(group, sink, 3))

    assert sink.row_ids() == ["a", "b", "c"]
    assert CheckpointStore(tmp_path / "checkpoints").load("rec") == journal.durable_end
    assert sink.closed


def test_failures_are_retried_until_delivered_without_skipping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("app.sinks.runner.RETRY_BASE", 0.001)
    sink = RecordingSink(
        [
            RetryableSinkError("down"),
            SinkError("refused"),
            KeyError("a plugin bug"),
            RetryableSinkError("x", retry_after=0.01),
        ]
    )
    journal, group, _ = make(tmp_path, sink)
    append_lines(journal, rows("a", "b"))

    asyncio.run(drain(group, sink, 2))

    assert sink.row_ids() == ["a", "b"]


def test_a_restarted_runner_resumes_from_its_checkpoint(tmp_path: Path):
    first = RecordingSink()
    journal, group, _ = make(tmp_path, first)
    append_lines(journal, rows("a"))
    asyncio.run(drain(group, first, 1))
    append_lines(journal, rows("b"))
    journal.close()

    second = RecordingSink()
    _, group, _ = make(tmp_path, second)
    asyncio.run(drain(group, second, 1))

    assert second.row_ids() == ["b"]
    assert second.batches[0].first_seq == 1


def test_rows_of_unwanted_log_types_are_passed_over_but_the_checkpoint_advances(tmp_path: Path):
    sink = RecordingSink()
    journal, group, runner = make(tmp_path, sink, log_types=["audit"])
    append_lines(journal, rows("n1"))
    append_lines(journal, rows("a1", log_type="Tailscale.Audit"))

    asyncio.run(drain(group, sink, 1))

    assert sink.row_ids() == ["a1"]
    assert runner.position == journal.durable_end


def test_batches_wait_for_batch_max_age_then_go_together(tmp_path: Path):
    sink = RecordingSink()
    journal, group, _ = make(tmp_path, sink, batch_max_age=0.3)
    for i in range(5):
        append_lines(journal, rows(f"r{i}"))

    asyncio.run(drain(group, sink, 5))

    assert [len(batch.rows) for batch in sink.batches] == [5]


def test_a_runner_gathering_a_batch_reads_the_journal_at_its_deadline_not_after_every_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(runner_module, "IDLE_WAIT", 30.0)  # no periodic read either: only appends and the deadline
    sink = RecordingSink()
    journal, group, _ = make(tmp_path, sink, batch_max_age=2.0)  # far beyond the 20 appends, even on a slow machine
    reads: list[int] = []
    read = journal.read

    def counted_read(position: Position, *, max_records: int, max_bytes: int) -> list[Entry]:
        entries = read(position, max_records=max_records, max_bytes=max_bytes)
        reads.append(len(entries))
        return entries

    journal.read = counted_read  # type: ignore[method-assign]

    async def scenario() -> None:
        group.start()
        await asyncio.sleep(0.05)
        for i in range(20):  # as requests do: each append from a worker thread, which wakes the runner
            await asyncio.to_thread(append_lines, journal, rows(f"r{i}"))
            await asyncio.sleep(0.005)
        for _ in range(600):
            if len(sink.row_ids()) == 20:
                break
            await asyncio.sleep(0.01)
        await group.stop(timeout=5)

    asyncio.run(scenario())

    assert sink.row_ids() == [f"r{i}" for i in range(20)]
    assert [len(batch.rows) for batch in sink.batches] == [20]
    assert len(reads) <= 6, reads  # woken by every append, it read twice per append: 40 reads


@pytest.mark.parametrize("limit", [{"batch_max_records": 10}, {"batch_max_bytes": 600}])
def test_a_runner_gathering_a_batch_delivers_it_as_soon_as_appends_fill_it(
    tmp_path: Path, limit: dict[str, int], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(runner_module, "IDLE_WAIT", 30.0)  # no periodic read: only the filling append wakes it
    sink = RecordingSink()
    journal, group, _ = make(tmp_path, sink, batch_max_age=30, **limit)

    async def scenario() -> list[str]:
        group.start()
        await asyncio.sleep(0.05)
        for i in range(25):  # one at a time, so the runner holds a part of a batch in between
            await asyncio.to_thread(append_lines, journal, rows(f"r{i:02d}"))
            await asyncio.sleep(0.01)
        for _ in range(300):  # 3 s, where the batch's deadline is 30 s away
            if len(sink.batches) >= 2:
                break
            await asyncio.sleep(0.01)
        delivered = sink.row_ids()
        await group.stop(timeout=5)
        return delivered

    delivered = asyncio.run(scenario())

    assert len(sink.batches) >= 2 and all(len(batch.rows) <= 10 for batch in sink.batches)
    assert len(delivered) >= 16 and delivered == [f"r{i:02d}" for i in range(len(delivered))]


def test_delivered_segments_are_deleted(tmp_path: Path):
    sink = RecordingSink()
    journal = Journal(tmp_path / "journal", segment_bytes=64, max_bytes=1 << 30)
    runner = SinkRunner(SinkConfig(type="r", name="rec"), sink, journal, CheckpointStore(tmp_path / "cp"))
    group = SinkGroup([runner], journal)
    for i in range(6):
        append_lines(journal, rows(f"x{i}"))
    assert journal.segment_count > 3

    asyncio.run(drain(group, sink, 6))
    asyncio.run(asyncio.sleep(0))

    journal.release(group.positions())
    assert journal.segment_count == 1


def test_unknown_sink_type_and_bad_options_name_the_problem():
    with pytest.raises(ValueError, match="unknown sink type 'kafka'"):
        sink_class("kafka")
    with pytest.raises(ValueError, match="colour"):
        build_sink({"type": "archive", "colour": "red"})


def test_third_party_sinks_load_from_the_entry_point_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    package = tmp_path / "acme_sink.py"
    package.write_text(
        textwrap.dedent(
            """
            from typing import ClassVar
            from app.sinks.base import SinkConfig

            class AcmeConfig(SinkConfig):
                endpoint: str

            class AcmeSink:
                config_model: ClassVar[type[SinkConfig]] = AcmeConfig

                def __init__(self, config):
                    self.config = config
            """
        )
    )
    dist = tmp_path / "acme_sink-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-sink\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[tailscribe.sinks]\nacme = acme_sink:AcmeSink\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    config, sink = build_sink({"type": "acme", "endpoint": "https://siem.example"})

    assert type(sink).__name__ == "AcmeSink" and sys.modules["acme_sink"]
    assert config.name == "acme" and sink.config.endpoint == "https://siem.example"  # type: ignore[attr-defined]


def test_a_sinks_lag_gauges_cover_every_journal_the_process_drains(tmp_path: Path):
    """Two runners of one sink (the process's own slot, and an adopted one): rows sum, age is the worst;
    a runner that ends takes its share with it."""

    def lag() -> tuple[float | None, float | None]:
        labels = {"sink": "lagged"}
        return (
            REGISTRY.get_sample_value("tailscribe_sink_lag_records", labels),
            REGISTRY.get_sample_value("tailscribe_sink_lag_seconds", labels),
        )

    config = SinkConfig(type="recording", name="lagged")
    own = Journal(tmp_path / "own", segment_bytes=1 << 20, max_bytes=1 << 30)
    adopted = Journal(tmp_path / "adopted", segment_bytes=1 << 20, max_bytes=1 << 30)
    append_lines(own, rows("a", "b"))
    append_lines(adopted, rows("c", "d", "e"))
    main = SinkRunner(config, RecordingSink(), own, CheckpointStore(tmp_path / "own-checkpoints"))
    assert lag() == (2, 0.0)
    drain_runner = SinkRunner(config, RecordingSink(), adopted, CheckpointStore(tmp_path / "adopted-checkpoints"))
    assert lag() == (5, 0.0)

    async def run_until_caught_up(runner: SinkRunner) -> None:
        task = asyncio.create_task(runner.run())
        while runner.position != runner.journal.durable_end:
            await asyncio.sleep(0.01)
        runner.stop()
        await task

    asyncio.run(run_until_caught_up(drain_runner))
    assert lag() == (2, 0.0)
    main.stop()
