"""The delivery guarantee, end to end: a real receiver, a real nats-server, kill -9 and outages.

Every record answered 2xx must reach every sink, exactly once in the archive and in JetStream
(deduplicated by Nats-Msg-Id), whatever happens between the answer and the delivery.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import nats
import orjson

from app.journal.format import list_segments, segment_path
from tests.e2e.conftest import TOKEN, MakeServer, Server
from tests.samples import concatenated, envelope, network_event
from tests.servers.nats import NatsServer, nats_server  # noqa: F401

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def config_file(tmp_path: Path, nats_url: str, **settings: object) -> str:
    lines = [f"{key} = {value}" for key, value in settings.items()]
    lines += ["[[sinks]]", 'type = "archive"', "[[sinks]]", 'type = "nats"', f'servers = ["{nats_url}"]']
    lines += ["connect_timeout = 1", "publish_timeout = 1", "reconnect_wait = 0.2"]
    path = tmp_path / "tailscribe.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def body(ids: list[str]) -> bytes:
    return concatenated([envelope(network_event(node)) for node in ids])


def archived_nodes(server: Server) -> Counter[str]:
    return Counter(row["event"]["nodeId"] for row in server.archive_rows())  # type: ignore[index]


def streamed_nodes(url: str) -> Counter[str]:
    async def fetch() -> Counter[str]:
        connection = await nats.connect(url)
        try:
            subscription = await connection.jetstream().pull_subscribe("tailscale.>", stream="TAILSCALE")
            nodes: Counter[str] = Counter()
            while True:
                try:
                    messages = await subscription.fetch(1000, timeout=1)
                except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either when drained
                    return nodes
                for message in messages:
                    nodes[orjson.loads(message.data)["event"]["nodeId"]] += 1
                    await message.ack()
        finally:
            await connection.close()

    return asyncio.run(fetch())


def test_kill_9_mid_stream_loses_no_acknowledged_record(
    make_server: MakeServer,
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
):
    config = config_file(tmp_path, nats_server.url)
    server = make_server("--config", config)
    acknowledged: list[str] = []
    counter = itertools.count()
    stop = threading.Event()

    def client(number: int) -> None:
        with httpx.Client(headers=HEADERS, timeout=10) as http:
            while not stop.is_set():
                ids = [f"c{number}-{next(counter)}" for _ in range(25)]
                try:
                    answer = http.post(f"{server.url}/v1/tailscale/network", content=body(ids))
                except httpx.TransportError:
                    return
                if answer.status_code == 200:
                    acknowledged.extend(ids)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in clients:
        thread.start()
    time.sleep(2.0)
    server.stop(signal.SIGKILL)
    stop.set()
    for thread in clients:
        thread.join(timeout=15)
    # As if the power went out during one more append: half an entry at the journal's end.
    journal_dir = server.data_dir / "journal" / "slot-0"
    last = segment_path(journal_dir, list_segments(journal_dir)[-1])
    intact = last.stat().st_size
    with last.open("ab") as segment:
        segment.write(b"\x10\x00\x00\x00torn")

    restarted = make_server("--config", config)
    restarted.drained("nats")

    assert len(acknowledged) > 500
    assert last.stat().st_size >= intact  # the torn bytes were cut, nothing whole was
    archive = archived_nodes(restarted)
    stream = streamed_nodes(nats_server.url)
    assert set(acknowledged) <= set(archive), "an acknowledged record is missing from the archive"
    assert set(acknowledged) <= set(stream), "an acknowledged record is missing from JetStream"
    assert max(archive.values()) == 1 and max(stream.values()) == 1, "a record was delivered twice"


def test_sink_outage_fills_the_journal_to_503_then_everything_is_delivered_once(
    make_server: MakeServer,
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
):
    config = config_file(tmp_path, nats_server.url, journal_max_bytes=300_000, journal_segment_bytes=30_000)
    server = make_server("--config", config)
    nats_server.stop()
    acknowledged: list[str] = []
    refused: httpx.Response | None = None

    with httpx.Client(headers=HEADERS, timeout=10) as http:
        for n in range(400):
            ids = [f"r{n}-{i}" for i in range(20)]
            answer = http.post(f"{server.url}/v1/tailscale/network", content=body(ids))
            if answer.status_code != 200:
                refused = answer
                break
            acknowledged.extend(ids)
        ready_while_full = http.get(f"{server.url}/readyz").status_code

        assert refused is not None, "the journal never filled up"
        assert server.metric("tailscribe_journal_bytes") >= 300_000
        assert server.metric("tailscribe_journal_segments") > 5
        assert server.metric("tailscribe_sink_lag_records", sink="nats") >= len(acknowledged)
        # The journal can fill before the first publish has failed: one sent as NATS went down waits
        # publish_timeout (1 s) for its ack. Once it fails, every retry fails fast and counts.
        deadline = time.monotonic() + 10
        while server.metric("tailscribe_sink_errors_total", sink="nats") == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.metric("tailscribe_sink_errors_total", sink="nats") > 0
        assert refused.status_code == 503 and refused.json()["code"] == 9
        assert int(refused.headers["retry-after"]) > 0
        assert ready_while_full == 503
        assert len(acknowledged) >= 200

        nats_server.start()
        server.drained("nats", timeout=40)
        deadline = time.monotonic() + 10
        while http.get(f"{server.url}/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        after = http.post(f"{server.url}/v1/tailscale/network", content=body(["after-outage"]))

    assert after.status_code == 200
    acknowledged.append("after-outage")
    server.drained("nats")
    assert server.metric("tailscribe_journal_bytes") < 300_000
    assert streamed_nodes(nats_server.url) == Counter(acknowledged)
    assert archived_nodes(server) == Counter(acknowledged)


def test_a_restart_resumes_every_sink_from_its_checkpoint(
    make_server: MakeServer,
    nats_server: NatsServer,  # noqa: F811
    tmp_path: Path,
):
    config = config_file(tmp_path, nats_server.url)
    first = make_server("--config", config)
    before = [f"before-{i}" for i in range(30)]
    assert httpx.post(f"{first.url}/v1/tailscale/network", content=body(before), headers=HEADERS).status_code == 200
    first.drained("nats")
    nats_server.stop()
    during = [f"during-{i}" for i in range(30)]
    assert httpx.post(f"{first.url}/v1/tailscale/network", content=body(during), headers=HEADERS).status_code == 200
    first.drained("archive")
    first.stop()  # graceful, with NATS still down: its rows wait in the journal

    nats_server.start()
    second = make_server("--config", config)
    second.drained("nats")

    assert streamed_nodes(nats_server.url) == Counter(before + during)
    assert archived_nodes(second) == Counter(before + during)
    assert second.metric("tailscribe_sink_rows_total", sink="archive") == 0  # nothing was re-archived
    assert second.metric("tailscribe_sink_rows_total", sink="nats") == len(during)
