"""The ASGI lifespan protocol: startup before the first connection, shutdown after the last."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger("django_daphne.lifespan")


class LifespanFailure(Exception):
    """The application reported (or raised during) a failed startup or shutdown."""


class Lifespan:
    """Runs one lifespan application instance across the life of the server.

    ``mode`` is the ``--lifespan`` option: ``auto`` goes on quietly when the application does
    not speak lifespan (Django's handler raises on it), ``on`` makes that a failure, ``off``
    never calls the application.
    """

    def __init__(self, app: Any, mode: str, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.mode = mode
        self.loop = loop
        self.state: dict[str, Any] = {}
        self.supported = False
        self.task: asyncio.Task[None] | None = None
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        # the application's answer: (the message's type, its message), or ("returned", None)
        self.answer: asyncio.Future[tuple[str, Any]] | None = None
        self.app_error: BaseException | None = None

    async def startup(self) -> None:
        """Send lifespan.startup and wait; raise LifespanFailure if startup failed."""
        if self.mode == "off":
            return
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        self.answer = self.loop.create_future()
        self.task = self.loop.create_task(self._run(scope))
        await self.inbox.put({"type": "lifespan.startup"})
        kind, message = await self.answer
        if kind == "lifespan.startup.complete":
            self.supported = True
            logger.debug("Application startup complete")
            return
        if kind == "lifespan.startup.failed":
            raise LifespanFailure(f"Application startup failed: {message or 'no message'}")
        # the application raised or returned without answering
        if self.mode == "on":
            raise LifespanFailure(
                "Application does not support lifespan (--lifespan on): "
                + (f"{type(self.app_error).__name__}: {self.app_error}"
                   if self.app_error else "it returned without answering lifespan.startup")
            )
        logger.debug(
            "Application does not support lifespan (%r); serving without it", self.app_error
        )

    async def shutdown(self, timeout: float) -> None:
        """Send lifespan.shutdown and wait for the answer (at most ``timeout`` seconds)."""
        if not self.supported or self.task is None or self.task.done():
            return
        self.answer = self.loop.create_future()
        await self.inbox.put({"type": "lifespan.shutdown"})
        try:
            kind, message = await asyncio.wait_for(asyncio.shield(self.answer), timeout)
        except asyncio.TimeoutError:
            logger.warning("Application lifespan shutdown took longer than %ss", timeout)
            self.task.cancel()
            return
        if kind == "lifespan.shutdown.failed":
            logger.error("Application shutdown failed: %s", message or "no message")

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self.inbox.get, self._send)
        except BaseException as exc:  # reported through the answer
            self.app_error = exc
            if self.supported:
                logger.error("Exception in lifespan application", exc_info=exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            if self.answer is not None and not self.answer.done():
                self.answer.set_result(("returned", None))

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind not in (
            "lifespan.startup.complete", "lifespan.startup.failed",
            "lifespan.shutdown.complete", "lifespan.shutdown.failed",
        ):
            raise RuntimeError(f"Unexpected lifespan message {kind!r}")
        if self.answer is not None and not self.answer.done():
            self.answer.set_result((kind, message.get("message", "")))
