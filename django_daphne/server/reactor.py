"""Installing Twisted's asyncio reactor, so Twisted and application coroutines share one loop."""

from __future__ import annotations

import asyncio
import logging
import sys
import warnings
from typing import Any

logger = logging.getLogger("django_daphne")


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's where installed (``auto``) or asked for, else asyncio's."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise RuntimeError("--loop uvloop needs uvloop installed") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def install(loop: str = "auto") -> Any:
    """Install the asyncio reactor on a fresh loop, replacing any other reactor imported
    before us (as Daphne does), and return it.  Calling it again is harmless."""
    from twisted.internet import asyncioreactor

    current = sys.modules.get("twisted.internet.reactor")
    if isinstance(current, asyncioreactor.AsyncioSelectorReactor):
        return current
    if current is not None:
        warnings.warn(
            "Something imported twisted.internet.reactor before django-daphne could install "
            "the asyncio reactor; replacing it. Put django_daphne first in INSTALLED_APPS, "
            "or import django_daphne before anything that imports the reactor.",
            RuntimeWarning,
            stacklevel=2,
        )
        del sys.modules["twisted.internet.reactor"]
    event_loop = new_event_loop(loop)
    asyncio.set_event_loop(event_loop)
    reactor = asyncioreactor.AsyncioSelectorReactor(event_loop)
    from twisted.internet.main import installReactor

    installReactor(reactor)
    return reactor
