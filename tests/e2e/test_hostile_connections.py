"""Hostile connections against a real receiver (uvicorn + httptools): slow, idle, crowded, and cut.

The answers, where the issue leaves them open:
- a body trickled slower than body_timeout (or stalled): 408 (JSON) once body_timeout has passed,
  nothing stored.
- more slow requests than max_concurrent_requests: 503 + Retry-After for the next one (the receiver
  has no 429: being busy is not the client's fault); the slow ones then get their 408.
- hundreds of connections trickling headers (slowloris): other clients are served throughout.
- a client gone mid-body: nobody to answer; nothing stored, logged as `client_disconnected`. Gone
  right after a complete body: stored once or not at all (a race), never half.

A connection that never completes its request line and headers, or sends nothing at all, used to be
held open forever (uvicorn's httptools protocol arms no timer until a first response); since
app/protocol.py it gets 408 after header_timeout and is closed.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Server
from tests.e2e.hostile import (
    MEMORY_MARGIN,
    NETWORK,
    NETWORK_URL,
    Ledger,
    Memory,
    MiB,
    assert_serving,
    bearer,
    connect,
    parse_answers,
    raw_answer,
    read_until_closed,
    request_bytes,
    start_server,
    wait_for_requests,
)

BODY_TIMEOUT = 1.0
KEEPALIVE = 1.0
MAX_CONCURRENT = 8
AUTH = [(b"Authorization", bearer()["Authorization"].encode())]


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        tmp_path_factory.mktemp("connections"),
        "--body-timeout",
        str(BODY_TIMEOUT),
        "--header-timeout",
        str(BODY_TIMEOUT),
        "--keepalive-timeout",
        str(KEEPALIVE),
        "--max-body-bytes",
        str(MiB),
        "--max-concurrent-requests",
        str(MAX_CONCURRENT),
    )
    yield server
    server.stop()


def trickle(sock: socket.socket, piece: bytes, *, every: float, until: float) -> tuple[bytes, float]:
    """Send `piece` every `every` seconds until the receiver answers or closes, or `until` seconds
    pass; return what it sent back and when its first byte came (seconds since the call)."""
    started = time.monotonic()
    received = b""
    while (elapsed := time.monotonic() - started) < until:
        try:
            if piece:
                sock.sendall(piece)
            sock.settimeout(every)
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return received, elapsed
        if not chunk:
            return received, elapsed
        received = chunk + read_until_closed(sock, timeout=1)
        return received, elapsed
    return received, until


# --- slow clients -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "piece"),
    [
        pytest.param(
            request_bytes("POST", NETWORK_URL, headers=AUTH, body=NETWORK)[: -len(NETWORK)] + NETWORK[:10],
            b"x",
            id="content-length-one-byte-at-a-time",
        ),
        pytest.param(
            request_bytes(
                "POST", NETWORK_URL, headers=[*AUTH, (b"Transfer-Encoding", b"chunked")], content_length=False
            ),
            b"1\r\nx\r\n",
            id="chunked-one-byte-chunks",
        ),
        pytest.param(
            request_bytes("POST", NETWORK_URL, headers=AUTH, body=NETWORK)[: -len(NETWORK)], b"", id="stalled"
        ),
    ],
)
def test_a_body_slower_than_body_timeout_is_408_and_nothing_is_stored(receiver: Server, head: bytes, piece: bytes):
    before = Ledger.of(receiver)

    with connect(receiver) as sock:
        sock.sendall(head)
        data, elapsed = trickle(sock, piece, every=0.1, until=BODY_TIMEOUT + 5)

    [answer] = parse_answers(data)
    assert answer.status == 408
    assert answer.json()["code"] == 6 and answer.json()["text"] == "Request timeout"
    assert "body_timeout" in answer.json()["detail"]
    assert BODY_TIMEOUT - 0.1 <= elapsed <= BODY_TIMEOUT + 2
    assert before.since(receiver).nothing
    assert_serving(receiver)


def test_slow_bodies_past_max_concurrent_requests_make_the_next_one_503_then_all_recovers(receiver: Server):
    """Slow uploads hold their slots until body_timeout frees them; meanwhile others get 503."""
    head = request_bytes("POST", NETWORK_URL, headers=AUTH, body=NETWORK)[: -len(NETWORK)]
    sockets = [connect(receiver) for _ in range(MAX_CONCURRENT)]
    try:
        for sock in sockets:
            sock.sendall(head)
        time.sleep(0.3)

        busy = raw_answer(receiver, request_bytes("POST", NETWORK_URL, headers=AUTH, body=NETWORK))

        assert busy.status == 503
        assert busy.json()["code"] == 9 and busy.headers["retry-after"] == "1"
        answers = [parse_answers(read_until_closed(sock, timeout=BODY_TIMEOUT + 3, budget=4096)) for sock in sockets]
        assert [answer[0].status for answer in answers] == [408] * MAX_CONCURRENT
    finally:
        for sock in sockets:
            sock.close()
    assert_serving(receiver)


def test_hundreds_of_connections_trickling_headers_do_not_starve_other_clients(receiver: Server):
    """Slowloris: 300 connections each trickle a header line now and then. Normal clients are served
    throughout and the receiver's memory barely moves."""
    sockets = [connect(receiver) for _ in range(300)]
    try:
        with Memory(receiver).watch() as memory:
            for sock in sockets:
                sock.sendall(b"POST /v1/tailscale/network HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            for round_ in range(3):
                for sock in sockets:
                    sock.sendall(f"X-Slow-{round_}: 1\r\n".encode())
                assert_serving(receiver)
                time.sleep(0.2)
        assert memory.growth <= MEMORY_MARGIN, str(memory)
    finally:
        for sock in sockets:
            sock.close()
    assert_serving(receiver)


def test_a_connection_that_never_completes_its_headers_is_closed_in_bounded_time(receiver: Server):
    """Expected: closed (or answered 408) within keepalive_timeout + body_timeout + 1 s, whether the
    client sends nothing, half a request line, or a header line every 100 ms. The three connections
    are watched together, so the test costs one deadline, not three."""
    deadline = KEEPALIVE + BODY_TIMEOUT + 1
    openings = {
        "connected-and-silent": (b"", b""),
        "half-a-request-line": (b"POST /v1/tailscale/net", b""),
        "a-header-line-every-100ms": (b"POST /v1/tailscale/network HTTP/1.1\r\n", b"X-A: b\r\n"),
    }
    sockets = {name: connect(receiver) for name in openings}
    still_open = set(openings)
    try:
        for name, (first, _) in openings.items():
            sockets[name].sendall(first)
        started = time.monotonic()
        while still_open and time.monotonic() - started < deadline:
            for name in sorted(still_open):
                sock, piece = sockets[name], openings[name][1]
                try:
                    if piece:
                        sock.sendall(piece)
                    sock.settimeout(0.03)
                    sock.recv(65536)  # b"" (closed) or an answer: either way no longer held open
                    still_open.discard(name)
                except TimeoutError:
                    continue
                except OSError:
                    still_open.discard(name)
    finally:
        for sock in sockets.values():
            sock.close()

    assert not still_open, f"still open after {deadline:g} s: {sorted(still_open)}"


# --- clients that go away ---------------------------------------------------------------------------


DISCONNECTED = '"reason":"client_disconnected"'
"""How the access log line of a request whose client went away mid-body ends."""


def close_abruptly(sock: socket.socket) -> None:
    """Close with a TCP RST instead of a FIN, as a crashed client or a killed proxy does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize(
    ("sent", "reset"),
    [
        pytest.param(request_bytes("POST", NETWORK_URL, headers=AUTH, body=NETWORK)[:-20], False, id="half-body-fin"),
        pytest.param(request_bytes("POST", NETWORK_URL, headers=AUTH, body=NETWORK)[:-20], True, id="half-body-rst"),
        pytest.param(
            request_bytes("POST", NETWORK_URL, headers=AUTH, body=NETWORK)[: -len(NETWORK)], False, id="headers-only"
        ),
        pytest.param(
            request_bytes(
                "POST", NETWORK_URL, headers=[*AUTH, (b"Transfer-Encoding", b"chunked")], content_length=False
            )
            + f"{len(NETWORK):x}\r\n".encode()
            + NETWORK[:30],
            False,
            id="chunked-mid-chunk",
        ),
    ],
)
def test_a_client_gone_mid_body_leaves_nothing_stored(receiver: Server, sent: bytes, reset: bool):
    before = Ledger.of(receiver)
    finished = receiver.metric("tailscribe_requests_total", route=NETWORK_URL)
    disconnects = receiver.logs().count(DISCONNECTED)

    sock = connect(receiver)
    sock.sendall(sent)
    time.sleep(0.1)  # the request is under way
    if reset:
        close_abruptly(sock)
    else:
        sock.close()
    wait_for_requests(receiver, finished + 1)

    assert before.since(receiver).nothing
    deadline = time.monotonic() + 5  # the log line follows the metric by a moment
    while receiver.logs().count(DISCONNECTED) == disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert receiver.logs().count(DISCONNECTED) == disconnects + 1
    assert_serving(receiver)


def test_a_client_gone_right_after_its_body_is_stored_once_or_not_at_all(receiver: Server):
    """The body is complete but nobody reads the answer: whether the receiver reads the body before
    it notices the close is a race, so the record is accepted (the sender will re-send it: same
    p_row_id) or not stored at all, never half. `assert_serving` checks archive == accepted."""
    before = Ledger.of(receiver)
    finished = receiver.metric("tailscribe_requests_total", route=NETWORK_URL)

    sock = connect(receiver)
    sock.sendall(request_bytes("POST", NETWORK_URL, headers=AUTH, body=NETWORK, close=False))
    close_abruptly(sock)
    wait_for_requests(receiver, finished + 1)

    stored = before.since(receiver)
    assert stored.accepted in (0, 1) and stored.quarantined == 0 and stored.bodies == []
    assert_serving(receiver)
