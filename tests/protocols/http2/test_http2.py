"""HTTP/2 over real sockets: negotiation (ALPN, prior knowledge, h2c), the ASGI mapping,
flow control both ways, the options, the known attacks, graceful shutdown.

Clients: httpx over TLS, curl, and the h2 library as a raw client (tests/h2client.py) for
everything that needs to see or forge frames."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
import uuid

import httpx
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.certs import make_certificate
from tests.conftest import ServerProcess, read_response
from tests.h2client import PREFACE, SETTINGS, H2Client, get

MIB = 1024 * 1024


def start(*args: str) -> ServerProcess:
    proc = ServerProcess(["-p", "0", *args, "tests.apps:app"])
    try:
        return proc.wait_ready()
    except BaseException:
        proc.stop()
        raise


@pytest.fixture(scope="module")
def h2server():
    """Default options: what most tests talk to."""
    proc = start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def tuned():
    """Every HTTP/2 size option set away from its default."""
    proc = start("--http2-max-concurrent-streams", "5", "--http2-initial-window-size", "16384",
                 "--http2-max-frame-size", "32768", "--http2-max-header-list-size", "4096")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("certs"))


def tls_server(start_server, certificate, *args):
    key, cert = certificate
    return start_server("-e", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
                        *args)


def client_context(certificate, alpn=("h2", "http/1.1")) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certificate[1]))
    context.set_alpn_protocols(list(alpn))
    return context


def scope_of(response) -> dict:
    assert response.status == 200, (response.status, bytes(response.body))
    return json.loads(bytes(response.body))


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args],
                          capture_output=True, text=True, timeout=15)


def rss(server: ServerProcess) -> int:
    """The server process's resident memory, in bytes."""
    with open(f"/proc/{server.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def still_serves(server: ServerProcess) -> None:
    """A fresh HTTP/2 connection is answered: the attack cost only its own connection."""
    assert get(server.port, "/echo").status == 200


def read_all_output(server: ServerProcess) -> None:
    """Return once every line the server printed so far has been read."""
    token = uuid.uuid4().hex
    assert get(server.port, f"/mark?text={token}").status == 200
    server.wait_for(f"mark: {token}$")


def progress(server: ServerProcess, name: str) -> int:
    return int(httpx.get(f"{server.url}/progress?name={name}").text)


# -- negotiation


def test_alpn_h2_over_tls_with_httpx(start_server, certificate):
    server = tls_server(start_server, certificate)
    url = f"https://localhost:{server.port}/echo"
    with httpx.Client(http2=True, verify=client_context(certificate)) as client:
        response = client.get(url)
        assert response.http_version == "HTTP/2"
        scope = response.json()
        assert scope["http_version"] == "2" and scope["scheme"] == "https"
        assert ["host", f"localhost:{server.port}"] in scope["headers"]
    # a client that offers only HTTP/1.1 by ALPN still gets it on the same port
    with httpx.Client(http2=False, verify=client_context(certificate)) as client:
        response = client.get(url)
        assert response.http_version == "HTTP/1.1"
        assert response.json()["http_version"] == "1.1"
    # and one that offers only http/1.0 (curl --http1.0) is not refused in the handshake
    result = curl("--http1.0", "--cacert", str(certificate[1]), url)
    assert result.returncode == 0, result
    assert json.loads(result.stdout)["http_version"] == "1.0"


def test_curl_prior_knowledge(h2server):
    result = curl("--http2-prior-knowledge", "-d", "hello", "-w", "\n%{http_version}",
                  f"{h2server.url}/echo")
    body, _, version = result.stdout.rpartition("\n")
    assert version == "2", result
    scope = json.loads(body)
    assert scope["http_version"] == "2" and scope["method"] == "POST"
    assert scope["body"] == "hello"


def test_curl_h2c_upgrade(server):
    """Upgrade: h2c under both HTTP/1.1 parsers; the upgrade request is stream 1."""
    result = curl("--http2", "-w", "\n%{http_version}", f"{server.url}/echo?x=1")
    body, _, version = result.stdout.rpartition("\n")
    assert version == "2", result
    scope = json.loads(body)
    assert scope["http_version"] == "2" and scope["query_string"] == "x=1"
    names = [name for name, _ in scope["headers"]]
    assert "http2-settings" not in names and "upgrade" not in names
    # a request with a body is not upgraded (RFC 7540 3.2 lets the server choose): it is
    # served as HTTP/1.1, body included
    result = curl("--http2", "-d", "abc", "-w", "\n%{http_version}", f"{server.url}/echo")
    body, _, version = result.stdout.rpartition("\n")
    assert version == "1.1", result
    assert json.loads(body)["body"] == "abc"


@pytest.mark.parametrize("settings", [b"AAM", b"!!!!", b"AAIAAAAC"])  # padding, alphabet,
def test_h2c_upgrade_with_bad_settings_is_served_as_http11(server, settings):  # ENABLE_PUSH=2
    """A bad HTTP2-Settings is found before the 101 goes out: the request is answered over
    HTTP/1.1, where a 101 followed by a silent close left the client with nothing."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                     b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n")
        status, _, body = read_response(sock, bytearray())
    assert status == 200 and json.loads(body)["http_version"] == "1.1"


def test_h2_library_prior_knowledge_and_default_settings(h2server):
    with H2Client(h2server.port) as client:
        scope = scope_of(client.response(client.request("/echo")))
        assert scope["http_version"] == "2"
        settings = client.server_settings
    assert settings[SETTINGS.MAX_CONCURRENT_STREAMS] == 100
    assert settings[SETTINGS.INITIAL_WINDOW_SIZE] == 65535
    assert settings[SETTINGS.MAX_FRAME_SIZE] == 16384
    assert settings[SETTINGS.MAX_HEADER_LIST_SIZE] == 65536
    assert settings[SETTINGS.ENABLE_PUSH] == 0


def test_http11_still_served_on_the_same_port(h2server):
    response = httpx.get(h2server.url + "/echo")
    assert response.http_version == "HTTP/1.1" and response.json()["http_version"] == "1.1"


def test_http2_off(start_server, certificate):
    server = tls_server(start_server, certificate, "--http2", "off")
    with httpx.Client(http2=True, verify=client_context(certificate)) as client:
        response = client.get(f"https://localhost:{server.port}/echo")
    assert response.http_version == "HTTP/1.1"
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        tls = client_context(certificate, alpn=("h2",))
        # offering only h2: the server has nothing in common and refuses the handshake
        with pytest.raises(ssl.SSLError):
            tls.wrap_socket(raw, server_hostname="localhost")
    plain = start_server("--http2", "off")
    with socket.create_connection(("127.0.0.1", plain.port), timeout=5) as raw:
        raw.sendall(PREFACE)
        answer = raw.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    result = curl("--http2", "-w", "\n%{http_version}", f"{plain.url}/echo")
    assert result.stdout.rpartition("\n")[2] == "1.1", result


# -- the ASGI mapping


def test_scope_from_pseudo_headers(h2server):
    with H2Client(h2server.port) as client:
        sid = client.request("/echo/a%20b?x=1", authority="example.com:8443", scheme="https",
                             headers=[(b"x-custom", b"v"), (b"cookie", b"a=1"),
                                      (b"cookie", b"b=2")])
        scope = scope_of(client.response(sid))
        assert scope["http_version"] == "2"
        # a client's :scheme is not believed (tests/asgi/test_proxy_trust.py): the connection's
        assert scope["scheme"] == "http"
        assert scope["method"] == "GET"
        assert scope["path"] == "/echo/a b" and scope["raw_path"] == "/echo/a%20b"
        assert scope["query_string"] == "x=1"
        assert scope["headers"][0] == ["host", "example.com:8443"]
        assert ["x-custom", "v"] in scope["headers"]
        assert not any(name.startswith(":") for name, _ in scope["headers"])
        assert scope["extensions"] == {"http.response.trailers": {}}
        scope = scope_of(client.response(client.request("/echo", scheme="http")))
        assert scope["scheme"] == "http"


def test_malformed_requests_are_reset_and_the_connection_goes_on(h2server):
    """A :method that is no token, a :path that is not "/..." (or "*" for OPTIONS), or holds
    what HTTP/1.1 would refuse: malformed (RFC 9113 8.3.1), so RST_STREAM(PROTOCOL_ERROR)."""
    with lenient(H2Client(h2server.port)) as client:
        for method, path in ((b"G\xc3\x89T", b"/echo"), (b"GET", b"echo"),
                             (b"GET", b"/a b"), (b"GET", b"*"), (b"GET", b"")):
            sid = client.send_headers([(b":method", method), (b":scheme", b"http"),
                                       (b":authority", b"x"), (b":path", path)])
            response = client.response(sid)
            assert response.reset == ErrorCodes.PROTOCOL_ERROR, (method, path, response)
            assert not response.headers and not response.body
        assert client.response(client.request("/echo")).status == 200
        assert client.goaway is None


def lenient(client: H2Client) -> H2Client:
    """Let the test client send header blocks that h2 would refuse to send."""
    client.h2.config.validate_outbound_headers = False
    client.h2.config.normalize_outbound_headers = False
    return client


def fields(*extra, method=b"GET", path=b"/record?id=h2-malformed", authority=b"localhost",
           scheme=b"http"):
    """A request header block; ``None`` for a pseudo-header leaves it out."""
    pseudo = [(b":method", method), (b":scheme", scheme), (b":authority", authority),
              (b":path", path)]
    return [(n, v) for n, v in pseudo if v is not None] + list(extra)


MALFORMED = {
    "uppercase name": fields((b"X-Upper", b"v")),
    "space in name": fields((b"x y", b"v")),
    "colon in name": fields((b"x:y", b"v")),
    "empty name": fields((b"", b"v")),
    "connection": fields((b"connection", b"keep-alive")),
    "transfer-encoding": fields((b"transfer-encoding", b"chunked")),
    "upgrade": fields((b"upgrade", b"websocket")),
    "keep-alive": fields((b"keep-alive", b"5")),
    "proxy-connection": fields((b"proxy-connection", b"close")),
    "te gzip": fields((b"te", b"gzip")),
    "NUL in value": fields((b"x-v", b"a\x00b")),
    "CR in value": fields((b"x-v", b"a\rb")),
    "LF in value": fields((b"x-v", b"a\nb")),
    "vertical tab in value": fields((b"x-v", b"a\x0bb")),
    "NEL in value": fields((b"x-v", b"a\x85b")),
    "leading space in value": fields((b"x-v", b" a")),
    "trailing tab in value": fields((b"x-v", b"a\t")),
    "NUL in :authority": fields(authority=b"local\x00host"),
    "pseudo after field": [*fields(path=None), (b"x-v", b"1"),
                           (b":path", b"/record?id=h2-malformed")],
    "unknown pseudo": [(b":foo", b"bar"), *fields()],
    "response pseudo": [(b":status", b"200"), *fields()],
    "repeated :path": [(b":path", b"/record?id=h2-malformed"), *fields()],
    "repeated :method": [(b":method", b"GET"), *fields()],
    "repeated :scheme": [(b":scheme", b"http"), *fields()],
    "no :scheme": fields(scheme=None),
    "no :path": fields(path=None),
    "empty :path": fields(path=b""),
    "no :method": fields(method=None),
    ":protocol on GET": [(b":protocol", b"websocket"), *fields()],
    "two hosts": fields((b"host", b"localhost"), (b"host", b"localhost")),
    "host differs from :authority": fields((b"host", b"evil.example")),
    "content-length not a number": fields((b"content-length", b"abc")),
    "signed content-length": fields((b"content-length", b"+5")),
    "differing content-lengths": fields((b"content-length", b"5"), (b"content-length", b"6")),
    "content-length with an ended stream": fields((b"content-length", b"5")),
}


@pytest.mark.parametrize("block", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_header_block_resets_its_stream_alone(h2server, block):
    """RFC 9113 8.1.1: a malformed request is a stream error of type PROTOCOL_ERROR. h2 alone
    would end the whole connection, with every other request on it: here the stream is
    reset, no application sees the request, and the connection goes on."""
    with lenient(H2Client(h2server.port)) as client:
        before = client.request("/record?id=h2-before", method="POST", body=b"x",
                                end_stream=False)
        bad = client.send_headers(block)
        response = client.response(bad)
        assert response.reset == ErrorCodes.PROTOCOL_ERROR, response
        assert not response.headers and not response.body
        client.send_data(before, b"y", end_stream=True)
        assert bytes(client.response(before).body) == b"xy"
        assert client.response(client.request("/echo")).status == 200
        assert client.goaway is None
        recorded = json.loads(bytes(client.response(client.request("/recorded")).body))
        assert "h2-malformed" not in recorded


def test_request_without_any_host_gets_400(h2server):
    """No :authority and no host is no malformed frame, but an HTTP request that names no
    host, refused as over HTTP/1.1."""
    with lenient(H2Client(h2server.port)) as client:
        response = client.response(client.send_headers(fields(authority=None)))
        assert response.status == 400 and b"no :authority or host" in response.body
        assert client.goaway is None


def test_header_blocks_at_the_edge_of_malformed_are_served(h2server):
    with lenient(H2Client(h2server.port)) as client:
        for block in (fields((b"te", b"trailers")), fields((b"host", b"localhost")),
                      fields((b"content-length", b"0"), (b"content-length", b"0")),
                      fields((b"x-v", b"inner space and \x80 latin-1"), (b"x-empty", b"")),
                      fields(authority=None) + [(b"host", b"localhost")]):
            assert client.response(client.send_headers(block)).status == 200, block


def test_body_that_disagrees_with_its_content_length_resets_its_stream(h2server):
    """Longer than its content-length, or ended shorter: the stream is reset with
    PROTOCOL_ERROR, its application hears http.disconnect, and the connection goes on."""
    def recorded():
        return httpx.get(h2server.url + "/recorded").json()

    with H2Client(h2server.port) as client:
        long = client.request("/record?id=h2len-long", method="POST",
                              headers=[(b"content-length", b"3")], end_stream=False)
        short = client.request("/record?id=h2len-short", method="POST",
                               headers=[(b"content-length", b"10")], end_stream=False)
        deadline = time.monotonic() + 10
        while not {"h2len-long", "h2len-short"} <= set(recorded()):
            assert time.monotonic() < deadline, recorded()
        client.send_data(long, b"12345", end_stream=True)
        client.send_data(short, b"12345", end_stream=True)
        assert client.response(long).reset == ErrorCodes.PROTOCOL_ERROR
        assert client.response(short).reset == ErrorCodes.PROTOCOL_ERROR
        exact = client.request("/record?id=h2len-exact", method="POST",
                               headers=[(b"content-length", b"5")], body=b"12345")
        assert bytes(client.response(exact).body) == b"12345"
        assert client.goaway is None
    seen = [entry for entry in recorded() if entry.startswith("h2len-")]
    assert sorted(seen) == ["h2len-exact", "h2len-exact:complete", "h2len-long",
                            "h2len-long:disconnect", "h2len-short", "h2len-short:disconnect"]


def test_malformed_trailers_reset_their_stream(h2server):
    with lenient(H2Client(h2server.port)) as client:
        for trailer in ((b":path", b"/other"), (b"X-Upper", b"v"), (b"x-v", b"a\r\nb")):
            sid = client.request("/record?id=h2trailer", method="POST", body=b"x",
                                 end_stream=False)
            client.h2.send_headers(sid, [trailer], end_stream=True)
            client.flush()
            assert client.response(sid).reset == ErrorCodes.PROTOCOL_ERROR, trailer
        sid = client.request("/record?id=h2trailer-ok", method="POST", body=b"x",
                             end_stream=False)
        client.h2.send_headers(sid, [(b"x-checksum", b"abc")], end_stream=True)
        client.flush()
        assert bytes(client.response(sid).body) == b"x"
        assert client.goaway is None


def test_many_streams_run_at_once_each_with_its_own_app(h2server):
    """20 requests that each answer only once all 20 are in flight, on one connection."""
    with H2Client(h2server.port) as client:
        ids = [client.request("/barrier?name=twenty&n=20&timeout=5") for _ in range(20)]
        responses = [client.response(sid) for sid in ids]
    assert [(r.status, bytes(r.body)) for r in responses] == [(200, b"20")] * 20


def test_request_body_backpressure_per_stream(h2server):
    """The stream's window reopens only as the application takes the body; a stalled stream
    holds back neither the connection nor the other uploads on it."""
    window = 65535
    with H2Client(h2server.port) as client:
        client.wait(lambda: client.server_settings, what="server SETTINGS")
        gated = client.request("/gated-body?gate=h2up", method="POST", end_stream=False)
        sent = 0
        block = b"u" * 16384
        while True:
            room = client.h2.local_flow_control_window(gated)
            if room:
                client.send_data(gated, block[:room])
                sent += min(room, len(block))
                continue
            deadline = time.monotonic() + 0.5
            while client.h2.local_flow_control_window(gated) == 0 and \
                    time.monotonic() < deadline:
                client.pump(0.1)
            if client.h2.local_flow_control_window(gated) == 0:
                break  # stalled: no window came back for a while
            assert sent < 16 * MIB, "the server kept reopening the window"
        h2server.wait_for("app: gated")
        # held for the app: its first message, then about two windows (one acknowledged
        # while the buffer filled, one left unacknowledged)
        assert window <= sent <= 3 * window + 16384, sent
        # another upload on the same connection is not held back
        other = client.request("/count-body", method="POST", end_stream=False)
        client.upload(other, b"o" * 300_000)
        assert bytes(client.response(other).body).startswith(b"300000 bytes in ")
        assert httpx.get(h2server.url + "/open-gate?gate=h2up").text == "open"
        client.upload(gated, b"u" * (2 * MIB - sent))
        response = client.response(gated)
        assert bytes(response.body) == b"%d" % (2 * MIB)


@pytest.fixture(scope="module")
def h2_body_server():
    """A short body timeout; the idle timeout is long."""
    proc = start("--body-timeout", "0.3", "--http2-idle-timeout", "30")
    yield proc
    proc.stop()


def recorded_by(server: ServerProcess) -> list:
    return httpx.get(server.url + "/recorded").json()


def test_stalled_body_gets_408_and_only_its_stream_is_reset(h2_body_server):
    with H2Client(h2_body_server.port) as client:
        steady = client.request("/count-body", method="POST", end_stream=False)
        stalled = client.request("/record?id=h2bt-stalled", method="POST", body=b"hello",
                                 headers=[(b"content-length", b"10")], end_stream=False)
        deadline = time.monotonic() + 10
        pieces = 0
        while not client.responses[stalled].done:
            # meanwhile the other upload keeps coming, a piece every 0.1 s
            assert time.monotonic() < deadline and not client.closed, client.responses
            client.pump(0.1)
            client.send_data(steady, b"s")
            pieces += 1
        assert not client.responses[steady].done, client.responses[steady]
        response = client.response(stalled)
        assert response.status == 408
        assert bytes(response.body) == b"408 Request Timeout: request body not received in time\n"
        client.send_data(steady, b"", end_stream=True)
        assert bytes(client.response(steady).body).startswith(b"%d bytes in " % pieces)
        assert client.goaway is None
    seen = recorded_by(h2_body_server)
    assert "h2bt-stalled" in seen and "h2bt-stalled:disconnect" in seen


def test_stream_answered_early_is_let_go_when_the_rest_of_its_body_stalls(h2_body_server):
    """Answered before its body ended, a stream takes the rest of the body while the client
    has window for it; when that stops coming for the body timeout, the stream is reset
    without error ("stop sending") and its slot is free again."""
    with H2Client(h2_body_server.port) as client:
        sid = client.request("/no-read", method="POST", end_stream=False)
        response = client.response(sid)
        assert response.status == 200 and response.ended and response.reset is None
        client.send_data(sid, b"some of the rest")
        client.wait(lambda: client.responses[sid].reset is not None, what="the reset")
        assert client.responses[sid].reset == ErrorCodes.NO_ERROR
        assert client.response(client.request("/echo")).status == 200
        assert client.goaway is None


def test_an_http2_body_that_keeps_coming_is_not_cut_off(h2_body_server):
    with H2Client(h2_body_server.port) as client:
        sid = client.request("/count-body", method="POST", end_stream=False)
        for piece in (b"ab", b"cd", b"ef", b"gh", b"ij"):
            # a piece every 0.15 s (while checking nothing came back): each within the
            # 0.3 s timeout, the whole body well over it
            client.pump(0.15)
            assert not client.responses[sid].done, client.responses[sid]
            client.send_data(sid, piece)
        client.send_data(sid, b"", end_stream=True)
        assert bytes(client.response(sid).body).startswith(b"10 bytes in ")


def test_time_the_app_takes_to_read_an_http2_body_is_not_counted(h2_body_server):
    """The stream's window stays closed while the application does not read: the client
    is not to blame for that pause, however long."""
    with H2Client(h2_body_server.port) as client:
        client.wait(lambda: client.server_settings, what="server SETTINGS")
        sid = client.request("/gated-body?gate=h2bt", method="POST", end_stream=False)
        sent = 0
        while True:  # until the server stops reopening the window: it stopped reading
            room = min(client.h2.local_flow_control_window(sid), 16384)
            if room:
                client.send_data(sid, b"g" * room)
                sent += room
                continue
            # a WINDOW_UPDATE answers well within half a second when the server reads on
            quiet_until = time.monotonic() + 0.5
            while not client.h2.local_flow_control_window(sid) and \
                    time.monotonic() < quiet_until:
                client.pump(quiet_until - time.monotonic())
            if not client.h2.local_flow_control_window(sid):
                break
            assert sent < MIB // 2, "the server kept reopening the window"
        h2_body_server.wait_for("app: gated")
        deadline = time.monotonic() + 1.0  # more than three body timeouts
        while time.monotonic() < deadline:
            client.pump(deadline - time.monotonic())
        assert not client.responses[sid].done, client.responses[sid]
        assert httpx.get(h2_body_server.url + "/open-gate?gate=h2bt").text == "open"
        client.upload(sid, b"g" * (MIB - sent))
        assert bytes(client.response(sid).body) == b"%d" % MIB


def test_early_response_stops_the_upload_without_error(h2server):
    """An application that answers without reading the body: the client may still send
    what its window allows (a small body ends cleanly); once it has spent the window on a
    body nobody reads, it is told to stop, without error (RST_STREAM NO_ERROR)."""
    with H2Client(h2server.port) as client:
        sid = client.request("/no-read", method="POST", body=b"x" * 1000, end_stream=False)
        response = client.response(sid)
        assert response.status == 200 and bytes(response.body) == b"not reading your body"
        assert response.reset is None
        window = client.h2.local_flow_control_window(sid)
        while window:
            size = min(window, client.h2.max_outbound_frame_size)
            client.send_data(sid, b"x" * size)
            window -= size
        client.wait(lambda: client.responses[sid].reset is not None, what="the RST")
        assert client.responses[sid].reset == ErrorCodes.NO_ERROR
        assert client.response(client.request("/echo")).status == 200


def test_response_waits_for_the_peer_window(h2server):
    """A client that opens no window gets no more than the window; the app's send waits;
    once the client opens its windows the rest arrives whole."""
    total = 4 * MIB
    with H2Client(h2server.port, auto_ack=False) as client:
        sid = client.request(f"/firehose?total={total}&name=h2win")
        client.wait(lambda: client.received_data == 65535, what="one window of data")
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            client.pump(0.05)
            assert progress(h2server, "h2win") <= 2 * 65536
        assert client.received_data == 65535
        client.auto_ack = True
        client.h2.acknowledge_received_data(65535, sid)
        client.flush()
        response = client.response(sid, timeout=30)
    assert response.status == 200 and len(response.body) == total


def test_window_opened_by_settings_resumes_the_response(h2server):
    """SETTINGS_INITIAL_WINDOW_SIZE moves every stream's window with no WINDOW_UPDATE."""
    with H2Client(h2server.port, settings={SETTINGS.INITIAL_WINDOW_SIZE: 0}) as client:
        sid = client.request("/big?size=50000")  # within the connection's window
        client.wait(lambda: client.responses[sid].headers, what="response headers")
        client.pump(0.3)
        assert client.received_data == 0
        client.h2.update_settings({SETTINGS.INITIAL_WINDOW_SIZE: 65535})
        client.flush()
        response = client.response(sid)
    assert len(response.body) == 50000


def test_client_reset_disconnects_that_stream_alone(h2server):
    with H2Client(h2server.port) as client:
        ids = {tag: client.request(f"/record?id=h2rst-{tag}", method="POST", body=b"part-",
                                   end_stream=False) for tag in "abc"}

        def recorded():
            return httpx.get(h2server.url + "/recorded").json()

        deadline = time.monotonic() + 10
        while not {"h2rst-a", "h2rst-b", "h2rst-c"} <= set(recorded()):
            assert time.monotonic() < deadline, recorded()
        client.reset(ids["b"])
        while "h2rst-b:disconnect" not in recorded():
            assert time.monotonic() < deadline, recorded()
        for tag in "ac":
            client.send_data(ids[tag], tag.encode(), end_stream=True)
        for tag in "ac":
            assert bytes(client.response(ids[tag]).body) == b"part-" + tag.encode()
    seen = [entry for entry in recorded() if entry.startswith("h2rst-")]
    assert sorted(seen) == ["h2rst-a", "h2rst-a:complete", "h2rst-b", "h2rst-b:disconnect",
                            "h2rst-c", "h2rst-c:complete"]


def test_trailers(h2server):
    with H2Client(h2server.port) as client:
        response = client.response(client.request("/trailers", headers=[(b"te", b"trailers")]))
    assert response.status == 200 and bytes(response.body) == b"body!"
    assert response.trailers == [(b"x-checksum", b"abc"), (b"x-count", b"2")]


def test_response_headers_made_fit_for_http2(h2server):
    """Names lower-cased, connection-specific fields dropped, values without surrounding
    whitespace (RFC 9113 8.2): a strict client (httpx's h2, which validates what it
    receives) takes the response."""
    with H2Client(h2server.port) as client:
        response = client.response(client.request("/odd-headers"))
    assert (b"x-mixed-case", b"padded") in response.headers
    assert (b"x-empty", b"") in response.headers
    assert response.header(b"keep-alive") is None
    with httpx.Client(http1=False, http2=True) as strict:
        answer = strict.get(h2server.url + "/odd-headers")
    assert answer.http_version == "HTTP/2"
    assert answer.headers["x-mixed-case"] == "padded" and answer.text == "odd"


def test_no_body_after_204(h2server):
    with H2Client(h2server.port) as client:
        response = client.response(client.request("/no-content"))
        assert response.status == 204 and response.ended and client.received_data == 0


@pytest.fixture(scope="module")
def as_told():
    """tests.h2ws_apps:app, whose /h2x-respond sends the response its query describes."""
    proc = ServerProcess(["-p", "0", "tests.h2ws_apps:app"]).wait_ready()
    yield proc
    proc.stop()


def told(**query: str) -> str:
    return "/h2x-respond?" + "&".join(f"{k}={v}" for k, v in query.items())


@pytest.mark.parametrize("query, settings, reason", [
    # an invalid one is refused by the ASGI layer: the application's send raises
    (dict(h="content-length:abc", parts="5"), None, r"invalid content-length b'abc'"),
    (dict(h="content-length:5,content-length:6", parts="5"), None,
     r"invalid content-length b'6'"),
    (dict(h="content-length:10", parts="5"), None,
     r"cannot be sent \(less body than its Content-Length\); answered 500"),
    (dict(h="content-length:3", parts="5"), None,
     r"cannot be sent \(more body than its Content-Length\); answered 500"),
    (dict(big="2000", parts="2"), {SETTINGS.MAX_HEADER_LIST_SIZE: 1000},
     r"cannot be sent \(.*over the client's limit of 1000.*\); answered 500"),
    # a client that announces no limit gets no more than h2 and nghttp2 take without one
    (dict(big="70000", parts="2"), None,
     r"cannot be sent \(.*over the client's limit of 65536.*\); answered 500"),
])
def test_response_a_client_would_refuse_is_replaced_by_500(as_told, query, settings, reason):
    """A head the client would take for malformed (its content-length not the body's
    length, or a header list over the client's SETTINGS_MAX_HEADER_LIST_SIZE) is not sent:
    h2 clients end the whole connection for one, every other stream with it."""
    with H2Client(as_told.port, settings=settings) as client:
        client.pump(1)  # the server has our settings before the request
        response = client.response(client.request(told(**query)))
        assert client.error is None
        assert response.status == 500 and bytes(response.body) == b"Internal Server Error\n"
        assert client.response(client.request("/echo")).status == 200  # the connection goes on
    as_told.wait_for(reason)


def test_large_headers_within_the_client_limit_are_sent(as_told):
    with H2Client(as_told.port, settings={SETTINGS.MAX_HEADER_LIST_SIZE: 200000}) as client:
        client.pump(1)
        response = client.response(client.request(told(big="100000", parts="2")))
        assert response.status == 200 and len(response.header(b"x-big")) == 100000


@pytest.mark.parametrize("query", [
    dict(h="content-length:10", parts="5,0"),  # ends short
    dict(h="content-length:10", parts="5,5,5"),  # goes on past it
    dict(h="content-length:10", parts="5,0", trailers="x-a:1"),  # short, then trailers
])
def test_body_that_breaks_its_content_length_after_the_head_resets_its_stream(as_told, query):
    """The head went out: the client must not take what it got for the whole response,
    and curl, browsers and h2 all reject DATA beyond the content-length."""
    with H2Client(as_told.port) as client:
        response = client.response(client.request(told(**query)))
        assert client.error is None
        assert response.reset == ErrorCodes.INTERNAL_ERROR and not response.ended
        assert len(response.body) <= 10
        assert client.response(client.request("/echo")).status == 200


def test_body_that_keeps_its_content_length_in_pieces_is_sent(as_told):
    with H2Client(as_told.port) as client:
        response = client.response(client.request(told(h="content-length:10", parts="4,6,0")))
        assert response.ended and bytes(response.body) == b"x" * 10
        head = client.response(client.request(told(h="content-length:10", parts="0"),
                                              method="HEAD"))
        assert head.ended and head.header(b"content-length") == b"10"


def test_204_goes_out_without_a_content_length(as_told):
    """RFC 9110 8.6: a 204 has no Content-Length; curl (nghttp2) resets a stream whose 204
    carries one other than 0."""
    url = f"{as_told.url}{told(status='204', h='content-length:4', parts='4')}"
    result = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}", url)
    assert result.returncode == 0 and result.stdout == "204", result.stderr
    with H2Client(as_told.port) as client:
        response = client.response(client.request(told(status="204", h="content-length:4")))
        assert response.status == 204 and response.header(b"content-length") is None


