"""WebSocket over HTTP/2 (RFC 8441, extended CONNECT) over real sockets.

The client is the h2 library (tests/h2client.py) for the stream, with wsproto's sans-I/O
WebSocket framing (the client side, masking included) for what the stream carries: the
same frames a browser sends on an HTTP/2 connection.  And headless Chromium, which opens
its WebSockets this way on an HTTP/2 connection that announces it."""

from __future__ import annotations

import json
import signal

import pytest
from h2.errors import ErrorCodes
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from wsproto.connection import Connection, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason

from tests.certs import make_certificate
from tests.conftest import ServerProcess
from tests.h2client import SETTINGS, H2Client
from tests.protocols.http2.test_http2 import client_context, progress, start, tls_server

from ...browser import start_chromium


@pytest.fixture(scope="module")
def h2server():
    proc = start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("certs"))


class H2WebSocket:
    """One WebSocket on one stream of an H2Client."""

    def __init__(self, client: H2Client, path: str, *, headers: list | None = None,
                 scheme: str = "http", deflate: bool = False) -> None:
        self.client = client
        fields = [(b":method", b"CONNECT"), (b":protocol", b"websocket"),
                  (b":scheme", scheme.encode()), (b":authority", b"localhost"),
                  (b":path", path.encode()), (b"sec-websocket-version", b"13")]
        if deflate:
            fields.append((b"sec-websocket-extensions",
                           b"permessage-deflate; client_max_window_bits"))
        fields.extend(headers or [])
        self.stream_id = client.send_headers(fields, end_stream=False)
        self.response = client.responses[self.stream_id]
        self.deflate = PerMessageDeflate() if deflate else None
        self.ws: Connection | None = None
        self.seen = 0  # bytes of the stream's body fed to wsproto so far
        self.events: list = []

    def wait_answer(self) -> int:
        self.client.wait(lambda: self.response.headers or self.response.done,
                         what=f"an answer on stream {self.stream_id}")
        status = self.response.status
        if status == 200:
            extensions = []
            offer = self.response.header(b"sec-websocket-extensions")
            if self.deflate is not None and offer is not None:
                self.deflate.finalize(offer.decode())
                extensions = [self.deflate]
            self.ws = Connection(ConnectionType.CLIENT, extensions=extensions)
        return status

    def send(self, event) -> None:
        self.client.send_data(self.stream_id, self.ws.send(event))

    def _feed(self) -> None:
        body = self.response.body
        if len(body) > self.seen:
            self.ws.receive_data(bytes(body[self.seen:]))
            self.seen = len(body)
            self.events.extend(self.ws.events())

    def next_event(self, timeout: float = 10.0):
        def ready() -> bool:
            self._feed()
            return bool(self.events) or self.response.done
        self.client.wait(ready, timeout, f"a WebSocket event on stream {self.stream_id}")
        self._feed()
        if not self.events:
            raise AssertionError(f"stream {self.stream_id} ended: {self.response}")
        return self.events.pop(0)

    def message(self) -> str | bytes:
        """The next whole message (text or bytes), answering pings on the way."""
        parts: list = []
        while True:
            event = self.next_event()
            if isinstance(event, Ping):
                self.send(event.response())
                continue
            assert isinstance(event, Message), event
            parts.append(event.data)
            if event.message_finished:
                return "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)


def open_ws(client: H2Client, path: str, **kwargs) -> H2WebSocket:
    ws = H2WebSocket(client, path, **kwargs)
    assert ws.wait_answer() == 200, ws.response
    return ws


# -- negotiation


def test_settings_announce_extended_connect(h2server):
    with H2Client(h2server.port) as client:
        client.wait(lambda: SETTINGS.ENABLE_CONNECT_PROTOCOL in client.server_settings,
                    what="SETTINGS_ENABLE_CONNECT_PROTOCOL")
        assert client.server_settings[SETTINGS.ENABLE_CONNECT_PROTOCOL] == 1


