"""The lifespan half of the test applications: startup and shutdown answered at once.
Apps run by the server in its own process (some written to files by the tests) import it
as ``tests.lifespan``."""

from __future__ import annotations


async def serve_lifespan(receive, send) -> None:
    """Answer ``lifespan.startup`` and ``lifespan.shutdown``; return after the shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return
