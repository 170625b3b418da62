"""A restart with fewer workers: rows acknowledged in a slot no worker claims any more still reach the archive."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from app.journal import Journal
from tests.e2e.conftest import MakeServer
from tests.journal import append_lines, lock_is_free
from tests.samples import envelope, network_event, stored_line


def leave_acknowledged_rows(slot_dir: Path, count: int) -> list[str]:
    """What worker 1 of a two-worker run leaves when it stops before its sinks deliver: rows in its journal."""
    parse_time = datetime.now(UTC)
    lines = [
        stored_line(
            envelope(network_event(f"orphan-{n}")), source_id="default", source_label="default", parse_time=parse_time
        ).rstrip(b"\n")
        for n in range(count)
    ]
    journal = Journal(slot_dir, segment_bytes=64 * 1024 * 1024, max_bytes=1 << 30)
    append_lines(journal, lines[: count // 2])
    append_lines(journal, lines[count // 2 :])
    journal.close()
    return [orjson.loads(line)["p_row_id"] for line in lines]


def test_one_worker_delivers_what_a_second_worker_of_the_last_run_left_behind(make_server: MakeServer, tmp_path: Path):
    orphan = tmp_path / "data" / "journal" / "slot-1"
    expected = leave_acknowledged_rows(orphan, 40)

    server = make_server()  # one worker, the default archive sink, slot-0 of its own

    def archived() -> list[str]:  # waits while the archive sink has rows to deliver, the adopted slot's included
        return sorted(str(row["p_row_id"]) for row in server.archive_rows("Tailscale.Network"))

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (len(archived()) >= len(expected) and lock_is_free(orphan)):
        time.sleep(0.1)

    assert archived() == sorted(expected), server.logs()[-3000:]
    assert lock_is_free(orphan), "the drained slot is still locked"
    assert "journal slot adopted" in server.logs()
    assert "journal slot drained and released" in server.logs()
    assert server.running()
