"""The naive receiver: what a user would write in 30 lines, the alternative tailscribe must beat.

FastAPI, an NDJSON body, `json.loads` per line, a pydantic model per record (Panther's
Tailscale.Network schema, nested as a user would copy it), appended to a file without fsync. It
does less than tailscribe (no enrichment, no durability), and runs on the same server stack.

    NAIVE_OUTPUT=path TOKEN=t uvicorn bench.naive:app --workers 2
"""

from __future__ import annotations

import json
import os

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

app = FastAPI()
output = open(os.environ.get("NAIVE_OUTPUT", "naive.ndjson"), "a")  # noqa: SIM115


class Traffic(BaseModel):
    proto: int | None = None
    src: str | None = None
    dst: str | None = None
    txPkts: int | None = None
    txBytes: int | None = None
    rxPkts: int | None = None
    rxBytes: int | None = None


class Event(BaseModel):
    nodeId: str | None = None
    start: str | None = None
    end: str | None = None
    virtualTraffic: list[Traffic] | None = None
    subnetTraffic: list[Traffic] | None = None
    exitTraffic: list[Traffic] | None = None
    physicalTraffic: list[Traffic] | None = None


class Record(BaseModel):
    time: float
    event: Event
    fields: dict[str, str] | None = None


def rows(body: bytes) -> list[str]:
    """Each line parsed, validated and dumped again: the per-record work (`bench.stages` times it)."""
    return [Record(**json.loads(line)).model_dump_json() + "\n" for line in body.splitlines() if line.strip()]


@app.post("/v1/tailscale/network")
async def ingest(request: Request) -> dict[str, object]:
    if request.headers.get("authorization") != f"Bearer {os.environ.get('TOKEN', '')}":
        raise HTTPException(401)
    lines = rows(await request.body())
    output.writelines(lines)
    return {"text": "Success", "code": 0, "accepted": len(lines)}
