"""WebSocket: the opening handshake's rules, and the wire of one WebSocket, over an
HTTP/1.1 connection or an HTTP/2 stream.

The upgrade request is parsed by the protocol that carried it (HTTP/1.1's parser, or the
HEADERS of an extended CONNECT, RFC 8441) and its handshake checked here before the
application is called.  The application decides: a refusal is an ordinary HTTP response,
and an accept an answer (101, or ``:status 200``), both written by that protocol, its
*opening*, from what is negotiated here (subprotocol, permessage-deflate); from then on
the framing (:mod:`.websocket_framing`, autobahn) reads and writes the bytes of the
*link*: the connection, or the HTTP/2 stream.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
from typing import TYPE_CHECKING

from ..asgi.websocket import ABNORMAL_CLOSURE, CLOSED, WebSocketStream, build_websocket_scope
from ..core.errors import Refusal
from .interfaces import HandshakeHead, Link, Opening
from .timers import Timer
from .websocket_framing import Framing, accept_key, factory_for, negotiate_deflate

if TYPE_CHECKING:
    from ..asgi.wire import RequestHead

logger = logging.getLogger("django_daphne.websocket")

# the request headers the handshake checks (duplicates, ASCII) apply to
_HANDSHAKE_HEADERS = frozenset((
    b"host", b"upgrade", b"connection", b"sec-websocket-key", b"sec-websocket-version",
    b"sec-websocket-protocol", b"sec-websocket-extensions", b"origin",
))
# what a client may send before the answer to its handshake (it may not send frames yet)
_EARLY_BYTES = 65536


def check_upgrade(head: RequestHead) -> bytes:
    """RFC 6455 4.2.1 over HTTP/1.1, checked before the application is called: the
    client's Sec-WebSocket-Key, or a Refusal."""
    if head.method != b"GET":
        raise Refusal(400, "a WebSocket handshake must use GET")
    if head.http_version != "1.1":
        raise Refusal(400, "a WebSocket handshake needs HTTP/1.1")
    if head.has_body:
        raise Refusal(400, "a WebSocket handshake must not have a body")
    key = check_handshake_headers(head.headers).get(b"sec-websocket-key", b"")
    try:
        decoded = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != 16:
        raise Refusal(400, "missing or invalid Sec-WebSocket-Key")
    return key


