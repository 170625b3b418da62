"""Hostile HTTP against a real receiver (uvicorn + httptools): old, pipelined, wrong, malformed, huge.

The answers, where the issue leaves them open:
- HTTP/1.0: answered, then the connection is closed (no keep-alive without asking for it). A 1.0
  request without Content-Length has no body (RFC 9112 §6.3): 200, nothing accepted.
- pipelined requests: each answered, in order, on the one connection.
- a wrong method: 405 JSON with `Allow` (HEAD included: probes use GET); an unknown path, a trailing
  slash included: 404 JSON, counted under route "unmatched" whatever the path.
- bytes that are not HTTP/1.1 (a URL over 64 KiB, conflicting or malformed lengths, control bytes,
  an HTTP/2 preface, TLS on the plain port): httptools refuses them, app/protocol.py answers 400 in
  the receiver's JSON shape, logs and counts it, and closes the connection; the application never
  runs, nothing is stored. After a complete request in the same packet, that request is answered
  first.
- a declared body over max_body_bytes: 413 before a byte of it is read.

Headers used to have no size cap (httptools read a 16 MiB header whole); app/protocol.py answers 431
past max_header_bytes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Server
from tests.e2e.hostile import (
    MEMORY_MARGIN,
    NETWORK,
    NETWORK_URL,
    PARSER_400,
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
    send_raw,
    start_server,
)

MAX_BODY = MiB
AUTH = [(b"Authorization", bearer()["Authorization"].encode())]


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("http"), "--max-body-bytes", str(MAX_BODY))
    yield server
    server.stop()


def test_a_header_over_64_kib_is_refused_without_being_held(receiver: Server):
    request = request_bytes("POST", NETWORK_URL, headers=[*AUTH, (b"X-Junk", b"a" * (16 * MiB))], body=NETWORK)

    with Memory(receiver).watch() as memory:
        answer = raw_answer(receiver, request)

    assert answer.status in (400, 431)
    assert memory.growth <= MEMORY_MARGIN, str(memory)


# --- old, pipelined, wrong --------------------------------------------------------------------------


def test_http_1_0_is_answered_and_the_connection_closed(receiver: Server):
    before = Ledger.of(receiver)
    with connect(receiver) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        started = time.monotonic()
        data = read_until_closed(sock, timeout=5)
        closed_after = time.monotonic() - started

    [health] = parse_answers(data)
    assert health.status == 200 and health.json() == {"status": "ok"}
    assert closed_after < 1  # closed at once, not after keepalive_timeout
    post_10 = request_bytes("POST", NETWORK_URL, headers=AUTH, body=NETWORK, version=b"HTTP/1.0", close=False)
    assert raw_answer(receiver, post_10).json() == {"text": "Success", "code": 0, "accepted": 1, "quarantined": 0}
    no_length = b"POST " + NETWORK_URL.encode() + b" HTTP/1.0\r\nAuthorization: " + AUTH[0][1] + b"\r\n\r\n" + NETWORK
    assert raw_answer(receiver, no_length).json()["accepted"] == 0
    stored = before.since(receiver)
    assert (stored.accepted, stored.quarantined, stored.bodies) == (1, 0, [])
    assert_serving(receiver)


def test_pipelined_requests_are_each_answered_in_order(receiver: Server):
    requests = [
        request_bytes("POST", NETWORK_URL, headers=AUTH, body=NETWORK, close=False),
        request_bytes("GET", "/healthz", close=False),
        request_bytes("POST", NETWORK_URL, headers=AUTH, body=b'{"truncated":', close=False),
        request_bytes("POST", NETWORK_URL, body=NETWORK, close=False),
        request_bytes("GET", "/wp-login.php", close=False),
        request_bytes("DELETE", NETWORK_URL, close=False),
        request_bytes("POST", NETWORK_URL, headers=AUTH, body=NETWORK, close=True),
    ]
    before = Ledger.of(receiver)

    answers = parse_answers(send_raw(receiver, b"".join(requests)))

    assert [answer.status for answer in answers] == [200, 200, 400, 401, 404, 405, 200]
    assert answers[0].json()["accepted"] == 1 and answers[6].json()["accepted"] == 1
    stored = before.since(receiver)
    assert (stored.accepted, stored.quarantined) == (2, 0)
    assert stored.bodies == [b'{"truncated":'] and stored.reasons == ["invalid_json"]
    assert_serving(receiver)


def test_a_complete_request_followed_by_garbage_is_answered_and_stored_once_then_refused(receiver: Server):
    """uvicorn alone answered the garbage's 400 first and closed, although the request ahead was stored."""
    before = Ledger.of(receiver)
    refused = receiver.metric("tailscribe_rejected_requests_total", reason="malformed_http")
    logged = refusal_lines(receiver, "malformed_http")

    data = send_raw(
        receiver, request_bytes("POST", NETWORK_URL, headers=AUTH, body=NETWORK, close=False) + b"JUNK\r\n\r\n"
    )

    answers = parse_answers(data)
    assert [answer.status for answer in answers] == [200, 400]
    assert answers[0].json()["accepted"] == 1
    assert answers[1].body == PARSER_400 and answers[1].headers["connection"] == "close"
    stored = before.since(receiver)
    assert (stored.accepted, stored.quarantined, stored.bodies) == (1, 0, [])
    assert receiver.metric("tailscribe_rejected_requests_total", reason="malformed_http") == refused + 1
    deadline = time.monotonic() + 5  # log lines are written a moment later, by a thread of their own
    while refusal_lines(receiver, "malformed_http") == logged and time.monotonic() < deadline:
        time.sleep(0.02)
    assert refusal_lines(receiver, "malformed_http") == logged + 1
    assert_serving(receiver)


