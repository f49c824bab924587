"""The errors of an exchange, whatever its protocol."""

from __future__ import annotations

from http import HTTPStatus

# the status of a refusal that is not answered, as the metrics and the access log take it
NO_ANSWER = 0


class Refusal(Exception):
    """A request refused before any application sees it.

    ``status`` is the answer, ``reason`` says why in words a client's developer can act on,
    ``headers`` go in the answer.  A request too malformed to answer at all is refused with
    :meth:`no_answer`: ``answered`` is False and ``status`` NO_ANSWER (over HTTP/1.1 the
    connection is closed, over HTTP/2 the stream is reset with PROTOCOL_ERROR)."""

    def __init__(self, status: int, reason: str,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        if not 100 <= status <= 599:
            raise ValueError(f"a refusal answers with an HTTP status, not {status} "
                             "(Refusal.no_answer is the one without an answer)")
        super().__init__(reason)
        self.answered = True
        self.status = status
        self.reason = reason
        self.headers = headers or []

    @classmethod
    def no_answer(cls, reason: str) -> Refusal:
        """A refusal without an answer: the request is dropped (see the class)."""
        refusal = cls(400, reason)
        refusal.answered = False
        refusal.status = NO_ANSWER
        return refusal


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