# -- options


def test_settings_carry_the_configured_values(tuned):
    with H2Client(tuned.port) as client:
        client.wait(lambda: client.server_settings, what="server SETTINGS")
        settings = client.server_settings
    assert settings[SETTINGS.MAX_CONCURRENT_STREAMS] == 5
    assert settings[SETTINGS.INITIAL_WINDOW_SIZE] == 16384
    assert settings[SETTINGS.MAX_FRAME_SIZE] == 32768
    assert settings[SETTINGS.MAX_HEADER_LIST_SIZE] == 4096


def test_streams_over_the_limit_are_refused(tuned):
    """Opened before the client could read the SETTINGS: the sixth stream is refused alone,
    the five go on, the connection goes on.  The five are held open by their applications
    (a gate opened only after the refusal), so no timing can let one finish first and free
    a slot for the sixth."""
    gate = "limit-" + uuid.uuid4().hex
    with H2Client(tuned.port) as client:
        held = [client.request(f"/gate-then-body?gate={gate}", method="POST",
                               body=b"%d" % i) for i in range(5)]
        sixth = client.request("/echo")
        assert client.response(sixth).reset == ErrorCodes.REFUSED_STREAM
        assert not any(client.responses[sid].done for sid in held)
        assert httpx.get(tuned.url + f"/open-gate?gate={gate}").status_code == 200
        responses = [client.response(sid) for sid in held]
        assert [(r.status, bytes(r.body)) for r in responses] == [
            (200, b"%d" % i) for i in range(5)]
        assert client.response(client.request("/echo")).status == 200
        assert client.goaway is None


