"""An ASGI lifespan handler: django-daphne runs it before accepting the first connection and
after the last one closes.  What it puts in ``scope["state"]`` is copied into every
request's scope, where the home page reads it."""

import logging
import time

logger = logging.getLogger("example_project")


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["started_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
            logger.info("Example project started")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            logger.info("Example project shutting down")
            await send({"type": "lifespan.shutdown.complete"})
            return
