"""A lingering close after an error answer, on every transport (TCP, TLS, UNIX socket).

A server that closes its socket while the client is still sending makes the kernel answer
the unread bytes with a reset (on a UNIX socket: ECONNRESET for the reader), which can
overtake the answer on its way (RFC 9112 9.6).  After a 400, a 431, an early answer or a
connection error's GOAWAY, the server shuts its write side once the answer is out and reads
and drops what still comes, within bounds.  The clients here send a MiB more once the
answer is on its way, without reading it, and only then read: they must get the whole
answer and a clean end (an EOF, a TLS close_notify), never a reset."""

from __future__ import annotations

import re
import select
import socket
import time

import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import Frame, GoAwayFrame, SettingsFrame

from tests.conftest import BINDINGS, ServerProcess, start_variant
from tests.h2client import PREFACE

MIB = 1024 * 1024
MORE = b"x" * MIB  # what the client keeps sending after its bad request
TCP_CLOSE = 7  # tcpi_state (linux/tcp_states.h)


@pytest.fixture(scope="module", params=BINDINGS)
def server(request):
    proc = start_variant(request.param, "--max-header-size", "4096")
    yield proc
    proc.stop()


def read_clean_end(sock: socket.socket) -> bytes:
    """Everything the server sent, up to an orderly end; a reset raises."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def assert_no_reset(sock: socket.socket) -> None:
    """No reset came, not even one after the end.  Over TCP (TLS too), once this side has
    closed too, the connection is waited for to end, and whether a reset ended it (which
    leaves the socket's pending error set) is read then."""
    if sock.family != socket.AF_UNIX:
        socket.socket.shutdown(sock, socket.SHUT_WR)  # (under TLS too: the TCP FIN)
        deadline = time.monotonic() + 20
        while sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != TCP_CLOSE:
            assert time.monotonic() < deadline, "the connection did not end"
            time.sleep(0.01)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0


def send_then_read(server: ServerProcess, data: bytes, answered: str | None = None,
                   alpn: tuple[str, ...] = ("http/1.1",)) -> bytes:
    """``data``; once the server has answered it (its first bytes are readable, or it logged
    ``answered``), a MiB more without reading; then what came back, to a clean end."""
    since = len(server.lines)
    with server.connect(timeout=20, alpn=alpn) as sock:
        sock.sendall(data)
        if answered is None:
            assert select.select([sock], [], [], 20)[0], "no answer"
        else:
            wait_for_new(server, answered, since)
        sock.sendall(MORE)
        answer = read_clean_end(sock)
        assert_no_reset(sock)
    return answer


def wait_for_new(server: ServerProcess, pattern: str, since: int) -> None:
    """Wait until a line after the first ``since`` of the server's output matches."""
    regex = re.compile(pattern)
    with server.cond:
        assert server.cond.wait_for(
            lambda: any(regex.search(line) for line in server.lines[since:]), 20), \
            f"no line matching {pattern!r}; output:\n{server.output}"


def still_serves(server: ServerProcess) -> None:
    assert server.http.get("/echo").status_code == 200


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /echo HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
    (b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 6000 + b"\r\n\r\n", 431),
], ids=["400", "431"])
def test_refusal_then_more_bytes_gets_the_whole_answer(server, request_bytes, status):
    answer = send_then_read(server, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    assert len(body) == length
    still_serves(server)


def test_answer_before_the_body_ended_gets_through(server):
    """The application answers without reading a large body (as a 413 would): the client
    still sending it gets the answer, not a reset."""
    answer = send_then_read(
        server, b"POST /no-read HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (8 * MIB))
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"not reading your body")


def frames_of(data: bytes) -> list[Frame]:
    found = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9:9 + length]))
        found.append(frame)
        data = data[9 + length:]
    return found


def test_http2_connection_error_then_more_bytes_gets_the_goaway(server):
    """A PING on a stream is a connection error (RFC 9113 6.7): the GOAWAY reaches a client
    that goes on sending (what it sends after it would be a frame over the maximum size)."""
    bad_ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + b"12345678"
    answer = send_then_read(server, PREFACE + SettingsFrame(0).serialize() + bad_ping,
                            r"HTTP/2 protocol error from", alpn=("h2",))
    goaways = [f for f in frames_of(answer) if isinstance(f, GoAwayFrame)]
    assert [f.error_code for f in goaways] == [ErrorCodes.PROTOCOL_ERROR]
    still_serves(server)


def test_client_that_never_stops_sending_is_cut_off(server):
    """The linger is bounded: a client that sends for ever after its 400 is cut off, and
    what it sent is dropped, not kept."""
    before = server.rss_kib()
    with server.connect(timeout=20) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        sent = 0
        with pytest.raises(OSError):  # the reset (TLS: the failed write) ends the sending
            while sent < 1024 * MIB:
                sock.sendall(MORE)
                sent += len(MORE)
    server.wait_for(r"Cut off .*sent over \d+ bytes after an error answer")
    assert server.rss_kib() - before < 16 * 1024
    still_serves(server)


def test_client_that_never_closes_is_closed_after_the_linger(start_server):
    """A client that takes its answer and then keeps the connection open is closed once the
    linger (here the send timeout, 1 s) is over."""
    for binding in BINDINGS:
        server = start_server("--send-timeout", "1", binding=binding)
        with server.connect(timeout=20) as sock:
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
            assert read_clean_end(sock).startswith(b"HTTP/1.1 400 ")
            server.wait_for(r"Closed the connection of .*: it did not end it within 1.0s of "
                            r"an error answer")


def test_twisted_still_has_what_the_linger_relies_on():
    """protocols/transport.py's linger, against the installed Twisted: a TCP transport
    half-closes (loseWriteConnection) and says when it has (_writeDisconnected), and hands
    what it reads to its protocol's dataReceived as looked up on the instance (which is
    how a TLS connection's records are dropped undecrypted)."""
    import inspect

    from twisted.internet import abstract, tcp

    assert vars(abstract.FileDescriptor)["_writeDisconnected"] is False
    assert "self._writeDisconnected = True" in inspect.getsource(abstract.FileDescriptor.doWrite)
    assert callable(tcp.Connection.loseWriteConnection)
    assert "self.protocol.dataReceived(" in inspect.getsource(tcp.Connection._dataReceived)