def test_initial_window_size_is_enforced(tuned):
    with H2Client(tuned.port) as client:
        client.wait(lambda: client.server_settings, what="server SETTINGS")
        sid = client.request("/count-body", method="POST", end_stream=False)
        client.raw(DataFrame(sid, data=b"w" * 16385))  # one byte over the stream window
        assert client.wait_goaway().error_code == ErrorCodes.FLOW_CONTROL_ERROR
    still_serves(tuned)


@pytest.mark.parametrize("size, refused", [(32768, False), (32769, True)])
def test_max_frame_size(tuned, size, refused):
    with H2Client(tuned.port) as client:
        # an extension frame, which the server must ignore: only its size matters
        client.raw(size.to_bytes(3, "big") + b"\xfa\x00\x00\x00\x00\x00" + b"e" * size)
        if refused:
            assert client.wait_goaway().error_code == ErrorCodes.FRAME_SIZE_ERROR
        else:
            assert client.response(client.request("/echo")).status == 200
    still_serves(tuned)


def test_oversized_frame_is_refused_on_its_header(h2server):
    """h2 reads a frame once it is whole: the server refuses it from its 9-byte header,
    without buffering the 16 MiB it announces."""
    with H2Client(h2server.port) as client:
        client.wait(lambda: client.server_settings, what="server SETTINGS")
        client.raw(b"\xff\xff\xff\x00\x00\x00\x00\x00\x01" + b"d" * 1000)
        assert client.wait_goaway().error_code == ErrorCodes.FRAME_SIZE_ERROR
        client.wait_closed()
    still_serves(h2server)


