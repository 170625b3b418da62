"""The stdout sink writes each batch as exact NDJSON lines and reports a vanished reader as a SinkError."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.sinks.base import SinkError, build_sink
from app.sinks.stdout import StdoutSink, StdoutSinkConfig
from app.types import Row
from tests.sinks.drive import deliver

ROOT = Path(__file__).parents[2]

ROWS: list[Row] = [
    {"time": 1780500776.773, "event": {"nodeId": "n1", "note": "ünïcode\nnewline"}, "p_row_id": "a"},
    {"time": 1780500777, "event": {"actor": {"id": "u1"}, "action": "LOGIN"}, "p_row_id": "b"},
]
EXPECTED = (
    b'{"time":1780500776.773,"event":{"nodeId":"n1","note":"\xc3\xbcn\xc3\xafcode\\nnewline"},"p_row_id":"a"}\n'
    b'{"time":1780500777,"event":{"actor":{"id":"u1"},"action":"LOGIN"},"p_row_id":"b"}\n'
)


def test_each_row_is_one_ndjson_line_in_order(capsysbinary: pytest.CaptureFixture[bytes]):
    deliver(StdoutSink(StdoutSinkConfig(type="stdout")), ROWS, [], ROWS[:1])

    out, err = capsysbinary.readouterr()
    assert out == EXPECTED + EXPECTED.splitlines(keepends=True)[0]
    assert err == b""


def test_is_registered_and_forbids_unknown_options():
    config, sink = build_sink({"type": "stdout"})
    assert isinstance(sink, StdoutSink) and config.name == "stdout"
    with pytest.raises(ValidationError, match="pretty"):
        build_sink({"type": "stdout", "pretty": True})


def test_a_real_pipe_gets_the_exact_bytes():
    script = textwrap.dedent(
        f"""
        import asyncio
        from app.sinks.base import SinkBatch
        from app.sinks.stdout import StdoutSink, StdoutSinkConfig
        print("before", flush=False)
        sink = StdoutSink(StdoutSinkConfig(type="stdout"))
        asyncio.run(sink.write(SinkBatch({ROWS!r}, first_seq=0)))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30, check=True, cwd=ROOT)
    # Text printed before the batch is flushed first, so it is not overtaken by the rows.
    assert done.stdout == b"before\n" + EXPECTED


def test_a_closed_pipe_is_a_sink_error():
    script = textwrap.dedent(
        f"""
        import asyncio
        import sys
        from app.sinks.base import SinkBatch, SinkError
        from app.sinks.stdout import StdoutSink, StdoutSinkConfig
        sink = StdoutSink(StdoutSinkConfig(type="stdout"))
        try:
            asyncio.run(sink.write(SinkBatch({ROWS!r}, first_seq=0)))
        except SinkError as exc:
            print(type(exc).__name__, exc, file=sys.stderr)
        """
    )
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: the write gets EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], stdout=write_end, stderr=subprocess.PIPE, timeout=30, cwd=ROOT
        )
    finally:
        os.close(write_end)
    assert b"SinkError stdout sink: cannot write to standard output: BrokenPipeError" in done.stderr


def test_a_row_that_is_not_json_is_a_sink_error(capsysbinary: pytest.CaptureFixture[bytes]):
    with pytest.raises(SinkError, match="cannot be serialized"):
        deliver(StdoutSink(StdoutSinkConfig(type="stdout")), [{"time": {1, 2}}])
    assert capsysbinary.readouterr().out == b""
