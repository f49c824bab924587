"""A draining server (SIGTERM; a worker a reload retires gets the same) drops nothing a
client started, on every transport (TCP, TLS, UNIX socket): a connection just accepted, a
TLS handshake under way, a head partly sent, a body in flight are each served to the end of
their response, with ``Connection: close``; only a connection idle between requests closes
at once.  Over HTTP/2 the stop is the two GOAWAYs of RFC 9113 6.8: a request on its way when
the stop began is served too.

Each test waits for the server's "draining" line (logged once every connection has been
told of the stop) before its clients go on."""

from __future__ import annotations

import select
import socket
import ssl

import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame, PingFrame, SettingsFrame

from tests.conftest import (
    BINDINGS,
    ServerProcess,
    client_context,
    read_response,
    read_to_close,
)
from tests.h2client import GoAway, H2Client

DRAINING = r"Stopped accepting; draining \d+ connection"


def open_silent(server: ServerProcess) -> socket.socket:
    """A connection that has sent nothing yet (over TLS: not even its handshake)."""
    if server.binding == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(server.unix_path)
    else:
        sock = socket.create_connection((server.host, server.port))
    sock.settimeout(20)
    return sock


def as_tls(server: ServerProcess, sock: socket.socket, alpn: tuple[str, ...] = ("http/1.1",)
           ) -> socket.socket:
    """``sock`` with its TLS handshake done, on a TLS binding."""
    if server.binding != "tls":
        return sock
    return client_context(alpn).wrap_socket(sock, server_hostname="localhost")


def served_then_closed(sock: socket.socket, buffer: bytearray) -> dict:
    """The one response the connection gets, with Connection: close, then its end."""
    status, headers, body = read_response(sock, buffer)
    assert status == 200 and headers.get("connection") == "close", (status, headers)
    rest, ended = read_to_close(sock, 20)
    assert ended and rest == b"" and not buffer
    return {"headers": headers, "body": body}


@pytest.mark.parametrize("binding", BINDINGS)
def test_only_idle_connections_close_at_once(start_server, binding):
    """Four connections when the stop comes: one accepted that has sent nothing yet, one
    idle after a response, one halfway through its head, one with its body in flight.  The
    idle one is closed at once, while the others wait; each of those is then served."""
    server = start_server("--keep-alive-timeout", "60", binding=binding)
    silent = open_silent(server)
    idle = server.connect(timeout=20)
    # (accepted after ``silent``, from the same queue: ``silent`` is accepted too)
    idle.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, _ = read_response(idle, bytearray())
    assert status == 200 and headers.get("connection") != "close"
    half = server.connect(timeout=20)
    half.sendall(b"GET /echo?half HTTP/1.1\r\nHost: x\r\n")
    body = server.connect(timeout=20)
    body.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")

    server.signal()
    server.wait_for(DRAINING)
    rest, ended = read_to_close(idle, 20)
    assert ended and rest == b""

    silent = as_tls(server, silent)
    silent.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    served_then_closed(silent, bytearray())
    half.sendall(b"User-Agent: late\r\n\r\n")
    answer = served_then_closed(half, bytearray())
    assert b'"query_string": "half"' in answer["body"]
    body.sendall(b"defghij")
    assert b'"body": "abcdefghij"' in served_then_closed(body, bytearray())["body"]
    for sock in (silent, idle, half, body):
        sock.close()
    assert server.wait_exit() == 0


