"""Installing Twisted's asyncio reactor, so Twisted and application coroutines share one loop."""

from __future__ import annotations

import asyncio
import logging
import sys
import warnings
from typing import Any

from ..protocols.twisted_internals import asyncio_loop, is_asyncio_reactor

logger = logging.getLogger("django_daphne")


def wants_uvloop(kind: str) -> bool:
    """Whether ``--loop kind`` means uvloop's loop: asked for, or (``auto``) installed."""
    if kind == "asyncio":
        return False
    if kind == "uvloop":
        return True
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def uses_uvloop(reactor: Any) -> bool:
    """Whether an asyncio reactor runs on uvloop's loop."""
    return type(asyncio_loop(reactor)).__module__.startswith("uvloop")


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's where installed (``auto``) or asked for, else asyncio's."""
    if wants_uvloop(kind):
        try:
            import uvloop
        except ImportError:
            raise RuntimeError("--loop uvloop needs uvloop installed") from None
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def reinstall(kind: str = "auto", fresh: bool = False) -> Any:
    """The asyncio reactor on the loop ``kind`` asks for, installed for the current thread.

    One installed already (at import time, say) is replaced while it has not run yet when
    it runs on another loop than ``kind`` asks for, or when ``fresh`` (a new thread such
    as Django's autoreloader's, or a new live-server process)."""
    current = sys.modules.get("twisted.internet.reactor")
    if current is not None and is_asyncio_reactor(current):
        if fresh or uses_uvloop(current) != wants_uvloop(kind):
            if current.running:
                raise RuntimeError("The Twisted reactor is already running in this process")
            del sys.modules["twisted.internet.reactor"]
            loop = asyncio_loop(current)
            if not loop.is_running() and not loop.is_closed():
                loop.close()
    return install(kind)


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
    from ..protocols.twisted_internals import DirectAsyncioReactor

    reactor = DirectAsyncioReactor(event_loop)
    from twisted.internet.main import installReactor

    installReactor(reactor)
    return reactor

