"""The one ASGI application every server in the benchmark serves.

Kept tiny on purpose, so the figures measure the server and not the application:

- ``GET /``        a 13-byte ``text/plain`` body with a Content-Length.
- ``POST /upload`` reads the whole request body and answers with its size.
- ``GET /stream``  1 MiB streamed as 16 body messages of 64 KiB (no Content-Length).
- ``/ws``          a WebSocket that echoes every message (for the WebSocket rows).
- ``lifespan``     accepted, so servers that send it run the same way.
"""

from __future__ import annotations

HELLO = b"Hello, world!"
CHUNK = b"x" * 65536
CHUNKS = 16  # 16 x 64 KiB = 1 MiB

_TEXT = [(b"content-type", b"text/plain")]
_HELLO_HEADERS = [*_TEXT, (b"content-length", str(len(HELLO)).encode())]


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "http":
        path = scope["path"]
        if path == "/upload":
            await _upload(receive, send)
        elif path == "/stream":
            await _stream(send)
        else:
            # Fresh message dicts per request, as a real application builds them.
            await send({"type": "http.response.start", "status": 200, "headers": _HELLO_HEADERS})
            await send({"type": "http.response.body", "body": HELLO})
    elif kind == "websocket":
        await _echo(receive, send)
    elif kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _upload(receive, send):
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [*_TEXT, (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})


async def _stream(send):
    await send({"type": "http.response.start", "status": 200, "headers": _TEXT})
    for _ in range(CHUNKS - 1):
        await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": CHUNK})


async def _echo(receive, send):
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            if message.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
            else:
                await send({"type": "websocket.send", "text": message.get("text")})
        else:
            return
