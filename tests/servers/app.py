"""A tailscribe app served by a real uvicorn (uvloop, httptools) in a thread of the test process.

For tests that build the app in this process: to reach into it (swap its storage for one that
fails, add a route that reaches a handler no real route can) or to serve one router alone. The
receiver as a whole, with its guarded HTTP protocol and workers, runs as a subprocess in the e2e
tests (tests/e2e/conftest.py). Requests still go over HTTP on 127.0.0.1 through uvicorn, uvloop and
httptools, unlike Starlette's TestClient, which calls the app in process (and whose use with httpx
Starlette now deprecates).

    with serving(create_app(settings)) as url:
        app.state.storage = BrokenStorage()        # after start-up, which set the real one
        httpx.post(f"{url}/v1/tailscale/network", ...)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from bench.load import free_port

START_TIMEOUT = 10.0


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """`app` served on 127.0.0.1 and a free port until the block ends; yields its base URL.

    Start-up (the lifespan) has run when the block begins and shutdown when it ends. uvicorn installs
    no signal handlers outside the main thread, and `log_config=None` leaves the test's logging (and
    pytest's caplog) as it is."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT)
