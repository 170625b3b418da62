"""The null receiver: a bare ASGI app that reads the body and answers 200, on the same server stack
(uvicorn, uvloop, httptools) as tailscribe. Nothing can be faster over HTTP: it is the floor.

    uvicorn bench.null:app --workers 2
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

SUCCESS = b'{"text":"Success","code":0}'


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": SUCCESS})