@pytest.mark.parametrize("size, refused", [(3000, False), (5000, True)])
def test_max_header_list_size(tuned, size, refused):
    with H2Client(tuned.port) as client:
        sid = client.request("/echo", headers=[(b"x-big", b"h" * size)])
        if refused:
            assert client.wait_goaway().error_code == ErrorCodes.ENHANCE_YOUR_CALM
        else:
            assert ["x-big", "h" * size] in scope_of(client.response(sid))["headers"]
    still_serves(tuned)


def test_idle_timeout_sends_goaway_then_closes(start_server):
    server = start_server("--http2-idle-timeout", "0.3")
    with H2Client(server.port) as client:
        assert client.response(client.request("/echo")).status == 200
        goaway = client.wait_goaway()
        assert goaway.error_code == ErrorCodes.NO_ERROR and goaway.last_stream_id == 1
        client.wait_closed()


def test_h2load_busy_connection_is_no_attack(h2server, tmp_path):
    """Thousands of ordinary requests and uploads on one connection, at full speed, trip
    none of the flood bounds."""
    body = tmp_path / "body"
    body.write_bytes(b"b" * 20000)
    alarms = h2server.output.count("within a second")
    for args in (["-n", "3000", "-c", "1", "-m", "100", f"{h2server.url}/echo"],
                 ["-n", "500", "-c", "1", "-m", "50", "-d", str(body),
                  f"{h2server.url}/count-body"]):
        result = subprocess.run(["h2load", *args], capture_output=True, text=True, timeout=60)
        total = args[1]
        assert f"{total} total, {total} started, {total} done, {total} succeeded" in \
            result.stdout, result.stdout + result.stderr
    read_all_output(h2server)
    assert h2server.output.count("within a second") == alarms


