"""Hostile Authorization headers against a real receiver with two sources.

The answers (docs/architecture.md, app/errors.py): 401 with `WWW-Authenticate: Bearer` and HEC code
2 ("Token is required") when no credential is there at all, code 4 ("Invalid authorization") when
one is there but is not a configured token of a source that may post here; 403 (code 7) when the
token is right but its source may not post this log type. Authentication comes before the body is
read, so a refused request stores nothing, neither records nor a quarantined body, and the answer
never echoes the credential.

Where the issue leaves it open:
- `Bearer <token>   ` (trailing spaces or tabs) is accepted: RFC 9110 §5.5 strips the optional
  whitespace around a field value before anyone sees it, so the token is exactly right.
- a credential containing CR, LF, NUL or another control byte, or a header folded over two lines
  (obs-fold), is not HTTP/1.1 at all: the HTTP parser answers 400 (text/plain, uvicorn's own) and
  closes the connection before the application runs.
- header bytes that are not UTF-8 reach the check as latin-1 text and simply match no token: 401.
- a 1 MB header is read whole (uvicorn/httptools have no header-size cap; see test_hostile_http.py)
  and refused like any wrong token.
- two Authorization headers are refused (401, code 4), whichever comes first: a proxy and the
  receiver could each pick a different one, so neither may count.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import TOKEN, Server
from tests.e2e.hostile import (
    MEMORY_MARGIN,
    NETWORK,
    PARSER_400,
    Ledger,
    Memory,
    MiB,
    assert_serving,
    client,
    raw_answer,
    request_bytes,
    send_raw,
    start_server,
)
from tests.samples import audit_event, concatenated, envelope

CORP = TOKEN
"""The default source's token, which `assert_serving` posts with."""
LAB = "lab-token-0123456789abcdef"
CORP_NETWORK = "/v1/tailscale/corp/network"
AUDIT = concatenated([envelope(audit_event())])


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("auth")
    config = directory / "tailscribe.toml"
    config.write_text(
        f"""
[[sources]]
id = "default"
tokens = ["{CORP}"]
path_prefix = "/v1/tailscale/corp"

[[sources]]
id = "lab"
tokens = ["{LAB}"]
log_types = ["network"]
"""
    )
    server = start_server(directory, "--config", str(config), token=None)
    yield server
    server.stop()


def basic(user_and_password: bytes) -> str:
    return "Basic " + base64.b64encode(user_and_password).decode()


REFUSED: list[tuple[str, str | None, int, str]] = [
    # id, Authorization (None: no header), HEC code, reason label of tailscribe_auth_failures_total
    ("no-header", None, 2, "missing_token"),
    ("empty", "", 2, "missing_token"),
    ("spaces-only", "   ", 2, "missing_token"),
    ("bearer-without-token", "Bearer", 2, "missing_token"),
    ("bearer-and-spaces", "Bearer    ", 2, "missing_token"),
    ("splunk-without-token", "Splunk ", 2, "missing_token"),
    ("wrong-token", f"Bearer {CORP[:-1]}X", 4, "invalid_token"),
    ("token-prefix", f"Bearer {CORP[:-1]}", 4, "invalid_token"),
    ("token-doubled", f"Bearer {CORP}{CORP}", 4, "invalid_token"),
    ("token-without-scheme", CORP, 4, "invalid_token"),
    ("scheme-token", f"Token {CORP}", 4, "invalid_token"),
    ("scheme-digest", f'Digest username="x", response="{CORP}"', 4, "invalid_token"),
    ("token-of-another-source", f"Bearer {LAB}", 4, "invalid_token"),
    ("sha256-of-the-token-as-token", "Bearer sha256:" + "0" * 64, 4, "invalid_token"),
    ("basic-no-colon", basic(CORP.encode()), 4, "invalid_token"),
    ("basic-not-base64", "Basic !!!not-base64!!!", 4, "invalid_token"),
    ("basic-not-utf8", basic(b"user:\xff\xfe" + CORP.encode()), 4, "invalid_token"),
    ("basic-empty-password", basic(b"tailscale:"), 2, "missing_token"),
    ("basic-token-as-user", basic(CORP.encode() + b":"), 2, "missing_token"),
    ("60-kib-token", "Bearer " + "a" * 60_000, 4, "invalid_token"),  # just under max_header_bytes
]


