"""What tests/protocols/http2/test_http2_differential.py serves: an application whose
answer is a function of the request alone (no address, no time), and the lean HTTP/2
path's switch.

``DD_HTTP2_LEAN=0`` in the server's environment turns the lean path off
(``HTTP2Handler.LEAN``), so that every request goes through h2: the differential test runs
one server each way and compares their answers.  Nothing else reads the switch.
"""

from __future__ import annotations

import json
import os

from django_daphne.protocols.http2.connection import HTTP2Handler
from tests.lifespan import serve_lifespan

HTTP2Handler.LEAN = os.environ.get("DD_HTTP2_LEAN", "1") != "0"


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await serve_lifespan(receive, send)
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    query = dict(part.split("=", 1) for part in scope["query_string"].decode().split("&")
                 if "=" in part)
    echo = json.dumps({
        "method": scope["method"], "path": scope["path"], "scheme": scope["scheme"],
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
        "body": body.decode("latin-1"),
    }).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body",
                "body": echo + b"\n" + b"x" * int(query.get("size", "0"))})
