"""HTTP/2 conformance (RFC 9113, RFC 7541) in the h2spec 2.6.0 suite's terms, without h2spec.

h2spec (https://github.com/summerwind/h2spec) is no Python package, so the test run cannot
call it: every case of its 146 that no other test covers has a test here, written with our
own raw-frame client (tests/h2client.py), each over h2c (prior knowledge) and over TLS with
ALPN.  A test's docstring names the h2spec case ids it stands for ("http2/6.5/1" is case 1
of section 6.5 of the "http2" group; "generic/..." and "hpack/..." the other two groups).
Where h2spec accepts several outcomes (a stream error or a connection error, one of two
codes), the test asserts the one RFC 9113 names, or the one the server gives among those
the RFC allows, exactly: the GOAWAY's error code and the close that follows it, the
RST_STREAM's code and the connection going on (a PING answered), or the stream served.

The cases covered elsewhere:

  generic/3.1/1, generic/3.1/2, generic/4/3 (POST, one and several DATA frames):
      test_http2.py test_curl_prior_knowledge,
      test_an_http2_body_that_keeps_coming_is_not_cut_off
  generic/3.2/1, generic/4/1 (GET): test_http2.py
      test_h2_library_prior_knowledge_and_default_settings
  generic/3.4/1 (RST_STREAM): test_http2.py test_client_reset_disconnects_that_stream_alone
  generic/4/2 (HEAD): test_http2.py test_body_that_keeps_its_content_length_in_pieces_is_sent
  generic/4/4 (POST with trailers): test_http2.py test_malformed_trailers_reset_their_stream
  http2/4.1/1, http2/5.5/1 (unknown frame type ignored): test_http2.py test_max_frame_size
  http2/4.2/1 (DATA of 2^14 octets): test_http2.py test_request_body_backpressure_per_stream
  http2/5.1.2/1 (over SETTINGS_MAX_CONCURRENT_STREAMS): test_http2.py
      test_streams_over_the_limit_are_refused
  http2/5.4.1/1, http2/6.7/3 (PING on a stream: GOAWAY, then closed): test_closing.py
      test_http2_connection_error_sends_goaway_then_closes
  http2/6.9.2/1 (SETTINGS_INITIAL_WINDOW_SIZE changed while a stream waits): test_http2.py
      test_window_opened_by_settings_resumes_the_response
  http2/8.1.2/1, http2/8.1.2.1/1, /2, /4, http2/8.1.2.2/1, http2/8.1.2.3/1 to /7: test_http2.py
      test_malformed_header_block_resets_its_stream_alone (uppercase name, unknown pseudo,
      response pseudo, pseudo after field, connection, empty :path, no :method, no :scheme,
      no :path, repeated :method, repeated :scheme, repeated :path)
  http2/8.1.2.1/3 (pseudo-header in trailers): test_http2.py
      test_malformed_trailers_reset_their_stream
  http2/8.1.2.6/1 (content-length and one DATA frame disagree): test_http2.py
      test_body_that_disagrees_with_its_content_length_resets_its_stream
"""

from __future__ import annotations

import itertools
import json
import socket

import pytest
from h2.errors import ErrorCodes
from hpack.hpack import encode_integer
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.conftest import ServerProcess, binding_args, client_context, read_to_close
from tests.h2client import SETTINGS, H2Client, Response
from tests.protocols.http2.test_h2_workarounds import table_size_updates

TRANSPORTS = ("h2c", "tls")

# frame types, as they go on the wire
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS_TYPE, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED = 0x1, 0x1, 0x4, 0x8


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame as bytes, whatever it breaks: hyperframe refuses to build most of these."""
    return (len(payload).to_bytes(3, "big") + bytes([kind, flags])
            + stream_id.to_bytes(4, "big") + payload)


def take_frames(buffer: bytearray) -> list[Frame]:
    """The whole frames at the start of ``buffer``, parsed, and taken out of it."""
    frames = []
    while len(buffer) >= 9:
        end = 9 + int.from_bytes(buffer[:3], "big")
        if len(buffer) < end:
            break
        parsed, _ = Frame.parse_frame_header(memoryview(bytes(buffer[:9])))
        parsed.parse_body(memoryview(bytes(buffer[9:end])))
        frames.append(parsed)
        del buffer[:end]
    return frames


# -- the server, and a client that sees every frame


@pytest.fixture(scope="module")
def h2spec_server():
    """One server listening both ways: plain TCP (h2c) and TLS."""
    proc = ServerProcess(["-p", "0", *binding_args("tls"), "tests.apps:app"])
    try:
        proc.wait_ready(count=2)
        yield proc
    finally:
        proc.stop()


class Tap:
    """The client's socket, keeping every frame the server sends (``frames``): the h2
    state machine behind H2Client drops what arrives on streams it thinks closed, and
    these tests send just that."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.frames: list[Frame] = []
        self._buffer = bytearray()

    def recv(self, size: int) -> bytes:
        data = self.sock.recv(size)
        self.feed(data)
        return data

    def feed(self, data: bytes) -> None:
        self._buffer += data
        self.frames += take_frames(self._buffer)

    def __getattr__(self, name):
        return getattr(self.sock, name)


def connect(server: ServerProcess, transport: str) -> socket.socket:
    kind = "TLS" if transport == "tls" else "TCP"
    port = next(port for k, _, port in server.addresses if k == kind)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if transport == "tls":
        sock = client_context(("h2",)).wrap_socket(sock, server_hostname="localhost")
        assert sock.selected_alpn_protocol() == "h2"
    return sock


@pytest.fixture(params=TRANSPORTS)
def transport(request):
    return request.param


@pytest.fixture
def open_client(h2spec_server, transport):
    """open_client(handshake=True, **H2Client options) -> H2Client whose ``sock.frames``
    holds what the server sent; with ``handshake``, once the server's SETTINGS came and
    it acknowledged ours (as h2spec's own handshake)."""
    clients = []

    def open_(handshake: bool = True, **kwargs) -> H2Client:
        client = H2Client(0, sock=Tap(connect(h2spec_server, transport)), **kwargs)
        clients.append(client)
        if handshake:
            wait_frame(client, lambda f: isinstance(f, SettingsFrame) and "ACK" not in f.flags,
                       "the server's SETTINGS")
            wait_frame(client, is_settings_ack, "the SETTINGS ACK")
        return client

    yield open_
    for client in clients:
        client.close()


def is_settings_ack(f: Frame) -> bool:
    return isinstance(f, SettingsFrame) and "ACK" in f.flags


def wait_frame(client: H2Client, match, what: str) -> Frame:
    """The first frame from the server that ``match`` takes, read for as needed."""
    client.wait(lambda: any(match(f) for f in client.sock.frames), what=what)
    return next(f for f in client.sock.frames if match(f))


def frames_on(client: H2Client, kind: type, stream_id: int) -> list:
    return [f for f in client.sock.frames if isinstance(f, kind) and f.stream_id == stream_id]


_ping_data = (b"h2spec%02d" % n for n in itertools.cycle(range(100)))


def ping(client: H2Client) -> None:
    """A PING, answered: the server still reads this connection."""
    data = next(_ping_data)
    client.raw(PingFrame(0, opaque_data=data))
    wait_frame(client, lambda f: isinstance(f, PingFrame) and "ACK" in f.flags
               and f.opaque_data == data, f"the PING ACK for {data!r}")


def assert_connection_error(client: H2Client, code: int) -> None:
    """GOAWAY with ``code``, then the server closes the connection (RFC 9113 5.4.1)."""
    goaway = client.wait_goaway()
    assert goaway.error_code == code, (ErrorCodes(goaway.error_code), client.sock.frames)
    client.wait_closed()


def assert_stream_error(client: H2Client, stream_id: int, code: int) -> None:
    """RST_STREAM with ``code`` on that stream alone; the connection goes on."""
    reset = wait_frame(client, lambda f: isinstance(f, RstStreamFrame)
                       and f.stream_id == stream_id, f"RST_STREAM on stream {stream_id}")
    assert reset.error_code == code, (ErrorCodes(reset.error_code), client.sock.frames)
    ping(client)
    assert client.goaway is None


def request_fields(path: str = "/echo", method: str = "GET", extra=()) -> list:
    return [(b":method", method.encode()), (b":scheme", b"http"), (b":authority", b"localhost"),
            (b":path", path.encode()), *extra]


def open_stream(client: H2Client, fields: list, end_stream: bool = True) -> tuple[int, list]:
    """Let h2 open the next stream (its stream state and HPACK tables follow) but hand back
    the frames it made, unsent, for the test to alter and send."""
    stream_id = client.h2.get_next_available_stream_id()
    client.responses[stream_id] = Response()
    client.h2.send_headers(stream_id, fields, end_stream=end_stream)
    return stream_id, take_frames(bytearray(client.h2.data_to_send()))


def scope_headers(response: Response) -> list:
    """The request's header fields as the application saw them (/echo's answer)."""
    assert response.status == 200, (response, bytes(response.body))
    return [tuple(pair) for pair in json.loads(bytes(response.body))["headers"]]


