"""End to end: a worker holding more than its share of connections sends the extra ones elsewhere.

The kernel spreads connections over the workers by a hash (app/workers.py), so the test builds the
worst split on purpose: it opens connections and keeps only those one worker accepted, found by
matching each client's port to the server-side socket in the kernel's list and that socket to a
worker's open files. Then it posts records on every connection and watches where they are."""

from __future__ import annotations

import http.client
import time
from collections import Counter

from app.balancing import ESTABLISHED, tcp_sockets
from bench.load import socket_inodes
from tests.e2e.conftest import TOKEN, MakeServer, Server
from tests.samples import concatenated, envelope, network_event

NETWORK = concatenated([envelope(network_event())])
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def owner(server: Server, conn: http.client.HTTPConnection) -> int:
    """The worker process holding the server side of `conn`, once it has accepted it."""
    assert conn.sock is not None
    client_port = conn.sock.getsockname()[1]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        inodes = {e.inode for e in tcp_sockets(server.port) if e.state == ESTABLISHED and e.remote_port == client_port}
        for pid in server.worker_pids():
            if inodes & socket_inodes(pid) - {0}:
                return pid
        time.sleep(0.01)
    raise AssertionError(f"no worker accepted the connection from port {client_port}")


def all_on_one_worker(server: Server, count: int) -> list[http.client.HTTPConnection]:
    """`count` open connections, every one of them held by the same worker."""
    kept: list[http.client.HTTPConnection] = []
    target = None
    for _ in range(200):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.connect()
        pid = owner(server, conn)
        target = target or pid
        if pid == target:
            kept.append(conn)
            if len(kept) == count:
                return kept
        else:
            conn.close()
    raise AssertionError("the kernel never put enough connections on one worker")


def post(conn: http.client.HTTPConnection) -> bool:
    """Post one record; True when the answer asked the client to reconnect (which it then does)."""
    conn.request("POST", "/v1/tailscale/network", body=NETWORK, headers=HEADERS)
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    if response.getheader("connection") == "close":
        conn.connect()  # what every HTTP/1.1 client does next, here at once so `split` sees it
        return True
    return False


def split(server: Server, conns: list[http.client.HTTPConnection]) -> list[int]:
    """How many of `conns` each worker holds, most first."""
    held = Counter(owner(server, conn) for conn in conns)
    return sorted([held[pid] for pid in server.worker_pids()], reverse=True)


def test_six_connections_on_one_of_two_workers_end_up_three_and_three(make_server: MakeServer):
    server = make_server("--workers", "2")
    conns = all_on_one_worker(server, 6)
    assert split(server, conns) == [6, 0]

    posts = closes = 0
    deadline = time.monotonic() + 30
    while split(server, conns) != [3, 3]:
        assert time.monotonic() < deadline, f"still {split(server, conns)} after {posts} posts"
        for conn in conns:
            closes += post(conn)
            posts += 1
        time.sleep(0.05)

    assert closes >= 3  # at least the three that moved were asked to
    assert server.metric("tailscribe_connections_rebalanced_total") == closes
    assert len(server.archive_rows()) == posts  # every answered post stored once, closed or not
    for _ in range(3):  # once even, nobody is asked to leave
        assert not any(post(conn) for conn in conns)
        time.sleep(0.3)
    assert split(server, conns) == [3, 3]


def test_with_rebalancing_off_the_connections_stay_where_the_kernel_put_them(make_server: MakeServer):
    server = make_server("--workers", "2", "--rebalance-connections", "false")
    conns = all_on_one_worker(server, 6)

    for _ in range(6):  # over a second: past several counts, had there been any
        assert not any(post(conn) for conn in conns)
        time.sleep(0.2)

    assert split(server, conns) == [6, 0]
    assert server.metric("tailscribe_connections_rebalanced_total") == 0
