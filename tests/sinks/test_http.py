"""The http sink against a real tailscribe downstream and a scripted HTTP server: bodies, splitting, auth, errors."""

from __future__ import annotations

import gzip
import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from app.ingest.pipeline import RequestContext, build_batch
from app.sinks.base import RetryableSinkError, SinkError, build_sink
from app.sinks.http import HttpSink, HttpSinkConfig
from app.types import Row
from tests.e2e import conftest as e2e
from tests.e2e.conftest import TOKEN, MakeServer, Server, free_port, tls_files
from tests.samples import audit_event, envelope, network_event
from tests.sinks.drive import deliver
from tests.tools import conftest as scripted
from tests.tools.conftest import Answer, Received, Stub

# Fixtures of other directories' conftests, used here too: a real tailscribe, and a scripted HTTP server.
make_server = e2e.make_server
stub = scripted.stub

SECRET = "sink-secret-token-0123456789"


def journal_rows(networks: int = 30, audits: int = 10) -> list[Row]:
    """Rows as the journal holds them: received, validated and enriched by the upstream pipeline."""
    records: list[object] = [envelope(network_event(f"node{i:04d}")) for i in range(networks)]
    records += [envelope(audit_event(f"ACTION_{i}"), time=1780500000 + i) for i in range(audits)]
    context = RequestContext(request_id="upstream-request", log_type=None, source_id="up", source_label="Upstream")
    batch = build_batch(records, context, datetime.now(UTC))
    assert not batch.quarantined
    return [orjson.loads(line) for line in batch.ndjson.splitlines()]


def sized_rows(count: int, size: int, *, start: int = 0) -> list[Row]:
    """Rows whose NDJSON line (newline included) is exactly `size` bytes."""
    base = len(orjson.dumps({"time": 1, "event": {"nodeId": "n0000", "pad": ""}})) + 1
    return [{"time": 1, "event": {"nodeId": f"n{start + i:04d}", "pad": "x" * (size - base)}} for i in range(count)]


def sink_for(url: str, **options: Any) -> HttpSink:
    return HttpSink(HttpSinkConfig(type="http", url=url, **options))


def header(request: Received, name: str) -> str | None:
    return next((value for key, value in request.headers.items() if key.lower() == name.lower()), None)


def lines(rows: list[Row]) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