def test_echo_text_and_bytes_with_the_scope(h2server):
    with H2Client(h2server.port) as client:
        ws = open_ws(client, "/ws/scope?room=1",
                     headers=[(b"sec-websocket-protocol", b"chat, superchat")])
        assert ws.response.header(b"x-accepted") == b"yes"
        assert ws.response.header(b"sec-websocket-protocol") == b"chat"
        assert ws.response.header(b"sec-websocket-accept") is None
        scope = json.loads(ws.message())
        assert scope["type"] == "websocket"
        assert scope["http_version"] == "2"
        assert scope["scheme"] == "ws"
        assert scope["path"] == "/ws/scope"
        assert scope["query_string"] == "room=1"
        assert scope["subprotocols"] == ["chat", "superchat"]
        assert ["host", "localhost"] in scope["headers"]
        ws.send(TextMessage("héllo"))
        assert ws.message() == "héllo"
        ws.send(BytesMessage(b"\x00\x01binary"))
        assert ws.message() == b"\x00\x01binary"


def test_over_tls_with_alpn_the_scheme_is_wss(start_server, certificate):
    server = tls_server(start_server, certificate)
    with H2Client(server.port, tls=client_context(certificate)) as client:
        assert client.sock.selected_alpn_protocol() == "h2"
        ws = open_ws(client, "/ws/scope", scheme="https")
        assert json.loads(ws.message())["scheme"] == "wss"


def test_websockets_and_requests_share_one_connection(h2server):
    with H2Client(h2server.port) as client:
        sockets = [open_ws(client, f"/ws/echo{i}") for i in range(5)]
        request = client.request("/echo")
        for i, ws in enumerate(sockets):
            ws.send(TextMessage(f"message {i}"))
        assert [ws.message() for ws in sockets] == [f"message {i}" for i in range(5)]
        assert client.response(request).status == 200


def test_permessage_deflate(h2server):
    with H2Client(h2server.port) as client:
        ws = open_ws(client, "/ws/echo", deflate=True)
        assert ws.response.header(b"sec-websocket-extensions").startswith(
            b"permessage-deflate")
        text = "compress me " * 1000
        ws.send(TextMessage(text))
        assert ws.message() == text
        # what crossed the wire was compressed, both ways
        assert len(ws.response.body) < len(text) // 10


# -- refusals


def test_app_closing_before_accept_gives_403(h2server):
    with H2Client(h2server.port) as client:
        ws = H2WebSocket(client, "/ws/deny")
        assert ws.wait_answer() == 403
        assert client.response(ws.stream_id).done


def test_denial_response_extension(h2server):
    with H2Client(h2server.port) as client:
        ws = H2WebSocket(client, "/ws/deny-custom")
        assert ws.wait_answer() == 418
        response = client.response(ws.stream_id)
        assert response.header(b"x-why") == b"teapot"
        assert bytes(response.body) == b"I am a teapot"


