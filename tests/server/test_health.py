"""Health checks (--metrics-endpoint; docs/howto/metrics-and-health.rst): /livez answers
while the server's loop turns; /readyz is ready once the lifespan started up, stays ready
while a SIGHUP's new workers start, is unready while a reload drains and from a stop on,
before the listeners close, and ready again once a reload's drain is over.  Synchronised
with the application through sockets: a request whose body the client holds makes a drain
last, and a gate the test answers holds a worker's lifespan startup."""

from __future__ import annotations

import signal
import socket

import pytest

from tests.conftest import read_response
from tests.lifespan import Gate
from tests.metrics_client import Listener, value

APP = "tests.metrics_apps:app"

pytest.importorskip("prometheus_client")  # the metrics extra


def hold_request(server) -> socket.socket:
    """A request the application has begun to answer, and ends once its body (one byte,
    still unsent) arrives."""
    sock = server.connect(timeout=30)
    sock.sendall(b"POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n")
    received = b""
    while b"held\n" not in received:
        chunk = sock.recv(4096)
        assert chunk, received
        received += chunk
    return sock


def release_request(sock: socket.socket) -> bytes:
    sock.sendall(b"!")
    received = b""
    while not received.endswith(b"0\r\n\r\n"):  # (the last chunk)
        chunk = sock.recv(4096)
        assert chunk, received
        received += chunk
    sock.close()
    return received


def served(server) -> int:
    """The status of a new request on a new connection to the application's port."""
    with server.connect(timeout=30) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return read_response(sock, bytearray())[0]


def test_ready_while_a_reload_starts_unready_while_it_drains(start_server, tmp_path):
    gate = Gate(tmp_path)
    server = start_server("--workers", "2", "--metrics-endpoint", "127.0.0.1:0",
                          app=APP, env={"METRICS_TEST_GATE": gate.path}, ready=False)
    listener = Listener(server)
    assert listener.get("/livez")[0] == 200
    first = gate.waiting(2)
    assert listener.get("/readyz") == (503, "text/plain; charset=utf-8", b"starting\n")
    gate.release(first)
    server.wait_ready()
    listener.wait_health("/readyz", 200)
    held = hold_request(server)

    server.signal(signal.SIGHUP)
    starting = gate.waiting(2)  # the new generation, in its lifespan startup
    # the current workers serve meanwhile: ready (a reload that fails leaves them serving)
    assert listener.get("/readyz")[0] == 200
    assert served(server) == 200
    gate.release(starting)
    # every new worker ready: the old ones drain, one of them held by our request
    assert b"draining" in listener.wait_health("/readyz", 503)
    assert served(server) == 200  # (by the new workers)
    assert listener.get("/livez")[0] == 200
    assert b"released\n" in release_request(held)
    listener.wait_health("/readyz", 200)
    samples = listener.wait_until(
        lambda s: value(s, "daphne_reloads_total", result="done") == 1,
        "the reload is counted")
    assert value(samples, "daphne_worker_starts_total", reason="reload") == 2


@pytest.mark.parametrize("mode", ["workers", "single"])
def test_unready_at_a_stop_before_the_listeners_close(start_server, mode):
    """--unready-delay: /readyz says 503 at once, and the application's port still
    serves new connections (the test stops the server itself, with a second signal)."""
    workers = ("--workers", "2") if mode == "workers" else ()
    server = start_server(*workers, "--metrics-endpoint", "127.0.0.1:0",
                          "--unready-delay", "300", app=APP)
    listener = Listener(server)
    listener.wait_health("/readyz", 200)
    server.signal(signal.SIGTERM)
    server.wait_for(r"Unready \(/readyz answers 503\)")
    assert listener.get("/readyz")[:3:2] == (503, b"stopping\n")
    assert listener.get("/livez")[0] == 200
    assert served(server) == 200  # the listeners are open still
    server.signal(signal.SIGINT)  # a second signal: at once
    assert server.wait_exit() == 1


@pytest.mark.parametrize("mode", ["workers", "single"])
def test_unready_while_a_stop_drains(start_server, mode):
    workers = ("--workers", "1") if mode == "workers" else ()
    server = start_server(*workers, "--metrics-endpoint", "127.0.0.1:0", app=APP)
    listener = Listener(server)
    listener.wait_health("/readyz", 200)
    held = hold_request(server)
    server.signal(signal.SIGTERM)
    server.wait_for(r"Stopped accepting; draining 1 connection")
    assert listener.get("/readyz")[:3:2] == (503, b"stopping\n")
    assert b"released\n" in release_request(held)
    assert server.wait_exit() == 0
