"""HTTP/1.1 on a connection: bytes in, parsed requests to the ASGI layer, responses out.

This module knows framing (Content-Length, chunked, keep-alive, pipelining, 100-continue)
and nothing of ASGI messages: it creates one :class:`~django_daphne.asgi.http.HTTPStream`
per request and is the wire the stream writes its response through.  Its connection
(:class:`~.connection.Connection`) owns the socket; for ``Upgrade: h2c`` and
``Upgrade: websocket`` this handler asks the connection to switch protocols.
"""

from __future__ import annotations

import enum
import functools
import logging
from collections import deque
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING

from ..asgi.http import NO_BODY_STATUSES, START, HTTPStream, build_scope
from ..asgi.wire import RequestHead
from ..core.errors import NO_ANSWER, Refusal, error_page
from .http1_parser import Limits, Parser, parser_class
from .interfaces import PAUSE_APP, PAUSE_PIPELINE, PAUSE_REFUSAL
from .timers import Timer

if TYPE_CHECKING:
    from ..core.config import Config
    from .interfaces import Socket

logger = logging.getLogger("django_daphne.http")

# seconds a connection accepted before a graceful stop, that has sent nothing yet, is given
# to send its first byte (--header-timeout if shorter)
OPENING_DRAIN_GRACE = 5.0

STATUS_LINES = {
    int(s): b"HTTP/1.1 %d %s\r\n" % (s, s.phrase.encode("ascii")) for s in HTTPStatus
}


@functools.lru_cache(maxsize=4)
def _parser_setup(config: Config) -> tuple[type[Parser], Limits]:
    """The parser class and limits the config asks for (worked out once, not per
    connection)."""
    return parser_class(config.http_parser), Limits(
        config.max_request_line, config.max_header_size, config.max_headers)


def status_line(status: int) -> bytes:
    return STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status


class Phase(enum.Enum):
    """Where a connection is between its requests (``HTTP1Handler.phase``)."""

    WAITING = "waiting"  # for a request's first byte: Timer.OPENING, then Timer.KEEP_ALIVE
    HEAD = "head"  # a request head is arriving: Timer.HEADER
    SERVING = "serving"  # a request is being answered (``current``): no timer of ours
    BLOCKED = "blocked"  # a pipelined request waits for our writes to drain (SEND's turn)


WAITING, HEAD, SERVING, BLOCKED = Phase


class Framing(enum.Enum):
    """How the body of the response being written goes out (``HTTP1Handler.framing``)."""

    PLAIN = "plain"  # as the application sends it: to its Content-Length, or to the close
    CHUNKED = "chunked"
    BODYLESS = "bodyless"  # none at all: a HEAD request's response, or a 1xx, 204 or 304


PLAIN, CHUNKED, BODYLESS = Framing


