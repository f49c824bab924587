"""The application the concurrency limit tests serve.

Every call that holds reports itself to the test over a UNIX socket (its path in the
server's environment as ``LIMIT_CONTROL``), then waits there until the test releases it:
the test knows exactly which calls are in flight, with no sleep.  A released call answers
and returns at once, on the loop turn that sends its answer, so that once a client has the
answer the call no longer counts.

- ``/hold`` (HTTP): "held", waits, then 200 ``served /hold``.
- ``/ws/hold`` (WebSocket): accepts, "held", waits, then closes (1000).
- anything else: 200 ``served PATH`` (HTTP), or accept, ``served PATH`` and close
  (WebSocket).

The application never answers 503: a 503 is the server's own.
"""

import asyncio
import os

from tests.lifespan import serve_lifespan


async def _hold() -> None:
    reader, writer = await asyncio.open_unix_connection(os.environ["LIMIT_CONTROL"])
    writer.write(b"held\n")
    await writer.drain()
    await reader.read(1)  # the test's release: a byte, or the end of the connection
    writer.close()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await serve_lifespan(receive, send)
    path = scope["path"]
    if scope["type"] == "http":
        if path == "/hold":
            await _hold()
        body = f"served {path}".encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    if path == "/ws/hold":
        await _hold()
    else:
        await send({"type": "websocket.send", "text": f"served {path}"})
    await send({"type": "websocket.close", "code": 1000})
