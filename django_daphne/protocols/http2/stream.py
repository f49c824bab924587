"""The wire of one HTTP/2 stream: what its ASGI stream calls to answer.

The response head is checked before it goes out (a header list over the client's limit, or
a body that disagrees with its content-length, would make h2 clients end the whole
connection): such a response is replaced by a 500 while the head is still ours, and the
stream is reset once it went out.  Body data waits here for flow-control window, sent by
the handler's :class:`~.flow.FlowControl`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

import h2.exceptions
from h2.errors import ErrorCodes

from ...asgi.http import NO_BODY_STATUSES, HTTPStream
from ...core.errors import error_page
from .validation import response_fields

if TYPE_CHECKING:
    from .host import H2Host, StreamApp

logger = logging.getLogger("django_daphne.http2")

# the largest response header list for a client that announces no SETTINGS_MAX_HEADER_LIST_SIZE:
# the limit h2 (httpx), nghttp2 (curl) and others apply without announcing it, and answer a
# larger one by ending the whole connection
_DEFAULT_PEER_HEADER_LIST = 65536


class H2Stream:
    """The wire side of one HTTP/2 stream: what HTTPStream calls to answer."""

    __slots__ = (
        "http2", "stream_id", "stream", "is_head", "start", "pending", "end_after",
        "trailers", "ended", "paused", "unacked", "waiters", "body_ended", "length_left",
        "replaced", "lean", "window",
    )
    tunnel = False  # a WebSocket stream (RFC 8441), whose wire is a subclass

    def __init__(self, http2: H2Host[H2Stream], stream_id: int, is_head: bool,
                 lean: bool = False) -> None:
        self.http2 = http2
        self.stream_id = stream_id
        # the ASGI stream (an H2Tunnel for a WebSocket): None for a refused request
        self.stream: HTTPStream | StreamApp | None = None
        self.is_head = is_head
        self.start: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self.pending: deque[bytes] = deque()  # response data waiting for flow-control window
        self.end_after = False  # end the stream once pending is sent
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.ended = False
        self.paused = False
        self.unacked = 0  # request body bytes received but not yet acknowledged
        self.waiters: list[asyncio.Future[None]] = []
        self.body_ended = False  # the client ended its side of the stream
        self.length_left: int | None = None  # of the request's content-length, if it had one
        self.replaced = False  # the application's response could not go out: a 500 went
        # a stream h2 never hears of (see .lean), and then its send window, kept here
        self.lean = lean
        self.window = http2.h2.remote_settings.initial_window_size if lean else 0

    # -- reading: the window reopens only as the application takes the body

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False
        if self.unacked:
            self.http2.flow.acknowledge(self.stream_id, self.unacked)
            self.unacked = 0
            self.http2.flow.flush_soon()

    def send_continue(self) -> None:
        """HTTP/2 clients do not wait for 100-continue; nothing to send."""

    @property
    def reading_paused(self) -> bool:
        """We hold the client's window (the application is not taking the body), or do not
        read the connection: a stalled body is not the client's doing."""
        return self.paused or self.http2.conn.paused != 0

    def body_timed_out(self) -> None:
        self.http2.body_timed_out(self)

    # -- writing

    def response_start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.start = (status, headers)

    def _head_fields(self, status: int, headers: list[tuple[bytes, bytes]]
                     ) -> list[tuple[bytes, bytes]]:
        fields = [(b":status", b"%d" % status), *response_fields(headers)]
        if status == 204:
            # RFC 9110 8.6: never in a 204; nghttp2 (curl) resets a stream whose 204 has one
            fields = [f for f in fields if f[0] != b"content-length"]
        http2 = self.http2
        if http2.server_header:
            if not any(n == b"server" for n, _ in fields):
                fields.append((b"server", http2.server_header))
        if not any(n == b"date" for n, _ in fields):
            fields.append((b"date", http2.server.http_date.encode("ascii")))
        return fields

    def _unsendable(self, fields: list[tuple[bytes, bytes]]) -> str | None:
        """Why the application's response head cannot go out as it is, or None: a client
        takes a header list over its SETTINGS_MAX_HEADER_LIST_SIZE for a malformed response,
        and h2 clients end the whole connection for it (every other stream with it)."""
        limit = self.http2.h2.remote_settings.max_header_list_size
        if limit is None:
            limit = _DEFAULT_PEER_HEADER_LIST
        size = sum(len(n) + len(v) + 32 for n, v in fields)  # RFC 9113 6.5.2
        if size > limit:
            return "its header list of %d bytes is over the client's limit of %d" % (
                size, limit)
        return None

    def _send_headers(self, fields: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        http2 = self.http2
        if self.lean:
            http2.flow.lean_headers(self, fields, end_stream)
            if end_stream:
                self.ended = True
            return
        try:
            http2.h2.send_headers(self.stream_id, fields, end_stream=end_stream)
        except h2.exceptions.ProtocolError as exc:
            logger.error("HTTP/2 refused the application's response headers: %s", exc)
            http2.reset(self.stream_id, ErrorCodes.INTERNAL_ERROR)
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
            self.http2.reset(self.stream_id, ErrorCodes.INTERNAL_ERROR)
            return
        logger.error("Application's response to HTTP/2 stream %d cannot be sent (%s); "
                     "answered 500", self.stream_id, problem)
        self.replaced = True
        self.trailers = None
        stream = self.stream
        if isinstance(stream, HTTPStream):  # (a tunnel's answer is not replaced: above)
            stream.status = 500  # what the access log shows
        headers, body = error_page(500)
        fields = self._head_fields(500, headers)
        self._send_headers(fields, end_stream=self.is_head)
        if not self.ended:
            self.pending.append(body)
            self.end_after = True
            self.http2.flow.send_pending(self)
        self.http2.flow.flush_soon()

    def response_body(self, body: bytes, more: bool) -> None:
        if self.ended or self.http2.closed or self.replaced:
            return
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
            self._send_headers(fields, end_stream=end)
            if self.ended:
                self.http2.flow.flush_soon()
                return
        if self.is_head:
            body = b""
        if body:
            self.pending.append(body)
        if not more:
            self.end_after = True
        self.http2.flow.send_pending(self)
        self.http2.flow.flush_soon()

    def response_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        if self.ended or self.http2.closed or self.replaced:
            return
        self.trailers = response_fields(headers)
        self.end_after = True
        self.http2.flow.send_pending(self)
        self.http2.flow.flush_soon()

    @property
    def write_paused(self) -> bool:
        return bool(self.pending) or self.http2.conn.write_paused

    async def drain(self) -> None:
        while (self.pending or self.http2.conn.write_paused) and not (
            self.ended or self.http2.closed
        ):
            if self.pending:
                waiter = self.http2.server.loop.create_future()
                self.waiters.append(waiter)
                await waiter
            else:
                await self.http2.conn.drain()

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def abort(self) -> None:
        self.http2.reset(self.stream_id, ErrorCodes.INTERNAL_ERROR)

    def response_complete(self) -> None:
        self.http2.stream_finished(self)
