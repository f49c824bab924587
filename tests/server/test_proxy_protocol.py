"""``--proxy-protocol``: behind a real HAProxy (Debian's haproxy, ``send-proxy`` and
``send-proxy-v2``), the application and the access log see the address of the client that
connected to HAProxy, over TCP, TLS and a UNIX socket, single process and ``--workers 2``;
a connection that does not start with a valid header is closed before anything is served.

The client connects to HAProxy from 127.0.0.2, so its address differs from HAProxy's own
(127.0.0.1), the peer the server sees on the socket.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from websockets.sync.client import connect as ws_connect

from tests.conftest import client_context, read_to_close

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
CLIENT = "127.0.0.2"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class HAProxy:
    """haproxy in the foreground, in TCP mode, forwarding one port to ``target`` (a
    ``host:port`` or a UNIX socket path) with ``send_proxy`` (send-proxy or
    send-proxy-v2), and ``check``: its server options for health checks (HTTP ones, GET
    /echo?health), if any."""

    def __init__(self, target: str, send_proxy: str, check: str = "") -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="dd-haproxy-"))
        config = self.directory / "haproxy.cfg"
        config.write_text(f"""
global
    maxconn 200
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend front
    bind 127.0.0.1:{self.port}
    default_backend back
backend back
    {"option httpchk GET /echo?health" if check else ""}
    server app {target} {send_proxy} {check}
""")
        check = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(config)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._wait_listening()

    def _wait_listening(self) -> None:
        # haproxy -db says nothing when it listens: its socket in /proc/net/tcp is the sign
        wanted = f":{self.port:04X} "
        for _ in range(200):
            assert self.proc.poll() is None, self.proc.stdout.read().decode()
            with open("/proc/net/tcp") as table:
                if any(wanted in line and line.split()[3] == "0A" for line in table):
                    return
            with socket.socket() as probe:  # a turn of the scheduler, not a timing
                probe.settimeout(0.05)
                probe.connect_ex(("127.0.0.1", 9))
        raise AssertionError("haproxy did not listen")

    def connect(self) -> socket.socket:
        sock = socket.socket()
        sock.settimeout(10)
        sock.bind((CLIENT, 0))
        sock.connect(("127.0.0.1", self.port))
        return sock

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.directory, True)


def target_of(server) -> str:
    return server.unix_path if server.binding == "unix" else f"127.0.0.1:{server.port}"


def get_echo(proxy: HAProxy, tls: bool) -> dict:
    sock = proxy.connect()
    if tls:
        sock = client_context().wrap_socket(sock, server_hostname="localhost")
    with sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        response, _ = read_to_close(sock, 10)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response[:300]
    return json.loads(body)


@pytest.mark.parametrize("binding", ["tcp", "tls", "unix"])
@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_the_client_address_comes_from_the_proxy_header(start_server, binding, send_proxy):
    server = start_server("--proxy-protocol", binding=binding)
    proxy = HAProxy(target_of(server), send_proxy)
    try:
        scope = get_echo(proxy, binding == "tls")
        assert scope["client"][0] == CLIENT
        assert scope["scheme"] == ("https" if binding == "tls" else "http")
        server.wait_for(rf'{CLIENT}:\d+ - - \[.*\] "GET /echo" 200')
    finally:
        proxy.stop()


@pytest.mark.parametrize("binding", ["tcp", "tls", "unix"])
@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_haproxys_health_checks_are_answered(start_server, binding, send_proxy):
    """HAProxy's health checks, on connections of its own, send the header with no client:
    ``PROXY UNKNOWN`` (v1) or a LOCAL command (v2).  They must be served (Twisted's own
    reader closed the v1 ones unanswered, and HAProxy then took the server for down)."""
    server = start_server("--proxy-protocol", binding=binding)
    check = "check inter 100ms fall 1 rise 1"
    if binding == "tls":
        check += " check-ssl verify none"
    proxy = HAProxy(target_of(server), send_proxy, check)
    try:
        server.wait_for(r'\] "GET /echo\?health" 200')
        assert get_echo(proxy, binding == "tls")["client"][0] == CLIENT
    finally:
        proxy.stop()


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_workers_behind_haproxy_http_and_websocket(start_server, send_proxy):
    server = start_server("--proxy-protocol", "--workers", "2", "-p", "0")
    server.wait_for("Server ready")
    proxy = HAProxy(target_of(server), send_proxy)
    try:
        for _ in range(4):  # over both workers' sockets
            assert get_echo(proxy, False)["client"][0] == CLIENT
        with ws_connect(f"ws://127.0.0.1:{proxy.port}/ws/scope", sock=proxy.connect(),
                        open_timeout=10) as ws:
            scope = json.loads(ws.recv(timeout=10))
        assert scope["client"][0] == CLIENT
        server.wait_for(rf'{CLIENT}:\d+ - - \[.*\] "WSCONNECT /ws/scope"')
    finally:
        proxy.stop()


@pytest.mark.parametrize("binding", ["tcp", "tls", "unix"])
def test_a_connection_without_a_valid_header_is_closed_unserved(start_server, binding):
    server = start_server("--proxy-protocol", binding=binding)
    for first in (b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n",  # no header at all
                  b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n",
                  b"PROXY SCTP 1.2.3.4 127.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n",
                  b"PROXY TCP4 1.2.3.4 127.0.0.1 99999999 2\r\nGET / HTTP/1.1\r\n\r\n",
                  b"PROXY TCP4 1.2.3.4 <script> 1 2\r\nGET / HTTP/1.1\r\n\r\n",
                  # v2, a UNIX-socket client: not an address (nor our own UNIX peer)
                  V2_SIGNATURE + b"\x21\x31\x00\xd8" + b"/tmp/c".ljust(108, b"\0")
                  + b"/tmp/s".ljust(108, b"\0") + b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"):
        if binding == "unix":
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(10)
            sock.connect(server.unix_path)
        else:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with sock:
            sock.sendall(first)  # over TLS too: the header comes before the handshake
            received, ended = read_to_close(sock, 10)
        assert ended and received == b"", (first, received)
    assert "GET /echo" not in server.output


def test_twisteds_haproxy_endpoint_gives_the_client_address_too(start_server):
    port = free_port()
    server = start_server("-e", f"haproxy:tcp:{port}:interface=127.0.0.1")
    proxy = HAProxy(f"127.0.0.1:{port}", "send-proxy", "check inter 100ms fall 1 rise 1")
    try:
        server.wait_for(r'\] "GET /echo\?health" 200')  # (PROXY UNKNOWN: read by ours)
        assert get_echo(proxy, False)["client"][0] == CLIENT
    finally:
        proxy.stop()
