"""Security review, one test per claim: what the receiver promises about tokens, sources and errors.

Claims checked here:
- tokens are compared in constant time: SHA-256 digests of a fixed length, `hmac.compare_digest`
  against every configured token, with no early exit;
- no token ever reaches the log, wherever a sender puts it (every endpoint, success and failure,
  Bearer/Splunk/Basic, query string, other headers, inside a rejected body);
- a source's token never posts on another source's prefixed routes;
- no answer carries a traceback: an internal error is exactly HEC's `{"text": "Internal server
  error", "code": 8}`, and 404/405/422 answer in the same JSON shape.

Claims checked elsewhere, not repeated:
- status page security headers: tests/test_status.py::test_page_is_html_with_security_headers (all
  headers, router alone) and tests/e2e/test_status_page.py (CSP through the real server); the
  log test below also checks every header on the real server's page;
- the container runs as a non-root user: tests/test_container.py::
  test_image_runs_as_a_fixed_non_root_user_owning_the_data_volume, and
  test_receiver_service_is_built_here_hardened_and_health_checked for compose's `user`;
- tokens kept only as digests: tests/test_auth.py::test_authenticator_keeps_no_plain_token;
- a source posting as itself and only the log types it may: tests/e2e/test_production.py::
  test_each_source_posts_as_itself_and_only_where_it_may;
- a rejected body's stored metadata has no Authorization:
  tests/e2e/test_ingest.py::test_truncated_body_is_refused_with_its_offset_and_kept_raw.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app import auth
from app.auth import Authenticator
from app.errors import InvalidToken
from app.main import create_app
from app.settings import Settings, SourceConfig
from app.status import SECURITY_HEADERS
from app.storage import Batch
from tests.e2e.conftest import MakeServer, Server, make_server  # noqa: F401 - the fixture, for the log test
from tests.e2e.hostile import RawAnswer, raw_answer, request_bytes, start_server
from tests.samples import audit_event, concatenated, envelope, network_event
from tests.servers.app import serving

AUDIT = concatenated([envelope(audit_event())])
NETWORK = concatenated([envelope(network_event())])

# Constant-time comparison

TOKENS = {
    "corp": ["corp-old-token", "corp-new-token"],
    "hashed": ["sha256:" + hashlib.sha256(b"hashed-token").hexdigest()],  # configured by its digest only
    "lab": ["lab-token"],
    "edge": ["e", "edge-" + "x" * 200],
}


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    """Every pair `app.auth` hands to `hmac.compare_digest`, recorded on the way through."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    return calls


def authenticator() -> Authenticator:
    return Authenticator([SourceConfig(id=source, tokens=tokens) for source, tokens in TOKENS.items()])


def configured() -> list[str]:
    return [token for tokens in TOKENS.values() for token in tokens]


@pytest.mark.parametrize(
    "header",
    [
        "Bearer corp-old-token",  # the first configured token
        "Bearer " + "edge-" + "x" * 200,  # the last one
        "Splunk lab-token",  # one in the middle
        "Bearer hashed-token",  # one configured as sha256:<hex>
        "Basic " + base64.b64encode(b"tailscale:corp-new-token").decode(),
        "Bearer wrong",
        "Bearer " + "w" * 10_000,
        "Bearer corp-old-toke",  # a prefix of a real token
    ],
)
def test_every_check_compares_fixed_length_digests_with_every_configured_token(
    compared: list[tuple[bytes, bytes]], header: str
) -> None:
    checker = authenticator()
    compared.clear()  # building it compared digests to refuse duplicates

    try:
        checker.authenticate(header)
    except InvalidToken:
        pass

    # One comparison per configured token, whether the token is first, last, absent or oddly long:
    # neither the answer nor the candidate's length changes the work done.
    assert len(compared) == len(configured())
    candidate = hashlib.sha256(auth.extract_token(header).encode()).digest()
    assert {a for a, _ in compared} == {candidate}
    assert sorted(b for _, b in compared) == sorted(auth.token_digest(token) for token in configured())
    assert all(len(a) == len(b) == 32 for a, b in compared)


