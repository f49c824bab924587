"""WebSocket on an HTTP/1.1 connection: our handshake checks, then autobahn for the framing.

The upgrade request is parsed once, by the HTTP/1.1 parser.  The application decides to
accept or refuse before autobahn sees anything; a refusal is an ordinary HTTP response
written by the HTTP/1.1 connection.  On accept, autobahn receives a canonical handshake
holding only what it acts on (the key, the chosen subprotocol, the usable compression
offers), all already validated, so it can neither split a header differently from the
parser that decided the request nor refuse a request the application has accepted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from ..asgi.websocket import WebSocketStream, build_websocket_scope

logger = logging.getLogger("django_daphne.websocket")

# the request headers the handshake checks (duplicates, ASCII) apply to
_HANDSHAKE_HEADERS = frozenset((
    b"host", b"upgrade", b"connection", b"sec-websocket-key", b"sec-websocket-version",
    b"sec-websocket-protocol", b"sec-websocket-extensions", b"origin",
))


class HandshakeError(Exception):
    """An upgrade request that is not a valid WebSocket opening handshake."""

    def __init__(self, status: int, reason: str, headers: list | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


def check_handshake(head: Any) -> None:
    """RFC 6455 section 4.2.1, checked before the application is called."""
    if head.method != b"GET":
        raise HandshakeError(400, "a WebSocket handshake must use GET")
    if head.http_version != "1.1":
        raise HandshakeError(400, "a WebSocket handshake needs HTTP/1.1")
    if head.has_body:
        raise HandshakeError(400, "a WebSocket handshake must not have a body")
    seen = check_handshake_headers(head.headers)
    try:
        key = base64.b64decode(seen.get(b"sec-websocket-key", b""), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 16:
        raise HandshakeError(400, "missing or invalid Sec-WebSocket-Key")


def check_handshake_headers(headers: list) -> dict[bytes, bytes]:
    """The header rules an opening handshake follows over HTTP/1.1 and HTTP/2 alike: no
    duplicates of the headers it acts on, ASCII only, version 13."""
    seen: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in _HANDSHAKE_HEADERS:
            if name in seen and name not in (b"sec-websocket-protocol",
                                             b"sec-websocket-extensions"):
                raise HandshakeError(400, f"duplicate {name.decode()} header")
            if not value.isascii():
                raise HandshakeError(400, f"non-ASCII {name.decode()} header")
            seen[name] = value
    if seen.get(b"sec-websocket-version") != b"13":
        raise HandshakeError(
            426, "unsupported WebSocket version (only 13 is)",
            [(b"sec-websocket-version", b"13")],
        )
    return seen


def usable_deflate_offers(values: list[bytes]) -> bytes:
    """The permessage-deflate offers autobahn can take, in the client's order, as one
    header value.  RFC 7692 section 5 says to decline an offer with unknown, repeated or
    out-of-range parameters (and the RFC's server_max_window_bits=8, which zlib cannot
    honour); autobahn would instead refuse the whole handshake with a 400, after the
    application accepted it.  Other extensions are not supported and are dropped too."""
    kept = []
    for value in values:
        for offer in value.decode("latin-1").split(","):
            name, *parts = (part.strip() for part in offer.split(";"))
            if name.lower() != "permessage-deflate":
                continue
            params: dict[str, list] = {}
            for part in parts:
                key, equals, param = (p.strip() for p in part.partition("="))
                if len(param) >= 2 and param[0] == param[-1] == '"':
                    param = param[1:-1]
                params.setdefault(key.lower(), []).append(param if equals else True)
            try:
                PerMessageDeflateOffer.parse(params)
            except Exception:  # autobahn raises a bare Exception for a bad offer
                continue
            kept.append(offer.strip())
    return ", ".join(kept).encode("latin-1")


def make_autobahn_factory(config: Any) -> WebSocketServerFactory:
    """One autobahn factory per server, holding the options every connection shares."""
    factory = WebSocketServerFactory(server=config.server_name or None)
    compression = config.websocket_compression

    def accept_compression(offers: list) -> Any:
        if not compression:
            return None
        for offer in offers:
            if isinstance(offer, PerMessageDeflateOffer):
                return PerMessageDeflateOfferAccept(offer)
        return None

    factory.setProtocolOptions(
        # keepalive pings are ours (see WebSocketConnection.deadline_passed): autobahn's timers
        # round sub-second delays to whole seconds, and one server sweep can serve them all
        autoPingInterval=0,
        maxFramePayloadSize=config.websocket_max_frame_size,
        maxMessagePayloadSize=config.websocket_max_message_size,
        openHandshakeTimeout=0,  # the application's accept is timed by the ASGI stream
        closeHandshakeTimeout=1,
        failByDrop=False,  # fail with a close frame that says why (1002, 1007, 1009)
        perMessageCompressionAccept=accept_compression,
        tcpNoDelay=True,
    )
    factory.noisy = False
    return factory


class _Framing(WebSocketServerProtocol):
    """autobahn's protocol, reporting to our WebSocketConnection."""

    owner: WebSocketConnection
    peer_close_code: int | None = None  # the code of the peer's close frame

    def onConnect(self, request: Any) -> tuple:
        # the application's headers are not autobahn's to write: it would encode them as
        # UTF-8 from str (a Latin-1 byte would become two) and group repeated names;
        # sendData puts them in the 101 as given
        return self.owner.subprotocol, {}

    def onOpen(self) -> None:
        self.owner.opened()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N803 - autobahn's
        self.owner.active = True
        self.owner.stream.message_received(payload, isBinary)

    def onPong(self, payload: bytes) -> None:
        self.owner.pong_received(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N803
        self.owner.stream.closed(code, reason)

    def onCloseFrame(self, code: int | None, reasonRaw: bytes | None) -> bool | None:  # noqa: N802,N803
        self.peer_close_code = code
        # autobahn's list of close codes a peer may send stops at 1013 and fails the
        # connection for 1014 (Bad Gateway, registered with IANA in 2016, sent by proxies):
        # taken as a normal close, then reported with its own code
        if code != 1014:
            return super().onCloseFrame(code, reasonRaw)
        failed = super().onCloseFrame(1000, reasonRaw)
        self.remoteCloseCode = 1014
        return failed

    def sendCloseFrame(self, code: int | None = None, reasonUtf8: bytes | None = None,  # noqa: N802,N803
                       isReply: bool = False) -> None:  # noqa: N803
        # autobahn answers a peer's close with 1000 (or echoes its reason too): the answer
        # echoes the peer's code (RFC 6455 5.5.1), a private 3000-4999 code included
        if isReply and self.peer_close_code is not None:
            code, reasonUtf8 = self.peer_close_code, None
        super().sendCloseFrame(code, reasonUtf8, isReply)

    # autobahn's own dataReceived and sendData format the arguments of a debug log line
    # (qualified function names) on every read and every frame, even with that log off:
    # about a sixth of the server's time in a WebSocket echo.  The same work, without it.

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self._dataReceived(data)

    def sendData(self, data: bytes, sync: bool = False,  # noqa: N802 - autobahn's name
                 chopsize: int | None = None) -> None:
        if self.state == self.STATE_CONNECTING and data.startswith(b"HTTP/1.1 101 "):
            # the handshake's answer, ending in a blank line: the application's headers
            # go in before it, byte for byte and in order
            data = data[:-2] + b"".join(
                name + b": " + value + b"\r\n" for name, value in self.owner.accept_headers
            ) + b"\r\n"
        if sync or chopsize or self.send_queue:
            super().sendData(data, sync, chopsize)
            return
        self.transport.write(data)
        state = self.state
        if state == self.STATE_OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
        elif state == self.STATE_CONNECTING:
            self.trafficStats.preopenOutgoingOctetsWireLevel += len(data)
        if self.logOctets:
            self.logTxOctets(data, False)

    def onMessageEnd(self) -> None:  # noqa: N802 - autobahn's name
        # autobahn's also fires a "message" event to observers (a Deferred and callbacks per
        # message) that nothing here registers
        if not self.failedByMe:
            payload = b"".join(self.message_data)
            if self.trackedTimings:
                self.trackedTimings.track("onMessage")
            self._onMessage(payload, self.message_is_binary)
        self.message_data = None

    # The size limits are on the application's data, which for a compressed message is
    # the inflated size.  autobahn adds each frame's compressed length to the message's
    # count when the frame begins, and takes it back out only as the frame inflates, in
    # reads: a compressed message that fits was refused with 1009 when its compressed
    # frames (larger than their content, for data that does not compress) or an empty
    # closing fragment took the count past the limit before inflating.  Here the count is
    # the inflated size so far, plus the part of the frame being inflated, which is what
    # autobahn's own check after inflating expects.  A compressed frame may be larger on
    # the wire than the frame limit by what deflate adds to data it cannot compress (5
    # bytes a block, 4% at worst with zlib's smallest blocks); the message limit still
    # holds what it inflates to.

    def onMessageFrameBegin(self, length: int) -> None:  # noqa: N802 - autobahn's name
        if not self._isMessageCompressed:
            super().onMessageFrameBegin(length)
            return
        message_limit, frame_limit = self.maxMessagePayloadSize, self.maxFramePayloadSize
        self.maxMessagePayloadSize = 0
        if frame_limit > 0:
            self.maxFramePayloadSize = frame_limit + frame_limit // 16 + 64
        try:
            super().onMessageFrameBegin(length)
        finally:
            self.maxMessagePayloadSize, self.maxFramePayloadSize = message_limit, frame_limit
        self.message_data_total_length -= length

    def onFrameData(self, payload: bytes) -> bool | None:  # noqa: N802 - autobahn's name
        if self.current_frame.opcode <= 7 and self._isMessageCompressed:
            self.message_data_total_length += len(payload)
        return super().onFrameData(payload)

    def onFrameBegin(self) -> None:
        pmce = self._perMessageCompress
        if pmce is not None and not self.inside_message:
            inflater = getattr(pmce, "_decompressor", None)
            if inflater is not None and inflater.eof:
                # the last message ended its DEFLATE stream with a BFINAL block (RFC 7692
                # 7.2.3.3): zlib would silently inflate the next one to nothing
                pmce._decompressor = None
        super().onFrameBegin()

    def _closeConnection(self, abort: bool = False) -> None:
        # The connection closes itself (autobahn's transport.loseConnection would leave a
        # TLS connection open: see protocols.transport).  autobahn aborts (RST) as soon as a
        # close handshake completes; when it failed the connection (1002, 1007) in the same
        # read, that throws away its close frame unsent.  A completed handshake closes
        # gracefully; a dropped peer is still aborted.
        conn = self.owner.conn
        if abort and not self.wasClean:
            conn.abort_now()
        else:
            conn.close()


class _FramingTransport:
    """The transport autobahn writes to on plain TCP and UNIX: the connection's own
    ``write`` (straight to the socket while nothing is queued, where Twisted's
    transport.write would register a writer and wait a loop turn for every frame), and the
    real transport for everything else."""

    __slots__ = ("write", "real")

    def __init__(self, conn: Any) -> None:
        self.write = conn.write
        self.real = conn.transport

    def writeSequence(self, data: list) -> None:  # noqa: N802 - Twisted's name
        self.write(b"".join(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class WebSocketConnection:
    """The wire side of one WebSocket, the handler of a Connection, or living on an
    HTTP/2 stream through the same interface (:class:`~.http2_websocket.H2Tunnel`)."""

    def __init__(self, conn: Any, head: Any, opening: Any = None, pending: bytes = b"") -> None:
        self.conn = conn
        # what writes the HTTP answer of a refusal: the HTTP/1.1 handler, or the stream
        self.opening = opening if opening is not None else conn
        self.head = head
        self.pending = pending  # bytes that followed the head, handed to autobahn on accept
        self.framing: _Framing | None = None
        self.subprotocol: str | None = None
        self.accept_headers: list = []  # the application's, in order, for the 101 or 200
        self.active = False  # a message arrived since the last keepalive check
        self.ping_payload: bytes | None = None  # the ping awaiting its pong
        server = conn.server
        scope = build_websocket_scope(
            server, head.http_version, "wss" if conn.scheme == "https" else "ws",
            head.target, head.headers, conn.client, conn.server_addr,
        )
        self.stream = WebSocketStream(server, self, scope)

    # -- keepalive, driven by the server's sweep through the connection's deadline

    def _next_keepalive(self) -> None:
        conn = self.conn
        if not conn.closed:  # a closing connection's deadline is its cut-off
            interval = conn.server.config.ping_interval
            conn.deadline = conn.server.clock + interval if interval else None

    def opened(self) -> None:
        self._next_keepalive()
        self.stream.opened()

    def writing_resumed(self) -> None:
        """Senders waiting for room are woken by the connection itself."""

    def shutdown(self) -> None:
        self.stream.shutdown()

    def deadline_passed(self) -> None:
        """The connection's deadline passed: ping an idle peer, or drop a silent one."""
        framing = self.framing
        if framing is None or framing.state != framing.STATE_OPEN:
            return
        server = self.conn.server
        if self.ping_payload is not None:
            logger.info("WebSocket peer %s did not answer a ping within %ss; dropping it",
                        self.conn.client, server.config.ping_timeout)
            framing.wasClean = False
            framing.wasNotCleanReason = "WebSocket ping timeout"
            framing.dropConnection(abort=True)
            return
        if self.active:
            self.active = False
            self._next_keepalive()
            return
        payload = os.urandom(8)
        framing.sendPing(payload)
        if server.config.ping_timeout:
            self.ping_payload = payload
            self.conn.deadline = server.clock + server.config.ping_timeout
        else:  # pings keep the connection alive through proxies, but no answer is required
            self._next_keepalive()

    def pong_received(self, payload: bytes) -> None:
        if self.ping_payload is not None and payload == self.ping_payload:
            self.ping_payload = None
            self.active = False
            self._next_keepalive()

    # -- bytes from the connection

    def data_received(self, data: bytes) -> None:
        if self.framing is not None:
            self.framing.dataReceived(data)
        elif self.stream.state != 3:
            self.pending += data
            if len(self.pending) > 65536:  # a client may not send frames before the 101
                self.conn.close()

    def connection_lost(self, reason: Any = None) -> None:
        if self.framing is not None:
            # a turn later: the connection closes as soon as autobahn asks, from inside
            # autobahn's own close handling, which must finish first
            self.conn.server.loop.call_soon(
                self.framing.connectionLost, reason or Failure(ConnectionDone()))
        else:
            self.stream.closed(1006, "")

    # -- the interface WebSocketStream calls

    def accept(self, subprotocol: str | None, headers: list) -> None:
        self.subprotocol = subprotocol
        self.accept_headers = headers
        framing = _Framing()
        framing.factory = self.conn.server.autobahn_factory
        framing.owner = self
        self.framing = framing
        conn = self.conn
        # plain TCP and UNIX: frames straight to the socket (TLS and HTTP/2 streams have
        # their own transports, which autobahn also inspects for TLS details)
        framing.makeConnection(_FramingTransport(conn) if getattr(conn, "sock", None)
                               is not None else conn.transport)
        headers = self.head.headers
        lines = [b"GET / HTTP/1.1", b"Host: localhost", b"Upgrade: websocket",
                 b"Connection: Upgrade", b"Sec-WebSocket-Version: 13"]
        # over HTTP/2 (RFC 8441) there is no key: autobahn gets one of its own, and its
        # answer (Sec-WebSocket-Accept) is dropped with the rest of its HTTP/1.1 response
        key = next((v for n, v in headers if n == b"sec-websocket-key"), None)
        lines.append(b"Sec-WebSocket-Key: " + (key or base64.b64encode(os.urandom(16))))
        if subprotocol is not None:
            lines.append(b"Sec-WebSocket-Protocol: " + subprotocol.encode("latin-1"))
        if self.conn.server.config.websocket_compression:
            offers = usable_deflate_offers(
                [v for n, v in headers if n == b"sec-websocket-extensions"])
            if offers:
                lines.append(b"Sec-WebSocket-Extensions: " + offers)
        pending, self.pending = self.pending, b""
        framing.dataReceived(b"\r\n".join(lines) + b"\r\n\r\n" + pending)

    def deny(self, status: int, headers: list) -> None:
        self.opening.begin_denial(status, headers)

    def deny_body(self, body: bytes, more: bool) -> None:
        self.opening.response_body(body, more)
        if not more:
            self.opening.response_complete()

    def send_message(self, data: bytes, binary: bool) -> None:
        framing = self.framing
        if framing is not None and framing.state == framing.STATE_OPEN:
            limit = framing.maxMessagePayloadSize
            if not limit or len(data) <= limit:
                framing.sendMessage(data, binary)
                return
            # the size limits are on what the client sends; autobahn would hold the
            # application's messages to them too (Daphne and Uvicorn do not)
            framing.maxMessagePayloadSize = 0
            try:
                framing.sendMessage(data, binary)
            finally:
                framing.maxMessagePayloadSize = limit

    def close(self, code: int, reason: str) -> None:
        framing = self.framing
        if framing is None:
            self.conn.close()
        elif framing.state == framing.STATE_OPEN:
            # sendCloseFrame, not sendClose: the server may also send 1001 and 1011
            framing.sendCloseFrame(code, reason.encode("utf-8") or None, isReply=False)

    def abort(self) -> None:
        self.conn.close()

    def pause_reading(self) -> None:
        self.conn.pause_reading()

    def resume_reading(self) -> None:
        self.conn.resume_reading()

    @property
    def write_paused(self) -> bool:
        framing = self.framing
        return self.conn.write_paused or (
            framing is not None and framing.state != framing.STATE_OPEN)

    async def drain(self) -> None:
        framing = self.framing
        if framing is not None and framing.state != framing.STATE_OPEN:
            # closing: what is sent now is dropped, and the close reaches the application
            # after a turn of the loop; an application that only sends must give it one
            await asyncio.sleep(0)
            return
        await self.conn.drain()