# -- hardening


def test_rapid_reset_gets_enhance_your_calm(h2server):
    """CVE-2023-44487: streams opened and reset at once, far over the bound. The apps of
    reset streams count against the stream limit until they return: no more than 100 of
    these (which never return by themselves) were ever started."""
    with H2Client(h2server.port) as client:
        client.wait(lambda: client.server_settings, what="server SETTINGS")
        try:
            for _ in range(10):
                for _ in range(100):
                    sid = client.h2.get_next_available_stream_id()
                    client.h2.send_headers(sid, [
                        (b":method", b"GET"), (b":scheme", b"http"),
                        (b":authority", b"x"), (b":path", b"/hang")], end_stream=True)
                    client.h2.reset_stream(sid, ErrorCodes.CANCEL)
                client.flush()
        except OSError:
            pass  # the server hung up while we were still at it
        assert client.wait_goaway().error_code == ErrorCodes.ENHANCE_YOUR_CALM
        client.wait_closed()
    h2server.wait_for(r"reset .*streams within a second")
    read_all_output(h2server)
    assert 0 < h2server.output.count("app: hanging") <= 100


@pytest.mark.parametrize("piece, code", [
    (16384, ErrorCodes.ENHANCE_YOUR_CALM),  # the header block's bytes are bounded
    (1, ErrorCodes.PROTOCOL_ERROR),  # and so is its number of frames
])
def test_continuation_flood_is_cut_off(h2server, piece, code):
    before = rss(h2server)
    with H2Client(h2server.port) as client:
        client.wait(lambda: client.server_settings, what="server SETTINGS")
        client.raw(HeadersFrame(1, data=b"\x82\x86\x84", flags=()))  # no END_HEADERS
        sent = 0
        try:
            while sent < 64 * MIB and not client.goaway:
                client.raw(ContinuationFrame(1, data=b"\x00" * piece))
                sent += piece
                client.pump(0)
        except OSError:
            pass
        assert client.wait_goaway().error_code == code
    assert rss(h2server) - before < 16 * MIB
    still_serves(h2server)


