"""End to end: several sources, TLS, graceful shutdown, workers, limits and storage failure."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.load import listening_inodes, socket_inodes
from tests.e2e.conftest import TOKEN, MakeServer, Server, tls_files
from tests.samples import audit_event, concatenated, envelope, network_event

AUDIT = concatenated([envelope(audit_event())])
NETWORK = concatenated([envelope(network_event())])
CPUS = sorted(os.sched_getaffinity(0))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(server: Server, path: str, body: bytes, token: str = TOKEN, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", content=body, headers=bearer(token), timeout=30, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def two_sources(make_server: MakeServer, tmp_path: Path) -> Server:
    config = tmp_path / "tailscribe.toml"
    config.write_text(
        """
[[sources]]
id = "corp"
label = "Corp tailnet"
tokens = ["corp-token"]
path_prefix = "/v1/tailscale/corp"

[[sources]]
id = "lab"
label = "Lab"
tokens = ["lab-token"]
log_types = ["network"]
"""
    )
    return make_server("--config", str(config), token=None)


def test_each_source_posts_as_itself_and_only_where_it_may(two_sources: Server):
    server = two_sources

    assert post(server, "/v1/tailscale/audit", AUDIT, "corp-token").status_code == 200
    assert post(server, "/v1/tailscale/corp/network", NETWORK, "corp-token").status_code == 200
    assert post(server, "/v1/tailscale/network", NETWORK, "lab-token").status_code == 200
    foreign_prefix = post(server, "/v1/tailscale/corp/network", NETWORK, "lab-token")
    not_allowed = post(server, "/v1/tailscale/audit", AUDIT, "lab-token")
    hec = post(server, "/services/collector/event", AUDIT + NETWORK, "lab-token")

    assert foreign_prefix.status_code == 401 and "corp" in foreign_prefix.json()["detail"]
    assert not_allowed.status_code == 403 and not_allowed.json()["code"] == 7
    assert hec.json() == {"text": "Success", "code": 0, "accepted": 1, "quarantined": 1}
    sources = sorted((row["p_source_id"], row["p_source_label"], row["p_log_type"]) for row in server.archive_rows())
    assert sources == [
        ("corp", "Corp tailnet", "Tailscale.Audit"),
        ("corp", "Corp tailnet", "Tailscale.Network"),
        ("lab", "Lab", "Tailscale.Network"),
        ("lab", "Lab", "Tailscale.Network"),
    ]
    [refused] = server.quarantine_rows()
    assert refused["p_source_id"] == "lab" and refused["errors"][0]["type"] == "log_type_not_allowed"


def test_https_is_served_with_the_configured_certificate(make_server: MakeServer, tmp_path: Path):
    cert, key, ca = tls_files(tmp_path)

    server = make_server("--tls-cert", str(cert), "--tls-key", str(key), https_ca=str(ca))

    assert server.url.startswith("https://")
    answer = httpx.post(f"{server.url}/v1/tailscale/audit", content=AUDIT, headers=bearer(TOKEN), verify=server.verify)
    assert answer.status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.url.replace('https', 'http')}/healthz", timeout=2).raise_for_status()
    assert len(server.archive_rows()) == 1


def slow_body(body: bytes, pieces: int, pause: float) -> Iterator[bytes]:
    size = len(body) // pieces + 1
    for start in range(0, len(body), size):
        time.sleep(pause)
        yield body[start : start + size]


def test_sigterm_lets_an_in_flight_request_finish_then_exits_cleanly(server: Server):
    body = concatenated([envelope(network_event(f"n{i}")) for i in range(50)])
    answers: list[httpx.Response] = []
    upload = threading.Thread(
        target=lambda: answers.append(
            httpx.post(f"{server.url}/v1/tailscale/network", content=slow_body(body, 10, 0.2), headers=bearer(TOKEN))
        )
    )
    upload.start()
    time.sleep(0.5)  # the upload is under way

    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    upload.join(timeout=20)

    assert server.process.wait(timeout=20) == 0
    assert answers and answers[0].status_code == 200 and answers[0].json()["accepted"] == 50
    assert len(server.archive_rows()) == 50
    assert '"msg":"stopped"' in server.logs()


def test_a_body_sent_too_slowly_gets_408(make_server: MakeServer):
    server = make_server("--body-timeout", "1")

    answer = httpx.post(
        f"{server.url}/v1/tailscale/network", content=slow_body(NETWORK, 4, 0.6), headers=bearer(TOKEN), timeout=10
    )

    assert answer.status_code == 408
    assert "body_timeout" in answer.json()["detail"]
    assert server.archive_rows() == []


def test_requests_over_the_concurrency_cap_get_503_with_retry_after(make_server: MakeServer):
    server = make_server("--max-concurrent-requests", "1")
    slow = threading.Thread(
        target=lambda: httpx.post(
            f"{server.url}/v1/tailscale/network", content=slow_body(NETWORK, 5, 0.3), headers=bearer(TOKEN)
        )
    )
    slow.start()
    time.sleep(0.4)

    busy = post(server, "/v1/tailscale/audit", AUDIT)
    slow.join(timeout=10)
    after = post(server, "/v1/tailscale/audit", AUDIT)

    assert busy.status_code == 503 and busy.json()["code"] == 9
    assert busy.headers["retry-after"] == "1"
    assert after.status_code == 200


def test_unwritable_storage_answers_503_never_2xx(server: Server):
    invalid = concatenated([{"time": 1780500776, "event": {"nodeId": "n", "virtualTraffic": [{"proto": 1e9}]}}])
    quarantine = server.data_dir / "quarantine"
    quarantine.rename(server.data_dir / "quarantine-gone")
    quarantine.write_bytes(b"")  # a file where the directory was: every write fails, even as root

    answer = post(server, "/v1/tailscale/network", invalid)
    ready = httpx.get(f"{server.url}/readyz")

    assert answer.status_code == 503 and answer.json()["code"] == 9 and "retry-after" in answer.headers
    assert ready.status_code == 503
    quarantine.unlink()
    (server.data_dir / "quarantine-gone").rename(quarantine)
    assert post(server, "/v1/tailscale/network", invalid).json()["quarantined"] == 1
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_two_workers_share_the_port_and_sum_their_metrics(make_server: MakeServer):
    server = make_server("--workers", "2")
    assert [sorted(os.sched_getaffinity(pid)) for pid in server.worker_pids()] == [CPUS, CPUS]  # not pinned

    for _ in range(20):
        with httpx.Client() as fresh:  # a new connection each time, so both workers answer some
            assert (
                fresh.post(f"{server.url}/v1/tailscale/audit", content=AUDIT, headers=bearer(TOKEN)).status_code == 200
            )
    metrics = httpx.get(f"{server.url}/metrics").text

    assert 'tailscribe_records_total{log_type="Tailscale.Audit",outcome="accepted"} 20.0' in metrics
    assert len(server.archive_rows()) == 20
    assert len({path.name for path in (server.data_dir / "archive").glob("**/*.ndjson")}) == 2


def test_each_worker_accepts_on_a_socket_of_its_own_and_a_killed_one_is_replaced(make_server: MakeServer):
    """SO_REUSEPORT (app/workers.py): the kernel spreads connections over the workers' own sockets,
    so keep-alive clients that connect at once land on both workers, not on whichever was idle. With
    two CPUs and pin_workers, each worker is pinned to one, and a killed worker's replacement to its CPU."""
    server = make_server("--workers", "2", "--pin-workers", "true")
    workers = server.worker_pids()
    listening = listening_inodes(server.port)
    assert len(workers) == 2 and len(listening) == 2
    assert [len(socket_inodes(pid) & listening) for pid in workers] == [1, 1]
    affinity = [sorted(os.sched_getaffinity(pid)) for pid in workers]
    assert sorted(affinity) == ([[cpu] for cpu in CPUS] if len(CPUS) == 2 else [CPUS, CPUS])

    clients = [httpx.Client() for _ in range(16)]  # connected together, then kept alive, as the benchmark's
    for client in clients:
        assert client.post(f"{server.url}/v1/tailscale/audit", content=AUDIT, headers=bearer(TOKEN)).status_code == 200
    assert len(server.archive_rows()) == 16
    # Archive files are part-<start>-<stream>-<pid>-<n>.ndjson: the pid tells which worker wrote it.
    writers = {path.name.split("-")[-2] for path in server.data_dir.glob("archive/**/*.ndjson")}
    assert writers == {str(pid) for pid in workers}

    os.kill(workers[0], signal.SIGKILL)
    for client in clients:
        client.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        replaced = [pid for pid in server.worker_pids() if pid not in workers]
        if replaced and len(listening_inodes(server.port)) == 2:
            break
        time.sleep(0.1)
    assert replaced, "uvicorn did not start a new worker"
    assert len(socket_inodes(replaced[0]) & listening_inodes(server.port)) == 1
    assert sorted(os.sched_getaffinity(replaced[0])) == affinity[0]
    for _ in range(8):
        with httpx.Client() as fresh:
            assert (
                fresh.post(f"{server.url}/v1/tailscale/audit", content=AUDIT, headers=bearer(TOKEN)).status_code == 200
            )


def test_metrics_cover_requests_bytes_records_and_storage(server: Server):
    import gzip

    httpx.post(
        f"{server.url}/v1/tailscale/network",
        content=gzip.compress(NETWORK),
        headers={**bearer(TOKEN), "Content-Encoding": "gzip"},
    )
    metrics = httpx.get(f"{server.url}/metrics").text

    for expected in (
        'tailscribe_requests_total{code="200",route="/v1/tailscale/network"} 1.0',
        'tailscribe_request_duration_seconds_count{route="/v1/tailscale/network"} 1.0',
        'tailscribe_request_bytes_total{encoding="gzip"}',
        'tailscribe_records_total{log_type="Tailscale.Network",outcome="accepted"} 1.0',
        "tailscribe_storage_write_seconds_count 1.0",
        "tailscribe_inflight_requests 0.0",
    ):
        assert expected in metrics, expected
