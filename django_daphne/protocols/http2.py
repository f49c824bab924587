"""HTTP/2 with h2: streams in, one HTTPStream each, flow control both ways, attack bounds.

Like HTTP/1.1, this module knows framing and nothing of ASGI: every request stream gets an
:class:`~django_daphne.asgi.http.HTTPStream` whose wire is an :class:`H2Stream`.
The connection lives on the HTTP1Connection that accepted the socket (it is "upgraded" by
the prior-knowledge preface, by ALPN on TLS, or by ``Upgrade: h2c``), which keeps the
transport, the write flow control and the deadline the server's sweep checks.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

from ..asgi.http import BadRequest, HTTPStream, build_scope

logger = logging.getLogger("django_daphne.http2")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# connection-specific header fields HTTP/2 forbids (RFC 9113 8.2.2)
_HOP_BY_HOP = frozenset((
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade",
))
# more than this many control frames (PING, SETTINGS, empty DATA, PRIORITY, ...) a second
_CONTROL_FRAMES_PER_SECOND = 1000


class H2Stream:
    """The wire side of one HTTP/2 stream: what HTTPStream calls to answer."""

    __slots__ = (
        "conn", "stream_id", "stream", "is_head", "start", "pending", "end_after",
        "trailers", "ended", "paused", "unacked", "waiters",
    )

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

    # -- reading: the window reopens only as the application takes the body

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False
        if self.unacked:
            self.conn.acknowledge(self.stream_id, self.unacked)
            self.unacked = 0
            self.conn.flush()

    def send_continue(self) -> None:
        """HTTP/2 clients do not wait for 100-continue; nothing to send."""

    # -- writing

    def response_start(self, status: int, headers: list) -> None:
        self.start = (status, headers)

    def _send_headers(self, end_stream: bool) -> None:
        status, headers = self.start
        self.start = None
        fields = [(b":status", b"%d" % status)]
        fields.extend((n.lower(), v) for n, v in headers if n.lower() not in _HOP_BY_HOP)
        conn = self.conn
        if conn.server_header:
            if not any(n == b"server" for n, _ in fields):
                fields.append((b"server", conn.server_header))
        if not any(n == b"date" for n, _ in fields):
            fields.append((b"date", conn.server.http_date.encode("ascii")))
        conn.h2.send_headers(self.stream_id, fields, end_stream=end_stream)
        if end_stream:
            self.ended = True

    def response_body(self, body: bytes, more: bool) -> None:
        if self.ended or self.conn.closed:
            return
        if self.start is not None:
            no_body = self.is_head or not (body or more)
            self._send_headers(end_stream=no_body and not more and self.trailers is None)
            if self.ended:
                self.conn.flush()
                return
        if self.is_head:
            body = b""
        if body:
            self.pending.append(body)
        if not more:
            self.end_after = True
        self.conn.send_pending(self)
        self.conn.flush()

    def response_trailers(self, headers: list) -> None:
        if self.ended or self.conn.closed:
            return
        self.trailers = [(n.lower(), v) for n, v in headers]
        self.end_after = True
        self.conn.send_pending(self)
        self.conn.flush()

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
        self.server_header = config.server_name.encode("latin-1") if config.server_name else b""
        self.streams: dict[int, H2Stream] = {}
        self.orphans: list[HTTPStream] = []  # apps of reset streams, still running
        self.last_stream_id = 0
        self.window_start = server.clock
        self.resets = 0
        self.control_frames = 0
        self.max_resets = max(100, 2 * config.http2_max_concurrent_streams)
        settings = h2.settings.SettingCodes
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=True,
        ))
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            settings.MAX_CONCURRENT_STREAMS: config.http2_max_concurrent_streams,
            settings.INITIAL_WINDOW_SIZE: config.http2_initial_window_size,
            settings.MAX_FRAME_SIZE: config.http2_max_frame_size,
            settings.MAX_HEADER_LIST_SIZE: config.http2_max_header_list_size,
        })
        self.h2.max_inbound_frame_size = config.http2_max_frame_size
        if upgrade is None:
            self.h2.initiate_connection()
        else:
            head, settings_header = upgrade
            self.h2.initiate_upgrade_connection(settings_header)
            headers = [(n, v) for n, v in head.headers
                       if n not in _HOP_BY_HOP and n != b"http2-settings"]
            self._start_stream(1, head.method, None, None, head.target, headers, ended=True)
        self.flush()
        self._update_deadline()

    # -- bytes in

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            logger.info("HTTP/2 protocol error from %s: %s", self.conn.client, exc)
            self._terminate(getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR))
            return
        for event in events:
            kind = type(event)
            if kind is h2.events.DataReceived:
                self._data(event)
            elif kind is h2.events.RequestReceived:
                self._request(event)
            elif kind is h2.events.StreamEnded:
                wire = self.streams.get(event.stream_id)
                if wire is not None and wire.stream is not None:
                    wire.stream.body_finished()
            elif kind is h2.events.WindowUpdated:
                self._window_opened(event.stream_id)
            elif kind is h2.events.StreamReset:
                self._stream_reset(event)
            elif kind is h2.events.TrailersReceived:
                if event.stream_ended:
                    wire = self.streams.get(event.stream_id)
                    if wire is not None and wire.stream is not None:
                        wire.stream.body_finished()
            elif kind is h2.events.ConnectionTerminated:
                self.closed = True
                self.flush()
                self.conn.close()
                return
            elif kind in (h2.events.PingReceived, h2.events.RemoteSettingsChanged,
                          h2.events.PriorityUpdated):
                self._count_control_frame()
            if self.closed:
                return
        self.flush()

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
                return
        method = path = scheme = authority = None
        headers = []
        for name, value in event.headers:
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":scheme":
                    scheme = value
                elif name == b":authority":
                    authority = value
            else:
                headers.append((name, value))
        if authority is not None and not any(n == b"host" for n, _ in headers):
            headers.insert(0, (b"host", authority))
        self._start_stream(stream_id, method, scheme, authority, path, headers,
                           ended=event.stream_ended is not None)

    def _start_stream(self, stream_id: int, method: bytes, scheme: bytes | None,
                      authority: bytes | None, path: bytes, headers: list,
                      ended: bool) -> None:
        conn = self.conn
        if method == b"CONNECT" or not path:
            self.reset(stream_id, ErrorCodes.PROTOCOL_ERROR)
            return
        wire = H2Stream(self, stream_id, method == b"HEAD")
        try:
            scope = build_scope(
                self.server, "2", method,
                scheme.decode("ascii") if scheme in (b"http", b"https") else conn.scheme,
                path, headers, conn.client, conn.server_addr,
            )
        except BadRequest as exc:
            self.streams[stream_id] = wire
            wire.response_start(exc.status, [(b"content-type", b"text/plain")])
            wire.response_body(exc.reason.encode("latin-1") + b"\n", False)
            self.stream_finished(wire)
            return
        scope["extensions"] = {"http.response.trailers": {}}
        stream = HTTPStream(self.server, wire, scope, False)
        wire.stream = stream
        self.streams[stream_id] = wire
        if ended:
            stream.body_finished()
        self._update_deadline()
        stream.start()

    def _data(self, event: Any) -> None:
        wire = self.streams.get(event.stream_id)
        size = event.flow_controlled_length
        if not event.data:
            self._count_control_frame()
        if wire is None or wire.stream is None:
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
            wire.ended = True
            wire.pending.clear()
            wire.wake()
            if wire.stream is not None:
                wire.stream.connection_lost()
                if wire.stream.task is not None and not wire.stream.task.done():
                    self.orphans.append(wire.stream)
        if event.remote_reset:
            self._tick()
            self.resets += 1
            if self.resets > self.max_resets:
                logger.warning("HTTP/2 client %s reset %d streams within a second; "
                               "closing the connection", self.conn.client, self.resets)
                self._terminate(ErrorCodes.ENHANCE_YOUR_CALM)
        self._update_deadline()

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
        try:
            while pending:
                window = min(h2conn.local_flow_control_window(stream_id),
                             h2conn.max_outbound_frame_size)
                if window <= 0:
                    return
                chunk = pending[0]
                if len(chunk) <= window:
                    pending.popleft()
                    last = not pending and wire.end_after and wire.trailers is None
                    h2conn.send_data(stream_id, chunk, end_stream=last)
                    if last:
                        wire.ended = True
                else:
                    h2conn.send_data(stream_id, chunk[:window])
                    pending[0] = chunk[window:]
            if wire.end_after and not wire.ended:
                if wire.trailers is not None:
                    h2conn.send_headers(stream_id, wire.trailers, end_stream=True)
                else:
                    h2conn.end_stream(stream_id)
                wire.ended = True
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pending.clear()
            wire.ended = True
        finally:
            if not pending:
                wire.wake()
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
        data = self.h2.data_to_send()
        if data and not self.conn.closed:
            self.conn.transport.write(data)

    def reset(self, stream_id: int, code: int) -> None:
        wire = self.streams.pop(stream_id, None)
        if wire is not None:
            wire.ended = True
            wire.pending.clear()
            wire.wake()
        try:
            self.h2.reset_stream(stream_id, code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        self.flush()
        self._update_deadline()

    def stream_finished(self, wire: H2Stream) -> None:
        """The application finished the response (its data may still wait for window)."""
        self._release(wire)

    def _release(self, wire: H2Stream) -> None:
        """Free a stream's slot once its response is complete and fully sent."""
        if wire.ended and self.streams.get(wire.stream_id) is wire and (
            wire.stream is None or wire.stream.state == 2
        ):
            del self.streams[wire.stream_id]
            if self.shutting_down and not self.streams:
                self.flush()
                self.conn.close()
        self._update_deadline()

    def _update_deadline(self) -> None:
        if self.streams or self.closed:
            self.conn.deadline = None
        else:
            self.conn.deadline = self.server.clock + self.config.http2_idle_timeout

    def _terminate(self, code: int) -> None:
        try:
            self.h2.close_connection(error_code=code, last_stream_id=self.last_stream_id)
        except h2.exceptions.ProtocolError:
            pass
        self.flush()
        self.closed = True
        for wire in list(self.streams.values()):
            if wire.stream is not None:
                wire.stream.connection_lost()
        self.streams.clear()
        self.conn.close()

    # -- what the HTTP1Connection forwards

    def connection_lost(self, reason: Any) -> None:
        self.closed = True
        for wire in list(self.streams.values()):
            wire.ended = True
            wire.wake()
            if wire.stream is not None:
                wire.stream.connection_lost()
        self.streams.clear()

    def deadline_passed(self) -> None:
        """Idle too long: say goodbye."""
        if not self.streams and not self.closed:
            self.shutdown()

    def shutdown(self) -> None:
        """Graceful stop: GOAWAY with the last stream we took; in-flight streams finish."""
        if self.shutting_down or self.closed:
            return
        self.shutting_down = True
        try:
            self.h2.close_connection(error_code=ErrorCodes.NO_ERROR,
                                     last_stream_id=self.last_stream_id)
        except h2.exceptions.ProtocolError:
            pass
        self.flush()
        if not self.streams:
            self.conn.close()