def test_hpack_bomb_refused(h2server):
    """A 4 KB header repeated by index: a few KB on the wire, megabytes once decoded."""
    with H2Client(h2server.port) as client:
        client.request("/echo", headers=[(b"x-bomb", b"b" * 4000)] * 1000)
        assert client.wait_goaway().error_code == ErrorCodes.ENHANCE_YOUR_CALM
    still_serves(h2server)


@pytest.mark.parametrize("kind", ["ping", "settings", "empty-data"])
def test_control_frame_floods_get_enhance_your_calm(h2server, kind):
    with H2Client(h2server.port) as client:
        client.wait(lambda: client.server_settings, what="server SETTINGS")
        sid = client.request("/count-body", method="POST", end_stream=False)
        frame = {"ping": PingFrame(0, opaque_data=b"flooding"), "settings": SettingsFrame(0),
                 "empty-data": DataFrame(sid, data=b"")}[kind].serialize()
        try:
            for _ in range(5):
                client.raw(frame * 1000)
                client.pump(0)
        except OSError:
            pass
        assert client.wait_goaway().error_code == ErrorCodes.ENHANCE_YOUR_CALM
    still_serves(h2server)


def test_response_header_table_stays_small(h2server):
    """A client may allow a 1 GiB HPACK table; the server's encoder keeps to 4 KiB (the
    table size it announces in its header blocks is what the client's decoder holds)."""
    with H2Client(h2server.port, settings={SETTINGS.HEADER_TABLE_SIZE: 2**30}) as client:
        for _ in range(3):
            assert client.response(client.request("/headers")).status == 200
        assert client.h2.decoder.header_table_size == 4096
        assert client.h2.decoder.header_table.maxsize == 4096


