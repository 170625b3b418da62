"""What every hostile-input test (tests/e2e/test_hostile_*.py) needs, so each can assert the same four things.

A receiver on the internet meets scanners, broken proxies and half-written bodies. After each hostile
request a test proves that:

1. the answer is a defined status with the receiver's JSON body (or, for bytes that are not HTTP at
   all, the HTTP parser's own 400);
2. the process still serves another client (`assert_serving`: `/healthz`, then a normal record from
   a fresh connection, then the archive holds exactly as many rows as were counted accepted);
3. its memory stayed bounded (`Memory.watch`: peak RSS from VmHWM, reset before each case);
4. what was and was not stored (`Ledger`: accepted/quarantined counters and the raw bodies kept
   under data/quarantine/bodies).

One receiver runs per test module (`start_server`), with caps chosen there so the heavy cases stay
fast and the memory bounds mean something. Raw sockets (`send_raw`, `parse_answers`) produce what
httpx refuses to: non-UTF-8 header bytes, pipelining, HTTP/1.0, trickles and half-sent bodies. Every
socket has a timeout and every loop a deadline or a byte budget.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.e2e.conftest import TOKEN, Server
from tests.samples import concatenated, envelope, network_event

MiB = 1024 * 1024

NETWORK_URL = "/v1/tailscale/network"
NETWORK = concatenated([envelope(network_event())])
"""One valid Tailscale.Network record, as Tailscale sends it."""

MEMORY_MARGIN = 32 * MiB
"""Slack above what a case may legitimately hold: allocator arenas (glibc keeps freed memory in
per-thread arenas, and the pipeline runs in a thread pool), the metrics and log line of the request,
the sink delivering the normal record. Measured: a harmless request costs 0-4 MiB over the baseline,
a 16 MiB gzip bomb 33 MiB over it where 2 x 16 MiB are the decoded parts and their join; 32 MiB is
that margin rounded up, so a bound only fails when memory grows with the input instead of the caps."""

ZSTD_OVERSHOOT = 17 * MiB
"""How far past max_decompressed_bytes one zstd call may write before the cap is checked: at most
129 RLE blocks of 128 KiB per 512-byte input slice (app/ingest/decoders.py, `_ZSTD_SLICE`)."""

JSON_AMPLIFICATION = 40
"""Bytes of Python objects per byte of decoded JSON, at worst, for what is parsed at once: one record
up to max_record_bytes (a longer one is never parsed), or an array or `{"logs"}` wrapper up to 1 MiB
(larger ones are framed item by item). A 3-byte `{},` becomes a 64-byte dict plus an 8-byte list
slot: measured 27x for an array of empty objects, 25x for one record of 100,000 small traffic entries
(enrichment adds four fields to each), 20x for an array of one-letter strings, 9x for realistic
network records. This is a finding, not a goal: memory for
one record is bounded by max_record_bytes only through this factor."""


ARCHIVE_AT_ONCE = '[{"type": "archive", "batch_max_age": 0}]'
"""The archive sink writing each row at once, so `assert_serving` need not wait 0.25 s per case for it."""

_PLAIN = ssl.create_default_context()
"""One context for every client of these tests: httpx builds a new one per call otherwise (~60 ms)."""


def start_server(directory: Path, *args: str, token: str | None = TOKEN) -> Server:
    """A receiver with its own data directory, started and healthy; the caller stops it."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TAILSCRIBE_")}
    env["TAILSCRIBE_SINKS"] = ARCHIVE_AT_ONCE
    token_args = ["--token", token] if token else []
    server = Server(directory / "data", directory / "server.log", env, [*token_args, *args])
    server.verify = _PLAIN
    server.start()
    return server


def client(server: Server) -> httpx.Client:
    """A client with a connection of its own, as another sender would have."""
    return httpx.Client(base_url=server.url, verify=_PLAIN, timeout=60)


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(
    server: Server, path: str, body: bytes | Iterator[bytes], headers: dict[str, str] | None = None
) -> httpx.Response:
    """One POST on a fresh connection, authenticated with the default token unless `headers` say otherwise."""
    with client(server) as http:
        return http.post(path, content=body, headers={**bearer(), **(headers or {})})


# --- what is stored ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ledger:
    """What the receiver has counted and kept so far; compare two with `since`."""

    accepted: float
    quarantined: float
    bodies: frozenset[Path]

    @classmethod
    def of(cls, server: Server) -> Ledger:
        return cls(
            accepted=server.metric("tailscribe_records_total", outcome="accepted"),
            quarantined=server.metric("tailscribe_records_total", outcome="quarantined"),
            bodies=frozenset(server.quarantined_bodies()),
        )

    def since(self, server: Server) -> Stored:
        now = Ledger.of(server)
        kept = sorted(now.bodies - self.bodies)
        return Stored(
            accepted=int(now.accepted - self.accepted),
            quarantined=int(now.quarantined - self.quarantined),
            bodies=[path.read_bytes() for path in kept],
            reasons=[orjson.loads(path.with_suffix(".json").read_bytes())["reason"] for path in kept],
            metadata=[orjson.loads(path.with_suffix(".json").read_bytes()) for path in kept],
        )


