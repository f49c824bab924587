"""The ASGI WebSocket spec over real sockets, with the websockets library, autobahn's client
and a raw client for what real clients will not do."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.wsclient import close_code, frame, handshake, read_frame

MIB = 1024 * 1024


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def ws_url(server, path):
    return f"ws://127.0.0.1:{server.port}{path}"


def test_echo_text_and_binary_with_subprotocol_and_headers(server):
    async def scenario():
        async with websockets.connect(ws_url(server, "/ws/echo"),
                                      subprotocols=["chat", "other"]) as ws:
            assert ws.subprotocol == "chat"
            assert ws.response.headers["x-accepted"] == "yes"
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\xff")
            assert await ws.recv() == b"\x00\xff"
    run(scenario())


def test_scope_is_complete(start_server):
    server = start_server("--root-path", "/mnt")

    async def scenario():
        async with websockets.connect(ws_url(server, "/ws/scope?a=1"),
                                      subprotocols=["p1", "p2"],
                                      additional_headers={"X-Thing": "1"}) as ws:
            return json.loads(await ws.recv())
    scope = run(scenario())
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["http_version"] == "1.1"
    assert scope["path"] == "/ws/scope" and scope["raw_path"] == "/ws/scope"
    assert scope["query_string"] == "a=1"
    assert scope["root_path"] == "/mnt"
    assert scope["subprotocols"] == ["p1", "p2"]
    assert ["x-thing", "1"] in scope["headers"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ["127.0.0.1", server.port]
    assert "websocket.http.response" in scope["extensions"]
    assert scope["state"] == {"started": "yes"}


def test_close_before_accept_is_403(server):
    with pytest.raises(InvalidStatus) as info:
        run(websockets.connect(ws_url(server, "/ws/deny")).__aenter__())
    assert info.value.response.status_code == 403


def test_exception_before_accept_is_500(server):
    with pytest.raises(InvalidStatus) as info:
        run(websockets.connect(ws_url(server, "/ws/raise")).__aenter__())
    assert info.value.response.status_code == 500
    server.wait_for("websocket app broke before accepting")


def test_denial_response_extension(server):
    with pytest.raises(InvalidStatus) as info:
        run(websockets.connect(ws_url(server, "/ws/deny-custom")).__aenter__())
    response = info.value.response
    assert response.status_code == 418
    assert response.headers["x-why"] == "teapot"
    assert response.body == b"I am a teapot"


@pytest.mark.parametrize("code", [100, 101, 103, 600])
def test_denial_without_a_final_status_is_an_app_error(server, code):
    """A 1xx is no answer to a handshake (the client would wait, or read what follows as
    the handshake's): the application's message is refused and the client gets a 500."""
    with pytest.raises(InvalidStatus) as info:
        run(websockets.connect(ws_url(server, f"/ws/deny-status?code={code}")).__aenter__())
    assert info.value.response.status_code == 500
    server.wait_for(rf"must be a final HTTP status \(200-599\), got {code}")


def test_app_close_code_and_reason_reach_the_client(server):
    async def scenario():
        async with websockets.connect(ws_url(server, "/ws/echo")) as ws:
            await ws.send("close")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd
    rcvd = run(scenario())
    assert rcvd.code == 4000 and rcvd.reason == "bye"


@pytest.mark.parametrize("code", [1001, 1003, 1008, 1011, 1014, 3000, 4999])
def test_app_may_close_with_any_code_an_endpoint_may_send(server, code):
    async def scenario():
        async with websockets.connect(ws_url(server, "/ws/echo")) as ws:
            await ws.send(f"close {code}")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd
    assert run(scenario()).code == code


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2000, 5000])
def test_app_close_with_a_reserved_code_is_an_application_error(server, code):
    async def scenario():
        async with websockets.connect(ws_url(server, "/ws/echo")) as ws:
            await ws.send(f"close {code}")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd
    assert run(scenario()).code == 1011
    server.wait_for(rf"'code' must be 1000-1003, 1007-1014 or 3000-4999 .*got {code}")


@pytest.mark.parametrize("code", [4123, 1014])  # 1014: Bad Gateway, which autobahn refuses
def test_client_close_code_and_reason_reach_the_app(server, code):
    async def scenario():
        async with websockets.connect(ws_url(server, "/ws/sink")) as ws:
            await ws.close(code=code, reason="leaving now")
            return ws.protocol.close_rcvd
    reply = run(scenario())
    assert reply is not None and reply.code in (code, 1000)  # a clean close, not 1002
    for _ in range(200):
        seen = httpx.get(server.url + "/ws-disconnects").json()
        if ["/ws/sink", code, "leaving now"] in seen:
            break
    assert ["/ws/sink", code, "leaving now"] in seen


@pytest.mark.parametrize("path,code", [
    ("/ws/raise-after-accept", 1011), ("/ws/return", 1000), ("/ws/close-after-accept", 4001),
])
def test_how_the_app_ends_decides_the_close_code(server, path, code):
    async def scenario():
        async with websockets.connect(ws_url(server, path)) as ws:
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

        factory = WebSocketClientFactory(ws_url(server, "/ws/echo"))
        factory.protocol = Client
        transport, _ = await loop.create_connection(factory, "127.0.0.1", server.port)
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
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request_bytes)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 %d" % status), data
    if status == 426:
        assert b"sec-websocket-version: 13" in data.lower()


# -- limits


def test_oversized_message_is_closed_with_1009(start_server):
    server = start_server("--websocket-max-message-size", "1000")

    async def scenario():
        async with websockets.connect(ws_url(server, "/ws/echo"), compression=None) as ws:
            await ws.send(b"a" * 500)
            assert len(await ws.recv()) == 500
            await ws.send(b"a" * 1001)
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd.code
    assert run(scenario()) == 1009


def test_oversized_frame_is_closed_with_1009(start_server):
    server = start_server("--websocket-max-frame-size", "1000")
    sock, head = handshake(server.port)
    assert head.startswith(b"HTTP/1.1 101")
    sock.sendall(frame(0x2, b"b" * 2000))
    opcode, payload = read_frame(sock)
    assert opcode == 0x8 and close_code(payload) == 1009
    sock.close()


def test_compression_bomb_is_held_to_the_message_limit(start_server):
    server = start_server("--websocket-max-message-size", str(MIB))

    async def scenario():
        async with websockets.connect(ws_url(server, "/ws/sink")) as ws:
            assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
            await ws.send(b"\x00" * (8 * MIB))  # compresses to a few KiB on the wire
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd.code
    assert run(scenario()) == 1009


def test_compression_can_be_turned_off(start_server):
    server = start_server("--websocket-compression", "off")

    async def scenario():
        async with websockets.connect(ws_url(server, "/ws/echo")) as ws:
            await ws.send("x")
            await ws.recv()
            return ws.response.headers.get("sec-websocket-extensions")
    assert run(scenario()) is None


# -- keepalive and timeouts


def test_peer_that_never_answers_pings_is_closed(start_server):
    # autobahn's timers run in 0.2 s buckets: keep the values well above that
    server = start_server("--ping-interval", "0.4", "--ping-timeout", "0.8")
    sock, head = handshake(server.port, "/ws/sink?silent=1")
    assert head.startswith(b"HTTP/1.1 101")
    opcodes = []
    with pytest.raises(ConnectionError):
        while True:  # read what the server sends, answering nothing
            opcodes.append(read_frame(sock)[0])
    sock.close()
    # the server dropped it (1006: no close handshake), after pinging; a ping may be lost
    # to the reset when this reader is slower than the server
    assert set(opcodes) <= {0x9, 0x8}
    for _ in range(200):
        seen = httpx.get(server.url + "/ws-disconnects").json()
        if seen:
            break
    [(path, code, reason)] = seen
    assert (path, code) == ("/ws/sink", 1006)
    assert "ping timeout" in reason

    # a client that answers pings (websockets does) stays connected past that time
    async def scenario():
        async with websockets.connect(ws_url(server, "/ws/echo")) as ws:
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                await ws.send("still here")
                assert await ws.recv() == "still here"
                await asyncio.sleep(0.1)
    run(scenario())


def test_connection_lifetime_limit(start_server):
    server = start_server("--websocket_timeout", "0.3")

    async def scenario():
        async with websockets.connect(ws_url(server, "/ws/sink")) as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd.code
    assert run(scenario()) == 1001


def test_connect_timeout_drops_an_app_that_never_accepts(start_server):
    server = start_server("--websocket_connect_timeout", "0.3")
    sock, head = handshake(server.port, "/ws/never-accept")
    assert not head.startswith(b"HTTP/1.1 101")
    server.wait_for("did not accept within 0.3s")
    sock.close()


# -- backpressure


def test_server_stops_reading_while_the_app_does_not_receive(server):
    sock, head = handshake(server.port, "/ws/gated?gate=w1")
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
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 0.5:
                break
    assert sent < 24 * MIB, f"server kept reading: {sent} bytes accepted"
    sock.close()


def test_app_send_waits_while_the_client_does_not_read(server):
    sock, head = handshake(server.port, "/ws/firehose?name=wf&total=%d" % (64 * MIB))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    assert head.startswith(b"HTTP/1.1 101")
    deadline = time.monotonic() + 1.0
    highest = 0
    while time.monotonic() < deadline:
        highest = int(httpx.get(server.url + "/progress?name=wf").text)
        assert highest < 24 * MIB, f"the app was let send {highest} unread bytes"
    assert highest > 0
    sock.close()


# -- the rest of the server around it


def test_proxy_headers_apply_to_websockets(start_server):
    server = start_server("--proxy-headers")

    async def scenario():
        async with websockets.connect(
            ws_url(server, "/ws/scope"),
            additional_headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
        ) as ws:
            return json.loads(await ws.recv())
    scope = run(scenario())
    assert scope["client"][0] == "203.0.113.9"
    assert scope["scheme"] == "wss"


def test_graceful_shutdown_closes_websockets_with_1001(start_server):
    server = start_server()

    async def scenario():
        async with websockets.connect(ws_url(server, "/ws/sink")) as ws:
            await ws.send("hi")
            server.signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            return info.value.rcvd.code
    assert run(scenario()) == 1001
    assert server.wait_exit() == 0


def test_access_log_records_websocket_events(start_server):
    server = start_server()

    async def scenario():
        async with websockets.connect(ws_url(server, "/ws/echo")) as ws:
            await ws.send("x")
            await ws.recv()
        with pytest.raises(InvalidStatus):
            await websockets.connect(ws_url(server, "/ws/deny")).__aenter__()
    run(scenario())
    server.wait_for(r'"WSHANDSHAKING /ws/echo"')
    server.wait_for(r'"WSCONNECT /ws/echo"')
    server.wait_for(r'"WSDISCONNECT /ws/echo"')
    server.wait_for(r'"WSREJECT /ws/deny"')
