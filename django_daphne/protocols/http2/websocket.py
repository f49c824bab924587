"""WebSocket over an HTTP/2 stream (RFC 8441, extended CONNECT), which Daphne never had.

A client that sees SETTINGS_ENABLE_CONNECT_PROTOCOL opens a stream with ``:method CONNECT``
and ``:protocol websocket``; the stream's DATA then carries ordinary WebSocket frames.  An
:class:`H2Tunnel` is that stream seen from the WebSocket: the link its frames travel on
(DATA, sent as flow control allows) and the opening that writes its answer (HEADERS with
``:status 200``, or a refusal).  The WebSocket itself is the one HTTP/1.1 has; the
connection (:mod:`..connection`) puts the two together, so this module never imports it.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import TYPE_CHECKING, Protocol

from h2.errors import ErrorCodes

from ...asgi.http import BODY, DONE, ResponseState
from ...core.errors import Refusal
from ..interfaces import PAUSE_APP
from ..timers import Timer
from .stream import ENDED, H2Stream, Host

if TYPE_CHECKING:
    import asyncio

    from ..interfaces import WebSocketHandler

logger = logging.getLogger("django_daphne.websocket")

# Stop taking the client's frames while more frames than this wait for its window: what it
# sends (pings above all) makes autobahn answer on its own, and what cannot be sent would
# otherwise pile up. The application's messages do not count towards it: its send waits
# until they are out, one at a time, so they never make more than a frame or two here.
_BACKLOG_FRAMES = 64


class TunnelHost(Host, Protocol):
    """What a tunnel asks of the connection besides what a stream does."""

    def tunnel_closed(self, tunnel: H2Tunnel) -> None:
        """The tunnel's WebSocket heard its stream is gone."""


class TunnelStream(H2Stream):
    """The stream under a tunnel: tells the tunnel when what waited for window is sent."""

    __slots__ = ()
    tunnel = True
    stream: H2Tunnel  # (set by the tunnel as soon as it makes its wire)

    def wake(self) -> None:
        super().wake()
        self.stream.drained()


