"""The application tests/server/test_metrics.py and tests/server/test_health.py serve:
known answers, a request the client holds open, a blocked loop and a raised exception."""

from __future__ import annotations

import asyncio
import os
import time


async def _body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return body
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _respond(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                gate = os.environ.get("METRICS_TEST_GATE")
                if gate:  # the test decides when this process's startup completes
                    reader, writer = await asyncio.open_unix_connection(gate)
                    writer.write(b"%d\n" % os.getpid())
                    await reader.read(1)
                    writer.close()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        if scope["path"] == "/ws/deny":
            await send({"type": "websocket.close"})
            return
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text") or ""
            if text.startswith("close "):  # the server closes, with this code
                await send({"type": "websocket.close", "code": int(text.split()[1])})
                return
            await send({"type": "websocket.send", "text": text})
    path = scope["path"]
    if path == "/":
        await _body(receive)
        await _respond(send, 200, b"hello")
    elif path == "/hold":
        # the head and a first piece at once; the rest once the client's body has all
        # come: the client decides when the request ends
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"held\n", "more_body": True})
        await _body(receive)
        await send({"type": "http.response.body", "body": b"released\n"})
    elif path == "/block":
        await _body(receive)
        time.sleep(float(scope["query_string"] or b"1"))  # blocks the loop: under test
        await _respond(send, 200, b"blocked")
    elif path == "/raise":
        raise RuntimeError("the application failed, as asked")
    else:
        await _body(receive)
        await _respond(send, 404, b"not found")
