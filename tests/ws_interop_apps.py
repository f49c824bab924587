"""WebSocket routes for tests/asgi/test_websocket.py's interoperability checks, in front of
tests.apps:app: what Channels, Starlette and FastAPI applications send and expect, written
as plain ASGI so they need neither installed.

/wsi/hdrs          accepts with the headers given in ?h=name:value,... (values
                   percent-decoded to bytes), then sends the scope as JSON
/wsi/scope         accepts and sends the scope as JSON (headers as latin-1 strings)
/wsi/record        accepts, then records every message it receives; read back through
                   /wsi-heard?id=...
/wsi/send-after-close
                   closes, then sends: records what the send raised
/wsi/bad-send      sends the message given as JSON in ?m=, records what send raised
/wsi/flood         sends until send raises, records what it raised
/wsi/big           sends a binary and a text message of ?n= bytes, then answers each
                   message with its size
"""

import base64
import json
import os
from urllib.parse import unquote_to_bytes

from tests.apps import app as base_app
from tests.apps import respond, scope_json

heard: dict = {}  # id -> [what the application heard or raised, ...]


def _query(scope):
    return dict(
        part.split("=", 1) for part in scope["query_string"].decode("latin-1").split("&")
        if "=" in part
    )


def _bytes_hook(obj):
    return obj["b"].encode("latin-1") if list(obj) == ["b"] else obj


async def websocket_app(scope, receive, send):
    path = scope["path"]
    query = _query(scope)
    log = heard.setdefault(query.get("id", path), [])
    message = await receive()
    log.append(message["type"])
    if path == "/wsi/hdrs":
        headers = [tuple(unquote_to_bytes(p) for p in part.split(":", 1))
                   for part in query.get("h", "").split(",") if ":" in part]
        await send({"type": "websocket.accept", "headers": headers})
        await send({"type": "websocket.send", "text": json.dumps(scope_json(scope))})
        await receive()
        return
    if path == "/wsi/scope":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(scope_json(scope))})
        await receive()
        return
    if path == "/wsi/record":
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            log.append([message["type"], message.get("code"), message.get("text"),
                        len(message.get("bytes") or b"")])
            if message["type"] == "websocket.disconnect":
                return
    if path == "/wsi/send-after-close":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4002})
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except Exception as exc:
            log.append(type(exc).__name__)
        else:
            log.append("sent")
        return
    if path == "/wsi/flood":
        # sends until send raises (the client left), and records what it raised
        await send({"type": "websocket.accept"})
        block = b"f" * 65536
        try:
            while True:
                await send({"type": "websocket.send", "bytes": block})
        except Exception as exc:
            log.append(type(exc).__name__)
            log.append(isinstance(exc, OSError))
            raise
    if path == "/wsi/bad-send":
        await send({"type": "websocket.accept"})
        # the message to send, as JSON; {"b": "..."} stands for bytes
        message = json.loads(unquote_to_bytes(query["m"]), object_hook=_bytes_hook)
        try:
            await send(message)
        except Exception as exc:
            log.append(type(exc).__name__)
            raise
        log.append("sent")
        await receive()
        return
    if path == "/wsi/big":
        # sends one binary and one text message of ?n= bytes, then echoes what it gets
        await send({"type": "websocket.accept"})
        size = int(query["n"])
        # data that does not compress, so that a compressed message is as large
        await send({"type": "websocket.send", "bytes": os.urandom(size)})
        text = base64.b64encode(os.urandom(size))[:size].decode("ascii")
        await send({"type": "websocket.send", "text": text})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": str(len(message["bytes"] or b""))})
    await send({"type": "websocket.close"})


async def app(scope, receive, send):
    if scope["type"] == "websocket" and scope["path"].startswith("/wsi/"):
        return await websocket_app(scope, receive, send)
    if scope["type"] == "http" and scope["path"] == "/wsi-heard":
        query = _query(scope)
        return await respond(send, body=json.dumps(heard.get(query.get("id"), [])).encode(),
                             content_type=b"application/json")
    return await base_app(scope, receive, send)