# Tokens never logged

CORP_TOKENS = ("corp-token-aaaa1111bbbb2222", "corp-token-rotated-3333cccc")
LAB_TOKEN = "lab-token-dddd4444eeee5555"
WRONG_TOKEN = "wrong-token-ffff6666gggg7777"
ODD_PLACES = {
    "query": "query-token-hhhh8888iiii9999",
    "header": "header-token-jjjj0000kkkk1111",
    "body": "body-token-llll2222mmmm3333",
    "record": "record-token-nnnn4444oooo5555",
    "basic-user": "user-token-pppp6666qqqq7777",
}
SECRETS = (*CORP_TOKENS, LAB_TOKEN, WRONG_TOKEN, *ODD_PLACES.values())


def basic(user: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


def requests_everywhere(url: str) -> list[httpx.Response]:
    """Every endpoint, successes and failures, with tokens in every place a sender might put one."""
    good, rotated = CORP_TOKENS
    answers = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for path, body in (("/v1/tailscale/audit", AUDIT), ("/v1/tailscale/network", NETWORK)):
            for header in (f"Bearer {good}", f"Splunk {rotated}", basic("tailscale", good), f"Bearer {WRONG_TOKEN}"):
                answers.append(http.post(path, content=body, headers={"Authorization": header}))
        hec = AUDIT + NETWORK
        answers += [
            http.post("/services/collector/event", content=hec, headers={"Authorization": f"Splunk {good}"}),
            http.post("/services/collector/event", content=hec, headers={"Authorization": f"Bearer {LAB_TOKEN}"}),
            http.post("/v1/tailscale/lab/network", content=NETWORK, headers={"Authorization": f"Bearer {LAB_TOKEN}"}),
            http.post("/v1/tailscale/lab/audit", content=AUDIT, headers={"Authorization": f"Bearer {LAB_TOKEN}"}),
            http.post("/v1/tailscale/lab/network", content=NETWORK, headers={"Authorization": f"Bearer {good}"}),
            http.post("/v1/tailscale/audit", content=AUDIT, headers={"Authorization": f"Token {good}"}),
            http.post("/v1/tailscale/audit", content=AUDIT, headers={"Authorization": basic(WRONG_TOKEN, "")}),
            http.post(
                "/v1/tailscale/audit",
                content=AUDIT,
                headers={"Authorization": basic(ODD_PLACES["basic-user"], WRONG_TOKEN)},
            ),
            http.post(f"/v1/tailscale/audit?token={ODD_PLACES['query']}", content=AUDIT),
            http.post(
                f"/v1/tailscale/network?token={ODD_PLACES['query']}&access_token={good}",
                content=NETWORK,
                headers={"Authorization": f"Bearer {good}"},
            ),
            http.post(
                "/v1/tailscale/audit",
                content=AUDIT,
                headers={"X-Splunk-Token": ODD_PLACES["header"], "X-Auth-Token": good, "Cookie": f"token={good}"},
            ),
            # Refused bodies holding a token: kept in quarantine by design, never logged.
            http.post(
                "/v1/tailscale/audit",
                content=b'{"token":"' + ODD_PLACES["body"].encode() + b'", "truncated": ',
                headers={"Authorization": f"Bearer {good}"},
            ),
            http.post(
                "/v1/tailscale/audit",
                content=gzip.compress(b'{"token":"' + ODD_PLACES["body"].encode())[:-6],
                headers={"Authorization": f"Bearer {good}", "Content-Encoding": "gzip"},
            ),
            http.post(
                "/v1/tailscale/network",
                content=concatenated([{"time": "never", "event": {"nodeId": ODD_PLACES["record"]}}]),
                headers={"Authorization": f"Bearer {good}"},
            ),
            http.post(
                "/v1/tailscale/audit",
                content=AUDIT,
                headers={"Authorization": f"Bearer {good}", "Content-Encoding": "br"},
            ),
            http.get("/v1/tailscale/audit", headers={"Authorization": f"Bearer {good}"}),
            http.get(f"/no/such/path/{WRONG_TOKEN}", headers={"Authorization": f"Bearer {good}"}),
        ]
        for path in ("/", "/healthz", "/readyz", "/metrics", "/services/collector/health", "/openapi.json", "/docs"):
            answers.append(http.get(f"{path}?token={ODD_PLACES['query']}", headers={"Authorization": f"Bearer {good}"}))
    return answers


def test_no_token_reaches_the_log_wherever_a_sender_puts_it(
    make_server: MakeServer,  # noqa: F811 - the e2e fixture imported above
    tmp_path: Path,
) -> None:
    config = tmp_path / "tailscribe.toml"
    config.write_text(
        f"""
[[sources]]
id = "corp"
tokens = ["{CORP_TOKENS[0]}", "{CORP_TOKENS[1]}"]

[[sources]]
id = "lab"
tokens = ["{LAB_TOKEN}"]
log_types = ["network"]
path_prefix = "/v1/tailscale/lab"
"""
    )
    server = make_server("--config", str(config), "--log-level", "debug", "--log-format", "json", token=None)

    answers = requests_everywhere(server.url)
    server.stop()

    statuses = sorted({answer.status_code for answer in answers})
    assert statuses == [200, 400, 401, 403, 404, 405, 415], statuses
    page = next(answer for answer in answers if answer.request.url.path == "/")
    for name, value in SECURITY_HEADERS.items():
        assert page.headers[name] == value, name
    logs = server.logs()
    assert logs.count('"msg":"request"') > len(answers)  # at debug level: the start's /healthz probe too
    for secret in SECRETS:
        assert secret not in logs, f"{secret} is in the log"
    for answer in answers:  # nor any credential as sent, Basic's base64 included
        _, _, credential = answer.request.headers.get("authorization", "").partition(" ")
        assert not credential or credential not in logs, credential
    # The quarantine keeps refused bodies (that is its purpose) but no header holding a token.
    for meta in (server.data_dir / "quarantine" / "bodies").glob("**/*.json"):
        text = meta.read_text()
        assert not any(secret in text for secret in SECRETS), meta
    assert any(ODD_PLACES["body"].encode() in body.read_bytes() for body in server.quarantined_bodies())


# Per-source isolation


PREFIXES = {"corp": "/v1/tailscale/corp", "lab": "/v1/tailscale/lab"}
SOURCE_TOKENS = {"corp": "corp-iso-token", "lab": "lab-iso-token", "plain": "plain-iso-token"}
SUFFIXES = {"/audit": AUDIT, "/network": NETWORK, "/services/collector/event": AUDIT + NETWORK}


@pytest.fixture(scope="module")
def isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server with three sources, two of them on their own prefixes, shared by the module's
    isolation tests: the paths reach uvicorn and the router exactly as a client sends them."""
    directory = tmp_path_factory.mktemp("isolated")
    config = directory / "tailscribe.toml"
    config.write_text(
        "".join(
            f'[[sources]]\nid = "{source}"\ntokens = ["{token}"]\n'
            + (f'path_prefix = "{PREFIXES[source]}"\n' if source in PREFIXES else "")
            for source, token in SOURCE_TOKENS.items()
        )
    )
    server = start_server(directory, "--config", str(config), token=None)
    yield server
    server.stop()


def post_raw(server: Server, path: str, body: bytes, authorization: str) -> RawAnswer:
    """POST with the request target sent byte for byte (httpx would resolve `..` and `//` first)."""
    headers = [(b"Authorization", authorization.encode())]
    return raw_answer(server, request_bytes("POST", path, headers=headers, body=body))


@pytest.mark.parametrize("owner", sorted(PREFIXES))
@pytest.mark.parametrize("suffix", sorted(SUFFIXES))
def test_a_source_token_never_posts_on_another_source_prefix(isolated: Server, owner: str, suffix: str) -> None:
    url = PREFIXES[owner] + suffix
    own = post_raw(isolated, url, SUFFIXES[suffix], f"Bearer {SOURCE_TOKENS[owner]}")
    assert own.status == 200 and own.json()["accepted"] >= 1

    for intruder, token in SOURCE_TOKENS.items():
        if intruder == owner:
            continue
        for header in (f"Bearer {token}", f"Splunk {token}", basic("tailscale", token)):
            answer = post_raw(isolated, url, SUFFIXES[suffix], header)
            assert answer.status == 401, (intruder, header, answer)
            assert answer.json()["code"] == 4 and repr(owner) in answer.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/tailscale/corp/audit/",
        "/v1/tailscale/%63orp/audit",
        "/v1/tailscale/corp//audit",
        "/v1/tailscale/lab/../corp/audit",
        "/v1/tailscale/lab/%2E%2E/corp/audit",
        "/V1/tailscale/corp/audit",
        "/v1/tailscale/corp/audit?source=lab",
    ],
)
def test_path_tricks_do_not_open_a_prefixed_route_to_another_source(isolated: Server, path: str) -> None:
    answer = post_raw(isolated, path, AUDIT, f"Bearer {SOURCE_TOKENS['lab']}")
    assert answer.status != 200 and answer.status < 500, answer


# No stack traces in answers

INTERNAL_ERROR = {"text": "Internal server error", "code": 8}
LEAKS = ("Traceback", 'File "', ".py", "site-packages", "RuntimeError", "kaboom", "/secret/")


class BrokenStorage:
    """A storage with a bug: every call raises something no handler expects."""

    def store(self, batch: Batch) -> None:
        raise RuntimeError("kaboom in /secret/path/storage.py")

    def store_rejected_body(self, rejected: object) -> None:
        raise RuntimeError("kaboom in /secret/path/storage.py")

    def check_writable(self) -> None:
        raise RuntimeError("kaboom in /secret/path/storage.py")


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    app = create_app(Settings(data_dir=tmp_path, token="sec-token"))

    @app.get("/probe/{number}")
    async def probe(number: int) -> dict[str, int]:  # only to reach the 422 handler: no real route has params
        return {"number": number}

    return app


@pytest.fixture
def broken(app: FastAPI) -> Iterator[httpx.Client]:
    with serving(app) as url, httpx.Client(base_url=url) as client:
        app.state.storage = BrokenStorage()  # after start-up, which made the real one
        yield client


def assert_no_leak(answer: httpx.Response) -> None:
    for leak in LEAKS:
        assert leak not in answer.text, answer.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/tailscale/audit", AUDIT),
        ("POST", "/v1/tailscale/network", b"{not json"),  # storing the rejected body fails
        ("POST", "/services/collector/event", AUDIT),
        ("GET", "/readyz", b""),
        ("GET", "/", b""),
    ],
)
def test_an_internal_error_answers_hec_500_without_a_traceback(
    broken: httpx.Client, method: str, path: str, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    answer = broken.request(method, path, content=body, headers={"Authorization": "Bearer sec-token"})

    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == INTERNAL_ERROR
    assert_no_leak(answer)
    # The traceback goes to the log, for the operator.
    assert any(record.exc_info and "kaboom" in str(record.exc_info[1]) for record in caplog.records)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/wp-login.php", 404),
        ("GET", "/v1/tailscale/audit", 405),
        ("DELETE", "/healthz", 405),
        ("GET", "/probe/not-a-number", 422),
        ("GET", "/probe/" + "9" * 5000, 422),
    ],
)
def test_http_errors_answer_json_without_internals(app: FastAPI, method: str, path: str, status: int) -> None:
    with serving(app) as url, httpx.Client(base_url=url) as client:
        answer = client.request(method, path, headers={"Authorization": "Bearer sec-token"})

    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["code"] == status and isinstance(body["text"], str)
    assert_no_leak(answer)
    assert "not-a-number" not in answer.text and "99999" not in answer.text  # the input is not echoed
