"""The `nats` sink against a real `nats-server -js` on 127.0.0.1 (see `tests/servers/nats.py`)."""

from __future__ import annotations

import asyncio
import functools
import signal
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ParamSpec

import nats
import orjson
import pytest
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig
from pydantic import ValidationError

from app.sinks.base import RetryableSinkError, SinkBatch, SinkError, build_sink
from app.sinks.nats import NatsSink, NatsSinkConfig, subject_matches
from app.types import Row
from tests.servers.nats import NatsServer, free_port, nats_server, running_nats_server  # noqa: F401

P = ParamSpec("P")


def bounded(seconds: float) -> Callable[[Callable[P, Coroutine[Any, Any, None]]], Callable[P, None]]:
    """Run an async test on a fresh event loop, failing it if it takes longer than `seconds`."""

    def decorate(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
        @functools.wraps(test)
        def run(*args: P.args, **kwargs: P.kwargs) -> None:
            asyncio.run(asyncio.wait_for(test(*args, **kwargs), seconds))

        return run

    return decorate


def make_rows(count: int, log_type: str = "network") -> list[Row]:
    """Enriched rows as the journal holds them, each with a unique `p_row_id`."""
    rows: list[Row] = []
    for index in range(count):
        event: Row
        if log_type == "audit":
            event = {"action": "CREATE", "actor": {"loginName": "alice@example.com"}, "target": {"id": f"n{index}"}}
        else:
            event = {"nodeId": f"n{index}CNTRL", "virtualTraffic": [{"proto": 6, "src": "100.64.0.1:22", "txPkts": 3}]}
        rows.append(
            {
                "time": 1780500776.773 + index,
                "event": event,
                "p_log_type": "Tailscale.Audit" if log_type == "audit" else "Tailscale.Network",
                "p_row_id": uuid.uuid4().hex,
                "p_event_time": "2026-06-03T15:32:56.773000Z",
                "p_parse_time": "2026-06-03T15:32:57.000000Z",
            }
        )
    return rows


def make_sink(server: NatsServer, **options: Any) -> NatsSink:
    """A sink with short timeouts, so failures show quickly."""
    defaults = {"connect_timeout": 2.0, "publish_timeout": 2.0, "reconnect_wait": 0.2}
    return NatsSink(NatsSinkConfig(type="nats", name="nats", servers=[server.url], **{**defaults, **options}))


async def stored(server: NatsServer, stream: str = "TAILSCALE") -> list[tuple[str, str, Row]]:
    """(subject, Nats-Msg-Id, row) of every message in `stream`, in stream order."""
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        state = (await js.stream_info(stream)).state
        messages = [await js.get_msg(stream, seq) for seq in range(state.first_seq, state.last_seq + 1)]
        return [(str(m.subject), (m.headers or {})["Nats-Msg-Id"], orjson.loads(m.data or b"")) for m in messages]
    finally:
        await nc.close()


@bounded(30)
async def test_rows_are_published_per_log_type_and_consumed_in_order_with_row_id_as_msg_id(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    rows = make_rows(3, "audit") + make_rows(300, "network") + make_rows(2, "audit")
    sink = make_sink(nats_server, max_in_flight=64)
    await sink.start()
    try:
        await sink.write(SinkBatch(rows=rows, first_seq=1))
    finally:
        await sink.close()

    nc = await nats.connect(nats_server.url)
    try:
        subscription = await nc.jetstream().pull_subscribe("tailscale.>", stream="TAILSCALE")
        consumed: list[Msg] = []
        while len(consumed) < len(rows):
            consumed += await subscription.fetch(len(rows) - len(consumed), timeout=5)
        for message in consumed:
            await message.ack()
    finally:
        await nc.close()
    assert [orjson.loads(m.data) for m in consumed] == rows
    assert [(m.headers or {}).get("Nats-Msg-Id") for m in consumed] == [row["p_row_id"] for row in rows]
    assert [m.subject for m in consumed] == [f"tailscale.{row['p_log_type'].split('.')[1].lower()}" for row in rows]


@bounded(30)
async def test_writing_the_same_rows_again_stores_each_row_once(nats_server: NatsServer) -> None:  # noqa: F811
    rows = make_rows(50)
    sink = make_sink(nats_server)
    await sink.start()
    try:
        await sink.write(SinkBatch(rows=rows[:20], first_seq=1))
        await sink.write(SinkBatch(rows=rows, first_seq=1))  # the runner re-sending after a partial failure
        await sink.write(SinkBatch(rows=rows, first_seq=1))
    finally:
        await sink.close()
    assert [row for _, _, row in await stored(nats_server)] == rows


@bounded(30)
async def test_stream_is_created_with_the_configured_name_subjects_and_duplicate_window(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    sink = make_sink(nats_server, stream="LOGS", duplicate_window=30)
    await sink.start()
    await sink.start()  # idempotent: the stream exists now and is only verified
    await sink.close()
    nc = await nats.connect(nats_server.url)
    try:
        config = (await nc.jetstream().stream_info("LOGS")).config
    finally:
        await nc.close()
    assert config.subjects == ["tailscale.audit", "tailscale.network"]
    assert config.storage == StorageType.FILE
    assert config.duplicate_window == 30


@bounded(30)
async def test_missing_stream_without_create_stream_fails_start_naming_the_stream(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    sink = make_sink(nats_server, stream="NOT_THERE", create_stream=False)
    with pytest.raises(SinkError, match="NOT_THERE.*create_stream") as caught:
        await sink.start()
    assert not isinstance(caught.value, RetryableSinkError)
    await sink.close()


@bounded(30)
async def test_existing_stream_that_does_not_capture_the_subject_fails_start(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    nc = await nats.connect(nats_server.url)
    await nc.jetstream().add_stream(StreamConfig(name="OTHER", subjects=["other.>"]))
    await nc.close()
    sink = make_sink(nats_server, stream="OTHER", create_stream=False)
    with pytest.raises(SinkError, match="tailscale.audit"):
        await sink.start()
    await sink.close()


@bounded(30)
async def test_custom_subject_template_routes_rows_to_its_subjects(nats_server: NatsServer) -> None:  # noqa: F811
    rows = make_rows(2, "audit") + make_rows(2, "network")
    sink = make_sink(nats_server, subject="logs.{log_type}.v1", stream="CUSTOM")
    await sink.start()
    try:
        await sink.write(SinkBatch(rows=rows, first_seq=1))
    finally:
        await sink.close()
    messages = await stored(nats_server, "CUSTOM")
    assert [subject for subject, _, _ in messages] == ["logs.audit.v1"] * 2 + ["logs.network.v1"] * 2
    assert [msg_id for _, msg_id, _ in messages] == [row["p_row_id"] for row in rows]


@pytest.mark.parametrize(
    "template",
    [
        "tailscale.{type}",
        "tailscale.{log_type",
        "tailscale.{0}",
        "tailscale.*",
        "tailscale.>",
        "tail scale",
        "a..b",
        "",
    ],
)
def test_bad_subject_template_fails_config_validation(template: str) -> None:
    with pytest.raises(ValidationError, match="subject"):
        NatsSinkConfig(type="nats", subject=template)


def test_unknown_option_fails_config_validation_naming_it() -> None:
    with pytest.raises(ValidationError, match="subjects"):
        build_sink({"type": "nats", "subjects": "tailscale.{log_type}"})


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        ("tailscale.>", "tailscale.audit", True),
        ("tailscale.*", "tailscale.audit", True),
        ("tailscale.audit", "tailscale.audit", True),
        ("tailscale.>", "tailscale", False),
        ("tailscale.*", "tailscale.audit.v1", False),
        ("other.>", "tailscale.audit", False),
    ],
)
def test_stream_subject_filters_match_like_nats(pattern: str, subject: str, matches: bool) -> None:
    assert subject_matches(pattern, subject) is matches


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
@bounded(60)
async def test_outage_fails_writes_quickly_then_delivers_every_row_once_after_restart(
    nats_server: NatsServer,  # noqa: F811
    stop_signal: int,
) -> None:
    before, during = make_rows(10), make_rows(10)
    sink = make_sink(nats_server)
    await sink.start()
    try:
        await sink.write(SinkBatch(rows=before, first_seq=1))
        nats_server.stop(stop_signal)

        started = time.monotonic()
        with pytest.raises(RetryableSinkError):
            await sink.write(SinkBatch(rows=during, first_seq=11))
        assert time.monotonic() - started < 2.0 + 1.0  # publish_timeout plus slack: no hang

        nats_server.start()
        # What the runner does: retry the same batch until it is delivered; the client reconnects
        # by itself, so no second start() is needed.
        deadline = time.monotonic() + 20
        while True:
            try:
                await sink.write(SinkBatch(rows=during, first_seq=11))
                break
            except RetryableSinkError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await sink.close()
    assert [row for _, _, row in await stored(nats_server)] == before + during


@bounded(30)
async def test_start_while_server_is_down_fails_quickly_and_works_once_it_is_up(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    nats_server.stop()
    sink = make_sink(nats_server, connect_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(RetryableSinkError, match="could not connect"):
        await sink.start()
    assert time.monotonic() - started < 1.0 + 1.0
    await sink.close()
    await sink.close()

    nats_server.start()
    rows = make_rows(3)
    await sink.start()  # the runner calls start() again after a failed one
    try:
        await sink.write(SinkBatch(rows=rows, first_seq=1))
    finally:
        await sink.close()
        await sink.close()
    assert [row for _, _, row in await stored(nats_server)] == rows


@bounded(15)
async def test_start_against_a_port_nobody_listens_on_raises_retryable() -> None:
    config = NatsSinkConfig(type="nats", servers=[f"nats://127.0.0.1:{free_port()}"], connect_timeout=0.5)
    sink = NatsSink(config)
    with pytest.raises(RetryableSinkError, match="nats-server is running"):
        await sink.start()
    await sink.close()


@bounded(60)
async def test_hung_server_times_out_the_write_and_the_retry_stores_each_row_once(
    nats_server: NatsServer,  # noqa: F811
) -> None:
    rows = make_rows(20)
    sink = make_sink(nats_server, publish_timeout=1.0)
    await sink.start()
    try:
        nats_server.pause()  # TCP stays open, so only the ack timeout can notice
        started = time.monotonic()
        with pytest.raises(RetryableSinkError):
            await sink.write(SinkBatch(rows=rows, first_seq=1))
        assert time.monotonic() - started < 1.0 + 1.0
        nats_server.resume()  # the server now stores what it had received before the retry re-sends it
        await sink.write(SinkBatch(rows=rows, first_seq=1))
    finally:
        nats_server.resume()
        await sink.close()
    assert [row for _, _, row in await stored(nats_server)] == rows


@bounded(30)
async def test_refused_credentials_fail_start_as_a_sink_error_not_a_retryable_one(tmp_path: Path) -> None:
    with running_nats_server(tmp_path, args=["--auth", "right-token"]) as server:
        refusal: SinkError | None = None
        for _ in range(5):
            try:
                await make_sink(server, token="wrong-token", connect_timeout=1.0).start()
            except RetryableSinkError:
                continue  # the server may reset the connection before its -ERR is read: try again
            except SinkError as exc:
                refusal = exc
                break
        assert refusal is not None and "credentials" in str(refusal)

        sink = make_sink(server, token="right-token")
        await sink.start()
        try:
            await sink.write(SinkBatch(rows=make_rows(1), first_seq=1))
        finally:
            await sink.close()


@pytest.mark.parametrize("create_stream", [True, False])
@bounded(30)
async def test_stream_deleted_while_running_is_recreated_or_named_in_the_error(
    nats_server: NatsServer,  # noqa: F811
    create_stream: bool,
) -> None:
    nc = await nats.connect(nats_server.url)
    await nc.jetstream().add_stream(StreamConfig(name="TAILSCALE", subjects=["tailscale.>"]))
    sink = make_sink(nats_server, create_stream=create_stream)
    await sink.start()
    try:
        await nc.jetstream().delete_stream("TAILSCALE")
        rows = make_rows(3)
        with pytest.raises(RetryableSinkError, match="no JetStream stream answered"):
            await sink.write(SinkBatch(rows=rows, first_seq=1))
        if create_stream:
            await sink.write(SinkBatch(rows=rows, first_seq=1))
            assert [row for _, _, row in await stored(nats_server)] == rows
        else:
            with pytest.raises(SinkError, match="'TAILSCALE' does not exist"):
                await sink.write(SinkBatch(rows=rows, first_seq=1))
    finally:
        await sink.close()
        await nc.close()
