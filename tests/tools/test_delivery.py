"""Delivery of one body against a real scripted HTTP server: what is retried, how long it waits, what is reported."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from app.tools.delivery import Outcome, RetryPolicy, parse_retry_after, post
from tests.e2e.conftest import free_port
from tests.tools.conftest import Answer, Stub

BODY = b'{"time":1,"event":{}}'
HEADERS = {"Authorization": "Bearer t"}


def deliver(url: str, policy: RetryPolicy, sleeps: list[float] | None = None) -> tuple[Outcome, list[str]]:
    """POST `BODY` once through `post`; with `sleeps`, waits are recorded instead of slept."""
    said: list[str] = []
    sleep = sleeps.append if sleeps is not None else time.sleep
    with httpx.Client(timeout=5) as client:
        outcome = post(client, url, BODY, HEADERS, policy, notify=said.append, sleep=sleep, rng=random.Random(1))
    return outcome, said


def test_503_with_retry_after_is_retried_after_the_wait_it_asks_for(stub: Stub):
    stub.answers = [Answer(503, b'{"text":"Server is busy","code":9}', {"Retry-After": "1"}), Answer()]

    outcome, said = deliver(stub.url, RetryPolicy(retries=3, max_backoff=5))

    assert outcome.delivered and outcome.requests == 2
    first, second = stub.received
    assert second.at - first.at >= 1.0
    assert second.body == first.body == BODY
    assert said == ["request: HTTP 503 Server is busy; retrying in 1.0 s (attempt 2 of 4)"]


def test_retry_after_longer_than_max_backoff_is_capped(stub: Stub):
    stub.answers = [Answer(429, b"slow down", {"Retry-After": "3600"}), Answer()]
    sleeps: list[float] = []

    outcome, _ = deliver(stub.url, RetryPolicy(retries=1, max_backoff=0.25), sleeps)

    assert outcome.delivered and outcome.requests == 2
    assert sleeps == [0.25]


def test_without_retry_after_waits_grow_exponentially_with_jitter(stub: Stub):
    stub.answers = [Answer(500, b"oops")]
    sleeps: list[float] = []

    outcome, said = deliver(stub.url, RetryPolicy(retries=4, base=1.0, max_backoff=5.0), sleeps)

    assert not outcome.delivered
    assert outcome.requests == len(stub.received) == 5
    ceilings = [1.0, 2.0, 4.0, 5.0]
    assert len(sleeps) == 4
    assert all(ceiling / 2 <= wait <= ceiling for wait, ceiling in zip(sleeps, ceilings, strict=True))
    assert outcome.error == "HTTP 500 oops (gave up after 5 attempts)"
    assert len(said) == 4


def test_client_errors_other_than_429_are_not_retried_and_say_what_the_receiver_said(stub: Stub):
    stub.answers = [Answer(413, b'{"text":"Request entity too large","code":6,"detail":"over max_records"}')]

    outcome, said = deliver(stub.url, RetryPolicy(retries=5), [])

    assert not outcome.delivered and not outcome.stop
    assert len(stub.received) == 1
    assert outcome.error == "HTTP 413 Request entity too large: over max_records"
    assert said == []


@pytest.mark.parametrize("status", [401, 403])
def test_an_authentication_refusal_asks_the_caller_to_stop(stub: Stub, status: int):
    stub.answers = [Answer(status, b'{"text":"Invalid authorization","code":4}')]

    outcome, _ = deliver(stub.url, RetryPolicy(retries=5), [])

    assert outcome.stop and len(stub.received) == 1
    assert outcome.error == f"HTTP {status} Invalid authorization"


def test_connection_errors_are_retried_then_reported():
    url = f"http://127.0.0.1:{free_port()}/v1/tailscale/network"  # nothing listens there
    sleeps: list[float] = []

    outcome, said = deliver(url, RetryPolicy(retries=2, base=0.01), sleeps)

    assert not outcome.delivered and outcome.requests == 3 and len(sleeps) == 2
    assert outcome.error is not None and outcome.error.startswith("ConnectError")
    assert "gave up after 3 attempts" in outcome.error


def test_any_2xx_is_a_delivery_even_without_a_json_answer(stub: Stub):
    stub.answers = [Answer(204, b"")]

    outcome, _ = deliver(stub.url, RetryPolicy())

    assert outcome.delivered and outcome.counts is None and outcome.error is None


def test_tailscribes_counts_are_read_from_its_answer(stub: Stub):
    stub.answers = [Answer(200, b'{"text":"Success","code":0,"accepted":3,"quarantined":1}')]

    outcome, _ = deliver(stub.url, RetryPolicy())

    assert outcome.counts == (3, 1) and outcome.bytes_sent == len(BODY)


def test_a_non_json_refusal_is_reported_by_the_start_of_its_body(stub: Stub):
    stub.answers = [Answer(400, b"<html>Bad Request</html>" + b"x" * 500)]

    outcome, _ = deliver(stub.url, RetryPolicy(), [])

    assert outcome.error is not None
    assert outcome.error.startswith("HTTP 400 <html>Bad Request</html>xxx")
    assert len(outcome.error) < 230


def test_retry_after_is_read_as_seconds_or_an_http_date():
    future = datetime.now(UTC) + timedelta(seconds=30)

    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert 25 <= (parse_retry_after(format_datetime(future, usegmt=True)) or 0) <= 30
    assert parse_retry_after(format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)) == 0.0


def test_the_servers_retry_after_wins_over_backoff_but_not_over_the_cap():
    policy = RetryPolicy(base=10.0, max_backoff=20.0)
    rng = random.Random(0)

    assert policy.delay(0, "2", rng) == 2.0
    assert policy.delay(0, "90", rng) == 20.0
    assert 10.0 <= policy.delay(5, None, rng) <= 20.0
