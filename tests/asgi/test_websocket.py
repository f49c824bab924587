"""The ASGI WebSocket spec over real sockets, with the websockets library, autobahn's client
and a raw client for what real clients will not do; on every transport: plain TCP (under
both parsers for the shared `server`), TLS (wss) and a UNIX socket."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import ssl
import time
import urllib.parse

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import BINDINGS, ServerProcess, client_context, read_to_close, start_variant
from tests.wsclient import answer_close, close_code, frame, handshake_on, read_frame

MIB = 1024 * 1024
# a non-blocking send the socket has no room for: BlockingIOError, or on TLS the want-write
# (repeated with the same bytes, as OpenSSL requires)
NO_ROOM = (BlockingIOError, ssl.SSLWantWriteError)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


@pytest.fixture(scope="module")
def server(transport_server):
    """The shared server runs each test on every conftest.SERVER_VARIANTS entry."""
    return transport_server


def handshake(server: ServerProcess, path: str = "/ws/echo", extra: bytes = b""
              ) -> tuple[socket.socket, bytes]:
    """A raw WebSocket handshake to ``server`` on its binding (wsclient.handshake_on)."""
    return handshake_on(server.connect(), path, extra)


def assert_scope_addresses(scope: dict, server: ServerProcess) -> None:
    """The scope's client and server for ``server``'s binding."""
    if server.binding == "unix":  # no client address; the server is the socket's path
        assert scope["client"] is None
        assert scope["server"] == [server.unix_path, None]
    else:
        assert scope["client"][0] == "127.0.0.1" and isinstance(scope["client"][1], int)
        assert scope["server"] == ["127.0.0.1", server.port]


def test_echo_text_and_binary_with_subprotocol_and_headers(server):
    async def scenario():
        async with server.ws_connect_async("/ws/echo", subprotocols=["chat", "other"]) as ws:
            assert ws.subprotocol == "chat"
            assert ws.response.headers["x-accepted"] == "yes"
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\xff")
            assert await ws.recv() == b"\x00\xff"
    run(scenario())


@pytest.mark.parametrize("binding", BINDINGS)
def test_scope_is_complete(start_server, binding):
    server = start_server("--root-path", "/mnt", binding=binding)

    async def scenario():
        async with server.ws_connect_async("/ws/scope?a=1", subprotocols=["p1", "p2"],
                                           additional_headers={"X-Thing": "1"}) as ws:
            return json.loads(await ws.recv())
    scope = run(scenario())
    assert scope["type"] == "websocket"
    assert scope["scheme"] == server.ws_scheme  # "wss" on TLS
    assert scope["http_version"] == "1.1"
    assert scope["path"] == "/ws/scope" and scope["raw_path"] == "/ws/scope"
    assert scope["query_string"] == "a=1"
    assert scope["root_path"] == "/mnt"
    assert scope["subprotocols"] == ["p1", "p2"]
    assert ["x-thing", "1"] in scope["headers"]
    assert_scope_addresses(scope, server)
    assert "websocket.http.response" in scope["extensions"]
    assert scope["state"] == {"started": "yes"}


def test_close_before_accept_is_403(server):
    with pytest.raises(InvalidStatus) as info:
        run(server.ws_connect_async("/ws/deny").__aenter__())
    assert info.value.response.status_code == 403


def test_exception_before_accept_is_500(server):
    with pytest.raises(InvalidStatus) as info:
        run(server.ws_connect_async("/ws/raise").__aenter__())
    assert info.value.response.status_code == 500
    server.wait_for("websocket app broke before accepting")


def test_denial_response_extension(server):
    with pytest.raises(InvalidStatus) as info:
        run(server.ws_connect_async("/ws/deny-custom").__aenter__())
    response = info.value.response
    assert response.status_code == 418
    assert response.headers["x-why"] == "teapot"
    assert response.body == b"I am a teapot"


@pytest.mark.parametrize("code", [100, 101, 103, 600])
def test_denial_without_a_final_status_is_an_app_error(server, code):
    """A 1xx is no answer to a handshake (the client would wait, or read what follows as
    the handshake's): the application's message is refused and the client gets a 500."""
    with pytest.raises(InvalidStatus) as info:
        run(server.ws_connect_async(f"/ws/deny-status?code={code}").__aenter__())
    assert info.value.response.status_code == 500
    server.wait_for(rf"must be a final HTTP status \(200-599\), got {code}")


def test_app_close_code_and_reason_reach_the_client(server):
    async def scenario():
        async with server.ws_connect_async("/ws/echo") as ws:
            await ws.send("close")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd
    rcvd = run(scenario())
    assert rcvd.code == 4000 and rcvd.reason == "bye"


def close_asked_of_the_app(server, code: int):
    """The close frame that comes back when the echo app is asked to close with ``code``."""
    async def scenario():
        async with server.ws_connect_async("/ws/echo") as ws:
            await ws.send(f"close {code}")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd
    return run(scenario())


@pytest.mark.parametrize("code", [1001, 1003, 1008, 1011, 1014, 3000, 4999])
def test_app_may_close_with_any_code_an_endpoint_may_send(server, code):
    assert close_asked_of_the_app(server, code).code == code


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2000, 5000])
def test_app_close_with_a_reserved_code_is_an_application_error(server, code):
    assert close_asked_of_the_app(server, code).code == 1011
    server.wait_for(rf"'code' must be 1000-1003, 1007-1014 or 3000-4999 .*got {code}")


@pytest.mark.parametrize("code", [4123, 1014])  # 1014: Bad Gateway, which autobahn refuses
def test_client_close_code_and_reason_reach_the_app(server, code):
    async def scenario():
        async with server.ws_connect_async("/ws/sink") as ws:
            await ws.close(code=code, reason="leaving now")
            return ws.protocol.close_rcvd
    reply = run(scenario())
    assert reply is not None and reply.code in (code, 1000)  # a clean close, not 1002
    for _ in range(200):
        seen = server.http.get("/ws-disconnects").json()
        if ["/ws/sink", code, "leaving now"] in seen:
            break
    assert ["/ws/sink", code, "leaving now"] in seen


@pytest.mark.parametrize("path,code", [
    ("/ws/raise-after-accept", 1011), ("/ws/return", 1000), ("/ws/close-after-accept", 4001),
])
def test_how_the_app_ends_decides_the_close_code(server, path, code):
    async def scenario():
        async with server.ws_connect_async(path) as ws:
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await ws.recv()
            return info.value.rcvd.code
    assert run(scenario()) == code


def test_autobahn_client_echo(server):
    from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol

    async def scenario():
        loop = asyncio.get_running_loop()
        received = loop.create_future()

        class Client(WebSocketClientProtocol):
            def onOpen(self):
                self.sendMessage(b"from autobahn", isBinary=True)

            def onMessage(self, payload, isBinary):
                received.set_result((payload, isBinary))
                self.sendClose(1000)

        factory = WebSocketClientFactory(server.ws_uri("/ws/echo"))
        factory.protocol = Client
        if server.binding == "unix":
            transport, _ = await loop.create_unix_connection(factory, server.unix_path)
        elif server.binding == "tls":
            transport, _ = await loop.create_connection(
                factory, server.host, server.port, ssl=client_context(),
                server_hostname="localhost")
        else:
            transport, _ = await loop.create_connection(factory, server.host, server.port)
        try:
            return await received
        finally:
            transport.close()
    assert run(scenario()) == (b"from autobahn", True)


# -- handshake validation (our parser decides, autobahn never sees a bad one)


@pytest.mark.parametrize("request_bytes,status", [
    (b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n", 426),
    (b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Version: 13\r\n\r\n", 400),
    (b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
    (b"POST /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
    (b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
     b"X-Bad: a\x85b\r\n\r\n", 400),
])
def test_bad_handshakes_are_refused(server, request_bytes, status):
    data = server.raw_request(request_bytes)  # fails unless the server ends the connection
    assert data.startswith(b"HTTP/1.1 %d" % status), data
    if status == 426:
        assert b"sec-websocket-version: 13" in data.lower()


# -- limits


@pytest.mark.parametrize("binding", BINDINGS)
def test_oversized_message_is_closed_with_1009(start_server, binding):
    server = start_server("--websocket-max-message-size", "1000", binding=binding)

    async def scenario():
        async with server.ws_connect_async("/ws/echo", compression=None) as ws:
            await ws.send(b"a" * 500)
            assert len(await ws.recv()) == 500
            await ws.send(b"a" * 1001)
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd.code
    assert run(scenario()) == 1009


@pytest.mark.parametrize("binding", BINDINGS)
def test_oversized_frame_is_closed_with_1009(start_server, binding):
    server = start_server("--websocket-max-frame-size", "1000", binding=binding)
    sock, head = handshake(server)
    assert head.startswith(b"HTTP/1.1 101")
    with sock:
        sock.sendall(frame(0x2, b"b" * 2000))
        answer_close(sock, 1009)


@pytest.mark.parametrize("binding", BINDINGS)
def test_compression_bomb_is_held_to_the_message_limit(start_server, binding):
    server = start_server("--websocket-max-message-size", str(MIB), binding=binding)

    async def scenario():
        async with server.ws_connect_async("/ws/sink") as ws:
            assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
            await ws.send(b"\x00" * (8 * MIB))  # compresses to a few KiB on the wire
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd.code
    assert run(scenario()) == 1009


@pytest.mark.parametrize("binding", BINDINGS)
def test_compression_can_be_turned_off(start_server, binding):
    server = start_server("--websocket-compression", "off", binding=binding)

    async def scenario():
        async with server.ws_connect_async("/ws/echo") as ws:
            await ws.send("x")
            await ws.recv()
            return ws.response.headers.get("sec-websocket-extensions")
    assert run(scenario()) is None


# -- keepalive and timeouts


@pytest.mark.parametrize("binding", BINDINGS)
def test_peer_that_never_answers_pings_is_closed(start_server, binding):
    # autobahn's timers run in 0.2 s buckets: keep the values well above that
    server = start_server("--ping-interval", "0.4", "--ping-timeout", "0.8",
                          binding=binding)
    sock, head = handshake(server, "/ws/sink?silent=1")
    assert head.startswith(b"HTTP/1.1 101")
    opcodes = []
    with pytest.raises((ConnectionError, ssl.SSLError)):  # the end: EOF, reset, TLS alert
        while True:  # read what the server sends, answering nothing
            opcodes.append(read_frame(sock)[0])
    sock.close()
    # the server dropped it (1006: no close handshake), after pinging; a ping may be lost
    # to the reset when this reader is slower than the server
    assert set(opcodes) <= {0x9, 0x8}
    for _ in range(200):
        seen = server.http.get("/ws-disconnects").json()
        if seen:
            break
    [(path, code, reason)] = seen
    assert (path, code) == ("/ws/sink", 1006)
    assert "ping timeout" in reason

    # a client that answers pings (websockets does) stays connected past that time
    async def scenario():
        async with server.ws_connect_async("/ws/echo") as ws:
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                await ws.send("still here")
                assert await ws.recv() == "still here"
                await asyncio.sleep(0.1)
    run(scenario())


@pytest.mark.parametrize("binding", BINDINGS)
def test_ping_timeout_0_pings_but_never_drops_a_silent_peer(start_server, binding):
    """As in Daphne (autobahn's autoPingTimeout): 0 means pings go out, unanswered ones
    are no reason to close."""
    server = start_server("--ping-interval", "0.2", "--ping-timeout", "0", binding=binding)
    sock, head = handshake(server, "/ws/echo")
    assert head.startswith(b"HTTP/1.1 101")
    sock.settimeout(5)
    # three pings unanswered: well past any timeout a 0 could be taken for
    assert [read_frame(sock)[0] for _ in range(3)] == [0x9, 0x9, 0x9]
    sock.sendall(frame(0x1, b"still here"))
    opcode, payload = read_frame(sock)
    while opcode == 0x9:
        opcode, payload = read_frame(sock)
    assert (opcode, payload) == (0x1, b"still here")
    sock.close()


@pytest.mark.parametrize("binding", BINDINGS)
def test_ping_interval_0_sends_no_pings(start_server, binding):
    """As in Daphne: 0 turns the keepalive off. A ping timeout this short would drop the
    silent peer at once if a ping went out."""
    server = start_server("--ping-interval", "0", "--ping-timeout", "0.2", binding=binding)
    sock, head = handshake(server, "/ws/echo")
    assert head.startswith(b"HTTP/1.1 101")
    sock.settimeout(1.0)  # five ping timeouts
    with pytest.raises(TimeoutError):
        read_frame(sock)
    sock.settimeout(5)
    sock.sendall(frame(0x1, b"no pings"))
    assert read_frame(sock) == (0x1, b"no pings")
    sock.close()


@pytest.mark.parametrize("binding", BINDINGS)
def test_connection_lifetime_limit(start_server, binding):
    server = start_server("--websocket_timeout", "0.3", binding=binding)

    async def scenario():
        async with server.ws_connect_async("/ws/sink") as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd.code
    assert run(scenario()) == 1001

    # on a raw socket (the websockets client closes a TLS connection itself): the server's
    # close, then, once answered, the end of the connection
    sock, head = handshake(server, "/ws/sink")
    with sock:
        assert head.startswith(b"HTTP/1.1 101")
        answer_close(sock, 1001)


@pytest.mark.parametrize("binding", BINDINGS)
def test_connect_timeout_drops_an_app_that_never_accepts(start_server, binding):
    server = start_server("--websocket_connect_timeout", "0.3", binding=binding)
    sock, head = handshake(server, "/ws/never-accept")
    with sock:
        assert not head.startswith(b"HTTP/1.1 101")
        server.wait_for("did not accept within 0.3s")
        _, ended = read_to_close(sock, 5)
    assert ended, "the server kept the connection open"


# -- backpressure


def test_server_stops_reading_while_the_app_does_not_receive(server):
    sock, head = handshake(server, "/ws/gated?gate=w1")
    assert head.startswith(b"HTTP/1.1 101")
    server.wait_for("app: ws gated")
    message = frame(0x2, b"m" * 65536)
    sock.setblocking(False)
    sent = 0
    stalled_since = None
    while sent < 64 * MIB:
        try:
            # frames are sent back to back; a partial send resumes mid-frame
            offset = sent % len(message)
            sent += sock.send(message[offset:])
            stalled_since = None
        except NO_ROOM:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 0.5:
                break
    assert sent < 24 * MIB, f"server kept reading: {sent} bytes accepted"
    sock.close()


def test_app_send_waits_while_the_client_does_not_read(server):
    sock, head = handshake(server, "/ws/firehose?name=wf&total=%d" % (64 * MIB))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    assert head.startswith(b"HTTP/1.1 101")
    deadline = time.monotonic() + 1.0
    highest = 0
    while time.monotonic() < deadline:
        highest = int(server.http.get("/progress?name=wf").text)
        assert highest < 24 * MIB, f"the app was let send {highest} unread bytes"
    assert highest > 0
    sock.close()


# -- the rest of the server around it


@pytest.mark.parametrize("binding", BINDINGS)
def test_proxy_headers_apply_to_websockets(start_server, binding):
    server = start_server("--proxy-headers", binding=binding)

    async def scenario():
        async with server.ws_connect_async(
            "/ws/scope",
            additional_headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
        ) as ws:
            return json.loads(await ws.recv())
    scope = run(scenario())
    assert scope["client"][0] == "203.0.113.9"
    assert scope["scheme"] == "wss"


@pytest.mark.parametrize("binding", BINDINGS)
def test_graceful_shutdown_closes_websockets_with_1001(start_server, binding):
    server = start_server(binding=binding)

    async def scenario():
        async with server.ws_connect_async("/ws/sink") as ws:
            await ws.send("hi")
            server.signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd.code
    assert run(scenario()) == 1001
    assert server.wait_exit() == 0


@pytest.mark.parametrize("binding", BINDINGS)
def test_access_log_records_websocket_events(start_server, binding):
    server = start_server(binding=binding)

    async def scenario():
        async with server.ws_connect_async("/ws/echo") as ws:
            await ws.send("x")
            await ws.recv()
        with pytest.raises(InvalidStatus):
            await server.ws_connect_async("/ws/deny").__aenter__()
    run(scenario())
    # the client as the access log names it: host:port, or "-" on a UNIX socket
    client = "^- " if binding == "unix" else r"^127\.0\.0\.1:\d+ "
    server.wait_for(client + r'- - \[.*\] "WSHANDSHAKING /ws/echo"')
    server.wait_for(client + r'- - \[.*\] "WSCONNECT /ws/echo"')
    server.wait_for(client + r'- - \[.*\] "WSDISCONNECT /ws/echo"')
    server.wait_for(client + r'- - \[.*\] "WSREJECT /ws/deny"')


# -- what Channels, Starlette and FastAPI applications send (tests/ws_interop_apps.py)


@pytest.fixture(scope="module", params=BINDINGS)
def interop(request):
    """tests.ws_interop_apps on each binding (TCP under the default parser)."""
    proc = start_variant(request.param, app="tests.ws_interop_apps:app")
    try:
        yield proc
    finally:
        proc.stop()


def heard(server, name, count):
    """What /wsi/... with ?id=name recorded, once it holds ``count`` entries."""
    for _ in range(500):
        seen = server.http.get("/wsi-heard", params={"id": name}).json()
        if len(seen) >= count:
            return seen
    return seen


def response_head_lines(head: bytes) -> list[bytes]:
    return head.split(b"\r\n")[1:-2]


def test_accept_headers_go_out_byte_for_byte_and_in_order(interop):
    """websocket.accept's headers are bytes: a UTF-8 or Latin-1 value is sent as given (it
    was decoded as Latin-1 and re-encoded as UTF-8), and the application's order holds,
    repeated names included (ASGI: "order must be preserved")."""
    sock, head = handshake(
        interop,
        "/wsi/hdrs?h=x-a:1,set-cookie:a%3D1,x-b:2,set-cookie:b%3D2,x-utf:%C3%A9,x-latin:%E9",
    )
    sock.close()
    assert head.startswith(b"HTTP/1.1 101 ")
    sent = [line for line in response_head_lines(head)
            if line.split(b":")[0] in (b"x-a", b"set-cookie", b"x-b", b"x-utf", b"x-latin")]
    assert sent == [b"x-a: 1", b"set-cookie: a=1", b"x-b: 2", b"set-cookie: b=2",
                    b"x-utf: \xc3\xa9", b"x-latin: \xe9"]


@pytest.mark.parametrize("name", [
    "sec-websocket-extensions", "sec-websocket-protocol", "sec-websocket-accept", "upgrade",
    "connection", "content-length",
])
def test_accept_headers_the_handshake_owns_are_dropped(interop, name):
    """A header the opening handshake itself decides, given in websocket.accept (a Channels
    consumer adding Sec-WebSocket-Extensions by hand, daphne#326; a subprotocol given as a
    header instead of 'subprotocol'), would repeat or contradict the server's own and make
    the client fail the connection: it is dropped, with a warning that names it."""
    async def scenario():
        # the client offers no extension and no subprotocol: any such answer fails it
        async with interop.ws_connect_async(f"/wsi/hdrs?h={name}:x,x-kept:1",
                                            compression=None) as ws:
            scope = json.loads(await ws.recv())
            return ws.response.headers, scope
    headers, scope = run(scenario())
    assert headers["x-kept"] == "1"
    assert "x" not in headers.get_all(name)
    interop.wait_for(rf"websocket.accept: dropped the {name} header")


def test_underscore_headers_and_daphne_root_path_as_in_daphne(interop):
    """As for HTTP requests, and as Daphne does for WebSockets: a header name with an
    underscore does not reach the application (X_Forwarded_For passing for X-Forwarded-For,
    CVE-2015-0219), and Daphne-Root-Path sets the scope's root_path and is not passed on."""
    async def scenario():
        async with interop.ws_connect_async(
            "/wsi/scope",
            additional_headers={"X_Forwarded_For": "203.0.113.9", "X-Kept": "1",
                                "Daphne-Root-Path": "/mnt%20x"},
        ) as ws:
            return json.loads(await ws.recv())
    scope = run(scenario())
    names = [name for name, _ in scope["headers"]]
    assert "x-kept" in names
    assert "x_forwarded_for" not in names and "daphne-root-path" not in names
    assert scope["root_path"] == "/mnt x"


def test_daphne_root_path_that_is_not_utf8_refuses_the_handshake(interop):
    sock, head = handshake(interop, "/wsi/scope", extra=b"Daphne-Root-Path: /%ff\r\n")
    sock.close()
    assert head.startswith(b"HTTP/1.1 400 "), head


@pytest.mark.parametrize("binding", BINDINGS)
def test_proxy_header_with_an_underscore_still_counts_for_websockets(start_server, binding):
    server = start_server("--proxy-headers", "--proxy-headers-host", "X_Real_IP",
                          app="tests.ws_interop_apps:app", binding=binding)

    async def scenario():
        async with server.ws_connect_async("/wsi/scope",
                                           additional_headers={"X_Real_IP": "203.0.113.7"}
                                           ) as ws:
            return json.loads(await ws.recv())
    scope = run(scenario())
    assert scope["client"][0] == "203.0.113.7"
    assert "x_real_ip" not in [name for name, _ in scope["headers"]]


def test_close_with_code_none_closes_with_1000(interop):
    """websocket.close with "code": None (as Daphne takes it, and as code written for it
    sends) is a normal close, not an application error."""
    message = json.dumps({"type": "websocket.close", "code": None})
    sock, head = handshake(interop, "/wsi/bad-send?id=code-none&m="
                           + urllib.parse.quote(message))
    assert head.startswith(b"HTTP/1.1 101")
    opcode, payload = read_frame(sock)
    sock.close()
    assert opcode == 0x8 and close_code(payload) == 1000
    assert heard(interop, "code-none", 2) == ["websocket.connect", "sent"]


@pytest.mark.parametrize("binding", BINDINGS)
def test_compressed_message_of_exactly_the_limit_in_fragments(start_server, binding):
    """A compressed message exactly as large as the limit, sent in fragments, the last
    one empty (as the websockets library ends a fragmented message): autobahn counted that
    frame's compressed byte on top of the full message and refused it with 1009."""
    server = start_server("--websocket-max-message-size", str(MIB), binding=binding)

    async def scenario():
        async with server.ws_connect_async("/ws/echo", max_size=None) as ws:
            assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
            await ws.send([b"b" * (MIB // 4)] * 4)
            assert len(await ws.recv()) == MIB
            await ws.send([b"b" * (MIB // 4)] * 4 + [b"c"])
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd.code
    assert run(scenario()) == 1009


@pytest.mark.parametrize("compression", ["deflate", None])
def test_the_message_limit_is_on_what_clients_send_not_on_the_application(interop,
                                                                          compression):
    """--websocket-max-message-size bounds what the server takes in; autobahn also held the
    application's own messages to it (their compressed size, even), and a Channels consumer
    sending a 2 MiB JSON update failed with 1011, where Daphne and Uvicorn send it."""
    async def scenario():
        async with interop.ws_connect_async(f"/wsi/big?n={2 * MIB}", max_size=None,
                                            compression=compression) as ws:
            return len(await ws.recv()), len(await ws.recv())
    assert run(scenario()) == (2 * MIB, 2 * MIB)


def test_incompressible_message_within_the_limit_passes_compressed(interop):
    """A message that does not compress is a little larger on the wire than the limit it
    keeps to (deflate's stored blocks): it is the inflated size that counts, for the
    message and for its frame; one byte more is still refused."""
    import os

    async def scenario():
        async with interop.ws_connect_async("/wsi/big?n=0", max_size=None) as ws:
            assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
            await ws.recv(), await ws.recv()
            sizes = []
            for size in (MIB - 2000, MIB):
                await ws.send(os.urandom(size))
                sizes.append(int(await ws.recv()))
            await ws.send([os.urandom(MIB // 4) for _ in range(4)])  # in fragments
            sizes.append(int(await ws.recv()))
            await ws.send(os.urandom(MIB + 1))
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return sizes, info.value.rcvd.code
    assert run(scenario()) == ([MIB - 2000, MIB, MIB], 1009)
