"""Backpressure both ways: a slow application stops the server reading, a slow client stops
the application's sends. Memory stays bounded either way. On every transport: plain TCP
under both parsers, TLS and a UNIX socket (the `server` fixture)."""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from tests.conftest import BINDINGS, read_response, read_to_close

MIB = 1024 * 1024
# a non-blocking send the socket has no room for: BlockingIOError, or on TLS the want-write
# (repeated with the same bytes, as OpenSSL requires)
NO_ROOM = (BlockingIOError, ssl.SSLWantWriteError)


@pytest.fixture(scope="module")
def server(transport_server):
    """Each test here runs on every conftest.SERVER_VARIANTS entry."""
    return transport_server


def test_server_stops_reading_while_the_app_does_not_receive(server):
    total = 64 * MIB
    with server.connect() as sock:
        block = b"u" * 65536
        sock.sendall(b"POST /gated-body?gate=g1 HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: %d\r\n\r\n" % total + block)
        sent = len(block)
        server.wait_for("app: gated")
        sock.setblocking(False)
        stalled_since = None
        # push until the socket refuses more for a while: only kernel buffers and the
        # server's bounded body buffer can be holding what was accepted
        while sent < total:
            try:
                sent += sock.send(block)
                stalled_since = None
            except NO_ROOM:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 0.5:
                    break
        assert sent < 24 * MIB, f"server kept reading: {sent} bytes accepted"
        assert server.http.get("/open-gate?gate=g1").text == "open"
        sock.setblocking(True)
        sock.settimeout(10)
        while sent < total:
            sent += sock.send(block[: total - sent])
        status, _, body = read_response(sock, bytearray())
    assert status == 200 and int(body) == total


def test_app_send_waits_while_the_client_does_not_read(server):
    total = 64 * MIB
    with server.connect(timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /firehose?total=%d&name=f1 HTTP/1.1\r\nHost: x\r\n\r\n" % total)
        # watch the application's progress for a while without reading: it must stall
        deadline = time.monotonic() + 1.0
        highest = 0
        while time.monotonic() < deadline:
            highest = int(server.http.get("/progress?name=f1").text)
            assert highest < 24 * MIB, f"the app was let send {highest} unread bytes"
        assert highest > 0
        received = 0
        while received < total:
            chunk = sock.recv(MIB)
            assert chunk
            received += len(chunk)
    assert int(server.http.get("/progress?name=f1").text) == total


@pytest.mark.parametrize("binding", BINDINGS)
def test_a_client_that_stops_reading_is_cut_off_after_the_send_timeout(start_server, binding):
    server = start_server("--send-timeout", "0.3", binding=binding)
    total = 64 * MIB
    with server.connect(timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /firehose?total=%d&name=s1 HTTP/1.1\r\nHost: x\r\n\r\n" % total)
        server.wait_for(r"Cut off %s: it took nothing of what was written for 0.3s"
                        % server.logged_client)
        received, ended = read_to_close(sock, 10)
    assert ended and len(received) < total
    # the application's pending send learnt of it: it stopped there
    assert int(server.http.get("/progress?name=s1").text) < total