@pytest.mark.parametrize("binding", BINDINGS)
def test_websocket_handshake_during_the_drain_gets_503(start_server, binding):
    """A WebSocket would outlive the drain: its handshake, begun before the stop and
    finished during it, is answered 503 (the client reconnects elsewhere), as one still
    waiting for its application's accept when the drain starts."""
    server = start_server(binding=binding)
    with server.connect(timeout=20) as sock:
        sock.sendall(b"GET /ws/echo HTTP/1.1\r\nHost: x\r\n")
        server.signal()
        server.wait_for(DRAINING)
        sock.sendall(b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        status, headers, _ = read_response(sock, bytearray())
        assert status == 503 and headers.get("connection") == "close"
        rest, ended = read_to_close(sock, 20)
        assert ended and rest == b""
    assert server.wait_exit() == 0


@pytest.mark.parametrize("binding", BINDINGS)
def test_a_silent_connection_does_not_hold_the_drain(start_server, binding):
    """A connection accepted before the stop that never sends a byte (a browser's spare
    connection) does not keep the server for the header timeout (10 minutes here): the
    drain closes it, and the server exits, while the client still holds it open."""
    server = start_server("--header-timeout", "600", "--shutdown-timeout", "600",
                          binding=binding)
    silent = open_silent(server)
    assert server.http.get("/echo").status_code == 200  # accepted after silent
    server.signal()
    server.wait_for(DRAINING)
    rest, ended = read_to_close(silent, 60)
    assert ended and rest == b""
    assert server.wait_exit(60) == 0
    silent.close()


def test_tls_handshake_under_way_completes(start_server):
    """The client's hello was answered (the server's handshake is under way) when the stop
    came: the handshake completes, and its request is served."""
    server = start_server(binding="tls")
    raw = open_silent(server)
    sock = client_context().wrap_socket(raw, server_hostname="localhost",
                                        do_handshake_on_connect=False)
    sock.setblocking(False)
    with pytest.raises(ssl.SSLWantReadError):
        sock.do_handshake()  # the ClientHello goes out
    assert select.select([sock], [], [], 20)[0], "no answer to the ClientHello"

    server.signal()
    server.wait_for(DRAINING)
    sock.settimeout(20)
    sock.do_handshake()
    sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    served_then_closed(sock, bytearray())
    sock.close()
    assert server.wait_exit() == 0


def h2_client(server: ServerProcess) -> H2Client:
    return H2Client(0, sock=server.connect(timeout=20, alpn=("h2",)), timeout=20)


@pytest.mark.parametrize("binding", BINDINGS)
def test_http2_stop_serves_the_streams_in_flight_and_on_their_way(start_server, binding):
    """GOAWAY(2^31-1) and a PING first: a request the client sent before it saw them is
    taken; once the PING's ACK is back, the GOAWAY that names it (the last stream taken);
    the streams in flight, one with its body still coming, finish, and then the connection
    ends."""
    server = start_server(binding=binding)
    with h2_client(server) as client:
        client.wait(lambda: client.server_settings, what="server SETTINGS")
        uploading = client.request("/echo", method="POST", end_stream=False)
        client.send_data(uploading, b"abc")
        client.flush()
        server.signal()
        server.wait_for(DRAINING)
        # sent before this client read anything of the stop
        on_its_way = client.request("/echo")
        client.send_data(uploading, b"def", end_stream=True)
        client.flush()
        assert client.response(on_its_way).status == 200
        assert client.response(uploading).status == 200
        assert b'"body": "abcdef"' in bytes(client.response(uploading).body)
        client.wait_closed(20)
    # (the last GOAWAY read)
    assert client.goaway == GoAway(ErrorCodes.NO_ERROR, on_its_way)
    assert server.wait_exit() == 0


@pytest.mark.parametrize("binding", BINDINGS)
def test_http2_connection_that_starts_during_the_drain_is_served(start_server, binding):
    """Accepted before the stop, its preface and first request sent after it: the request
    is served, then the GOAWAYs end the connection."""
    server = start_server(binding=binding)
    silent = open_silent(server)
    # accepted after ``silent``, from the same queue: ``silent`` is accepted too
    with h2_client(server) as other:
        assert other.response(other.request("/echo")).status == 200
    server.signal()
    server.wait_for(DRAINING)
    with H2Client(0, sock=as_tls(server, silent, ("h2",)), timeout=20) as client:
        assert client.response(client.request("/echo")).status == 200
        client.wait_closed(20)
    assert client.goaway == GoAway(ErrorCodes.NO_ERROR, 1)
    assert server.wait_exit() == 0


def test_http2_first_goaway_takes_every_stream_and_pings(start_server):
    """The frames of the stop, in order, read off the wire before the client answers."""
    server = start_server()
    with h2_client(server) as client:
        client.wait(lambda: client.server_settings, what="server SETTINGS")
        assert client.response(client.request("/echo")).status == 200
        server.signal()
        server.wait_for(DRAINING)
        client.sock.settimeout(20)
        data = b""
        frames: list = []
        while not any(isinstance(f, PingFrame) for f in frames):
            chunk = client.sock.recv(65536)
            assert chunk, f"the connection ended before a PING: {frames}"
            data += chunk
            frames = frames_of(data)
    kinds = [(type(f).__name__, getattr(f, "last_stream_id", None)) for f in frames
             if not isinstance(f, SettingsFrame)]
    assert kinds == [("GoAwayFrame", 2**31 - 1), ("PingFrame", None)]
    assert all(f.error_code == 0 for f in frames if isinstance(f, GoAwayFrame))


def frames_of(data: bytes) -> list:
    from hyperframe.frame import Frame

    found = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        if len(data) < 9 + length:
            break
        frame.parse_body(memoryview(data[9:9 + length]))
        found.append(frame)
        data = data[9 + length:]
    return found
