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

from typing import Any, Protocol

from ..core.state import ServerState

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
    deadline: float | None  # when the handler's deadline_passed is due (the server's sweep)

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
        """The deadline the handler set on its link has passed."""
        ...

    def shutdown(self) -> None:
        """The server stops: finish what is in flight, take nothing new."""
        ...

    def writing_resumed(self) -> None:
        """The transport took what was waiting: the peer reads again."""
        ...
