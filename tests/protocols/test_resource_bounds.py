"""Resource bounds against hostile clients, on every transport: memory (the server's peak
resident size, VmHWM in /proc) and descriptors (/proc/PID/fd), never timings.

A client that stops reading must make the applications writing to it wait, not the server
buffer what they write: pipelined HTTP/1.1 requests whose responses are never read, HTTP/2
streams whose client opened its flow-control windows wide and then stopped reading, and
WebSocket floods, over HTTP/1.1 and over HTTP/2.  The send timeout (here 2 s) then cuts
the client off; the test waits for that log line, by which time a server that buffered
without bound would have taken gigabytes (it did: 2 GB for the pipelined case, 3 GB in
5 s for the HTTP/2 one).  Meanwhile and afterwards, other clients are served."""

from __future__ import annotations

import os
import socket
import time

import pytest

from tests.conftest import BINDINGS, ServerProcess, read_to_close
from tests.h2client import SETTINGS, H2Client

MIB = 1024 * 1024
# how much the server's peak resident size may grow above its size before the test
BOUND_KIB = 64 * 1024
CUT_OFF = r"Cut off .*took nothing of what was written"


def peak_kib(server: ServerProcess) -> int:
    with open(f"/proc/{server.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for the server process")


def warmed(server: ServerProcess) -> int:
    """Serve a few requests of each kind first (imports, buffers); return the RSS then."""
    for path in ("/echo", "/big?size=1048576", "/stream?n=3"):
        assert server.http.get(path).status_code == 200
    return server.rss_kib()


def assert_still_serving(server: ServerProcess) -> None:
    response = server.http.get("/echo")
    assert response.status_code == 200


def send_what_is_taken(sock: socket.socket, data: bytes) -> None:
    """Send as much of ``data`` as the server takes before it stops reading."""
    sock.settimeout(1.0)
    try:
        sock.sendall(data)
    except (TimeoutError, OSError):
        pass


@pytest.fixture(params=BINDINGS)
def stingy(request, start_server):
    """A fresh server (its peak memory is this test's alone) with a 2 s send timeout."""
    return start_server("--send-timeout", "2", binding=request.param)


def reading_nothing(server: ServerProcess, alpn: tuple[str, ...] = ("http/1.1",)):
    """A connection whose client will read nothing: as little receive buffer as the kernel
    allows, so the server meets it soon."""
    sock = server.connect(alpn=alpn)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


def wide_open_h2(server: ServerProcess) -> H2Client:
    """An HTTP/2 client whose every flow-control window is open to its maximum, and that
    will then read nothing: flow control lets everything through."""
    client = H2Client(0, sock=reading_nothing(server, ("h2",)),
                      settings={SETTINGS.INITIAL_WINDOW_SIZE: 2**31 - 1})
    client.open_window(2**31 - 1 - 65535)
    return client


def assert_bounded(server: ServerProcess, before: int) -> None:
    """Serving goes on meanwhile; the send timeout cuts the client off; the server's peak
    memory grew less than the bound."""
    assert_still_serving(server)
    server.wait_for(CUT_OFF, timeout=30)
    assert peak_kib(server) - before < BOUND_KIB, (before, peak_kib(server))


def test_pipelined_responses_never_read_stay_bounded(stingy):
    """2,000 pipelined requests for 1 MiB responses, none read, each response sent in one
    message (so the application never waits for room): the next pipelined request waits
    until the previous response drains."""
    before = warmed(stingy)
    with reading_nothing(stingy) as sock:
        request = b"GET /big?size=1048576&whole=1 HTTP/1.1\r\nHost: x\r\n\r\n"
        send_what_is_taken(sock, request * 2000)
        assert_bounded(stingy, before)
    assert_still_serving(stingy)  # afterwards


def test_http2_streams_with_open_windows_never_read_stay_bounded(stingy):
    """20 streams of 200 MiB with every window opened to its maximum, none read: the
    transport's buffer, not flow control, makes the applications wait."""
    before = warmed(stingy)
    with wide_open_h2(stingy) as client:
        for _ in range(20):
            client.request("/big?size=%d" % (200 * MIB))
        assert_bounded(stingy, before)
    assert_still_serving(stingy)


def test_websocket_flood_never_read_stays_bounded(stingy):
    from tests.wsclient import handshake_on

    before = warmed(stingy)
    sock, head = handshake_on(reading_nothing(stingy), "/ws/firehose?name=bound-%s&total=%d"
                              % (stingy.binding, 2048 * MIB))
    with sock:
        assert head.startswith(b"HTTP/1.1 101 ")
        assert_bounded(stingy, before)
    assert_still_serving(stingy)


def test_http2_websocket_flood_never_read_stays_bounded(stingy):
    from tests.protocols.http2.test_http2_websocket import H2WebSocket

    before = warmed(stingy)
    with wide_open_h2(stingy) as client:
        ws = H2WebSocket(client, "/ws/firehose?name=h2bound-%s&total=%d"
                         % (stingy.binding, 2048 * MIB), scheme=stingy.scheme)
        assert ws.wait_answer() == 200
        assert_bounded(stingy, before)
    assert_still_serving(stingy)


def settle(condition, what: str, timeout: float = 10.0) -> None:
    """Poll the server's /proc entries until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never reached: {what}"
        time.sleep(0.02)


def open_descriptors(server: ServerProcess) -> int:
    return len(os.listdir(f"/proc/{server.proc.pid}/fd"))


@pytest.mark.parametrize("binding", BINDINGS)
def test_clients_that_never_finish_or_close_are_let_go(start_server, binding):
    """Slowloris: 50 connections that send part of a head, then neither read nor close.
    After the header timeout the server has answered 408 and closed every one of them
    (over TLS too), whatever the clients do."""
    server = start_server("--header-timeout", "1", "--send-timeout", "2", binding=binding)
    warmed(server)
    before = open_descriptors(server)
    clients = []
    try:
        for _ in range(50):
            sock = server.connect()
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
            clients.append(sock)
        # the server holds them all (it accepts as its loop gets to them)...
        settle(lambda: open_descriptors(server) >= before + 50, "50 connections accepted")
        for sock in clients:  # ...then ends each, without our closing it
            received, ended = read_to_close(sock, 10)
            assert ended and received.startswith(b"HTTP/1.1 408 "), received[:80]
        # and has closed each socket (right after the end the client saw)
        settle(lambda: open_descriptors(server) <= before, "descriptors freed")
    finally:
        for sock in clients:
            sock.close()
    assert_still_serving(server)
