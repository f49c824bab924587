"""What the pieces of HTTP/2 ask of the handler that owns them, as ``typing.Protocol``
classes, so that :mod:`.flow`, :mod:`.lean`, :mod:`.stream` and :mod:`.websocket` depend on
this narrow interface and not on :mod:`.connection` (which imports them all).

The protocols are generic in the stream's wire (``W``: :class:`.stream.H2Stream`) and, for a
tunnel, in the tunnel (``T``: :class:`.websocket.H2Tunnel`), so that this module names
neither and the pieces import each other only downwards (websocket on stream, flow on
stream).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    import asyncio

    from ...asgi.http import ResponseState
    from ...core.state import ServerState
    from ..interfaces import Socket
    from .h2_workarounds import ServerH2Connection

W = TypeVar("W")  # a stream's wire
W_contra = TypeVar("W_contra", contravariant=True)
T_contra = TypeVar("T_contra", contravariant=True)  # a WebSocket's tunnel


class StreamApp(Protocol):
    """What the handler hands a stream's events to: its HTTPStream, or the tunnel of a
    WebSocket (RFC 8441)."""

    @property
    def state(self) -> ResponseState: ...

    @property
    def task(self) -> asyncio.Task[None] | None:
        """Its application's task (None before it starts)."""
        ...

    def body_received(self, data: bytes) -> None: ...

    def body_finished(self) -> None: ...

    def connection_lost(self) -> None: ...


class Flow(Protocol[W_contra]):
    """What a stream and the lean path ask of the flow control (:mod:`.flow`)."""

    def acknowledge(self, stream_id: int, size: int) -> None: ...

    def lean_headers(self, wire: W_contra, fields: list[tuple[bytes, bytes]],
                     end_stream: bool) -> None: ...

    def send_pending(self, wire: W_contra) -> None: ...

    def flush_soon(self) -> None: ...


class H2Host(Protocol[W]):
    """The HTTP/2 handler (:class:`.connection.HTTP2Handler`) as its pieces see it."""

    @property
    def conn(self) -> Socket: ...

    @property
    def server(self) -> ServerState: ...

    @property
    def h2(self) -> ServerH2Connection: ...

    @property
    def closed(self) -> bool: ...

    @property
    def shutting_down(self) -> bool: ...

    @property
    def server_header(self) -> bytes: ...

    @property
    def streams(self) -> dict[int, W]: ...

    @property
    def flow(self) -> Flow[W]: ...

    def to_h2(self, data: bytes) -> None: ...

    def request(self, stream_id: int, fields: list[tuple[bytes, bytes]], ended: bool,
                lean: bool = False) -> None: ...

    def stream_limit_reached(self) -> bool: ...

    def end_lean_stream(self, stream_id: int, by_client: bool) -> None: ...

    def reset(self, stream_id: int, code: int, lean: bool = False) -> None: ...

    def stream_finished(self, wire: W) -> None: ...

    def release(self, wire: W) -> None: ...

    def body_timed_out(self, wire: W) -> None: ...

    def update_deadline(self) -> None: ...

    def terminate(self, code: int | None) -> None: ...


class TunnelHost(H2Host[W], Protocol[W, T_contra]):
    """The handler as a WebSocket's tunnel sees it: an :class:`H2Host` that keeps its
    tunnels."""

    def scheme_of(self, scheme: bytes | None) -> str: ...

    def tunnel_deadline_changed(self) -> None: ...

    def tunnel_closed(self, tunnel: T_contra) -> None: ...
