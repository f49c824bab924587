"""HTTP/1.1 on a Twisted transport: bytes in, parsed requests to the ASGI layer, responses out.

This module knows framing (Content-Length, chunked, keep-alive, pipelining, 100-continue)
and nothing of ASGI messages: it creates one :class:`~django_daphne.asgi.http.HTTPStream`
per request and implements the small write interface the stream calls.
"""

from __future__ import annotations

import logging
from collections import deque
from http import HTTPStatus
from typing import Any

from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.internet.protocol import Protocol
from zope.interface import implementer

from ..asgi.http import BadRequest, HTTPStream, build_scope
from ..asgi.scope import address, server_address
from .http1_parser import Limits, ParseError, make_parser
from .transport import close_transport, direct_socket, write_now

logger = logging.getLogger("django_daphne.http")

STATUS_LINES = {
    int(s): b"HTTP/1.1 %d %s\r\n" % (s, s.phrase.encode("ascii")) for s in HTTPStatus
}
_NO_BODY_STATUSES = frozenset((204, 304))
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_PAUSE_BODY, _PAUSE_PIPELINE, _PAUSE_ERROR, _PAUSE_WRITE = 1, 2, 4, 8


def status_line(status: int) -> bytes:
    return STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status


@implementer(IPushProducer)
class HTTP1Connection(Protocol):
    """One client connection speaking HTTP/1.0 or HTTP/1.1."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.closed = False
        self.deadline: float | None = None
        self.idle = True
        self.current: HTTPStream | None = None  # the request whose response is being sent
        self.receiving: HTTPStream | None = None  # the request whose body is arriving
        self.queue: deque = deque()  # pipelined (stream, head) pairs waiting their turn
        self.pending_error: ParseError | None = None
        self.paused = 0
        self.write_paused = False
        self.stalled_until = 0.0  # with write_paused: when the send timeout cuts it off
        self.drain_waiters: list = []
        self.next_when_drained = False  # a pipelined request waits for our writes to drain
        # per-response state
        self.keep_alive = True
        self.http10 = False
        self.is_head = False
        self.pending_start: tuple[int, list] | None = None
        self.chunked = False
        self.length_left: int | None = None
        # the protocol this connection switched to (WebSocketConnection, HTTP2Connection)
        self.upgraded: Any = None
        self.fresh = True  # no byte received yet: the moment to recognise HTTP/2
        self.sniff_held = b""  # a first read too short to tell HTTP/2 from HTTP/1.1

    # -- connection lifecycle

    def connectionMade(self) -> None:
        transport = self.transport
        server = self.server
        self.scheme = "https" if ISSLTransport.providedBy(transport) else "http"
        self.client = address(transport.getPeer())
        self.server_addr = server_address(transport.getHost())
        config = server.config
        self.parser = make_parser(
            config.http_parser, self,
            Limits(config.max_request_line, config.max_header_size, config.max_headers),
        )
        self.deadline = server.clock + server.header_timeout
        try:
            transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        # plain TCP and UNIX transports: write straight to the socket when Twisted holds
        # nothing unsent (see write); TLS goes through its transport
        self.sock = direct_socket(transport)
        transport.registerProducer(self, True)
        server.connections.add(self)
        if server.shutting_down:
            self.close()

    def connectionLost(self, reason: Any = None) -> None:
        self.closed = True
        self.deadline = None
        self.server.connections.discard(self)
        self.server.stalled.discard(self)
        if self.upgraded is not None:
            self.upgraded.connection_lost(reason)
        self._lose_streams()
        self.queue.clear()

    def close(self) -> None:
        """End the connection once what was written has gone out: the one way it is closed,
        whatever decided it and whatever the transport (TCP, TLS, UNIX).

        A client that takes nothing more is cut off after the send timeout."""
        if self.closed:
            return
        self.closed = True
        server = self.server
        self.deadline = server.clock + server.config.send_timeout
        close_transport(self.transport)
        self._lose_streams()

    def _lose_streams(self) -> None:
        """The requests in flight are over for their applications: a ``send`` now raises,
        ``receive`` says http.disconnect, and a ``send`` waiting for room returns."""
        for stream in {self.current, self.receiving, *(s for s, _ in self.queue)}:
            if stream is not None:
                stream.connection_lost()
        self._wake_writers()

    def abort_now(self) -> None:
        """Drop the connection at once, discarding what was not sent."""
        self.closed = True
        self.deadline = None
        self.server.stalled.discard(self)
        self.transport.abortConnection()

    # -- reading

    def dataReceived(self, data: bytes) -> None:
        if self.upgraded is not None:
            self.upgraded.data_received(data)
            return
        if self.closed or self.pending_error is not None:
            return
        if self.idle:
            self.idle = False
            if self.current is None:
                self.deadline = self.server.clock + self.server.header_timeout
            if self.fresh:
                if self.sniff_held:
                    data = self.sniff_held + data
                    self.sniff_held = b""
                if len(data) < 4 and HTTP2_PREFACE.startswith(data):
                    # "P" to "PRI": too little to tell the HTTP/2 preface from HTTP/1.1 yet
                    self.sniff_held = data
                    self.idle = True
                    return
                self.fresh = False
                if self._sniff_http2(data):
                    return
        try:
            rest = self.parser.feed(data)
        except ParseError as error:
            self.refuse(error)
            return
        if rest and self.upgraded is not None:
            self.upgraded.data_received(rest)

    def _sniff_http2(self, data: bytes) -> bool:
        """HTTP/2 from the first bytes: ALPN chose h2, or the client sent the preface."""
        alpn = getattr(self.transport, "negotiatedProtocol", None) if self.scheme == "https" \
            else None
        # "PRI " begins only the preface (RFC 9113 3.4 reserves the method): one that goes
        # wrong later is HTTP/2's to refuse (GOAWAY), not an HTTP/1.1 request
        if alpn != b"h2" and data[:4] != b"PRI ":
            return False
        if not self.server.config.http2:
            return False
        from .http2 import HTTP2Connection

        self.upgraded = HTTP2Connection(self)
        self.upgraded.data_received(data)
        return True

    def on_head(self, head: Any) -> bool:
        server = self.server
        if head.upgrade is not None:
            if head.upgrade == b"websocket":
                return self._upgrade_websocket(head)
            if (head.upgrade == b"h2c" and server.config.http2 and self.current is None
                    and self._upgrade_h2c(head)):
                return True
        try:
            scope = build_scope(
                server, head.http_version, head.method, self.scheme, head.target,
                head.headers, self.client, self.server_addr, head.odd_names,
            )
        except BadRequest as exc:
            raise ParseError(exc.status, exc.reason) from None
        stream = HTTPStream(server, self, scope, head.expect_continue)
        self.receiving = stream
        if self.current is None:
            self.deadline = None
            self._begin(stream, head)
        else:
            self.queue.append((stream, head))
            self._pause(_PAUSE_PIPELINE)
        return False

    def _upgrade_websocket(self, head: Any) -> bool:
        """Hand the connection to a WebSocket, or refuse a malformed handshake."""
        from .websocket import HandshakeError, WebSocketConnection, check_handshake

        if self.current is not None:
            raise ParseError(400, "WebSocket handshake pipelined behind another request")
        try:
            check_handshake(head)
            websocket = WebSocketConnection(self, head)
        except HandshakeError as exc:
            raise ParseError(exc.status, exc.reason, exc.headers) from None
        except BadRequest as exc:
            raise ParseError(exc.status, exc.reason) from None
        self.deadline = None
        self.upgraded = websocket
        websocket.stream.start()
        return True

    def _upgrade_h2c(self, head: Any) -> bool:
        """Upgrade: h2c (RFC 7540 3.2): 101, then HTTP/2 with this request as stream 1.
        A request with a body, or without HTTP2-Settings, is served as HTTP/1.1."""
        settings = [v for n, v in head.headers if n == b"http2-settings"]
        if head.has_body or len(settings) != 1:
            return False
        from .http2 import HTTP2Connection, valid_upgrade_settings

        if not valid_upgrade_settings(settings[0]):
            # checked before the 101 goes out: after it, a bad value could only end the
            # connection in silence; the request is served as HTTP/1.1 instead
            return False

        self.write(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        self.deadline = None
        try:
            self.upgraded = HTTP2Connection(self, upgrade=(head, settings[0]))
        except Exception as exc:  # h2 refuses a malformed HTTP2-Settings value
            logger.info("Refused an h2c upgrade from %s: %s", self.client, exc)
            self.close()
        return True

    def begin_denial(self, status: int, headers: list) -> None:
        """An HTTP response refusing a WebSocket handshake, written as any other."""
        self.keep_alive = False
        self.http10 = False
        self.is_head = False
        self.chunked = False
        self.length_left = None
        self.response_start(status, headers)

    def on_body(self, data: bytes) -> None:
        receiving = self.receiving
        receiving.body_received(data)
        if receiving is self.current:
            self.deadline = self.server.clock + self.server.body_timeout

    def on_message_complete(self) -> None:
        receiving = self.receiving
        receiving.body_finished()
        if receiving is self.current and self.deadline is not None:
            self.deadline = None

    def _begin(self, stream: HTTPStream, head: Any) -> None:
        self.current = stream
        self.keep_alive = head.keep_alive and not self.server.shutting_down
        self.http10 = head.http_version == "1.0"
        self.is_head = head.method == b"HEAD"
        self.pending_start = None
        self.chunked = False
        self.length_left = None
        if head.has_body and not head.expect_continue and not stream.body_done:
            # the body must keep coming (a client waiting for 100 Continue is armed when
            # it is sent)
            self.deadline = self.server.clock + self.server.body_timeout
        stream.start()

    def refuse(self, error: ParseError) -> None:
        """Answer a request we will not serve with its 4xx, then close."""
        current = self.current
        if current is not None:
            if self.receiving is current and not current.body_done:
                # the body of the request being served broke off mid-way
                current.connection_lost()
                if current.state != 0:
                    self.close()
                    return
                self.current = None
            else:
                # a later, pipelined request is bad: answer it in its turn
                self.pending_error = error
                self._pause(_PAUSE_ERROR)
                return
        self.queue.clear()
        self._send_error(error.status, error.reason, error.headers)

    def _send_error(self, status: int, reason: str, headers: list = ()) -> None:
        if not status:  # not HTTP/1.x at all: nobody to read an HTTP/1.1 answer
            logger.info("Closed the connection of %s: %s", self.client, reason)
            self.close()
            return
        logger.info("Refused a request from %s: %d %s", self.client, status, reason)
        body = ("%d %s: %s\n" % (status, HTTPStatus(status).phrase, reason)).encode("latin-1")
        server = self.server
        self.write(
            status_line(status)
            + b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n" % len(body)
            + b"".join(name + b": " + value + b"\r\n" for name, value in headers)
            + server.date_header + server.server_header + b"\r\n" + body
        )
        if server.access_log is not None:
            server.access_log.refused(self.client, status, len(body))
        self.close()

    def _pause(self, flag: int) -> None:
        if not self.paused and not self.closed:
            self.transport.pauseProducing()
        self.paused |= flag

    def _resume(self, flag: int) -> None:
        if self.paused & flag:
            self.paused &= ~flag
            if not self.paused and not self.closed:
                self.transport.resumeProducing()

    def write(self, data: bytes) -> None:
        """Send now when nothing is queued, else queue behind what is (in order).

        Twisted's transport.write always waits for the next writable event: an epoll
        registration, a loop turn and a deregistration per response.  A response that fits
        in the socket buffer is sent at once instead, and only a remainder is queued.
        """
        write_now(self.transport, self.sock, data)

    # -- the interface HTTPStream calls

    def pause_reading(self) -> None:
        self._pause(_PAUSE_BODY)

    def resume_reading(self) -> None:
        self._resume(_PAUSE_BODY)
        self._arm_body_timeout()

    def send_continue(self) -> None:
        if not self.http10 and not self.closed:
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._arm_body_timeout()

    def _arm_body_timeout(self) -> None:
        """From now, the client has the body timeout to send the next piece of the body."""
        current = self.current
        if current is not None and current is self.receiving and not current.body_done \
                and not self.closed:
            self.deadline = self.server.clock + self.server.body_timeout

    def response_start(self, status: int, headers: list) -> None:
        self.pending_start = (status, headers)

    def response_body(self, body: bytes, more: bool) -> None:
        if self.closed:
            return
        if self.pending_start is not None:
            head = self._head(body, more)
            if head is None:
                return
            if self.is_head:
                self.write(head)
                return
            if self.chunked:
                if body:
                    head += b"%x\r\n" % len(body)
                    self.write(b"".join(
                        (head, body, b"\r\n0\r\n\r\n" if not more else b"\r\n")))
                elif not more:
                    self.write(head + b"0\r\n\r\n")
                else:
                    self.write(head)
                return
            if self.length_left is not None and not self._count(body, more):
                return
            if len(body) < 65536:
                self.write(head + body)
            else:  # no copy of a large body just to prepend the head
                self.write(head)
                self.write(body)
            return
        if self.is_head:
            return
        if self.chunked:
            if body:
                self.write(b"".join(
                    (b"%x\r\n" % len(body), body, b"\r\n0\r\n\r\n" if not more else b"\r\n")))
            elif not more:
                self.write(b"0\r\n\r\n")
            return
        if self.length_left is not None and not self._count(body, more):
            return
        if body:
            self.write(body)

    def response_trailers(self, headers: list) -> None:
        """Trailers travel in the last chunk; without chunked framing they are dropped."""
        if self.closed or self.is_head:
            return
        if self.chunked:
            self.write(
                b"0\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in headers) + b"\r\n")
        elif self.length_left:
            # the body ended short of its Content-Length: the next response would be read
            # as the rest of this one
            self._count(b"", False)

    def _count(self, body: bytes, more: bool) -> bool:
        """Hold the body to the Content-Length the application declared."""
        left = self.length_left - len(body)
        if left < 0 or (not more and left):
            logger.error(
                "Application sent %s body than its Content-Length; connection closed",
                "more" if left < 0 else "less",
            )
            self.keep_alive = False
            self.close()
            return False
        self.length_left = left
        return True

    def _head(self, body: bytes, more: bool) -> bytes | None:
        """Serialise the pending response head, choosing the framing."""
        status, headers = self.pending_start
        self.pending_start = None
        parts = [status_line(status)]
        append = parts.append
        content_length = None
        has_date = has_server = False
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-length":
                content_length = value
            elif lowered == b"connection":
                if b"close" in value.lower():
                    self.keep_alive = False
                continue
            elif lowered == b"transfer-encoding":
                continue
            elif lowered == b"date":
                has_date = True
            elif lowered == b"server":
                has_server = True
            append(name + b": " + value + b"\r\n")
        if status in _NO_BODY_STATUSES:
            self.is_head = True  # no body may follow, whatever the application sends
        elif content_length is not None:
            if not content_length.isdigit():
                logger.error("Application sent an invalid Content-Length %r", content_length)
                self.keep_alive = False
                self.close()
                return None
            self.length_left = None if self.is_head else int(content_length)
        elif not more and (body or not self.is_head):
            append(b"Content-Length: %d\r\n" % len(body))
        elif self.is_head:
            pass
        elif self.http10:
            self.keep_alive = False
        else:
            self.chunked = True
            append(b"Transfer-Encoding: chunked\r\n")
        current = self.current
        if current is not None and current.expect_continue and not current.body_done:
            # we never asked for the body: the client may or may not send it now
            self.keep_alive = False
        if not self.keep_alive:
            append(b"Connection: close\r\n")
        elif self.http10:
            append(b"Connection: keep-alive\r\n")
        server = self.server
        if not has_date:
            append(server.date_header)
        if not has_server:
            append(server.server_header)
        append(b"\r\n")
        return b"".join(parts)

    def _begin_next(self) -> None:
        stream, head = self.queue.popleft()
        if not self.queue:
            self._resume(_PAUSE_PIPELINE)
        self._begin(stream, head)

    def abort(self) -> None:
        self.keep_alive = False
        self.close()

    async def drain(self) -> None:
        if self.write_paused and not self.closed:
            waiter = self.server.loop.create_future()
            self.drain_waiters.append(waiter)
            await waiter

    def response_complete(self) -> None:
        current = self.current
        self.current = None
        if self.closed:
            return
        if not self.keep_alive or (current is not None and not current.body_done):
            self.close()
            return
        if self.queue:
            if self.write_paused:
                # the client is not reading what was written: the next pipelined request
                # waits until it drains (resumeProducing), or the send timeout cuts it off
                self.next_when_drained = True
                return
            self._begin_next()
            return
        if self.pending_error is not None:
            error, self.pending_error = self.pending_error, None
            self._send_error(error.status, error.reason)
            return
        if self.server.shutting_down:
            self.close()
            return
        if self.parser.buffer:
            # part of the next request's head came with this one: it has the header
            # timeout to arrive whole (and a 408 after it), not the keep-alive timeout
            self.deadline = self.server.clock + self.server.header_timeout
            return
        self.idle = True
        self.deadline = self.server.clock + self.server.keep_alive_timeout

    # -- IPushProducer: the transport tells us when its write buffer is full

    def pauseProducing(self) -> None:
        self.write_paused = True
        server = self.server
        self.stalled_until = server.clock + server.config.send_timeout
        server.stalled.add(self)
        if self.upgraded is not None:
            # a peer that floods pings (or frames) while not reading gets no more read
            self._pause(_PAUSE_WRITE)

    def resumeProducing(self) -> None:
        self.write_paused = False
        self.server.stalled.discard(self)
        self._resume(_PAUSE_WRITE)
        self._wake_writers()
        if self.next_when_drained and not self.closed:
            self.next_when_drained = False
            if self.queue and self.current is None:
                self._begin_next()

    def stopProducing(self) -> None:
        self._wake_writers()

    def _wake_writers(self) -> None:
        waiters, self.drain_waiters = self.drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- timeouts and shutdown

    def send_timed_out(self) -> None:
        """The client took none of our pending writes within the send timeout."""
        logger.info("Cut off %s: it took nothing of what was written for %ss",
                    self.client, self.server.config.send_timeout)
        self.abort_now()

    def deadline_passed(self) -> None:
        """The header, body or keep-alive timeout passed (the server's sweep calls this), or
        a closing connection's client did not take the rest within the send timeout."""
        self.deadline = None
        if self.closed:
            logger.info("Cut off %s: it did not take the end of the connection within %ss",
                        self.client, self.server.config.send_timeout)
            self.abort_now()
            return
        if self.upgraded is not None:
            self.upgraded.deadline_passed()
            return
        if self.closed:
            return
        current = self.current
        if current is not None:
            if current is self.receiving and not current.body_done:
                if self.paused:
                    # not the client's doing: we stopped reading (the app is not taking the
                    # body, or our writes wait); look again later
                    self._arm_body_timeout()
                    return
                logger.info("Request body from %s stalled for %ss", self.client,
                            self.server.body_timeout)
                self.refuse(ParseError(408, "request body not received in time"))
            return
        if self.idle:
            self.close()
        else:
            self._send_error(408, "request head not received in time")

    def shutdown(self) -> None:
        """Graceful stop: finish the response in flight, then close."""
        if self.upgraded is not None:
            self.upgraded.shutdown()
            return
        self.keep_alive = False
        if self.current is None and not self.queue:
            self.close()
