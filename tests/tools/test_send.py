"""`tailscribe send` against a scripted HTTP endpoint: batching, body shapes, auth, odd receivers, usage errors.

The end-to-end tests against a real tailscribe are in tests/e2e/test_send.py.
"""

from __future__ import annotations

import argparse
import base64
import gzip
from pathlib import Path

import orjson
import pytest

from app.ingest.framing import frame
from app.tools import EXIT_FAILED, EXIT_OK, EXIT_USAGE, send
from app.tools.delivery import RetryPolicy
from app.tools.files import Limits
from app.tools.replay import SendOptions, SendReport, batches, send_files
from tests.samples import audit_event, concatenated, envelope, network_event
from tests.tools.conftest import Answer, Stub, summary

TOKEN = "s3cret-send-token"


def run(*argv: str | Path) -> int:
    parser = argparse.ArgumentParser()
    send.add_arguments(parser)
    return send.run(parser.parse_args([str(arg) for arg in argv]))


def records_file(tmp_path: Path, count: int, name: str = "records.json") -> Path:
    path = tmp_path / name
    path.write_bytes(concatenated([envelope(network_event(f"n{i}")) for i in range(count)]))
    return path


def parts(sizes: list[int]) -> list[tuple[str, bytes]]:
    return [(f"f{size}", b"x" * size) for size in sizes]


def test_batches_hold_at_most_records_per_request_in_order():
    payloads = list(batches(parts([1, 2, 3, 4, 5]), records_per_request=2, max_request_bytes=100))

    assert [[len(part) for part in payload.parts] for payload in payloads] == [[1, 2], [3, 4], [5]]
    assert [payload.number for payload in payloads] == [1, 2, 3]
    assert payloads[0].files == ("f1", "f2")


def test_batches_stay_within_max_request_bytes_and_a_bigger_record_goes_alone():
    payloads = list(batches(parts([40, 50, 20, 150, 30, 70]), records_per_request=100, max_request_bytes=100))

    assert [[len(part) for part in payload.parts] for payload in payloads] == [[40, 50], [20], [150], [30, 70]]


def test_no_records_make_no_batches():
    assert list(batches([], records_per_request=10, max_request_bytes=10)) == []


def test_concatenated_bodies_are_tailscales_shape_with_bearer_auth(stub: Stub, tmp_path: Path):
    path = records_file(tmp_path, 5)

    code = run(path, "--url", stub.url, "--token", TOKEN, "--records-per-request", "2")

    assert code == EXIT_OK
    assert len(stub.received) == 3
    assert b"".join(request.body for request in stub.received) == path.read_bytes()
    assert all(request.headers["Authorization"] == f"Bearer {TOKEN}" for request in stub.received)
    assert stub.received[0].body.count(b"}{") == 1  # two records back to back, no separator


def test_ndjson_and_gzip_bodies_decode_to_one_record_per_line(stub: Stub, tmp_path: Path):
    path = records_file(tmp_path, 3)

    run(path, "--url", stub.url, "--token", TOKEN, "--format", "ndjson", "--gzip")

    [request] = stub.received
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.headers["Content-Type"] == "application/x-ndjson"
    lines = gzip.decompress(request.body).splitlines()
    assert [orjson.loads(line)["event"]["nodeId"] for line in lines] == ["n0", "n1", "n2"]


@pytest.mark.parametrize(
    ("scheme", "header"),
    [
        ("splunk", f"Splunk {TOKEN}"),
        ("basic", "Basic " + base64.b64encode(f"tailscale:{TOKEN}".encode()).decode()),
    ],
)
def test_splunk_and_basic_auth_carry_the_token(stub: Stub, tmp_path: Path, scheme: str, header: str):
    run(records_file(tmp_path, 1), "--url", stub.url, "--token", TOKEN, "--auth", scheme)

    assert stub.received[0].headers["Authorization"] == header


