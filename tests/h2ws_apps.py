"""The extra routes tests/protocols/http2/test_http2_websocket.py needs, in front of tests.apps:app.

/wsx/... are WebSocket routes whose application records what it heard (read back through
/wsx-heard), so that a test can see an application hear websocket.disconnect whether or not
it accepted; /wsx-page/... are pages on which Chromium opens and closes a WebSocket;
/h2x-respond sends the (possibly malformed) response its query describes."""

import json
from urllib.parse import unquote_to_bytes

from tests.apps import app as base_app
from tests.apps import gate, respond

heard: list = []  # [path (with "#id" when ?id= is given), what the application heard, ...]


async def websocket_app(scope, receive, send):
    path = scope["path"]
    query = dict(
        part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part
    )
    label = f"{path}#{query['id']}" if "id" in query else path
    message = await receive()
    if path == "/wsx/pending":
        # never answers the handshake: tells the test it waits, then records what comes
        print("app: wsx pending", query.get("id"), flush=True)
        heard.append([label, (await receive())["type"]])
        return
    if path == "/wsx/deny":
        # refuses with the status asked for, through the denial-response extension
        try:
            await send({"type": "websocket.http.response.start",
                        "status": int(query["status"]), "headers": []})
            await send({"type": "websocket.http.response.body", "body": b"refused"})
        except Exception as exc:
            heard.append([label, type(exc).__name__])
            raise
        heard.append([label, "sent"])
        return
    # ?h=name:value,name:value, each percent-decoded to bytes
    headers = [tuple(unquote_to_bytes(piece) for piece in part.split(":", 1))
               for part in query.get("h", "").split(",") if ":" in part]
    await send({"type": "websocket.accept", "headers": headers})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            heard.append([label, message["type"], message["code"]])
            return
        text = message.get("text")
        if text == "version":
            await send({"type": "websocket.send", "text": scope["http_version"]})
        elif text == "close":
            await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
        elif text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


# Opens a WebSocket to /wsx/echo over whatever connection Chromium picks for the page, asks
# it the scope's http_version, then closes it from the page (?by=client) or has the server
# close it (?by=server), and shows how the close went: "<http_version> <code> <wasClean>".
PAGE = b"""<!doctype html><title>ws close</title><p id="result">waiting</p><script>
const by = new URLSearchParams(location.search).get("by");
const ws = new WebSocket("wss://" + location.host + "/wsx/echo");
let version = "?";
ws.onopen = () => ws.send("version");
ws.onmessage = (event) => {
  version = event.data;
  if (by === "client") ws.close(3001, "done"); else ws.send("close");
};
ws.onclose = (event) => {
  document.getElementById("result").textContent =
    version + " " + event.code + " " + event.wasClean;
};
</script>"""


async def respond_as_told(scope, send):
    """A response as the query describes it, right or wrong: ?status=, ?h=name:value,...
    (percent-decoded), ?big=N (an x-big header of N bytes), ?parts=5,0 (body messages of
    that many bytes, more_body on all but the last), ?trailers=name:value (announced, then
    sent after the body)."""
    query = dict(
        part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part
    )
    headers = [tuple(unquote_to_bytes(piece) for piece in part.split(":", 1))
               for part in query.get("h", "").split(",") if ":" in part]
    if "big" in query:
        headers.append((b"x-big", b"a" * int(query["big"])))
    trailers = [tuple(unquote_to_bytes(piece) for piece in part.split(":", 1))
                for part in query.get("trailers", "").split(",") if ":" in part]
    await send({"type": "http.response.start", "status": int(query.get("status", "200")),
                "headers": headers, "trailers": "trailers" in query})
    parts = [int(n) for n in query.get("parts", "0").split(",")]
    for i, size in enumerate(parts):
        await send({"type": "http.response.body", "body": b"x" * size,
                    "more_body": i < len(parts) - 1})
    if "trailers" in query:
        await send({"type": "http.response.trailers", "headers": trailers})


async def app(scope, receive, send):
    if scope["type"] == "websocket" and scope["path"].startswith("/wsx/"):
        return await websocket_app(scope, receive, send)
    if scope["type"] == "http" and scope["path"] == "/wsx-heard":
        return await respond(send, body=json.dumps(heard).encode())
    if scope["type"] == "http" and scope["path"] == "/wsx-no-read":
        # answers once its gate opens, having read none of the request body
        await gate(scope["query_string"].decode()).wait()
        return await respond(send, body=b"not read")
    if scope["type"] == "http" and scope["path"] == "/h2x-respond":
        return await respond_as_told(scope, send)
    if scope["type"] == "http" and scope["path"] == "/wsx-page":
        return await respond(send, body=PAGE, content_type=b"text/html; charset=utf-8")
    return await base_app(scope, receive, send)
