"""The wire of one HTTP/2 stream, in its kinds, and the host they all answer to.

A :class:`Stream` is what its ASGI stream calls to answer.  The response head is checked
before it goes out (a header list over the client's limit, or a body that disagrees with
its content-length, would make h2 clients end the whole connection): such a response is
replaced by a 500 while the head is still ours, and the stream is reset once it went out.
Body data waits here for flow-control window, sent by :class:`~.flow.FlowControl`.

The kinds differ only in how a frame is written and how much window there is: an
:class:`H2Stream` through h2, a :class:`~.lean.LeanStream` beside it, a
:class:`~.websocket.TunnelStream` through h2 under a WebSocket.  Where our side of a
stream is, is its :class:`Lifecycle`, moved by :meth:`Stream.move` alone.

The pieces (streams, flow control, the lean path, tunnels) know the connection that owns
them only as a :class:`Host`, never as the handler.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import h2.exceptions
from h2.errors import ErrorCodes

from ...asgi.http import NO_BODY_STATUSES, HTTPStream, ResponseState
from ...core.errors import error_page
from .validation import response_fields

if TYPE_CHECKING:
    from ...core.state import ServerState
    from ..interfaces import Socket
    from .h2_workarounds import ServerH2Connection

logger = logging.getLogger("django_daphne.http2")

# the largest response header list for a client that announces no SETTINGS_MAX_HEADER_LIST_SIZE:
# the limit h2 (httpx), nghttp2 (curl) and others apply without announcing it, and answer a
# larger one by ending the whole connection
_DEFAULT_PEER_HEADER_LIST = 65536


class Lifecycle(enum.IntEnum):
    """Our side of a stream (RFC 9113 5.1), in order: it only moves on.  The client's side
    is ``Stream.body_ended``."""

    OPEN = 0  # the response may still be sent
    ENDING = 1  # the response is complete (or replaced): its end waits for pending data
    ENDED = 2  # END_STREAM written, or the stream reset or gone: nothing more goes out


OPEN, ENDING, ENDED = Lifecycle


class Receiver(Protocol):
    """What takes a stream's request: an HTTPStream, or a tunnel's WebSocket."""

    @property
    def task(self) -> asyncio.Task[None] | None: ...
    @property
    def state(self) -> ResponseState: ...
    def body_received(self, data: bytes) -> None: ...
    def body_finished(self) -> None: ...
    def connection_lost(self) -> None: ...


class Flow(Protocol):
    """What a stream asks of flow control (:class:`~.flow.FlowControl`)."""

    def acknowledge(self, stream_id: int, size: int) -> None: ...
    def send_pending(self, wire: Stream) -> None: ...
    def flush_soon(self) -> None: ...
    def write_frames(self, *frames: bytes) -> None: ...


class Host(Protocol):
    """The HTTP/2 connection as its pieces see it (HTTP2Handler is the one there is): what
    they read, and what they ask of it."""

    @property
    def h2(self) -> ServerH2Connection:
        """h2's record of the connection: settings, windows, HPACK, closed streams."""
    @property
    def flow(self) -> Flow: ...
    @property
    def streams(self) -> Mapping[int, Stream]:
        """The streams open, by id."""
    @property
    def conn(self) -> Socket:
        """The transport under HTTP/2."""
    @property
    def server(self) -> ServerState:
        """The clock, the loop, the Date header."""
    @property
    def server_header(self) -> bytes: ...
    @property
    def closed(self) -> bool: ...

    def reset(self, stream_id: int, code: int) -> None:
        """RST_STREAM on a stream; its application hears the client is gone."""
    def release(self, wire: Stream) -> None:
        """The stream's response is complete: its slot is freed once it is all sent."""
    def update_deadline(self) -> None:
        """A stream came, went, waits for window, or moved its own deadline."""
    def body_timed_out(self, wire: Stream) -> None:
        """The client stopped sending a stream's request body."""