def test_a_panther_style_endpoint_answering_plain_text_is_a_success_with_unknown_counts(
    stub: Stub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    stub.answers = [Answer(200, b"OK")]

    code = run(records_file(tmp_path, 2), "--url", stub.url, "--token", TOKEN)

    lines = summary(capsys.readouterr().out)
    assert code == EXIT_OK
    assert lines["records sent"] == "2"
    assert lines["accepted"] == lines["quarantined"] == "unknown (the receiver's answers do not say)"


def test_the_summary_sums_tailscribes_counts(stub: Stub, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    stub.answers = [Answer(200, b'{"text":"Success","code":0,"accepted":1,"quarantined":1}')]

    run(records_file(tmp_path, 6), "--url", stub.url, "--token", TOKEN, "--records-per-request", "2")

    lines = summary(capsys.readouterr().out)
    assert lines["accepted"] == "3" and lines["quarantined"] == "3"
    assert lines["batches"] == "3 (0 not delivered)" and lines["requests"] == "3 (0 retries)"


def test_concurrent_sending_delivers_every_record_once_and_reports_deterministically(stub: Stub, tmp_path: Path):
    path = records_file(tmp_path, 40)
    options = SendOptions(url=stub.url, authorization="Bearer x", records_per_request=3, concurrency=4)

    reports = [send_files([path], options, Limits.defaults()) for _ in range(2)]

    received = [record for request in stub.received for record in frame(request.body, max_records=9, max_depth=9)]
    assert sorted(record["event"]["nodeId"] for record in received) == sorted([f"n{i}" for i in range(40)] * 2)
    first, second = (_without_duration(report) for report in reports)
    assert first == second
    assert (first.batches, first.records_sent, first.failed_batches) == (14, 40, 0)


def test_a_refused_batch_is_reported_and_exits_1(stub: Stub, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    stub.answers = [Answer(), Answer(400, b'{"text":"Invalid data format","code":6,"detail":"bad"}'), Answer()]

    code = run(records_file(tmp_path, 3), "--url", stub.url, "--token", TOKEN, "--records-per-request", "1")

    captured = capsys.readouterr()
    assert code == EXIT_FAILED
    assert len(stub.received) == 3  # the batches after a refused one are still sent
    assert "batch 2 (1 records from" in captured.err and "HTTP 400 Invalid data format: bad" in captured.err
    assert summary(captured.out)["records not sent"] == "1"


def test_an_auth_refusal_stops_sending_and_never_prints_the_token(
    stub: Stub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    stub.answers = [Answer(401, b'{"text":"Invalid authorization","code":4}')]

    code = run(records_file(tmp_path, 5), "--url", stub.url, "--token", TOKEN, "--records-per-request", "1")

    captured = capsys.readouterr()
    assert code == EXIT_FAILED
    assert len(stub.received) == 1
    assert summary(captured.out)["records not sent"] == "5"
    assert "check the token" in captured.err
    assert TOKEN not in captured.out + captured.err


def test_values_that_are_not_objects_are_not_sent_and_fail_the_run(stub: Stub, tmp_path: Path):
    path = tmp_path / "array.json"
    path.write_bytes(orjson.dumps([envelope(audit_event()), 42, "text"]))

    report = send_files([path], SendOptions(url=stub.url, authorization="Bearer x"), Limits.defaults())

    assert (report.records_read, report.records_sent, report.skipped) == (3, 1, 2)
    assert not report.ok
    assert len(stub.received) == 1


def test_a_record_over_max_record_bytes_is_sent_as_read_for_the_receiver_to_judge(stub: Stub, tmp_path: Path):
    path = tmp_path / "records.ndjson"
    big = b'{"time":1,"event":{"nodeId":"' + b"n" * 2_000 + b'"}}'
    path.write_bytes(b'{"a":1}\n' + big + b"\n")

    code = run(path, "--url", stub.url, "--token", TOKEN, "--max-record-bytes", "1000", "--format", "ndjson")

    assert code == EXIT_OK
    assert b"".join(request.body for request in stub.received) == b'{"a":1}\n' + big + b"\n"


def test_an_unreadable_file_or_bad_data_file(stub: Stub, tmp_path: Path):
    broken = tmp_path / "broken.json"
    broken.write_bytes(b'{"time":')

    assert run(tmp_path / "missing.json", "--url", stub.url, "--token", TOKEN) == EXIT_USAGE
    assert run(broken, records_file(tmp_path, 1), "--url", stub.url, "--token", TOKEN) == EXIT_FAILED
    assert len(stub.received) == 1  # the good file is still sent


def test_the_token_comes_from_the_flag_then_the_file_then_the_environment(tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text("# rotated monthly\nfrom-file\nolder\n")
    env = {send.TOKEN_ENV: "from-env"}

    assert send.resolve_token("from-flag", token_file, env) == "from-flag"
    assert send.resolve_token(None, token_file, env) == "from-file"
    assert send.resolve_token(None, None, env) == "from-env"
    assert send.resolve_token(None, None, {}) is None


def test_the_token_from_the_environment_is_used(stub: Stub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(send.TOKEN_ENV, "env-token")

    assert run(records_file(tmp_path, 1), "--url", stub.url) == EXIT_OK
    assert stub.received[0].headers["Authorization"] == "Bearer env-token"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "no token"),
        (["--token", TOKEN, "--url", "ftp://example.com/"], "--url must be an http:// or https:// URL"),
        (["--token-file", "/nonexistent/token"], "cannot read the token file"),
    ],
)
def test_usage_errors_exit_2_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
):
    monkeypatch.delenv(send.TOKEN_ENV, raising=False)
    url = [] if "--url" in extra else ["--url", "http://127.0.0.1:9/"]

    assert run(records_file(tmp_path, 1), *url, *extra) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_counts_below_their_minimum_are_refused_by_the_parser(tmp_path: Path):
    for flag, value in (("--records-per-request", "0"), ("--retries", "-1"), ("--timeout", "0")):
        with pytest.raises(SystemExit):
            run(tmp_path, "--url", "http://127.0.0.1:9/", "--token", TOKEN, flag, value)


def test_retry_flags_reach_the_policy(stub: Stub, tmp_path: Path):
    stub.answers = [Answer(503, b"busy", {"Retry-After": "30"}), Answer()]

    code = run(records_file(tmp_path, 1), "--url", stub.url, "--token", TOKEN, "--retries", "1", "--max-backoff", "0.1")

    assert code == EXIT_OK
    assert len(stub.received) == 2
    assert stub.received[1].at - stub.received[0].at < 5


def test_retries_are_counted_in_the_report(stub: Stub, tmp_path: Path):
    stub.answers = [Answer(503, b"busy"), Answer(502, b"bad gateway"), Answer()]
    options = SendOptions(url=stub.url, authorization="Bearer x", policy=RetryPolicy(retries=3))

    report = send_files([records_file(tmp_path, 2)], options, Limits.defaults(), sleep=lambda seconds: None)

    assert (report.batches, report.requests, report.failed_batches, report.records_sent) == (1, 3, 0, 2)
    assert report.ok


def _without_duration(report: SendReport) -> SendReport:
    report.duration = 0.0
    return report
