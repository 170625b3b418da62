"""Fault injection against a real `tailscribe serve`: kill -9 under load, and a soak with a flapping sink.

Both start the receiver as a subprocess on 127.0.0.1 (`tests.e2e.conftest.Server`) with two sinks,
the local archive and NATS JetStream (a real `nats-server -js`, `tests.servers.nats.NatsServer`),
drive it with concurrent HTTP clients posting records that each carry a unique id, and then check
the delivery guarantee (README, "Delivery guarantee"): every record answered 2xx is in the archive
exactly once and in JetStream exactly once; a record whose request got no answer may or may not be
stored, once at most; a refused one never.

    .venv/bin/python -m bench.faults kill9 --rounds 20 --round-seconds 120
    .venv/bin/python -m bench.faults soak --seconds 600 --flap-seconds 30

`kill9`: each round runs the load for `--round-seconds`, SIGKILLs the receiver (every process of it,
with `--workers`) at a random moment and restarts it at once on the same port and data directory,
with `--restart-workers` processes, while the clients keep posting; after
the round it waits until both sinks have drained, stops the receiver and verifies that round's ids.
The data directory and the NATS server are reused across rounds (`--fresh` for a new one each round).

`soak`: one receiver for `--seconds`, mixed load (a share of records failing their schema, a share of
bodies that are not JSON), the NATS server stopped and started every `--flap-seconds`; samples the
receiver's RSS, threads and file descriptors, and measures each request's latency at the client.

Markdown tables go to stdout; the raw figures to `<workdir>/*.json`, beside the logs. Nothing leaves
127.0.0.1, every loop is bounded in time, and the data directories and the JetStream store are deleted
afterwards unless a check failed or `--keep`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from tests.e2e.conftest import TOKEN, Server
from tests.samples import audit_event, envelope, network_event
from tests.servers.nats import NatsServer

HEADERS = {"Authorization": f"Bearer {TOKEN}"}
STREAM = "TAILSCALE"
NETWORK_TEMPLATE = orjson.dumps(envelope(network_event("@ID@")))
AUDIT_TEMPLATE = orjson.dumps(envelope({**audit_event(), "eventGroupID": "@ID@"}))
INVALID_TEMPLATE = orjson.dumps(
    envelope({"nodeId": "@ID@", "start": "not a time", "virtualTraffic": [{"txPkts": "many"}]})
)
BAD_BODY = b'{"time": 1780500776.773, "event": {"nodeId": "truncated'
DRAIN_TIMEOUT = 300.0


def say(*parts: object) -> None:
    print(*parts, flush=True)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def row_id(row: dict[str, Any]) -> str:
    """The unique id this script put into a record (network: nodeId, audit: eventGroupID)."""
    event = row.get("event") or {}
    return str(event.get("nodeId") or event.get("eventGroupID"))


# --- the receiver and what it stored -------------------------------------------------------------


def config_file(path: Path, nats_url: str, *, segment_bytes: int | None = None) -> Path:
    lines = [f"journal_segment_bytes = {segment_bytes}"] if segment_bytes else []
    lines += ["[[sinks]]", 'type = "archive"', "[[sinks]]", 'type = "nats"', f'servers = ["{nats_url}"]']
    lines += ["connect_timeout = 2", "publish_timeout = 5", "reconnect_wait = 0.5"]
    path.write_text("\n".join(lines) + "\n")
    return path


def app_fingerprint() -> str:
    """A short hash of the receiver's source as it is on disk now (others may be editing it meanwhile)."""
    digest = hashlib.sha1()
    for path in sorted(Path(__file__).resolve().parent.parent.joinpath("app").glob("**/*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def make_server(data_dir: Path, log_path: Path, config: Path, *, workers: int = 1, port: int | None = None) -> Server:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILSCRIBE_")}
    env["TAILSCRIBE_LOG_LEVEL"] = "warning"  # one line per request would dominate the disk and the CPU
    args = ["--token", TOKEN, "--config", str(config), "--workers", str(workers)]
    return Server(data_dir, log_path, env, args, port=port)


