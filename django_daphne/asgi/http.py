"""The ASGI HTTP protocol, written once for every wire protocol.

A wire protocol (HTTP/1.1, or a stream of HTTP/2) creates one :class:`HTTPStream` per request and
calls it directly: ``body_received``, ``body_finished``, ``connection_lost``.  The stream
builds nothing more than the scope, runs the application in one task, checks every message
the application sends against the spec, and hands the wire protocol validated data through
a small interface (``response_start``, ``response_body``, ``abort``, ``send_continue``,
``pause_reading``/``resume_reading``, ``write_paused``/``drain``, ``response_complete``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
from bisect import bisect_left
from collections.abc import Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ..core.access_log import request_field
from ..core.counts import ABORTED, DURATION_BUCKETS, FIRST_BOUND
from ..core.errors import ClientDisconnected, Refusal, UnexpectedMessage, error_page
from ..core.syntax import TOKEN
from .instance import ApplicationInstance
from .scope import connection_scope

if TYPE_CHECKING:
    from ..core.state import ServerState
    from .wire import HTTPWire

__all__ = ["ClientDisconnected", "HTTPStream", "UnexpectedMessage", "build_scope",
           "check_headers"]

logger = logging.getLogger("django_daphne.http")

_BAD_VALUE = re.compile(rb"[\x00\r\n]").search

# Stop reading the socket once this much request body waits for the application.
BODY_HIGH_WATER = 256 * 1024
# responses that never carry a body, whatever the application sends (RFC 9110 6.4.1)
NO_BODY_STATUSES = frozenset((204, 304))
# seconds an application told its client is gone has to return before it is cancelled
CANCEL_GRACE = 0.25



class ResponseState(enum.Enum):
    """Where an HTTP exchange is, from the application's side."""

    START = "start"  # nothing sent yet: http.response.start is next
    BODY = "body"  # started: http.response.body messages until one ends the body
    TRAILERS = "trailers"  # the body ended: http.response.trailers to come
    DONE = "done"  # the response is complete (or was abandoned)


START, BODY, TRAILERS, DONE = ResponseState

# header names already checked, mapped to whether the name is Content-Length (any case)
_known_names: dict[bytes, bool] = {}


def check_headers(headers: Any, what: str
                  ) -> tuple[list[tuple[bytes, bytes]], bytes | list[bytes] | None]:
    """Validate response headers: an iterable of (bytes name, bytes value) pairs that HTTP
    can carry; raise UnexpectedMessage naming the first bad one.  Returns the headers as a
    list, and the value of their Content-Length header (a list of them when there are
    several; None without one: see :func:`content_length`)."""
    checked = []
    lengths: bytes | list[bytes] | None = None
    try:
        for name, value in headers:
            if type(name) is not bytes or type(value) is not bytes:
                raise UnexpectedMessage(
                    f"{what}: header names and values must be bytes, got {name!r}: {value!r}"
                )
            try:
                is_length = _known_names[name]
            except KeyError:
                if not TOKEN(name):
                    raise UnexpectedMessage(f"{what}: invalid header name {name!r}") from None
                is_length = name.lower() == b"content-length"
                if len(_known_names) < 1000:
                    _known_names[name] = is_length
            if _BAD_VALUE(value):
                raise UnexpectedMessage(
                    f"{what}: header {name!r} has a value containing CR, LF or NUL"
                )
            if is_length:
                lengths = value if lengths is None else [
                    *([lengths] if type(lengths) is bytes else lengths), value]
            checked.append((name, value))
    except (TypeError, ValueError) as exc:
        raise UnexpectedMessage(
            f"{what}: headers must be an iterable of [name, value] pairs ({exc})"
        ) from None
    return checked, lengths


# valid Content-Length values seen, and their numbers (int() of bytes takes longer than the
# rest of a small response's checks); bounded, like _known_names
_LENGTHS: dict[bytes, int] = {}


def content_length(values: bytes | list[bytes], what: str) -> int:
    """A response's Content-Length from its value (one, or several equal ones), or
    UnexpectedMessage naming the first invalid (or differing) one."""
    listed = [values] if isinstance(values, bytes) else values
    first = listed[0]
    for value in listed:
        if not (value.isdigit() and len(value) <= 18) or value != first:
            raise UnexpectedMessage(f"{what}: invalid content-length {value!r}")
    number = int(first)
    if len(_LENGTHS) < 1000:
        _LENGTHS[first] = number
    return number


