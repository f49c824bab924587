"""HTTP/2 with h2: streams in, one HTTPStream each, flow control both ways, attack bounds.

Like HTTP/1.1, this module knows framing and nothing of ASGI: every request stream gets an
:class:`~django_daphne.asgi.http.HTTPStream` whose wire is an :class:`H2Stream`.
It is the handler of the Connection that accepted the socket (chosen by
the prior-knowledge preface, by ALPN on TLS, or by ``Upgrade: h2c``), which keeps the
transport, the write flow control and the deadline the server's sweep checks.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import h2.stream
from h2.errors import ErrorCodes
from hpack.exceptions import HPACKError
from hyperframe.frame import GoAwayFrame

from ..asgi.http import DONE, START, BadRequest, HTTPStream, build_scope
from .http1_parser import VISIBLE_VALUE_CHARS

logger = logging.getLogger("django_daphne.http2")

# connection-specific header fields HTTP/2 forbids (RFC 9113 8.2.2); "te" has no meaning in
# a response and h2 refuses any value but "trailers"
_HOP_BY_HOP = frozenset((
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te",
))
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
# a field name as HTTP/2 carries it: a token, in lower case (RFC 9113 8.2.1)
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+").fullmatch
# a field value: the characters the HTTP/1.1 parser accepts, so that one request means the
# same over either protocol, with no whitespace around it (RFC 9113 8.2.1)
_VALUE = re.compile(rb"(?:[%(v)s](?:[\t\x20%(v)s]*[%(v)s])?)?"
                    % {b"v": VISIBLE_VALUE_CHARS}).fullmatch
_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))
_FORBIDDEN = _HOP_BY_HOP - {b"te"}
_LENGTH = re.compile(rb"[0-9]{1,18}").fullmatch
_PATH = re.compile(rb"[\x21-\x7e]+").fullmatch  # what HTTP/1.1 accepts in a request target
_NO_BODY_STATUSES = frozenset((204, 304))
_SPACE = (b" ", b"\t")
# the HPACK table for response headers: a client's larger SETTINGS_HEADER_TABLE_SIZE is only a
# ceiling (RFC 7541 4.2), and honouring 4 GiB of it would let a connection's memory grow
# with every distinct header value sent
_ENCODER_TABLE_SIZE = 4096
# more than this many control frames (PING, SETTINGS, empty DATA, PRIORITY, ...) a second
_CONTROL_FRAMES_PER_SECOND = 1000
# the largest response header list for a client that announces no SETTINGS_MAX_HEADER_LIST_SIZE:
# the limit h2 (httpx), nghttp2 (curl) and others apply without announcing it, and answer a
# larger one by ending the whole connection
_DEFAULT_PEER_HEADER_LIST = 65536
_ERROR_BODY = b"Internal Server Error\n"
# DATA bytes held in h2's buffer before they are written without waiting for the loop's turn
_FLUSH_AT = 65536


def _response_fields(headers: list) -> list:
    """Header fields as HTTP/2 carries them: lower-case names, no connection-specific field,
    no whitespace around a value (RFC 9113 8.2.1).  The ASGI layer has already checked that
    names are tokens (so never a pseudo-header) and values free of CR, LF and NUL, so h2 is
    not asked to check every response again (its outbound validation is off)."""
    fields = []
    for name, value in headers:
        name = name.lower()
        if name in _HOP_BY_HOP:
            continue
        if value[:1] in _SPACE or value[-1:] in _SPACE:
            value = value.strip(b" \t")
        fields.append((name, value))
    return fields


_BASE64URL = re.compile(rb"[A-Za-z0-9_-]*=*").fullmatch


def valid_upgrade_settings(value: bytes) -> bool:
    """Whether an ``HTTP2-Settings`` header (RFC 7540 3.2.1: base64url SETTINGS payload) is
    one h2 will take: a whole number of 6-byte settings, each value within its range."""
    if not _BASE64URL(value):
        return False
    try:
        h2.connection.H2Connection(h2.config.H2Configuration(client_side=False)) \
            .initiate_upgrade_connection(value)
    except Exception:  # noqa: BLE001 - whatever h2 refuses, the upgrade is declined
        return False
    return True


def _malformed(fields: list, trailers: bool = False) -> str | None:
    """Why a header block is malformed (RFC 9113 8.1.1, 8.2, 8.3), or None when it is not.

    h2 would end the whole connection for any of these; checked here instead, a malformed
    request is refused on its own stream, and the other streams of the connection go on.
    What makes sense only with the pseudo-headers' values is checked in ``_request``."""
    seen: set = set()
    regular = False
    for name, value in fields:
        if name[:1] == b":":
            if trailers or regular:
                return "pseudo-header %s after the header fields" % _show(name) \
                    if regular else "pseudo-header %s in trailers" % _show(name)
            if name not in _PSEUDO:
                return "unknown pseudo-header %s" % _show(name)
            if name in seen:
                return "repeated pseudo-header %s" % _show(name)
            seen.add(name)
        else:
            regular = True
            if not _NAME(name):
                return "invalid header name %s" % _show(name)
            if name in _FORBIDDEN:
                return "connection-specific header %s" % _show(name)
            if name == b"te" and value.lower() != b"trailers":
                return "te other than trailers"
        if not _VALUE(value):
            return "invalid value for %s" % _show(name)
    return None


def _show(name: bytes) -> str:
    return repr(name.decode("latin-1"))