def test_wrong_version_gets_426_naming_13(h2server):
    with H2Client(h2server.port) as client:
        stream_id = client.send_headers([
            (b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"),
            (b":authority", b"localhost"), (b":path", b"/ws/echo"),
            (b"sec-websocket-version", b"8")], end_stream=False)
        response = client.response(stream_id)
        assert response.status == 426
        assert response.header(b"sec-websocket-version") == b"13"
        assert client.response(client.request("/echo")).status == 200


def test_unknown_protocol_gets_501(h2server):
    with H2Client(h2server.port) as client:
        stream_id = client.send_headers([
            (b":method", b"CONNECT"), (b":protocol", b"bytestream"), (b":scheme", b"http"),
            (b":authority", b"localhost"), (b":path", b"/")], end_stream=False)
        assert client.response(stream_id).status == 501


def test_off_announces_nothing_and_refuses_the_stream(start_server):
    server = start_server("--http2-websocket", "off")
    with H2Client(server.port) as client:
        client.wait(lambda: client.server_settings, what="the server's SETTINGS")
        assert client.server_settings.get(SETTINGS.ENABLE_CONNECT_PROTOCOL, 0) == 0
        stream_id = client.send_headers([
            (b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"),
            (b":authority", b"localhost"), (b":path", b"/ws/echo"),
            (b"sec-websocket-version", b"13")], end_stream=False)
        assert client.response(stream_id).reset == ErrorCodes.PROTOCOL_ERROR
        assert client.response(client.request("/echo")).status == 200


# -- closing


def disconnects(client: H2Client) -> list:
    return json.loads(bytes(client.response(client.request("/ws-disconnects")).body))


def test_app_closes_with_code_and_reason_then_the_stream_ends(h2server):
    with H2Client(h2server.port) as client:
        ws = open_ws(client, "/ws/echo")
        ws.send(TextMessage("close"))
        event = ws.next_event()
        assert isinstance(event, CloseConnection)
        assert (event.code, event.reason) == (4000, "bye")
        ws.send(event.response())
        client.wait(lambda: ws.response.done, what="the end of the WebSocket stream")
        assert ws.response.ended


def test_client_close_reaches_the_app(h2server):
    with H2Client(h2server.port) as client:
        ws = open_ws(client, "/ws/client-close")
        ws.send(CloseConnection(code=3001, reason="done here"))
        assert isinstance(ws.next_event(), CloseConnection)  # the server's reply
        client.wait(lambda: ws.response.done, what="the end of the WebSocket stream")
        assert ["/ws/client-close", 3001, "done here"] in disconnects(client)


def test_client_reset_disconnects_that_websocket_alone(h2server):
    with H2Client(h2server.port) as client:
        gone = open_ws(client, "/ws/reset-me")
        stays = open_ws(client, "/ws/stays")
        client.reset(gone.stream_id)
        client.wait(lambda: any(d[:2] == ["/ws/reset-me", 1006] for d in disconnects(client)),
                    what="the reset WebSocket's disconnect")
        stays.send(TextMessage("still here"))
        assert stays.message() == "still here"


def test_oversized_message_is_closed_with_1009(start_server):
    server = start_server("--websocket-max-message-size", "1000")
    with H2Client(server.port) as client:
        ws = open_ws(client, "/ws/echo")
        ws.send(BytesMessage(b"x" * 2000))
        event = ws.next_event()
        assert isinstance(event, CloseConnection)
        assert event.code == CloseReason.MESSAGE_TOO_BIG


# -- keepalive, backpressure, shutdown


def test_keepalive_pings_and_a_silent_peer_is_dropped(start_server):
    server = start_server("--ping-interval", "0.2", "--ping-timeout", "0.3")
    with H2Client(server.port) as client:
        answered = open_ws(client, "/ws/answers")
        silent = open_ws(client, "/ws/silent")
        # the answering peer gets pings and stays; the silent one gets a ping, then is cut
        for _ in range(3):
            event = answered.next_event()
            assert isinstance(event, Ping), event
            answered.send(event.response())
        client.wait(lambda: silent.response.reset is not None, what="the silent stream reset")
        assert silent.response.reset == ErrorCodes.CANCEL
        silent._feed()
        assert any(isinstance(e, Ping) for e in silent.events)  # it was asked, in vain
        answered.send(TextMessage("alive"))
        assert answered.message() == "alive"


def test_client_not_reading_holds_back_the_app(h2server):
    with H2Client(h2server.port, auto_ack=False) as client:
        ws = H2WebSocket(client, "/ws/firehose?name=h2ws&total=67108864")
        assert ws.wait_answer() == 200
        # the client never opens its windows: the app's sends wait, memory stays bounded
        client.wait(lambda: client.received_data >= 60000, what="the first window's worth")
        before = progress(h2server, "h2ws")
        assert 0 < before < 8 * 1024 * 1024
        with H2Client(h2server.port) as other:
            for _ in range(3):  # the server is not busy pushing: other work goes on
                assert other.response(other.request("/echo")).status == 200
        assert progress(h2server, "h2ws") < 8 * 1024 * 1024


def test_graceful_shutdown_closes_with_1001(start_server):
    server = start_server()
    with H2Client(server.port) as client:
        ws = open_ws(client, "/ws/echo")
        server.signal(signal.SIGTERM)
        event = ws.next_event()
        assert isinstance(event, CloseConnection)
        assert event.code == 1001
        ws.send(event.response())
        client.wait_goaway()
        client.wait_closed()
    assert server.wait_exit() == 0


def test_pong_for_a_client_ping(h2server):
    with H2Client(h2server.port) as client:
        ws = open_ws(client, "/ws/echo")
        ws.send(Ping(b"are you there"))
        event = ws.next_event()
        assert isinstance(event, Pong) and event.payload == b"are you there"


# -- a real browser


@pytest.fixture(scope="module")
def browser():
    driver = start_chromium("--ignore-certificate-errors")
    try:
        yield driver
    finally:
        driver.quit()


def page_result(browser, url: str) -> str:
    browser.get(url)
    WebDriverWait(browser, 20).until(
        lambda driver: driver.find_element(By.ID, "result").text != "waiting")
    return browser.find_element(By.ID, "result").text


@pytest.mark.parametrize("setting, expected", [("on", "2 wss echo me"),
                                               ("off", "1.1 wss echo me")])
def test_chromium_opens_its_websocket_over_http2(start_server, certificate, browser,
                                                 setting, expected):
    """Chromium uses the HTTP/2 connection of the page for its WebSocket when the server
    announces extended CONNECT, and a connection of its own over HTTP/1.1 when not."""
    server = tls_server(start_server, certificate, "--http2-websocket", setting)
    assert page_result(browser, f"https://localhost:{server.port}/ws-page") == expected


# -- adversarial cases: every application hears its disconnect, every slot and byte of
# window comes back, nothing one stream does breaks the connection it shares


@pytest.fixture(scope="module")
def xserver():
    """tests.h2ws_apps:app (recording WebSocket routes) with a short connect timeout."""
    proc = ServerProcess(["-p", "0", "--websocket_connect_timeout", "2", "tests.h2ws_apps:app"])
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


def heard(client: H2Client) -> list:
    return json.loads(bytes(client.response(client.request("/wsx-heard")).body))


def wait_heard(client: H2Client, entry: list) -> None:
    client.wait(lambda: entry in heard(client), what=f"the application to hear {entry}")


def test_client_ending_its_side_before_the_answer_resets_the_stream(xserver):
    """No DATA may precede the response HEADERS (RFC 9113 8.1): a client that gives up (an
    END_STREAM, the analogue of a FIN) before the application answers gets RST_STREAM, and
    the application its disconnect."""
    with H2Client(xserver.port) as client:
        ws = H2WebSocket(client, "/wsx/pending?id=halfclose")
        xserver.wait_for("app: wsx pending halfclose")
        client.send_data(ws.stream_id, b"", end_stream=True)
        client.wait(lambda: ws.response.done or client.error is not None,
                    what="the stream's end")
        assert client.error is None
        assert ws.response.reset == ErrorCodes.CANCEL
        wait_heard(client, ["/wsx/pending#halfclose", "websocket.disconnect"])
        assert client.response(client.request("/echo")).status == 200


def test_connection_dropped_mid_handshake_tells_the_app(xserver):
    with H2Client(xserver.port) as client:
        H2WebSocket(client, "/wsx/pending?id=drop")
        xserver.wait_for("app: wsx pending drop")
    with H2Client(xserver.port) as client:
        wait_heard(client, ["/wsx/pending#drop", "websocket.disconnect"])


def test_a_sec_websocket_key_is_ignored_over_http2(h2server):
    """RFC 8441 5: the key has no meaning on a stream; one a client sends anyway (here not
    even valid base64) must not break the WebSocket the application accepted."""
    with H2Client(h2server.port) as client:
        ws = open_ws(client, "/ws/echo", headers=[(b"sec-websocket-key", b"not a key")])
        ws.send(TextMessage("still works"))
        assert ws.message() == "still works"


def test_content_length_on_extended_connect_is_refused(h2server):
    """A WebSocket stream carries no content; with a content-length h2 would count the
    frames against it and end the whole connection at the first message."""
    with H2Client(h2server.port) as client:
        ws = H2WebSocket(client, "/ws/echo", headers=[(b"content-length", b"0")])
        assert ws.wait_answer() == 400
        other = open_ws(client, "/ws/echo")
        other.send(TextMessage("the connection goes on"))
        assert other.message() == "the connection goes on"


def test_no_content_length_in_the_200(xserver):
    """RFC 9110 9.3.6: no Content-Length in a 2xx answer to CONNECT, even one the
    application puts among its accept headers (a client would count DATA against it)."""
    with H2Client(xserver.port) as client:
        ws = open_ws(client, "/wsx/echo?h=content-length:0,x-kept:1")
        assert ws.response.header(b"content-length") is None
        assert ws.response.header(b"x-kept") == b"1"
        ws.send(TextMessage("through"))
        assert ws.message() == "through"
        assert client.error is None


def test_accept_headers_keep_their_order_and_bytes(xserver):
    """Repeated names stay apart and in the application's order; a Latin-1 byte goes out as
    that byte (the query's %C3%A9 is the UTF-8 of é: two bytes, each sent as it is)."""
    with H2Client(xserver.port) as client:
        ws = open_ws(client, "/wsx/echo?h=set-cookie:a%3D1,x-mid:m,set-cookie:b%3D2,"
                             "x-utf:%C3%A9")
        headers = [(n, v) for n, v in ws.response.headers
                   if n in (b"set-cookie", b"x-mid", b"x-utf")]
        assert headers == [(b"set-cookie", b"a=1"), (b"x-mid", b"m"),
                           (b"set-cookie", b"b=2"), (b"x-utf", "é".encode())]


def test_headers_on_an_established_tunnel_reset_it(xserver):
    """RFC 9113 8.5: only DATA and stream management frames on a connected stream; a
    HEADERS frame (trailers) is a stream error, not an orderly close."""
    with H2Client(xserver.port) as client:
        ws = open_ws(client, "/wsx/echo?id=trailers")
        client.h2.send_headers(ws.stream_id, [(b"x-trailer", b"1")], end_stream=True)
        client.flush()
        client.wait(lambda: ws.response.done, what="the tunnel's end")
        assert ws.response.reset == ErrorCodes.PROTOCOL_ERROR
        wait_heard(client, ["/wsx/echo#trailers", "websocket.disconnect", 1006])


@pytest.mark.parametrize("offer, accepted", [
    (b"permessage-deflate; server_max_window_bits=8", None),
    (b"permessage-deflate; unknown=1", None),
    (b"permessage-deflate; client_max_window_bits=abc", None),
    (b"permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
    (b"x-webkit-deflate-frame", None),
    (b"permessage-deflate; server_max_window_bits=99, permessage-deflate",
     b"permessage-deflate"),
])
def test_bad_deflate_offers_are_declined_not_refused(h2server, offer, accepted):
    with H2Client(h2server.port) as client:
        ws = open_ws(client, "/ws/echo", headers=[(b"sec-websocket-extensions", offer)])
        assert ws.response.header(b"sec-websocket-extensions") == accepted
        if accepted is None:
            ws.send(TextMessage("plain"))
            assert ws.message() == "plain"


def flood(client: H2Client, stream_id: int, frame: bytes, limit: int) -> int:
    """Send copies of ``frame`` on the stream as long as the server keeps opening its window,
    up to ``limit`` bytes; return how much went. Whether the window is still closed is asked
    after a request on another stream is answered: the server acknowledges the DATA it
    took while it reads it, before any application can answer."""
    block = frame * (16000 // len(frame))
    sent = 0
    while sent < limit:
        room = min(client.h2.local_flow_control_window(stream_id), len(block))
        if room < len(frame):
            client.response(client.request("/echo"))
            if client.h2.local_flow_control_window(stream_id) < len(frame):
                return sent
            continue
        size = room // len(frame) * len(frame)
        client.send_data(stream_id, block[:size])
        sent += size
        while client.pump(0):
            pass
    return sent


def test_ping_flood_from_a_client_that_takes_no_pongs_is_bounded(h2server):
    """Every ping asks for a pong, which waits while the client keeps the stream's window
    closed: the server stops taking the client's frames once pongs back up, as an HTTP/1.1
    WebSocket stops reading a socket it cannot write to."""
    with H2Client(h2server.port, auto_ack=False) as client:
        client.open_window(2**30)  # the connection's window only: the stream's stays shut
        ws = open_ws(client, "/ws/echo")
        ping = bytes([0x89, 0x80 | 125]) + b"\0\0\0\0" + b"p" * 125  # masked, key 0
        assert flood(client, ws.stream_id, ping, 8 * 1024 * 1024) < 1024 * 1024
        assert client.response(client.request("/echo")).status == 200


def test_half_close_of_a_paused_tunnel_gives_back_the_connection_window(start_server):
    """Body bytes held unacknowledged while the application does not read still count
    against the connection's window: a tunnel that ends must hand them back, or each such
    tunnel shrinks the window every stream of the connection shares, until none can send."""
    # two streams' windows make the connection's whole window: a few such tunnels exhaust it
    server = start_server("--http2-max-concurrent-streams", "2")
    message = bytes([0x82, 0x80 | 125]) + b"\0\0\0\0" + b"m" * 125
    with H2Client(server.port) as client:
        for i in range(3):
            ws = open_ws(client, f"/ws/gated?gate=halfclose{i}")
            # the application takes none of it (it waits on a gate never opened): the
            # stream's window closes on bytes held unacknowledged
            assert 60000 < flood(client, ws.stream_id, message, 1024 * 1024) < 1024 * 1024
            client.send_data(ws.stream_id, b"", end_stream=True)
            client.response(ws.stream_id)  # its end
        stream_id = client.request("/count-body", "POST", end_stream=False)
        client.upload(stream_id, b"u" * 200_000)
        assert bytes(client.response(stream_id).body).startswith(b"200000 bytes")


def test_a_body_left_unread_gives_back_the_connection_window(start_server):
    """The same for an ordinary request: a body the application never reads, whose end
    arrived before the response, still hands back the bytes held unacknowledged."""
    server = start_server("--http2-max-concurrent-streams", "2", app="tests.h2ws_apps:app")
    with H2Client(server.port) as client:
        for i in range(5):
            stream_id = client.request(f"/wsx-no-read?unread{i}", "POST", end_stream=False)
            # past the stream's high-water mark the server holds the rest unacknowledged
            client.upload(stream_id, b"b" * 100_000)
            client.response(client.request(f"/open-gate?gate=unread{i}"))
            assert bytes(client.response(stream_id).body) == b"not read"


def test_closed_websockets_free_their_stream_slots(start_server):
    """Closed either way, and the client never ending its side: the server's END_STREAM and
    RST_STREAM(NO_ERROR) free the slot, so SETTINGS_MAX_CONCURRENT_STREAMS is never used
    up by WebSockets that are gone."""
    server = start_server("--http2-max-concurrent-streams", "2")
    with H2Client(server.port) as client:
        for i in range(6):
            ws = open_ws(client, f"/ws/slot{i}")
            if i % 2:
                ws.send(TextMessage("close"))  # the application closes
                event = ws.next_event()
            else:
                ws.send(CloseConnection(code=1000))
                event = ws.next_event()
            assert isinstance(event, CloseConnection)
            if i % 2:
                ws.send(event.response())
            response = client.response(ws.stream_id)
            assert response.ended and response.reset == ErrorCodes.NO_ERROR
        assert client.response(client.request("/echo")).status == 200


def test_reset_while_the_app_waits_on_the_window_tells_it(xserver):
    """The client resets a tunnel whose echo waits for window it never opens: the pending
    data is dropped and the application, blocked in send, hears websocket.disconnect."""
    with H2Client(xserver.port, auto_ack=False) as client:
        client.open_window(2**30)
        ws = open_ws(client, "/wsx/echo?id=pending")
        client.upload(ws.stream_id, ws.ws.send(BytesMessage(b"e" * 200_000)), False)
        client.wait(lambda: client.received_data >= 65535, what="the stream's window used up")
        client.reset(ws.stream_id)
        wait_heard(client, ["/wsx/echo#pending", "websocket.disconnect", 1006])


def test_connect_timeout_lifetime_and_send_timeout(start_server):
    """--websocket_connect_timeout cancels a stream the application never answers,
    --websocket_timeout closes an open one with 1001, and --send-timeout cancels one whose
    client never opens its window; each application hears its disconnect."""
    server = start_server("--websocket_connect_timeout", "0.3", "--websocket_timeout", "0.6",
                          "--send-timeout", "0.3", app="tests.h2ws_apps:app")
    with H2Client(server.port) as client:
        pending = H2WebSocket(client, "/wsx/pending?id=timeout")
        aged = open_ws(client, "/wsx/echo")
        assert client.response(pending.stream_id).reset == ErrorCodes.CANCEL
        server.wait_for("did not accept within 0.3s")
        wait_heard(client, ["/wsx/pending#timeout", "websocket.disconnect"])
        event = aged.next_event()
        assert isinstance(event, CloseConnection) and event.code == 1001
        aged.send(event.response())
        assert client.response(aged.stream_id).ended
    with H2Client(server.port, auto_ack=False) as client:
        client.open_window(2**30)
        stuck = open_ws(client, "/ws/firehose?name=sendtimeout&total=67108864")
        assert client.response(stuck.stream_id).reset == ErrorCodes.CANCEL
        server.wait_for(f"Reset stream {stuck.stream_id} .*no flow-control window")
        assert client.response(client.request("/echo")).status == 200


def test_a_tunnel_keeps_the_connection_from_idling_out(start_server):
    """The idle timeout is for a connection without streams: a WebSocket answering its
    pings holds it open past that timeout; a silent one dropped by its ping timeout does
    not end the connection before it is idle for that long."""
    server = start_server("--http2-idle-timeout", "0.4", "--ping-interval", "0.3",
                          "--ping-timeout", "0.3")
    with H2Client(server.port) as client:
        ws = open_ws(client, "/ws/echo")
        for _ in range(3):  # 0.9 s and more, over twice the idle timeout
            event = ws.next_event()
            assert isinstance(event, Ping)
            ws.send(event.response())
        ws.send(TextMessage("alive"))
        assert ws.message() == "alive"
        assert client.goaway is None
    server = start_server("--ping-interval", "0.2", "--ping-timeout", "0.2")
    with H2Client(server.port) as client:
        silent = open_ws(client, "/ws/silent")
        assert client.response(silent.stream_id).reset == ErrorCodes.CANCEL
        assert client.response(client.request("/echo")).status == 200
        assert client.goaway is None


def test_graceful_shutdown_with_tunnels_and_requests_mixed(start_server):
    """SIGTERM: GOAWAY naming the last stream; open WebSockets get 1001 (one that never
    answers is cancelled after the close handshake timeout), one the application has not
    answered yet gets 503, an ordinary request in flight finishes; then a clean exit."""
    server = start_server(app="tests.h2ws_apps:app")
    with H2Client(server.port) as client:
        polite = open_ws(client, "/wsx/echo")
        deaf = open_ws(client, "/wsx/echo")
        waiting = H2WebSocket(client, "/wsx/pending?id=shutdown")
        server.wait_for("app: wsx pending shutdown")
        slow = client.request("/sleep?seconds=0.5")
        server.wait_for("app: sleeping")
        server.signal(signal.SIGTERM)
        assert client.wait_last_goaway().last_stream_id == slow
        event = polite.next_event()
        assert isinstance(event, CloseConnection) and event.code == 1001
        polite.send(event.response())
        event = deaf.next_event()
        assert isinstance(event, CloseConnection) and event.code == 1001
        assert waiting.wait_answer() == 503
        assert bytes(client.response(slow).body) == b"slept"
        assert client.response(polite.stream_id).ended
        assert client.response(deaf.stream_id).reset == ErrorCodes.CANCEL
        client.wait_closed()
    assert server.wait_exit() == 0


def test_access_log_over_http2(start_server):
    server = start_server()
    with H2Client(server.port) as client:
        ws = open_ws(client, "/ws/echo?log=1")
        ws.send(CloseConnection(code=1000))
        client.response(ws.stream_id)
        assert H2WebSocket(client, "/ws/deny?log=1").wait_answer() == 403
        refused = client.send_headers([
            (b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"),
            (b":authority", b"localhost"), (b":path", b"/ws/echo?log=2"),
            (b"sec-websocket-version", b"8")], end_stream=False)
        assert client.response(refused).status == 426
    server.wait_for(r'"WSHANDSHAKING /ws/echo"')
    server.wait_for(r'"WSCONNECT /ws/echo"')
    server.wait_for(r'"WSDISCONNECT /ws/echo"')
    server.wait_for(r'"WSREJECT /ws/deny"')
    server.wait_for(r'"-" 426 ')


def test_chromium_closes_cleanly_both_ways_over_http2(start_server, certificate, browser):
    """The close handshake over a stream, as a browser sees it: the server's END_STREAM
    (and RST_STREAM NO_ERROR) after the close frames make a clean close whichever side
    began it, and the application hears the code."""
    key, cert = certificate
    server = start_server("-e", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
                          app="tests.h2ws_apps:app")
    page = f"https://localhost:{server.port}/wsx-page"
    # the server's close frame echoes the client's code (RFC 6455 5.5.1)
    assert page_result(browser, page + "?by=client") == "2 3001 true"
    assert page_result(browser, page + "?by=server") == "2 4000 true"
    with H2Client(server.port, tls=client_context(certificate)) as client:
        # the page saw the close; the application hears it as the server ends the stream,
        # which may come a moment later
        wait_heard(client, ["/wsx/echo", "websocket.disconnect", 3001])
        wait_heard(client, ["/wsx/echo", "websocket.disconnect", 4000])


def test_a_1xx_denial_is_refused_as_an_application_error(xserver):
    """A 1xx is no final answer, over HTTP/2 as over HTTP/1.1: the ASGI layer refuses the
    message, and the client gets a 500."""
    with H2Client(xserver.port) as client:
        ws = H2WebSocket(client, "/wsx/deny?status=103")
        assert ws.wait_answer() == 500
        assert client.response(client.request("/echo")).status == 200
    xserver.wait_for(r"must be a final HTTP status \(200-599\), got 103")


@pytest.mark.parametrize("status", [200, 204])
def test_a_denial_that_would_read_as_an_accept_is_not_sent(xserver, status):
    """Over HTTP/2 any 2xx answer to CONNECT opens the tunnel: a denial response with such
    a status, which HTTP/1.1 clients read as a failed handshake, would pass here for an
    accepted WebSocket whose frames are the denial's body. The stream is reset instead,
    and the error logged."""
    with H2Client(xserver.port) as client:
        ws = H2WebSocket(client, f"/wsx/deny?status={status}")
        assert client.response(ws.stream_id).reset == ErrorCodes.INTERNAL_ERROR
        assert not any(name == b":status" and value[:1] in b"12" for name, value
                       in ws.response.headers)
        assert client.response(client.request("/echo")).status == 200
    xserver.wait_for(f"denial status {status}")


def test_the_client_may_send_while_a_large_echo_waits_on_its_window(h2server):
    """Only frames autobahn writes by itself count against the backlog bound: an
    application's large message waiting for window does not stop the server taking the
    client's messages, which would deadlock a client that reads only once it has sent."""
    with H2Client(h2server.port, auto_ack=False) as client:
        client.open_window(2**30)
        ws = open_ws(client, "/ws/echo")
        first, second = b"1" * 300_000, b"2" * 100_000
        client.upload(ws.stream_id, ws.ws.send(BytesMessage(first)), False)
        client.wait(lambda: client.received_data >= 65535, what="the stream's window used up")
        client.upload(ws.stream_id, ws.ws.send(BytesMessage(second)), False)
        client.auto_ack = True
        client.open_window(len(ws.response.body), ws.stream_id)
        assert ws.message() == first
        assert ws.message() == second


def test_frames_sent_before_the_answer_are_bounded(xserver):
    """What a client sends before the application accepts waits for it, up to 64 KiB; past
    that the stream is cancelled and the application told, whatever the window allows."""
    with H2Client(xserver.port) as client:
        ws = H2WebSocket(client, "/wsx/pending?id=early")
        xserver.wait_for("app: wsx pending early")
        frame = bytes([0x82, 0x80 | 125]) + b"\0\0\0\0" + b"e" * 125
        client.upload(ws.stream_id, frame * 600, end_stream=False)  # 78,600 bytes
        assert client.response(ws.stream_id).reset == ErrorCodes.CANCEL
        wait_heard(client, ["/wsx/pending#early", "websocket.disconnect"])