def test_bytes_after_a_request_that_asked_to_close_are_not_read(receiver: Server):
    """`Connection: close` ends the conversation (RFC 9112 §9.6): the 200 is the only answer, and what
    follows is neither parsed nor counted as a refusal."""
    before = Ledger.of(receiver)
    refused = receiver.metric("tailscribe_rejected_requests_total", reason="malformed_http")

    data = send_raw(
        receiver, request_bytes("POST", NETWORK_URL, headers=AUTH, body=NETWORK, close=True) + b"JUNK\r\n\r\n"
    )

    assert [answer.status for answer in parse_answers(data)] == [200]
    assert before.since(receiver).accepted == 1
    assert receiver.metric("tailscribe_rejected_requests_total", reason="malformed_http") == refused
    assert_serving(receiver)


def refusal_lines(server: Server, reason: str) -> int:
    """Log lines of refusals made by the protocol, which the application's access log never sees."""
    return sum("request refused" in line and reason in line for line in server.logs().splitlines())


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", NETWORK_URL, "POST"),
        ("PUT", NETWORK_URL, "POST"),
        ("DELETE", "/v1/tailscale/audit", "POST"),
        ("PATCH", "/services/collector/event", "POST"),
        ("POST", "/healthz", "GET"),
        ("POST", "/metrics", "GET"),
        ("TRACE", "/healthz", "GET"),
        ("HEAD", "/healthz", "GET"),
    ],
)
def test_a_wrong_method_is_405_json_with_allow(receiver: Server, method: str, path: str, allow: str):
    """HEAD is not served either (liveness probes use GET)."""
    before = Ledger.of(receiver)

    answer = raw_answer(receiver, request_bytes(method, path, headers=AUTH, body=NETWORK if method != "GET" else b""))

    assert answer.status == 405 and answer.headers["allow"] == allow
    if method != "HEAD":
        assert answer.json() == {"text": "Method Not Allowed", "code": 405, "detail": "Method Not Allowed"}
    assert before.since(receiver).nothing
    assert_serving(receiver)


@pytest.mark.parametrize(
    "path",
    [
        "/wp-login.php",
        "/.env",
        "/v1/tailscale/",
        "/v1/tailscale/network/",
        "/v1/tailscale/corp/network",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%ff%fe%00",
        "/" + "a" * 60_000,
    ],
)
def test_an_unknown_path_is_404_json_under_one_metric_label(receiver: Server, path: str):
    before = Ledger.of(receiver)

    answer = raw_answer(receiver, request_bytes("POST", path, headers=AUTH, body=NETWORK))

    assert answer.status == 404
    assert answer.json() == {"text": "Not Found", "code": 404, "detail": "Not Found"}
    assert before.since(receiver).nothing
    metrics = send_raw(receiver, request_bytes("GET", "/metrics")).decode()
    assert 'route="unmatched"' in metrics and "wp-login" not in metrics and "aaaaaaaa" not in metrics
    assert_serving(receiver)


