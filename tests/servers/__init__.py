"""Real servers the tests talk to (nats-server, moto's S3), started and stopped around a test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar


class Startable(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


ServerT = TypeVar("ServerT", bound=Startable)


@contextmanager
def running(server: ServerT) -> Iterator[ServerT]:
    """`server`, started, and stopped on exit whatever happened."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