def test_a_megabyte_token_is_refused_as_oversized_headers_before_it_is_checked(receiver: Server):
    """Over max_header_bytes (64 KiB) the head is refused by the protocol, 431, without being held."""
    before = Ledger.of(receiver)

    with Memory(receiver).watch() as memory:
        answer = raw_answer(
            receiver, request_bytes("POST", CORP_NETWORK, headers=[(b"Authorization", b"Bearer " + b"a" * MiB)])
        )

    assert answer.status == 431
    assert before.since(receiver).nothing
    assert memory.growth <= MEMORY_MARGIN, str(memory)
    assert_serving(receiver)


@pytest.mark.parametrize(("authorization", "code", "reason"), [pytest.param(*case[1:], id=case[0]) for case in REFUSED])
def test_a_missing_or_wrong_credential_is_401_and_nothing_is_stored(
    receiver: Server, authorization: str | None, code: int, reason: str
):
    """Posted to the corp source's own URL: a token of the lab source is "another source's" there.
    Sent on a raw socket: httpx refuses a header value with trailing whitespace."""
    headers = [] if authorization is None else [(b"Authorization", authorization.encode())]
    before = Ledger.of(receiver)
    failures = receiver.metric("tailscribe_auth_failures_total", reason=reason)

    with Memory(receiver).watch() as memory:
        answer = raw_answer(receiver, request_bytes("POST", CORP_NETWORK, headers=headers, body=NETWORK))

    assert answer.status == 401, answer.body
    assert answer.headers["www-authenticate"] == 'Bearer realm="tailscribe"'
    body = answer.json()
    assert body["code"] == code
    assert body["text"] == ("Token is required" if code == 2 else "Invalid authorization")
    assert CORP.encode() not in answer.body and LAB.encode() not in answer.body
    assert before.since(receiver).nothing
    assert receiver.metric("tailscribe_auth_failures_total", reason=reason) == failures + 1
    assert memory.growth <= MEMORY_MARGIN, str(memory)
    assert_serving(receiver)


def test_a_token_of_another_source_names_the_source_whose_url_it_is(receiver: Server):
    with client(receiver) as http:
        answer = http.post(CORP_NETWORK, content=NETWORK, headers={"Authorization": f"Bearer {LAB}"})

    assert answer.status_code == 401 and "'default'" in answer.json()["detail"]


def test_a_source_posting_a_log_type_it_may_not_is_403_and_nothing_is_stored(receiver: Server):
    before = Ledger.of(receiver)

    with client(receiver) as http:
        answer = http.post("/v1/tailscale/audit", content=AUDIT, headers={"Authorization": f"Bearer {LAB}"})

    assert answer.status_code == 403
    assert answer.json()["code"] == 7 and answer.json()["text"] == "Incorrect index"
    assert before.since(receiver).nothing
    assert_serving(receiver)


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(f"Bearer {CORP}   ", id="trailing-spaces"),
        pytest.param(f"Bearer {CORP}\t", id="trailing-tab"),
        pytest.param(f"bearer     {CORP}", id="lower-case-scheme-and-spaces"),
        pytest.param(basic(f"tailscale:{CORP}".encode()), id="basic"),
        pytest.param(f"Splunk {CORP}", id="splunk"),
    ],
)
def test_optional_whitespace_and_every_scheme_are_accepted(receiver: Server, authorization: str):
    """RFC 9110 §5.5: whitespace around a field value is not part of it."""
    before = Ledger.of(receiver)

    answer = raw_answer(
        receiver,
        request_bytes("POST", CORP_NETWORK, headers=[(b"Authorization", authorization.encode())], body=NETWORK),
    )

    assert answer.status == 200 and answer.json()["accepted"] == 1
    assert before.since(receiver).accepted == 1
    assert_serving(receiver)