class _H2StreamState(h2.stream.H2Stream):
    """h2's stream state, less its content-length checks: h2 makes a wrong content-length
    an error of the whole connection, where RFC 9113 8.1.1 makes it an error of the stream
    alone, so HTTP2Connection checks it per stream."""

    __slots__ = ()

    def _initialize_content_length(self, headers: Any) -> None:
        self._expected_content_length = None

    def _track_content_length(self, length: int, end_stream: bool) -> None:
        pass


class _H2Connection(h2.connection.H2Connection):
    def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> h2.stream.H2Stream:
        state = super()._begin_new_stream(stream_id, allowed_ids)
        state.__class__ = _H2StreamState
        return state

    def _receive_headers_frame(self, frame: Any) -> Any:
        # h2 reports a field block that HPACK cannot decode as PROTOCOL_ERROR, where RFC 9113
        # 4.3 makes it a connection error of type COMPRESSION_ERROR; receive_data sends the
        # GOAWAY with the code of the exception
        try:
            return super()._receive_headers_frame(frame)
        except h2.exceptions.ProtocolError as exc:
            if type(exc) is h2.exceptions.ProtocolError and isinstance(
                exc.__cause__, (HPACKError, IndexError, TypeError, UnicodeDecodeError)
            ):
                exc.error_code = ErrorCodes.COMPRESSION_ERROR
            raise