def archived(server: Server, count: int) -> list[dict[str, Any]]:
    """The downstream's archive once it holds `count` rows (it may be written just after the answer)."""
    deadline = time.monotonic() + 10
    while len(rows := server.archive_rows()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return rows


def envelopes(rows: list[dict[str, Any]]) -> list[bytes]:
    """What must survive forwarding, comparable whatever the order: log type, time, event and fields."""
    kept = ("p_log_type", "time", "event", "fields")
    return sorted(orjson.dumps({key: row.get(key) for key in kept}, option=orjson.OPT_SORT_KEYS) for row in rows)


# A real tailscribe downstream.


@pytest.mark.parametrize(
    "options",
    [
        {"format": "hec"},
        {"format": "hec", "gzip": True, "max_request_bytes": 3000},
        {"format": "panther"},
        {"format": "ndjson", "gzip": True},
    ],
    ids=["hec", "hec-gzip-split", "panther", "ndjson-gzip"],
)
def test_every_row_lands_in_a_downstream_tailscribe_and_a_resent_batch_keeps_its_row_ids(
    make_server: MakeServer,
    options: dict[str, Any],
):
    downstream = make_server()
    rows = journal_rows()
    sink = sink_for(f"{downstream.url}/services/collector/event", token=TOKEN, **options)

    deliver(sink, rows)

    landed = archived(downstream, len(rows))
    assert downstream.quarantine_rows() == []
    assert envelopes(landed) == envelopes(rows)
    assert {row["p_source_id"] for row in landed} == {"default"}

    # The runner retries a whole batch after a failure: the copies get the same row ids downstream.
    deliver(sink, rows)
    again = archived(downstream, 2 * len(rows))
    assert len(again) == 2 * len(rows)
    assert sorted(str(row["p_row_id"]) for row in again) == sorted(2 * [str(row["p_row_id"]) for row in landed])


def test_https_downstream_is_trusted_through_ca_file_and_refused_without_it(make_server: MakeServer, tmp_path: Path):
    cert, key, ca = tls_files(tmp_path)
    downstream = make_server("--tls-cert", str(cert), "--tls-key", str(key), https_ca=str(ca))
    url = f"{downstream.url}/services/collector/event"
    rows = journal_rows(3, 1)

    with pytest.raises(SinkError, match="certificate is not trusted.*set ca_file") as refused:
        deliver(sink_for(url, format="hec", token=TOKEN), rows)
    assert not isinstance(refused.value, RetryableSinkError)

    deliver(sink_for(url, format="hec", token=TOKEN, ca_file=ca), rows)
    assert envelopes(archived(downstream, len(rows))) == envelopes(rows)


# A scripted server: exact bodies, splitting, headers and answers.


def test_requests_are_split_at_max_request_bytes_and_a_bigger_row_goes_alone(stub: Stub):
    big = {"time": 1, "event": {"nodeId": "big", "pad": "y" * 3000}}
    rows = [*sized_rows(12, 100), big, *sized_rows(13, 100, start=12)]

    deliver(sink_for(stub.url, max_request_bytes=1000), rows)

    bodies = [request.body for request in stub.received]
    assert [body.count(b"\n") for body in bodies] == [10, 2, 1, 10, 3]
    assert bodies[2] == orjson.dumps(big) + b"\n"
    assert all(len(body) <= 1000 for body in bodies if body != bodies[2])
    assert b"".join(bodies) == lines(rows)


def test_gzip_bodies_decode_to_the_same_lines_and_the_limit_is_on_the_uncompressed_body(stub: Stub):
    rows = sized_rows(25, 100)

    deliver(sink_for(stub.url, max_request_bytes=1000, gzip=True), rows)

    assert {header(request, "Content-Encoding") for request in stub.received} == {"gzip"}
    plain = [gzip.decompress(request.body) for request in stub.received]
    assert [len(body) for body in plain] == [1000, 1000, 500]
    assert b"".join(plain) == lines(rows)
    assert all(len(request.body) < 200 for request in stub.received)  # padding compresses well


def test_hec_body_is_concatenated_event_objects_with_source_and_sourcetype(stub: Stub):
    network, audit = journal_rows(1, 1)

    deliver(sink_for(stub.url, format="hec", token=SECRET), [network, audit])

    [request] = stub.received
    expected = [
        {"time": row["time"], "event": row["event"], "fields": row["fields"], "source": "tailscribe", "sourcetype": t}
        for row, t in ((network, "tailscale:network"), (audit, "tailscale:audit"))
    ]
    assert request.body == b"".join(orjson.dumps(event) for event in expected)
    assert header(request, "Content-Type") == "application/json"


def test_panther_lines_are_the_envelopes_and_ndjson_lines_the_whole_rows(stub: Stub):
    rows = journal_rows(2, 1)

    deliver(sink_for(stub.url, format="panther", token=SECRET), rows)
    deliver(sink_for(stub.url, format="ndjson", token=SECRET), rows)

    panther, ndjson = stub.received
    assert panther.body == lines([{key: row[key] for key in ("time", "event", "fields")} for row in rows])
    assert ndjson.body == lines(rows)
    assert b"p_row_id" in ndjson.body and b"p_row_id" not in panther.body
    assert header(panther, "Content-Type") == header(ndjson, "Content-Type") == "application/x-ndjson"


@pytest.mark.parametrize(
    ("options", "authorization"),
    [
        ({"format": "hec", "token": SECRET}, f"Splunk {SECRET}"),
        ({"format": "panther", "token": SECRET}, f"Bearer {SECRET}"),
        ({"format": "ndjson", "token": SECRET}, f"Bearer {SECRET}"),
        ({"format": "hec", "token": SECRET, "auth": "bearer"}, f"Bearer {SECRET}"),
        ({"format": "ndjson", "token": SECRET, "auth": "splunk"}, f"Splunk {SECRET}"),
        ({"format": "hec"}, None),
        ({"format": "ndjson", "auth": "none"}, None),
        ({"format": "ndjson", "headers": {"Authorization": "Basic dTpw"}}, "Basic dTpw"),
    ],
)
def test_auth_scheme_and_extra_headers_are_sent(stub: Stub, options: dict[str, Any], authorization: str | None):
    headers = {"X-Tenant": "blue", **options.pop("headers", {})}

    deliver(sink_for(stub.url, headers=headers, **options), [{"time": 1, "event": {}}], [{"time": 2, "event": {}}])

    assert len(stub.received) == 2
    for request in stub.received:
        assert header(request, "Authorization") == authorization
        assert header(request, "X-Tenant") == "blue"
        assert (header(request, "User-Agent") or "").startswith("tailscribe/")
        assert header(request, "Content-Encoding") is None


@pytest.mark.parametrize(
    ("answer", "retry_after"),
    [
        (Answer(503, b'{"text":"Server is busy","code":9}', {"Retry-After": "7"}), 7.0),
        (Answer(429, b"slow down", {"Retry-After": "120"}), 120.0),
        (Answer(500, b"oops"), None),
        (Answer(502, b"bad gateway", {"Retry-After": "soon"}), None),
    ],
)
def test_429_and_5xx_are_retryable_with_the_servers_retry_after(stub: Stub, answer: Answer, retry_after: float | None):
    stub.answers = [answer]

    with pytest.raises(RetryableSinkError, match=f"HTTP {answer.status}") as raised:
        deliver(sink_for(stub.url, token=SECRET), [{"time": 1, "event": {}}])

    assert raised.value.retry_after == retry_after
    assert SECRET not in str(raised.value)


def test_retry_after_as_an_http_date_becomes_seconds_from_now(stub: Stub):
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    stub.answers = [Answer(429, b"slow down", {"Retry-After": when})]

    with pytest.raises(RetryableSinkError, match="HTTP 429 slow down") as raised:
        deliver(sink_for(stub.url), [{"time": 1, "event": {}}])

    assert raised.value.retry_after == pytest.approx(30, abs=2)


@pytest.mark.parametrize(
    ("status", "hint"), [(400, ""), (401, "check token and auth"), (413, "lower max_request_bytes")]
)
def test_other_4xx_is_a_sink_error_naming_the_status_and_answer_but_never_the_token(stub: Stub, status: int, hint: str):
    stub.answers = [Answer(status, f'{{"text":"Invalid data format","code":6,"detail":"echo {SECRET}"}}'.encode())]

    with pytest.raises(SinkError) as raised:
        deliver(sink_for(f"{stub.url}?token={SECRET}", format="hec", token=SECRET), [{"time": 1, "event": {}}])

    message = str(raised.value)
    assert not isinstance(raised.value, RetryableSinkError)
    assert f"HTTP {status} Invalid data format: echo ***" in message
    assert hint in message
    assert SECRET not in message and SECRET not in repr(raised.value.__cause__)


def test_a_failure_names_the_request_and_a_retried_batch_resends_what_was_delivered(stub: Stub):
    rows = sized_rows(30, 100)
    stub.answers = [Answer(), Answer(503, b"busy"), Answer()]
    sink = sink_for(stub.url, max_request_bytes=1000)

    with pytest.raises(RetryableSinkError, match=r"request 2 of 3 \(10 rows\): HTTP 503 busy"):
        deliver(sink, rows)
    assert len(stub.received) == 2  # the third request is not sent after the second failed

    deliver(sink, rows)  # the runner's retry: at least once, so request 1 goes again
    assert [request.body for request in stub.received[2:]] == [lines(rows[i : i + 10]) for i in (0, 10, 20)]


def test_connection_refused_is_retryable_at_once_and_start_does_not_need_the_endpoint():
    sink = sink_for(f"http://127.0.0.1:{free_port()}/services/collector/event", token=SECRET)
    started = time.monotonic()

    with pytest.raises(RetryableSinkError, match="ConnectError") as raised:
        deliver(sink, [{"time": 1, "event": {}}])

    assert time.monotonic() - started < 2
    assert raised.value.retry_after is None


def test_an_endpoint_that_never_answers_times_out_as_retryable():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # connections are accepted by the kernel, and never answered
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        with pytest.raises(RetryableSinkError, match="ReadTimeout"):
            deliver(sink_for(url, timeout=0.3), [{"time": 1, "event": {}}])


def test_an_empty_batch_sends_nothing(stub: Stub):
    deliver(sink_for(stub.url), [])
    assert stub.received == []


# Configuration.


def test_is_registered_and_defaults_follow_the_format():
    config, sink = build_sink({"type": "http", "url": "https://hec.example/services/collector/event", "format": "hec"})
    assert isinstance(sink, HttpSink) and config.name == "http"
    assert isinstance(config, HttpSinkConfig) and config.max_request_bytes is None and config.verify_tls


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"url": "ftp://example.com/"}, "http:// or https://"),
        ({"url": "https://example.com:port/"}, "valid URL"),
        ({"url": "http:///services/collector/event"}, "with a host"),
        ({"url": "https://x/", "format": "syslog"}, "format"),
        ({"url": "https://x/", "tokn": "t"}, "tokn"),
        ({"url": "https://x/", "auth": "splunk"}, "needs a token"),
        ({"url": "https://x/", "token": "t", "auth": "none"}, "auth is 'none'"),
        ({"url": "https://x/", "token": "t", "headers": {"authorization": "x"}}, "keep one"),
        ({"url": "https://x/", "headers": {"Content-Encoding": "br"}}, "content-encoding"),
        ({"url": "https://x/", "headers": {"Bad Name": "x"}}, "headers"),
        ({"url": "https://x/", "verify_tls": False, "ca_file": "/ca.pem"}, "ca_file"),
        ({"url": "https://x/", "max_request_bytes": 0}, "max_request_bytes"),
    ],
)
def test_invalid_options_are_refused_naming_the_problem(options: dict[str, Any], error: str):
    with pytest.raises(ValidationError, match=error):
        HttpSinkConfig(type="http", **options)


def test_secrets_never_show_in_the_config_dump():
    config = HttpSinkConfig(type="http", url="https://x/", token=SECRET, headers={"X-Key": SECRET})
    assert SECRET not in repr(config) and SECRET not in config.model_dump_json()


def test_an_unreadable_ca_file_fails_start(tmp_path: Path):
    with pytest.raises(SinkError, match="cannot load ca_file"):
        deliver(sink_for("https://127.0.0.1/", ca_file=tmp_path / "missing.pem"))
