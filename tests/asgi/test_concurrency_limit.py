"""--limit-concurrency over real sockets (TCP, TLS, a UNIX socket): up to the limit every
application call is served; past it an HTTP/1.1 request, an HTTP/2 stream and a WebSocket
handshake get the server's own 503 with Retry-After, the application never called; once the
calls in flight return, new ones are served again.

The application (tests/limit_apps.py) reports each held call over a UNIX socket and waits
there for the test to release it, so the test knows what is in flight without sleeping.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile

import pytest

from tests.conftest import BINDINGS, read_response, read_to_close
from tests.h2client import H2Client
from tests.wsclient import close_code, frame, handshake_on, read_frame

LIMIT = 2
BUSY_BODY = (b"503 Service Unavailable: the server is at its concurrency limit; "
             b"try again shortly\n")


class Control:
    """The test's end of the application's LIMIT_CONTROL socket."""

    def __init__(self) -> None:
        directory = tempfile.mkdtemp(prefix="dd-limit-")
        atexit.register(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "control.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(16)
        self.listener.settimeout(15)
        self.held: list[socket.socket] = []

    def wait_held(self, count: int) -> None:
        """Block until ``count`` more calls are in the application, holding."""
        for _ in range(count):
            conn, _ = self.listener.accept()
            conn.settimeout(15)
            assert conn.makefile("rb").readline() == b"held\n"
            self.held.append(conn)

    def release(self) -> None:
        """Let every held call answer and return."""
        for conn in self.held:
            conn.sendall(b"!")
            conn.close()
        self.held = []

    def close(self) -> None:
        self.release()
        self.listener.close()


@pytest.fixture
def control():
    control = Control()
    yield control
    control.close()


@pytest.fixture(params=BINDINGS)
def limited(request, start_server, control):
    """A server with --limit-concurrency 2 on each binding."""
    return start_server("--limit-concurrency", str(LIMIT), app="tests.limit_apps:app",
                        env={"LIMIT_CONTROL": control.path}, binding=request.param)


def send_get(sock: socket.socket, path: str, extra: bytes = b"") -> None:
    sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n" + extra
                 + b"\r\n")


def hold_http(server, control, count: int) -> list[socket.socket]:
    """``count`` HTTP/1.1 requests to /hold, each on its own connection, in the app."""
    socks = []
    for _ in range(count):
        sock = server.connect(timeout=15)
        send_get(sock, "/hold")
        socks.append(sock)
    control.wait_held(count)
    return socks


def assert_busy(status: int, headers: dict, body: bytes) -> None:
    assert status == 503
    assert headers["retry-after"] == "1"
    assert body == BUSY_BODY


def h2_client(server) -> H2Client:
    """An HTTP/2 connection: ALPN h2 over TLS, prior knowledge over TCP and UNIX."""
    alpn = ("h2",) if server.binding == "tls" else ("http/1.1",)
    return H2Client(0, sock=server.connect(timeout=15, alpn=alpn), timeout=15)


def h2_scheme(server) -> str:
    return "https" if server.binding == "tls" else "http"


def test_http1_past_the_limit_is_503_and_keep_alive_survives(limited, control):
    held = hold_http(limited, control, LIMIT)
    with limited.connect(timeout=15) as sock:
        buffer = bytearray()
        # past the limit: the server's 503, and the connection stays usable
        for _ in range(2):
            send_get(sock, "/hello")
            status, headers, body = read_response(sock, buffer)
            assert_busy(status, headers, body)
            assert "close" not in headers.get("connection", "")
        control.release()
        for held_sock in held:
            status, _, body = read_response(held_sock, bytearray())
            assert (status, body) == (200, b"served /hold")
            held_sock.close()
        # the held calls returned: the same connection is served again
        send_get(sock, "/hello")
        status, _, body = read_response(sock, buffer)
        assert (status, body) == (200, b"served /hello")
    limited.wait_for(r"WARNING .*the concurrency limit")  # the warning while refusing


def test_http1_refused_with_a_body_on_its_way_closes_the_connection(limited, control):
    """A request whose body has not arrived is answered at once; its connection closes,
    as the client may still be sending what nobody reads."""
    held = hold_http(limited, control, LIMIT)
    with limited.connect(timeout=15) as sock:
        send_get(sock, "/hello", b"Content-Length: 5\r\n")
        buffer = bytearray()
        status, headers, body = read_response(sock, buffer)
        assert_busy(status, headers, body)
        assert headers["connection"] == "close"
        assert read_to_close(sock, 15) == (b"", True)
    control.release()
    for held_sock in held:
        assert read_response(held_sock, bytearray())[0] == 200
        held_sock.close()


def test_http2_stream_past_the_limit_is_503(limited, control):
    scheme = h2_scheme(limited)
    with h2_client(limited) as client:
        streams = [client.request("/hold", scheme=scheme) for _ in range(LIMIT)]
        control.wait_held(LIMIT)
        refused = client.request("/hello", scheme=scheme)
        response = client.response(refused)
        assert response.status == 503
        assert response.header(b"retry-after") == b"1"
        assert bytes(response.body) == BUSY_BODY
        control.release()
        for stream_id in streams:
            response = client.response(stream_id)
            assert (response.status, bytes(response.body)) == (200, b"served /hold")
        # the same connection, a new stream: served
        response = client.response(client.request("/hello", scheme=scheme))
        assert (response.status, bytes(response.body)) == (200, b"served /hello")


def test_http1_and_http2_calls_count_together(limited, control):
    held = hold_http(limited, control, 1)
    scheme = h2_scheme(limited)
    with h2_client(limited) as client:
        client.request("/hold", scheme=scheme)
        control.wait_held(1)
        assert client.response(client.request("/hello", scheme=scheme)).status == 503
        with limited.connect(timeout=15) as sock:
            send_get(sock, "/hello")
            assert read_response(sock, bytearray())[0] == 503
        control.release()
    assert read_response(held[0], bytearray())[0] == 200
    held[0].close()


def ws_open(server, path: str) -> tuple[socket.socket, bytes]:
    return handshake_on(server.connect(timeout=15), path)


def test_websocket_handshake_past_the_limit_is_503(limited, control):
    """Open WebSockets count until their application returns; a handshake past the limit
    is refused with the server's 503, whether the others are WebSockets or requests."""
    sockets = []
    for _ in range(LIMIT - 1):
        sock, head = ws_open(limited, "/ws/hold")
        assert head.startswith(b"HTTP/1.1 101 "), head
        sockets.append(sock)
    control.wait_held(LIMIT - 1)
    held = hold_http(limited, control, 1)  # and one request: the limit is reached
    sock, head = ws_open(limited, "/ws/served")
    with sock:
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0] == "HTTP/1.1 503 Service Unavailable"
        assert "Retry-After: 1" in lines
        length = int(next(line for line in lines if line.startswith("Content-Length:"))
                     .split(":")[1])
        body = b""
        while len(body) < length:
            body += sock.recv(length - len(body))
        assert body == BUSY_BODY
    control.release()
    for ws in sockets:
        opcode, payload = read_frame(ws)
        assert (opcode, close_code(payload)) == (8, 1000)
        ws.close()
    assert read_response(held[0], bytearray())[0] == 200
    held[0].close()
    # both returned: a WebSocket is accepted again
    sock, head = ws_open(limited, "/ws/served")
    with sock:
        assert head.startswith(b"HTTP/1.1 101 "), head
        opcode, payload = read_frame(sock)
        assert (opcode, payload) == (1, b"served /ws/served")
        sock.sendall(frame(8, b"\x03\xe8"))