class _Refused(Exception):
    """What the client sent ends the connection with a GOAWAY of this error code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class H2Stream:
    """The wire side of one HTTP/2 stream: what HTTPStream calls to answer."""

    __slots__ = (
        "conn", "stream_id", "stream", "is_head", "start", "pending", "end_after",
        "trailers", "ended", "paused", "unacked", "waiters", "body_ended", "length_left",
        "body_at", "length_out", "replaced",
    )
    tunnel = False  # a WebSocket stream (RFC 8441), whose wire is a subclass

    def __init__(self, conn: HTTP2Connection, stream_id: int, is_head: bool) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.stream: HTTPStream | None = None
        self.is_head = is_head
        self.start: tuple[int, list] | None = None
        self.pending: deque = deque()  # response data waiting for flow-control window
        self.end_after = False  # end the stream once pending is sent
        self.trailers: list | None = None
        self.ended = False
        self.paused = False
        self.unacked = 0  # request body bytes received but not yet acknowledged
        self.waiters: list = []
        self.body_ended = False  # the client ended its side of the stream
        self.length_left: int | None = None  # of the request's content-length, if it had one
        self.body_at = conn.server.clock  # when the body last moved: arrived, or was taken
        self.length_out: int | None = None  # of the response's content-length, still to send
        self.replaced = False  # the application's response could not go out: a 500 went

    # -- reading: the window reopens only as the application takes the body

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False
        self.body_at = self.conn.server.clock
        if self.unacked:
            self.conn.acknowledge(self.stream_id, self.unacked)
            self.unacked = 0
            self.conn.flush_soon()

    def send_continue(self) -> None:
        """HTTP/2 clients do not wait for 100-continue; nothing to send."""

    # -- writing

    def response_start(self, status: int, headers: list) -> None:
        self.start = (status, headers)

    def _head_fields(self, status: int, headers: list) -> list:
        fields = [(b":status", b"%d" % status), *_response_fields(headers)]
        if status == 204:
            # RFC 9110 8.6: never in a 204; nghttp2 (curl) resets a stream whose 204 has one
            fields = [f for f in fields if f[0] != b"content-length"]
        conn = self.conn
        if conn.server_header:
            if not any(n == b"server" for n, _ in fields):
                fields.append((b"server", conn.server_header))
        if not any(n == b"date" for n, _ in fields):
            fields.append((b"date", conn.server.http_date.encode("ascii")))
        return fields

    def _unsendable(self, fields: list, no_body: bool, body: bytes, more: bool) -> str | None:
        """Why the application's response head cannot go out as it is, or None.

        A client takes a header list over its SETTINGS_MAX_HEADER_LIST_SIZE, or a body
        that disagrees with its content-length, for a malformed response, and h2 clients
        end the whole connection for it (every other stream with it): such a response is
        not sent."""
        limit = self.conn.h2.remote_settings.max_header_list_size
        if limit is None:
            limit = _DEFAULT_PEER_HEADER_LIST
        size = sum(len(n) + len(v) + 32 for n, v in fields)  # RFC 9113 6.5.2
        if size > limit:
            return "its header list of %d bytes is over the client's limit of %d" % (
                size, limit)
        lengths = {v for n, v in fields if n == b"content-length"}
        if not lengths or no_body:
            return None
        if len(lengths) > 1 or not _LENGTH(next(iter(lengths))):
            return "invalid content-length %r" % b", ".join(sorted(lengths)).decode("latin-1")
        length = int(next(iter(lengths)))
        if len(body) > length:
            return "more body than its content-length"
        if not more and len(body) < length and self.trailers is None:
            return "less body than its content-length"
        self.length_out = length - len(body)
        return None

    def _send_headers(self, fields: list, end_stream: bool) -> None:
        conn = self.conn
        try:
            conn.h2.send_headers(self.stream_id, fields, end_stream=end_stream)
        except h2.exceptions.ProtocolError as exc:
            logger.error("HTTP/2 refused the application's response headers: %s", exc)
            conn.reset(self.stream_id, ErrorCodes.INTERNAL_ERROR)
            return
        if end_stream:
            self.ended = True

    def _replace(self, problem: str) -> None:
        """Answer 500 in place of a response that cannot be sent; the application's own
        body, still to come, is dropped.  A WebSocket stream's answer is not replaced: the
        stream is reset."""
        if self.tunnel:
            logger.error("Answer to the WebSocket on HTTP/2 stream %d cannot be sent (%s); "
                         "stream reset", self.stream_id, problem)
            self.conn.reset(self.stream_id, ErrorCodes.INTERNAL_ERROR)
            return
        logger.error("Application's response to HTTP/2 stream %d cannot be sent (%s); "
                     "answered 500", self.stream_id, problem)
        self.replaced = True
        self.trailers = None
        self.length_out = None
        if self.stream is not None:
            self.stream.status = 500  # what the access log shows
        fields = self._head_fields(500, [(b"content-type", b"text/plain; charset=utf-8"),
                                         (b"content-length", b"%d" % len(_ERROR_BODY))])
        self._send_headers(fields, end_stream=self.is_head)
        if not self.ended:
            self.pending.append(_ERROR_BODY)
            self.end_after = True
            self.conn.send_pending(self)
        self.conn.flush_soon()

    def _wrong_length(self, problem: str) -> None:
        """The body broke its content-length after the head went out: the client must not
        take what it got for the whole response, and the stream is reset (RFC 9113 8.1.1)."""
        logger.error("Application sent %s on HTTP/2 stream %d; stream reset", problem,
                     self.stream_id)
        self.conn.reset(self.stream_id, ErrorCodes.INTERNAL_ERROR)

    def response_body(self, body: bytes, more: bool) -> None:
        if self.ended or self.conn.closed or self.replaced:
            return
        if self.start is not None:
            status, headers = self.start
            self.start = None
            no_body = self.is_head or status in _NO_BODY_STATUSES
            fields = self._head_fields(status, headers)
            problem = self._unsendable(fields, no_body, body, more)
            if problem is not None:
                self._replace(problem)
                return
            self.is_head = no_body  # no body may follow, whatever the application sends
            end = (no_body or not (body or more)) and not more and self.trailers is None
            self._send_headers(fields, end_stream=end)
            if self.ended:
                self.conn.flush_soon()
                return
        elif self.length_out is not None:
            self.length_out -= len(body)
            if self.length_out < 0 or (self.length_out and not more and self.trailers is None):
                self._wrong_length("more body than its content-length" if self.length_out < 0
                                   else "less body than its content-length")
                return
        if self.is_head:
            body = b""
        if body:
            self.pending.append(body)
        if not more:
            self.end_after = True
        self.conn.send_pending(self)
        self.conn.flush_soon()

    def response_trailers(self, headers: list) -> None:
        if self.ended or self.conn.closed or self.replaced:
            return
        if self.length_out:
            self._wrong_length("less body than its content-length")
            return
        self.trailers = _response_fields(headers)
        self.end_after = True
        self.conn.send_pending(self)
        self.conn.flush_soon()

    @property
    def write_paused(self) -> bool:
        return bool(self.pending) or self.conn.conn.write_paused

    async def drain(self) -> None:
        while (self.pending or self.conn.conn.write_paused) and not (
            self.ended or self.conn.closed
        ):
            if self.pending:
                waiter = self.conn.server.loop.create_future()
                self.waiters.append(waiter)
                await waiter
            else:
                await self.conn.conn.drain()

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def abort(self) -> None:
        self.conn.reset(self.stream_id, ErrorCodes.INTERNAL_ERROR)

    def response_complete(self) -> None:
        self.conn.stream_finished(self)


class HTTP2Connection:
    """An HTTP/2 connection over an accepted socket."""

    def __init__(self, conn: Any, upgrade: tuple[Any, bytes] | None = None) -> None:
        self.conn = conn
        self.server = server = conn.server
        config = server.config
        self.config = config
        self.closed = False
        self.shutting_down = False
        self.flush_pending = False
        self.unflushed = 0  # DATA bytes handed to h2 since the last flush
        self.server_header = config.server_name.encode("latin-1") if config.server_name else b""
        self.streams: dict[int, H2Stream] = {}
        self.tunnels: set = set()  # WebSockets over a stream (RFC 8441), while open
        self.orphans: list[HTTPStream] = []  # apps of reset streams, still running
        # streams whose response waits for the client to open its window, and since when
        self.blocked: dict[H2Stream, float] = {}
        self.body_check: float | None = None  # when to look for stalled request bodies
        # the frame walk (see _screen): the client's preface still to come, the payload
        # bytes of a frame passed on whose end is still to come (the preface first), the
        # bytes held back until a frame header (or a whole GOAWAY) is in, and the size so
        # far of a header block that continues
        self.preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        self.skip = 24
        self.held = b""
        self.block = 0
        self.last_stream_id = 0
        self.window_start = server.clock
        self.resets = 0
        self.control_frames = 0
        self.max_resets = max(100, 2 * config.http2_max_concurrent_streams)
        self.max_frame_size = config.http2_max_frame_size
        self.max_header_block = config.http2_max_header_list_size
        settings = h2.settings.SettingCodes
        self.h2 = _H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=False,
            validate_outbound_headers=False, normalize_outbound_headers=False,
        ))
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            settings.MAX_CONCURRENT_STREAMS: config.http2_max_concurrent_streams,
            settings.INITIAL_WINDOW_SIZE: config.http2_initial_window_size,
            settings.MAX_FRAME_SIZE: config.http2_max_frame_size,
            settings.MAX_HEADER_LIST_SIZE: config.http2_max_header_list_size,
            settings.ENABLE_CONNECT_PROTOCOL: int(config.http2_websocket),
        })
        # h2 applies these only once the client acknowledges them: apply them at once
        self.h2.max_inbound_frame_size = config.http2_max_frame_size
        self.h2.decoder.max_header_list_size = config.http2_max_header_list_size
        if upgrade is None:
            self.h2.initiate_connection()
        else:
            self.h2.initiate_upgrade_connection(upgrade[1])
        # The SETTINGS sent advertise the stream limit. h2 would answer a stream over it by
        # closing the whole connection, where RFC 9113 5.1.2 makes it a stream error: the
        # server refuses such a stream itself (REFUSED_STREAM, see _request), so h2's own
        # check is moved out of the way.
        local = self.h2.local_settings
        local.max_concurrent_streams = 2**31 - 1
        local.acknowledge()
        # A stream whose application does not read holds back up to its own window of the
        # connection's window too: give the connection room for every stream's window, so
        # one slow reader does not stall the uploads of the others.
        room = min(2**31 - 1, config.http2_max_concurrent_streams
                   * config.http2_initial_window_size) - 65535
        if room > 0:
            self.h2.increment_flow_control_window(room)
        if upgrade is not None:
            head = upgrade[0]
            headers = [(n, v) for n, v in head.headers
                       if n not in _HOP_BY_HOP and n != b"http2-settings"]
            self._start_stream(1, head.method, None, head.target, headers, ended=True)
        self.flush()
        self._update_deadline()

    # -- bytes in

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.preface:
            # h2 checks it too, but the frame walk below must not read a broken preface
            # as frames (and answer, say, FRAME_SIZE_ERROR for it)
            seen = min(len(data), len(self.preface))
            if data[:seen] != self.preface[:seen]:
                logger.info("HTTP/2 client %s sent an invalid connection preface",
                            self.conn.client)
                self._terminate(ErrorCodes.PROTOCOL_ERROR)
                return
            self.preface = self.preface[seen:]
        goaway = None
        if self.held or len(data) > self.skip:
            try:
                data, goaway = self._screen(data)
            except _Refused as exc:
                logger.info("HTTP/2 client %s sent %s; closing the connection",
                            self.conn.client, exc.reason)
                self._terminate(exc.code)
                return
        else:
            self.skip -= len(data)
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            logger.info("HTTP/2 protocol error from %s: %s", self.conn.client, exc)
            self._terminate(None)  # h2 has written its GOAWAY
            return
        in_headers = None  # the priority carried by the last HEADERS: not a frame of its own
        for event in events:
            kind = type(event)
            if kind is h2.events.DataReceived:
                self._data(event)
            elif kind is h2.events.RequestReceived:
                in_headers = event.priority_updated
                self._request(event)
            elif kind is h2.events.StreamEnded:
                self._body_ended(event.stream_id)
            elif kind is h2.events.WindowUpdated:
                self._window_opened(event.stream_id)
            elif kind is h2.events.StreamReset:
                self._stream_reset(event)
            elif kind is h2.events.TrailersReceived:
                wire = self.streams.get(event.stream_id)
                if wire is not None and wire.tunnel:
                    # RFC 9113 8.5: only DATA and stream management frames on a tunnel
                    self.reset(event.stream_id, ErrorCodes.PROTOCOL_ERROR)
                elif (problem := _malformed(event.headers, trailers=True)) is not None:
                    logger.info("HTTP/2 client %s sent malformed trailers on stream %d: %s",
                                self.conn.client, event.stream_id, problem)
                    self.reset(event.stream_id, ErrorCodes.PROTOCOL_ERROR)
                elif event.stream_ended:
                    self._body_ended(event.stream_id)
            elif kind is h2.events.ConnectionTerminated:
                self.closed = True
                self.flush()
                self.conn.close()
                return
            elif kind is h2.events.RemoteSettingsChanged:
                self._count_control_frame()
                if self.h2.encoder.header_table_size > _ENCODER_TABLE_SIZE:
                    self.h2.encoder.header_table_size = _ENCODER_TABLE_SIZE
                if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                    # every stream's send window moved, with no WINDOW_UPDATE to say so
                    self._window_opened(0)
            elif kind is h2.events.PriorityUpdated:
                if event is not in_headers:
                    self._count_control_frame()
            elif kind in (h2.events.PingReceived, h2.events.UnknownFrameReceived):
                self._count_control_frame()
            if self.closed:
                return
        if goaway is not None:
            self._client_goaway(goaway)
        self.flush()

    def _screen(self, data: bytes) -> tuple[bytes, int | None]:
        """The bytes for h2 once each frame header in them has been looked at, with any
        GOAWAY from the client taken out, and that GOAWAY's error code.

        Only frame headers are read; the payloads pass untouched.  Raises _Refused for
        what ends the connection before h2 would see it:

        - a frame over the size we announced: h2 would buffer its whole declared length
          before looking at it;
        - a header block (HEADERS and its CONTINUATION frames) over the header list size
          we announced: h2 gathers up to 64 frames, each as large as a frame may be,
          before decoding any of it;
        - a SETTINGS acknowledgement with a payload: FRAME_SIZE_ERROR (RFC 9113 6.5),
          where h2 says PROTOCOL_ERROR.

        GOAWAY: h2 takes a client's GOAWAY for the end of the connection and refuses to
        send anything more, but the client still waits for the responses of the streams it
        opened (RFC 9113 6.8): those are finished first (see _client_goaway)."""
        if self.held:
            data = self.held + data
            self.held = b""
        size = len(data)
        pos = self.skip
        code = None
        kept = []
        start = 0
        while pos < size:
            if size - pos < 9:  # the header's end is still to come
                self.held = data[pos:]
                break
            length = int.from_bytes(data[pos:pos + 3], "big")
            kind = data[pos + 3]
            end = pos + 9 + length
            if length > self.max_frame_size:
                raise _Refused(ErrorCodes.FRAME_SIZE_ERROR,
                               "a frame of %d bytes (the limit is %d)"
                               % (length, self.max_frame_size))
            if kind == 0x1 or kind == 0x9:  # HEADERS, CONTINUATION
                flags = data[pos + 4]
                block = length + self.block if kind == 0x9 else length
                if block > self.max_header_block and not (kind == 0x1 and flags & 0x4):
                    # (a header block in one frame is held to its size by h2's decoder)
                    raise _Refused(ErrorCodes.ENHANCE_YOUR_CALM,
                                   "a header block over %d bytes" % self.max_header_block)
                self.block = 0 if flags & 0x4 else block
            elif kind == 0x4 and data[pos + 4] & 0x1 and length:
                raise _Refused(ErrorCodes.FRAME_SIZE_ERROR,
                               "a SETTINGS acknowledgement with a payload")
            elif kind == 0x7 and length >= 8 and not any(data[pos + 5:pos + 9]):
                if end > size:  # a GOAWAY is taken whole or not at all
                    self.held = data[pos:]
                    break
                code = int.from_bytes(data[pos + 13:pos + 17], "big")
                kept.append(data[start:pos])
                start = end
            pos = end
        else:
            self.skip = pos - size
            if start:
                kept.append(data[start:])
                return b"".join(kept), code
            return data, code
        # stopped at bytes held back: pass on what came before them
        self.skip = 0
        kept.append(data[start:pos])
        return b"".join(kept), code

    def _client_goaway(self, code: int) -> None:
        """The client goes away: after an error at once, else once the streams it opened
        are answered (it opens no new ones)."""
        if code:
            logger.info("HTTP/2 client %s went away with error code %d", self.conn.client,
                        code)
            self.closed = True
            self.conn.close()
            return
        self.shutdown()

    def _body_ended(self, stream_id: int) -> None:
        wire = self.streams.get(stream_id)
        if wire is not None:
            if wire.length_left:
                self._wrong_length(wire)
                return
            wire.body_ended = True
            if wire.ended:
                self._release(wire)  # it was answered already (see _release)
            elif wire.stream is not None:
                wire.stream.body_finished()

    def _wrong_length(self, wire: H2Stream) -> None:
        """A body longer, or ended shorter, than its content-length: malformed (RFC 9113
        8.1.1). Its application has had only what the content-length allowed; it hears
        http.disconnect, as if the client had gone, and the stream is reset."""
        logger.info("HTTP/2 client %s sent a body that does not match its content-length "
                    "on stream %d", self.conn.client, wire.stream_id)
        self.reset(wire.stream_id, ErrorCodes.PROTOCOL_ERROR)

    def _request(self, event: Any) -> None:
        stream_id = event.stream_id
        self.last_stream_id = max(self.last_stream_id, stream_id)
        if self.shutting_down:
            self.reset(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        limit = self.config.http2_max_concurrent_streams
        if len(self.streams) + len(self.orphans) >= limit:
            # applications of streams the client reset may still run: they count too
            self.orphans = [s for s in self.orphans if s.task is not None and not s.task.done()]
            if len(self.streams) + len(self.orphans) >= limit:
                self.reset(stream_id, ErrorCodes.REFUSED_STREAM)
                # a client that keeps opening streams over the limit is one that resets
                self._count_reset()
                return
        ended = event.stream_ended is not None
        fields = event.headers
        problem = _malformed(fields)
        if problem is not None:
            self._malformed_request(stream_id, problem)
            return
        method = path = scheme = authority = protocol = host = length = None
        headers = []
        for name, value in fields:
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":scheme":
                    scheme = value
                elif name == b":authority":
                    authority = value
                elif name == b":protocol":
                    protocol = value
            else:
                if name == b"host":
                    if host is not None:
                        self._malformed_request(stream_id, "more than one host header")
                        return
                    host = value
                elif name == b"content-length":
                    if not _LENGTH(value) or (length is not None and value != length):
                        self._malformed_request(stream_id, "invalid content-length")
                        return
                    length = value
                headers.append((name, value))
        if authority is not None:
            if host is None:
                headers.insert(0, (b"host", authority))
            elif host != authority:
                # RFC 9113 8.3.1: the two name the same thing, or the request is suspect
                self._malformed_request(stream_id, "host differs from :authority")
                return
        elif host is None:
            self._refuse(stream_id, ended, "no :authority or host")
            return
        if method != b"CONNECT":
            if protocol is not None:
                self._malformed_request(stream_id, ":protocol on a request other than CONNECT")
                return
            if scheme is None:
                self._malformed_request(stream_id, "no :scheme")
                return
        if method == b"CONNECT":
            if protocol is None or not self.config.http2_websocket:
                # we are no proxy; and :protocol unannounced is malformed (RFC 8441 3)
                self.reset(stream_id, ErrorCodes.PROTOCOL_ERROR)
            elif protocol != b"websocket":
                self._refuse(stream_id, ended, "unsupported :protocol %r" % protocol, 501)
            elif path is None or not _PATH(path) or path[0] != 0x2F:
                self._malformed_request(stream_id, "invalid :path %r" % path)
            elif scheme is None:
                self._malformed_request(stream_id, "no :scheme")
            elif ended:
                self._refuse(stream_id, ended, "a WebSocket stream must stay open")
            else:
                self._start_websocket(stream_id, scheme, path, headers)
        elif method is None or not _TOKEN(method):
            self._malformed_request(stream_id, "invalid :method %r" % method)
        elif path is None or not _PATH(path) or not (
            path[0] == 0x2F or (path == b"*" and method == b"OPTIONS")
        ):
            # RFC 9113 8.3.1: "/..." always, "*" for OPTIONS; and what HTTP/1.1 would take
            self._malformed_request(stream_id, "invalid :path %r" % path)
        elif ended and length is not None and length != b"0":
            self._malformed_request(stream_id, "the body is shorter than its content-length")
        else:
            self._start_stream(stream_id, method, scheme, path, headers, ended, length)

    def _start_stream(self, stream_id: int, method: bytes, scheme: bytes | None,
                      path: bytes, headers: list, ended: bool,
                      length: bytes | None = None) -> None:
        conn = self.conn
        try:
            scope = build_scope(
                self.server, "2", method,
                scheme.decode("ascii") if scheme in (b"http", b"https") else conn.scheme,
                path, headers, conn.client, conn.server_addr,
            )
        except BadRequest as exc:
            self._refuse(stream_id, ended, exc.reason, exc.status)
            return
        scope["extensions"] = {"http.response.trailers": {}}
        wire = H2Stream(self, stream_id, method == b"HEAD")
        wire.body_ended = ended
        if length is not None:
            wire.length_left = int(length)
        stream = HTTPStream(self.server, wire, scope, False)
        # the stream's window reopens as the application takes the body: hold no more
        # than about one window's worth on its behalf
        stream.high_water = self.config.http2_initial_window_size
        wire.stream = stream
        self.streams[stream_id] = wire
        if ended:
            stream.body_finished()
        self._update_deadline()
        stream.start()

    def _start_websocket(self, stream_id: int, scheme: bytes | None, path: bytes,
                         headers: list) -> None:
        """Extended CONNECT with :protocol websocket: a WebSocket on this stream."""
        from .http2_websocket import H2Tunnel
        from .websocket import HandshakeError

        try:
            tunnel = H2Tunnel(self, stream_id, scheme, path, headers)
        except HandshakeError as exc:
            self._refuse(stream_id, False, exc.reason, exc.status, exc.headers)
            return
        except BadRequest as exc:
            self._refuse(stream_id, False, exc.reason, exc.status)
            return
        self.streams[stream_id] = tunnel.wire
        self.tunnels.add(tunnel)
        self._update_deadline()
        tunnel.start()

    def tunnel_deadline_changed(self) -> None:
        if not self.closed:
            self._update_deadline()

    def tunnel_closed(self, tunnel: Any) -> None:
        self.tunnels.discard(tunnel)
        self.tunnel_deadline_changed()

    def _malformed_request(self, stream_id: int, reason: str) -> None:
        """A malformed request (RFC 9113 8.1.1) is a stream error of type PROTOCOL_ERROR: the
        stream is reset, the application never sees it, the other streams go on.  Resets a
        client provokes this way count with its own (the "MadeYouReset" flood)."""
        logger.info("Reset HTTP/2 stream %d of %s: malformed request (%s)", stream_id,
                    self.conn.client, reason)
        self.reset(stream_id, ErrorCodes.PROTOCOL_ERROR)
        self._count_reset()

    def _refuse(self, stream_id: int, ended: bool, reason: str, status: int = 400,
                headers: list = ()) -> None:
        """Answer a malformed request (RFC 9113 8.1.1 allows a response) without an app."""
        logger.info("Refused an HTTP/2 request from %s: %d %s", self.conn.client, status,
                    reason)
        wire = H2Stream(self, stream_id, False)
        wire.body_ended = ended
        self.streams[stream_id] = wire
        body = reason.encode("latin-1", "replace") + b"\n"
        wire.response_start(status, [(b"content-type", b"text/plain; charset=utf-8"),
                                     *headers])
        wire.response_body(body, False)
        self.stream_finished(wire)
        if self.server.access_log is not None:
            self.server.access_log.refused(self.conn.client, status, len(body))

    def _data(self, event: Any) -> None:
        wire = self.streams.get(event.stream_id)
        size = event.flow_controlled_length
        if not event.data and event.stream_ended is None:
            self._count_control_frame()  # empty DATA that does not even end the stream
        if wire is None or wire.stream is None:
            self.acknowledge(event.stream_id, size)
            return
        if wire.length_left is not None:
            wire.length_left -= len(event.data)
            if wire.length_left < 0:
                self.acknowledge(event.stream_id, size)
                self._wrong_length(wire)
                return
        wire.body_at = self.server.clock
        if wire.ended:  # answered already (see _release): the rest is counted, not kept
            self.acknowledge(event.stream_id, size)
            return
        wire.stream.body_received(event.data)
        if wire.paused:
            wire.unacked += size
        else:
            self.acknowledge(event.stream_id, size)

    def acknowledge(self, stream_id: int, size: int) -> None:
        if size:
            try:
                self.h2.acknowledge_received_data(size, stream_id)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                pass

    def _stream_reset(self, event: Any) -> None:
        wire = self.streams.pop(event.stream_id, None)
        if wire is not None:
            self._drop(wire)
        if event.remote_reset:
            self._count_reset()
        self._update_deadline()

    def _drop(self, wire: H2Stream) -> None:
        """The stream is gone before its response was sent: its application hears of it,
        and counts against the stream limit until it returns (rapid reset, CVE-2023-44487)."""
        wire.ended = True
        wire.pending.clear()
        wire.wake()
        self.blocked.pop(wire, None)
        self._give_back_window(wire)
        stream = wire.stream
        if stream is not None:
            stream.connection_lost()
            if stream.task is not None and not stream.task.done():
                self.orphans.append(stream)

    def _give_back_window(self, wire: H2Stream) -> None:
        """Body bytes held unacknowledged for a stream that is gone still count against the
        connection's window: hand them back."""
        if wire.unacked and not self.closed:
            self.acknowledge(wire.stream_id, wire.unacked)
            wire.unacked = 0

    def _count_reset(self) -> None:
        self._tick()
        self.resets += 1
        if self.resets > self.max_resets and not self.closed:
            logger.warning("HTTP/2 client %s reset or was refused %d streams within a "
                           "second; closing the connection", self.conn.client, self.resets)
            self._terminate(ErrorCodes.ENHANCE_YOUR_CALM)

    def _count_control_frame(self) -> None:
        self._tick()
        self.control_frames += 1
        if self.control_frames > _CONTROL_FRAMES_PER_SECOND:
            logger.warning("HTTP/2 client %s sent over %d control frames within a second; "
                           "closing the connection", self.conn.client,
                           _CONTROL_FRAMES_PER_SECOND)
            self._terminate(ErrorCodes.ENHANCE_YOUR_CALM)

    def _tick(self) -> None:
        clock = self.server.clock
        if clock - self.window_start >= 1.0:
            self.window_start = clock
            self.resets = 0
            self.control_frames = 0

    # -- bytes out

    def send_pending(self, wire: H2Stream) -> None:
        """Send as much of a stream's pending data as the flow-control windows allow."""
        h2conn = self.h2
        stream_id = wire.stream_id
        pending = wire.pending
        sent = False
        try:
            while pending:
                window = min(h2conn.local_flow_control_window(stream_id),
                             h2conn.max_outbound_frame_size)
                if window <= 0:
                    if sent or wire not in self.blocked:
                        self.blocked[wire] = self.server.clock
                        self._update_deadline()
                    return
                sent = True
                chunk = pending[0]
                if len(chunk) <= window:
                    pending.popleft()
                    last = not pending and wire.end_after and wire.trailers is None
                    h2conn.send_data(stream_id, chunk, end_stream=last)
                    self.unflushed += len(chunk)
                    if last:
                        wire.ended = True
                else:
                    h2conn.send_data(stream_id, chunk[:window])
                    self.unflushed += window
                    pending[0] = chunk[window:]
            if wire.end_after and not wire.ended:
                if wire.trailers is not None:
                    h2conn.send_headers(stream_id, wire.trailers, end_stream=True)
                else:
                    h2conn.end_stream(stream_id)
                wire.ended = True
        except h2.exceptions.StreamClosedError:
            pending.clear()
            wire.ended = True
        except h2.exceptions.ProtocolError as exc:
            # not left hanging: the client learns the response broke off
            logger.error("HTTP/2 refused to send the response on stream %d: %s", stream_id,
                         exc)
            pending.clear()
            wire.ended = True
            try:
                h2conn.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)
            except h2.exceptions.ProtocolError:
                pass
        finally:
            if not pending:
                wire.wake()
        if self.blocked.pop(wire, None) is not None:
            self._update_deadline()
        if wire.ended:
            self._release(wire)

    def _window_opened(self, stream_id: int) -> None:
        if stream_id:
            wire = self.streams.get(stream_id)
            if wire is not None and wire.pending:
                self.send_pending(wire)
        else:
            for wire in list(self.streams.values()):
                if wire.pending:
                    self.send_pending(wire)

    def flush(self) -> None:
        self.unflushed = 0
        data = self.h2.data_to_send()
        if data and not self.conn.closed:
            self.conn.write(data)

    def flush_soon(self) -> None:
        """Write what the streams' applications sent, once per turn of the loop: the
        responses of many streams finishing together leave in one write, not one each.

        Past _FLUSH_AT bytes it is written at once: the transport, not h2's buffer, is where
        a client that stops reading makes the applications' ``send`` wait (an application
        whose sends do not wait never gives the loop a turn to flush)."""
        if self.unflushed >= _FLUSH_AT:
            self.flush_pending = False
            self.flush()
        elif not self.flush_pending:
            self.flush_pending = True
            self.server.loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self.flush_pending = False
        self.flush()

    def reset(self, stream_id: int, code: int) -> None:
        wire = self.streams.pop(stream_id, None)
        try:
            self.h2.reset_stream(stream_id, code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        if wire is not None:
            self._drop(wire)
        self.flush()
        self._update_deadline()

    def stream_finished(self, wire: H2Stream) -> None:
        """The application finished the response (its data may still wait for window)."""
        self._release(wire)

    def _release(self, wire: H2Stream) -> None:
        """Free a stream's slot once its response is complete and fully sent."""
        if wire.ended and self.streams.get(wire.stream_id) is wire and (
            wire.stream is None or wire.stream.state == DONE
        ):
            if not wire.body_ended and wire.length_left is not None \
                    and wire.length_left <= self.config.http2_initial_window_size \
                    and not self.shutting_down:
                # answered before the body ended, and the rest of it is already allowed in
                # flight: counted as it comes (a body over its content-length is still
                # malformed), not kept, instead of a reset the client may take for an error
                self._update_deadline()
                return
            del self.streams[wire.stream_id]
            held = wire.unacked
            if not wire.body_ended:
                # answered before the request body ended: ask the client to stop sending
                # it, without error (RFC 9113 8.1)
                try:
                    self.h2.reset_stream(wire.stream_id, ErrorCodes.NO_ERROR)
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    pass
            # bytes held unacknowledged count against the connection's window even when
            # the body ended: they are given back whichever way the stream went
            self._give_back_window(wire)
            if held or not wire.body_ended:
                self.flush()
        self._update_deadline()

    def _update_deadline(self) -> None:
        """Streams came or went: idle from now, or (stopping) done once the last is gone;
        with streams, the send timeout of the one that has waited longest for window, or
        the next keepalive check of a WebSocket stream, whichever comes first."""
        if self.closed or self.conn.closed:
            return  # a closing connection's deadline is its cut-off
        if self.streams:
            deadline = min(self.blocked.values()) + self.config.send_timeout \
                if self.blocked else None
            # a request body may stall: look for that now and then, not at every change
            check = self.body_check
            if check is None:
                check = self.body_check = self.server.clock + self.config.body_timeout
            if deadline is None or check < deadline:
                deadline = check
        elif self.shutting_down:
            self.flush()
            self.conn.close()
            return
        else:
            deadline = self.server.clock + self.config.http2_idle_timeout
        for tunnel in self.tunnels:
            due = tunnel.deadline
            if due is not None and (deadline is None or due < deadline):
                deadline = due
        self.conn.deadline = deadline

    def _terminate(self, code: int | None) -> None:
        """A connection error: GOAWAY with ``code`` (None: h2 has written its own), then
        close; the applications of the streams still open hear the disconnect."""
        if code is not None:
            try:
                self.h2.close_connection(error_code=code, last_stream_id=self.last_stream_id)
            except h2.exceptions.ProtocolError:
                pass
        self.flush()
        self.closed = True
        for wire in list(self.streams.values()):
            self._drop(wire)
        self.streams.clear()
        self.blocked.clear()
        self.conn.close()

    # -- what the Connection forwards

    def connection_lost(self, reason: Any = None) -> None:
        self.closed = True
        for wire in list(self.streams.values()):
            self._drop(wire)
        self.streams.clear()
        self.blocked.clear()

    def writing_resumed(self) -> None:
        """Senders waiting for room are woken by the connection itself."""

    def deadline_passed(self) -> None:
        """Idle too long: say goodbye. Or a client opened no window for a stream's response
        within the send timeout: that stream is reset, and its application told. Or a
        WebSocket stream's keepalive is due."""
        if self.closed:
            return
        # idle before any keepalive ran: a WebSocket dropped just now for not answering its
        # pings leaves the connection without streams, not idle for the idle timeout
        idle = not self.streams
        now = self.server.clock
        due = [t for t in self.tunnels if t.deadline is not None and t.deadline <= now]
        for tunnel in due:
            tunnel.deadline_passed()
        if self.closed:
            return
        if self.body_check is not None and self.body_check <= now:
            self._check_bodies(now)
        if self.blocked:
            cutoff = self.server.clock - self.config.send_timeout
            for wire, since in list(self.blocked.items()):
                if since <= cutoff:
                    logger.info("Reset stream %d of %s: no flow-control window for its "
                                "response within %ss", wire.stream_id, self.conn.client,
                                self.config.send_timeout)
                    self.reset(wire.stream_id, ErrorCodes.CANCEL)
        elif idle:
            self.shutdown()
            return
        self._update_deadline()

    def _check_bodies(self, now: float) -> None:
        """Time out the streams whose client paused sending the request body for the body
        timeout (time their application took to read does not count), as HTTP/1.1 does:
        408 if the application had not answered yet, and http.disconnect for it."""
        timeout = self.config.body_timeout
        cutoff = now - timeout
        earliest = None
        for wire in list(self.streams.values()):
            stream = wire.stream
            if wire.body_ended or wire.paused or wire.tunnel or stream is None \
                    or (stream.state == DONE and not wire.ended):
                continue
            if wire.body_at > cutoff:
                if earliest is None or wire.body_at < earliest:
                    earliest = wire.body_at
                continue
            stream_id = wire.stream_id
            answer = stream.state == START and wire.start is None
            del self.streams[stream_id]
            self._drop(wire)
            if answer:
                # answered as any refused request (then reset without error: stop sending)
                self._refuse(stream_id, False, "request body not received in time", 408)
            elif wire.ended:  # answered already: the client need not send the rest
                self.reset(stream_id, ErrorCodes.NO_ERROR)
            else:
                logger.info("HTTP/2 request body from %s stalled for %ss on stream %d",
                            self.conn.client, timeout, stream_id)
                self.reset(stream_id, ErrorCodes.CANCEL)
        self.body_check = None if earliest is None else earliest + timeout
        self.flush()

    def shutdown(self) -> None:
        """Graceful stop: GOAWAY with the last stream we took; in-flight streams finish."""
        if self.shutting_down or self.closed:
            return
        self.shutting_down = True
        self.flush()
        # written by hand: h2's close_connection would refuse to send anything more, and
        # the streams in flight still have their responses to finish
        goaway = GoAwayFrame(0, last_stream_id=self.last_stream_id,
                             error_code=ErrorCodes.NO_ERROR)
        if not self.conn.closed:
            self.conn.write(goaway.serialize())
        for tunnel in list(self.tunnels):
            tunnel.shutdown()  # close 1001, going away
        if not self.streams:
            self.conn.close()
