"""Driving a sink the way the runner does, for tests that exercise one sink alone."""

from __future__ import annotations

import asyncio

from app.sinks.base import Sink, SinkBatch
from app.types import Row


def deliver(sink: Sink, *batches: list[Row]) -> None:
    """start, write each batch (numbered as consecutive journal batches), close, as the runner would."""

    async def run() -> None:
        await sink.start()
        try:
            for seq, rows in enumerate(batches):
                await sink.write(SinkBatch(rows, first_seq=seq))
        finally:
            await sink.close()

    asyncio.run(run())
