"""Schemathesis against the receiver's own OpenAPI schema, over real HTTP, authenticated.

Every operation of the schema is called with generated requests (valid and invalid bodies, query
strings, headers) through Schemathesis' examples, coverage and fuzzing phases. The receiver is a
real `tailscribe serve` (tests/e2e/conftest.py's `Server`), not the ASGI app in process, because
what is under test is the contract a sender sees: uvicorn's HTTP parsing, the middleware, the
lifespan's journal and sinks, fsynced writes to a real data directory. It costs one server start
for the module and a few milliseconds per request.

The schema itself is built in process from an app configured exactly like the server (a second
source with a `path_prefix`, so its three routes are tested too, with its own token), because
Schemathesis must know the operations when pytest collects them; a test checks that the running
server serves the very same document. (`schemathesis.pytest.from_fixture`, the lazy loader that
would read it from the server, fails on pytest 9.2: it writes `Node._nodeid`, which pytest 9.2
renamed.)

Checks, on every response:
- `not_a_server_error`: no 5xx, whatever the request;
- `response_schema_conformance`: a response matches its schema where the API declares one;
- `error_answers_are_hec_json`: every 4xx is a JSON object with HEC's `text` and `code`, and no
  answer ever holds a traceback or a source path.

Bounded: `EXAMPLES` per operation (`TAILSCRIBE_SCHEMATHESIS_EXAMPLES` raises it) and
`deadline=None`; the examples are small, so shrinking a failure takes seconds. The Hypothesis
database is off: the server's state differs between runs, so a stored example would not
reproduce a failure anyway; Schemathesis prints a failing request as a curl command instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from app.main import create_app
from app.settings import Settings, SourceConfig
from tests.e2e.conftest import TOKEN, Server

EXAMPLES = int(os.environ.get("TAILSCRIBE_SCHEMATHESIS_EXAMPLES", "30"))
PREFIX = "/v1/tailscale/lab"
LAB_TOKEN = "lab-openapi-token-0123456789abcdef"
SOURCES = [
    SourceConfig(id="default", tokens=[TOKEN]),
    SourceConfig(id="lab", tokens=[LAB_TOKEN], log_types=["network"], path_prefix=PREFIX),
]
CONFIG = f"""
[[sources]]
id = "default"
tokens = ["{TOKEN}"]

[[sources]]
id = "lab"
tokens = ["{LAB_TOKEN}"]
log_types = ["network"]
path_prefix = "{PREFIX}"
"""
LEAK_MARKERS = ("Traceback", 'File "', ".py:", '.py"', "site-packages", "/app/")


def openapi_document() -> dict[str, object]:
    """The OpenAPI document of an app configured like the server; building it needs no I/O or lifespan."""
    return create_app(Settings(data_dir=Path("unused"), sources=SOURCES)).openapi()


schema = schemathesis.openapi.from_dict(openapi_document())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("openapi")
    config = directory / "tailscribe.toml"
    config.write_text(CONFIG)
    env = {name: value for name, value in os.environ.items() if not name.startswith("TAILSCRIBE_")}
    server = Server(directory / "data", directory / "server.log", env, ["--config", str(config)])
    server.start()
    yield server
    server.stop()


def error_answers_are_hec_json(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Every 4xx is `{"text": ..., "code": ...}` JSON, and no answer leaks a traceback or a path."""
    text = response.text
    for marker in LEAK_MARKERS:
        assert marker not in text, f"the answer holds {marker!r}: {text[:500]}"
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"a {response.status_code} answer is {content_type!r}"
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("text"), str) and isinstance(body.get("code"), int), body


CHECKS = [not_a_server_error, response_schema_conformance, error_answers_are_hec_json]


def test_the_server_serves_the_schema_under_test(server: Server) -> None:
    assert httpx.get(f"{server.url}/openapi.json").json() == openapi_document()
    prefixed = {f"{PREFIX}/audit", f"{PREFIX}/network", f"{PREFIX}/services/collector/event"}
    assert prefixed <= set(schema.raw_schema["paths"])


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_every_operation_answers_without_server_errors_and_as_declared(case: schemathesis.Case, server: Server) -> None:
    token = LAB_TOKEN if case.path.startswith(PREFIX) else TOKEN
    case.call_and_validate(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS, timeout=30)


def test_the_server_logged_no_unexpected_error(server: Server) -> None:
    # Runs after the generated requests (pytest keeps file order): an error the handler turned into a
    # clean answer would still have been logged with its traceback.
    logs = server.logs()
    assert '"msg":"request"' in logs
    assert "unexpected error" not in logs
    assert "Traceback" not in logs
