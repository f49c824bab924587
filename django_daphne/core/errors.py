"""The errors of an exchange, whatever its protocol."""

from __future__ import annotations

from http import HTTPStatus


class Refusal(Exception):
    """A request refused before any application sees it.

    ``status`` is the answer (0: none: over HTTP/1.1 the connection is closed, over HTTP/2
    the stream is reset with PROTOCOL_ERROR, as for a malformed request), ``reason`` says
    why in words a client's developer can act on, ``headers`` go in the answer."""

    def __init__(self, status: int, reason: str,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


class UnexpectedMessage(RuntimeError):
    """The application sent a message the ASGI spec does not allow at that point."""


class ClientDisconnected(OSError):
    """``send`` was called after the client went away (ASGI HTTP spec 2.4)."""


def error_page(status: int, reason: str | None = None) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers and body of an answer the server writes itself, whatever the protocol:
    a refused request (its status, phrase and why) or a failed application (the phrase)."""
    phrase = HTTPStatus(status).phrase
    text = f"{status} {phrase}: {reason}\n" if reason is not None else f"{phrase}\n"
    body = text.encode("latin-1", "replace")
    # (HTTP/1.1's case, as the Date and Server headers have it; HTTP/2 lower-cases names)
    return [(b"Content-Type", b"text/plain; charset=utf-8"),
            (b"Content-Length", b"%d" % len(body))], body
