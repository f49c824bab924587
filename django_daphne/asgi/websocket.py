"""The ASGI WebSocket protocol, written once for every wire protocol.

The wire side (``protocols/websocket.py`` over HTTP/1.1) creates one
:class:`WebSocketStream` per upgrade request and calls ``message_received``, ``opened`` and
``closed``.  The stream runs the application, checks every message it sends, and drives the
wire through ``accept(subprotocol, headers)``, ``deny(status, headers)`` +
``deny_body(body, more)``, ``send_message(data, binary)``, ``close(code, reason)``,
``pause_reading``/``resume_reading`` and ``write_paused``/``drain``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..core.counts import ABORTED
from ..core.errors import ClientDisconnected, Refusal, UnexpectedMessage
from .http import check_headers
from .instance import ApplicationInstance
from .scope import connection_scope

if TYPE_CHECKING:
    from ..core.state import ServerState
    from .wire import WebSocketWire

logger = logging.getLogger("django_daphne.websocket")

# Stop reading the socket once this many received messages wait for the application.
QUEUE_HIGH_WATER = 64



class SocketState(enum.Enum):
    """Where a WebSocket is, from the application's side."""

    CONNECTING = "connecting"  # the handshake waits for websocket.accept (or a refusal)
    OPEN = "open"
    DENYING = "denying"  # refusing with its own HTTP response, whose body is still to come
    CLOSED = "closed"


CONNECTING, OPEN, DENYING, CLOSED = SocketState

# The close codes the server itself gives or reports (RFC 6455 7.4.1, IANA's registry)
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001  # the server stops, or the connection's lifetime is over
NO_STATUS = 1005  # the peer's close frame had no code (never sent: reported to the app)
ABNORMAL_CLOSURE = 1006  # the connection dropped without a close frame (likewise)
INTERNAL_ERROR = 1011  # the application raised
BAD_GATEWAY = 1014  # sent by proxies

# What an endpoint may put in a close frame (RFC 6455 7.4 and IANA's registry): not 1004-1006
# or 1015, which are reserved or mean "no frame"; 1008, the policy violation that Starlette's
# WebSocketException sends, is one of them
_SENDABLE_CLOSE_CODES = frozenset((*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)))

# Response headers the opening handshake itself decides: given in websocket.accept they would
# repeat or contradict the server's own (an extension or subprotocol the client did not
# offer, two Sec-WebSocket-Accept), and the client would fail the connection.  ASGI says
# to give the subprotocol as 'subprotocol', never as a header.
_HANDSHAKE_OWNED = frozenset((
    b"sec-websocket-accept", b"sec-websocket-protocol", b"sec-websocket-extensions",
    b"upgrade", b"connection", b"content-length", b"transfer-encoding",
))


