"""The status page at `GET /`: is anything arriving, and is it landing on disk?

An operator who has just pointed Tailscale at tailscribe wants that answer in a browser, without
reading `/metrics`. The answer comes from memory: a `StatusBoard` per process (with several workers,
each shows its own) that ingest requests report to. Like `/metrics` the page is unauthenticated, so
it shows counts, times and statuses, never a token or a record, and every dynamic value passes
through `html.escape`. It needs no JavaScript and loads nothing, so its CSP forbids everything but
inline style (headers per https://owasp.org/www-project-secure-headers/).
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from app import __version__
from app.errors import StorageUnavailable
from app.settings import Settings
from app.storage import Storage

WINDOW_MINUTES: Final = 60
SECURITY_HEADERS: Final[dict[str, str]] = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
PHRASES: Final = {code.value: code.phrase for code in HTTPStatus}
HEC_LABEL: Final = "any (HEC)"
"""How a request recorded without a log type shows: the HEC route, whose records carry their own."""
UNKNOWN_SOURCE: Final = "(unauthenticated)"

Source = tuple[str, str, list[str]]
"""(id, label, log types) of one configured source."""


@dataclass(frozen=True, slots=True)
class LastRequest:
    source_id: str
    log_type: str | None
    at: float
    status: int


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    started_at: float
    taken_at: float
    last_requests: dict[tuple[str, str | None], LastRequest]
    accepted_last_hour: int
    quarantined_last_hour: int
    per_minute: list[tuple[int, int]]
    """(accepted, quarantined) for each of the last `WINDOW_MINUTES` minutes, oldest first."""


class StatusBoard:
    """In-memory, per process: last request per (source_id, log_type) and per-minute counts for an hour.

    The counts live in a ring of `WINDOW_MINUTES` slots indexed by minute; a slot still holding an
    older minute is reset when written and ignored when read, so `record` is O(1) and nothing
    needs a timer to expire.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.started_at = clock()
        self._last: dict[tuple[str, str | None], LastRequest] = {}
        self._slots = [[-1, 0, 0] for _ in range(WINDOW_MINUTES)]  # [minute, accepted, quarantined]

    def record(self, *, source_id: str, log_type: str | None, accepted: int, quarantined: int, status: int) -> None:
        now = self._clock()
        minute = int(now // 60)
        slot = self._slots[minute % WINDOW_MINUTES]
        with self._lock:
            self._last[(source_id, log_type)] = LastRequest(source_id, log_type, now, status)
            if slot[0] != minute:
                slot[:] = [minute, 0, 0]
            slot[1] += accepted
            slot[2] += quarantined

    def snapshot(self) -> StatusSnapshot:
        now = self._clock()
        current = int(now // 60)
        with self._lock:
            slots = [(m, self._slots[m % WINDOW_MINUTES]) for m in range(current - WINDOW_MINUTES + 1, current + 1)]
            per_minute = [(slot[1], slot[2]) if slot[0] == m else (0, 0) for m, slot in slots]
            last = dict(self._last)
        return StatusSnapshot(
            started_at=self.started_at,
            taken_at=now,
            last_requests=last,
            accepted_last_hour=sum(a for a, _ in per_minute),
            quarantined_last_hour=sum(q for _, q in per_minute),
            per_minute=per_minute,
        )


def record_outcome(request: Request, *, status: int) -> None:
    """Report one ingest request to the app's board, from what the handler left in `request.state`.

    A request refused before its token was checked belongs to no source: it shows as `UNKNOWN_SOURCE`.
    """
    board: StatusBoard | None = getattr(request.app.state, "status", None)
    if board is not None:
        state = request.state
        board.record(
            source_id=getattr(state, "source_id", None) or UNKNOWN_SOURCE,
            log_type=getattr(state, "log_type", None),
            accepted=getattr(state, "accepted", 0),
            quarantined=getattr(state, "quarantined", 0),
            status=status,
        )


def sources_of(settings: Settings) -> list[Source]:
    """(id, label, log types) of every configured source; no tokens."""
    return [(source.id, source.label or source.id, list(source.log_types)) for source in settings.effective_sources()]


router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def status_page(request: Request) -> HTMLResponse:
    storage: Storage = request.app.state.storage
    board: StatusBoard = request.app.state.status
    try:
        await run_in_threadpool(storage.check_writable)
        storage_error = None
    except StorageUnavailable as exc:
        storage_error = exc.detail
    page = render_page(request.app.state.settings, board.snapshot(), storage_error=storage_error)
    return HTMLResponse(page, headers=SECURITY_HEADERS)


def duration(seconds: float) -> str:
    """Two units at most: `42 s`, `5 min 3 s`, `3 h 12 min`, `2 d 4 h`."""
    s = max(0, int(seconds))
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "min"), (s % 60, "s")]
    first = next((i for i, (value, _) in enumerate(parts) if value), len(parts))
    return " ".join(f"{value} {unit}" for value, unit in parts[first : first + 2] if value) or "0 s"


def utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _request_rows(snapshot: StatusSnapshot, sources: list[Source]) -> str:
    """One row per source and log type, then the HEC row, then whatever else was recorded."""
    keys: list[tuple[str, str, str | None]] = []
    for source_id, label, log_types in sources:
        keys += [(source_id, label, log_type) for log_type in [*log_types, None]]
    known = {(source_id, log_type) for source_id, _, log_type in keys}
    keys += [(sid, "", lt) for (sid, lt) in sorted(snapshot.last_requests, key=str) if (sid, lt) not in known]
    rows = []
    for source_id, label, log_type in keys:
        last = snapshot.last_requests.get((source_id, log_type))
        if last is None:
            when, status = '<span class="muted">never</span>', ""
        else:
            when = f'<time title="{_e(utc(last.at))}">{_e(duration(snapshot.taken_at - last.at))} ago</time>'
            kind = "ok" if last.status < 400 else "warn" if last.status < 500 else "bad"
            status = f'<span class="badge {kind}">{_e(last.status)} {_e(PHRASES.get(last.status, ""))}</span>'
        rows.append(
            f"<tr><td><code>{_e(source_id)}</code></td><td>{_e(label)}</td><td>{_e(log_type or HEC_LABEL)}</td>"
            f"<td>{when}</td><td>{status}</td></tr>"
        )
    return "\n".join(rows)


def _chart(per_minute: list[tuple[int, int]]) -> str:
    """Stacked bars of accepted (and quarantined) records per minute, drawn with inline CSS heights."""
    peak = max((a + q for a, q in per_minute), default=0) or 1
    bars = [
        f'<div class="bar" title="{len(per_minute) - i - 1} min ago: {a} accepted, {q} quarantined">'
        f'<i class="q" style="height:{100 * q / peak:.1f}%"></i><i class="a" style="height:{100 * a / peak:.1f}%"></i>'
        "</div>"
        for i, (a, q) in enumerate(per_minute)
    ]
    axis = f'<div class="axis muted"><span>{len(per_minute)} min ago</span><span>now</span></div>'
    return f'<div class="chart">{"".join(bars)}</div>{axis}'


STYLE: Final = """
:root{color-scheme:light dark;--fg:#1d2433;--muted:#6b7385;--bg:#f6f7f9;--card:#fff;--line:#e3e6eb;--ok:#1a7f37;
--warn:#9a6700;--bad:#cf222e;--accent:#3b6fd8}@media (prefers-color-scheme:dark){:root{--fg:#e6e8ec;--muted:#9aa3b2;
--bg:#15181d;--card:#1e2228;--line:#2f353d;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--accent:#6e9cf5}}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}main{max-width:1040px;margin:0 auto;padding:28px 24px}
header{display:flex;align-items:baseline;gap:14px;flex-wrap:wrap}h1{margin:0;font-size:26px}.ok{color:var(--ok)}
h2{font-size:16px;margin:28px 0 10px}h2 .muted{font-weight:400;font-size:14px}.muted{color:var(--muted)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:14px;margin-top:20px}.bad{color:var(--bad)}
.card,table,.chart{background:var(--card);border:1px solid var(--line);border-radius:10px}.card{padding:14px 16px}
.label,th{color:var(--muted);font-size:13px;font-weight:500}.value{font-size:28px;font-weight:600}
.small{font-size:14px;overflow-wrap:anywhere}table{width:100%;border-collapse:separate;border-spacing:0}
th,td{text-align:left;padding:9px 14px;border-bottom:1px solid var(--line)}tr:last-child td{border-bottom:0}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}a{color:var(--accent)}footer{margin-top:28px}
.badge{padding:1px 9px;border-radius:999px;font-size:13px;font-weight:600;color:#fff;background:var(--ok)}
.badge.warn{background:var(--warn)}.badge.bad{background:var(--bad)}.a{background:var(--accent)}.q{background:var(--warn)}
.chart{display:flex;align-items:flex-end;gap:2px;height:110px;padding:10px}
.bar{flex:1;height:100%;display:flex;flex-direction:column-reverse}.bar i{display:block}
.axis{display:flex;justify-content:space-between;font-size:12px;padding:4px 10px 0}
"""


def render_page(settings: Settings, snapshot: StatusSnapshot, *, storage_error: str | None) -> str:
    """The whole page; a pure function of its arguments, so tests need no server."""
    storage = (
        '<div class="value ok">writable</div>'
        if storage_error is None
        else f'<div class="value bad">unavailable</div><div class="small bad">{_e(storage_error)}</div>'
    )
    uptime = duration(snapshot.taken_at - snapshot.started_at)
    links = " · ".join(f'<a href="{path}">{path}</a>' for path in ("/metrics", "/healthz", "/readyz"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="30"><title>tailscribe status</title><style>{STYLE}</style></head>
<body><main>
<header><h1>tailscribe</h1><span class="muted">version {_e(__version__)} · up {_e(uptime)}
· started {_e(utc(snapshot.started_at))}</span></header>
<section class="cards">
<div class="card"><div class="label">Records accepted, last hour</div>
<div class="value" id="accepted">{snapshot.accepted_last_hour:,}</div></div>
<div class="card"><div class="label">Records quarantined, last hour</div>
<div class="value" id="quarantined">{snapshot.quarantined_last_hour:,}</div></div>
<div class="card"><div class="label">Storage</div>{storage}</div>
<div class="card"><div class="label">Data directory</div><code class="small">{_e(settings.data_dir)}</code></div>
</section>
<h2>Last request per source and log type</h2>
<table><thead><tr><th>Source</th><th>Label</th><th>Log type</th><th>Last request</th><th>Status</th></tr></thead>
<tbody>
{_request_rows(snapshot, sources_of(settings))}
</tbody></table>
<h2>Records per minute <span class="muted">(last {WINDOW_MINUTES} minutes: blue accepted, amber quarantined)</span></h2>
{_chart(snapshot.per_minute)}
<footer class="muted">{links} · refreshes every 30 s · counts are this process's only</footer>
</main></body></html>
"""
