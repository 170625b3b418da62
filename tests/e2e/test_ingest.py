"""End to end: real HTTP to a real `tailscribe serve`, asserting answers and what is on disk."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator

import httpx
import orjson
import zstandard

from tests.e2e.conftest import TOKEN, Server
from tests.samples import audit_event, concatenated, envelope, network_event


def test_concatenated_network_records_are_archived_enriched_by_event_hour(server: Server, client: httpx.Client):
    body = concatenated([envelope(network_event(f"node{i}")) for i in range(5)])

    answer = client.post("/v1/tailscale/network", content=body)

    assert answer.status_code == 200
    assert answer.json() == {"text": "Success", "code": 0, "accepted": 5, "quarantined": 0}
    rows = server.archive_rows()
    files = list((server.data_dir / "archive").glob("log_type=Tailscale.Network/year=2026/month=06/day=03/hour=15/*"))
    assert len(files) == 1
    assert [row["event"]["nodeId"] for row in rows] == [f"node{i}" for i in range(5)]
    first = rows[0]
    assert first["p_log_type"] == "Tailscale.Network"
    assert first["p_event_time"] == "2026-06-03T15:32:56.773000Z"
    assert first["p_source_id"] == "default"
    assert first["event"]["srcNode"]["os"] == "linux"  # unknown fields are kept
    entry = first["event"]["virtualTraffic"][1]
    assert (entry["srcIp"], entry["srcPort"], entry["dstPort"]) == ("fd7a:115c:a1e0::1", 41641, 53)
    assert "100.64.0.2" in first["p_any_ip_addresses"]
    assert not server.quarantine_rows()


def test_chunked_upload_without_content_length_is_read_whole(server: Server, client: httpx.Client):
    records = [envelope(network_event(f"n{i}")) for i in range(300)]
    body = concatenated(records)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    request = client.build_request("POST", "/v1/tailscale/network", content=chunks())
    assert request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in request.headers

    answer = client.send(request)

    assert answer.status_code == 200
    assert answer.json()["accepted"] == 300
    assert len(server.archive_rows()) == 300


def test_gzip_zstd_and_deflate_bodies_are_decoded_with_or_without_the_header(server: Server, client: httpx.Client):
    body = concatenated([envelope(audit_event())])
    cases = [
        (gzip.compress(body), {"Content-Encoding": "gzip"}),
        (zstandard.ZstdCompressor().compress(body), {"Content-Encoding": "zstd"}),
        (zlib.compress(body), {"Content-Encoding": "deflate"}),
        (gzip.compress(body), {}),  # sniffed by magic bytes, as Panther does
        (zstandard.ZstdCompressor().compress(body), {}),
    ]
    for content, headers in cases:
        answer = client.post("/v1/tailscale/audit", content=content, headers=headers)
        assert answer.status_code == 200, (headers, answer.text)
        assert answer.json()["accepted"] == 1
    assert len(server.archive_rows("Tailscale.Audit")) == len(cases)


def test_every_auth_scheme_is_accepted(server: Server):
    import base64

    body = concatenated([envelope(audit_event())])
    basic = base64.b64encode(f"tailscale:{TOKEN}".encode()).decode()
    for header in (f"Bearer {TOKEN}", f"Splunk {TOKEN}", f"Basic {basic}", f"bearer   {TOKEN}"):
        answer = httpx.post(f"{server.url}/v1/tailscale/audit", content=body, headers={"Authorization": header})
        assert answer.status_code == 200, header
    assert len(server.archive_rows()) == 4


def test_missing_or_wrong_token_is_refused_and_nothing_is_stored(server: Server):
    body = concatenated([envelope(audit_event())])
    url = f"{server.url}/v1/tailscale/audit"

    missing = httpx.post(url, content=body)
    wrong = httpx.post(url, content=body, headers={"Authorization": "Bearer not-the-token"})
    other_scheme = httpx.post(url, content=body, headers={"Authorization": f"Token {TOKEN}"})

    assert missing.status_code == 401
    assert missing.json()["code"] == 2
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert wrong.status_code == 401
    assert wrong.json()["code"] == 4
    assert wrong.json()["text"] == "Invalid authorization"
    assert other_scheme.status_code == 401
    assert server.archive_rows() == []
    assert server.quarantine_rows() == []
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'tailscribe_auth_failures_total{reason="missing_token"} 1.0' in metrics
    assert 'tailscribe_auth_failures_total{reason="invalid_token"} 2.0' in metrics


def test_token_never_appears_in_logs(server: Server, client: httpx.Client):
    client.post("/v1/tailscale/audit", content=concatenated([envelope(audit_event())]))
    httpx.post(f"{server.url}/v1/tailscale/audit", content=b"{}", headers={"Authorization": "Bearer wrong-token-xyz"})
    server.stop()

    logs = server.logs()
    assert '"msg":"request"' in logs
    assert TOKEN not in logs
    assert "wrong-token-xyz" not in logs


def test_invalid_records_are_quarantined_and_the_rest_accepted(server: Server, client: httpx.Client):
    bad_proto = envelope(network_event())
    bad_proto["event"]["virtualTraffic"][0]["proto"] = 70000
    no_time = {"event": network_event()}
    body = concatenated([envelope(network_event("good1")), bad_proto, no_time, envelope(network_event("good2"))])

    answer = client.post("/v1/tailscale/network", content=body)

    assert answer.status_code == 200
    assert answer.json() == {"text": "Success", "code": 0, "accepted": 2, "quarantined": 2}
    assert [row["event"]["nodeId"] for row in server.archive_rows()] == ["good1", "good2"]
    quarantined = server.quarantine_rows()
    assert [row["record"] for row in quarantined] == [bad_proto, no_time]
    assert quarantined[0]["errors"][0]["loc"] == "event.virtualTraffic.0.proto"
    assert quarantined[1]["errors"][0]["loc"] == "time"
    assert all(row["p_log_type"] == "Tailscale.Network" for row in quarantined)


def test_truncated_body_is_refused_with_its_offset_and_kept_raw(server: Server, client: httpx.Client):
    body = concatenated([envelope(network_event()), envelope(network_event())])
    truncated = body[: len(body) - 10]

    answer = client.post("/v1/tailscale/network", content=truncated)

    assert answer.status_code == 400
    assert answer.json()["code"] == 6
    assert answer.json()["text"] == "Invalid data format"
    assert 0 < answer.json()["offset"] <= len(truncated)
    assert server.archive_rows() == []
    [kept] = server.quarantined_bodies()
    assert kept.read_bytes() == truncated
    meta = orjson.loads(kept.with_suffix(".json").read_bytes())
    assert meta["reason"] == "invalid_json"
    assert "authorization" not in {key.lower() for key in meta}


def test_gzip_bomb_is_refused_with_413_and_nothing_stored(make_server):
    server = make_server("--max-decompressed-bytes", str(4 * 1024 * 1024))
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)

    answer = httpx.post(
        f"{server.url}/v1/tailscale/network",
        content=bomb,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Encoding": "gzip"},
    )

    assert answer.status_code == 413
    assert "max_decompressed_bytes" in answer.json()["detail"]
    assert server.archive_rows() == [] and server.quarantined_bodies() == []
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_oversized_body_is_refused_before_it_is_read(make_server):
    server = make_server("--max-body-bytes", "100000")
    body = concatenated([envelope(network_event(f"n{i}")) for i in range(200)])
    headers = {"Authorization": f"Bearer {TOKEN}"}

    declared = httpx.post(f"{server.url}/v1/tailscale/network", content=body, headers=headers)
    chunked = httpx.post(f"{server.url}/v1/tailscale/network", content=iter([body]), headers=headers)

    for answer in (declared, chunked):
        assert answer.status_code == 413
        assert "max_body_bytes" in answer.json()["detail"]
    assert server.archive_rows() == []


def test_unknown_content_encoding_is_415(server: Server, client: httpx.Client):
    answer = client.post("/v1/tailscale/audit", content=b"{}", headers={"Content-Encoding": "br"})

    assert answer.status_code == 415
    assert "gzip" in answer.json()["detail"]
    assert server.archive_rows() == []


def test_too_many_records_is_413(make_server):
    server = make_server("--max-records", "10")
    body = concatenated([envelope(audit_event()) for _ in range(11)])

    answer = httpx.post(f"{server.url}/v1/tailscale/audit", content=body, headers={"Authorization": f"Bearer {TOKEN}"})

    assert answer.status_code == 413
    assert "max_records" in answer.json()["detail"]
    assert server.archive_rows() == []


def test_hec_endpoint_tells_log_type_by_shape(server: Server, client: httpx.Client):
    body = b"\n".join(
        orjson.dumps(record)
        for record in (envelope(audit_event()), envelope(network_event()), envelope({"hello": "world"}))
    )

    answer = client.post("/services/collector/event", content=body)

    assert answer.json() == {"text": "Success", "code": 0, "accepted": 2, "quarantined": 1}
    assert len(server.archive_rows("Tailscale.Audit")) == 1
    assert len(server.archive_rows("Tailscale.Network")) == 1
    [unclassified] = server.quarantine_rows()
    assert unclassified["p_log_type"] is None
    assert unclassified["errors"][0]["type"] == "unclassified"


def test_array_logs_wrapper_and_bare_records_are_accepted(server: Server, client: httpx.Client):
    bare = dict(network_event("bare"), logged="2026-06-03T15:33:00Z")
    answer_array = client.post("/v1/tailscale/network", content=orjson.dumps([envelope(network_event("a"))]))
    answer_logs = client.post("/v1/tailscale/network", content=orjson.dumps({"logs": [bare]}))

    assert answer_array.json()["accepted"] == 1
    assert answer_logs.json()["accepted"] == 1
    rows = {row["event"]["nodeId"]: row for row in server.archive_rows()}
    assert rows["bare"]["fields"] == {"recorded": "2026-06-03T15:33:00Z"}
    assert rows["bare"]["p_event_time"].startswith("2026-06-03T15:32:56.552946")


def test_acknowledged_records_survive_kill_9(server: Server, client: httpx.Client, make_server):
    import signal

    answer = client.post("/v1/tailscale/network", content=concatenated([envelope(network_event())] * 3))
    assert answer.status_code == 200

    server.stop(signal.SIGKILL)
    restarted = make_server()

    assert len(restarted.archive_rows()) == 3


def test_health_endpoints_answer(server: Server):
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready"}
    assert httpx.get(f"{server.url}/services/collector/health").json()["code"] == 17
    unknown = httpx.get(f"{server.url}/wp-login.php")
    assert unknown.status_code == 404
    assert unknown.json()["text"] == "Not Found"
    assert 'route="unmatched"' in httpx.get(f"{server.url}/metrics").text


def test_without_a_token_one_is_generated_printed_once_and_reused(make_server):
    first = make_server(token=None)
    token_file = first.data_dir / "token"
    token = token_file.read_text().strip()
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    assert len(token) >= 32
    assert first.logs().count(token) == 1  # printed once, in the banner, never in log lines
    assert httpx.get(f"{first.url}/healthz").status_code == 200
    first.stop()

    second = make_server(token=None)
    answer = httpx.post(
        f"{second.url}/v1/tailscale/audit",
        content=concatenated([envelope(audit_event())]),
        headers={"Authorization": f"Bearer {token}"},
    )

    assert answer.status_code == 200
    assert token not in second.logs()
    assert "using the token in" in second.logs()


def test_tokens_rotate_through_the_environment_and_a_token_file(make_server, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.write_text("# rotated monthly\nfrom-file-token\n")
    server = make_server(
        token=None, env={"TAILSCRIBE_TOKEN": "old-token, new-token", "TAILSCRIBE_TOKEN_FILE": str(secrets)}
    )
    body = concatenated([envelope(audit_event())])

    codes = [
        httpx.post(
            f"{server.url}/v1/tailscale/audit", content=body, headers={"Authorization": f"Bearer {t}"}
        ).status_code
        for t in ("old-token", "new-token", "from-file-token", "# rotated monthly", "other")
    ]

    assert codes == [200, 200, 200, 401, 401]