def server_pids(server: Server) -> set[int]:
    """The receiver's processes: the parent and, with several workers, each worker."""
    assert server.process is not None
    return {server.process.pid, *(server.worker_pids() if server.workers > 1 else [])}


def kill_all(server: Server) -> None:
    """SIGKILL every process of the receiver at once, as a crash of its machine or container would."""
    for pid in server_pids(server):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert server.process is not None
    server.process.wait(timeout=15)


def archived(data_dir: Path, pids: set[int] | None = None) -> Counter[str]:
    """Ids in the archive's part files (only those written by `pids`, when given)."""
    ids: Counter[str] = Counter()
    for path in (data_dir / "archive").glob("**/*.ndjson"):
        if pids is not None and int(path.name.rsplit("-", 2)[1]) not in pids:
            continue
        ids.update(row_id(orjson.loads(line)) for line in path.read_bytes().splitlines())
    return ids


def quarantined(data_dir: Path) -> tuple[Counter[str], int]:
    """Ids of quarantined records, and the number of quarantined bodies."""
    ids: Counter[str] = Counter()
    for path in (data_dir / "quarantine" / "records").glob("**/*.ndjson"):
        for line in path.read_bytes().splitlines():
            record = orjson.loads(line)["record"]
            ids[row_id(record) if isinstance(record, dict) else "?"] += 1
    return ids, len(list((data_dir / "quarantine" / "bodies").glob("**/*.body")))


def stream_last_seq(url: str) -> int:
    async def fetch() -> int:
        connection = await nats.connect(url)
        try:
            return int((await connection.jetstream().stream_info(STREAM)).state.last_seq)
        except nats.js.errors.NotFoundError:
            return 0
        finally:
            await connection.close()

    return asyncio.run(fetch())


def streamed(url: str, start_seq: int = 1) -> Counter[str]:
    """Ids of the JetStream messages from stream sequence `start_seq` to the end."""

    async def fetch() -> Counter[str]:
        ids: Counter[str] = Counter()
        connection = await nats.connect(url)
        try:
            js = connection.jetstream()
            last = int((await js.stream_info(STREAM)).state.last_seq)
            if last < start_seq:
                return ids
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq, ack_policy=AckPolicy.NONE
            )
            subscription = await js.pull_subscribe("tailscale.>", stream=STREAM, config=config)
            deadline = time.monotonic() + 600
            seen = start_seq - 1
            while seen < last and time.monotonic() < deadline:
                try:
                    messages = await subscription.fetch(5000, timeout=5)
                except nats.errors.TimeoutError:
                    break
                for message in messages:
                    ids[row_id(orjson.loads(message.data))] += 1
                    seen = max(seen, message.metadata.sequence.stream)
            await subscription.unsubscribe()
            return ids
        finally:
            await connection.close()

    return asyncio.run(fetch())


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in KiB, threads and open descriptors of a live process (empty once it is gone)."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        return {}
    return {
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "hwm_kib": int(fields["VmHWM"].split()[0]),
        "threads": int(fields["Threads"]),
        "fds": fds,
    }


def wait_drained(server: Server, sinks: Sequence[str], timeout: float) -> float | None:
    """Seconds until every sink caught up, or None when one did not within `timeout`."""
    started = time.monotonic()
    for sink in sinks:
        try:
            server.drained(sink, timeout=max(1.0, timeout - (time.monotonic() - started)))
        except (AssertionError, httpx.HTTPError) as exc:
            log(f"sink {sink} did not drain: {str(exc)[:300]}")
            return None
    return time.monotonic() - started


# --- load ----------------------------------------------------------------------------------------


