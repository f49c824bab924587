"""WebSocket over an HTTP/2 stream (RFC 8441, extended CONNECT), which Daphne never had.

A client that sees SETTINGS_ENABLE_CONNECT_PROTOCOL opens a stream with ``:method CONNECT``
and ``:protocol websocket``; the stream's DATA then carries ordinary WebSocket frames.  The
WebSocket code is the HTTP/1.1 one: an :class:`H2Tunnel` presents the stream to
:class:`~.websocket.WebSocketConnection` as the connection it lives on, and gives autobahn a
transport whose bytes become DATA on that stream, sent as flow control allows.  autobahn's
HTTP/1.1 handshake answer is turned into the ``:status 200`` HEADERS that RFC 8441 wants.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

from h2.errors import ErrorCodes
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.python.failure import Failure

from .http2 import H2Stream
from .websocket import HandshakeError, WebSocketConnection, check_handshake_headers

logger = logging.getLogger("django_daphne.websocket")

# what autobahn's 101 response says that the HEADERS frame carries on (the rest, such as
# Upgrade and Sec-WebSocket-Accept, has no meaning over HTTP/2)
_NEGOTIATED = b"sec-websocket-extensions"
# Stop taking the client's frames while more frames than this wait for its window: what it
# sends (pings above all) makes autobahn answer on its own, and what cannot be sent would
# otherwise pile up. The application's messages do not count towards it: its send waits
# until they are out, one at a time, so they never make more than a frame or two here.
_BACKLOG_FRAMES = 64


class _TunnelWire(H2Stream):
    """The stream under a tunnel: tells the tunnel when what waited for window is sent."""

    __slots__ = ()
    tunnel = True

    def wake(self) -> None:
        super().wake()
        self.stream.drained()


class H2Tunnel:
    """One extended-CONNECT stream: the "connection" a WebSocketConnection writes to, and the
    object the HTTP/2 connection hands the stream's events to."""

    def __init__(self, h2conn: Any, stream_id: int, scheme: bytes | None, path: bytes,
                 headers: list) -> None:
        conn = h2conn.conn
        self.h2conn = h2conn
        self.server = h2conn.server
        # as for requests: the :scheme a TLS-terminating proxy reports, else ours
        self.scheme = scheme.decode("ascii") if scheme in (b"http", b"https") else conn.scheme
        self.client = conn.client
        self.server_addr = conn.server_addr
        self.wire = _TunnelWire(h2conn, stream_id, False)
        self.wire.stream = self
        self.transport = _StreamTransport(self, conn.transport)
        self._deadline: float | None = None
        self.finished = False  # our side of the stream is ended (or reset)
        self.lost = False  # the WebSocket heard its connection is gone
        self.handshake = b""  # autobahn's HTTP/1.1 answer, until its end is seen
        self.answered = False  # the 200 HEADERS went out
        self.app_paused = False  # the application's queue of messages is full
        self.backlogged = False  # what we write waits for the client's window
        check_handshake_headers(headers)
        if any(name == b"content-length" for name, _ in headers):
            # DATA on the stream is a byte stream, not content: h2 would hold the frames to
            # the length and end the whole connection at the first message past it
            raise HandshakeError(400, "a WebSocket stream has no content-length")
        # RFC 8441 5: no Sec-WebSocket-Key on a stream; one sent anyway (valid or not) must
        # not reach autobahn, which would take it for the key it answers and may refuse it
        headers = [(name, value) for name, value in headers if name != b"sec-websocket-key"]
        head = SimpleNamespace(http_version="2", target=path, headers=headers)
        self.websocket = WebSocketConnection(self, head)

    @property
    def closed(self) -> bool:
        return self.finished

    # -- what the HTTP/2 connection reads and calls (as it would an HTTPStream)

    @property
    def deadline(self) -> float | None:
        return self._deadline

    @deadline.setter
    def deadline(self, value: float | None) -> None:
        # the keepalive's next check: the HTTP/2 connection folds it into its own deadline
        self._deadline = value
        self.h2conn.tunnel_deadline_changed()

    @property
    def task(self) -> Any:
        return self.websocket.stream.task

    @property
    def state(self) -> int:
        return 2 if self.finished else 1  # 2: done, as HTTPStream says it

    def start(self) -> None:
        self.websocket.stream.start()

    def body_received(self, data: bytes) -> None:
        if not self.lost:
            self.websocket.data_received(data)

    def body_finished(self) -> None:
        """The client ended its side: the WebSocket's connection is closed, as by a FIN."""
        self._lose(ConnectionDone())
        self.end()

    def connection_lost(self) -> None:
        """The stream was reset, or the HTTP/2 connection is gone."""
        self.finished = True
        self._lose(ConnectionLost())

    def _lose(self, reason: Exception) -> None:
        if not self.lost:
            self.lost = True
            self.h2conn.tunnel_closed(self)
            self.websocket.connection_lost(Failure(reason))

    def deadline_passed(self) -> None:
        self._deadline = None
        self.websocket.deadline_passed()

    def shutdown(self) -> None:
        self.websocket.shutdown()

    # -- what WebSocketConnection calls on "its connection"

    def close(self) -> None:
        """End the WebSocket's stream once what was written has gone (a FIN, over TCP)."""
        self.end()

    def abort_now(self) -> None:
        """Drop the WebSocket at once: the stream is cancelled (RFC 8441 5: CANCEL is
        what a TCP reset is to a WebSocket on its own connection)."""
        self._cancel(ErrorCodes.CANCEL)

    def _cancel(self, code: int) -> None:
        if not self.finished:
            self.finished = True
            self.h2conn.reset(self.wire.stream_id, code)
        self._lose(ConnectionLost())

    def begin_denial(self, status: int, headers: list) -> None:
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
        self.h2conn.stream_finished(self.wire)
        self._lose(ConnectionDone())

    def pause_reading(self) -> None:
        self.app_paused = True
        self.wire.pause_reading()

    def resume_reading(self) -> None:
        self.app_paused = False
        if not self.backlogged:
            self.wire.resume_reading()

    def drained(self) -> None:
        """What we wrote has all gone out (or the stream is gone)."""
        if self.backlogged:
            self.backlogged = False
            if not (self.app_paused or self.finished or self.wire.ended):
                self.wire.resume_reading()

    @property
    def write_paused(self) -> bool:
        return self.wire.write_paused

    async def drain(self) -> None:
        await self.wire.drain()

    # -- what autobahn's transport does

    def write(self, data: bytes) -> None:
        if self.finished:
            return
        if not self.answered:
            self.handshake += data
            end = self.handshake.find(b"\r\n\r\n")
            if end < 0:
                return
            self.answered = True
            head, data = self.handshake[:end], self.handshake[end + 4:]
            self.handshake = b""
            if not head.startswith(b"HTTP/1.1 101 "):
                # our canonical handshake should never be refused; if autobahn does refuse
                # it, the client must not see a 200 and then nothing
                logger.error("WebSocket handshake on HTTP/2 stream %d refused by the framing "
                             "layer: %r", self.wire.stream_id, head.split(b"\r\n", 1)[0])
                self._cancel(ErrorCodes.INTERNAL_ERROR)
                return
            self._answer(head)
        wire = self.wire
        wire.response_body(data, True)
        if len(wire.pending) > _BACKLOG_FRAMES and not self.backlogged:
            self.backlogged = True
            wire.pause_reading()

    def _answer(self, head: bytes) -> None:
        """HEADERS with :status 200, the application's accept headers and what autobahn
        negotiated, from its HTTP/1.1 answer.  No content-length: RFC 9110 9.3.6 forbids it
        in a 2xx answer to CONNECT, and a client would count the stream's DATA against it."""
        websocket = self.websocket
        headers = [(name.lower(), value) for name, value in websocket.accept_headers
                   if name.lower() != b"content-length"]
        if websocket.subprotocol is not None:
            headers.append((b"sec-websocket-protocol",
                            websocket.subprotocol.encode("latin-1")))
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == _NEGOTIATED:
                headers.append((_NEGOTIATED, value.strip()))
        self.wire.response_start(200, headers)

    def end(self) -> None:
        """autobahn closes the connection (after the close handshake), or the client ended
        its side: end ours.  Before the 200 (or while a refusal is unfinished) there is no
        response to end in order, and no DATA may go before HEADERS: the stream is reset."""
        if not self.finished:
            if not self.answered:
                self._cancel(ErrorCodes.CANCEL)
                return
            self.finished = True
            self.wire.response_body(b"", False)
            self.h2conn.stream_finished(self.wire)
        self.server.loop.call_soon(self._lose, ConnectionDone())


class _StreamTransport:
    """The transport autobahn writes to: the tunnel's stream."""

    def __init__(self, tunnel: H2Tunnel, transport: Any) -> None:
        self.tunnel = tunnel
        self.real = transport

    def write(self, data: bytes) -> None:
        self.tunnel.write(data)

    def writeSequence(self, data: list) -> None:  # noqa: N802 - Twisted's name
        self.tunnel.write(b"".join(data))

    def loseConnection(self) -> None:  # noqa: N802
        self.tunnel.end()

    def abortConnection(self) -> None:  # noqa: N802
        self.tunnel.abort_now()

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        """Flow control is the stream's (see H2Tunnel.pause_reading and drain)."""

    def unregisterProducer(self) -> None:  # noqa: N802
        """autobahn calls this when it drops the connection: nothing to undo."""

    def getPeer(self) -> Any:  # noqa: N802
        return self.real.getPeer()

    def getHost(self) -> Any:  # noqa: N802
        return self.real.getHost()
