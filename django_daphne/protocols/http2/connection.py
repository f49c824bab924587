"""HTTP/2 on a connection: h2's events in, one ASGI stream per request, flow control both
ways, and the bounds on what a client can make the server do.

The handler is the one owner of the connection's streams; its pieces know it only as a
:class:`~.stream.Host`.  They are :mod:`.validation` (what a request may hold),
:mod:`.stream` (the wire of one stream, in its kinds), :mod:`.flow` (windows, and the one
send loop), :mod:`.guards` (the frame walk before h2, flood counters), :mod:`.lean` and
:mod:`.frames` (the common request served beside h2), :mod:`.h2_workarounds` (where h2's
public API is not enough), :mod:`.websocket` (WebSocket over a stream, RFC 8441).  Like
HTTP/1.1, this knows framing and nothing of ASGI messages.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

from ...asgi.http import DONE, START, HTTPStream, build_scope
from ...core.errors import NO_ANSWER, Refusal, error_page
from .flow import FlowControl
from .guards import CONTROL_FRAMES_PER_SECOND, FloodGuard, FrameError, FrameScreen
from .h2_workarounds import (
    graceful_goaway,
    new_connection,
    reset_already,
    stream_closed,
)
from .lean import LeanPath
from .stream import ENDED, H2Stream, Receiver, Stream
from .validation import HOP_BY_HOP, malformed, read_request

if TYPE_CHECKING:
    from ...asgi.wire import RequestHead
    from ..interfaces import Socket
    from .websocket import H2Tunnel

logger = logging.getLogger("django_daphne.http2")

# the graceful stop's two GOAWAYs (RFC 9113 6.8): the PING between them, and how long its
# ACK is waited for (Go's server waits 1 s) before the second goes out anyway
STOP_PING = b"stopping"
STOP_PING_WAIT = 5.0


class HTTP2Handler:
    """HTTP/2 on one connection: h2's events in, one stream per request.  The one owner of
    its streams, the host (:class:`~.stream.Host`) its pieces answer to."""

    LEAN = True  # serve the common request beside h2 (see .lean); off only to compare

    def __init__(self, conn: Socket, upgrade: tuple[RequestHead, bytes] | None = None
                 ) -> None:
        self.conn = conn
        self.server = server = conn.server
        config = server.config
        self.config = config
        self.closed = False
        self.stopping = False  # the first GOAWAY of a graceful stop went out
        self.shutting_down = False  # no stream is taken any more
        self.server_header = config.server_name.encode("latin-1") if config.server_name else b""
        self.streams: dict[int, Stream] = {}
        self.tunnels: set[H2Tunnel] = set()  # WebSockets over a stream (RFC 8441), while open
        self.orphans: list[Receiver] = []  # apps of reset streams, still running
        self.last_stream_id = 0
        # :scheme is believed only as a proxy header is: from a trusted proxy (a TLS-
        # terminating proxy speaking h2c says https); anyone else gets the connection's
        client = conn.client
        self.scheme_believed = server.proxy_headers is not None and \
            server.trusted_proxies.trusts(client[0] if client else None)
        self.flow = FlowControl(self)
        self.lean = LeanPath(self)
        self.screen = FrameScreen(config.http2_max_frame_size,
                                  config.http2_max_header_list_size,
                                  self.lean if self.LEAN else None)
        self.guard = FloodGuard(server.clock, max(100, 2 * config.http2_max_concurrent_streams))
        self.h2 = new_connection(config, None if upgrade is None else upgrade[1])
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
                       if n not in HOP_BY_HOP and n != b"http2-settings"]
            self._start_stream(H2Stream(self, 1), head.method, None, head.target, headers,
                               ended=True)
        self.flow.flush()
        self.update_deadline()

    # -- bytes in

    def scheme_of(self, scheme: bytes | None) -> str:
        """A request's scheme: its :scheme from a trusted proxy, else the connection's."""
        if self.scheme_believed and scheme in (b"http", b"https"):
            assert scheme is not None
            return scheme.decode("ascii")
        return self.conn.scheme

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            data, goaway = self.screen.screen(data)
        except FrameError as exc:
            if exc.before:  # the frames before it first: an error among them comes first
                self.to_h2(exc.before)
                if self.closed:
                    return
            logger.info("HTTP/2 client %s sent %s; closing the connection",
                        self.conn.client, exc.reason)
            self.terminate(exc.code)
            return
        if data:
            self.to_h2(data)
        if self.closed:
            return
        if goaway is not None:
            self._client_goaway(goaway)
        self.flow.flush()

    def to_h2(self, data: bytes) -> None:
        """Bytes through h2, and what its events ask of the streams."""
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            logger.info("HTTP/2 protocol error from %s: %s", self.conn.client, exc)
            self.terminate(None)  # h2 has written its GOAWAY
            return
        in_headers = None  # the priority carried by the last HEADERS: not a frame of its own
        event: Any  # dispatched on its exact type, which mypy does not narrow through ``kind``
        for event in events:
            kind = type(event)
            if kind is h2.events.DataReceived:
                self._data(event)
            elif kind is h2.events.RequestReceived:
                in_headers = event.priority_updated
                self.request(H2Stream(self, event.stream_id), event.headers,
                             event.stream_ended is not None)
            elif kind is h2.events.StreamEnded:
                self._body_ended(event.stream_id)
            elif kind is h2.events.WindowUpdated:
                self.flow.window_opened(event.stream_id)
            elif kind is h2.events.StreamReset:
                self.stream_reset(event.stream_id, event.remote_reset)
            elif kind is h2.events.TrailersReceived:
                wire = self.streams.get(event.stream_id)
                if wire is not None and wire.tunnel:
                    # RFC 9113 8.5: only DATA and stream management frames on a tunnel
                    self.reset(event.stream_id, ErrorCodes.PROTOCOL_ERROR)
                elif (problem := malformed(event.headers, trailers=True)) is not None:
                    logger.info("HTTP/2 client %s sent malformed trailers on stream %d: %s",
                                self.conn.client, event.stream_id, problem)
                    self._malformed_ending(event.stream_id)
                elif event.stream_ended:
                    self._body_ended(event.stream_id)
            elif kind is h2.events.ConnectionTerminated:
                self.closed = True
                self.flow.flush()
                self.conn.close()
                return
            elif kind is h2.events.RemoteSettingsChanged:
                self._count_control_frame()
                self.lean.offering = True
                window = event.changed_settings.get(
                    h2.settings.SettingCodes.INITIAL_WINDOW_SIZE)
                if window is not None:
                    # every stream's send window moved, with no WINDOW_UPDATE to say so
                    if not self.lean.settings_changed(window.new_value
                                                      - window.original_value):
                        self.terminate(ErrorCodes.FLOW_CONTROL_ERROR)
                        return
                    self.flow.window_opened(0)
            elif kind is h2.events.PriorityUpdated:
                if event is not in_headers:
                    self._count_control_frame()
            elif kind in (h2.events.PingReceived, h2.events.UnknownFrameReceived):
                self._count_control_frame()
            elif kind is h2.events.PingAckReceived and event.ping_data == STOP_PING:
                self.go_away()
            if self.closed:
                return

    def _client_goaway(self, code: int) -> None:
        """The client goes away: after an error at once, else once the streams it opened
        are answered (it opens no new ones)."""
        if code:
            logger.info("HTTP/2 client %s went away with error code %d", self.conn.client,
                        code)
            self.closed = True
            self.conn.close()
            return
        self.go_away()

    def _body_ended(self, stream_id: int) -> None:
        wire = self.streams.get(stream_id)
        if wire is not None:
            if wire.length_left:
                self._wrong_length(wire)
                return
            wire.body_ended = True
            if wire.state is ENDED:
                self.release(wire)  # it was answered already (see release)
            elif wire.stream is not None:
                wire.stream.body_finished()

    def _wrong_length(self, wire: Stream) -> None:
        """A body longer, or ended shorter, than its content-length: malformed (RFC 9113
        8.1.1). Its application has had only what the content-length allowed; it hears
        http.disconnect, as if the client had gone, and the stream is reset."""
        logger.info("HTTP/2 client %s sent a body that does not match its content-length "
                    "on stream %d", self.conn.client, wire.stream_id)
        self._malformed_ending(wire.stream_id)

    def _malformed_ending(self, stream_id: int) -> None:
        """The body or trailers made the request malformed (RFC 9113 8.1.1): a stream
        error, RST_STREAM(PROTOCOL_ERROR).  When the client's END_STREAM that carried it
        closed a stream we had already answered, no frame may go on that stream any more
        (RFC 9113 5.1), and the error is the connection's (5.4.1 lets it be).  On a stream
        reset already (for its malformed request, once h2 had read the rest of it in the
        same read) there is nothing more to say: what came after the reset is ignored."""
        if reset_already(self.h2, stream_id):
            return
        if stream_closed(self.h2, stream_id):
            self.terminate(ErrorCodes.PROTOCOL_ERROR)
        else:
            self.reset(stream_id, ErrorCodes.PROTOCOL_ERROR)

    def stream_limit_reached(self) -> bool:
        """Whether SETTINGS_MAX_CONCURRENT_STREAMS streams are open, counting the
        applications of streams the client reset that still run."""
        limit = self.config.http2_max_concurrent_streams
        if len(self.streams) + len(self.orphans) < limit:
            return False
        self.orphans = [s for s in self.orphans if s.task is not None and not s.task.done()]
        return len(self.streams) + len(self.orphans) >= limit

    def request(self, wire: Stream, fields: list[tuple[bytes, bytes]], ended: bool
                ) -> None:
        """A HEADERS frame opened a stream, of ``wire``'s kind (h2's, or a lean one)."""
        stream_id = wire.stream_id
        if self.shutting_down:
            # not taken: after our GOAWAY, its last stream id stays the last (RFC 9113 6.8)
            self._reset_new(wire, ErrorCodes.REFUSED_STREAM)
            return
        self.last_stream_id = max(self.last_stream_id, stream_id)
        if self.stream_limit_reached():
            self._reset_new(wire, ErrorCodes.REFUSED_STREAM)
            # a client that keeps opening streams over the limit is one that resets
            self._count_reset()
            return
        try:
            request = read_request(fields, ended, self.config.http2_websocket)
        except Refusal as exc:
            if exc.answered:
                self._refuse(wire, ended, exc.reason, exc.status)
            else:
                self._malformed_request(wire, exc.reason)
            return
        if request.protocol is not None:
            self._start_websocket(wire, request.scheme, request.path, request.headers)
        else:
            self._start_stream(wire, request.method, request.scheme, request.path,
                               request.headers, ended, request.length)

    def _start_stream(self, wire: Stream, method: bytes, scheme: bytes | None,
                      path: bytes, headers: list[tuple[bytes, bytes]], ended: bool,
                      length: bytes | None = None) -> None:
        conn = self.conn
        try:
            scope = build_scope(
                self.server, "2",
                self.scheme_of(scheme),
                path, headers, conn.client, conn.server_addr, True, method, conn.tls,
            )
        except Refusal as exc:
            self._refuse(wire, ended, exc.reason, exc.status)
            return
        extensions = scope.get("extensions")
        if extensions is None:
            scope["extensions"] = {"http.response.trailers": {}}
        else:  # the TLS extension's
            extensions["http.response.trailers"] = {}
        wire.is_head = method == b"HEAD"
        wire.body_ended = ended
        if length is not None:
            wire.length_left = int(length)
        stream = HTTPStream(self.server, wire, scope, False)
        # the stream's window reopens as the application takes the body: hold no more
        # than about one window's worth on its behalf
        stream.high_water = self.config.http2_initial_window_size
        wire.stream = stream
        self.streams[wire.stream_id] = wire
        if ended:
            stream.body_finished()
        self.update_deadline()
        stream.start()

    def _start_websocket(self, wire: Stream, scheme: bytes | None, path: bytes,
                         headers: list[tuple[bytes, bytes]]) -> None:
        """Extended CONNECT with :protocol websocket: a WebSocket on this stream (whose
        own kind, a tunnel's, takes the place of ``wire``)."""
        from .websocket import H2Tunnel

        try:
            tunnel = H2Tunnel(self, wire.stream_id, self.scheme_of(scheme), path, headers)
        except Refusal as exc:
            self._refuse(wire, False, exc.reason, exc.status, exc.headers)
            return
        self.streams[wire.stream_id] = tunnel.wire
        self.tunnels.add(tunnel)
        self.update_deadline()
        tunnel.start()

    def tunnel_closed(self, tunnel: H2Tunnel) -> None:
        self.tunnels.discard(tunnel)
        self.update_deadline()

    def _malformed_request(self, wire: Stream, reason: str) -> None:
        """A malformed request (RFC 9113 8.1.1) is a stream error of type PROTOCOL_ERROR: the
        stream is reset, the application never sees it, the other streams go on.  Resets a
        client provokes this way count with its own (the "MadeYouReset" flood)."""
        logger.info("Reset HTTP/2 stream %d of %s: malformed request (%s)", wire.stream_id,
                    self.conn.client, reason)
        self._reset_new(wire, ErrorCodes.PROTOCOL_ERROR)
        self.server.refused(self.conn.client, NO_ANSWER, reason, 0)
        self._count_reset()

    def _refuse(self, wire: Stream, ended: bool, reason: str, status: int = 400,
                headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        """Answer a malformed request (RFC 9113 8.1.1 allows a response) without an app,
        on a new ``wire``."""
        logger.info("Refused an HTTP/2 request from %s: %d %s", self.conn.client, status,
                    reason)
        wire.body_ended = ended
        self.streams[wire.stream_id] = wire
        fields, body = error_page(status, reason)
        wire.response_start(status, [*fields, *headers])
        wire.response_body(body, False)
        self.release(wire)
        self.server.refused(self.conn.client, status, reason, len(body))

    def _data(self, event: h2.events.DataReceived) -> None:
        wire = self.streams.get(event.stream_id)
        size = event.flow_controlled_length
        if not event.data and event.stream_ended is None:
            self._count_control_frame()  # empty DATA that does not even end the stream
        if wire is None or wire.stream is None:
            self.flow.acknowledge(event.stream_id, size)
            return
        if wire.length_left is not None:
            wire.length_left -= len(event.data)
            if wire.length_left < 0:
                self.flow.acknowledge(event.stream_id, size)
                self._wrong_length(wire)
                return
        if wire.state is ENDED:  # answered already (see FlowControl.drains): counted, not kept
            if size:
                self.h2.increment_flow_control_window(size)  # the connection's window
            self.release(wire)  # reset (NO_ERROR) once the client's window is spent
            return
        wire.stream.body_received(event.data)
        if wire.paused:
            wire.unacked += size
        else:
            self.flow.acknowledge(event.stream_id, size)

    def stream_reset(self, stream_id: int, counted: bool) -> None:
        """The stream ended in a reset (the client's, or h2's for a stream error);
        ``counted`` with the client's resets."""
        wire = self.streams.pop(stream_id, None)
        if wire is not None:
            self._drop(wire)
        if counted:
            self._count_reset()
        self.update_deadline()

    def _drop(self, wire: Stream) -> None:
        """The stream is gone before its response was sent: its application hears of it,
        and counts against the stream limit until it returns (rapid reset, CVE-2023-44487)."""
        wire.move(ENDED)
        wire.pending.clear()
        wire.wake()
        self.flow.forget(wire)
        stream = wire.stream
        if stream is not None:
            stream.connection_lost()
            if stream.task is not None and not stream.task.done():
                self.orphans.append(stream)

    def _count_reset(self) -> None:
        if self.guard.reset(self.server.clock) and not self.closed:
            logger.warning("HTTP/2 client %s reset or was refused %d streams within a "
                           "second; closing the connection", self.conn.client,
                           self.guard.resets)
            self.terminate(ErrorCodes.ENHANCE_YOUR_CALM)

    def _count_control_frame(self) -> None:
        if self.guard.control_frame(self.server.clock) and not self.closed:
            logger.warning("HTTP/2 client %s sent over %d control frames within a second; "
                           "closing the connection", self.conn.client,
                           CONTROL_FRAMES_PER_SECOND)
            self.terminate(ErrorCodes.ENHANCE_YOUR_CALM)

    def reset(self, stream_id: int, code: int) -> None:
        """RST_STREAM on a stream (one h2 knows of, if it is not in ``streams``)."""
        wire = self.streams.pop(stream_id, None)
        if wire is None:
            try:
                self.h2.reset_stream(stream_id, code)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                pass
        else:
            wire.write_reset(code)
            self._drop(wire)
        self.flow.flush()
        self.update_deadline()

    def _reset_new(self, wire: Stream, code: int) -> None:
        """RST_STREAM on a stream just opened, refused before it was taken."""
        wire.write_reset(code)
        self.flow.flush()
        self.update_deadline()

    def release(self, wire: Stream) -> None:
        """Free a stream's slot once its response is complete and fully sent."""
        if wire.state is ENDED and self.streams.get(wire.stream_id) is wire and (
            wire.stream is None or wire.stream.state == DONE
        ):
            if not (wire.body_ended or self.shutting_down or self.closed) \
                    and self.flow.drains(wire):
                self.update_deadline()
                return
            del self.streams[wire.stream_id]
            self.flow.draining.pop(wire, None)
            held = wire.unacked
            if not wire.body_ended:
                # answered before the request body ended: ask the client to stop sending
                # it, without error (RFC 9113 8.1)
                wire.write_reset(ErrorCodes.NO_ERROR)
            # bytes held unacknowledged count against the connection's window even when
            # the body ended: they are given back whichever way the stream went
            self.flow.give_back(wire)
            if held or not wire.body_ended:
                self.flow.flush()
        self.update_deadline()

    def update_deadline(self) -> None:
        """Streams came or went: idle from now, or (stopping) done once the last is gone;
        with streams, the send timeout of the one that has waited longest for window, or
        the next keepalive check of a WebSocket stream, whichever comes first."""
        if self.closed or self.conn.closed:
            return  # a closing connection's deadline is its cut-off
        flow = self.flow
        if self.streams and not (flow.blocked or flow.draining or self.tunnels):
            self.conn.deadline = None  # (the common case, for every stream opened or done)
            return
        if self.streams:
            deadline = min(flow.blocked.values()) + self.config.send_timeout \
                if flow.blocked else None
            if flow.draining:
                until = min(flow.draining.values())
                if deadline is None or until < deadline:
                    deadline = until
        elif self.shutting_down:
            self.flow.flush()
            self.conn.close()
            return
        else:
            deadline = self.server.clock + self.config.http2_idle_timeout
        for tunnel in self.tunnels:
            due = tunnel.deadline
            if due is not None and (deadline is None or due < deadline):
                deadline = due
        self.conn.deadline = deadline

    def terminate(self, code: int | None) -> None:
        """A connection error: GOAWAY with ``code`` (None: h2 has written its own), then
        close; the applications of the streams still open hear the disconnect."""
        counts = self.server.counts
        if counts is not None:
            counts.refused("flood" if code == ErrorCodes.ENHANCE_YOUR_CALM
                           else "protocol_error")
        if code is not None:
            try:
                self.h2.close_connection(error_code=code, last_stream_id=self.last_stream_id)
            except h2.exceptions.ProtocolError:
                pass
        self.flow.flush()
        self.connection_lost()
        self.conn.close_after_error()  # the client may be sending still: see there

    # -- what the Connection forwards

    def connection_lost(self, reason: Any = None) -> None:
        self.closed = True
        for wire in list(self.streams.values()):
            self._drop(wire)
        self.streams.clear()
        self.flow.blocked.clear()
        self.flow.draining.clear()

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
        for wire, until in list(self.flow.draining.items()):
            if until <= now:  # answered, and the rest of its body stopped coming
                self.reset(wire.stream_id, ErrorCodes.NO_ERROR)
        if self.flow.blocked:
            cutoff = self.server.clock - self.config.send_timeout
            for wire, since in list(self.flow.blocked.items()):
                if since <= cutoff:
                    logger.info("Reset stream %d of %s: no flow-control window for its "
                                "response within %ss", wire.stream_id, self.conn.client,
                                self.config.send_timeout)
                    self.reset(wire.stream_id, ErrorCodes.CANCEL)
        elif idle:
            self.go_away()
            return
        self.update_deadline()

    def body_timed_out(self, wire: Stream) -> None:
        """The client stopped sending a stream's request body (its HTTPStream decided): 408
        if the application had not answered yet (then reset without error: stop sending),
        else the stream is reset; its application hears http.disconnect."""
        stream_id = wire.stream_id
        stream = wire.stream
        answer = stream is not None and stream.state is START and wire.start is None
        if self.streams.get(stream_id) is wire:
            del self.streams[stream_id]
        self._drop(wire)
        if answer:
            self._refuse(H2Stream(self, stream_id), False, "request body not received in time",
                         408)
        else:
            self.reset(stream_id, ErrorCodes.CANCEL)

    def shutdown(self) -> None:
        """Graceful server stop, in two steps (RFC 9113 6.8): a GOAWAY that takes every
        stream yet, and a PING; once its ACK is back (or after STOP_PING_WAIT), every
        stream the client opened before it saw the GOAWAY has arrived and is taken, and
        :meth:`go_away` names the last.  A single GOAWAY naming the last stream seen so far
        would refuse a request already on its way, which a client may not retry."""
        if self.stopping or self.shutting_down or self.closed:
            return
        self.stopping = True
        for tunnel in list(self.tunnels):
            tunnel.shutdown()  # close 1001, going away
        self.flow.flush()
        if not self.conn.closed:
            self.conn.write(graceful_goaway(self.h2, 2**31 - 1))
            try:
                self.h2.ping(STOP_PING)
            except h2.exceptions.ProtocolError:  # (h2 saw the connection end)
                pass
            self.flow.flush()
        self.server.loop.call_later(STOP_PING_WAIT, self.go_away)

    def go_away(self) -> None:
        """GOAWAY with the last stream we took; in-flight streams finish, then the
        connection closes."""
        if self.shutting_down or self.closed:
            return
        self.shutting_down = True
        self.flow.flush()
        if not self.conn.closed:
            self.conn.write(graceful_goaway(self.h2, self.last_stream_id))
        for tunnel in list(self.tunnels):
            tunnel.shutdown()  # close 1001, going away
        if not self.streams:
            self.conn.close()