@dataclass
class Outcomes:
    """What the clients were told, by record id."""

    acknowledged: list[str] = field(default_factory=list)
    """Records the receiver accepted (2xx)."""
    quarantine_acknowledged: list[str] = field(default_factory=list)
    """Records the receiver answered 2xx for and reported as quarantined."""
    in_doubt: list[str] = field(default_factory=list)
    """Records of requests that got no answer (the connection broke): stored at most once."""
    refused: list[str] = field(default_factory=list)
    """Records of requests answered 503 or anything else: never to be stored."""
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[tuple[float, float]] = field(default_factory=list)
    """(monotonic time of the answer, seconds) for each request that got an answer."""
    mismatches: int = 0
    """2xx answers whose accepted/quarantined counts differ from what was sent."""

    def merge(self, other: Outcomes) -> None:
        self.acknowledged += other.acknowledged
        self.quarantine_acknowledged += other.quarantine_acknowledged
        self.in_doubt += other.in_doubt
        self.refused += other.refused
        self.statuses.update(other.statuses)
        self.latencies += other.latencies
        self.mismatches += other.mismatches


@dataclass
class Request:
    path: str
    body: bytes
    valid: list[str]
    invalid: list[str]
    bad_body: bool = False


def records_request(
    ids: list[str], rng: random.Random, *, invalid_ratio: float = 0.0, audit_ratio: float = 0.0
) -> Request:
    """One body of concatenated records (Tailscale's shape) with ids `ids`, some failing their schema."""
    audit = rng.random() < audit_ratio
    template = AUDIT_TEMPLATE if audit else NETWORK_TEMPLATE
    valid, invalid, parts = [], [], []
    for record_id in ids:
        broken = not audit and rng.random() < invalid_ratio
        (invalid if broken else valid).append(record_id)
        parts.append((INVALID_TEMPLATE if broken else template).replace(b"@ID@", record_id.encode()))
    return Request("/v1/tailscale/audit" if audit else "/v1/tailscale/network", b"".join(parts), valid, invalid)


class Load:
    """`clients` threads posting until `stop()`, each with its own keep-alive connection."""

    def __init__(
        self, url: str, clients: int, make: Callable[[random.Random, int, int], Request], *, rate: float = 0.0
    ) -> None:
        self.url = url
        self.make = make
        self.interval = clients / rate if rate > 0 else 0.0
        self._stop = threading.Event()
        self._results = [Outcomes() for _ in range(clients)]
        self._threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(clients)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> Outcomes:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        total = Outcomes()
        for result in self._results:
            total.merge(result)
        return total

    def _client(self, number: int) -> None:
        rng = random.Random(f"{number}-{time.time_ns()}")
        out = self._results[number]
        sequence = 0
        next_at = time.monotonic() + rng.uniform(0, self.interval)
        with httpx.Client(base_url=self.url, headers=HEADERS, timeout=30) as http:
            while not self._stop.is_set():
                if self.interval:
                    self._stop.wait(max(0.0, next_at - time.monotonic()))
                    next_at = max(next_at + self.interval, time.monotonic() - 1)
                request = self.make(rng, number, sequence)
                sequence += 1
                started = time.monotonic()
                try:
                    answer = http.post(request.path, content=request.body)
                except httpx.ConnectError:
                    out.statuses["not connected"] += 1  # never sent: nothing can have been stored
                    out.refused += request.valid + request.invalid
                    self._stop.wait(0.05)
                    continue
                except httpx.TransportError:
                    out.statuses["no answer"] += 1
                    out.in_doubt += request.valid + request.invalid
                    self._stop.wait(0.05)
                    continue
                now = time.monotonic()
                out.latencies.append((now, now - started))
                out.statuses[str(answer.status_code)] += 1
                if answer.status_code == 200:
                    answered = answer.json()
                    if (answered["accepted"], answered["quarantined"]) != (len(request.valid), len(request.invalid)):
                        out.mismatches += 1
                    out.acknowledged += request.valid
                    out.quarantine_acknowledged += request.invalid
                elif answer.status_code == 400 and request.bad_body:
                    pass
                else:
                    out.refused += request.valid + request.invalid
                    if answer.status_code == 503:
                        self._stop.wait(min(1.0, float(answer.headers.get("retry-after", "1"))))