class H2Tunnel:
    """One extended-CONNECT stream: the link and the opening of its WebSocket, and what the
    HTTP/2 handler hands the stream's events to (as it would an HTTPStream)."""

    def __init__(self, host: TunnelHost, stream_id: int, scheme: str, path: bytes,
                 headers: list[tuple[bytes, bytes]]) -> None:
        conn = host.conn
        self.host = host
        self.server = host.server
        self.scheme = scheme
        self.client = conn.client
        self.server_addr = conn.server_addr
        self.tls = conn.tls
        self.wire = TunnelStream(host, stream_id)
        self.wire.stream = self
        self.timer: Timer | None = None  # the WebSocket's (PING or PONG) ...
        self._deadline: float | None = None  # ... folded into the handler's Timer.HTTP2
        self.finished = False  # our side of the stream is ended (or reset)
        self.lost = False  # the WebSocket heard its connection is gone
        self.answered = False  # the 200 HEADERS went out
        self.app_paused = False  # the application's queue of messages is full
        self.backlogged = False  # what we write waits for the client's window
        if any(name == b"content-length" for name, _ in headers):
            # DATA on the stream is a byte stream, not content: h2 would hold the frames to
            # the length and end the whole connection at the first message past it
            raise Refusal(400, "a WebSocket stream has no content-length")
        # RFC 8441 5: no Sec-WebSocket-Key on a stream; one sent anyway has no meaning
        headers = [(name, value) for name, value in headers if name != b"sec-websocket-key"]
        self.head = SimpleNamespace(http_version="2", target=path, headers=headers)
        self.websocket: WebSocketHandler = conn.websocket_on(self, self.head)

    # -- what the HTTP/2 handler reads and calls (as it would an HTTPStream)

    @property
    def deadline(self) -> float | None:
        return self._deadline

    @deadline.setter
    def deadline(self, value: float | None) -> None:
        # the keepalive's next check: the HTTP/2 handler folds it into its own deadline
        self._deadline = value
        self.host.update_deadline()

    @property
    def closed(self) -> bool:
        return self.finished

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self.websocket.stream.task

    @property
    def state(self) -> ResponseState:
        """As an HTTPStream says it: DONE once the stream's end is ours."""
        return DONE if self.finished else BODY

    def start(self) -> None:
        self.websocket.stream.start()

    def body_received(self, data: bytes) -> None:
        if not self.lost:
            self.websocket.data_received(data)

    def body_finished(self) -> None:
        """The client ended its side: the WebSocket's connection is closed, as by a FIN."""
        self._lose()
        self.close()

    def connection_lost(self) -> None:
        """The stream was reset, or the HTTP/2 connection is gone."""
        self.finished = True
        self._lose()

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            self.host.tunnel_closed(self)
            self.websocket.connection_lost()

    def deadline_passed(self) -> None:
        self._deadline = None
        self.websocket.deadline_passed()

    def shutdown(self) -> None:
        self.websocket.shutdown()

    # -- the link the WebSocket's frames travel on

    def write(self, data: bytes) -> None:
        if self.finished:
            return
        wire = self.wire
        wire.response_body(data, True)
        if len(wire.pending) > _BACKLOG_FRAMES and not self.backlogged:
            self.backlogged = True
            wire.pause_reading()

    def close(self) -> None:
        """End the WebSocket's stream once what was written has gone (a FIN, over TCP).
        Before the answer (or while a refusal is unfinished) there is no response to end
        in order, and no DATA may go before HEADERS: the stream is reset."""
        if not self.finished:
            if not self.answered:
                self._cancel(ErrorCodes.CANCEL)
                return
            self.finished = True
            self.wire.response_body(b"", False)
            self.host.release(self.wire)
        self.server.loop.call_soon(self._lose)

    def abort_now(self) -> None:
        """Drop the WebSocket at once: the stream is cancelled (RFC 8441 5: CANCEL is
        what a TCP reset is to a WebSocket on its own connection)."""
        self._cancel(ErrorCodes.CANCEL)

    def _cancel(self, code: int) -> None:
        if not self.finished:
            self.finished = True
            self.host.reset(self.wire.stream_id, code)
        self._lose()

    def pause_reading(self, reason: int = PAUSE_APP) -> None:
        self.app_paused = True
        self.wire.pause_reading()

    def resume_reading(self, reason: int = PAUSE_APP) -> None:
        self.app_paused = False
        if not self.backlogged:
            self.wire.resume_reading()

    def drained(self) -> None:
        """What we wrote has all gone out (or the stream is gone)."""
        if self.backlogged:
            self.backlogged = False
            if not (self.app_paused or self.finished or self.wire.state is ENDED):
                self.wire.resume_reading()

    @property
    def write_paused(self) -> bool:
        return self.wire.write_paused

    async def drain(self) -> None:
        await self.wire.drain()

    # -- the opening that answers the WebSocket's handshake

    def websocket_accepted(self, negotiated: list[tuple[bytes, bytes]],
                           headers: list[tuple[bytes, bytes]]) -> None:
        """HEADERS with :status 200: the application's accept headers, then what the
        handshake negotiated.  No content-length: RFC 9110 9.3.6 forbids it in a 2xx
        answer to CONNECT, and a client would count the stream's DATA against it."""
        self.answered = True
        fields = [(name.lower(), value) for name, value in headers
                  if name.lower() != b"content-length"]
        fields.extend((name.lower(), value) for name, value in negotiated)
        self.wire.response_start(200, fields)
        self.wire.response_body(b"", True)  # the HEADERS go now; the frames follow as DATA

    def begin_denial(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if status < 300:
            # a 2xx answer to CONNECT opens the tunnel, and a 1xx is no final answer: sent,
            # the denial would read as an accepted WebSocket (or break the stream)
            logger.error("WebSocket application for %s sent denial status %d, which over "
                         "HTTP/2 cannot refuse a WebSocket; the stream is reset",
                         self.websocket.stream.scope["path"], status)
            self._cancel(ErrorCodes.INTERNAL_ERROR)
            return
        self.wire.response_start(status, headers)

    def response_body(self, body: bytes, more: bool) -> None:
        self.wire.response_body(body, more)

    def response_complete(self) -> None:
        self.finished = True
        self.host.release(self.wire)
        self._lose()