def test_http2_websocket_past_the_limit_is_503(limited, control):
    """RFC 8441: an extended CONNECT past the limit gets :status 503 on its stream."""
    scheme = h2_scheme(limited)

    def connect(client: H2Client, path: str) -> int:
        return client.send_headers(
            [(b":method", b"CONNECT"), (b":protocol", b"websocket"),
             (b":scheme", scheme.encode()), (b":authority", b"localhost"),
             (b":path", path.encode()), (b"sec-websocket-version", b"13")],
            end_stream=False)

    with h2_client(limited) as client:
        client.wait(lambda: client.server_settings, what="the server's SETTINGS")
        tunnels = [connect(client, "/ws/hold") for _ in range(LIMIT)]
        control.wait_held(LIMIT)
        refused = connect(client, "/ws/served")
        response = client.response(refused)
        assert response.status == 503
        assert response.header(b"retry-after") == b"1"
        assert bytes(response.body) == BUSY_BODY
        for stream_id in tunnels:
            client.wait(lambda sid=stream_id: client.responses[sid].headers, what="a 200")
            assert client.responses[stream_id].status == 200
        control.release()
        for stream_id in tunnels:  # each application closed its WebSocket and returned
            client.wait(lambda sid=stream_id: b"\x88\x02\x03\xe8" in client.responses[sid].body,
                        what="the close frame")
        accepted = connect(client, "/ws/served")
        client.wait(lambda: client.responses[accepted].headers, what="an answer")
        assert client.responses[accepted].status == 200