# --- checks ----------------------------------------------------------------------------------------


@dataclass
class Check:
    """One sink's stored ids compared with what the clients were told."""

    stored: int
    missing: int
    duplicated: int
    unexpected: int
    in_doubt_stored: int
    examples: dict[str, list[str]]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicated or self.unexpected)


def check(stored: Counter[str], acknowledged: list[str], in_doubt: list[str]) -> Check:
    acked, doubtful = set(acknowledged), set(in_doubt)
    missing = [i for i in acked if stored[i] == 0]
    duplicated = [i for i, count in stored.items() if count > 1]
    unexpected = [i for i in stored if i not in acked and i not in doubtful]
    return Check(
        stored=sum(stored.values()),
        missing=len(missing),
        duplicated=len(duplicated),
        unexpected=len(unexpected),
        in_doubt_stored=sum(1 for i in doubtful if stored[i]),
        examples={"missing": missing[:20], "duplicated": duplicated[:20], "unexpected": unexpected[:20]},
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


# --- kill9 -----------------------------------------------------------------------------------------


def kill9(args: argparse.Namespace, work: Path) -> bool:
    rng = random.Random(args.seed)
    nats_server = NatsServer(work / "nats-store")
    nats_server.start()
    config = config_file(work / "tailscribe.toml", nats_server.url, segment_bytes=args.journal_segment_bytes)
    results: list[dict[str, Any]] = []
    shape = f"{args.clients} clients, {args.workers} → {args.restart_workers or args.workers} workers"
    if args.journal_segment_bytes:
        shape += f", {args.journal_segment_bytes:,}-byte journal segments"
    say(f"## kill9: {args.rounds} rounds of {args.round_seconds:g} s, {shape}, seed {args.seed}\n")
    try:
        for number in range(1, args.rounds + 1):
            data_dir = work / (f"data-{number:02d}" if args.fresh else "data")
            results.append(kill9_round(args, number, rng, data_dir, work, config, nats_server))
            log(json.dumps({k: v for k, v in results[-1].items() if k != "examples"}))
    finally:
        nats_server.stop()
        (work / "kill9.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))

    headers = ["round", "kill at s", "requests 2xx", "acked", "no answer", "in doubt stored", "archive rows"]
    headers += ["archive missing/dup/extra", "JetStream msgs", "JetStream missing/dup/extra", "restart s", "drain s"]
    say(
        table(
            [*headers, "app code", "result"],
            (
                [
                    r["round"],
                    f"{r['kill_at']:.1f}",
                    r["requests_ok"],
                    r["acknowledged"],
                    r["no_answer"],
                    r["in_doubt_stored"],
                    r["archive"]["stored"],
                    "{missing}/{duplicated}/{unexpected}".format(**r["archive"]),
                    r["jetstream"]["stored"],
                    "{missing}/{duplicated}/{unexpected}".format(**r["jetstream"]),
                    f"{r['restart_seconds']:.2f}",
                    "-" if r["drain_seconds"] is None else f"{r['drain_seconds']:.1f}",
                    " → ".join(dict.fromkeys(r["code"])),
                    "PASS" if r["ok"] else "FAIL",
                ]
                for r in results
            ),
        )
    )
    passed = sum(r["ok"] for r in results)
    total = {key: sum(r[key] for r in results) for key in ("requests_ok", "acknowledged", "no_answer")}
    say()
    say(
        table(
            ["rounds", "passed", "kills", "requests 2xx", "records acknowledged", "in archive", "in JetStream"]
            + ["requests without answer", "lost", "duplicated"],
            [
                [
                    len(results),
                    passed,
                    sum(r["kills"] for r in results),
                    total["requests_ok"],
                    total["acknowledged"],
                    sum(r["acknowledged"] - r["archive"]["missing"] for r in results),
                    sum(r["acknowledged"] - r["jetstream"]["missing"] for r in results),
                    total["no_answer"],
                    sum(r["archive"]["missing"] + r["jetstream"]["missing"] for r in results),
                    sum(r["archive"]["duplicated"] + r["jetstream"]["duplicated"] for r in results),
                ]
            ],
        )
    )
    return passed == len(results)


def kill9_round(
    args: argparse.Namespace,
    number: int,
    rng: random.Random,
    data_dir: Path,
    work: Path,
    config: Path,
    nats_server: NatsServer,
) -> dict[str, Any]:
    prefix = f"k{number:02d}"
    start_seq = stream_last_seq(nats_server.url) + 1
    log_path = work / f"server-{number:02d}.log"
    server = make_server(data_dir, log_path, config, workers=args.workers)
    code = [app_fingerprint()]
    server.start()
    pids = server_pids(server)

    def make(client_rng: random.Random, client: int, sequence: int) -> Request:
        ids = [f"{prefix}-c{client}-{sequence}-{n}" for n in range(args.records_per_request)]
        return records_request(ids, client_rng)

    load = Load(server.url, args.clients, make)
    started = time.monotonic()
    kill_at = rng.uniform(0.05, 0.95) * args.round_seconds
    load.start()
    time.sleep(kill_at)
    kill_all(server)
    killed = time.monotonic()
    code.append(app_fingerprint())
    # The same port and data directory; with fewer workers, the journal slots of the others are adopted.
    server = make_server(data_dir, log_path, config, workers=args.restart_workers or args.workers, port=server.port)
    server.start()
    restart_seconds = time.monotonic() - killed
    pids |= server_pids(server)
    time.sleep(max(0.0, args.round_seconds - (time.monotonic() - started)))
    outcomes = load.stop()
    drain_seconds = wait_drained(server, ["archive", "nats"], DRAIN_TIMEOUT)
    server.stop()
    archive = check(archived(data_dir, pids), outcomes.acknowledged, outcomes.in_doubt)
    stream = check(streamed(nats_server.url, start_seq), outcomes.acknowledged, outcomes.in_doubt)
    ok = archive.ok and stream.ok and drain_seconds is not None
    result = {
        "round": number,
        "kills": 1,
        "kill_at": kill_at,
        "round_seconds": time.monotonic() - started,
        "requests_ok": outcomes.statuses["200"],
        "statuses": dict(outcomes.statuses),
        "acknowledged": len(outcomes.acknowledged),
        "no_answer": outcomes.statuses["no answer"],
        "in_doubt_records": len(outcomes.in_doubt),
        "in_doubt_stored": max(archive.in_doubt_stored, stream.in_doubt_stored),
        "archive": {k: v for k, v in vars(archive).items() if k != "examples"},
        "jetstream": {k: v for k, v in vars(stream).items() if k != "examples"},
        "examples": {"archive": archive.examples, "jetstream": stream.examples},
        "restart_seconds": restart_seconds,
        "loadavg": float(Path("/proc/loadavg").read_text().split()[0]),
        "drain_seconds": drain_seconds,
        "pids": sorted(pids),
        "code": code,
        "ok": ok,
    }
    if not ok:
        (work / f"kill9-round-{number:02d}-failure.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    elif args.fresh and not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    return result


# --- soak ------------------------------------------------------------------------------------------


def soak(args: argparse.Namespace, work: Path) -> bool:
    nats_server = NatsServer(work / "nats-store")
    nats_server.start()
    config = config_file(work / "tailscribe.toml", nats_server.url)
    data_dir = work / "data"
    server = make_server(data_dir, work / "server.log", config)
    code = app_fingerprint()
    server.start()
    pid = server.process.pid if server.process else 0
    say(
        f"## soak: {args.seconds:g} s, {args.clients} clients at {args.rate:g} requests/s in all, "
        f"{args.records_per_request} records a request, {args.invalid_ratio:.0%} records invalid, "
        f"{args.bad_body_ratio:.0%} bodies not JSON, {args.audit_ratio:.0%} audit requests; "
        f"NATS stopped/started every {args.flap_seconds:g} s; app code {code}\n"
    )

    def make(rng: random.Random, client: int, sequence: int) -> Request:
        if rng.random() < args.bad_body_ratio:
            return Request("/v1/tailscale/network", BAD_BODY, [], [], bad_body=True)
        ids = [f"s-c{client}-{sequence}-{n}" for n in range(args.records_per_request)]
        return records_request(ids, rng, invalid_ratio=args.invalid_ratio, audit_ratio=args.audit_ratio)

    started = time.monotonic()
    stop = threading.Event()
    samples: list[dict[str, Any]] = []
    flaps: list[tuple[float, str]] = []

    def flapper() -> None:
        while not stop.wait(args.flap_seconds):
            if nats_server.running:
                nats_server.stop()
                flaps.append((time.monotonic() - started, "down"))
            else:
                nats_server.start()
                flaps.append((time.monotonic() - started, "up"))

    def sampler() -> None:
        while not stop.wait(args.sample_seconds):
            sample: dict[str, Any] = {"t": time.monotonic() - started, **proc_status(pid)}
            try:
                sample["journal_bytes"] = server.metric("tailscribe_journal_bytes")
                sample["nats_lag"] = server.metric("tailscribe_sink_lag_records", sink="nats")
            except httpx.HTTPError:
                pass
            sample["nats_up"] = nats_server.running
            sample["loadavg"] = float(Path("/proc/loadavg").read_text().split()[0])
            samples.append(sample)

    threads = [threading.Thread(target=flapper, daemon=True), threading.Thread(target=sampler, daemon=True)]
    load = Load(server.url, args.clients, make, rate=args.rate)
    load.start()
    for thread in threads:
        thread.start()
    try:
        while time.monotonic() - started < args.seconds:
            time.sleep(min(30.0, max(0.0, args.seconds - (time.monotonic() - started))))
            last = samples[-1] if samples else {}
            log(
                f"soak t={time.monotonic() - started:.0f}s rss={last.get('rss_kib', 0) // 1024} MiB "
                f"journal={last.get('journal_bytes', 0) / 2**20:.1f} MiB nats_lag={last.get('nats_lag')}"
            )
        outcomes = load.stop()
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        nats_server.start()
        load_seconds = time.monotonic() - started
        drain_seconds = wait_drained(server, ["archive", "nats"], DRAIN_TIMEOUT)
        metrics = {
            name: server.metric(name)
            for name in (
                "tailscribe_sink_errors_total",
                "tailscribe_storage_errors_total",
                "tailscribe_records_total",
                "tailscribe_journal_bytes",
            )
        }
        final = proc_status(pid)
        server.stop()
        archive = check(archived(data_dir), outcomes.acknowledged, outcomes.in_doubt)
        stream = check(streamed(nats_server.url), outcomes.acknowledged, outcomes.in_doubt)
        quarantine_ids, bodies = quarantined(data_dir)
        quarantine = check(quarantine_ids, outcomes.quarantine_acknowledged, outcomes.in_doubt)
    finally:
        stop.set()
        server.stop()
        nats_server.stop()

    report = {
        "load_seconds": load_seconds,
        "drain_seconds": drain_seconds,
        "statuses": dict(outcomes.statuses),
        "mismatches": outcomes.mismatches,
        "acknowledged": len(outcomes.acknowledged),
        "quarantine_acknowledged": len(outcomes.quarantine_acknowledged),
        "archive": vars(archive),
        "jetstream": vars(stream),
        "quarantine": vars(quarantine),
        "bodies": bodies,
        "metrics": metrics,
        "final_process": final,
        "flaps": flaps,
        "samples": samples,
    }
    (work / "soak.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    (work / "soak-latencies.json").write_bytes(orjson.dumps(outcomes.latencies))
    return soak_report(args, report, outcomes, started)


def soak_report(args: argparse.Namespace, report: dict[str, Any], outcomes: Outcomes, started: float) -> bool:
    statuses = report["statuses"]
    archive, stream, quarantine = report["archive"], report["jetstream"], report["quarantine"]
    bad_bodies = statuses.get("400", 0)
    drain = report["drain_seconds"]
    drained = f"both sinks drained {drain:.1f} s after it" if drain is not None else "the sinks did NOT drain"
    say(f"Load ran {report['load_seconds']:.0f} s; {drained}.\n")
    say(table(["answer", "requests"], sorted(statuses.items())))
    say()
    say(
        table(
            ["what", "acknowledged", "stored", "missing", "duplicated", "unexpected"],
            [
                ["accepted records → archive", report["acknowledged"], archive["stored"]]
                + [archive["missing"], archive["duplicated"], archive["unexpected"]],
                ["accepted records → JetStream", report["acknowledged"], stream["stored"]]
                + [stream["missing"], stream["duplicated"], stream["unexpected"]],
                ["invalid records → quarantine", report["quarantine_acknowledged"], quarantine["stored"]]
                + [quarantine["missing"], quarantine["duplicated"], quarantine["unexpected"]],
                [
                    "bodies not JSON (400) → quarantine",
                    bad_bodies,
                    report["bodies"],
                    max(0, bad_bodies - report["bodies"]),
                ]
                + ["-", "-"],
            ],
        )
    )
    say(f"\n2xx answers whose accepted/quarantined counts differed from what was sent: {report['mismatches']}")
    say(
        f"Sink errors (retried): {report['metrics']['tailscribe_sink_errors_total']:.0f}; "
        f"storage errors: {report['metrics']['tailscribe_storage_errors_total']:.0f}; "
        f"NATS outages: {sum(1 for _, what in report['flaps'] if what == 'down')}\n"
    )

    samples = [s for s in report["samples"] if "rss_kib" in s]
    minutes: dict[int, list[dict[str, Any]]] = {}
    for sample in samples:
        minutes.setdefault(int(sample["t"] // 60), []).append(sample)
    rows = []
    for minute, group in sorted(minutes.items()):
        rss = [s["rss_kib"] / 1024 for s in group]
        rows.append(
            [minute + 1, f"{rss[0]:.1f}", f"{min(rss):.1f}", f"{max(rss):.1f}", f"{rss[-1]:.1f}"]
            + [max(s["threads"] for s in group), max(s["fds"] for s in group)]
            + [f"{max(s.get('journal_bytes', 0) for s in group) / 2**20:.1f}"]
            + [f"{max(s.get('nats_lag', 0) for s in group):.0f}"]
        )
    say(
        table(
            ["minute", "RSS first MiB", "min", "max", "last", "threads max", "fds max", "journal max MiB"]
            + ["NATS lag max rows"],
            rows,
        )
    )
    warm = [s["rss_kib"] for s in samples if s["t"] < args.warmup_seconds]
    after = [s["rss_kib"] for s in samples if s["t"] >= args.warmup_seconds]
    half = len(after) // 2
    first_half, second_half = after[:half], after[half:]
    growth_ok = bool(first_half) and max(second_half) <= max(first_half) * 1.05 + 4096
    if after:
        say(
            f"\nRSS: warm-up ({args.warmup_seconds:g} s) peak {max(warm or [0]) / 1024:.1f} MiB; after warm-up "
            f"first half peak {max(first_half or [0]) / 1024:.1f} MiB, second half peak "
            f"{max(second_half) / 1024:.1f} MiB, final {samples[-1]['rss_kib'] / 1024:.1f} MiB, VmHWM "
            f"{report['final_process'].get('hwm_kib', 0) / 1024:.1f} MiB → "
            f"{'no growth' if growth_ok else 'GROWS'} (bound: second-half peak ≤ first-half peak × 1.05 + 4 MiB)"
        )
        medians = [statistics.median(part) / 1024 for part in (first_half, second_half) if part]
        say(f"RSS medians after warm-up: first half {medians[0]:.1f} MiB, second half {medians[-1]:.1f} MiB")

    flaps = report["flaps"]

    def nats_up_at(moment: float) -> bool:
        state = True
        for when, what in flaps:
            if when > moment:
                break
            state = what == "up"
        return state

    phases: dict[str, list[float]] = {"all": [], "NATS up": [], "NATS down": []}
    for when, seconds in outcomes.latencies:
        phases["all"].append(seconds)
        phases["NATS up" if nats_up_at(when - started) else "NATS down"].append(seconds)
    say()
    say(
        table(
            ["requests", "count", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms"],
            [
                [name, len(values), ms(percentile(values, 0.5)), ms(percentile(values, 0.9))]
                + [ms(percentile(values, 0.99)), ms(max(values, default=float("nan")))]
                + [ms(statistics.fmean(values) if values else float("nan"))]
                for name, values in phases.items()
            ],
        )
    )
    equal = archive["missing"] == archive["duplicated"] == archive["unexpected"] == 0
    equal = equal and stream["missing"] == stream["duplicated"] == stream["unexpected"] == 0
    equal = equal and quarantine["missing"] == quarantine["duplicated"] == 0 and report["bodies"] >= bad_bodies
    ok = equal and growth_ok and report["drain_seconds"] is not None and not report["mismatches"]
    say(f"\nResult: {'PASS' if ok else 'FAIL'} (acknowledged = stored: {equal}; RSS bounded: {growth_ok})")
    return ok


# --- command line ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="where data, logs and figures go (a new temp dir by default)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory even when every check passed")
    commands = parser.add_subparsers(dest="command", required=True)
    k9 = commands.add_parser("kill9", help="SIGKILL the receiver at a random moment of each round of load")
    k9.add_argument("--rounds", type=int, default=20)
    k9.add_argument("--round-seconds", type=float, default=120.0)
    k9.add_argument("--clients", type=int, default=4)
    k9.add_argument("--records-per-request", type=int, default=25)
    k9.add_argument("--seed", type=int, default=1)
    k9.add_argument("--fresh", action="store_true", help="a new data directory for each round")
    k9.add_argument("--workers", type=int, default=1, help="worker processes of the receiver each round starts")
    k9.add_argument("--restart-workers", type=int, help="worker processes after the kill (default: --workers)")
    k9.add_argument(
        "--journal-segment-bytes",
        type=int,
        help="small segments roll, are released and recycled many times a round (the receiver's default: 64 MiB)",
    )
    sk = commands.add_parser("soak", help="mixed load for a long time while the NATS sink flaps")
    sk.add_argument("--seconds", type=float, default=600.0)
    sk.add_argument("--flap-seconds", type=float, default=30.0)
    sk.add_argument("--clients", type=int, default=4)
    sk.add_argument("--rate", type=float, default=50.0, help="requests per second in all (0: as fast as possible)")
    sk.add_argument("--records-per-request", type=int, default=20)
    sk.add_argument("--invalid-ratio", type=float, default=0.1, help="share of network records failing the schema")
    sk.add_argument("--bad-body-ratio", type=float, default=0.02, help="share of requests whose body is not JSON")
    sk.add_argument("--audit-ratio", type=float, default=0.2, help="share of requests carrying audit records")
    sk.add_argument("--sample-seconds", type=float, default=2.0)
    sk.add_argument("--warmup-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)

    work = args.workdir or Path(tempfile.mkdtemp(prefix=f"tailscribe-{args.command}-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"work directory: {work}")
    ok = (kill9 if args.command == "kill9" else soak)(args, work)
    if ok and not args.keep:
        for heavy in [*work.glob("data*"), work / "nats-store"]:
            shutil.rmtree(heavy, ignore_errors=True)
        say(f"\nFigures (JSON) and logs in {work}; data directories deleted")
    else:
        say(f"\nEvidence (data directories, JetStream store, logs, JSON) kept in {work}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