# -- 3.5 HTTP/2 Connection Preface


def test_server_preface_is_a_settings_frame(open_client):
    """h2spec generic/1/1, http2/3.5/1: the first frame the server sends is a SETTINGS
    frame without ACK."""
    client = open_client(handshake=False)
    client.wait(lambda: client.sock.frames, what="a first frame")
    first = client.sock.frames[0]
    assert isinstance(first, SettingsFrame) and "ACK" not in first.flags, first


def test_invalid_preface_ends_the_connection(h2spec_server, transport):
    """h2spec http2/3.5/2: an invalid connection preface ends the connection.  Over TLS,
    where ALPN said h2, as a connection error of type PROTOCOL_ERROR (after the server's
    own preface); over plain TCP, where these bytes are no HTTP/2 preface but a line that
    is no HTTP/1.1 request line either, closed without an answer."""
    with connect(h2spec_server, transport) as sock:
        sock.sendall(b"INVALID CONNECTION PREFACE\r\n\r\n")
        received, closed = read_to_close(sock)
    assert closed, received
    if transport == "tls":
        frames = take_frames(bytearray(received))
        assert isinstance(frames[0], SettingsFrame), frames
        assert isinstance(frames[-1], GoAwayFrame), frames
        assert frames[-1].error_code == ErrorCodes.PROTOCOL_ERROR
    else:
        assert received == b"", received


# -- 4.1 Frame Format


def test_undefined_flags_and_the_reserved_bit_are_ignored(open_client):
    """h2spec http2/4.1/2 (a PING with flags no PING defines), http2/4.1/3 (a PING with
    the reserved bit of its stream identifier set): both are answered."""
    client = open_client()
    client.raw(frame(PING, 0x16, 0, b"flags-16"))
    client.raw(b"\x00\x00\x08\x06\x00\x80\x00\x00\x00" + b"reserved")
    for data in (b"flags-16", b"reserved"):
        wait_frame(client, lambda f, data=data: isinstance(f, PingFrame) and "ACK" in f.flags
                   and f.opaque_data == data, f"PING ACK for {data!r}")
    assert client.goaway is None


# -- 4.2 Frame Size


def test_data_frame_over_max_frame_size(open_client):
    """h2spec http2/4.2/2: a DATA frame one octet over SETTINGS_MAX_FRAME_SIZE (16384):
    FRAME_SIZE_ERROR."""
    client = open_client()
    sid = client.request("/count-body", method="POST", end_stream=False)
    client.raw(frame(DATA, END_STREAM, sid, b"x" * 16385))
    assert_connection_error(client, ErrorCodes.FRAME_SIZE_ERROR)


def test_headers_frame_over_max_frame_size(open_client):
    """h2spec http2/4.2/3: a HEADERS frame over SETTINGS_MAX_FRAME_SIZE can alter the
    connection's state (its header block): connection error FRAME_SIZE_ERROR."""
    client = open_client()
    dummies = [(b"x-dummy%d" % i, b"x" * 4000) for i in range(5)]
    block = client.h2.encoder.encode(request_fields(extra=dummies))
    assert len(block) > 16384
    client.raw(frame(HEADERS, END_STREAM | END_HEADERS, 1, block))
    assert_connection_error(client, ErrorCodes.FRAME_SIZE_ERROR)


# -- 4.3 Header Compression and Decompression


