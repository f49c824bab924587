"""ASGI applications the black-box tests serve, routed by path."""

import asyncio
import json
import os
import time

disconnects = []  # paths whose app saw http.disconnect
gates: dict = {}  # name -> asyncio.Event, opened by /open-gate
progress: dict = {}  # name -> bytes sent so far by /firehose
recorded = []  # what /record saw: "ID" when started, then "ID:complete" or "ID:disconnect"
barriers: dict = {}  # name -> [requests arrived, asyncio.Event set once enough are in]
flags: set = set()  # names set by /flag
spins: dict = {}  # name -> how a receive() loop after the end ended: "interrupted" or "gave up"
SPIN_LIMIT = 5_000_000  # receive() calls a spinning application makes before it gives up


async def spin(name, receive, gone):
    """Call receive() in a loop after the exchange ended, as a naive disconnect watcher
    does, until /flag?name=... is served: only a server whose repeated disconnect yields to
    the loop can serve that meanwhile."""
    for _ in range(SPIN_LIMIT):
        assert (await receive())["type"] == gone
        if name in flags:
            spins[name] = "interrupted"
            return
    spins[name] = "gave up"


def gate(name):
    if name not in gates:
        gates[name] = asyncio.Event()
    return gates[name]


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if os.environ.get("TEST_LIFESPAN_FAIL"):
                await send({"type": "lifespan.startup.failed", "message": "database is down"})
                return
            if os.environ.get("TEST_LIFESPAN_SLOW"):
                # a slow startup (a database warming up), long enough for a stop signal
                print("lifespan: starting", flush=True)
                await asyncio.sleep(float(os.environ["TEST_LIFESPAN_SLOW"]))
            scope["state"]["started"] = "yes"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            marker = os.environ.get("TEST_LIFESPAN_SHUTDOWN_FILE")
            if marker:
                with open(marker, "w") as f:
                    f.write("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive):
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return chunks


async def respond(send, status=200, body=b"", headers=None, content_type=b"text/plain"):
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", content_type)] + (headers or []),
    })
    await send({"type": "http.response.body", "body": body})


def scope_json(scope):
    out = {}
    for key, value in scope.items():
        if key == "headers":
            value = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in value]
        elif isinstance(value, bytes):
            value = value.decode("latin-1")
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out


# A page that opens a WebSocket to /ws/scope on its own origin and shows what the server
# saw (the scope's http_version and scheme), then an echo, in #result.
WS_PAGE = b"""<!doctype html><title>ws</title><p id="result">waiting</p><script>
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host
                         + "/ws/scope");
let scope = null;
ws.onmessage = (event) => {
  if (scope === null) { scope = JSON.parse(event.data); ws.send("echo me"); return; }
  document.getElementById("result").textContent =
    scope.http_version + " " + scope.scheme + " " + event.data;
};
ws.onerror = () => { document.getElementById("result").textContent = "error"; };
</script>"""

ws_disconnects: list = []  # [path, code, reason] seen by WebSocket apps