def check_handshake_headers(headers: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The header rules an opening handshake follows over HTTP/1.1 and HTTP/2 alike: no
    duplicates of the headers it acts on, ASCII only, version 13."""
    seen: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in _HANDSHAKE_HEADERS:
            if name in seen and name not in (b"sec-websocket-protocol",
                                             b"sec-websocket-extensions"):
                raise Refusal(400, f"duplicate {name.decode()} header")
            if not value.isascii():
                raise Refusal(400, f"non-ASCII {name.decode()} header")
            seen[name] = value
    if seen.get(b"sec-websocket-version") != b"13":
        raise Refusal(426, "unsupported WebSocket version (only 13 is)",
                      [(b"sec-websocket-version", b"13")])
    return seen


class WebSocketConnection:
    """One WebSocket: the wire of its ASGI stream, and (over HTTP/1.1) the handler of its
    connection.  ``key``: the client's Sec-WebSocket-Key (None over HTTP/2, which has
    none)."""

    def __init__(self, link: Link, head: HandshakeHead, opening: Opening,
                 key: bytes | None) -> None:
        self.conn = link
        self.opening = opening
        self.head = head
        self.key = key
        self.pending = b""  # what the client sent before the answer, framed once open
        self.framing: Framing | None = None
        self.framing_closing = False  # inside autobahn's request to end the connection
        self.active = False  # a message arrived since the last keepalive check
        self.ping_payload: bytes | None = None  # the ping awaiting its pong
        server = link.server
        scope = build_websocket_scope(
            server, head.http_version, "wss" if link.scheme == "https" else "ws",
            head.target, head.headers, link.client, link.server_addr, link.tls,
        )
        self.stream = WebSocketStream(server, self, scope)

    # -- keepalive: Timer.PING and Timer.PONG on the link, fired by the server's sweep

    def _arm(self, timer: Timer, seconds: float) -> None:
        """Where the WebSocket's timers are armed (0 seconds: none)."""
        conn = self.conn
        conn.timer = timer if seconds else None
        conn.deadline = conn.server.clock + seconds if seconds else None

    def _next_keepalive(self) -> None:
        if not self.conn.closed:  # a closing connection's timer is its cut-off
            self._arm(Timer.PING, self.conn.server.config.ping_interval)

    def deadline_passed(self) -> None:
        """Timer.PING passed: ping an idle peer; Timer.PONG: drop a silent one."""
        framing = self.framing
        if framing is None or not framing.is_open:
            return
        server = self.conn.server
        if self.conn.timer is Timer.PONG:
            logger.info("WebSocket peer %s did not answer a ping within %ss; dropping it",
                        self.conn.client, server.config.ping_timeout)
            framing.drop("WebSocket ping timeout")
            return
        if self.active:
            self.active = False
            self._next_keepalive()
            return
        payload = os.urandom(8)
        framing.ping(payload)
        if server.config.ping_timeout:
            self.ping_payload = payload
            self._arm(Timer.PONG, server.config.ping_timeout)
        else:  # pings keep the connection alive through proxies, but no answer is required
            self._next_keepalive()

    # -- the link's events (Handler)

    def data_received(self, data: bytes) -> None:
        if self.framing is not None:
            self.framing.data_received(data)
        elif self.stream.state != CLOSED:
            self.pending += data
            if len(self.pending) > _EARLY_BYTES:
                self.conn.close()

    def connection_lost(self) -> None:
        framing = self.framing
        if framing is None:
            self.stream.closed(ABNORMAL_CLOSURE, "")
        elif self.framing_closing:
            # autobahn asked for the end, and its own close handling must finish before it
            # hears that the connection is gone: a turn later
            self.conn.server.loop.call_soon(framing.connection_lost)
        else:
            framing.connection_lost()

    def writing_resumed(self) -> None:
        """Senders waiting for room are woken by the link itself."""

    def shutdown(self) -> None:
        self.stream.shutdown()

    # -- the framing's events (FramingEvents)

    def message_received(self, message: bytes | str) -> None:
        self.active = True
        self.stream.message_received(message)

    def pong_received(self, payload: bytes) -> None:
        if self.ping_payload is not None and payload == self.ping_payload:
            self.ping_payload = None
            self.active = False
            self._next_keepalive()

    def closed(self, code: int | None, reason: str | None) -> None:
        self.stream.closed(code, reason)

    def end_connection(self, abort: bool) -> None:
        self.framing_closing = True
        try:
            if abort:
                self.conn.abort_now()
            else:
                self.conn.close()
        finally:
            self.framing_closing = False

    # -- the wire the ASGI stream drives (WebSocketWire)

    def accept(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> None:
        conn = self.conn
        server = conn.server
        negotiated = []
        if self.key is not None:
            negotiated.append((b"Sec-WebSocket-Accept", accept_key(self.key)))
        if subprotocol is not None:
            negotiated.append((b"Sec-WebSocket-Protocol", subprotocol.encode("latin-1")))
        deflate = None
        if server.config.websocket_compression:
            deflate, extension = negotiate_deflate(
                [v for n, v in self.head.headers if n == b"sec-websocket-extensions"])
            if extension is not None:
                negotiated.append((b"Sec-WebSocket-Extensions", extension))
        self.opening.websocket_accepted(negotiated, headers)
        if conn.closed:  # the answer could not go out
            return
        self.framing = Framing(factory_for(server), self, conn.write, str(conn.client),
                               subprotocol, deflate)
        self._next_keepalive()
        self.stream.opened()
        pending, self.pending = self.pending, b""
        if pending:
            self.framing.data_received(pending)

    def deny(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.opening.begin_denial(status, headers)

    def deny_body(self, body: bytes, more: bool) -> None:
        self.opening.response_body(body, more)
        if not more:
            self.opening.response_complete()

    def send_message(self, data: bytes, binary: bool) -> None:
        if self.framing is not None:
            self.framing.send_message(data, binary)

    def close(self, code: int, reason: str) -> None:
        if self.framing is None:
            self.conn.close()
        else:
            self.framing.close(code, reason)

    def abort(self) -> None:
        self.conn.close()

    def pause_reading(self) -> None:
        self.conn.pause_reading()

    def resume_reading(self) -> None:
        self.conn.resume_reading()

    @property
    def write_paused(self) -> bool:
        framing = self.framing
        return self.conn.write_paused or (framing is not None and not framing.is_open)

    async def drain(self) -> None:
        framing = self.framing
        if framing is not None and not framing.is_open:
            # closing: what is sent now is dropped, and the close reaches the application
            # after a turn of the loop; an application that only sends must give it one
            await asyncio.sleep(0)
            return
        await self.conn.drain()
