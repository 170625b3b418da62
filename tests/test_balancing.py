"""`app.balancing`: the kernel's count of a port's connections, and when a worker closes one of them.

Real sockets on 127.0.0.1 (and ::1 where the machine has IPv6): the count is the kernel's (sock_diag),
so only connections the kernel really holds can make these pass."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from app import balancing
from app.balancing import ESTABLISHED, LISTEN, ConnectionBalancer, established_connections, tcp_sockets


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


class Listener:
    """A listening socket with `connect()`ed clients, some of them `accept()`ed by this process."""

    def __init__(self, stack: ExitStack, family: socket.AddressFamily = socket.AF_INET) -> None:
        self.stack = stack
        self.family = family
        self.server = stack.enter_context(socket.socket(family))
        self.server.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.clients: list[socket.socket] = []
        self.accepted: list[socket.socket] = []

    def connect(self, count: int) -> None:
        for _ in range(count):
            client = self.stack.enter_context(socket.socket(self.family))
            client.connect(self.server.getsockname())
            self.clients.append(client)

    def accept(self, count: int) -> None:
        for _ in range(count):
            self.accepted.append(self.stack.enter_context(self.server.accept()[0]))


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as sockets:
        yield sockets


@pytest.mark.parametrize(
    "family",
    [
        socket.AF_INET,
        pytest.param(
            socket.AF_INET6, marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
        ),
    ],
)
def test_the_ports_sockets_are_listed_accepted_or_still_queued(stack: ExitStack, family: socket.AddressFamily):
    listener = Listener(stack, family)
    listener.connect(3)
    listener.accept(2)

    # Only the states this test makes: an ephemeral port may come with TIME_WAIT sockets of an earlier
    # connection that used the same number (seen once in CI: two of them on ::1).
    sockets = tcp_sockets(listener.port, (1 << ESTABLISHED) | (1 << LISTEN))

    # The clients' own sockets have the port as their remote end, not their local one: not listed.
    assert sorted(entry.state for entry in sockets) == [ESTABLISHED] * 3 + [LISTEN]
    assert {entry.inode for entry in sockets if entry.state == LISTEN} == {os.fstat(listener.server.fileno()).st_ino}
    accepted = {os.fstat(conn.fileno()).st_ino for conn in listener.accepted}
    assert sorted(entry.inode for entry in sockets if entry.state == ESTABLISHED) == [0, *sorted(accepted)]
    client_ports = {client.getsockname()[1] for client in listener.clients}
    assert {entry.remote_port for entry in sockets if entry.state == ESTABLISHED} == client_ports
    assert established_connections(listener.port) == 3


def test_a_closed_connection_is_no_longer_counted(stack: ExitStack):
    listener = Listener(stack)
    listener.connect(3)
    listener.accept(3)

    listener.accepted.pop().close()  # the server closes first: its side waits in FIN_WAIT/TIME_WAIT

    assert established_connections(listener.port) == 2


def test_a_family_the_kernel_refuses_is_skipped_and_the_others_still_counted(
    stack: ExitStack, monkeypatch: pytest.MonkeyPatch
):
    """The kernel answers a dump for a family past AF_MAX with an error message (EINVAL), as it does
    for IPv6 where IPv6 is disabled."""
    listener = Listener(stack)
    listener.connect(3)
    listener.accept(3)
    monkeypatch.setattr(balancing, "FAMILIES", (255, socket.AF_INET))

    assert established_connections(listener.port) == 3


def test_a_worker_over_its_share_closes_the_extra_connections_once_per_count(stack: ExitStack):
    """Six connections on the port, two workers: a worker holding four is one over its share of three."""
    listener = Listener(stack)
    listener.connect(6)
    listener.accept(6)
    balancer = ConnectionBalancer(workers=2)
    for _ in range(4):
        balancer.opened(listener.port)

    assert [balancer.should_close(now=100.0) for _ in range(3)] == [True, False, False]
    balancer.opened(listener.port)  # one more arrives before the next count: it waits for that count
    assert balancer.should_close(now=100.0 + balancing.CHECK_INTERVAL / 2) is False
    assert balancer.should_close(now=100.0 + balancing.CHECK_INTERVAL) is True  # five held, share three
    assert balancer.should_close(now=100.0 + balancing.CHECK_INTERVAL) is True
    assert balancer.should_close(now=100.0 + balancing.CHECK_INTERVAL) is False


def test_a_worker_within_its_share_or_holding_one_connection_closes_none(stack: ExitStack):
    listener = Listener(stack)
    listener.connect(5)
    listener.accept(5)
    balancer = ConnectionBalancer(workers=2)
    for _ in range(3):  # five on the port: the share is three, rounded up
        balancer.opened(listener.port)
    assert balancer.should_close(now=1.0) is False

    alone = ConnectionBalancer(workers=4)
    alone.opened(listener.port)  # a share is never less than one connection
    assert alone.should_close(now=1.0) is False


def test_no_count_to_read_closes_nothing(stack: ExitStack, monkeypatch: pytest.MonkeyPatch):
    """With no count to read (not Linux) the port seems to have no connections: fewer than the worker holds."""
    listener = Listener(stack)
    listener.connect(4)
    listener.accept(4)
    monkeypatch.setattr(balancing, "FAMILIES", ())
    balancer = ConnectionBalancer(workers=2)
    for _ in range(4):
        balancer.opened(listener.port)

    assert balancer.should_close(now=1.0) is False


def counted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...] | None]:
    """The families of each count the balancer makes, the real count still made."""
    families: list[tuple[int, ...] | None] = []
    count = balancing.established_connections

    def spy(port: int, asked: tuple[int, ...] | None = None) -> int:
        families.append(asked)
        return count(port, asked)

    monkeypatch.setattr(balancing, "established_connections", spy)
    return families


def holding(stack: ExitStack, held: int, total: int) -> tuple[Listener, ConnectionBalancer]:
    """A port with `total` accepted IPv4 connections, and a two-worker balancer holding `held` of them."""
    listener = Listener(stack)
    listener.connect(total)
    listener.accept(total)
    balancer = ConnectionBalancer(workers=2)
    for _ in range(held):
        balancer.opened(listener.port, socket.AF_INET)
    return listener, balancer


def test_an_even_split_is_counted_ever_less_often_up_to_the_quiet_interval(
    stack: ExitStack, monkeypatch: pytest.MonkeyPatch
):
    balancer = holding(stack, held=3, total=6)[1]  # its share
    families = counted(monkeypatch)

    moments = [index * balancing.CHECK_INTERVAL / 2 for index in range(200)]  # a request every 0.25 s, 50 s
    counts = []
    for now in moments:
        before = len(families)
        assert balancer.should_close(now) is False
        if len(families) > before:
            counts.append(now)

    waits = [later - earlier for earlier, later in zip(counts, counts[1:], strict=False)]
    assert waits[:4] == [1.0, 2.0, 4.0, balancing.QUIET_INTERVAL]
    assert set(waits[4:]) == {balancing.QUIET_INTERVAL}
    assert families == [(socket.AF_INET,)] * len(counts)  # only the family the worker's connections are of


def test_a_connection_opening_or_closing_brings_the_next_count_back_within_the_check_interval(
    stack: ExitStack, monkeypatch: pytest.MonkeyPatch
):
    listener, balancer = holding(stack, held=3, total=6)
    for now in (0.0, 1.0, 3.0, 7.0):  # backed off: the next count would be at 15
        balancer.should_close(now)
    families = counted(monkeypatch)

    balancer.opened(listener.port, socket.AF_INET)  # one shed by the other worker lands here: four of six
    assert balancer.should_close(7.0 + balancing.CHECK_INTERVAL / 2) is False
    assert families == []
    assert balancer.should_close(7.0 + balancing.CHECK_INTERVAL) is True
    assert len(families) == 1

    balancer.closed()  # the one it shed, gone: three of five, counted again within the interval
    listener.accepted.pop().close()
    assert balancer.should_close(7.0 + 2 * balancing.CHECK_INTERVAL) is False
    assert len(families) == 2


def test_a_count_asks_only_for_the_family_of_the_workers_connections(stack: ExitStack):
    """Four IPv4 connections, and a balancer told its connections are IPv6: it counts none, so it
    closes none (a count below what it holds is no count); told IPv4, it closes the extra ones."""
    listener = Listener(stack)
    listener.connect(4)
    listener.accept(4)
    wrong, right = ConnectionBalancer(workers=2), ConnectionBalancer(workers=2)
    for _ in range(4):
        wrong.opened(listener.port, socket.AF_INET6)
        right.opened(listener.port, socket.AF_INET)

    assert wrong.should_close(now=1.0) is False
    assert [right.should_close(now=1.0) for _ in range(3)] == [True, True, False]