def test_invalid_header_block_fragment(open_client):
    """h2spec http2/4.3/1: a header block that does not decode (a literal with incremental
    indexing and no name): connection error COMPRESSION_ERROR (RFC 9113 4.3: "A decoding
    error in a field block MUST be treated as a connection error of type
    COMPRESSION_ERROR")."""
    client = open_client()
    client.raw(frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\x40"))
    assert_connection_error(client, ErrorCodes.COMPRESSION_ERROR)


def _interrupting_frames(client: H2Client) -> dict:
    common = client.h2.encoder.encode(request_fields(method="POST"))
    dummy = client.h2.encoder.encode([(b"x-dummy0", b"x" * 100)])
    return {
        # h2spec http2/4.3/2, http2/6.2/1: PRIORITY on the same stream
        "priority": [frame(HEADERS, 0, 1, common),
                     PriorityFrame(1, stream_weight=255).serialize(),
                     frame(CONTINUATION, END_HEADERS, 1, dummy)],
        # h2spec http2/4.3/3, http2/6.2/2: HEADERS on another stream
        "headers on another stream": [frame(HEADERS, 0, 1, common),
                                      frame(HEADERS, END_STREAM | END_HEADERS, 3, common),
                                      frame(CONTINUATION, END_HEADERS, 1, dummy)],
        # h2spec http2/5.5/2: an extension frame (type 0x16)
        "extension frame": [frame(HEADERS, END_STREAM, 1, common),
                            frame(0x16, 0, 0, b"\x00" * 8)],
        # h2spec http2/6.10/2: CONTINUATION, then DATA
        "data after continuation": [frame(HEADERS, 0, 1, common),
                                    frame(CONTINUATION, 0, 1, dummy),
                                    frame(DATA, END_STREAM, 1, b"test")],
        # h2spec http2/6.10/6: DATA, then CONTINUATION
        "continuation after data": [frame(HEADERS, 0, 1, common),
                                    frame(DATA, END_STREAM, 1, b"test"),
                                    frame(CONTINUATION, 0, 1, dummy),
                                    frame(CONTINUATION, END_HEADERS, 0, dummy)],
    }


@pytest.mark.parametrize("case", ["priority", "headers on another stream", "extension frame",
                                  "data after continuation", "continuation after data"])
def test_header_block_interrupted_by_another_frame(open_client, case):
    """h2spec http2/4.3/2, http2/4.3/3, http2/5.5/2, http2/6.2/1, http2/6.2/2,
    http2/6.10/2, http2/6.10/6: a header block is a contiguous run of HEADERS and
    CONTINUATION frames on one stream; any other frame inside it is a connection error of
    type PROTOCOL_ERROR."""
    client = open_client()
    for data in _interrupting_frames(client)[case]:
        client.raw(data)
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


# -- 5.1 Stream States


@pytest.mark.parametrize("case", ["DATA", "RST_STREAM", "WINDOW_UPDATE", "CONTINUATION"])
def test_frame_on_an_idle_stream(open_client, case):
    """h2spec http2/5.1/1 to /4, http2/6.4/2: anything but HEADERS or PRIORITY on an idle
    stream is a connection error of type PROTOCOL_ERROR."""
    client = open_client()
    client.raw({
        "DATA": frame(DATA, END_STREAM, 1, b"test"),
        "RST_STREAM": RstStreamFrame(1, error_code=ErrorCodes.CANCEL).serialize(),
        "WINDOW_UPDATE": WindowUpdateFrame(1, window_increment=100).serialize(),
        "CONTINUATION": frame(CONTINUATION, END_HEADERS, 1,
                              client.h2.encoder.encode(request_fields())),
    }[case])
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


def half_closed_remote(client: H2Client) -> int:
    """A stream the client ended and the server has not answered (the application waits
    for a disconnect): half-closed (remote) on the server's side for as long as needed."""
    return client.request("/wait-disconnect")


def test_data_on_a_half_closed_remote_stream(open_client):
    """h2spec http2/5.1/5, http2/6.1/2: DATA after END_STREAM: stream error
    STREAM_CLOSED."""
    client = open_client()
    sid = half_closed_remote(client)
    client.raw(frame(DATA, END_STREAM, sid, b"test"))
    assert_stream_error(client, sid, ErrorCodes.STREAM_CLOSED)
    assert client.response(client.request("/echo")).status == 200


def test_headers_on_a_half_closed_remote_stream(open_client):
    """h2spec http2/5.1/6: a second HEADERS after END_STREAM: stream error STREAM_CLOSED;
    the server decoded its header block all the same (the next request is served)."""
    client = open_client()
    sid = half_closed_remote(client)
    client.raw(frame(HEADERS, END_STREAM | END_HEADERS, sid,
                     client.h2.encoder.encode(request_fields())))
    assert_stream_error(client, sid, ErrorCodes.STREAM_CLOSED)
    assert client.response(client.request("/echo")).status == 200


@pytest.mark.parametrize("state", ["half-closed (remote)", "closed by RST_STREAM",
                                   "closed by END_STREAM"])
def test_continuation_after_a_complete_header_block(open_client, state):
    """h2spec http2/5.1/7 and http2/6.10/4 (CONTINUATION after a HEADERS with END_STREAM
    and END_HEADERS), http2/5.1/10, http2/5.1/13: a CONTINUATION that follows no HEADERS
    without END_HEADERS, whatever the stream's state, is a connection error of type
    PROTOCOL_ERROR (RFC 9113 6.10)."""
    client = open_client()
    if state == "half-closed (remote)":
        sid = half_closed_remote(client)
    elif state == "closed by RST_STREAM":
        sid = client.request("/count-body", method="POST", end_stream=False)
        client.reset(sid)
    else:
        sid = client.request("/echo")
        assert client.response(sid).status == 200
    dummy = client.h2.encoder.encode([(b"x-dummy0", b"x" * 100)])
    client.raw(frame(CONTINUATION, END_HEADERS, sid, dummy))
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


def test_data_after_rst_stream(open_client):
    """h2spec http2/5.1/8: DATA on a stream the client reset: stream error STREAM_CLOSED."""
    client = open_client()
    sid = client.request("/count-body", method="POST", end_stream=False)
    client.reset(sid)
    client.raw(frame(DATA, END_STREAM, sid, b"test"))
    assert_stream_error(client, sid, ErrorCodes.STREAM_CLOSED)


def test_headers_after_rst_stream(open_client):
    """h2spec http2/5.1/9: HEADERS on a stream the client reset: stream error
    STREAM_CLOSED; its header block still decoded (the next request is served)."""
    client = open_client()
    sid = client.request("/count-body", method="POST", end_stream=False)
    client.reset(sid)
    client.raw(frame(HEADERS, END_STREAM | END_HEADERS, sid,
                     client.h2.encoder.encode(request_fields())))
    assert_stream_error(client, sid, ErrorCodes.STREAM_CLOSED)
    assert client.response(client.request("/echo")).status == 200


def test_data_on_a_closed_stream(open_client):
    """h2spec http2/5.1/11: DATA on a stream closed both ways (END_STREAM sent and
    received): STREAM_CLOSED (RFC 9113 6.1), as a stream error."""
    client = open_client()
    sid = client.request("/echo")
    assert client.response(sid).status == 200
    client.raw(frame(DATA, END_STREAM, sid, b"test"))
    assert_stream_error(client, sid, ErrorCodes.STREAM_CLOSED)


def test_headers_on_a_closed_stream(open_client):
    """h2spec http2/5.1/12: HEADERS on a stream closed both ways: connection error
    STREAM_CLOSED."""
    client = open_client()
    sid = client.request("/echo")
    assert client.response(sid).status == 200
    client.raw(frame(HEADERS, END_STREAM | END_HEADERS, sid,
                     client.h2.encoder.encode(request_fields())))
    assert_connection_error(client, ErrorCodes.STREAM_CLOSED)


# -- 5.1.1 Stream Identifiers


def test_even_numbered_stream_identifier(open_client):
    """h2spec http2/5.1.1/1: a client stream with an even identifier: connection error
    PROTOCOL_ERROR."""
    client = open_client()
    client.raw(frame(HEADERS, END_STREAM | END_HEADERS, 2,
                     client.h2.encoder.encode(request_fields())))
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


def test_stream_identifier_smaller_than_the_previous(open_client):
    """h2spec http2/5.1.1/2: stream 5, then stream 3: connection error PROTOCOL_ERROR."""
    client = open_client()
    # stream 5 opened through h2, which then takes its response for one it expects
    client.h2.send_headers(5, request_fields(), end_stream=True)
    client.flush()
    client.raw(frame(HEADERS, END_STREAM | END_HEADERS, 3,
                     client.h2.encoder.encode(request_fields())))
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


# -- 5.3.1 Stream Dependencies


def test_headers_that_depend_on_their_own_stream(open_client):
    """h2spec http2/5.3.1/1: a stream cannot depend on itself: PROTOCOL_ERROR.  The RFC
    names a stream error; h2 (under the server) ends the connection for it, as RFC 9113
    5.4.1 lets any endpoint treat a stream error: GOAWAY(PROTOCOL_ERROR)."""
    client = open_client()
    sid, [headers] = open_stream(client, request_fields())
    headers.flags.add("PRIORITY")
    headers.depends_on, headers.stream_weight = sid, 255
    client.raw(headers)
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


def test_priority_that_depends_on_its_own_stream(open_client):
    """h2spec http2/5.3.1/2: a PRIORITY frame making a stream depend on itself:
    PROTOCOL_ERROR, a stream error the server (h2) makes a connection error."""
    client = open_client()
    client.raw(PriorityFrame(1, depends_on=1, stream_weight=255))
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


# -- 6.1 DATA


def test_data_on_stream_zero(open_client):
    """h2spec http2/6.1/1: DATA on stream 0: connection error PROTOCOL_ERROR."""
    client = open_client()
    client.raw(frame(DATA, END_STREAM, 0, b"test"))
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


def test_data_with_invalid_pad_length(open_client):
    """h2spec http2/6.1/3: a DATA frame whose pad length is the payload's length or more:
    connection error PROTOCOL_ERROR."""
    client = open_client()
    sid = client.request("/count-body", method="POST", end_stream=False,
                         headers=[(b"content-length", b"4")])
    client.raw(frame(DATA, END_STREAM | PADDED, sid, b"\x06Test"))
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


def test_padded_data_is_served(open_client):
    """h2spec generic/3.1/3: DATA with padding: the request is served, the padding is no
    part of the body."""
    client = open_client()
    sid = client.request("/count-body", method="POST", end_stream=False)
    client.raw(frame(DATA, PADDED, sid, b"\x05test" + b"\x00" * 5))
    client.raw(frame(DATA, END_STREAM | PADDED, sid, b"\x00more"))
    response = client.response(sid)
    assert response.status == 200 and bytes(response.body).startswith(b"8 bytes in ")


# -- 6.2 HEADERS


def test_headers_on_stream_zero(open_client):
    """h2spec http2/6.2/3: HEADERS on stream 0: connection error PROTOCOL_ERROR."""
    client = open_client()
    client.raw(frame(HEADERS, END_STREAM | END_HEADERS, 0,
                     client.h2.encoder.encode(request_fields())))
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


def test_headers_with_invalid_pad_length(open_client):
    """h2spec http2/6.2/4: a HEADERS frame whose pad length is over its payload:
    PROTOCOL_ERROR, as a connection error (RFC 9113 6.2)."""
    client = open_client()
    block = client.h2.encoder.encode(request_fields())
    client.raw(frame(HEADERS, END_STREAM | END_HEADERS | PADDED, 1,
                     bytes([len(block) + 2]) + block))
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


@pytest.mark.parametrize("how", ["padding", "priority"])
def test_headers_with_padding_or_priority_are_served(open_client, how):
    """h2spec generic/3.2/2 (HEADERS with padding), generic/3.2/3 (HEADERS with a
    priority): the request is served, its fields whole."""
    client = open_client()
    sid, [headers] = open_stream(client, request_fields(extra=[(b"x-test", b"ok")]))
    if how == "padding":
        headers.flags.add("PADDED")
        headers.pad_length = 8
    else:
        headers.flags.add("PRIORITY")
        headers.depends_on, headers.stream_weight = 0, 255
    client.raw(headers)
    assert ("x-test", "ok") in scope_headers(client.response(sid))


# -- 6.3 PRIORITY


def test_priority_on_stream_zero(open_client):
    """h2spec http2/6.3/1: PRIORITY on stream 0: connection error PROTOCOL_ERROR."""
    client = open_client()
    client.raw(frame(PRIORITY, 0, 0, b"\x00\x00\x00\x00\xff"))
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


def test_priority_of_the_wrong_length(open_client):
    """h2spec http2/6.3/2: a PRIORITY frame of 4 octets: FRAME_SIZE_ERROR, a stream error
    in the RFC that the server (h2) makes a connection error (RFC 9113 5.4.1 allows it)."""
    client = open_client()
    sid = client.request("/wait-disconnect")
    client.raw(frame(PRIORITY, 0, sid, b"\x80\x00\x00\x01"))
    assert_connection_error(client, ErrorCodes.FRAME_SIZE_ERROR)


@pytest.mark.parametrize("on, weight, depends_on, exclusive", [
    (1, 0, 0, False),  # generic/3.3/1: priority 1
    (1, 255, 0, False),  # generic/3.3/2: priority 256
    (3, 0, 1, False),  # generic/3.3/3: on stream 3, depending on stream 1
    (1, 0, 0, True),  # generic/3.3/4: exclusive
    (3, 255, 0, False),  # generic/3.3/5, generic/2/1: on idle stream 3, then stream 1
], ids=["weight-1", "weight-256", "dependency", "exclusive", "idle-higher-stream"])
def test_priority_frames_are_accepted(open_client, on, weight, depends_on, exclusive):
    """h2spec generic/3.3/1 to /5, generic/2/1: PRIORITY frames (on the stream about to
    open, or on an idle stream above it): nothing to refuse, the request is served, the
    connection goes on."""
    client = open_client()
    client.raw(PriorityFrame(on, depends_on=depends_on, stream_weight=weight,
                             exclusive=exclusive))
    assert client.response(client.request("/echo")).status == 200
    ping(client)
    assert client.goaway is None


# -- 6.4 RST_STREAM


def test_rst_stream_on_stream_zero(open_client):
    """h2spec http2/6.4/1: RST_STREAM on stream 0: connection error PROTOCOL_ERROR."""
    client = open_client()
    client.raw(frame(RST_STREAM, 0, 0, ErrorCodes.CANCEL.to_bytes(4, "big")))
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


def test_rst_stream_of_the_wrong_length(open_client):
    """h2spec http2/6.4/3: a RST_STREAM frame of 3 octets: connection error
    FRAME_SIZE_ERROR."""
    client = open_client()
    sid = client.request("/wait-disconnect")
    client.raw(frame(RST_STREAM, 0, sid, b"\x00\x00\x00"))
    assert_connection_error(client, ErrorCodes.FRAME_SIZE_ERROR)


# -- 6.5 SETTINGS


@pytest.mark.parametrize("data, code", [
    (frame(SETTINGS_TYPE, ACK, 0, b"\x00"), ErrorCodes.FRAME_SIZE_ERROR),  # 6.5/1
    (frame(SETTINGS_TYPE, 0, 1, b"\x00\x03\x00\x00\x00\x64"), ErrorCodes.PROTOCOL_ERROR),  # /2
    (frame(SETTINGS_TYPE, 0, 0, b"\x00\x03\x00"), ErrorCodes.FRAME_SIZE_ERROR),  # 6.5/3
    (frame(SETTINGS_TYPE, 0, 0, b"\x00\x02\x00\x00\x00\x02"), ErrorCodes.PROTOCOL_ERROR),
    (frame(SETTINGS_TYPE, 0, 0, b"\x00\x04\x80\x00\x00\x00"), ErrorCodes.FLOW_CONTROL_ERROR),
    (frame(SETTINGS_TYPE, 0, 0, b"\x00\x05\x00\x00\x3f\xff"), ErrorCodes.PROTOCOL_ERROR),
    (frame(SETTINGS_TYPE, 0, 0, b"\x00\x05\x01\x00\x00\x00"), ErrorCodes.PROTOCOL_ERROR),
], ids=["ack-with-payload", "on-a-stream", "length-3", "enable-push-2",
        "initial-window-2^31", "max-frame-size-16383", "max-frame-size-2^24"])
def test_invalid_settings(open_client, data, code):
    """h2spec http2/6.5/1 (ACK with a payload: FRAME_SIZE_ERROR), http2/6.5/2 (on a
    stream: PROTOCOL_ERROR), http2/6.5/3 (a length no multiple of 6: FRAME_SIZE_ERROR),
    http2/6.5.2/1 (SETTINGS_ENABLE_PUSH 2: PROTOCOL_ERROR), http2/6.5.2/2 and
    http2/6.9.2/3 (SETTINGS_INITIAL_WINDOW_SIZE 2^31: FLOW_CONTROL_ERROR), http2/6.5.2/3
    and /4 (SETTINGS_MAX_FRAME_SIZE 16383 or 2^24: PROTOCOL_ERROR): connection errors."""
    client = open_client()
    client.raw(data)
    assert_connection_error(client, code)


def test_settings_are_acknowledged(open_client):
    """h2spec generic/3.5/1 (every defined setting, ENABLE_PUSH 1 and a small
    MAX_HEADER_LIST_SIZE among them), http2/6.5.3/2 (a SETTINGS frame is acknowledged),
    http2/6.5.2/5 (an unknown setting is ignored): one SETTINGS ACK each, the connection
    goes on."""
    client = open_client()
    before = sum(map(is_settings_ack, client.sock.frames))
    client.raw(SettingsFrame(0, settings={
        SETTINGS.HEADER_TABLE_SIZE: 4096, SETTINGS.ENABLE_PUSH: 1,
        SETTINGS.MAX_CONCURRENT_STREAMS: 100, SETTINGS.INITIAL_WINDOW_SIZE: 65535,
        SETTINGS.MAX_FRAME_SIZE: 16384, SETTINGS.MAX_HEADER_LIST_SIZE: 100}))
    client.raw(SettingsFrame(0, settings={SETTINGS.ENABLE_PUSH: 0}))
    client.raw(frame(SETTINGS_TYPE, 0, 0, b"\x00\xff\x00\x00\x00\x01"))
    ping(client)
    assert sum(map(is_settings_ack, client.sock.frames)) == before + 3
    assert client.goaway is None


def test_last_of_repeated_initial_window_sizes_counts(open_client):
    """h2spec http2/6.5.3/1: SETTINGS_INITIAL_WINDOW_SIZE 100, then 1, in one frame: the
    last value holds, so the response's first DATA frame carries one octet."""
    client = open_client(auto_ack=False)
    client.raw(frame(SETTINGS_TYPE, 0, 0, b"\x00\x04\x00\x00\x00\x64\x00\x04\x00\x00\x00\x01"))
    sid = client.request("/echo")
    data = wait_frame(client, lambda f: isinstance(f, DataFrame) and f.stream_id == sid,
                      "DATA")
    assert len(data.data) == 1


# -- 6.7 PING


def test_ping_is_answered_with_its_data(open_client):
    """h2spec generic/3.7/1, http2/6.7/1: a PING gets a PING with ACK and the same data."""
    client = open_client()
    client.raw(PingFrame(0, opaque_data=b"h2spec\x00\x00"))
    wait_frame(client, lambda f: isinstance(f, PingFrame) and "ACK" in f.flags
               and f.opaque_data == b"h2spec\x00\x00", "PING ACK")


def test_ping_ack_is_not_answered(open_client):
    """h2spec http2/6.7/2: a PING with ACK set gets no answer; the next PING does."""
    client = open_client()
    client.raw(PingFrame(0, opaque_data=b"invalid\x00", flags=["ACK"]))
    ping(client)
    pings = [f for f in client.sock.frames if isinstance(f, PingFrame)]
    assert len(pings) == 1 and pings[0].opaque_data != b"invalid\x00", pings


def test_ping_of_the_wrong_length(open_client):
    """h2spec http2/6.7/4: a PING of 6 octets: connection error FRAME_SIZE_ERROR."""
    client = open_client()
    client.raw(frame(PING, 0, 0, b"\x00" * 6))
    assert_connection_error(client, ErrorCodes.FRAME_SIZE_ERROR)


# -- 6.8 GOAWAY


def test_goaway_on_a_stream(open_client):
    """h2spec http2/6.8/1: GOAWAY on stream 1: connection error PROTOCOL_ERROR."""
    client = open_client()
    client.raw(frame(GOAWAY, 0, 1, b"\x00" * 8))
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


def test_client_goaway_with_no_streams_ends_the_connection(open_client):
    """h2spec generic/3.8/1: a client's GOAWAY(NO_ERROR) with no stream open (then a
    PING, which h2spec takes an answer to or the close): the server says GOAWAY(NO_ERROR)
    too, naming no stream, and closes the connection."""
    client = open_client()
    client.raw(GoAwayFrame(0, last_stream_id=0, error_code=ErrorCodes.NO_ERROR,
                           additional_data=b"h2spec"))
    client.raw(PingFrame(0, opaque_data=b"h2spec\x00\x00"))
    goaway = client.wait_goaway()
    assert (goaway.error_code, goaway.last_stream_id) == (ErrorCodes.NO_ERROR, 0)
    client.wait_closed()


def test_client_goaway_with_an_unknown_error_code(open_client):
    """h2spec http2/7/1: a GOAWAY with an unknown error code (0xff) triggers nothing
    special: like any client GOAWAY for an error (RFC 9113 7 lets it count as
    INTERNAL_ERROR), the connection ends at once, the server sending no GOAWAY of its
    own."""
    client = open_client()
    client.raw(frame(GOAWAY, 0, 0, b"\x00" * 4 + b"\x00\x00\x00\xff"))
    client.raw(PingFrame(0, opaque_data=b"h2spec\x00\x00"))
    client.wait_closed()
    assert client.goaway is None


# -- 6.9 WINDOW_UPDATE


def test_window_update_of_zero_on_the_connection(open_client):
    """h2spec http2/6.9/1: a WINDOW_UPDATE of 0 for the connection: connection error
    PROTOCOL_ERROR."""
    client = open_client()
    client.raw(frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x00"))
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


def test_window_update_of_zero_on_a_stream(open_client):
    """h2spec http2/6.9/2: a WINDOW_UPDATE of 0 on a stream: PROTOCOL_ERROR, a stream error
    in the RFC that the server (h2) makes a connection error (RFC 9113 5.4.1 allows it)."""
    client = open_client()
    sid = client.request("/count-body", method="POST", end_stream=False)
    client.raw(frame(WINDOW_UPDATE, 0, sid, b"\x00\x00\x00\x00"))
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


def test_window_update_of_the_wrong_length(open_client):
    """h2spec http2/6.9/3: a WINDOW_UPDATE of 3 octets: connection error
    FRAME_SIZE_ERROR."""
    client = open_client()
    client.raw(frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01"))
    assert_connection_error(client, ErrorCodes.FRAME_SIZE_ERROR)


def test_initial_window_of_one_octet(open_client):
    """h2spec http2/6.9.1/1: SETTINGS_INITIAL_WINDOW_SIZE 1: the response's first DATA
    frame carries one octet."""
    client = open_client(auto_ack=False)
    acks = sum(map(is_settings_ack, client.sock.frames))
    client.raw(SettingsFrame(0, settings={SETTINGS.INITIAL_WINDOW_SIZE: 1}))
    client.wait(lambda: sum(map(is_settings_ack, client.sock.frames)) == acks + 1,
                what="the SETTINGS ACK")
    sid = client.request("/echo")
    data = wait_frame(client, lambda f: isinstance(f, DataFrame) and f.stream_id == sid,
                      "DATA")
    assert len(data.data) == 1


def test_connection_window_over_2_31_minus_1(open_client):
    """h2spec http2/6.9.1/2: WINDOW_UPDATEs taking the connection's window over 2^31-1:
    connection error FLOW_CONTROL_ERROR."""
    client = open_client()
    client.raw(WindowUpdateFrame(0, window_increment=2**31 - 1))
    client.raw(WindowUpdateFrame(0, window_increment=2**31 - 1))
    assert_connection_error(client, ErrorCodes.FLOW_CONTROL_ERROR)


def test_stream_window_over_2_31_minus_1(open_client):
    """h2spec http2/6.9.1/3: WINDOW_UPDATEs taking a stream's window over 2^31-1: stream
    error FLOW_CONTROL_ERROR."""
    client = open_client()
    sid = client.request("/count-body", method="POST", end_stream=False)
    client.raw(WindowUpdateFrame(sid, window_increment=2**31 - 1))
    client.raw(WindowUpdateFrame(sid, window_increment=2**31 - 1))
    assert_stream_error(client, sid, ErrorCodes.FLOW_CONTROL_ERROR)


def test_settings_can_make_a_stream_window_negative(open_client):
    """h2spec http2/6.9.2/2: window 3, three octets sent, then SETTINGS_INITIAL_WINDOW_SIZE
    2 takes the stream's window to -1; a WINDOW_UPDATE of 2 lets exactly one more octet
    go, in one DATA frame."""
    client = open_client(auto_ack=False)

    def sent() -> list:
        return [len(f.data) for f in frames_on(client, DataFrame, sid)]

    client.raw(SettingsFrame(0, settings={SETTINGS.INITIAL_WINDOW_SIZE: 3}))
    sid = client.request("/echo")
    client.wait(lambda: sum(sent()) >= 3, what="three octets of DATA")
    acks = sum(map(is_settings_ack, client.sock.frames))
    client.raw(SettingsFrame(0, settings={SETTINGS.INITIAL_WINDOW_SIZE: 2}))
    client.wait(lambda: sum(map(is_settings_ack, client.sock.frames)) == acks + 1,
                what="the SETTINGS ACK")
    assert sum(sent()) == 3, sent()
    before = len(sent())
    client.raw(WindowUpdateFrame(sid, window_increment=2))
    client.wait(lambda: len(sent()) > before, what="more DATA")
    ping(client)  # anything more the server would send is sent by now
    assert sent()[before:] == [1], sent()


def test_window_update_and_priority_on_a_half_closed_remote_stream(open_client):
    """h2spec generic/2/2, generic/2/3 (WINDOW_UPDATE, and PRIORITY, on a half-closed
    (remote) stream whose window is 0), generic/3.9/1, generic/3.9/2: the WINDOW_UPDATE
    lets one octet of DATA go."""
    client = open_client(auto_ack=False)
    client.raw(SettingsFrame(0, settings={SETTINGS.INITIAL_WINDOW_SIZE: 0}))
    client.raw(WindowUpdateFrame(0, window_increment=1))
    sid = client.request("/echo")
    client.wait(lambda: client.responses[sid].headers, what="the response's HEADERS")
    client.raw(PriorityFrame(sid, stream_weight=255))
    client.raw(WindowUpdateFrame(sid, window_increment=1))
    data = wait_frame(client, lambda f: isinstance(f, DataFrame) and f.stream_id == sid,
                      "DATA")
    assert len(data.data) == 1
    ping(client)
    assert sum(len(f.data) for f in frames_on(client, DataFrame, sid)) == 1


def test_rst_stream_and_priority_on_streams_after_their_request(open_client):
    """h2spec generic/2/4 (RST_STREAM on a half-closed (remote) stream), generic/2/5
    (PRIORITY on a closed stream), http2/7/2 (RST_STREAM with an unknown error code): no
    error; the connection goes on."""
    client = open_client()
    waiting = half_closed_remote(client)
    client.raw(RstStreamFrame(waiting, error_code=ErrorCodes.CANCEL))
    done = client.request("/echo")
    assert client.response(done).status == 200
    client.raw(PriorityFrame(done, stream_weight=255))
    posting = client.request("/count-body", method="POST", end_stream=False)
    client.raw(RstStreamFrame(posting, error_code=0xFF))
    ping(client)
    assert client.response(client.request("/echo")).status == 200
    assert not any(isinstance(f, RstStreamFrame) for f in client.sock.frames)
    assert client.goaway is None


# -- 6.10 CONTINUATION


def test_header_block_in_continuation_frames_is_served(open_client):
    """h2spec generic/3.10/1, generic/3.10/2, http2/6.10/1: a header block cut into
    HEADERS and one or more CONTINUATION frames."""
    client = open_client()
    for pieces in (2, 3):
        dummy = [(b"x-dummy%d" % pieces, b"x" * 4000)]  # new to the table: sent whole
        sid, [headers] = open_stream(client, request_fields(extra=dummy))
        block, size = headers.data, -(-len(headers.data) // pieces)
        parts = [block[i:i + size] for i in range(0, len(block), size)]
        headers.data = parts[0]
        headers.flags.discard("END_HEADERS")
        client.raw(headers)
        for i, part in enumerate(parts[1:], 2):
            client.raw(ContinuationFrame(sid, data=part,
                                         flags=["END_HEADERS"] if i == len(parts) else []))
        assert len(parts) == pieces and len(parts[-1]) > 1000
        assert (f"x-dummy{pieces}", "x" * 4000) in scope_headers(client.response(sid))


def test_continuation_on_stream_zero(open_client):
    """h2spec http2/6.10/3: a CONTINUATION on stream 0: connection error PROTOCOL_ERROR."""
    client = open_client()
    client.raw(frame(HEADERS, END_STREAM, 1, client.h2.encoder.encode(request_fields())))
    client.raw(frame(CONTINUATION, END_HEADERS, 0,
                     client.h2.encoder.encode([(b"x-dummy0", b"x")])))
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


def test_continuation_after_a_continuation_that_ended_the_block(open_client):
    """h2spec http2/6.10/5: CONTINUATION after the CONTINUATION with END_HEADERS:
    connection error PROTOCOL_ERROR."""
    client = open_client()
    dummy = client.h2.encoder.encode([(b"x-dummy0", b"x")])
    client.raw(frame(HEADERS, END_STREAM, 1, client.h2.encoder.encode(request_fields())))
    client.raw(frame(CONTINUATION, END_HEADERS, 1, dummy))
    client.raw(frame(CONTINUATION, END_HEADERS, 1, dummy))
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


# -- 8.1 HTTP Request/Response Exchange


def test_second_headers_without_end_stream(open_client):
    """h2spec http2/8.1/1: trailers (a second HEADERS) without END_STREAM: the request is
    malformed, PROTOCOL_ERROR.  h2 refuses such a frame before the server's own check of
    trailers (which resets the stream alone) sees it, and ends the connection: a stream
    error made a connection error, as RFC 9113 5.4.1 allows."""
    client = open_client()
    sid = client.request("/count-body", method="POST", body=b"test", end_stream=False)
    client.raw(frame(HEADERS, END_HEADERS, sid, client.h2.encoder.encode([(b"x-test",
                                                                            b"ok")])))
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


def test_te_other_than_trailers_alone(open_client):
    """h2spec http2/8.1.2.2/2: "te: trailers, deflate" (not "trailers" alone): malformed,
    stream error PROTOCOL_ERROR."""
    client = open_client()
    client.h2.config.validate_outbound_headers = False  # h2 would not send it
    sid = client.send_headers(request_fields(
        extra=[(b"trailers", b"test"), (b"te", b"trailers, deflate")]))
    assert_stream_error(client, sid, ErrorCodes.PROTOCOL_ERROR)
    assert client.response(client.request("/echo")).status == 200


def test_body_over_content_length_across_data_frames(open_client):
    """h2spec http2/8.1.2.6/2: content-length 5, two DATA frames of 3 octets: the sum
    breaks it, stream error PROTOCOL_ERROR."""
    client = open_client()
    sid = client.request("/count-body", method="POST", end_stream=False,
                         headers=[(b"content-length", b"5")])
    client.raw(frame(DATA, 0, sid, b"abc"))
    client.raw(frame(DATA, END_STREAM, sid, b"def"))
    assert_stream_error(client, sid, ErrorCodes.PROTOCOL_ERROR)


def test_push_promise_from_the_client(open_client):
    """h2spec http2/8.2/1: a client cannot push: PUSH_PROMISE is a connection error of type
    PROTOCOL_ERROR."""
    client = open_client()
    client.raw(frame(PUSH_PROMISE, END_HEADERS, 1, b"\x00\x00\x00\x03"
                     + client.h2.encoder.encode(request_fields())))
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


# -- HPACK (RFC 7541)


HPACK_REPRESENTATIONS = {
    # generic/5/1: indexed (user-agent, empty, static index 58)
    "indexed": (b"\xba", ("user-agent", "")),
    # generic/5/2 to /5: literal with incremental indexing
    "incremental indexed name": (b"\x40\x0auser-agent\x06h2spec", ("user-agent", "h2spec")),
    "incremental indexed name huffman": (b"\x40\x87\xb5\x05\xb1\x61\xcc\x5a\x93\x84\x9c\x48"
                                         b"\xac\xa4", ("user-agent", "h2spec")),
    "incremental new name": (b"\x40\x06x-test\x06h2spec", ("x-test", "h2spec")),
    "incremental new name huffman": (b"\x40\x85\xf2\xb2\x4a\x84\xff\x84\x9c\x48\xac\xa4",
                                     ("x-test", "h2spec")),
    # generic/5/6 to /9: literal without indexing
    "without indexing indexed name": (b"\x00\x0auser-agent\x06h2spec",
                                      ("user-agent", "h2spec")),
    "without indexing indexed name huffman": (b"\x00\x87\xb5\x05\xb1\x61\xcc\x5a\x93\x84\x9c"
                                              b"\x48\xac\xa4", ("user-agent", "h2spec")),
    "without indexing new name": (b"\x00\x06x-test\x06h2spec", ("x-test", "h2spec")),
    "without indexing new name huffman": (b"\x00\x85\xf2\xb2\x4a\x84\xff\x84\x9c\x48\xac\xa4",
                                          ("x-test", "h2spec")),
    # generic/5/10 to /13: literal never indexed (h2spec sends the Huffman form for /12
    # as well as /13: /12 here is the plain form its title names)
    "never indexed indexed name": (b"\x10\x0auser-agent\x06h2spec", ("user-agent", "h2spec")),
    "never indexed indexed name huffman": (b"\x10\x87\xb5\x05\xb1\x61\xcc\x5a\x93\x84\x9c\x48"
                                           b"\xac\xa4", ("user-agent", "h2spec")),
    "never indexed new name": (b"\x10\x06x-test\x06h2spec", ("x-test", "h2spec")),
    "never indexed new name huffman": (b"\x10\x85\xf2\xb2\x4a\x84\xff\x84\x9c\x48\xac\xa4",
                                       ("x-test", "h2spec")),
}


@pytest.mark.parametrize("rep, field", HPACK_REPRESENTATIONS.values(),
                         ids=HPACK_REPRESENTATIONS.keys())
def test_hpack_representations(open_client, rep, field):
    """h2spec generic/5/1 to /13: each representation of a header field (indexed; literal
    with incremental indexing, without indexing, never indexed; name indexed or new; with
    Huffman coding or not) decodes to its field, which the application sees."""
    client = open_client()
    sid, [headers] = open_stream(client, request_fields())
    headers.data += rep
    client.raw(headers)
    assert field in scope_headers(client.response(sid))


@pytest.mark.parametrize("updates", [b"\x3f\x61", b"\x3f\x61\x3f\xe1\x1f"],
                         ids=["128", "128-then-4096"])
def test_hpack_dynamic_table_size_updates(open_client, updates):
    """h2spec generic/5/14 (a dynamic table size update), generic/5/15 (two of them) at the
    start of a header block: the request is served."""
    client = open_client()
    sid, [headers] = open_stream(client, request_fields(extra=[(b"x-test", b"ok")]))
    headers.data = updates + headers.data
    client.raw(headers)
    assert ("x-test", "ok") in scope_headers(client.response(sid))


def _table_size_over_the_limit(client: H2Client) -> bytes:
    limit = client.server_settings.get(SETTINGS.HEADER_TABLE_SIZE, 4096)
    update = encode_integer(limit + 1, 5)
    update[0] |= 0x20
    return bytes(update)


HPACK_ERRORS = {
    # hpack/2.3.3/1: indexed, index 70 (past both tables)
    "index past the tables": lambda client: b"\xc6",
    # hpack/2.3.3/2: literal with incremental indexing, name index 70
    "name index past the tables": lambda client: b"\x7f\x07\x00",
    # hpack/4.2/1: a dynamic table size update at the end of the block
    "size update at the end": lambda client: b"\x21",
    # hpack/5.2/1: Huffman padding longer than 7 bits
    "huffman padding over 7 bits": lambda client: (b"\x00\x85\xf2\xb2\x4a\x84\xff\x84\x49"
                                                   b"\x50\x9f\xff"),
    # hpack/5.2/2: Huffman padding of zeros, not the EOS prefix
    "huffman padded by zeros": lambda client: b"\x00\x85\xf2\xb2\x4a\x84\xff\x83\x49\x50\x90",
    # hpack/5.2/3: the EOS symbol inside a Huffman string
    "huffman EOS": lambda client: (b"\x00\x85\xf2\xb2\x4a\x84\xff\x87\x49\x51\xff\xff\xff"
                                   b"\xfa\x7f"),
    # hpack/6.1/1: indexed, index 0
    "index 0": lambda client: b"\x80",
}


@pytest.mark.parametrize("make", HPACK_ERRORS.values(), ids=HPACK_ERRORS.keys())
def test_hpack_decoding_errors(open_client, make):
    """h2spec hpack/2.3.3/1, hpack/2.3.3/2, hpack/4.2/1, hpack/5.2/1 to /3, hpack/6.1/1:
    RFC 7541 calls each a decoding error, which RFC 9113 4.3 makes a connection error of
    type COMPRESSION_ERROR."""
    client = open_client()
    block = client.h2.encoder.encode(request_fields()) + make(client)
    client.raw(frame(HEADERS, END_STREAM | END_HEADERS, 1, block))
    assert_connection_error(client, ErrorCodes.COMPRESSION_ERROR)


def test_hpack_table_size_update_over_the_setting(open_client):
    """h2spec hpack/6.3/1: a dynamic table size update over the server's
    SETTINGS_HEADER_TABLE_SIZE: connection error COMPRESSION_ERROR."""
    client = open_client()
    block = _table_size_over_the_limit(client) + client.h2.encoder.encode(request_fields())
    client.raw(frame(HEADERS, END_STREAM | END_HEADERS, 1, block))
    assert_connection_error(client, ErrorCodes.COMPRESSION_ERROR)


# -- a body still owed after the answer (RFC 9113 8.1)


def answered_early(client: H2Client) -> int:
    """A POST whose application answers before reading any of its body, which the client
    has not ended: the stream is answered, the client may still send."""
    sid = client.request("/no-read", method="POST", end_stream=False)
    response = client.response(sid)
    assert response.status == 200 and response.ended and response.reset is None
    return sid


def test_body_still_owed_after_the_answer_is_still_checked(open_client):
    """The server may answer before the body ends.  The rest of the body the client may
    send without more window is taken (not reset at once with NO_ERROR), so a malformed
    body is a stream error whatever the timing (h2spec http2/8.1.2.6/2 once failed when the
    application answered between the client's frames), a clean END_STREAM ends the stream
    cleanly, and a client that spends its window on a body nobody reads is told to stop
    (NO_ERROR)."""
    client = open_client()
    longer = client.request("/no-read", method="POST", end_stream=False,
                            headers=[(b"content-length", b"3")])
    assert client.response(longer).status == 200
    client.send_data(longer, b"12345")
    assert_stream_error(client, longer, ErrorCodes.PROTOCOL_ERROR)

    clean = answered_early(client)
    client.send_data(clean, b"the rest", end_stream=True)
    ping(client)
    assert not frames_on(client, RstStreamFrame, clean)

    spent = answered_early(client)
    window = client.h2.local_flow_control_window(spent)
    while window:
        size = min(window, client.h2.max_outbound_frame_size)
        client.send_data(spent, b"x" * size)
        window -= size
    assert_stream_error(client, spent, ErrorCodes.NO_ERROR)


def test_malformed_ending_of_a_stream_already_answered_is_a_connection_error(open_client):
    """h2spec http2/8.1.2.1/3 when the application answered before the trailers came: their
    END_STREAM closes the stream both ways, no RST_STREAM may go on it any more (RFC 9113
    5.1), and the error is the connection's (5.4.1)."""
    client = open_client()
    client.h2.config.validate_outbound_headers = False
    client.h2.config.normalize_outbound_headers = False
    sid = answered_early(client)
    client.h2.send_headers(sid, [(b":path", b"/other")], end_stream=True)
    client.flush()
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


# -- lean streams beside h2 (see django_daphne/protocols/http2/lean.py)
#
# A request in one HEADERS frame is served without h2; one with a body through h2.  Both
# kinds on one connection: the frames, windows and HPACK contexts of the two stay one.


def header_blocks(client: H2Client) -> list[tuple[int, bytes]]:
    """Every header block the server sent, in order, with its stream."""
    blocks: list[tuple[int, bytes]] = []
    for f in client.sock.frames:
        if type(f).__name__ == "HeadersFrame":
            blocks.append((f.stream_id, f.data))
        elif isinstance(f, ContinuationFrame):
            blocks[-1] = (f.stream_id, blocks[-1][1] + f.data)
    return blocks


def test_lean_and_h2_responses_interleave_on_one_hpack_context(open_client):
    """GETs (lean: static table and literals only) and POSTs with bodies (h2's encoder,
    which indexes into the dynamic table) in flight together: every block decodes in the
    order it was sent, the lean ones leave the table as they found it."""
    from hpack import Decoder

    client = open_client()
    streams = {}
    for n in range(6):
        if n % 2:
            sid = client.request(f"/echo?n={n}", method="POST", body=b"x" * n)
        else:
            sid = client.request(f"/echo?n={n}")
        streams[sid] = "POST" if n % 2 else "GET"
    for sid, method in streams.items():
        response = client.response(sid)
        assert response.status == 200 and client.error is None
        assert json.loads(bytes(response.body))["method"] == method
    decoder = Decoder()
    grew = {}
    for sid, block in header_blocks(client):
        before = len(decoder.header_table.dynamic_entries)
        fields = decoder.decode(block, raw=True)
        assert fields[0] == (b":status", b"200")
        grew[sid] = len(decoder.header_table.dynamic_entries) > before
    assert not any(grew[sid] for sid, method in streams.items() if method == "GET")
    assert grew[min(s for s, m in streams.items() if m == "POST")]


def test_a_table_size_change_starts_the_next_block_even_a_lean_one(open_client):
    """RFC 7541 4.2: once the client lowered SETTINGS_HEADER_TABLE_SIZE (and the server
    acknowledged it), the next header block begins with a dynamic table size update, though
    the block is a lean stream's, which never uses the table."""
    client = open_client()
    posted = client.request("/echo", method="POST", body=b"fill the table")
    assert client.response(posted).status == 200
    acks = len([f for f in client.sock.frames if is_settings_ack(f)])
    client.raw(SettingsFrame(0, settings={SETTINGS.HEADER_TABLE_SIZE: 0}))
    client.wait(lambda: len([f for f in client.sock.frames if is_settings_ack(f)]) > acks,
                what="the SETTINGS ACK")
    client.h2.decoder.header_table_size = 0  # (as h2 would, on its own SETTINGS' ACK)
    lean = client.request("/echo")
    assert client.response(lean).status == 200 and client.error is None
    [first] = [block for sid, block in header_blocks(client) if sid == lean]
    assert first[0] & 0xE0 == 0x20 and first[0] & 0x1F == 0  # size update to 0, first
    again = client.request("/echo")
    assert client.response(again).status == 200
    [second] = [block for sid, block in header_blocks(client) if sid == again]
    assert second[0] & 0xE0 != 0x20


@pytest.mark.parametrize("flags", [["PADDED"], ["PRIORITY"], ["PADDED", "PRIORITY"]])
def test_a_request_with_padding_or_priority_in_one_frame_is_served(open_client, flags):
    client = open_client()
    sid, [headers] = open_stream(client, request_fields())
    for flag in flags:
        headers.flags.add(flag)
    if "PADDED" in flags:  # (hyperframe writes the padding with or without the flag)
        headers.pad_length = 17
    headers.depends_on, headers.stream_weight = 0, 200
    client.raw(headers)
    assert scope_headers(client.response(sid))


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_rst_stream_after_the_response_ended_is_ignored(open_client, method):
    """RFC 9113 5.1: RST_STREAM may arrive for a while after END_STREAM went (a client
    cancels as the response completes); the connection goes on, for a lean stream (GET)
    as for one of h2's (POST), also once h2 has forgotten it (when another stream opens)."""
    client = open_client()
    body = b"b" if method == "POST" else None
    done = client.request("/echo", method=method, body=body)
    assert client.response(done).status == 200
    later = client.request("/echo", method=method, body=body)
    assert client.response(later).status == 200
    client.raw(RstStreamFrame(done, error_code=ErrorCodes.CANCEL))
    ping(client)
    assert client.response(client.request("/echo")).status == 200
    assert client.goaway is None and not frames_on(client, RstStreamFrame, done)


def test_a_lean_request_split_across_reads_is_served(open_client):
    """A HEADERS frame whose end is still to come is held until it is whole."""
    client = open_client()
    for cut in (4, 12, -1):
        sid, [headers] = open_stream(client, request_fields("/echo?split"))
        data = headers.serialize()
        client.raw(data[:cut])
        # a round trip on another connection lets the server read the first part alone
        other = open_client()
        assert other.response(other.request("/echo")).status == 200
        client.raw(data[cut:])
        assert client.response(sid).status == 200


def test_data_on_a_lean_stream_just_finished_in_the_same_read(open_client):
    """A lean response held back by the connection's window; one read brings the
    WINDOW_UPDATE that lets it finish and a DATA frame on its stream: the response
    completes, h2 answers the DATA on the now closed stream (STREAM_CLOSED), the
    connection goes on.  (The server once crashed on it, the connection dropped.)"""
    client = open_client(settings={SETTINGS.INITIAL_WINDOW_SIZE: 1 << 20}, auto_ack=False)
    wait_frame(client, is_settings_ack, "the SETTINGS ACK")
    sid = client.request("/big?size=100000&whole=1")
    client.wait(lambda: client.received_data >= 65535, what="the connection's window")
    client.h2.increment_flow_control_window(100000)  # (the client's h2 keeps count too)
    client.raw(client.h2.data_to_send() + frame(DATA, 0, sid, b"x"))
    client.wait(lambda: client.received_data == 100000, what="the rest of the response")
    assert_stream_error(client, sid, ErrorCodes.STREAM_CLOSED)


def test_a_client_goaway_keeps_the_order_of_the_frames_around_it(open_client):
    """A body whose end arrives in the read that also brings a GOAWAY, a PING and a
    request in one HEADERS frame: the application gets the body whole, the PING is
    answered, and the request after the GOAWAY is served (the client still waits for it,
    RFC 9113 6.8)."""
    client = open_client()
    posted, [headers] = open_stream(client, request_fields(method="POST"), end_stream=False)
    body = frame(DATA, END_STREAM, posted, b"0123456789")
    client.raw(headers.serialize() + body[:12])
    other = open_client()  # a round trip elsewhere: the server reads the first part alone
    assert other.response(other.request("/echo")).status == 200
    lean, [request] = open_stream(client, request_fields())
    client.raw(body[12:] + GoAwayFrame(0, last_stream_id=0).serialize()
               + PingFrame(0, opaque_data=b"ordered!").serialize() + request.serialize())
    assert json.loads(bytes(client.response(posted).body))["body"] == "0123456789"
    wait_frame(client, lambda f: isinstance(f, PingFrame) and "ACK" in f.flags
               and f.opaque_data == b"ordered!", "the PING ACK")
    assert client.response(lean).status == 200


# -- What tests/protocols/http2/test_http2_differential.py found, on the lean path (a request in one
# HEADERS frame) and h2's (a request with a body) alike


def lean_or_h2(client: H2Client, path: str, method: str, extra=()) -> int:
    """A request the lean path takes (GET, one frame) or h2 does (POST with a body)."""
    fields = request_fields(path, method, extra)
    if method == "GET":
        return open_stream_sent(client, fields)
    sid = client.send_headers(fields, end_stream=False)
    client.send_data(sid, b"body", end_stream=True)
    return sid


def open_stream_sent(client: H2Client, fields: list) -> int:
    sid, frames = open_stream(client, fields)
    client.raw(b"".join(f.serialize() for f in frames))
    return sid


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_cookie_split_over_several_fields_reaches_the_application_joined(open_client,
                                                                          method):
    """RFC 9113 8.2.3: the cookie fields are joined with "; " before the application sees
    them, so that Django (which joins repeated fields with ",") reads each cookie."""
    from django.http.cookie import parse_cookie

    client = open_client()
    sid = lean_or_h2(client, "/echo", method, [
        (b"cookie", b"sessionid=abc"), (b"x-between", b"1"), (b"cookie", b"csrftoken=xyz")])
    headers = scope_headers(client.response(sid))
    assert [v for n, v in headers if n == "cookie"] == ["sessionid=abc; csrftoken=xyz"]
    assert [n for n, _ in headers].index("cookie") < [n for n, _ in headers].index(
        "x-between")  # where the first one was
    # what Django's ASGIRequest does with the scope's headers (django/core/handlers/asgi.py)
    meta = ",".join(v for n, v in headers if n == "cookie")
    assert parse_cookie(meta) == {"sessionid": "abc", "csrftoken": "xyz"}


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_cookie_before_the_pseudo_headers_is_malformed(open_client, method):
    """RFC 9113 8.3: pseudo-header fields come first; a cookie before them is no
    exception (h2 once moved cookies after everything else, and served the request)."""
    from hpack import Encoder

    client = open_client()
    # the client's h2 opens the stream (it would refuse these fields), unsent
    sid, _ = open_stream(client, request_fields(), end_stream=method == "GET")
    fields = [(b"cookie", b"a=1"), *request_fields()]
    flags = END_HEADERS | (END_STREAM if method == "GET" else 0)
    client.raw(frame(HEADERS, flags, sid, Encoder().encode(fields)))
    if method == "POST":
        client.raw(frame(DATA, END_STREAM, sid, b"body"))
    assert_stream_error(client, sid, ErrorCodes.PROTOCOL_ERROR)


def goaways(client: H2Client) -> list[tuple[int, int]]:
    return [(f.error_code, f.last_stream_id) for f in client.sock.frames
            if isinstance(f, GoAwayFrame)]


@pytest.mark.parametrize("bad, read", [("h2's", "one read"), ("h2's", "two reads"),
                                       ("the frame walk's", "two reads")])
def test_a_goaway_never_names_a_later_stream_than_the_one_before(open_client, bad, read):
    """RFC 9113 6.8: the last stream id of GOAWAY never increases.  The client's GOAWAY
    starts a graceful stop (stream 1, a POST whose body is still to come, keeps the
    connection open), the server's GOAWAY says 1; stream 3, opened after it, is refused;
    then a connection error (a PING on a stream, which h2 refuses; a CONTINUATION outside
    a header block, which the frame walk does), sent with stream 3 (h2 then saw the stream
    open, though it never says so) or once stream 3 was refused: its GOAWAY says 1 too."""
    client = open_client()
    posted = client.request("/echo", method="POST", end_stream=False)
    client.raw(GoAwayFrame(0, last_stream_id=0))
    wait_frame(client, lambda f: isinstance(f, GoAwayFrame), "the graceful GOAWAY")
    assert goaways(client) == [(ErrorCodes.NO_ERROR, posted)]
    sid, frames = open_stream(client, request_fields())
    refused = b"".join(f.serialize() for f in frames)
    error = frame(PING, 0, posted, b"12345678") if bad == "h2's" else \
        frame(CONTINUATION, END_HEADERS, sid, b"")
    if read == "one read":
        client.raw(refused + error)
    else:
        client.raw(refused)
        reset = wait_frame(client, lambda f: isinstance(f, RstStreamFrame)
                           and f.stream_id == sid, "RST_STREAM on the refused stream")
        assert reset.error_code == ErrorCodes.REFUSED_STREAM
        client.raw(error)
    client.wait(lambda: len(goaways(client)) == 2, what="the second GOAWAY")
    assert goaways(client)[1] == (ErrorCodes.PROTOCOL_ERROR, posted)
    client.wait_closed()


@pytest.mark.parametrize("more", [False, True], ids=["one frame", "continued"])
def test_padding_that_overlaps_the_priority_fields_is_a_connection_error(open_client, more):
    """RFC 9113 6.2: padding longer than what the priority fields leave of the payload is
    a PROTOCOL_ERROR (it was read as an empty field block, and answered 400): a request in
    one frame (the lean path's) and one continued in a CONTINUATION frame (h2's)."""
    client = open_client()
    block = client.h2.encoder.encode(request_fields())
    payload = bytes([len(block) + 1]) + (0).to_bytes(4, "big") + bytes([15]) + block
    flags = PADDED | 0x20 | (0 if more else END_HEADERS | END_STREAM)
    client.raw(frame(HEADERS, flags, 1, payload))
    if more:
        client.raw(frame(CONTINUATION, END_HEADERS, 1, b""))
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("sizes, updates", [((0, 0), [0]), ((100, 50), [50]),
                                            ((0, 4096), [0, 4096])])
def test_table_size_updates_are_the_smallest_then_the_final_size(open_client, method,
                                                                 sizes, updates):
    """RFC 7541 4.2: SETTINGS_HEADER_TABLE_SIZE changed twice before the next header
    block: the block begins with the smallest size, then the final one, each within the
    client's limit when the block is sent (hpack wrote 100 then 50, over the limit of 50,
    and nothing at all for the same size twice; nghttp2 refuses either)."""
    client = open_client()
    acks = sum(map(is_settings_ack, client.sock.frames))
    for size in sizes:
        client.raw(SettingsFrame(0, settings={SETTINGS.HEADER_TABLE_SIZE: size}))
    client.wait(lambda: sum(map(is_settings_ack, client.sock.frames)) == acks + 2,
                what="the SETTINGS ACKs")
    client.h2.decoder.header_table_size = sizes[-1]  # (as h2 would, on its SETTINGS' ACK)
    sid = lean_or_h2(client, "/echo", method)
    assert client.response(sid).status == 200 and client.error is None
    [block] = [block for s, block in header_blocks(client) if s == sid]
    assert table_size_updates(block) == updates


@pytest.mark.parametrize("on", ["connection", "stream"])
def test_a_window_update_with_the_reserved_bit_set_opens_the_window(open_client, on):
    """RFC 9113 6.9: the reserved bit of a WINDOW_UPDATE is ignored (it was read as part
    of the increment, over 2^31-1: a PROTOCOL_ERROR, on the connection and h2's streams).
    A response held back by a window of 0 goes on once the WINDOW_UPDATE opens it."""
    if on == "stream":
        client = open_client(auto_ack=False)
        acks = sum(map(is_settings_ack, client.sock.frames))
        client.raw(SettingsFrame(0, settings={SETTINGS.INITIAL_WINDOW_SIZE: 0}))
        client.wait(lambda: sum(map(is_settings_ack, client.sock.frames)) == acks + 1,
                    what="the SETTINGS ACK")
        sid = lean_or_h2(client, "/echo", "POST")  # (h2's: the lean path was right)
        wait_frame(client, lambda f: type(f).__name__ == "HeadersFrame"
                   and f.stream_id == sid, "the response's HEADERS")
    else:
        client = open_client(settings={SETTINGS.INITIAL_WINDOW_SIZE: 1 << 20},
                             auto_ack=False)
        client.wait(lambda: sum(map(is_settings_ack, client.sock.frames)) == 2,
                    what="the SETTINGS ACKs")
        sid = client.request("/big?size=70000&whole=1")
        client.wait(lambda: client.received_data >= 65535, what="the connection's window")
    ping(client)
    assert not client.responses[sid].ended
    client.h2.increment_flow_control_window(100000)  # (as sent next, less the reserved bit)
    client.h2.data_to_send()
    reserved = (0x80000000 | 100000).to_bytes(4, "big")
    client.raw(frame(WINDOW_UPDATE, 0, sid if on == "stream" else 0, reserved))
    client.wait(lambda: client.responses[sid].ended, what="the rest of the response")
    assert client.goaway is None and client.error is None


def test_what_follows_a_malformed_request_in_one_read_is_ignored(open_client):
    """A malformed request (a content-length that is no number), its body and malformed
    trailers (continued in a CONTINUATION frame, so that h2 reads all of it at once) in
    one write: its stream is reset (PROTOCOL_ERROR) and the rest ignored (RFC 9113 5.1),
    the connection goes on.  (The trailers were taken for those of a stream answered
    already, and ended the connection.)"""
    client = open_client()
    sid, [headers] = open_stream(client, request_fields(
        method="POST", extra=[(b"content-length", b"four")]), end_stream=False)
    trailers = client.h2.encoder.encode([(b":path", b"/")])
    client.raw(headers.serialize() + frame(DATA, 0, sid, b"body")
               + frame(HEADERS, END_STREAM, sid, trailers[:1])
               + frame(CONTINUATION, END_HEADERS, sid, trailers[1:]))
    assert_stream_error(client, sid, ErrorCodes.PROTOCOL_ERROR)


@pytest.mark.parametrize("first", ["PING", "undecodable HEADERS"])
def test_frames_before_one_the_frame_walk_refuses_are_read_first(open_client, first):
    """One read: a frame, then a CONTINUATION outside any header block (which the frame
    walk refuses before h2 sees it).  The frame before it is read first: a PING is
    answered, then GOAWAY(PROTOCOL_ERROR); a header block that does not decode is the
    first error, GOAWAY(COMPRESSION_ERROR).  (The walk's error dropped what came before
    it in the read, or came first.)"""
    client = open_client()
    before = frame(PING, 0, 0, b"first!!!") if first == "PING" else \
        frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff\x0f")
    client.raw(before + frame(CONTINUATION, END_HEADERS, 1, b""))
    if first == "PING":
        wait_frame(client, lambda f: isinstance(f, PingFrame) and "ACK" in f.flags
                   and f.opaque_data == b"first!!!", "the PING ACK")
    assert_connection_error(client, ErrorCodes.PROTOCOL_ERROR if first == "PING"
                            else ErrorCodes.COMPRESSION_ERROR)
