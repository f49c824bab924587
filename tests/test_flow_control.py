"""Backpressure both ways: a slow application stops the server reading, a slow client stops
the application's sends. Memory stays bounded either way."""

from __future__ import annotations

import socket
import time

import httpx

from tests.conftest import read_response

MIB = 1024 * 1024


def test_server_stops_reading_while_the_app_does_not_receive(server):
    total = 64 * MIB
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
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
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 0.5:
                    break
        assert sent < 24 * MIB, f"server kept reading: {sent} bytes accepted"
        assert httpx.get(server.url + "/open-gate?gate=g1").text == "open"
        sock.setblocking(True)
        sock.settimeout(10)
        while sent < total:
            sent += sock.send(block[: total - sent])
        status, _, body = read_response(sock, bytearray())
    assert status == 200 and int(body) == total


def test_app_send_waits_while_the_client_does_not_read(server):
    total = 64 * MIB
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /firehose?total=%d&name=f1 HTTP/1.1\r\nHost: x\r\n\r\n" % total)
        # watch the application's progress for a while without reading: it must stall
        deadline = time.monotonic() + 1.0
        highest = 0
        while time.monotonic() < deadline:
            highest = int(httpx.get(server.url + "/progress?name=f1").text)
            assert highest < 24 * MIB, f"the app was let send {highest} unread bytes"
        assert highest > 0
        received = 0
        while received < total:
            chunk = sock.recv(MIB)
            assert chunk
            received += len(chunk)
    assert int(httpx.get(server.url + "/progress?name=f1").text) == total


def test_a_client_that_stops_reading_is_cut_off_after_the_send_timeout(start_server):
    server = start_server("--send-timeout", "0.3")
    total = 64 * MIB
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /firehose?total=%d&name=s1 HTTP/1.1\r\nHost: x\r\n\r\n" % total)
        server.wait_for(r"Cut off \['127.0.0.1', \d+\]: it took nothing of what was written "
                        r"for 0.3s")
        received = 0
        try:
            while chunk := sock.recv(MIB):
                received += len(chunk)
        except ConnectionResetError:
            pass
    assert received < total
    # the application's pending send learnt of it: it stopped there
    assert int(httpx.get(server.url + "/progress?name=s1").text) < total
