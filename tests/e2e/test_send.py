"""End to end: `tailscribe send` replaying files to a real `tailscribe serve`, asserting what lands on disk."""

from __future__ import annotations

import argparse
import gzip
import re
import time
from pathlib import Path

import httpx
import orjson
import pytest

from app.tools import EXIT_FAILED, EXIT_OK, send
from app.types import Row
from tests.e2e.conftest import TOKEN, Server
from tests.samples import audit_event, concatenated, envelope, network_event
from tests.tools.conftest import summary

NETWORK = "/v1/tailscale/network"


def run(server: Server, route: str, *argv: str | Path) -> int:
    parser = argparse.ArgumentParser()
    send.add_arguments(parser)
    return send.run(parser.parse_args([*(str(arg) for arg in argv), "--url", f"{server.url}{route}"]))


def requests_answered(server: Server, route: str, code: int = 200) -> int:
    """How many requests the receiver answered on `route` with `code`, from its own /metrics."""
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        name, _, rest = line.partition("{")
        if name == "tailscribe_requests_total":
            labels, _, value = rest.partition("} ")
            if dict(re.findall(r'(\w+)="([^"]*)"', labels)) == {"route": route, "code": str(code)}:
                return int(float(value))
    return 0


def request_log(server: Server, count: int) -> list[Row]:
    """The receiver's log lines of its first `count` ingest requests, in order.

    The receiver logs (and counts in /metrics) a request just after answering it, so the last line may
    lag behind the answer for a moment: wait for it.
    """
    deadline = time.monotonic() + 5
    while True:
        lines = [orjson.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
        requests = [line for line in lines if line["msg"] == "request" and line["method"] == "POST"]
        if len(requests) >= count or time.monotonic() > deadline:
            return requests[:count]
        time.sleep(0.02)


def test_every_record_lands_in_the_archive_exactly_once_in_batches_of_records_per_request(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    records = [envelope(network_event(f"node{i:04d}")) for i in range(1234)]
    plain, compressed = tmp_path / "first.json", tmp_path / "second.json.gz"
    plain.write_bytes(concatenated(records[:700]))
    compressed.write_bytes(gzip.compress(concatenated(records[700:])))

    code = run(server, NETWORK, plain, compressed, "--token", TOKEN)

    lines = summary(capsys.readouterr().out)
    assert code == EXIT_OK
    rows = server.archive_rows()
    assert sorted(row["event"]["nodeId"] for row in rows) == [f"node{i:04d}" for i in range(1234)]
    assert len({row["p_row_id"] for row in rows}) == 1234
    # Batches span files: 500 + 500 + 234.
    assert [line["accepted"] for line in request_log(server, 3)] == [500, 500, 234]
    assert requests_answered(server, NETWORK) == 3
    assert (lines["records sent"], lines["accepted"], lines["quarantined"]) == ("1234", "1234", "0")
    assert lines["requests"] == "3 (0 retries)"


def test_max_request_bytes_splits_batches_and_a_bigger_record_goes_alone(server: Server, tmp_path: Path):
    small = [envelope(network_event(f"n{i}")) for i in range(7)]
    big = envelope(network_event("big"))
    big["event"]["srcNode"]["name"] = "x" * 5000
    size = len(orjson.dumps(small[0]))
    path = tmp_path / "records.json"
    path.write_bytes(concatenated([*small[:4], big, *small[4:]]))

    code = run(server, NETWORK, path, "--token", TOKEN, "--max-request-bytes", str(3 * size + 10))

    assert code == EXIT_OK
    log = request_log(server, 4)
    limit = 3 * size + 10
    assert [line["accepted"] for line in log] == [3, 1, 1, 3]
    assert [line["bytes"] <= limit for line in log] == [True, True, False, True]  # the big record went alone
    assert requests_answered(server, NETWORK) == 4
    assert len(server.archive_rows()) == 8


def test_gzip_ndjson_bodies_are_archived_and_smaller_on_the_wire(server: Server, tmp_path: Path):
    records = [envelope(network_event(f"n{i}")) for i in range(50)]
    path = tmp_path / "records.ndjson"
    path.write_bytes(b"".join(orjson.dumps(record) + b"\n" for record in records))

    code = run(server, NETWORK, path, "--token", TOKEN, "--gzip", "--format", "ndjson")

    assert code == EXIT_OK
    [line] = request_log(server, 1)
    assert line["bytes"] < path.stat().st_size / 4
    assert sorted(row["event"]["nodeId"] for row in server.archive_rows()) == sorted(f"n{i}" for i in range(50))


def test_invalid_records_are_delivered_and_counted_as_quarantined(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    bad = envelope(network_event("bad"))
    bad["event"]["virtualTraffic"][0]["proto"] = "carrier-pigeon"
    path = tmp_path / "mixed.json"
    path.write_bytes(concatenated([envelope(audit_event()), bad, envelope(network_event("good"))]))

    code = run(server, "/services/collector/event", path, "--token", TOKEN, "--auth", "splunk")

    lines = summary(capsys.readouterr().out)
    assert code == EXIT_OK  # delivered: quarantining is the receiver's verdict, not a failed delivery
    assert (lines["accepted"], lines["quarantined"]) == ("2", "1")
    assert len(server.archive_rows("Tailscale.Audit")) == len(server.archive_rows("Tailscale.Network")) == 1
    assert [row["record"]["event"]["nodeId"] for row in server.quarantine_rows()] == ["bad"]


def test_a_wrong_token_exits_1_with_a_clear_message_and_nothing_is_archived(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = tmp_path / "records.json"
    path.write_bytes(concatenated([envelope(network_event(f"n{i}")) for i in range(10)]))

    code = run(server, NETWORK, path, "--token", "not-the-token", "--records-per-request", "2")

    captured = capsys.readouterr()
    assert code == EXIT_FAILED
    assert "HTTP 401 Invalid authorization" in captured.err
    assert "check the token (--token, --token-file or TAILSCRIBE_SEND_TOKEN) and --auth" in captured.err
    assert "not-the-token" not in captured.out + captured.err
    assert summary(captured.out)["records not sent"] == "10"
    assert len(request_log(server, 1)) == 1
    assert requests_answered(server, NETWORK, 401) == 1  # stopped after the first refusal
    assert server.archive_rows() == []