class HTTPStream(ApplicationInstance):
    """One request/response exchange and the application instance serving it."""

    __slots__ = (
        "wire", "state", "chunks", "buffered", "body_done", "final_delivered",
        "expect_continue", "reading_paused", "started_at", "trailers", "high_water",
        "told_gone", "length_left", "body_started", "app_due", "body_due",
    )

    def __init__(self, server: ServerState, wire: HTTPWire, scope: dict[str, Any],
                 expect_continue: bool) -> None:
        ApplicationInstance.__init__(self, server, scope)
        self.wire = wire
        self.state = START
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.body_done = False
        self.final_delivered = False
        self.expect_continue = expect_continue
        self.reading_paused = False
        self.started_at = 0.0
        # trailer headers, when the app announced them
        self.trailers: list[tuple[bytes, bytes]] | None = None
        # body bytes held for the app before the wire is asked to stop reading; HTTP/2 sets
        # its stream window here, so that window reopens only as the app reads
        self.high_water = BODY_HIGH_WATER
        self.told_gone = False  # receive() has said http.disconnect
        self.length_left: int | None = None  # of the response's Content-Length, still due
        self.body_started = False  # a body message went to the wire (the head went with it)
        # the two deadlines ``deadline`` is the earlier of: the application's (to respond,
        # then to return), and the client's, to send the next piece of the request body
        self.app_due: float | None = None
        self.body_due: float | None = None

    def describe(self) -> str:
        return f"{self.scope['method']} {self.scope['path']}"

    def start(self) -> None:
        """Run the application for this request (or, at the concurrency limit, refuse it
        without calling the application)."""
        server = self.server
        limit = server.limit_concurrency
        if limit is not None and len(server.streams) >= limit:
            # answered on the loop's next turn, as an application answers: never inside
            # the wire's parsing of the request (HTTP/1.1 reads on to the next one)
            server.loop.call_soon(self._refuse, server.busy)
            return
        now = server.clock  # (coarse: the sweep's)
        if server.access_log is not None or server.counts is not None:  # for the duration
            # (not loop.time(): uvloop's stands still within a turn of the loop)
            self.started_at = perf_counter()
        timeout = server.http_timeout
        app_due = self.app_due = None if timeout is None else now + timeout
        if self.expect_continue or self.body_done:
            # (a client waiting for 100 Continue sends nothing until it is asked)
            self.deadline = app_due
        else:
            body_due = self.body_due = now + server.config.body_timeout
            self.deadline = body_due if app_due is None or body_due < app_due else app_due
        self._start_task()

    def _refuse(self, refusal: Refusal) -> None:
        """The server's own answer in place of the application's, which is never called:
        the refusal's status, reason and headers on the page every refusal has.  Written
        as a response, so the wire goes on as after any other (HTTP/1.1 keeps the
        connection when the whole request was read, and closes it when a body may be on
        its way; HTTP/2 ends the stream)."""
        if self.disconnected or self.state is not START:
            return  # the client went meanwhile (or a graceful stop answered)
        self.state = DONE
        wire = self.wire
        self._answer_refusal(refusal, wire.response_start, wire.response_body,
                             request_field(self.scope))
        self.wire.response_complete()

    # -- deadlines: the application's, and the request body's.  ``deadline`` (what the
    # server's sweep looks at) is never later than the earlier of the two; it may be
    # earlier, and deadline_passed then finds nothing due and sets it again.

    def _set_app_due(self, when: float | None) -> None:
        self.app_due = when
        body = self.body_due
        self.deadline = when if body is None else body if when is None or body < when else when

    def _linger(self) -> None:
        # (ApplicationInstance's, without its calls: this runs for every request)
        task = self.task
        if task is not None and not task.done() and self.cancelled_because is None:
            server = self.server
            due = self.app_due = server.clock + server.config.application_close_timeout
            body = self.body_due
            self.deadline = due if body is None or due < body else body

    def _body_moved(self) -> None:
        """From now, the client has the body timeout to send the next piece of the body
        (time the application takes to read it does not count: see deadline_passed)."""
        if not self.body_done and self.state is not DONE:
            self.body_due = due = self.server.clock + self.server.config.body_timeout
            deadline = self.deadline
            if deadline is None or due < deadline:
                self.deadline = due

    # -- events from the wire protocol

    def body_received(self, data: bytes) -> None:
        if not data:
            return
        server = self.server
        due = server.clock + server.config.body_timeout
        if self.body_due is None:
            deadline = self.deadline
            if deadline is None or due < deadline:
                self.deadline = due
        self.body_due = due
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > self.high_water and not self.reading_paused:
            self.reading_paused = True
            self.wire.pause_reading()
        if self.waiter is not None:
            self._wake()

    def body_finished(self) -> None:
        self.body_done = True
        if self.body_due is not None:
            self.body_due = None
            self.deadline = self.app_due
        if self.waiter is not None:
            self._wake()

    def connection_lost(self) -> None:
        if self.disconnected:
            return
        self.disconnected = True
        self._linger()
        if self.waiter is not None:
            self._wake()
        counts = self.server.counts
        if counts is not None and self.state is not DONE and self.task is not None:
            # its client left before the response ended: counted now, as abandoned
            counts.http(self.scope, ABORTED, perf_counter() - self.started_at)

    # -- the application's side

    async def receive(self) -> dict[str, Any]:
        while True:
            if self.chunks:
                chunks = self.chunks
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self.chunks = []
                self.buffered = 0
                if self.reading_paused:
                    self.reading_paused = False
                    self.wire.resume_reading()
                    self._body_moved()
                more = not self.body_done
                if not more:
                    self.final_delivered = True
                return {"type": "http.request", "body": body, "more_body": more}
            if self.body_done and not self.final_delivered:
                self.final_delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.disconnected or self.state is DONE:
                if self.told_gone:
                    # an application that keeps asking must not hold the loop: each repeat
                    # waits a turn, so that every other connection is served meanwhile
                    await asyncio.sleep(0)
                self.told_gone = True
                return {"type": "http.disconnect"}
            if self.expect_continue:
                self.expect_continue = False
                if self.state is START:
                    self.wire.send_continue()
                    self._body_moved()
            await self._wait()

    async def send(self, message: Mapping[str, Any]) -> None:
        try:
            kind = message["type"]
        except (KeyError, TypeError):
            raise UnexpectedMessage(f"ASGI message without a 'type': {message!r}") from None
        state = self.state
        if state is BODY and kind == "http.response.body":
            body = message.get("body", b"")
            if type(body) is not bytes:
                if not isinstance(body, (bytes, bytearray, memoryview)):
                    raise UnexpectedMessage(
                        f"http.response.body: 'body' must be bytes, got {type(body).__name__}"
                    )
                body = bytes(body)
            more = message.get("more_body", False)
            if self.disconnected:
                raise ClientDisconnected("the client disconnected")
            left = self.length_left
            if left is not None:
                left -= len(body)
                if left < 0 or (left and not more):
                    self._broken_length("more" if left < 0 else "less")
                    return
                self.length_left = left
            self.sent += len(body)
            wire = self.wire
            if more:
                self.body_started = True  # (the head goes out with it)
                wire.response_body(body, True)
                if wire.write_paused:
                    await wire.drain()
                    if self.disconnected:
                        raise ClientDisconnected("the client disconnected")
            elif self.trailers is not None:
                self.state = TRAILERS
                wire.response_body(body, True)
            else:
                self.state = DONE
                wire.response_body(body, False)
                self._finished()
        elif state is START and kind == "http.response.start":
            status = message.get("status")
            if type(status) is not int and isinstance(status, int) and type(status) is not bool:
                status = int(status)  # an IntEnum such as http.HTTPStatus.OK
            if type(status) is not int or not 200 <= status <= 599:
                raise UnexpectedMessage(
                    f"http.response.start: 'status' must be an int from 200 to 599, "
                    f"got {status!r}"
                )
            headers, lengths = check_headers(message.get("headers", ()),
                                             "http.response.start")
            if lengths is not None:
                declared = _LENGTHS.get(lengths) if type(lengths) is bytes else None
                if declared is None:
                    declared = content_length(lengths, "http.response.start")
                if status not in NO_BODY_STATUSES and self.scope["method"] != "HEAD":
                    self.length_left = declared  # (no body is sent for these)
            if self.disconnected:
                raise ClientDisconnected("the client disconnected")
            self.state = BODY
            self.status = status
            if self.app_due is not None:  # it responded in time
                self.app_due = None
                self.deadline = self.body_due
            if message.get("trailers", False):
                self.trailers = []
            self.wire.response_start(status, headers)
        elif state is TRAILERS and kind == "http.response.trailers":
            trailers = self.trailers
            assert trailers is not None  # TRAILERS: the application announced trailers
            trailers.extend(check_headers(message.get("headers", ()),
                                          "http.response.trailers")[0])
            if not message.get("more_trailers", False):
                if self.disconnected:
                    raise ClientDisconnected("the client disconnected")
                self.state = DONE
                self.wire.response_trailers(trailers)
                self._finished()
        elif state is DONE:
            if self.disconnected:
                raise ClientDisconnected("the client disconnected")
            raise UnexpectedMessage(
                f"application sent {kind!r} after the response was complete"
            )
        elif state is START:
            raise UnexpectedMessage(
                f"expected 'http.response.start' first, got {kind!r}"
            )
        elif state is TRAILERS:
            raise UnexpectedMessage(
                f"expected 'http.response.trailers' after the last body, got {kind!r}"
            )
        else:
            raise UnexpectedMessage(
                f"expected 'http.response.body' after the response started, got {kind!r}"
            )

    # -- how the application ended

    def app_failed(self) -> None:
        self._fail()

    def app_returned(self) -> None:
        if self.state is not DONE and not self.disconnected:
            logger.error("Application returned without completing the response to %s",
                         self.describe())
            self._fail()

    def _fail(self, status: int = 500) -> None:
        """Answer for an application that failed: an error page, or a cut connection."""
        if self.state is START:
            self._error_page(status)
        elif self.state in (BODY, TRAILERS):
            self.state = DONE
            self.wire.abort()
            self._finished()

    def _error_page(self, status: int) -> None:
        """The server's own answer, in place of the application's (whose start, if it sent
        one, has not gone out: the wire sends a head with the first body)."""
        self.state = DONE
        self.status = status
        headers, body = error_page(status)
        self.wire.response_start(status, headers)
        self.sent = len(body)
        self.wire.response_body(body, False)
        self._finished()

    def _broken_length(self, which: str) -> None:
        """The application sent more or less body than its Content-Length: a client would
        take what it got for the whole response (or read the rest as the next one), and
        HTTP/2 clients end the whole connection for it.  Before the head went out, a 500 is
        sent instead; after, the response is cut (HTTP/1.1: the connection closed; HTTP/2:
        the stream reset).  The application's next send raises ClientDisconnected."""
        problem = f"{which} body than its Content-Length"
        if not self.body_started:
            logger.error("Application's response to %s cannot be sent (%s); answered 500",
                         self.describe(), problem)
            self._error_page(500)
        else:
            logger.error("Application sent %s on %s; response cut", problem, self.describe())
            self.state = DONE
            self.wire.abort()
            self._finished()
        self.disconnected = True

    def _finished(self) -> None:
        """The response is complete (or abandoned): log it, let the wire move on."""
        server = self.server
        self._linger()
        if self.status in NO_BODY_STATUSES or self.scope["method"] == "HEAD":
            self.sent = 0  # no body went out, whatever the application sent (logged "-")
        if server.access_log is not None:
            server.access_log.http(self)
        counts = server.counts
        if counts is not None:
            # Counts.http written out here for a key already seen: a call less for each
            # request (core/counts.py)
            scope = self.scope
            duration = perf_counter() - self.started_at
            try:
                row = counts.http_requests[scope["http_version"]][scope["method"]][self.status]
            except KeyError:
                counts.http(scope, self.status, duration)
            else:
                row[0 if duration <= FIRST_BOUND else bisect_left(DURATION_BUCKETS,
                                                                  duration)] += 1
                row[-1] += duration
        if self.waiter is not None:
            self._wake()
        self.wire.response_complete()

    def deadline_passed(self) -> None:
        """Called by the server's sweep: the client is late with the request body, or the
        application late to respond, or to return."""
        now = self.server.clock
        body_due = self.body_due
        if body_due is not None and body_due <= now:
            self.body_due = None
            if self.disconnected or self.body_done or self.state is DONE:
                pass
            elif self.reading_paused or self.wire.reading_paused:
                # not the client's doing: we stopped reading (the application is not
                # taking the body, or the client does not take our writes); look again
                self.body_due = now + self.server.config.body_timeout
            else:
                logger.info("Request body for %s stalled for %ss", self.describe(),
                            self.server.config.body_timeout)
                self.wire.body_timed_out()  # 408 (or a reset), and our connection_lost
        app_due = self.app_due
        if app_due is not None and app_due <= now:
            self.app_due = None
            self._app_late()
        self._set_app_due(self.app_due)

    def _app_late(self) -> None:
        task = self.task
        if task is None or task.done():
            return
        if self.state is START and not self.disconnected:
            logger.warning(
                "Application did not respond to %s %s within %ss; answered 503",
                self.scope["method"], self.scope["path"], self.server.http_timeout,
            )
            self.cancelled_because = "http_timeout"
            self._fail(503)
            # its receive() now says http.disconnect: a moment to end on that (Django's
            # handler cancels its own view, and collects its own tasks) before the cancel
            self.app_due = self.server.clock + CANCEL_GRACE
        elif self.cancelled_because == "http_timeout":
            task.cancel()
        else:
            self._kill()


# The HTTP connection scope, for any wire protocol: build_scope(server, http_version, scheme,
# target, headers, client, server_addr, screen, method), connection_scope itself (the
# method makes it an HTTP scope), under the name the wire protocols call it by.
build_scope = connection_scope
