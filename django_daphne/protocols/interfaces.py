"""The contracts inside the protocols layer, as ``typing.Protocol`` classes.

::

    Connection (one per socket)  --Link-->  Handler (HTTP/1.1, HTTP/2, WebSocket framing)
    Handler  --HTTPWire / WebSocketWire-->  ASGI stream (asgi.http, asgi.websocket)

A :class:`Handler` is what a :class:`~.connection.Connection` hands the bytes of its socket
to; it writes back through the :class:`Link` the connection gives it (an HTTP/2 stream
gives a WebSocket the same :class:`Link`).  What an ASGI stream asks of its wire
(``HTTPWire``, ``WebSocketWire``) is the ASGI layer's to say: :mod:`django_daphne.asgi.wire`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..core.state import ServerState
from .timers import Timer

if TYPE_CHECKING:
    from ..asgi.websocket import WebSocketStream
    from ..asgi.wire import RequestHead

# why a link stops reading, as bits: it reads again once no reason is left
PAUSE_APP = 1  # the application is not taking what was read
PAUSE_PIPELINE = 2  # pipelined requests wait their turn
PAUSE_REFUSAL = 4  # a refused pipelined request waits for its turn to be answered
PAUSE_WRITES = 8  # the peer takes nothing of what is written (and might flood meanwhile)


class Link(Protocol):
    """What carries a handler's bytes: a connection's socket, or an HTTP/2 stream."""

    server: ServerState
    scheme: str  # "https" over TLS, else "http"
    client: list[Any] | None  # [host, port], None on a UNIX socket
    server_addr: list[Any] | None
    tls: dict[str, Any] | None  # the ASGI TLS extension's fields, on a TLS connection
    timer: Timer | None  # the handler's timer of the moment (see .timers) ...
    deadline: float | None  # ... and when it is due: then the handler's deadline_passed

    @property
    def closed(self) -> bool:
        """Closing or closed: nothing more goes out."""
        ...

    def write(self, data: bytes) -> None: ...

    @property
    def write_paused(self) -> bool:
        """The peer is not taking what was written: senders should wait in ``drain``."""
        ...

    async def drain(self) -> None: ...

    def pause_reading(self, reason: int = PAUSE_APP) -> None: ...

    def resume_reading(self, reason: int = PAUSE_APP) -> None: ...

    def close(self) -> None:
        """End once what was written has gone out."""
        ...

    def abort_now(self) -> None:
        """Drop at once."""
        ...


class Handler(Protocol):
    """A wire protocol speaking on a connection."""

    def data_received(self, data: bytes) -> None: ...

    def connection_lost(self) -> None: ...

    def deadline_passed(self) -> None:
        """The timer the handler armed on its link has passed (``link.timer`` names it)."""
        ...

    def shutdown(self) -> None:
        """The server stops: finish what is in flight, take nothing new."""
        ...

    def writing_resumed(self) -> None:
        """The transport took what was waiting: the peer reads again."""
        ...


class HandshakeHead(Protocol):
    """What a WebSocket reads of its upgrade request: an HTTP/1.1 request's RequestHead, or
    what an HTTP/2 stream's extended CONNECT says."""

    http_version: str
    target: bytes
    headers: list[tuple[bytes, bytes]]


class Opening(Protocol):
    """What writes a WebSocket's HTTP answer: the HTTP/1.1 handler, or the HTTP/2 stream."""

    def websocket_accepted(self, negotiated: list[tuple[bytes, bytes]],
                           headers: list[tuple[bytes, bytes]]) -> None:
        """The answer that opens the WebSocket: what the handshake negotiated, then the
        application's headers as given."""
        ...

    def begin_denial(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...

    def response_body(self, body: bytes, more: bool) -> None: ...

    def response_complete(self) -> None: ...


class TunnelLink(Link, Opening, Protocol):
    """An HTTP/2 stream that carries a WebSocket (RFC 8441): its link and its opening."""


class WebSocketHandler(Handler, Protocol):
    """A WebSocket speaking on a link (protocols/websocket.py's WebSocketConnection)."""

    @property
    def stream(self) -> WebSocketStream:
        """Its ASGI stream."""
        ...


class Socket(Link, Protocol):
    """What a wire protocol asks of the connection that owns its socket (connection.py's
    Connection) beyond a :class:`Link`: to hand the socket over to another protocol (only
    the connection knows them all), and the state of its reading."""

    handler: Handler
    paused: int  # why reading is paused: PAUSE_* bits

    @property
    def sniffing(self) -> bool:
        """No byte received yet: the moment to recognise HTTP/2."""
        ...

    def close_after_error(self) -> None:
        """Close after an error answer, reading on for a while (a lingering close)."""
        ...

    def start_http2(self, upgrade: tuple[RequestHead, bytes] | None = None) -> None: ...

    def h2c_settings_usable(self, value: bytes) -> bool: ...

    def start_websocket(self, head: RequestHead, opening: Opening) -> None: ...

    def websocket_on(self, stream: TunnelLink, head: HandshakeHead) -> WebSocketHandler: ...
