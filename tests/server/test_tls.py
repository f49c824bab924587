"""TLS settings on every ssl: binding: client certificates (none, optional, required)
checked against a CA made here, the oldest TLS version, the ciphers and the ALPN list, and
bad values refused at startup naming the option. Real handshakes, with Python's ssl module
and with curl."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess

import pytest

from tests.certs import make_client_certificates
from tests.conftest import client_context, read_to_close

CURL = shutil.which("curl") or "/usr/bin/curl"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_client_certificates(tmp_path_factory.mktemp("client-pki"))


def tls_get(server, certificate=None, context=None, path="/echo") -> bytes | None:
    """GET path over a new TLS connection: the response, or None when the handshake or
    the connection failed before any of it arrived."""
    context = context or client_context()
    if certificate is not None:
        key, cert = certificate
        context.load_cert_chain(str(cert), str(key))
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n"
                         "Connection: close\r\n\r\n".encode())
            received, _ = read_to_close(sock, 10)
    except (ssl.SSLError, ConnectionError):
        return None
    return received or None


def mtls_server(start_server, pki, mode):
    return start_server("--ssl-ca-certs", str(pki["ca"]),
                        "--ssl-cert-reqs", mode, binding="tls")


def test_required_client_certificates(start_server, pki):
    server = mtls_server(start_server, pki, "required")
    assert tls_get(server, pki["good"]).startswith(b"HTTP/1.1 200")
    assert tls_get(server) is None
    assert tls_get(server, pki["expired"]) is None
    assert tls_get(server, pki["foreign"]) is None
    assert server.proc.poll() is None


def test_optional_client_certificates(start_server, pki):
    server = mtls_server(start_server, pki, "optional")
    assert tls_get(server, pki["good"]).startswith(b"HTTP/1.1 200")
    assert tls_get(server).startswith(b"HTTP/1.1 200")
    assert tls_get(server, pki["expired"]) is None
    assert tls_get(server, pki["foreign"]) is None


def test_no_client_certificate_is_asked_for_by_default(start_server, pki):
    server = start_server(binding="tls")
    assert tls_get(server).startswith(b"HTTP/1.1 200")
    # one sent anyway (it was not asked for, so a client does not send it) changes nothing
    assert tls_get(server, pki["foreign"]).startswith(b"HTTP/1.1 200")


def test_curl_with_and_without_a_client_certificate(start_server, pki):
    server = mtls_server(start_server, pki, "required")
    from tests.conftest import certificate

    url = f"https://localhost:{server.port}/echo"
    base = [CURL, "-sS", "--cacert", str(certificate()[1]), "-o", "/dev/null",
            "-w", "%{http_code}", "--max-time", "10"]
    key, cert = pki["good"]
    good = subprocess.run([*base, "--cert", str(cert), "--key", str(key), url],
                          capture_output=True, text=True)
    assert good.stdout == "200", good.stderr
    missing = subprocess.run([*base, url], capture_output=True, text=True)
    assert missing.returncode != 0 and missing.stdout in ("", "000"), missing.stdout


def test_minimum_version(start_server):
    twelve = client_context()
    twelve.maximum_version = ssl.TLSVersion.TLSv1_2
    default = start_server(binding="tls")
    assert tls_get(default, context=twelve).startswith(b"HTTP/1.1 200")
    strict = start_server("--ssl-minimum-version", "1.3", binding="tls")
    twelve = client_context()
    twelve.maximum_version = ssl.TLSVersion.TLSv1_2
    assert tls_get(strict, context=twelve) is None
    assert tls_get(strict).startswith(b"HTTP/1.1 200")  # 1.3


def test_ciphers(start_server):
    server = start_server("--ssl-ciphers", "ECDHE+AESGCM",
                          binding="tls")

    def tls12(ciphers):
        context = client_context()
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(ciphers)
        return context

    assert tls_get(server, context=tls12("ECDHE+AESGCM")).startswith(b"HTTP/1.1 200")
    assert tls_get(server, context=tls12("ECDHE+CHACHA20")) is None


def test_alpn_list(start_server):
    server = start_server("--ssl-alpn", "http/1.1", binding="tls")
    with server.connect(alpn=("h2", "http/1.1")) as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"
    default = start_server(binding="tls")
    with default.connect(alpn=("h2", "http/1.1")) as sock:
        assert sock.selected_alpn_protocol() == "h2"


@pytest.mark.parametrize("args, message", [
    (["--ssl-ciphers", "NOT-A-CIPHER"],
     "--ssl-ciphers: expected an OpenSSL cipher string such as ECDHE+AESGCM"),
    (["--ssl-alpn", "h3"], "--ssl-alpn: expected protocols of h2, http/1.1, http/1.0"),
    (["--ssl-cert-reqs", "required"], "--ssl-cert-reqs is 'required', which needs"),
    (["--ssl-minimum-version", "1.1"], "argument --ssl-minimum-version: invalid choice"),
])
def test_bad_tls_settings_are_refused_naming_the_option(start_server, args, message):
    server = start_server(*args, ready=False, binding="tls")
    assert server.wait_exit() == 2
    assert message in server.output, server.output


def test_an_unreadable_ca_file_stops_the_start(start_server, tmp_path):
    server = start_server("--ssl-cert-reqs", "required", "--ssl-ca-certs",
                          str(tmp_path / "missing.pem"), ready=False, binding="tls")
    assert server.wait_exit() == 1
    assert f"--ssl-ca-certs '{tmp_path / 'missing.pem'}'" in server.output
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    server = start_server("--ssl-cert-reqs", "required", "--ssl-ca-certs",
                          str(tmp_path / "empty.pem"), ready=False, binding="tls")
    assert server.wait_exit() == 1
    assert "no PEM certificate in it" in server.output


# -- certificates renewed on disk, picked up on SIGHUP by a single process


def served_fingerprint(server) -> bytes:
    """The SHA-256 of the certificate a new connection is served."""
    import hashlib

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as sock:
        return hashlib.sha256(sock.getpeercert(binary_form=True)).digest()


def file_fingerprint(cert_path) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    return x509.load_pem_x509_certificate(cert_path.read_bytes()).fingerprint(hashes.SHA256())


def test_sighup_reloads_a_renewed_certificate(start_server, tmp_path):
    from tests.certs import make_certificate

    live, renewed, wrong = (tmp_path / name for name in ("live", "renewed", "wrong"))
    for directory in (live, renewed, wrong):
        directory.mkdir()
    key, cert = make_certificate(live)
    server = start_server("-e", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    first = file_fingerprint(cert)
    assert served_fingerprint(server) == first
    # a request in flight across the reload: its body half sent, the application waiting
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    in_flight = context.wrap_socket(
        socket.create_connection(("127.0.0.1", server.port), timeout=10),
        server_hostname="localhost")
    in_flight.sendall(b"POST /gated-body?gate=renew HTTP/1.1\r\nHost: localhost\r\n"
                      b"Content-Length: 10\r\nConnection: close\r\n\r\n12345")
    server.wait_for("app: gated")

    # the user's mistake first: a new certificate with the old key (certbot's files half
    # copied): refused, the current one still served
    make_certificate(wrong)
    cert.write_bytes((wrong / "crt.pem").read_bytes())
    server.signal(signal.SIGHUP)
    server.wait_for(r"the certificate of ssl:.* was not reloaded \(.*\); the current one is "
                    r"still served")
    assert served_fingerprint(server) == first
    # then the fix: the renewed pair, complete
    new_key, new_cert = make_certificate(renewed)
    key.write_bytes(new_key.read_bytes())
    cert.write_bytes(new_cert.read_bytes())
    server.signal(signal.SIGHUP)
    server.wait_for(r"reloaded the certificate of ssl:")
    assert served_fingerprint(server) == file_fingerprint(new_cert) != first
    # the request in flight finishes on its connection
    gate_opener = context.wrap_socket(
        socket.create_connection(("127.0.0.1", server.port), timeout=10),
        server_hostname="localhost")
    with gate_opener:
        gate_opener.sendall(b"GET /open-gate?gate=renew HTTP/1.1\r\nHost: x\r\n"
                            b"Connection: close\r\n\r\n")
        assert read_to_close(gate_opener, 10)[0].startswith(b"HTTP/1.1 200")
    with in_flight:
        in_flight.sendall(b"67890")
        response, _ = read_to_close(in_flight, 10)
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"10"), response
    assert server.proc.poll() is None


# -- the ASGI TLS extension: scope["extensions"]["tls"], on every protocol


def expected_tls(pki, certificate_pair, server_cert_path) -> dict:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    def pem(path):
        return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(
            Encoding.PEM).decode()

    client = certificate_pair[1] if certificate_pair else None
    return {
        "server_cert": pem(server_cert_path),
        "client_cert_chain": [pem(client)] if client else [],
        "client_cert_name": x509.load_pem_x509_certificate(
            client.read_bytes()).subject.rfc4514_string() if client else None,
        "client_cert_error": None,
    }


def check_extension(tls: dict, expected: dict, version: int = 0x0304) -> None:
    assert {key: tls[key] for key in expected} == expected
    assert tls["tls_version"] == version
    assert isinstance(tls["cipher_suite"], int) and tls["cipher_suite"] > 0


def client_with(certificate_pair, alpn=("http/1.1",)) -> ssl.SSLContext:
    context = client_context(alpn)
    if certificate_pair:
        key, cert = certificate_pair
        context.load_cert_chain(str(cert), str(key))
    return context


@pytest.mark.parametrize("who", ["good", None])
def test_tls_extension_over_http1_and_websocket(start_server, pki, who):
    from websockets.sync.client import connect

    from tests.conftest import certificate

    server = mtls_server(start_server, pki, "optional")
    pair = pki[who] if who else None
    expected = expected_tls(pki, pair, certificate()[1])
    response = tls_get(server, pair)
    scope = json.loads(response.partition(b"\r\n\r\n")[2])
    check_extension(scope["extensions"]["tls"], expected)
    twelve = client_with(pair)
    twelve.maximum_version = ssl.TLSVersion.TLSv1_2
    response = tls_get(server, context=twelve)
    scope = json.loads(response.partition(b"\r\n\r\n")[2])
    check_extension(scope["extensions"]["tls"], expected, version=0x0303)
    with connect(f"wss://localhost:{server.port}/ws/scope", ssl=client_with(pair)) as ws:
        scope = json.loads(ws.recv(timeout=10))
    check_extension(scope["extensions"]["tls"], expected)


def test_tls_extension_over_http2_and_its_websockets(start_server, pki):
    from h2.settings import SettingCodes

    from tests.conftest import certificate
    from tests.h2client import H2Client
    from tests.protocols.http2.test_http2_websocket import open_ws

    server = mtls_server(start_server, pki, "required")
    expected = expected_tls(pki, pki["good"], certificate()[1])
    with H2Client(server.port, tls=client_with(pki["good"], ("h2",))) as client:
        assert client.sock.selected_alpn_protocol() == "h2"
        response = client.response(client.request("/echo"))
        scope = json.loads(response.body)
        check_extension(scope["extensions"]["tls"], expected)
        assert "http.response.trailers" in scope["extensions"]
        client.wait(lambda: SettingCodes.ENABLE_CONNECT_PROTOCOL in client.server_settings,
                    what="extended CONNECT")
        ws = open_ws(client, "/ws/scope", scheme="https")
        scope = json.loads(ws.message())
        check_extension(scope["extensions"]["tls"], expected)


def test_no_tls_extension_in_cleartext(start_server):
    server = start_server()
    assert "extensions" not in server.http.get("/echo").json()


def test_workers_serve_a_renewed_certificate_after_a_reload(start_server, tmp_path):
    from tests.certs import make_certificate

    live, renewed = tmp_path / "live", tmp_path / "renewed"
    live.mkdir()
    renewed.mkdir()
    key, cert = make_certificate(live)
    server = start_server("--workers", "1",
                          "-e", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    server.wait_for("Server ready")
    first = served_fingerprint(server)
    new_key, new_cert = make_certificate(renewed)
    key.write_bytes(new_key.read_bytes())
    cert.write_bytes(new_cert.read_bytes())
    server.signal(signal.SIGHUP)
    old = server.wait_for(r"Reloaded: workers \d+ serve; (\d+) drain").group(1)
    server.wait_for(rf"Worker {old} stopped")  # its listening socket with it
    assert served_fingerprint(server) == file_fingerprint(new_cert) != first


@pytest.mark.parametrize("endpoint_extra, args, message", [
    (":sslmethod=TLSv1_2_METHOD", [], "sslmethod= pins one TLS version"),
    ("", ["--ssl-ciphers", "eNULL:@SECLEVEL=0"],
     "--ssl-ciphers 'eNULL:@SECLEVEL=0': OpenSSL cannot use it"),
])
def test_tls_settings_that_would_not_apply_stop_the_start(start_server, endpoint_extra, args,
                                                          message):
    from tests.conftest import certificate

    key, cert = certificate()
    server = start_server("-e", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
                          + endpoint_extra, *args, ready=False)
    assert server.wait_exit() == 1
    assert message in server.output, server.output


def test_an_sslmethod_of_any_version_keeps_the_minimum(start_server):
    from tests.conftest import certificate

    key, cert = certificate()
    server = start_server("-e", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
                          ":sslmethod=SSLv23_METHOD", "--ssl-minimum-version", "1.3")
    twelve = client_context()
    twelve.maximum_version = ssl.TLSVersion.TLSv1_2
    assert tls_get(server, context=twelve) is None
    assert tls_get(server).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("endpoint, args, message", [
    ("haproxy:ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}", [],
     "would read the PROXY header inside TLS"),
    ("haproxy:tcp:0:interface=127.0.0.1", ["--proxy-protocol"],
     "reads a PROXY header itself: with --proxy-protocol each connection would need two"),
])
def test_haproxy_endpoints_that_cannot_work_are_refused(start_server, endpoint, args,
                                                        message):
    from tests.conftest import certificate

    key, cert = certificate()
    server = start_server("-e", endpoint.format(key=key, cert=cert), *args, ready=False)
    assert server.wait_exit() == 1
    assert message in server.output, server.output
