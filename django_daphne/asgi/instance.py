"""What every application instance shares, whatever its protocol: the task running it, the
wake-up of a pending ``receive()``, the deadlines the server's sweep enforces, and what
happens when the application raises, returns, or lingers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..core.errors import error_page

if TYPE_CHECKING:
    from ..core.errors import Refusal
    from ..core.state import ServerState

logger = logging.getLogger("django_daphne.asgi")


class ApplicationInstance:
    """Base of HTTPStream and WebSocketStream.  Subclasses define ``receive``, ``send``,
    ``describe()``, ``app_failed()`` (it raised) and ``app_returned()``."""

    __slots__ = ("server", "scope", "task", "waiter", "deadline", "disconnected",
                 "cancelled_because", "status", "sent")

    def __init__(self, server: ServerState, scope: dict[str, Any]) -> None:
        self.server = server
        self.scope = scope
        self.task: asyncio.Task[None] | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.deadline: float | None = None  # checked by ServerState.sweep
        self.disconnected = False
        self.cancelled_because: str | None = None
        self.status = 0  # the answer's status (0: none yet), and the body bytes sent
        self.sent = 0

    def _answer_refusal(self, refusal: Refusal,
                        start: Callable[[int, list[tuple[bytes, bytes]]], None],
                        write: Callable[[bytes, bool], None], request: str) -> None:
        """The server's own answer in place of the application's: the refusal's status,
        reason and headers on the page every refusal has, through the wire's ``start`` and
        ``write``, recorded once (access log, metrics) as ``request``."""
        self.status = status = refusal.status
        headers, body = error_page(status, refusal.reason)
        start(status, [*headers, *refusal.headers])
        self.sent = len(body)
        write(body, False)
        self.server.refused(self.scope["client"], status, refusal.reason, len(body), request)

    def describe(self) -> str:  # pragma: no cover - every subclass names itself
        path: str = self.scope.get("path", "?")
        return path

    def app_failed(self) -> None:  # pragma: no cover - overridden
        """The application raised while its client was still there."""

    def app_returned(self) -> None:  # pragma: no cover - overridden
        """The application returned."""

    async def receive(self) -> dict[str, Any]:  # pragma: no cover - overridden
        """The application's ``receive()``."""
        raise NotImplementedError

    async def send(self, message: Mapping[str, Any]) -> None:  # pragma: no cover - overridden
        """The application's ``send()``."""
        raise NotImplementedError

    def deadline_passed(self) -> None:  # pragma: no cover - overridden
        """The deadline passed (the server's sweep)."""

    def _start_task(self) -> None:
        server = self.server
        server.streams.add(self)  # (counted there under --max-requests: ServerState)
        self.task = server.loop.create_task(self.run())

    async def _wait(self) -> None:
        """Sleep until the wire has something for ``receive()``.

        Two coroutines may wait at once (a task listening for http.disconnect while the
        application polls ``receive()`` and cancels the poll, as Starlette's
        ``is_disconnected()`` does): the newest waiter wakes the one before it when it ends,
        woken or cancelled, so no wake-up is lost; a waiter woken early just looks again.
        """
        waiter = self.server.loop.create_future()
        previous = self.waiter
        if previous is not None and not previous.done():

            def wake_previous(_: asyncio.Future[None]) -> None:
                if not previous.done():
                    previous.set_result(None)

            waiter.add_done_callback(wake_previous)
        self.waiter = waiter
        await waiter

    def _wake(self) -> None:
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _linger(self) -> None:
        """The exchange is over: the application has the close timeout to return (unless
        it is already due to be cancelled sooner)."""
        if self.task is not None and not self.task.done() and self.cancelled_because is None:
            self._set_app_due(self.server.clock + self.server.config.application_close_timeout)

    def _set_app_due(self, when: float | None) -> None:
        """When the application's own deadline (to respond, or to return) passes."""
        self.deadline = when

    async def run(self) -> None:
        try:
            await self.server.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            if self.cancelled_because is None:
                raise
        except BaseException as exc:
            if self.server.counts is not None:
                self.server.counts.app_error(self.scope["type"])
            if self.disconnected:
                logger.debug("Application for %s raised after its client left: %r",
                             self.describe(), exc)
            else:
                logger.error("Exception inside application serving %s", self.describe(),
                             exc_info=exc)
                self.app_failed()
            if not isinstance(exc, Exception):
                raise
        else:
            self.app_returned()
        finally:
            # (its deadlines end here too: the sweep looks at running instances only)
            self.server.streams.discard(self)

    def _kill(self) -> None:
        """The close timeout passed and the application is still running."""
        logger.warning("Application instance for %s took too long to shut down and was killed",
                       self.describe())
        self.cancelled_because = "close_timeout"
        task = self.task
        assert task is not None  # called only while the application runs
        task.cancel()

    def cancel(self) -> None:
        """Cancel the application (server shutdown)."""
        if self.task is not None and not self.task.done():
            self.cancelled_because = "shutdown"
            self.task.cancel()