NOT_HTTP: list[tuple[str, bytes]] = [
    (
        "content-length-and-chunked",
        request_bytes("POST", NETWORK_URL, headers=[*AUTH, (b"Transfer-Encoding", b"chunked")], body=b"0\r\n\r\n"),
    ),
    (
        "bad-chunk-size",
        request_bytes("POST", NETWORK_URL, headers=[*AUTH, (b"Transfer-Encoding", b"chunked")], content_length=False)
        + b"zz\r\nabc\r\n0\r\n\r\n",
    ),
    (
        "content-length-not-a-number",
        request_bytes("POST", NETWORK_URL, headers=[*AUTH, (b"Content-Length", b"abc")], content_length=False),
    ),
    (
        "content-length-negative",
        request_bytes("POST", NETWORK_URL, headers=[*AUTH, (b"Content-Length", b"-1")], content_length=False),
    ),
    (
        "two-content-lengths",
        request_bytes(
            "POST",
            NETWORK_URL,
            headers=[*AUTH, (b"Content-Length", b"2"), (b"Content-Length", b"3")],
            content_length=False,
        )
        + b"{}",
    ),
    (
        "content-length-past-64-bits",
        request_bytes("POST", NETWORK_URL, headers=[*AUTH, (b"Content-Length", b"9" * 30)], content_length=False),
    ),
    ("unknown-method", request_bytes("FOO", "/healthz")),
    ("non-ascii-path", b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("http-1.2", request_bytes("GET", "/healthz", version=b"HTTP/1.2")),
    ("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ("tls-client-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64)),
    ("nul-in-a-header-name", request_bytes("GET", "/healthz", headers=[(b"X-\0", b"1")])),
    ("connect", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
]


@pytest.mark.parametrize("request_", [pytest.param(case[1], id=case[0]) for case in NOT_HTTP])
def test_bytes_that_are_not_http_get_a_counted_json_400_and_nothing_is_stored(receiver: Server, request_: bytes):
    before = Ledger.of(receiver)
    refused = receiver.metric("tailscribe_rejected_requests_total", reason="malformed_http")

    with Memory(receiver).watch() as memory:
        answer = raw_answer(receiver, request_)

    assert answer.status == 400
    assert answer.body == PARSER_400 and answer.headers["connection"] == "close"
    assert answer.headers["content-type"] == "application/json"
    assert receiver.metric("tailscribe_rejected_requests_total", reason="malformed_http") == refused + 1
    assert before.since(receiver).nothing
    assert memory.growth <= MEMORY_MARGIN, str(memory)
    assert_serving(receiver)


OVER_LONG_HEADS: list[tuple[str, bytes]] = [
    ("url-of-1-mib", request_bytes("GET", "/" + "a" * MiB)),
    ("url-of-70-kib", request_bytes("GET", "/" + "a" * 70_000)),
    ("query-of-1-mib", request_bytes("POST", NETWORK_URL + "?q=" + "a" * MiB, headers=AUTH, body=NETWORK)),
]


@pytest.mark.parametrize("request_", [data for _, data in OVER_LONG_HEADS], ids=[name for name, _ in OVER_LONG_HEADS])
def test_a_request_line_over_max_header_bytes_gets_431_and_nothing_is_stored(receiver: Server, request_: bytes):
    """The request line counts toward max_header_bytes (64 KiB): 431 in the receiver's JSON shape."""
    before = Ledger.of(receiver)
    refused = receiver.metric("tailscribe_rejected_requests_total", reason="headers_too_large")

    with Memory(receiver).watch() as memory:
        answer = raw_answer(receiver, request_)

    assert answer.status == 431 and answer.headers["connection"] == "close"
    assert answer.body == b'{"text":"Request Header Fields Too Large","code":6}'
    assert receiver.metric("tailscribe_rejected_requests_total", reason="headers_too_large") == refused + 1
    assert before.since(receiver).nothing
    assert memory.growth <= MEMORY_MARGIN, str(memory)
    assert_serving(receiver)


def test_a_declared_body_over_the_cap_is_413_before_a_byte_of_it_is_sent(receiver: Server):
    """Content-Length alone decides: the answer comes while the client has sent headers only."""
    head = request_bytes("POST", NETWORK_URL, headers=[*AUTH, (b"Content-Length", b"100000000")], content_length=False)
    before = Ledger.of(receiver)

    with connect(receiver) as sock:
        sock.sendall(head)
        answers = parse_answers(read_until_closed(sock, timeout=5, budget=4096))

    assert answers[0].status == 413 and "max_body_bytes" in answers[0].json()["detail"]
    assert before.since(receiver).nothing
    assert_serving(receiver)
