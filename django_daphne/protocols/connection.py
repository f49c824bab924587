"""One object per accepted socket: the transport, which protocol speaks on it, the write
path, backpressure, the timers and closing.

A :class:`Connection` starts with the HTTP/1.1 handler, or with HTTP/2 when TLS ALPN chose
``h2`` or the first bytes are the HTTP/2 preface; the HTTP/1.1 handler asks it to switch
for ``Upgrade: h2c`` and ``Upgrade: websocket``.  This module is where the wire protocols
meet: none of them imports another.  Whatever the handler, the connection writes (straight
to the socket while Twisted holds nothing unsent), tells writers to wait while the peer
takes nothing (Twisted's producer calls, and the send timeout), holds the timer of the
moment (named: see :mod:`.timers`; the server's sweep fires it), and closes, once, the same
way on TCP, TLS and UNIX sockets (see :mod:`.transport`): at once, or after an error answer
with a lingering close (:meth:`Connection.close_after_error`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.internet.protocol import Protocol
from zope.interface import implementer

from .http1 import HTTP1Handler
from .interfaces import PAUSE_APP, PAUSE_WRITES, Handler
from .timers import Timer
from .transport import (
    Transport,
    addresses,
    behind_proxy_header,
    close_transport,
    linger,
    make_writer,
    proxied_addresses,
    tls_extension,
    writes_direct,
    written_out,
)
from .twisted_internals import read_into

if TYPE_CHECKING:
    from ..asgi.wire import RequestHead
    from ..core.counts import Counts
    from ..core.state import ServerState
    from .interfaces import HandshakeHead, Opening, TunnelLink
    from .websocket import WebSocketConnection

logger = logging.getLogger("django_daphne.http")

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# A lingering close (after an error answer) reads and drops what the client still sends, for
# at most this long once the answer is out (or the send timeout, if shorter) and this much;
# then it is cut off.  Apache lingers up to 30 s, nginx 5 s without a byte (30 s in all): a
# client that reads its answer closes its side long before either.
LINGER_SECONDS = 5.0
LINGER_BYTES = 4 * 1024 * 1024


def _ignore(data: bytes) -> None:
    """Where the bytes of a closed connection go."""


def _counted_reader(receive: Callable[[bytes], None], counts: Counts
                    ) -> Callable[[bytes], None]:
    def counted(data: bytes) -> None:
        counts.received += len(data)
        receive(data)

    return counted


@implementer(IPushProducer)
class Connection(Protocol):
    """One client connection, whatever protocol it speaks (see the module docstring)."""

    handler: Handler
    scheme: str
    client: list[Any] | None
    server_addr: list[Any] | None
    write: Callable[[bytes], None]  # set by connectionMade (see make_writer)
    # Twisted declares ITransport | None; it is set (makeConnection) before connectionMade,
    # and mypy cannot check calls through a zope.interface declaration
    transport: Transport  # type: ignore[assignment]
    # a lingering close (set by close_after_error): the bytes the client may still send, and
    # until when the answer may take to go out (the send timeout, as for any close)
    linger_left = 0
    linger_send_by: float

    def __init__(self, server: ServerState) -> None:
        self.server = server
        self.closed = False
        # the timer of the moment (see .timers), and when it is due (the server's sweep
        # fires it); while its handler runs it, ``timer`` still names the one that fired
        self.timer: Timer | None = None
        self.deadline: float | None = None
        self.paused = 0  # why reading is paused: PAUSE_* bits
        self.write_paused = False
        self.stalled_until = 0.0  # with write_paused: when Timer.SEND cuts it off
        self.drain_waiters: list[asyncio.Future[None]] = []
        # a handler whose peer might flood us while not reading (HTTP/2, WebSocket) is not
        # read while our writes wait; HTTP/1.1 reads on (a request body may be coming)
        self.read_while_stalled = True
        self.sniffing = True  # no byte received yet: the moment to recognise HTTP/2
        self.proxied = False  # addresses from a PROXY header, read with the first bytes
        self.tls: dict[str, Any] | None = None  # the ASGI TLS extension, once handshaken
        self.sniff_held = b""  # a first read too short to tell HTTP/2 from HTTP/1.1
        self.told_handler = False  # the handler heard connection_lost

    # -- Twisted's Protocol

    def connectionMade(self) -> None:  # Twisted's name
        transport = self.transport
        server = self.server
        self.scheme = "https" if ISSLTransport.providedBy(transport) else "http"
        self.client, self.server_addr = addresses(transport)
        # the addresses a PROXY header carries are read with the first bytes after it
        self.proxied = server.config.proxy_protocol or behind_proxy_header(transport)
        try:
            transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        # Twisted's transport.write always waits for the next writable event (an epoll
        # registration, a loop turn and a deregistration per response): on plain TCP and
        # UNIX sockets this one sends at once what the socket takes, in order
        counts = server.counts
        self.write = make_writer(transport, counts)  # (with metrics on, bytes counted)
        if counts is not None:
            counts.connections += 1
        transport.registerProducer(self, True)
        server.connections.add(self)
        self.handler = HTTP1Handler(self)

    def dataReceived(self, data: bytes) -> None:  # Twisted's name
        """The first bytes: which protocol speaks.  From then on Twisted calls the
        handler's ``data_received`` directly (see _route), and nothing once closed."""
        if self.closed:
            return
        counts = self.server.counts
        if counts is not None:
            counts.received += len(data)
        if self.sniff_held:
            data = self.sniff_held + data
            self.sniff_held = b""
        elif self.proxied:
            # the PROXY header was read before these bytes: the addresses it carries
            proxied = proxied_addresses(self.transport)
            if proxied is None:
                logger.info("Closed a connection whose PROXY header names no IP address")
                self.close()
                return
            self.client, self.server_addr = proxied
        if len(data) < 4 and HTTP2_PREFACE.startswith(data):
            # "P" to "PRI": too little to tell the HTTP/2 preface from HTTP/1.1 yet
            self.sniff_held = data
            return
        self.sniffing = False
        if self.scheme == "https":
            self.tls = tls_extension(self.transport)  # the handshake is done: bytes came
        if self._speaks_http2(data):
            self.start_http2()
            self._route()
            self.handler.data_received(data)
            if self.server.shutting_down and not self.closed:
                # begun while the server stops: the streams of these first bytes are
                # served, then the GOAWAYs (an HTTP/1.1 request is served with
                # Connection: close by the handler itself)
                self.handler.shutdown()
            return
        self._route()
        self.handler.data_received(data)

    def _route(self) -> None:
        """Send what Twisted reads straight to the handler (one call less per read), or to
        nowhere once closed; before the first bytes, to dataReceived.  With metrics on,
        what is read is counted on the way: by the transport itself for a plain TCP or
        UNIX one (:func:`.twisted_internals.read_into`, no call more per read), by a
        wrapper for any other."""
        counts = self.server.counts
        # (with metrics on, a transport make_writer writes past also counts what it reads)
        by_transport = counts is not None and writes_direct(self.transport)
        if self.closed:
            self.dataReceived = _ignore  # type: ignore[method-assign]
            if by_transport:
                read_into(self.transport, None)
        elif not self.sniffing:
            receive: Callable[[bytes], None] = self.handler.data_received
            if counts is not None:
                if by_transport:
                    read_into(self.transport, receive, counts)
                else:
                    receive = _counted_reader(receive, counts)
            self.dataReceived = receive  # type: ignore[method-assign, assignment]

    def _speaks_http2(self, data: bytes) -> bool:
        """ALPN chose h2, or the first bytes are the preface: "PRI " begins only the preface
        (RFC 9113 3.4 reserves the method), so one that goes wrong later is HTTP/2's to
        refuse (GOAWAY), not an HTTP/1.1 request."""
        if not self.server.config.http2:
            return False
        if self.scheme == "https" and getattr(self.transport, "negotiatedProtocol",
                                              None) == b"h2":
            return True
        return data[:4] == b"PRI "

    def connectionLost(self, reason: Any = None) -> None:  # Twisted's name
        self.closed = True
        self._route()
        self.timer = self.deadline = None
        server = self.server
        server.connections.discard(self)
        server.stalled.discard(self)
        self._tell_handler()
        if self.drain_waiters:
            self._wake_writers()

    def _tell_handler(self) -> None:
        if not self.told_handler:
            self.told_handler = True
            self.handler.connection_lost()

    # -- switching protocols (the handlers ask; only this module knows them all)

    def start_http2(self, upgrade: tuple[RequestHead, bytes] | None = None) -> None:
        """HTTP/2 from now on: by the preface or ALPN, or (``upgrade``: the request head and
        its HTTP2-Settings) after the HTTP/1.1 handler's 101 to ``Upgrade: h2c``."""
        from .http2 import HTTP2Handler

        self.timer = Timer.HTTP2  # (the handler sets its deadline: see update_deadline)
        self.deadline = None
        self.read_while_stalled = False
        try:
            self.handler = HTTP2Handler(self, upgrade)
        except Exception as exc:  # h2 refuses a malformed HTTP2-Settings value
            logger.info("Refused an h2c upgrade from %s: %s", self.client, exc)
            self.close()
        self._route()

    @staticmethod
    def h2c_settings_usable(value: bytes) -> bool:
        """Whether HTTP/2 would take this HTTP2-Settings header (asked before the 101)."""
        from .http2 import valid_upgrade_settings

        return valid_upgrade_settings(value)

    def start_websocket(self, head: RequestHead, opening: Opening) -> None:
        """A WebSocket for this upgrade request from now on; ``opening`` (the HTTP/1.1
        handler) writes its answer.  A malformed handshake raises Refusal."""
        from .websocket import WebSocketConnection, check_upgrade

        key = check_upgrade(head)
        websocket = WebSocketConnection(self, head, opening, key)
        self.timer = self.deadline = None  # (the WebSocket arms its own once open)
        self.read_while_stalled = False
        self.handler = websocket
        self._route()
        websocket.stream.start()

    @staticmethod
    def websocket_on(stream: TunnelLink, head: HandshakeHead) -> WebSocketConnection:
        """A WebSocket on an HTTP/2 stream (RFC 8441), which is its link and its opening.
        A malformed handshake raises Refusal."""
        from .websocket import WebSocketConnection, check_handshake_headers

        check_handshake_headers(head.headers)
        return WebSocketConnection(stream, head, stream, None)

    # -- writing, and waiting for room

    async def drain(self) -> None:
        if self.write_paused and not self.closed:
            waiter = self.server.loop.create_future()
            self.drain_waiters.append(waiter)
            await waiter

    def _wake_writers(self) -> None:
        waiters, self.drain_waiters = self.drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # IPushProducer: the transport tells us when its write buffer is full, and empty again

    def pauseProducing(self) -> None:  # Twisted's name
        """Arms Timer.SEND (disarmed by resumeProducing, or when the connection ends)."""
        self.write_paused = True
        server = self.server
        self.stalled_until = server.clock + server.config.send_timeout
        server.stalled.add(self)
        if not self.read_while_stalled:
            # a peer that floods pings (or frames) while not reading gets no more read
            self.pause_reading(PAUSE_WRITES)

    def resumeProducing(self) -> None:  # Twisted's name
        self.write_paused = False
        self.server.stalled.discard(self)
        self.resume_reading(PAUSE_WRITES)
        self._wake_writers()
        if not self.closed:
            self.handler.writing_resumed()

    def stopProducing(self) -> None:  # Twisted's name
        self._wake_writers()

    # -- reading, paused for any number of reasons

    def pause_reading(self, reason: int = PAUSE_APP) -> None:
        if not self.paused and not self.closed:
            self.transport.pauseProducing()
        self.paused |= reason

    def resume_reading(self, reason: int = PAUSE_APP) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.closed:
                self.transport.resumeProducing()

    @property
    def timers(self) -> dict[Timer, float]:
        """The timers armed now, and when each is due (to read: the sweep reads
        ``deadline`` and ``stalled_until``)."""
        armed = {}
        if self.timer is not None and self.deadline is not None:
            armed[self.timer] = self.deadline
        if self.write_paused and self in self.server.stalled:
            armed[Timer.SEND] = self.stalled_until
        return armed

    # -- the timers (fired by the server's sweep), and closing

    def deadline_passed(self) -> None:
        """``timer`` passed: DRAIN or LINGER end the connection, the others are the
        handler's, which reads ``timer`` to know which."""
        self.deadline = None
        if self.closed:
            if self.timer is Timer.LINGER:
                server = self.server
                if not written_out(self.transport) and server.clock < self.linger_send_by:
                    # the answer is still going out (to a slow reader): the linger starts
                    # once it is out
                    self.deadline = min(self.linger_send_by,
                                        server.clock + self._linger_seconds())
                    return
                logger.info("Closed the connection of %s: it did not end it within %ss of "
                            "an error answer", self.client, self._linger_seconds())
            else:
                logger.info("Cut off %s: it did not take the end of the connection within "
                            "%ss", self.client, self.server.config.send_timeout)
            self.abort_now()
            return
        self.handler.deadline_passed()

    def send_timed_out(self) -> None:
        """The client took none of our pending writes within the send timeout."""
        logger.info("Cut off %s: it took nothing of what was written for %ss",
                    self.client, self.server.config.send_timeout)
        self.abort_now()

    def close(self) -> None:
        """End the connection once what was written has gone out: the one way it is closed,
        whatever decided it and whatever the transport (TCP, TLS, UNIX).  The handler hears
        of it at once (its applications' ``send`` raises, ``receive`` says they are gone);
        a client that takes nothing more is cut off after the send timeout."""
        if self.closed:
            return
        self.closed = True
        self._route()
        server = self.server
        self.timer = Timer.DRAIN
        self.deadline = server.clock + server.config.send_timeout
        close_transport(self.transport)
        self._tell_handler()
        if self.drain_waiters:
            self._wake_writers()

    def close_after_error(self) -> None:
        """Close after an error answer (a 4xx, a GOAWAY for a connection error), while the
        client may still be sending: a socket closed with unread bytes makes the kernel send
        a reset, which can overtake the answer.  Instead the write side is shut once the
        answer has gone out, what arrives is read and dropped, and the client's own close
        ends the connection; one that sends more than LINGER_BYTES, or does not close
        within LINGER_SECONDS of the answer's going out, is cut off (as is one that does
        not take the answer within the send timeout).  (The other closes stay as they are:
        at once.)"""
        if self.closed:
            return
        self.closed = True
        self.linger_left = LINGER_BYTES
        self.dataReceived = self._linger_read  # type: ignore[method-assign]
        server = self.server
        self.timer = Timer.LINGER
        self.deadline = server.clock + self._linger_seconds()
        self.linger_send_by = server.clock + server.config.send_timeout
        server.stalled.discard(self)
        self.paused = 0  # (linger resumes reading)
        linger(self.transport, self._linger_read)
        self._tell_handler()
        if self.drain_waiters:
            self._wake_writers()

    def _linger_seconds(self) -> float:
        return min(LINGER_SECONDS, self.server.config.send_timeout)

    def _linger_read(self, data: bytes) -> None:
        """What a lingering close reads: counted, and dropped."""
        self.linger_left -= len(data)
        if self.linger_left <= 0:
            logger.info("Cut off %s: it sent over %d bytes after an error answer",
                        self.client, LINGER_BYTES)
            self.linger_left = 0
            self.abort_now()

    def abort_now(self) -> None:
        """Drop the connection at once, discarding what was not sent."""
        self.closed = True
        self._route()
        self.timer = self.deadline = None
        self.server.stalled.discard(self)
        self.transport.abortConnection()

    def shutdown(self) -> None:
        """Graceful stop: the handler finishes what is in flight, then closes."""
        if not self.closed:
            self.handler.shutdown()
