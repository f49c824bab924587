"""Every connection the server decides to end is ended, on every transport: plain TCP, TLS
and a UNIX socket.

Over TLS, Twisted's transport kept a connection open after the server's decision while the
connection was registered as a producer (and then waited for the client's close_notify):
an HTTP/1.0 client waited for ever for the end of its body, slowloris protection freed no
descriptor, a client sent 300 MB after its GOAWAY.  Each case here waits for the end of the
connection well within the server's other timeouts (the keep-alive timeout of the patient
server is a minute), so an end that comes only from another timeout fails the test."""

from __future__ import annotations

import struct

import pytest
from h2.errors import ErrorCodes

from tests.conftest import BINDINGS, ServerProcess, read_to_close, start_variant
from tests.h2client import H2Client
from tests.wsclient import answer_close, close_code, frame, handshake_on, read_frame

# the ends of connections the tests wait for: well under every timeout the servers keep
WAIT = 8.0


@pytest.fixture(scope="module", params=BINDINGS)
def patient(request):
    """Timeouts far longer than any test waits: an end seen is the server's decision."""
    proc = start_variant(request.param, "--keep-alive-timeout", "60", "--header-timeout", "60",
                         "--body-timeout", "60", "--send-timeout", "60",
                         # refusals small enough to be sent whole before the answer comes
                         "--max-request-line", "2048", "--max-header-size", "4096")
    yield proc
    proc.stop()


@pytest.fixture(scope="module", params=BINDINGS)
def hasty(request):
    """One-second timeouts, each the only one that can end the connection in its test."""
    proc = start_variant(request.param, "--keep-alive-timeout", "1", "--header-timeout", "1",
                         "--body-timeout", "1", "--send-timeout", "1")
    yield proc
    proc.stop()


def exchange(server: ServerProcess, data: bytes) -> bytes:
    """Send ``data``; return what came back once the server ended the connection."""
    with server.connect() as sock:
        sock.sendall(data)
        received, ended = read_to_close(sock, WAIT)
    assert ended, f"the server kept the connection open; it sent {received[:200]!r}"
    return received


# -- HTTP/1.x: closes the server decides


def test_connection_close_is_honoured(patient):
    response = exchange(patient, b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200 ") and b"Connection: close\r\n" in response
    assert response.endswith(b"}")  # the whole JSON body, then the end


def test_http10_close_delimited_body_ends(patient):
    """A streamed response to HTTP/1.0 has no length: only the close ends the body."""
    response = exchange(patient, b"GET /stream?n=3 HTTP/1.0\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(b"chunk0;chunk1;chunk2;")


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /echo HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", b"400"),
    (b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 6000 + b"\r\n\r\n", b"431"),
    (b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
], ids=["400", "431", "414"])
def test_refused_request_is_answered_and_closed(patient, request_bytes, status):
    response = exchange(patient, request_bytes)
    assert response.startswith(b"HTTP/1.1 " + status + b" "), response[:100]


def test_request_line_that_is_not_http_is_closed_without_an_answer(patient):
    """h2spec's "invalid connection preface" on a cleartext port: not HTTP/1.x, so no
    HTTP/1.1 answer it could not read, only the close."""
    assert exchange(patient, b"INVALID CONNECTION PREFACE\r\n\r\n") == b""


def test_app_that_breaks_its_content_length_gets_the_connection_closed(patient):
    """After the head went out (a 500 replaces a response that broke it before)."""
    response = exchange(patient, b"GET /big?size=100&short=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"x" * 50)


# -- HTTP/1.x: closes a timeout decides


@pytest.mark.parametrize("sent, answer", [
    (b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 "),  # then idle: keep-alive
    (b"", b""),  # nothing at all: the header timeout, without an answer
    (b"GET /echo HTTP/1.1\r\nHost: x\r\n", b"HTTP/1.1 408 "),  # slowloris: header timeout
    (b"POST /count-body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
     b"HTTP/1.1 408 "),  # a body that stops coming: the body timeout
], ids=["keep-alive", "silent", "partial-head", "stalled-body"])
def test_timeout_ends_the_connection(hasty, sent, answer):
    """The 408 (where there is one) goes out and the descriptor is freed, on TLS too."""
    with hasty.connect() as sock:
        if sent:
            sock.sendall(sent)
        received, ended = read_to_close(sock, WAIT)
    assert ended and received.startswith(answer) and (answer or received == b"")


def test_client_that_takes_nothing_is_cut_off_after_the_send_timeout(hasty):
    """A response far larger than every buffer on the way, never read: after the send
    timeout the server drops the connection, and the client finds it short."""
    size = 64 * 1024 * 1024
    with hasty.connect() as sock:
        sock.sendall(b"GET /big?size=%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
        hasty.wait_for(r"Cut off .*took nothing of what was written", timeout=WAIT)
        received, ended = read_to_close(sock, WAIT)
    assert ended and len(received) < size


# -- HTTP/2


def h2_client(server: ServerProcess) -> H2Client:
    """HTTP/2 by ALPN on TLS, by the prior-knowledge preface elsewhere."""
    return H2Client(0, sock=server.connect(alpn=("h2",)))


def test_http2_connection_error_sends_goaway_then_closes(patient):
    """After the GOAWAY the server reads nothing more: the connection ends."""
    with h2_client(patient) as client:
        assert client.response(client.request("/echo")).status == 200
        # a PING on a stream is a connection error (RFC 9113 6.7)
        client.raw(b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + b"12345678")
        assert client.wait_goaway().error_code == ErrorCodes.PROTOCOL_ERROR
        client.wait_closed(WAIT)


def test_http2_idle_connection_is_closed(start_server):
    for binding in BINDINGS:
        server = start_server("--http2-idle-timeout", "1", binding=binding)
        with h2_client(server) as client:
            assert client.response(client.request("/echo")).status == 200
            assert client.wait_goaway().error_code == ErrorCodes.NO_ERROR
            client.wait_closed(WAIT)


# -- WebSocket


def test_websocket_close_from_the_client_is_echoed_and_ends_the_connection(patient):
    """The client's close code is echoed (RFC 6455 5.5.1), a private one (3000) too, and
    then the server ends the connection, as a server must (RFC 6455 7.1.1)."""
    sock, head = handshake_on(patient.connect(), "/ws/echo")
    with sock:
        assert head.startswith(b"HTTP/1.1 101 ")
        sock.sendall(frame(0x8, struct.pack("!H", 3000) + b"bye"))
        opcode, payload = read_frame(sock)
        assert opcode == 0x8 and close_code(payload) == 3000
        rest, ended = read_to_close(sock, WAIT)
    assert ended and rest == b""


def test_websocket_closed_by_the_application_ends_the_connection(patient):
    sock, head = handshake_on(patient.connect(), "/ws/close-after-accept")
    with sock:
        assert head.startswith(b"HTTP/1.1 101 ")
        answer_close(sock, 4001, WAIT)


# -- graceful shutdown


@pytest.mark.parametrize("binding", BINDINGS)
def test_graceful_shutdown_closes_idle_connections(start_server, binding):
    server = start_server("--keep-alive-timeout", "60", binding=binding)
    with server.connect() as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        server.signal()
        received, ended = read_to_close(sock, WAIT)
    assert ended
    assert server.wait_exit() == 0
