"""What the ASGI layer and the wire protocols exchange, declared by the ASGI layer that
consumes it: the request head every wire protocol reads (:class:`RequestHead`), and what an
ASGI stream asks of its wire (:class:`HTTPWire`, :class:`WebSocketWire`).

A wire protocol (protocols/) implements these; the ASGI streams (:mod:`.http`,
:mod:`.websocket`) know nothing else of it.  Nothing here imports a wire protocol.
"""

from __future__ import annotations

from typing import Protocol


class RequestHead:
    """What the request line and headers say, in wire terms (bytes, lower-case names),
    whichever protocol read them: the HTTP/1.1 parser makes one per request, and HTTP/2
    (an h2c upgrade's first request) and the WebSocket handshake read it."""

    __slots__ = (
        "method", "target", "http_version", "headers", "keep_alive",
        "expect_continue", "upgrade", "has_body", "odd_names",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        expect_continue: bool,
        upgrade: bytes | None,
        has_body: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.upgrade = upgrade
        self.has_body = has_body
        # a header name may hold an underscore or be Daphne-Root-Path: the scope screens
        # the headers (False only when a scan of the raw head rules both out)
        self.odd_names = True


class HTTPWire(Protocol):
    """What an :class:`~django_daphne.asgi.http.HTTPStream` asks of its wire protocol."""

    def response_start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...

    def response_body(self, body: bytes, more: bool) -> None: ...

    def response_trailers(self, headers: list[tuple[bytes, bytes]]) -> None: ...

    def response_complete(self) -> None: ...

    def abort(self) -> None:
        """The response broke off: the client must not take it for complete."""
        ...

    def send_continue(self) -> None: ...

    @property
    def reading_paused(self) -> bool:
        """We stopped reading the request body, whatever the reason: a body that stalls
        meanwhile is not the client's doing."""
        ...

    def body_timed_out(self) -> None:
        """The client stopped sending the request body (the stream decided): answer 408 if
        nothing was answered yet, end the exchange, and tell the stream it is lost."""
        ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    @property
    def write_paused(self) -> bool: ...

    async def drain(self) -> None: ...


class WebSocketWire(Protocol):
    """What a :class:`~django_daphne.asgi.websocket.WebSocketStream` asks of its wire."""

    def accept(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]]) -> None: ...

    def deny(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...

    def deny_body(self, body: bytes, more: bool) -> None: ...

    def send_message(self, data: bytes, binary: bool) -> None: ...

    def close(self, code: int, reason: str) -> None: ...

    def abort(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    @property
    def write_paused(self) -> bool: ...

    async def drain(self) -> None: ...