class HTTP1Handler:
    """HTTP/1.0 and HTTP/1.1 on one connection: the parser's events in, responses out."""

    def __init__(self, conn: Socket) -> None:
        self.conn = conn
        self.server = server = conn.server
        config = server.config
        parser, limits = _parser_setup(config)
        self.parser = parser(self, limits)
        self.phase = WAITING
        conn.timer = Timer.OPENING  # (disarmed by the first byte: see data_received)
        conn.deadline = server.clock + config.header_timeout
        self.current: HTTPStream | None = None  # the request whose response is being sent
        self.receiving: HTTPStream | None = None  # the request whose body is arriving
        self.queue: deque[tuple[HTTPStream, RequestHead]] = deque()  # pipelined, in turn
        self.pending_error: Refusal | None = None
        # per-response state
        self.keep_alive = True
        self.http10 = False
        self.framing = PLAIN
        self.pending_start: tuple[int, list[tuple[bytes, bytes]]] | None = None

    # -- the connection's events

    def data_received(self, data: bytes) -> None:
        if self.pending_error is not None:
            return
        conn = self.conn
        waiting = self.phase is WAITING
        if waiting:
            # a request's first bytes: Timer.HEADER is armed once they turn out to hold
            # only part of its head (not for the common head that comes whole, whose
            # on_head would disarm it at once; no timer fires within this call)
            self.phase = HEAD
        try:
            rest = self.parser.feed(data)
        except Refusal as error:
            self.refuse(error)
            return
        if waiting and self.phase is HEAD and conn.handler is self and not conn.closed:
            self._await_head()
        if rest and conn.handler is not self:  # the bytes after an upgrade's head
            conn.handler.data_received(rest)

    def connection_lost(self) -> None:
        """The requests in flight are over for their applications: a ``send`` now raises,
        ``receive`` says http.disconnect, and a ``send`` waiting for room returns."""
        # (a stream may be in two of these: telling it twice is harmless)
        if self.current is not None:
            self.current.connection_lost()
        if self.receiving is not None:
            self.receiving.connection_lost()
        for stream, _ in self.queue:
            stream.connection_lost()
        self.queue.clear()

    def writing_resumed(self) -> None:
        if self.phase is BLOCKED and self.queue and self.current is None:
            self._begin_next()

    # -- the timers (see .timers): each armed here, and fired by deadline_passed

    def _await_head(self) -> None:
        """A request head is arriving: Timer.HEADER (disarmed by on_head)."""
        self.phase = HEAD
        conn = self.conn
        conn.timer = Timer.HEADER
        conn.deadline = self.server.clock + self.server.config.header_timeout

    def _await_request(self) -> None:
        """Idle between requests: Timer.KEEP_ALIVE (disarmed by the next first byte)."""
        self.phase = WAITING
        conn = self.conn
        conn.timer = Timer.KEEP_ALIVE
        conn.deadline = self.server.clock + self.server.config.keep_alive_timeout

    def deadline_passed(self) -> None:
        """Timer.HEADER passed: 408.  Timer.OPENING or Timer.KEEP_ALIVE: no byte of a
        request came, and the connection is closed.  (A request's body timeout is its
        stream's: see body_timed_out.)"""
        if self.current is not None:  # (never: no timer of ours runs meanwhile)
            return
        if self.conn.timer is Timer.HEADER:
            self._send_error(408, "request head not received in time")
        else:
            self.conn.close()

    def shutdown(self) -> None:
        """Graceful stop: a request the client has begun is served, with ``Connection:
        close``: the one in flight, and one whose head is on its way (partly received, or
        not a byte of it yet on a connection just accepted, its TLS handshake perhaps not
        done).  Only a connection idle between requests closes at once.  One just accepted
        has OPENING_DRAIN_GRACE to send its first byte: a client's request follows its
        connect within a round trip, while a browser's spare connection (opened ahead, for
        a request that may never come) would hold the drain for the whole header timeout."""
        self.keep_alive = False
        conn = self.conn
        if (self.current is None and not self.queue and self.phase is WAITING
                and not conn.sniffing):
            conn.close()
        elif conn.timer is Timer.OPENING and conn.deadline is not None:
            conn.deadline = min(conn.deadline, self.server.clock + OPENING_DRAIN_GRACE)

    # -- the parser's events

    def on_head(self, head: RequestHead) -> bool:
        conn = self.conn
        server = self.server
        if head.upgrade is not None:
            if head.upgrade == b"websocket":
                return self._upgrade_websocket(head)
            if (head.upgrade == b"h2c" and server.config.http2 and self.current is None
                    and not server.shutting_down and self._upgrade_h2c(head)):
                return True
        scope = build_scope(
            server, head.http_version, conn.scheme, head.target, head.headers, conn.client,
            conn.server_addr, head.odd_names, head.method, conn.tls,
        )
        stream = HTTPStream(server, self, scope, head.expect_continue)
        if not head.has_body:
            # its head was the whole request: said before it starts, so no body timer is
            # armed (the parser's on_message_complete repeats it, harmlessly)
            stream.body_finished()
        self.receiving = stream
        if self.current is None:
            conn.timer = conn.deadline = None  # (Timer.HEADER's end)
            self._begin(stream, head)
        else:
            self.queue.append((stream, head))
            conn.pause_reading(PAUSE_PIPELINE)
        return False

    def _upgrade_websocket(self, head: RequestHead) -> bool:
        """Hand the connection to a WebSocket (a malformed handshake raises Refusal)."""
        if self.current is not None:
            raise Refusal(400, "WebSocket handshake pipelined behind another request")
        if self.server.shutting_down:
            # (what the WebSockets still connecting when the drain began were answered)
            raise Refusal(503, "the server is shutting down")
        self.conn.start_websocket(head, self)
        return True

    def websocket_accepted(self, negotiated: list[tuple[bytes, bytes]],
                           headers: list[tuple[bytes, bytes]]) -> None:
        """The 101 that opens a WebSocket: what the handshake negotiated, then the
        application's headers, byte for byte and in order."""
        self.conn.write(
            b"HTTP/1.1 101 Switching Protocols\r\n" + self.server.server_header
            + b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            + b"".join(name + b": " + value + b"\r\n" for name, value in negotiated)
            + b"".join(name + b": " + value + b"\r\n" for name, value in headers)
            + b"\r\n")

    def _upgrade_h2c(self, head: RequestHead) -> bool:
        """Upgrade: h2c (RFC 7540 3.2): 101, then HTTP/2 with this request as stream 1.
        A request with a body, or without a usable HTTP2-Settings (checked before the 101
        goes out: after it, a bad value could only end the connection in silence), is
        served as HTTP/1.1."""
        settings = [v for n, v in head.headers if n == b"http2-settings"]
        conn = self.conn
        if head.has_body or len(settings) != 1 or not conn.h2c_settings_usable(settings[0]):
            return False
        conn.write(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        conn.start_http2(upgrade=(head, settings[0]))
        return True

    def begin_denial(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """An HTTP response refusing a WebSocket handshake, written as any other."""
        self.keep_alive = False
        self.http10 = False
        self.framing = PLAIN
        self.response_start(status, headers)

    def on_body(self, data: bytes) -> None:
        receiving = self.receiving
        if receiving is None:  # never: on_head set it before the parser reads a body
            return
        receiving.body_received(data)

    def on_message_complete(self) -> None:
        receiving = self.receiving
        if receiving is None:  # never: on_head set it before the parser ends a request
            return
        receiving.body_finished()

    def _begin(self, stream: HTTPStream, head: RequestHead) -> None:
        self.current = stream
        self.phase = SERVING
        self.keep_alive = head.keep_alive and not self.server.shutting_down
        self.http10 = head.http_version == "1.0"
        self.framing = BODYLESS if head.method == b"HEAD" else PLAIN
        self.pending_start = None
        stream.start()

    def _begin_next(self) -> None:
        stream, head = self.queue.popleft()
        if not self.queue:
            self.conn.resume_reading(PAUSE_PIPELINE)
        self._begin(stream, head)

    def refuse(self, error: Refusal) -> None:
        """Answer a request we will not serve with its 4xx, then close."""
        current = self.current
        if current is not None:
            if self.receiving is current and not current.body_done:
                # the body of the request being served broke off mid-way
                current.connection_lost()
                if current.state is not START:
                    self.conn.close_after_error()
                    return
                self.current = None
            else:
                # a later, pipelined request is bad: answer it in its turn
                self.pending_error = error
                self.conn.pause_reading(PAUSE_REFUSAL)
                return
        self.queue.clear()
        self._answer(error)

    def _answer(self, error: Refusal) -> None:
        """Send a refusal's answer and close; one without an answer only closes (not
        HTTP/1.x at all: nobody to read an HTTP/1.1 answer)."""
        if error.answered:
            self._send_error(error.status, error.reason, error.headers)
            return
        conn = self.conn
        logger.info("Closed the connection of %s: %s", conn.client, error.reason)
        self.server.refused(conn.client, NO_ANSWER, error.reason, 0)
        conn.close_after_error()

    def _send_error(self, status: int, reason: str,
                    headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        conn = self.conn
        logger.info("Refused a request from %s: %d %s", conn.client, status, reason)
        fields, body = error_page(status, reason)
        server = self.server
        conn.write(
            status_line(status)
            + b"".join(name + b": " + value + b"\r\n" for name, value in fields)
            + b"".join(name + b": " + value + b"\r\n" for name, value in headers)
            + b"Connection: close\r\n" + server.date_header + server.server_header + b"\r\n"
            + body
        )
        server.refused(conn.client, status, reason, len(body))
        conn.close_after_error()  # the client may be sending still: see there

    # -- the wire an HTTPStream writes its response through

    def pause_reading(self) -> None:
        self.conn.pause_reading(PAUSE_APP)

    def resume_reading(self) -> None:
        self.conn.resume_reading(PAUSE_APP)

    def send_continue(self) -> None:
        if not self.http10 and not self.conn.closed:
            self.conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    @property
    def reading_paused(self) -> bool:
        """We stopped reading, for whatever reason: a stalled body is not the client's."""
        return self.conn.paused != 0

    def body_timed_out(self) -> None:
        """The client stopped sending the body of the request being served: 408 (if the
        application had not answered yet), and the connection is closed."""
        self.refuse(Refusal(408, "request body not received in time"))
    @property
    def write_paused(self) -> bool:
        return self.conn.write_paused

    async def drain(self) -> None:
        await self.conn.drain()

    def response_start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.pending_start = (status, headers)

    def response_body(self, body: bytes, more: bool) -> None:
        conn = self.conn
        if conn.closed:
            return
        write = conn.write
        start = self.pending_start
        if start is not None:
            head = self._head(start, body, more)
            framing = self.framing
            if framing is BODYLESS:
                write(head)
                return
            if framing is CHUNKED:
                if body:
                    head += b"%x\r\n" % len(body)
                    write(b"".join((head, body, b"\r\n0\r\n\r\n" if not more else b"\r\n")))
                elif not more:
                    write(head + b"0\r\n\r\n")
                else:
                    write(head)
                return
            if len(body) < 65536:
                write(head + body)
            else:  # no copy of a large body just to prepend the head
                write(head)
                write(body)
            return
        framing = self.framing
        if framing is BODYLESS:
            return
        if framing is CHUNKED:
            if body:
                write(b"".join(
                    (b"%x\r\n" % len(body), body, b"\r\n0\r\n\r\n" if not more else b"\r\n")))
            elif not more:
                write(b"0\r\n\r\n")
            return
        if body:
            write(body)

    def response_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        """Trailers travel in the last chunk; without chunked framing they are dropped."""
        if self.conn.closed or self.framing is not CHUNKED:
            return
        self.conn.write(
            b"0\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in headers) + b"\r\n")

    def _head(self, start: tuple[int, list[tuple[bytes, bytes]]], body: bytes, more: bool
              ) -> bytes:
        """Serialise the pending response head (``start``), choosing the framing."""
        status, headers = start
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
        if status in NO_BODY_STATUSES:
            self.framing = BODYLESS  # no body may follow, whatever the application sends
        elif content_length is None:  # (with one, the ASGI layer holds the body to it)
            head_request = self.framing is BODYLESS
            if not more and (body or not head_request):
                append(b"Content-Length: %d\r\n" % len(body))
            elif head_request:
                pass
            elif self.http10:
                self.keep_alive = False
            else:
                self.framing = CHUNKED
                append(b"Transfer-Encoding: chunked\r\n")
        current = self.current
        if current is not None and not current.body_done and (
                current.expect_continue or not more):
            # we never asked for the body (the client may or may not send it now), or the
            # whole response goes out before the body came: the connection is closed after
            # it (response_complete), and the client is told so
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

    def abort(self) -> None:
        self.keep_alive = False
        self.conn.close()

    def response_complete(self) -> None:
        current = self.current
        self.current = None
        conn = self.conn
        if conn.closed:
            return
        if current is not None and not current.body_done:
            # answered before the request body ended: the client may be sending it still
            conn.close_after_error()
            return
        if not self.keep_alive:
            conn.close()
            return
        if self.queue:
            if conn.write_paused:
                # the client is not reading what was written: the next pipelined request
                # waits until it drains (writing_resumed), or Timer.SEND cuts it off
                self.phase = BLOCKED
                return
            self._begin_next()
            return
        if self.pending_error is not None:
            error, self.pending_error = self.pending_error, None
            self._answer(error)
            return
        server = self.server
        if server.shutting_down:
            conn.close()
            return
        if self.parser.buffer:
            # part of the next request's head came with this one: it has the header
            # timeout to arrive whole (and a 408 after it), not the keep-alive timeout
            self._await_head()
            return
        self._await_request()