def test_client_that_never_opens_its_window(h2server):
    """Many streams, no WINDOW_UPDATE ever: the apps wait in send, memory stays flat."""
    before = rss(h2server)
    names = [f"h2closed{i}" for i in range(10)]
    with H2Client(h2server.port, auto_ack=False) as client:
        for name in names:
            client.request(f"/firehose?total={1024 * MIB}&name={name}")
        client.wait(lambda: client.received_data == 65535, what="the connection window")
        client.wait(lambda: all(progress(h2server, n) > 0 for n in names), what="all apps")
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            client.pump(0.05)
            assert sum(progress(h2server, n) for n in names) <= 2 * 65536 * len(names)
        assert client.received_data == 65535
        assert rss(h2server) - before < 32 * MIB


def test_stream_without_window_is_reset_after_the_send_timeout(start_server):
    """A client may hold a response's window shut only so long: that stream is reset and its
    application told; the connection and its other streams go on."""
    server = start_server("--send-timeout", "0.5")
    with H2Client(server.port, auto_ack=False) as client:
        sid = client.request(f"/firehose?total={1024 * MIB}&name=h2shut")
        response = client.response(sid)
        assert response.reset == ErrorCodes.CANCEL and client.received_data == 65535
        server.wait_for("no flow-control window for its response")
        client.auto_ack = True
        client.h2.acknowledge_received_data(65535, sid)  # the connection's window only
        assert client.response(client.request("/echo")).status == 200
        assert client.goaway is None
    assert progress(server, "h2shut") == 65536  # its send raised: it stopped there


def test_client_goaway_lets_its_streams_finish(h2server):
    """RFC 9113 6.8: a client that sends GOAWAY still waits for the answers to the streams
    it opened. They come; then the server says GOAWAY too and closes."""
    with H2Client(h2server.port) as client:
        sid = client.request("/gated-body?gate=h2goaway", method="POST", body=b"abc",
                             end_stream=False)
        h2server.wait_for("app: gated")
        client.raw(GoAwayFrame(0, last_stream_id=0, error_code=ErrorCodes.NO_ERROR))
        assert httpx.get(h2server.url + "/open-gate?gate=h2goaway").text == "open"
        client.send_data(sid, b"de", end_stream=True)
        assert bytes(client.response(sid).body) == b"5"
        assert client.wait_goaway().error_code == ErrorCodes.NO_ERROR
        client.wait_closed()


def test_client_goaway_with_an_error_ends_the_connection_at_once(h2server):
    with H2Client(h2server.port) as client:
        sid = client.request("/record?id=h2goaway-err", method="POST", body=b"x",
                             end_stream=False)
        client.wait(lambda: "h2goaway-err" in recorded_by(h2server), what="app started")
        client.raw(GoAwayFrame(0, last_stream_id=0, error_code=ErrorCodes.INTERNAL_ERROR))
        client.wait_closed()
        assert not client.responses[sid].done
    assert "h2goaway-err:disconnect" in recorded_by(h2server)


def test_goaway_is_found_however_the_bytes_are_split():
    """The frame walk that takes a client's GOAWAY out of the byte stream, fed every way
    the bytes could arrive: what reaches h2 is the rest, in order, untouched."""
    from django_daphne.protocols.http2.guards import FrameScreen

    before = (PREFACE + SettingsFrame(0).serialize()
              + HeadersFrame(1, data=b"h" * 30, flags=["END_HEADERS"]).serialize()
              + DataFrame(1, data=b"d" * 100).serialize())
    goaway = GoAwayFrame(0, last_stream_id=0, error_code=5).serialize()
    after = PingFrame(0, opaque_data=b"12345678").serialize()
    wire = before + goaway + after
    for first in range(len(wire) + 1):
        for second in (first, min(first + 7, len(wire)), min(first + 40, len(wire))):
            state = FrameScreen(16384, 65536)
            passed, codes = [], []
            for piece in (wire[:first], wire[first:second], wire[second:]):
                out, code = state.screen(piece)
                passed.append(out)
                if code is not None:
                    codes.append(code)
            assert b"".join(passed) == before + after, (first, second)
            assert codes == [5] and state.held == b"" and state.skip == 0, (first, second)


def test_a_frame_the_walk_refuses_comes_with_the_bytes_h2_has_not_had():
    """For h2 to read them first: an error among them is the connection's first."""
    from django_daphne.protocols.http2.guards import FrameError, FrameScreen

    before = PREFACE + SettingsFrame(0).serialize() + PingFrame(0).serialize()
    stray = ContinuationFrame(1, flags=["END_HEADERS"]).serialize()
    for cut in (0, 9, len(before)):
        state = FrameScreen(16384, 65536)
        passed = state.screen(before[:cut])[0] if cut else b""
        with pytest.raises(FrameError) as error:
            state.screen(before[cut:] + stray)
        assert passed + error.value.before == before, cut
    router = RecordingRouter()
    state = FrameScreen(16384, 65536, router)
    request = HeadersFrame(1, data=b"h", flags=["END_HEADERS", "END_STREAM"]).serialize()
    with pytest.raises(FrameError) as error:
        state.screen(before + request + PingFrame(0).serialize() + stray)
    assert router.log[0] == ("h2", before)  # (handed on before the request was offered)
    assert error.value.before == PingFrame(0).serialize()


class RecordingRouter:
    """A lean path that takes every request HEADERS, and RST_STREAM and WINDOW_UPDATE on
    the streams it took; it writes down what the frame walk hands it, in order."""

    offering = True
    closed = False

    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.open: set[int] = set()

    def deliver(self, data: bytes) -> None:
        self.log.append(("h2", data))

    def offer(self, kind, flags, stream_id, data, start, end) -> bool:
        self.log.append(("offer", kind, stream_id, data[start:end]))
        if kind == 1:
            self.open.add(stream_id)
            return True
        return stream_id in self.open

    def lean_open(self, stream_id: int) -> bool:
        return stream_id in self.open

    def end_lean(self, stream_id: int) -> None:
        self.log.append(("end", stream_id))
        self.open.discard(stream_id)


