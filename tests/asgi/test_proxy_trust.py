"""Proxy headers are believed only from trusted proxies (``--forwarded-allow-ips``).

An attacker who reaches the port directly sends its own X-Forwarded-For, X-Forwarded-Proto
or Forwarded header. Here the direct client connects from 127.0.0.2, a loopback address
that the default trust (127.0.0.1, ::1 and UNIX-socket peers) does not list, over TCP and
TLS; on a UNIX socket, the peer is untrusted once ``unix`` is left out of the list. What
the application sees is read from its scope; what the log says from the access log.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from tests.conftest import client_context

DIRECT = "127.0.0.2"  # a loopback source address the default trust does not list

# a client's own proxy headers, each a way to pose as someone else or as HTTPS
SPOOFS = [
    {"X-Forwarded-For": "203.0.113.7"},
    {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Port": "4431"},
    {"X-Forwarded-For": "10.0.0.1, 203.0.113.7"},
    {"X-Forwarded-For": "[2001:db8::7]:443"},
    {"X-Forwarded-For": "<script>x</script>"},
    {"X-Forwarded-For": "admin"},
    {"X-Forwarded-For": "127.0.0.1"},
    {"X-Forwarded-Proto": "https"},
    {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
    {"Forwarded": "for=203.0.113.7;proto=https"},
    {"Forwarded": 'for="[2001:db8::7]:443"'},
]


def direct_client(server) -> httpx.Client:
    """An httpx client that reaches the server from DIRECT (TCP and TLS bindings)."""
    transport = httpx.HTTPTransport(local_address=DIRECT,
                                    verify=client_context() if server.binding == "tls" else True)
    host = "localhost" if server.binding == "tls" else "127.0.0.1"
    return httpx.Client(transport=transport, base_url=f"{server.scheme}://{host}:{server.port}",
                        timeout=10)


@pytest.mark.parametrize("binding", ["tcp", "tls"])
def test_a_direct_client_cannot_spoof_its_address_or_scheme(start_server, binding):
    server = start_server("--proxy-headers", binding=binding)
    with direct_client(server) as client:
        for headers in SPOOFS:
            scope = client.get("/echo", headers=headers).json()
            assert scope["client"][0] == DIRECT, headers
            assert scope["scheme"] == server.scheme, headers
        server.wait_for(rf'{DIRECT}:\d+ - - \[.*\] "GET /echo" 200')
    assert "203.0.113.7" not in server.output
    assert "<script>" not in server.output


def test_a_unix_socket_peer_is_trusted_unless_left_out(start_server):
    trusting = start_server("--proxy-headers", binding="unix")
    scope = trusting.http.get("/echo", headers={"X-Forwarded-For": "203.0.113.7",
                                                "X-Forwarded-Proto": "https"}).json()
    assert scope["client"] == ["203.0.113.7", 0] and scope["scheme"] == "https"
    strict = start_server("--proxy-headers", "--forwarded-allow-ips", "127.0.0.1",
                          binding="unix")
    for headers in SPOOFS:
        scope = strict.http.get("/echo", headers=headers).json()
        assert scope["client"] is None, headers
        assert scope["scheme"] == "http", headers


@pytest.mark.parametrize("binding", ["tcp", "tls"])
def test_a_listed_peer_is_believed(start_server, binding):
    server = start_server("--proxy-headers", "--forwarded-allow-ips", f"10.0.0.0/8, {DIRECT}",
                          binding=binding)
    with direct_client(server) as client:
        scope = client.get("/echo", headers={"X-Forwarded-For": "203.0.113.7",
                                             "X-Forwarded-Proto": "https"}).json()
        assert scope["client"] == ["203.0.113.7", 0] and scope["scheme"] == "https"
    # the default list does not name DIRECT: the same request is not believed
    default = start_server("--proxy-headers", binding=binding)
    with direct_client(default) as client:
        scope = client.get("/echo", headers={"X-Forwarded-For": "203.0.113.7"}).json()
        assert scope["client"][0] == DIRECT


def test_a_chain_of_trusted_proxies_is_walked_from_the_right(start_server):
    server = start_server("--proxy-headers", "--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8")
    cases = [
        # the client, then two trusted proxies: the client
        ("198.51.100.1, 203.0.113.7, 10.0.0.2, 10.0.0.3", ["203.0.113.7", 0]),
        # what the client itself wrote left of the first untrusted hop is not believed
        ("10.0.0.9, 203.0.113.7, 10.0.0.2", ["203.0.113.7", 0]),
        # every hop a trusted proxy: the left-most
        ("10.0.0.1, 10.0.0.2", ["10.0.0.1", 0]),
        # split over two header lines: one list
        (["203.0.113.7", "10.0.0.2"], ["203.0.113.7", 0]),
        # something that is not an address, reached on the way: not believed
        ("203.0.113.7, unknown", ["127.0.0.1", None]),
        ("203.0.113.7, <b>x</b>, 10.0.0.2", ["127.0.0.1", None]),
    ]
    for value, client in cases:
        headers = [("X-Forwarded-For", item) for item in
                   (value if isinstance(value, list) else [value])]
        scope = server.http.get("/echo", headers=headers).json()
        if client[1] is None:
            assert scope["client"][0] == client[0], value
        else:
            assert scope["client"] == client, value


def test_only_http_and_https_are_believed_as_the_scheme(start_server):
    server = start_server("--proxy-headers")
    for proto, scheme in [("https", "https"), ("HTTPS", "https"), ("wss", "https"),
                          ("javascript", "http"), ("https, http", "http"), ("", "http")]:
        scope = server.http.get("/echo", headers={"X-Forwarded-Proto": proto}).json()
        assert scope["scheme"] == scheme, proto


def test_forwarded_header_when_chosen(start_server):
    server = start_server("--proxy-headers", "--proxy-headers-host", "Forwarded",
                          "--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8")
    cases = [
        ('for=192.0.2.60;proto=https;by=203.0.113.43', ["192.0.2.60", 0], "https"),
        ('for="[2001:db8:cafe::17]:4711"', ["2001:db8:cafe::17", 4711], "http"),
        ('For="192.0.2.43:47011", for=10.0.0.2;proto=https', ["192.0.2.43", 47011], "http"),
        ('for=unknown', None, "http"),
        ('for="_hidden"', None, "http"),
        ('for=192.0.2.60;for=192.0.2.61', None, "http"),  # a parameter twice: malformed
        ('for="192.0.2.60', None, "http"),  # an unterminated quoted-string
    ]
    for value, client, scheme in cases:
        scope = server.http.get("/echo", headers={"Forwarded": value,
                                                  "X-Forwarded-For": "198.51.100.9"}).json()
        assert scope["client"] == client if client else scope["client"][0] == "127.0.0.1", value
        assert scope["scheme"] == scheme, value
    # the default reads X-Forwarded-For and ignores Forwarded
    default = start_server("--proxy-headers")
    scope = default.http.get("/echo", headers={"Forwarded": "for=192.0.2.60;proto=https",
                                               "X-Forwarded-For": "198.51.100.9"}).json()
    assert scope["client"] == ["198.51.100.9", 0] and scope["scheme"] == "http"


@pytest.mark.parametrize("binding", ["tcp", "tls"])
def test_websocket_spoof_from_a_direct_client_is_not_believed(start_server, binding):
    server = start_server("--proxy-headers", binding=binding)
    sock = socket.socket()
    sock.bind((DIRECT, 0))
    sock.connect(("127.0.0.1", server.port))
    tls = binding == "tls"
    with ws_connect(f"{server.ws_uri('/ws/scope')}", sock=sock,
                    ssl=client_context() if tls else None,
                    server_hostname="localhost" if tls else None,
                    additional_headers={"X-Forwarded-For": "203.0.113.9",
                                        "X-Forwarded-Proto": "https"}) as ws:
        scope = json.loads(ws.recv(timeout=10))
    assert scope["client"][0] == DIRECT
    assert scope["scheme"] == server.ws_scheme


def test_a_bad_trust_list_is_refused_naming_the_option(start_server):
    server = start_server("--proxy-headers", "--forwarded-allow-ips", "10.0.0.0/8,proxy.local",
                          ready=False)
    assert server.wait_exit() == 2
    assert "--forwarded-allow-ips" in server.output
    assert "'proxy.local'" in server.output
    assert "networks (10.0.0.0/8" in server.output


@pytest.mark.parametrize("args", [(), ("--proxy-headers",)])
def test_h2c_scheme_from_a_direct_client_is_not_believed(start_server, args):
    """:scheme https on a cleartext HTTP/2 connection from a peer that is not a trusted
    proxy does not make the request secure; from a trusted one (a TLS-terminating proxy
    speaking h2c) it does, with --proxy-headers."""
    from tests.h2client import H2Client

    server = start_server(*args)
    raw = socket.socket()
    raw.bind((DIRECT, 0))
    raw.settimeout(10)
    raw.connect(("127.0.0.1", server.port))
    with H2Client(server.port, sock=raw) as client:
        response = client.response(client.request("/echo", scheme="https"))
    scope = json.loads(response.body)
    assert scope["client"][0] == DIRECT and scope["scheme"] == "http"
    with H2Client(server.port) as client:  # from 127.0.0.1, the default trusted proxy
        response = client.response(client.request("/echo", scheme="https"))
    assert json.loads(response.body)["scheme"] == ("https" if args else "http")


@pytest.mark.parametrize("client_copy", ['for="', "by=x", "for=a;for=b", "for",
                                         'for="[::1'])
def test_a_clients_malformed_forwarded_copy_leaves_the_proxys_entry(start_server, client_copy):
    """A proxy appends its element (a field line of its own, or after a comma) to whatever
    the client sent: the client's malformed part is skipped, not taken as a reason to fall
    back to the proxy's own address."""
    server = start_server("--proxy-headers", "--proxy-headers-host", "Forwarded")
    for headers in ([("Forwarded", client_copy), ("Forwarded", "for=198.51.100.9")],
                    [("Forwarded", client_copy + ", for=198.51.100.9")]):
        scope = server.http.get("/echo", headers=headers).json()
        assert scope["client"][0] == "198.51.100.9", headers


def test_an_ipv6_zone_id_is_not_an_address(start_server):
    server = start_server("--proxy-headers")
    for value in ("fe80::1%eth0 GET admin 200", "[fe80::1%<img src=x>]:80"):
        scope = server.http.get("/echo", headers={"X-Forwarded-For": value}).json()
        assert scope["client"][0] == "127.0.0.1", value
    proxied = start_server("--proxy-protocol")
    with socket.create_connection(("127.0.0.1", proxied.port), timeout=10) as sock:
        sock.sendall(b"PROXY TCP6 fe80::1%<img\tsrc=x> ::1 4444 80\r\n"
                     b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = sock.recv(65536)
    assert received == b""  # closed, unserved
