"""Delivering one request body to an HTTP log receiver, the way a careful log shipper does.

Any 2xx is a delivery, so this works against tailscribe, Panther's HTTP source and any Splunk HEC
endpoint (https://docs.splunk.com/Documentation/Splunk/latest/Data/TroubleshootHTTPEventCollector).
Connection errors, 429 and 5xx are retried with capped exponential backoff and jitter, honouring
`Retry-After` (RFC 9110 §10.2.3, https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3); any other
refusal would be refused again, so it is reported at once with what the answer said.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

import httpx

STOP_STATUSES: Final = frozenset({401, 403})
"""Refusals that every later request would get too: the caller should stop sending."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 5
    """Retries after the first attempt."""
    base: float = 0.5
    """Seconds before the first retry; each later one waits about twice as long."""
    max_backoff: float = 60.0
    """No wait is longer than this, whatever `Retry-After` asks for."""

    def delay(self, retry: int, retry_after: str | None, rng: random.Random) -> float:
        """Seconds to wait before retry number `retry` (0 for the first): the server's word, else backoff."""
        asked = parse_retry_after(retry_after)
        if asked is not None:
            return min(asked, self.max_backoff)
        # Jitter, so that many senders refused at once do not all come back at once.
        return min(self.max_backoff, self.base * 2.0**retry) * rng.uniform(0.5, 1.0)


@dataclass(slots=True)
class Outcome:
    """What became of one request body, over all its attempts."""

    delivered: bool = False
    requests: int = 0
    bytes_sent: int = 0
    counts: tuple[int, int] | None = None
    """(accepted, quarantined) from the answer, when it says (tailscribe does; Panther and Splunk don't)."""
    error: str | None = None
    stop: bool = False
    """The refusal was about credentials: later requests would be refused too."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` value, delay-seconds or an HTTP-date; None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def describe_answer(response: httpx.Response) -> str:
    """A refusal in one line: the status, then the answer's HEC `text` and `detail`, or the start of its body."""
    answer = _json(response)
    if isinstance(answer, dict) and (answer.get("text") or answer.get("detail")):
        said = ": ".join(str(answer[key]) for key in ("text", "detail") if answer.get(key))
    else:
        said = response.text.strip()[:200] or response.reason_phrase
    return f"HTTP {response.status_code} {said}"


def answer_counts(response: httpx.Response) -> tuple[int, int] | None:
    """tailscribe's `accepted` and `quarantined`, or None when the answer does not have them."""
    answer = _json(response)
    if not isinstance(answer, dict):
        return None
    accepted, quarantined = answer.get("accepted"), answer.get("quarantined")
    if isinstance(accepted, int) and isinstance(quarantined, int):
        return accepted, quarantined
    return None


def post(
    client: httpx.Client,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    policy: RetryPolicy,
    *,
    label: str = "request",
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    notify: Callable[[str], None] = lambda message: None,
) -> Outcome:
    """POST `body` until it is delivered, refused for good, or out of retries; never raises for HTTP.

    `notify` hears about each retry, prefixed with `label`; `sleep` and `rng` are there for tests.
    """
    rng = rng or random.Random()
    outcome = Outcome()
    attempts = policy.retries + 1
    error = ""
    for attempt in range(attempts):
        outcome.requests += 1
        outcome.bytes_sent += len(body)
        retry_after = None
        try:
            response = client.post(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            # Timeouts included: the body may have arrived, so a retry can duplicate it (at least once).
            error = f"{type(exc).__name__}: {exc or 'no answer'}"
        else:
            if response.is_success:
                outcome.delivered, outcome.counts = True, answer_counts(response)
                return outcome
            error = describe_answer(response)
            if response.status_code != 429 and response.status_code < 500:
                outcome.error, outcome.stop = error, response.status_code in STOP_STATUSES
                return outcome
            retry_after = response.headers.get("retry-after")
        if attempt + 1 < attempts:
            wait = policy.delay(attempt, retry_after, rng)
            notify(f"{label}: {error}; retrying in {wait:.1f} s (attempt {attempt + 2} of {attempts})")
            sleep(wait)
    outcome.error = f"{error} (gave up after {attempts} attempts)"
    return outcome


def _json(response: httpx.Response) -> object:
    try:
        answer: object = response.json()
    except ValueError:  # not JSON, or not UTF-8: a Panther or proxy answer may be plain text or HTML
        return None
    return answer