def test_lean_frames_are_offered_whole_and_in_order_however_the_bytes_are_split():
    """The frame walk's offers to the lean path, fed every way the bytes could arrive: each
    offered frame whole, after every byte before it went to h2; the frames taken never
    reach h2; a DATA frame on a stream the lean path holds ends it before h2 sees it."""
    from django_daphne.protocols.http2.guards import FrameScreen

    lean_request = HeadersFrame(1, data=b"r" * 20, flags=["END_HEADERS", "END_STREAM"])
    window = WindowUpdateFrame(1, window_increment=1000).serialize()
    with_body = HeadersFrame(3, data=b"h" * 30, flags=["END_HEADERS"]).serialize()
    body = DataFrame(3, data=b"d" * 50).serialize()
    declined = WindowUpdateFrame(3, window_increment=5).serialize()
    stray = DataFrame(1, data=b"x" * 10).serialize()
    ping = PingFrame(0, opaque_data=b"12345678").serialize()
    start = PREFACE + SettingsFrame(0).serialize()
    wire = (start + lean_request.serialize() + window + with_body + body + declined + stray
            + ping)
    to_h2 = start + with_body + body + declined + stray + ping
    offers = [("offer", 1, 1, lean_request.serialize()), ("offer", 8, 1, window),
              ("offer", 8, 3, declined)]
    for first in range(len(wire) + 1):
        for second in (first, min(first + 5, len(wire)), min(first + 33, len(wire))):
            router = RecordingRouter()
            screen = FrameScreen(16384, 65536, router)
            for piece in (wire[:first], wire[first:second], wire[second:]):
                rest, code = screen.screen(piece)
                assert code is None
                router.deliver(rest)
            passed = b"".join(e[1] for e in router.log if e[0] == "h2")
            assert passed == to_h2, (first, second)
            assert [e for e in router.log if e[0] == "offer"] == offers, (first, second)
            ended = [i for i, e in enumerate(router.log) if e[0] == "end"]
            assert [router.log[i] for i in ended] == [("end", 1)]
            # ended before the stray DATA went to h2, after everything before it had
            before = b"".join(e[1] for e in router.log[:ended[0]] if e[0] == "h2")
            assert before == start + with_body + body + declined, (first, second)


def test_a_goaway_taken_out_does_not_reorder_what_h2_gets():
    """With the lean path, h2's bytes go out as the walk goes: those before a client's
    GOAWAY reach h2 before a lean frame after it is offered, and before the bytes after it
    (a body split around them once reached the application out of order)."""
    from django_daphne.protocols.http2.guards import FrameScreen

    start = PREFACE + SettingsFrame(0).serialize()
    with_body = HeadersFrame(1, data=b"h" * 30, flags=["END_HEADERS"]).serialize()
    body = DataFrame(1, data=b"0123456789", flags=["END_STREAM"]).serialize()
    goaway = GoAwayFrame(0, last_stream_id=0).serialize()
    ping = PingFrame(0, opaque_data=b"12345678").serialize()
    lean = HeadersFrame(3, data=b"r" * 20, flags=["END_HEADERS", "END_STREAM"]).serialize()
    wire = start + with_body + body + goaway + ping + lean
    for first in range(len(wire) + 1):
        router = RecordingRouter()
        screen = FrameScreen(16384, 65536, router)
        for piece in (wire[:first], wire[first:]):
            rest, _ = screen.screen(piece)
            router.deliver(rest)
        [offer] = [i for i, e in enumerate(router.log) if e[0] == "offer"]
        before = b"".join(e[1] for e in router.log[:offer] if e[0] == "h2")
        assert before == start + with_body + body + ping, first
        assert b"".join(e[1] for e in router.log if e[0] == "h2") == before, first


def test_a_lean_stream_that_h2s_bytes_finished_is_not_ended_again():
    """A DATA frame on a lean stream ends it, unless the bytes h2 got just before (a
    WINDOW_UPDATE that let its response finish, say) already closed it: then h2 alone
    answers the frame."""
    from django_daphne.protocols.http2.guards import FrameScreen

    class Finishing(RecordingRouter):
        def deliver(self, data: bytes) -> None:
            super().deliver(data)
            self.open.discard(1)  # the window those bytes opened let stream 1 finish

    router = Finishing()
    screen = FrameScreen(16384, 65536, router)
    screen.screen(PREFACE + SettingsFrame(0).serialize())
    rest, _ = screen.screen(
        HeadersFrame(1, data=b"r", flags=["END_HEADERS", "END_STREAM"]).serialize())
    assert router.open == {1} and rest == b""
    stray = DataFrame(1, data=b"x").serialize()
    rest, _ = screen.screen(WindowUpdateFrame(0, window_increment=100).serialize() + stray)
    assert not [e for e in router.log if e[0] == "end"]
    assert rest == stray  # h2's to answer


def test_a_continuation_outside_a_header_block_ends_the_connection():
    """RFC 9113 6.10, whatever the state of the stream it names."""
    from django_daphne.protocols.http2.guards import FrameError, FrameScreen

    screen = FrameScreen(16384, 65536)
    screen.screen(PREFACE + SettingsFrame(0).serialize()
                  + HeadersFrame(1, data=b"h", flags=["END_HEADERS"]).serialize())
    with pytest.raises(FrameError) as error:
        screen.screen(ContinuationFrame(1, data=b"c", flags=["END_HEADERS"]).serialize())
    assert error.value.code == ErrorCodes.PROTOCOL_ERROR


def test_graceful_shutdown_goaway_and_inflight_stream_finishes(start_server):
    server = start_server("--shutdown-timeout", "10")
    with H2Client(server.port) as client:
        assert client.response(client.request("/echo")).status == 200
        sid = client.request("/sleep?seconds=1")
        server.wait_for("app: sleeping")
        server.signal()
        goaway = client.wait_last_goaway()
        assert goaway.error_code == ErrorCodes.NO_ERROR and goaway.last_stream_id == sid
        response = client.response(sid)
        assert response.status == 200 and bytes(response.body) == b"slept"
        client.wait_closed()
    assert server.wait_exit() == 0


def test_graceful_shutdown_ends_when_the_client_resets_its_last_stream(start_server):
    server = start_server("--shutdown-timeout", "30")
    with H2Client(server.port) as client:
        sid = client.request("/sleep?seconds=60")
        server.wait_for("app: sleeping")
        server.signal()
        client.wait_goaway()
        client.reset(sid)
        client.wait_closed()  # at once, not after the 30 s shutdown timeout
    assert server.wait_exit() == 0
    assert "Shutdown timeout" not in server.output


def test_preface_split_after_its_first_byte_is_still_http2(server):
    """A first read of one byte ("P") cannot tell HTTP/2 from HTTP/1.1 yet: wait for more."""
    import h2.config
    import h2.connection
    import h2.events

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [(":method", "GET"), (":path", "/echo"), (":scheme", "http"),
                            (":authority", "x")], end_stream=True)
    data = client.data_to_send()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(data[:1])
        # a round trip on another connection lets the server read that lone byte first
        httpx.get(server.url + "/pid")
        sock.sendall(data[1:])
        body = b""
        ended = False
        while not ended:
            chunk = sock.recv(65536)
            assert chunk, "closed before the response"
            for event in client.receive_data(chunk):
                if isinstance(event, h2.events.DataReceived):
                    body += event.data
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
            sock.sendall(client.data_to_send())
    assert json.loads(body)["http_version"] == "2"