async def websocket_app(scope, receive, send):
    path = scope["path"]
    query = dict(
        part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part
    )
    message = await receive()
    assert message["type"] == "websocket.connect", message
    if path == "/ws/deny":
        await send({"type": "websocket.close"})
        return
    if path == "/ws/deny-custom":
        await send({"type": "websocket.http.response.start", "status": 418,
                    "headers": [(b"x-why", b"teapot"), (b"content-type", b"text/plain")]})
        await send({"type": "websocket.http.response.body", "body": b"I am ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"a teapot"})
        return
    if path == "/ws/deny-status":
        await send({"type": "websocket.http.response.start", "status": int(query["code"]),
                    "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"denied"})
        return
    if path == "/ws/raise":
        raise RuntimeError("websocket app broke before accepting")
    if path == "/ws/never-accept":
        print("app: not accepting", flush=True)
        await receive()
        return
    subprotocol = scope["subprotocols"][0] if scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": subprotocol,
                "headers": [(b"x-accepted", b"yes")]})
    if path == "/ws/scope":
        await send({"type": "websocket.send", "text": json.dumps(scope_json(scope))})
    if path == "/ws/gated":
        print("app: ws gated", flush=True)
        await gate(query["gate"]).wait()
    if path == "/ws/firehose":
        name = query["name"]
        progress[name] = 0
        block = b"w" * 65536
        while progress[name] < int(query["total"]):
            progress[name] += len(block)
            await send({"type": "websocket.send", "bytes": block})
        await send({"type": "websocket.close", "code": 1000})
        return
    if path == "/ws/return":
        return
    if path == "/ws/spin":
        message = await receive()
        assert message["type"] == "websocket.disconnect", message
        print("app: ws spinning", flush=True)
        return await spin(query["name"], receive, "websocket.disconnect")
    if path == "/ws/close-after-accept":
        await send({"type": "websocket.close", "code": 4001, "reason": "go away"})
        return
    if path == "/ws/raise-after-accept":
        raise RuntimeError("websocket app broke")
    count = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            ws_disconnects.append([path, message["code"], message.get("reason", "")])
            return
        count += len(message["bytes"] or message["text"] or "")
        if message.get("text") == "close":
            await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
        elif (message.get("text") or "").startswith("close "):
            await send({"type": "websocket.close", "code": int(message["text"][6:])})
        elif message.get("text") == "count":
            await send({"type": "websocket.send", "text": str(count)})
        elif path != "/ws/sink":
            await send({"type": "websocket.send", "bytes": message["bytes"],
                        "text": message["text"]})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    if scope["type"] == "websocket":
        return await websocket_app(scope, receive, send)
    path = scope["path"]
    query = dict(
        part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part
    )
    if path == "/echo" or path.startswith("/echo/"):
        chunks = await read_body(receive)
        data = scope_json(scope)
        data["body"] = b"".join(chunks).decode("latin-1")
        data["chunks"] = len(chunks)
        return await respond(send, body=json.dumps(data).encode(),
                             content_type=b"application/json")
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(int(query.get("n", "3"))):
            await send({"type": "http.response.body", "body": b"chunk%d;" % i,
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/big":
        size = int(query.get("size", "1048576"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(size).encode())]})
        if query.get("whole"):  # in one message: a send that never waits for room
            await send({"type": "http.response.body", "body": b"x" * size})
            return
        if query.get("short"):  # the first half, then an end short of the length
            await send({"type": "http.response.body", "body": b"x" * (size // 2),
                        "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        block = b"x" * 65536
        sent = 0
        while sent < size:
            piece = block[: min(65536, size - sent)]
            sent += len(piece)
            await send({"type": "http.response.body", "body": piece,
                        "more_body": sent < size})
        return
    if path == "/count-body":
        chunks = await read_body(receive)
        return await respond(send, body=b"%d bytes in %d messages" % (
            sum(map(len, chunks)), len(chunks)))
    if path == "/slow-body":
        # read one message, then sit until told: the test watches the server stop reading
        first = await receive()
        await asyncio.sleep(float(query.get("wait", "2")))
        chunks = [first.get("body", b"")] + (
            await read_body(receive) if first.get("more_body") else [])
        return await respond(send, body=b"%d" % sum(map(len, chunks)))
    if path == "/gated-body":
        # take the first message, then stop receiving until /open-gate: the server must
        # stop reading the socket meanwhile
        first = await receive()
        print("app: gated", flush=True)
        await gate(query["gate"]).wait()
        chunks = [first.get("body", b"")] + (
            await read_body(receive) if first.get("more_body") else [])
        return await respond(send, body=b"%d" % sum(map(len, chunks)))
    if path == "/gate-then-body":
        # asks for nothing (so no 100 Continue goes out) until /open-gate
        print("app: waiting before the body", flush=True)
        await gate(query["gate"]).wait()
        return await respond(send, body=b"".join(await read_body(receive)))
    if path == "/open-gate":
        gate(query["gate"]).set()
        return await respond(send, body=b"open")
    if path == "/firehose":
        total = int(query["total"])
        name = query["name"]
        progress[name] = 0
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % total)]})
        block = b"f" * 65536
        while progress[name] < total:
            progress[name] += len(block)
            await send({"type": "http.response.body", "body": block,
                        "more_body": progress[name] < total})
        return
    if path == "/ws-disconnects":
        return await respond(send, body=json.dumps(ws_disconnects).encode())
    if path == "/progress":
        return await respond(send, body=b"%d" % progress.get(query["name"], -1))
    if path == "/no-read":
        return await respond(send, body=b"not reading your body")
    if path == "/raise":
        raise ValueError("boom before start")
    if path == "/raise-after-start":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom after start")
    if path == "/no-response":
        return
    if path == "/half-response":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
        return
    if path == "/bad-status":
        await send({"type": "http.response.start", "status": "200", "headers": []})
        return
    if path == "/bad-header":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [("content-type", "text/plain")]})
        return
    if path == "/header-injection":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-a", b"1\r\nSet-Cookie: evil=1")]})
        return
    if path == "/unknown-type":
        await send({"type": "http.response.nonsense"})
        return
    if path == "/body-first":
        await send({"type": "http.response.body", "body": b"x"})
        return
    if path == "/block":
        # blocks the event loop itself (a stuck worker, for the watchdog test)
        time.sleep(float(query.get("seconds", "1")))
        return await respond(send, body=b"unblocked")
    if path == "/sleep":
        print("app: sleeping", flush=True)
        await asyncio.sleep(float(query.get("seconds", "1")))
        return await respond(send, body=b"slept")
    if path == "/hang":
        print("app: hanging", flush=True)
        try:
            await asyncio.sleep(3600)
        finally:
            disconnects.append(path)
    if path == "/wait-disconnect":
        message = await receive()
        while message["type"] != "http.disconnect":
            message = await receive()
        disconnects.append(path)
        return
    if path == "/disconnects":
        return await respond(send, body=json.dumps(disconnects).encode())
    if path == "/ignore-disconnect":
        # never returns on its own; only --application-close-timeout ends it
        await read_body(receive)
        await respond(send, body=b"done")
        try:
            await asyncio.sleep(3600)
        finally:
            disconnects.append(path)
    if path == "/threads":
        import threading

        count = int(query.get("n", "3"))
        barrier = threading.Barrier(count, timeout=10)

        def meet():
            barrier.wait()
            return threading.current_thread().name

        loop = asyncio.get_running_loop()
        names = await asyncio.gather(*(loop.run_in_executor(None, meet) for _ in range(count)))
        return await respond(send, body=json.dumps(names).encode())
    if path == "/pid":
        return await respond(send, body=str(os.getpid()).encode())
    if path == "/ws-page":
        return await respond(send, body=WS_PAGE, content_type=b"text/html; charset=utf-8")
    if path == "/headers":
        return await respond(send, body=b"", headers=[
            (b"x-one", b"1"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")])
    if path == "/odd-headers":
        return await respond(send, body=b"odd", headers=[
            (b"X-Mixed-Case", b"  padded\t"), (b"Keep-Alive", b"timeout=5"), (b"x-empty", b"")])
    if path == "/chunked":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"cd", "more_body": False})
        return
    if path == "/status":
        return await respond(send, status=int(query.get("code", "200")))
    if path == "/record":
        # proves which requests reached an application instance, and whether their body
        # arrived whole (read back with /recorded)
        tag = query.get("id", "")
        recorded.append(tag)
        try:
            chunks = await read_body(receive)
        except ConnectionError:
            recorded.append(tag + ":disconnect")
            return
        recorded.append(tag + ":complete")
        return await respond(send, body=b"".join(chunks))
    if path == "/barrier":
        # answers only once n requests wait here at the same time: proof they run at once
        name, needed = query["name"], int(query["n"])
        entry = barriers.setdefault(name, [0, asyncio.Event()])
        entry[0] += 1
        if entry[0] >= needed:
            entry[1].set()
        try:
            await asyncio.wait_for(entry[1].wait(), float(query.get("timeout", "10")))
        except asyncio.TimeoutError:
            return await respond(send, status=504, body=b"only %d arrived" % entry[0])
        return await respond(send, body=b"%d" % entry[0])
    if path == "/spin":
        await read_body(receive)
        await respond(send, body=b"done")
        print("app: spinning", flush=True)
        return await spin(query["name"], receive, "http.disconnect")
    if path == "/flag":
        flags.add(query["name"])
        return await respond(send, body=b"flagged")
    if path == "/spins":
        return await respond(send, body=spins.get(query["name"], "running").encode())
    if path == "/mark":
        # a line in the server's output: once a test sees it, it has seen all before it
        print("mark:", query["text"], flush=True)
        return await respond(send, body=b"marked")
    if path == "/no-content":
        # a body the status forbids: the server must not send it
        return await respond(send, status=204, body=b"must not be sent")
    if path == "/trailers":
        # the http.response.trailers extension, announced by the server in the scope
        assert "http.response.trailers" in scope.get("extensions", {}), scope
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"body", "more_body": True})
        await send({"type": "http.response.body", "body": b"!"})
        await send({"type": "http.response.trailers", "more_trailers": True,
                    "headers": [(b"x-checksum", b"abc")]})
        await send({"type": "http.response.trailers", "headers": [(b"x-count", b"2")]})
        return
    if path == "/two-receivers":
        # a task listens for http.disconnect while the app polls receive() and cancels the
        # poll (Starlette's is_disconnected()): the listener must still hear the disconnect
        await read_body(receive)
        listener = asyncio.ensure_future(receive())
        await asyncio.sleep(0)  # let the listener start waiting
        poll = asyncio.ensure_future(receive())
        await asyncio.sleep(0)
        poll.cancel()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"streaming", "more_body": True})
        message = await listener
        print("mark: listener heard", message["type"], query["id"], flush=True)
        return
    if path == "/trailers-short":
        # trailers announced, and a body shorter than its Content-Length
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"12345"})
        await send({"type": "http.response.trailers", "headers": []})
        return
    if path == "/enum-status":
        from http import HTTPStatus

        return await respond(send, status=HTTPStatus.CREATED, body=b"created")
    if path == "/recorded":
        return await respond(send, body=json.dumps(recorded).encode(),
                             content_type=b"application/json")
    return await respond(send, status=404, body=b"no such test route")