@dataclass
class Stored:
    """What one case added: records counted accepted/quarantined, raw bodies kept, and why each was kept."""

    accepted: int
    quarantined: int
    bodies: list[bytes]
    reasons: list[str]
    metadata: list[dict[str, Any]] = field(repr=False)

    @property
    def nothing(self) -> bool:
        return self.accepted == 0 and self.quarantined == 0 and not self.bodies


def assert_serving(server: Server) -> None:
    """The process is alive, answers `/healthz`, stores a normal record from another client, and the
    archive holds exactly the rows counted accepted: nothing lost, nothing invented."""
    assert server.running(), server.logs()[-3000:]
    with client(server) as other:
        assert other.get("/healthz").json() == {"status": "ok"}
    with client(server) as other:
        answer = other.post(NETWORK_URL, content=NETWORK, headers=bearer())
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"text": "Success", "code": 0, "accepted": 1, "quarantined": 0}
    assert len(server.archive_rows()) == server.metric("tailscribe_records_total", outcome="accepted")


def wait_for_requests(server: Server, count: float, *, timeout: float = 10) -> None:
    """Wait until the receiver has finished `count` requests in all (for requests nobody reads the answer of)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.metric("tailscribe_requests_total") >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"the receiver did not finish {count} requests within {timeout} s")


# --- memory ------------------------------------------------------------------------------------------


@dataclass
class Watch:
    baseline: int
    """RSS when the case started, in bytes."""
    peak: int = 0
    """VmHWM when it ended: the highest RSS during the case."""

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def __str__(self) -> str:
        return f"baseline {self.baseline / MiB:.0f} MiB, peak {self.peak / MiB:.0f} MiB (+{self.growth / MiB:.0f} MiB)"


class Memory:
    """The receiver's resident memory, read from /proc/<pid>/status."""

    def __init__(self, server: Server) -> None:
        assert server.process is not None
        self.pid = server.process.pid

    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def rss(self) -> int:
        return self._status("VmRSS")

    def peak(self) -> int:
        return self._status("VmHWM")

    def reset_peak(self) -> None:
        """Make VmHWM the current RSS (Linux >= 4.0, `man 5 proc`, /proc/pid/clear_refs value 5)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    @contextmanager
    def watch(self) -> Iterator[Watch]:
        """Measure the peak of what happens inside the block, over the RSS at its start."""
        self.reset_peak()
        watch = Watch(baseline=self.rss())
        yield watch
        watch.peak = self.peak()


# --- raw HTTP ----------------------------------------------------------------------------------------


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def request_bytes(
    method: str,
    path: str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    version: bytes = b"HTTP/1.1",
    close: bool = True,
    content_length: bool = True,
) -> bytes:
    """One request exactly as given: header bytes are not checked or encoded, so anything can be sent."""
    lines = [method.encode() + b" " + path.encode() + b" " + version, b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers or []]
    if content_length and (body or method == "POST"):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def connect(server: Server, timeout: float = 5) -> socket.socket:
    """A new connection to the receiver; the caller closes it."""
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def send_raw(server: Server, data: bytes, *, timeout: float = 15, budget: int = 4 * MiB) -> bytes:
    """Send `data` on a new connection and read until the receiver closes it, `timeout` passes, or
    `budget` bytes have come back."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_until_closed(sock, timeout=timeout, budget=budget)


def read_until_closed(sock: socket.socket, *, timeout: float, budget: int = 4 * MiB) -> bytes:
    deadline = time.monotonic() + timeout
    received = bytearray()
    while len(received) < budget and (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return bytes(received)


def parse_answers(data: bytes) -> list[RawAnswer]:
    """The responses in `data`, in order (bodies by Content-Length; 1xx answers have none)."""
    answers: list[RawAnswer] = []
    rest = data
    while rest and len(answers) < 100:
        head, separator, rest = rest.partition(b"\r\n\r\n")
        assert separator, f"incomplete response head: {head[:200]!r}"
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(status_line.split()[1])
        length = 0 if status < 200 else int(headers.get("content-length", "0"))
        answers.append(RawAnswer(status, headers, rest[:length]))
        rest = rest[length:]
    return answers


def raw_answer(server: Server, data: bytes, *, timeout: float = 15) -> RawAnswer:
    """The one final answer to `data` (an interim 100 Continue is skipped)."""
    answers = [answer for answer in parse_answers(send_raw(server, data, timeout=timeout)) if answer.status >= 200]
    assert len(answers) == 1, answers
    return answers[0]


PARSER_400 = b'{"text":"Bad Request","code":6}'
"""The answer when httptools cannot parse the request (app/protocol.py), then the connection is closed."""