class Stream:
    """The wire side of one HTTP/2 stream: what HTTPStream calls to answer.  A subclass
    says how a frame is written."""

    __slots__ = (
        "host", "stream_id", "stream", "is_head", "start", "pending", "trailers", "state",
        "paused", "unacked", "waiters", "body_ended", "length_left", "window",
    )
    tunnel = False  # a WebSocket stream (RFC 8441): its answer is never replaced

    def __init__(self, host: Host, stream_id: int, window: int = 0) -> None:
        self.host = host
        self.stream_id = stream_id
        self.stream: Receiver | None = None  # None for a refused request
        self.is_head = False  # no body may follow the head
        self.start: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self.pending: deque[bytes] = deque()  # response data waiting for flow-control window
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.state = OPEN
        self.paused = False
        self.unacked = 0  # request body bytes received but not yet acknowledged
        self.waiters: list[asyncio.Future[None]] = []
        self.body_ended = False  # the client ended its side of the stream
        self.length_left: int | None = None  # of the request's content-length, if it had one
        self.window = window  # the send window, where the kind keeps it (h2 keeps its own)

    def move(self, to: Lifecycle) -> None:
        """Every change of :class:`Lifecycle`: forward only."""
        if to > self.state:
            self.state = to

    # -- how a frame is written: the kinds'

    def send_window(self) -> int:
        """How many bytes of DATA may go now (the windows, and the frame size)."""
        raise NotImplementedError

    def write_headers(self, fields: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        raise NotImplementedError

    def write_data(self, chunk: bytes, last: bool) -> None:
        raise NotImplementedError

    def write_end(self) -> None:
        """The end of a response whose data went: its trailers, or an empty END_STREAM."""
        raise NotImplementedError

    def write_reset(self, code: int) -> None:
        raise NotImplementedError

    def send_failed(self, exc: h2.exceptions.ProtocolError) -> None:
        """h2 refused a frame of the send loop's (h2's kinds alone)."""
        raise exc

    # -- reading: the window reopens only as the application takes the body

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False
        if self.unacked:
            flow = self.host.flow
            flow.acknowledge(self.stream_id, self.unacked)
            self.unacked = 0
            flow.flush_soon()

    def send_continue(self) -> None:
        """HTTP/2 clients do not wait for 100-continue; nothing to send."""

    @property
    def reading_paused(self) -> bool:
        """We hold the client's window (the application is not taking the body), or do not
        read the connection: a stalled body is not the client's doing."""
        return self.paused or self.host.conn.paused != 0

    def body_timed_out(self) -> None:
        self.host.body_timed_out(self)

    # -- writing

    def response_start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.start = (status, headers)

    def _head_fields(self, status: int, headers: list[tuple[bytes, bytes]]
                     ) -> list[tuple[bytes, bytes]]:
        fields = [(b":status", b"%d" % status), *response_fields(headers)]
        if status == 204:
            # RFC 9110 8.6: never in a 204; nghttp2 (curl) resets a stream whose 204 has one
            fields = [f for f in fields if f[0] != b"content-length"]
        host = self.host
        server_header = host.server_header
        if server_header:
            if not any(n == b"server" for n, _ in fields):
                fields.append((b"server", server_header))
        if not any(n == b"date" for n, _ in fields):
            fields.append((b"date", host.server.http_date.encode("ascii")))
        return fields

    def _unsendable(self, fields: list[tuple[bytes, bytes]]) -> str | None:
        """Why the application's response head cannot go out as it is, or None: a client
        takes a header list over its SETTINGS_MAX_HEADER_LIST_SIZE for a malformed response,
        and h2 clients end the whole connection for it (every other stream with it)."""
        limit = self.host.h2.remote_settings.max_header_list_size
        if limit is None:
            limit = _DEFAULT_PEER_HEADER_LIST
        size = sum(len(n) + len(v) + 32 for n, v in fields)  # RFC 9113 6.5.2
        if size > limit:
            return "its header list of %d bytes is over the client's limit of %d" % (
                size, limit)
        return None

    def _replace(self, problem: str) -> None:
        """Answer 500 in place of a response that cannot be sent; the application's own
        body, still to come, is dropped (the stream is ENDING or ENDED).  A WebSocket
        stream's answer is not replaced: the stream is reset."""
        host = self.host
        if self.tunnel:
            logger.error("Answer to the WebSocket on HTTP/2 stream %d cannot be sent (%s); "
                         "stream reset", self.stream_id, problem)
            host.reset(self.stream_id, ErrorCodes.INTERNAL_ERROR)
            return
        logger.error("Application's response to HTTP/2 stream %d cannot be sent (%s); "
                     "answered 500", self.stream_id, problem)
        self.trailers = None
        stream = self.stream
        if isinstance(stream, HTTPStream):  # (a tunnel's answer is not replaced: above)
            stream.status = 500  # what the access log shows
        headers, body = error_page(500)
        fields = self._head_fields(500, headers)
        self.write_headers(fields, end_stream=self.is_head)
        if self.state is OPEN:
            self.pending.append(body)
            self.move(ENDING)
            host.flow.send_pending(self)
        host.flow.flush_soon()

    def response_body(self, body: bytes, more: bool) -> None:
        if self.state is not OPEN or self.host.closed:
            return
        flow = self.host.flow
        if self.start is not None:
            status, headers = self.start
            self.start = None
            no_body = self.is_head or status in NO_BODY_STATUSES
            fields = self._head_fields(status, headers)
            problem = self._unsendable(fields)
            if problem is not None:
                self._replace(problem)
                return
            self.is_head = no_body  # no body may follow, whatever the application sends
            end = (no_body or not (body or more)) and not more and self.trailers is None
            self.write_headers(fields, end_stream=end)
            if self.state is ENDED:
                flow.flush_soon()
                return
        if self.is_head:
            body = b""
        if body:
            self.pending.append(body)
        if not more:
            self.move(ENDING)
        flow.send_pending(self)
        flow.flush_soon()

    def response_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        if self.state is not OPEN or self.host.closed:
            return
        self.trailers = response_fields(headers)
        self.move(ENDING)
        flow = self.host.flow
        flow.send_pending(self)
        flow.flush_soon()

    @property
    def write_paused(self) -> bool:
        return bool(self.pending) or self.host.conn.write_paused

    async def drain(self) -> None:
        host = self.host
        while (self.pending or host.conn.write_paused) and not (
            self.state is ENDED or host.closed
        ):
            if self.pending:
                waiter = host.server.loop.create_future()
                self.waiters.append(waiter)
                await waiter
            else:
                await host.conn.drain()

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def abort(self) -> None:
        self.host.reset(self.stream_id, ErrorCodes.INTERNAL_ERROR)

    def response_complete(self) -> None:
        self.host.release(self)


class H2Stream(Stream):
    """A stream h2 carries: its frames are h2's to write, its send window h2's to keep."""

    __slots__ = ()

    def send_window(self) -> int:
        h2conn = self.host.h2
        return min(h2conn.local_flow_control_window(self.stream_id),
                   h2conn.max_outbound_frame_size)

    def write_headers(self, fields: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        try:
            self.host.h2.send_headers(self.stream_id, fields, end_stream=end_stream)
        except h2.exceptions.ProtocolError as exc:
            logger.error("HTTP/2 refused the application's response headers: %s", exc)
            self.host.reset(self.stream_id, ErrorCodes.INTERNAL_ERROR)
            return
        if end_stream:
            self.move(ENDED)

    def write_data(self, chunk: bytes, last: bool) -> None:
        self.host.h2.send_data(self.stream_id, chunk, end_stream=last)

    def write_end(self) -> None:
        if self.trailers is not None:
            self.host.h2.send_headers(self.stream_id, self.trailers, end_stream=True)
        else:
            self.host.h2.end_stream(self.stream_id)

    def write_reset(self, code: int) -> None:
        try:
            self.host.h2.reset_stream(self.stream_id, code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass

    def send_failed(self, exc: h2.exceptions.ProtocolError) -> None:
        self.pending.clear()
        self.move(ENDED)
        if isinstance(exc, h2.exceptions.StreamClosedError):
            return
        # not left hanging: the client learns the response broke off
        logger.error("HTTP/2 refused to send the response on stream %d: %s", self.stream_id,
                     exc)
        try:
            self.host.h2.reset_stream(self.stream_id, ErrorCodes.INTERNAL_ERROR)
        except h2.exceptions.ProtocolError:
            pass
