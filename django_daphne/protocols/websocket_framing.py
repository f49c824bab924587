"""autobahn's WebSocket framing and nothing else: bytes in, messages and close events out,
frames out.

autobahn parses and builds frames, masks, checks UTF-8 and inflates and deflates
permessage-deflate (RFC 6455, RFC 7692): that is what it is used for.  The opening
handshake is not autobahn's: the wire protocol that carried the upgrade writes its own
answer (HTTP/1.1's 101, HTTP/2's ``:status 200``) from ``websocket.accept``, with what
:func:`negotiate_deflate` chose; :class:`Framing` then starts autobahn's protocol in its
OPEN state, as if autobahn had done that handshake itself.

The common case goes beside autobahn: on a WebSocket without compression, a read of
whole, unfragmented, masked text or binary frames within the size limits, arriving while
autobahn holds nothing, is unmasked and delivered here, and an application's message is
framed here (a header and the payload); anything else (control frames, fragments, a frame
cut by the read, compression, anything autobahn would refuse) goes to autobahn, in order,
from the first frame the lean path does not take.  Each message through autobahn costs
about fifteen calls and a cffi masking object; the lean path, a few operations.

Every place that reaches into autobahn is in this module, each with its reason; written
against autobahn 23.1 to 26.11 (``tests/protocols/test_ws_conformance.py`` walks the Autobahn
test suite's cases over it; ``tests/protocols/test_websocket_framing.py`` holds the lean path to
autobahn's answers, byte for byte).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import txaio
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import (
    PerMessageDeflate,
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from autobahn.websocket.xormasker import create_xor_masker  # type: ignore[attr-defined]
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from ..asgi.websocket import BAD_GATEWAY, NORMAL_CLOSURE
from ..core.config import Config

if TYPE_CHECKING:
    from ..core.state import ServerState

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# A payload longer than this is unmasked by autobahn's masker (NVX: SIMD, but a cffi object per
# call: about 6 us); a shorter one by one XOR of two integers (about 0.5 us for a few bytes,
# 3.5 us a KiB).
_LONG_PAYLOAD = 2048
_TEXT, _BINARY = 0x81, 0x82  # the first byte of a whole (FIN) text or binary frame
_HEADER_16 = struct.Struct("!BBH").pack
_HEADER_64 = struct.Struct("!BBQ").pack
_OPEN = WebSocketServerProtocol.STATE_OPEN


def unmask(payload: bytes, mask: bytes) -> bytes:
    """A client frame's payload, unmasked with its 4-byte key (RFC 6455 5.3)."""
    size = len(payload)
    if size > _LONG_PAYLOAD:
        masker = create_xor_masker(mask, size)
        unmasked: bytes = masker.process(payload)
        return unmasked
    key = (mask * ((size >> 2) + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little")


def frame_header(size: int, binary: bool) -> bytes:
    """The header of a server's whole, unmasked text or binary frame of ``size`` bytes."""
    first = _BINARY if binary else _TEXT
    if size < 126:
        return bytes((first, size))
    if size < 65536:
        return _HEADER_16(first, 126, size)
    return _HEADER_64(first, 127, size)


def accept_key(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def negotiate_deflate(values: list[bytes]) -> tuple[PerMessageDeflateOfferAccept | None,
                                                     bytes | None]:
    """The first permessage-deflate offer of the client's Sec-WebSocket-Extensions values
    that can be taken, and the extension header value that accepts it (or None, None).

    RFC 7692 section 5 says to decline an offer with unknown, repeated or out-of-range
    parameters (and the RFC's server_max_window_bits=8, which zlib cannot honour); other
    extensions are not supported and are declined too."""
    for value in values:
        for offer in value.decode("latin-1").split(","):
            name, *parts = (part.strip() for part in offer.split(";"))
            if name.lower() != "permessage-deflate":
                continue
            params: dict[str, list[str | bool]] = {}
            for part in parts:
                key, equals, param = (p.strip() for p in part.partition("="))
                if len(param) >= 2 and param[0] == param[-1] == '"':
                    param = param[1:-1]
                params.setdefault(key.lower(), []).append(param if equals else True)
            try:
                parsed = PerMessageDeflateOffer.parse(params)
            except Exception:  # autobahn raises a bare Exception for a bad offer
                continue
            accept = PerMessageDeflateOfferAccept(parsed)
            return accept, accept.get_extension_string().encode("latin-1")
    return None, None


class FramingFactory(WebSocketServerFactory):
    """autobahn's factory, holding the options every connection shares."""

    lean = True  # whether Framing takes the lean path (the tests run both ways)
    # the options each connection's protocol starts with (see _AutobahnProtocol)
    connection_options: dict[str, object]


def make_factory(config: Config) -> FramingFactory:
    """One autobahn factory per server, holding the options every connection shares."""
    factory = FramingFactory()  # type: ignore[no-untyped-call]  # autobahn's, untyped
    factory.setProtocolOptions(  # type: ignore[no-untyped-call]
        # keepalive pings are ours (see WebSocketConnection.deadline_passed): autobahn's timers
        # round sub-second delays to whole seconds, and one server sweep can serve them all
        autoPingInterval=0,
        maxFramePayloadSize=config.websocket_max_frame_size,
        maxMessagePayloadSize=config.websocket_max_message_size,
        openHandshakeTimeout=0,  # there is no handshake of autobahn's
        closeHandshakeTimeout=1,
        failByDrop=False,  # fail with a close frame that says why (1002, 1007, 1009)
    )
    factory.noisy = False
    factory.connection_options = {
        name: getattr(factory, name) for name in WebSocketServerProtocol.CONFIG_ATTRS}
    return factory


def factory_for(server: ServerState) -> FramingFactory:
    """The server's autobahn factory, made on the first call (the server asks before it
    listens: importing autobahn on the first WebSocket would stall every connection for
    that long) and kept in its state."""
    factory = server.framing_factory
    if not isinstance(factory, FramingFactory):
        factory = server.framing_factory = make_factory(server.config)
    return factory


class FramingEvents(Protocol):
    """What :class:`Framing` reports to."""

    def message_received(self, message: bytes | str) -> None:
        """A whole message: bytes for a binary one, str for a text one."""
        ...

    def pong_received(self, payload: bytes) -> None: ...

    def closed(self, code: int | None, reason: str | None) -> None:
        """The WebSocket is over: a close handshake, a drop, or a failure."""
        ...

    def end_connection(self, abort: bool) -> None:
        """autobahn is done with the connection: end it (``abort``: at once)."""
        ...


class Framing:
    """One open WebSocket's framing over ``write``, reporting to ``events``."""

    __slots__ = ("_protocol", "_events", "_write", "_lean", "_limit")

    def __init__(self, factory: FramingFactory, events: FramingEvents,
                 write: Callable[[bytes], None], peer: str, subprotocol: str | None,
                 deflate: PerMessageDeflateOfferAccept | None) -> None:
        protocol = _AutobahnProtocol(events, write)
        protocol.factory = factory
        protocol.peer = peer  # what autobahn's log lines name
        protocol.__dict__.update(factory.connection_options)
        protocol._connectionMade()  # its per-connection state, from the factory's options
        # what a successful opening handshake leaves behind (autobahn's succeedHandshake,
        # less the response, which the wire protocol wrote)
        protocol.websocket_version = 13
        protocol.websocket_protocol_in_use = subprotocol
        protocol.websocket_extensions_in_use = []
        if deflate is not None:
            pmce = PerMessageDeflate.create_from_offer_accept(True, deflate)
            protocol._perMessageCompress = pmce
            protocol.websocket_extensions_in_use.append(pmce)
        protocol.state = protocol.STATE_OPEN
        protocol.inside_message = False
        # autobahn declares a FrameHeader, and sets None itself between frames
        protocol.current_frame = None  # type: ignore[assignment]
        # txaio's functions are set at run time, for the framework it is told to use
        txaio.resolve(protocol.is_open, None)  # type: ignore[attr-defined]
        self._protocol = protocol
        self._events = events
        self._write = write
        # the lean path (see the module docstring): frames without compression only
        self._lean = deflate is None and factory.lean
        limits = [limit for limit in (protocol.maxFramePayloadSize,
                                      protocol.maxMessagePayloadSize) if limit > 0]
        self._limit = min(limits) if limits else 1 << 62  # a payload the lean path takes

    def data_received(self, data: bytes) -> None:
        """Bytes from the peer: whole messages through the lean path, the rest (from the
        first frame it does not take) through autobahn's reader."""
        protocol = self._protocol
        if not self._lean or protocol.data or protocol.current_frame is not None \
                or protocol.inside_message or protocol.state != _OPEN:
            # autobahn's dataReceived formats the arguments of a debug log line (qualified
            # function names) on every read, even with that log off: its reader, without it
            protocol._dataReceived(data)
            return
        deliver = self._events.message_received
        end = len(data)
        start = 0
        while end - start >= 6:
            first = data[start]
            second = data[start + 1]
            # FIN, no RSV bit, text or binary; masked (autobahn fails an unmasked frame)
            if (first != _TEXT and first != _BINARY) or second < 0x80:
                break
            size = second & 0x7F
            if size < 126:
                begin = start + 6
            elif size == 126 and end - start >= 8:
                size = (data[start + 2] << 8) | data[start + 3]
                if size < 126:  # not the shortest encoding: autobahn fails it
                    break
                begin = start + 8
            else:  # a 64-bit length (over 64 KiB), or a header cut by the read
                break
            stop = begin + size
            if stop > end or size > self._limit:
                break
            payload = unmask(data[begin:stop], data[begin - 4:begin])
            if first == _TEXT:
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    break  # autobahn fails the connection with 1007
                deliver(text)
            else:
                deliver(payload)
            start = stop
            if protocol.state != _OPEN:  # the message closed the WebSocket: nothing more
                return
        if start < end:
            protocol._dataReceived(data[start:] if start else data)

    def send_message(self, data: bytes, binary: bool) -> None:
        protocol = self._protocol
        if protocol.state != _OPEN:
            return
        if self._lean:
            size = len(data)
            if size <= 16384:
                self._write(frame_header(size, binary) + data)
            else:  # a large payload is not copied to join its header
                self._write(frame_header(size, binary))
                self._write(data)
            return
        limit = protocol.maxMessagePayloadSize
        if not limit or len(data) <= limit:
            protocol.sendMessage(data, binary)
            return
        # the size limits are on what the client sends; autobahn would hold the
        # application's messages to them too (Daphne and Uvicorn do not)
        protocol.maxMessagePayloadSize = 0
        try:
            protocol.sendMessage(data, binary)
        finally:
            protocol.maxMessagePayloadSize = limit

    @property
    def is_open(self) -> bool:
        protocol = self._protocol
        return protocol.state == protocol.STATE_OPEN

    def ping(self, payload: bytes) -> None:
        self._protocol.sendPing(payload)

    def close(self, code: int, reason: str) -> None:
        """Begin the close handshake (while open); any code RFC 6455 lets a server send."""
        protocol = self._protocol
        if protocol.state == protocol.STATE_OPEN:
            # sendCloseFrame, not sendClose: the server may also send 1001 and 1011
            protocol.sendCloseFrame(code, reason.encode("utf-8") or None, isReply=False)

    def drop(self, why: str) -> None:
        """End the WebSocket without a close handshake (a peer that stopped answering)."""
        protocol = self._protocol
        protocol.wasClean = False
        protocol.wasNotCleanReason = why
        protocol.dropConnection(abort=True)

    def connection_lost(self) -> None:
        self._protocol.connectionLost(Failure(ConnectionDone()))


class _AutobahnProtocol(WebSocketServerProtocol):
    """autobahn's protocol, reporting to our FramingEvents and writing through ours."""

    # autobahn sets these from the factory's options, and per frame, where mypy does not
    # see their types
    maxMessagePayloadSize: int  # autobahn's names
    maxFramePayloadSize: int
    _isMessageCompressed: bool
    # autobahn's _connectionMade copies every option of the factory that the protocol does
    # not have, and pretty-prints all of them for a debug log line, on every connection,
    # with the log off (about a millisecond a WebSocket): Framing gives it the options
    # first, and this list of the ones to copy is empty
    CONFIG_ATTRS: list[str] = []  # autobahn's name and type, never changed
    # autobahn's starts as None, in unannotated code: mypy takes it for always None
    _perMessageCompress: PerMessageDeflate | None  # type: ignore[assignment]

    def __init__(self, events: FramingEvents, write: Callable[[bytes], None]) -> None:
        super().__init__()
        self.events = events
        self.write_out = write
        self.peer_close_code: int | None = None  # the code of the peer's close frame

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        # autobahn has checked a text message's UTF-8
        self.events.message_received(payload if isBinary else payload.decode("utf-8"))

    def onPong(self, payload: bytes) -> None:  # autobahn's name
        self.events.pong_received(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.events.closed(code, reason)

    def onCloseFrame(self, code: int | None, reasonRaw: bytes | None) -> bool | None:
        self.peer_close_code = code
        # autobahn's list of close codes a peer may send stops at 1013 and fails the
        # connection for 1014 (Bad Gateway, registered with IANA in 2016, sent by proxies):
        # taken as a normal close, then reported with its own code
        # autobahn declares int and bytes, and passes None itself for a close frame without
        # a code (and reason)
        if code != BAD_GATEWAY:
            return super().onCloseFrame(code, reasonRaw)  # type: ignore[arg-type]
        failed = super().onCloseFrame(NORMAL_CLOSURE, reasonRaw)  # type: ignore[arg-type]
        self.remoteCloseCode = BAD_GATEWAY
        return failed

    def sendCloseFrame(self, code: int | None = None, reasonUtf8: bytes | None = None,
                       isReply: bool = False) -> None:
        # autobahn answers a peer's close with 1000 (or echoes its reason too): the answer
        # echoes the peer's code (RFC 6455 5.5.1), a private 3000-4999 code included
        if isReply and self.peer_close_code is not None:
            code, reasonUtf8 = self.peer_close_code, None
        super().sendCloseFrame(code, reasonUtf8, isReply)

    # autobahn's own sendData (and dataReceived: see Framing) formats the arguments of a
    # debug log line (qualified function names) on every frame, even with that log off:
    # about a sixth of the server's time in a WebSocket echo.  The same work, without it.

    def sendData(self, data: bytes, sync: bool = False,  # autobahn's name
                 chopsize: int | None = None) -> None:
        if self.state == self.STATE_OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
        self.write_out(data)

    def onMessageEnd(self) -> None:  # autobahn's name
        # autobahn's also fires a "message" event to observers (a Deferred and callbacks per
        # message) that nothing here registers
        if not self.failedByMe:
            payload = b"".join(self.message_data)
            self._onMessage(payload, self.message_is_binary)
        # autobahn declares list[bytes], and sets None itself between messages
        self.message_data = None  # type: ignore[assignment]

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

    def onMessageFrameBegin(self, length: int) -> None:  # autobahn's name
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

    def onFrameData(self, payload: bytes) -> bool | None:  # autobahn's name
        if self.current_frame.opcode <= 7 and self._isMessageCompressed:
            self.message_data_total_length += len(payload)
        return super().onFrameData(payload)

    def onFrameBegin(self) -> None:  # autobahn's name
        pmce = self._perMessageCompress
        if pmce is not None and not self.inside_message:
            inflater = getattr(pmce, "_decompressor", None)
            if inflater is not None and inflater.eof:
                # the last message ended its DEFLATE stream with a BFINAL block (RFC 7692
                # 7.2.3.3): zlib would silently inflate the next one to nothing
                pmce._decompressor = None
        super().onFrameBegin()

    def registerProducer(self, producer: object, streaming: bool) -> None:
        """Flow control is the link's (autobahn has no transport here)."""

    def unregisterProducer(self) -> None:  # autobahn calls it when it drops
        """Flow control is the link's (autobahn has no transport here)."""

    def _closeConnection(self, abort: bool = False) -> None:  # autobahn's name
        # autobahn aborts (RST) as soon as a close handshake completes; when it failed the
        # connection (1002, 1007) in the same read, that throws away its close frame unsent.
        # A completed handshake ends gracefully; a dropped peer is still aborted.
        self.events.end_connection(abort and not self.wasClean)