def build_websocket_scope(
    server: ServerState,
    http_version: str,
    scheme: str,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    client: list[Any] | None,
    server_addr: list[Any] | None,
    tls: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The WebSocket connection scope; raises Refusal for an unusable target."""
    # as for HTTP, and as Daphne does for WebSockets: no header names with an underscore,
    # and Daphne-Root-Path sets root_path
    scope = connection_scope(server, http_version, scheme, target, headers,
                             client, server_addr, tls=tls)
    subprotocols: list[str] = []
    for name, value in scope["headers"]:
        if name == b"sec-websocket-protocol":
            subprotocols.extend(
                p.strip() for p in value.decode("latin-1").split(",") if p.strip()
            )
    scope["subprotocols"] = subprotocols
    scope.setdefault("extensions", {})["websocket.http.response"] = {}
    return scope


class WebSocketStream(ApplicationInstance):
    """One WebSocket connection and the application instance serving it."""

    __slots__ = ("wire", "state", "inbox", "reading_paused", "close_code", "was_opened",
                 "told_gone")

    def __init__(self, server: ServerState, wire: WebSocketWire, scope: dict[str, Any]) -> None:
        ApplicationInstance.__init__(self, server, scope)
        self.wire = wire
        self.state = CONNECTING
        self.inbox: deque[dict[str, Any]] = deque([{"type": "websocket.connect"}])
        self.told_gone = False  # receive() has said websocket.disconnect
        self.reading_paused = False
        self.close_code: int | None = None
        self.was_opened = False

    def describe(self) -> str:
        return f"WebSocket {self.scope['path']}"

    def start(self) -> None:
        """Run the application for this handshake (or, at the concurrency limit, refuse it
        without calling the application)."""
        server = self.server
        limit = server.limit_concurrency
        if limit is not None and len(server.streams) >= limit:
            server.loop.call_soon(self._refuse, server.busy)  # (on the next turn, as HTTP)
            return
        timeout = server.config.websocket_connect_timeout
        if timeout >= 0:
            self.deadline = server.clock + timeout
        self._log("HANDSHAKING")
        self._start_task()

    def _refuse(self, refusal: Refusal) -> None:
        """Refuse the handshake with the server's own HTTP answer (the refusal's status,
        reason and headers, on the page every refusal has); the application is never
        called."""
        if self.disconnected or self.state != CONNECTING:
            return  # the client went meanwhile (or a graceful stop answered)
        self.state = CLOSED
        self._answer_refusal(refusal, self.wire.deny, self.wire.deny_body,
                             "WSREJECT " + self.scope["raw_path"].decode("latin-1"))

    def _log(self, action: str) -> None:
        if self.server.access_log is not None:
            self.server.access_log.websocket(self.scope, action)

    # -- events from the wire

    def opened(self) -> None:
        self.was_opened = True
        self._log("CONNECT")
        timeout = self.server.config.websocket_timeout
        self.deadline = self.server.clock + timeout if timeout >= 0 else None

    def message_received(self, data: bytes | str) -> None:
        """A message from the peer: bytes for a binary one, str for a text one."""
        message: dict[str, Any]
        if type(data) is str:
            message = {"type": "websocket.receive", "bytes": None, "text": data}
        else:
            message = {"type": "websocket.receive", "bytes": data, "text": None}
        self.inbox.append(message)
        if len(self.inbox) > QUEUE_HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            self.wire.pause_reading()
        if self.waiter is not None:
            self._wake()

    def closed(self, code: int | None, reason: str | None) -> None:
        """The connection is gone: a close handshake, a drop, or a failed handshake."""
        if self.disconnected:
            return
        self.disconnected = True
        self.state = CLOSED
        self.close_code = code or NO_STATUS
        counts = self.server.counts
        if counts is not None and self.was_opened:
            counts.websocket_closed(self.close_code)
        self.inbox.append({"type": "websocket.disconnect", "code": code or NO_STATUS,
                           "reason": reason or ""})
        if self.was_opened:
            self._log("DISCONNECT")
        self._linger()
        if self.waiter is not None:
            self._wake()

    # -- the application's side

    async def receive(self) -> dict[str, Any]:
        while not self.inbox:
            await self._wait()
        message = self.inbox.popleft()
        if message["type"] == "websocket.disconnect":
            self.inbox.append(message)  # every later receive() says the same
            if self.told_gone:
                # an application that keeps asking must not hold the loop: each repeat
                # waits a turn, so that every other connection is served meanwhile
                await asyncio.sleep(0)
            self.told_gone = True
        elif self.reading_paused and len(self.inbox) <= QUEUE_HIGH_WATER // 2:
            self.reading_paused = False
            self.wire.resume_reading()
        return message

    async def send(self, message: Mapping[str, Any]) -> None:
        try:
            kind = message["type"]
        except (KeyError, TypeError):
            raise UnexpectedMessage(f"ASGI message without a 'type': {message!r}") from None
        state = self.state
        if state == OPEN and kind == "websocket.send":
            data = message.get("bytes")
            text = message.get("text")
            if (data is None) == (text is None):
                raise UnexpectedMessage(
                    "websocket.send needs exactly one of 'bytes' and 'text'"
                )
            if data is not None:
                if not isinstance(data, (bytes, bytearray)):
                    raise UnexpectedMessage("websocket.send: 'bytes' must be bytes")
                self.wire.send_message(bytes(data), True)
            else:
                if not isinstance(text, str):
                    raise UnexpectedMessage("websocket.send: 'text' must be a str")
                self.wire.send_message(text.encode("utf-8"), False)
            if self.wire.write_paused:
                await self.wire.drain()
            return
        if state == CLOSED and self.disconnected:
            raise ClientDisconnected("the WebSocket is closed")
        if kind == "websocket.close":
            code = message.get("code")
            if code is None:  # missing, or None as Daphne takes it: a normal close
                code = NORMAL_CLOSURE
            reason = message.get("reason") or ""
            if state == CONNECTING:
                self.state = CLOSED
                self._deny_plain(403)
                return
            if state != OPEN:
                raise UnexpectedMessage("websocket.close while the socket is not open")
            if type(code) is not int or code not in _SENDABLE_CLOSE_CODES:
                raise UnexpectedMessage(
                    "websocket.close: 'code' must be 1000-1003, 1007-1014 or 3000-4999 "
                    f"(RFC 6455 7.4), got {code!r}"
                )
            if not isinstance(reason, str) or len(reason.encode("utf-8")) > 123:
                raise UnexpectedMessage(
                    "websocket.close: 'reason' must be a str of at most 123 UTF-8 bytes"
                )
            self.state = CLOSED
            self.wire.close(code, reason)
            return
        if state == CONNECTING and kind == "websocket.accept":
            subprotocol = message.get("subprotocol")
            if subprotocol is not None and subprotocol not in self.scope["subprotocols"]:
                raise UnexpectedMessage(
                    f"websocket.accept: subprotocol {subprotocol!r} was not offered by the "
                    f"client (offered: {self.scope['subprotocols']})"
                )
            headers = check_headers(message.get("headers", ()), "websocket.accept")[0]
            if any(name.lower() in _HANDSHAKE_OWNED for name, _ in headers):
                headers = self._drop_handshake_headers(headers)
            self.state = OPEN
            self.deadline = None
            if self.server.counts is not None:
                self.server.counts.websocket(self.scope, 101)
            self.wire.accept(subprotocol, headers)
            return
        if state == CONNECTING and kind == "websocket.http.response.start":
            status = message.get("status")
            if type(status) is not int or not 200 <= status <= 599:
                # 1xx is no final answer: the client would wait, or take what follows as
                # the handshake's
                raise UnexpectedMessage(
                    f"websocket.http.response.start: 'status' must be a final HTTP status "
                    f"(200-599), got {status!r}"
                )
            headers = check_headers(message.get("headers", ()),
                                     "websocket.http.response.start")[0]
            self.state = DENYING
            self.status = status
            self.deadline = None
            if self.server.counts is not None:
                self.server.counts.websocket(self.scope, status)
            self.wire.deny(status, headers)
            return
        if state == DENYING and kind == "websocket.http.response.body":
            body = message.get("body", b"")
            if not isinstance(body, (bytes, bytearray)):
                raise UnexpectedMessage("websocket.http.response.body: 'body' must be bytes")
            more = bool(message.get("more_body", False))
            self.sent += len(body)
            if not more:
                self.state = CLOSED
                self._log("REJECT")
            self.wire.deny_body(bytes(body), more)
            return
        expected = {
            CONNECTING: "'websocket.accept', 'websocket.close' or "
                        "'websocket.http.response.start'",
            OPEN: "'websocket.send' or 'websocket.close'",
            DENYING: "'websocket.http.response.body'",
            CLOSED: "nothing (the socket is closed)",
        }[state]
        raise UnexpectedMessage(f"expected {expected}, got {kind!r}")

    def _drop_handshake_headers(self, headers: list[tuple[bytes, bytes]]
                                ) -> list[tuple[bytes, bytes]]:
        kept = []
        for name, value in headers:
            if name.lower() in _HANDSHAKE_OWNED:
                logger.warning(
                    "websocket.accept: dropped the %s header for %s: the server writes it "
                    "from the handshake%s", name.decode("ascii").lower(), self.scope["path"],
                    " (give the subprotocol as 'subprotocol')"
                    if name.lower() == b"sec-websocket-protocol" else "",
                )
            else:
                kept.append((name, value))
        return kept

    def _deny_plain(self, status: int) -> None:
        self.status = status
        if self.server.counts is not None:
            self.server.counts.websocket(self.scope, status)
        self._log("REJECT")
        body = b"WebSocket connection refused\n" if status == 403 else b"Server error\n"
        self.wire.deny(status, [(b"content-type", b"text/plain; charset=utf-8")])
        self.wire.deny_body(body, False)

    # -- how the application ended

    def app_failed(self) -> None:
        self._end(INTERNAL_ERROR)

    def app_returned(self) -> None:
        self._end(NORMAL_CLOSURE)

    def _end(self, code: int) -> None:
        """The application is done: close or refuse whatever it left open."""
        state = self.state
        if state == CONNECTING:
            self.state = CLOSED
            self._deny_plain(403 if code == NORMAL_CLOSURE else 500)
        elif state == OPEN:
            self.state = CLOSED
            self.wire.close(code, "")
        elif state == DENYING:
            self.state = CLOSED
            self.wire.abort()

    def deadline_passed(self) -> None:
        """The connect timeout, the connection's lifetime, or the close timeout passed."""
        self.deadline = None
        if self.disconnected:
            if self.task is not None and not self.task.done():
                self._kill()
            return
        if self.state == CONNECTING:
            logger.warning("WebSocket application for %s did not accept within %ss",
                           self.scope["path"], self.server.config.websocket_connect_timeout)
            self.state = CLOSED
            self._log("REJECT")
            if self.server.counts is not None:
                self.server.counts.websocket(self.scope, ABORTED)
            self.wire.abort()
        elif self.state == OPEN:
            self.state = CLOSED
            self.wire.close(GOING_AWAY, "connection lifetime exceeded")

    def shutdown(self) -> None:
        """Graceful server stop: going away."""
        if self.state == OPEN:
            self.state = CLOSED
            self.wire.close(GOING_AWAY, "server shutting down")
        elif self.state == CONNECTING:
            self.state = CLOSED
            self._deny_plain(503)