RAW_REFUSED: list[tuple[str, list[bytes], int]] = [
    # id, Authorization header lines as sent, status (401: the application answered; 400: the HTTP parser)
    ("not-utf8", [b"Authorization: Bearer \xff\xfe\x80\x81"], 401),
    ("latin1-after-the-token", [b"Authorization: Bearer " + CORP.encode() + b"\xe9"], 401),
    ("two-headers-right-first", [b"Authorization: Bearer " + CORP.encode(), b"Authorization: Bearer wrong"], 401),
    ("two-headers-right-second", [b"Authorization: Bearer wrong", b"Authorization: Bearer " + CORP.encode()], 401),
    ("two-headers-both-right", [b"Authorization: Bearer " + CORP.encode()] * 2, 401),
    ("token-then-bare-lf", [b"Authorization: Bearer " + CORP.encode() + b"\n"], 400),
    ("lf-inside-the-token", [b"Authorization: Bearer " + CORP[:5].encode() + b"\n" + CORP[5:].encode()], 400),
    ("cr-inside-the-token", [b"Authorization: Bearer " + CORP[:5].encode() + b"\r" + CORP[5:].encode()], 400),
    ("nul-inside-the-token", [b"Authorization: Bearer " + CORP[:5].encode() + b"\0" + CORP[5:].encode()], 400),
    ("folded-over-two-lines", [b"Authorization: Bearer", b" " + CORP.encode()], 400),
    ("space-before-the-colon", [b"Authorization : Bearer " + CORP.encode()], 400),
]


@pytest.mark.parametrize(("lines", "status"), [pytest.param(*case[1:], id=case[0]) for case in RAW_REFUSED])
def test_header_bytes_httpx_cannot_send_are_refused_and_nothing_is_stored(
    receiver: Server, lines: list[bytes], status: int
):
    request = b"\r\n".join(
        [b"POST " + CORP_NETWORK.encode() + b" HTTP/1.1", b"Host: 127.0.0.1", *lines]
        + [b"Content-Length: " + str(len(NETWORK)).encode(), b"Connection: close", b"", NETWORK]
    )
    before = Ledger.of(receiver)

    answer = raw_answer(receiver, request)

    assert answer.status == status
    if status == 401:
        assert answer.json()["code"] == 4 and answer.headers["www-authenticate"].startswith("Bearer")
    else:
        assert answer.body == PARSER_400 and answer.headers["connection"] == "close"
    assert CORP.encode() not in answer.body
    assert before.since(receiver).nothing
    assert_serving(receiver)


def test_a_refused_request_is_answered_without_reading_its_body(receiver: Server):
    """An unauthenticated 1 GB upload announced with `Expect: 100-continue` gets its 401 at once:
    no 100 Continue, not a byte of the body read."""
    request = b"\r\n".join(
        [
            b"POST " + CORP_NETWORK.encode() + b" HTTP/1.1",
            b"Host: 127.0.0.1",
            b"Expect: 100-continue",
            b"Content-Length: 1000000000",
            b"Connection: close",
            b"",
            b"",
        ]
    )
    before = Ledger.of(receiver)

    data = send_raw(receiver, request, timeout=5)

    assert data.startswith(b"HTTP/1.1 401 ") and b"100 Continue" not in data
    assert before.since(receiver).nothing
    assert_serving(receiver)


def test_no_credential_reaches_the_logs_or_the_quarantine(receiver: Server):
    """After every case above (run this module whole): the log and the data directory hold no token."""
    with client(receiver) as http:
        http.post(CORP_NETWORK, content=b"{not json", headers={"Authorization": f"Bearer {CORP}"})
    assert CORP not in receiver.logs() and LAB not in receiver.logs()
    for path in (receiver.data_dir / "quarantine").rglob("*"):
        if path.is_file():
            assert CORP.encode() not in path.read_bytes() and LAB.encode() not in path.read_bytes()
