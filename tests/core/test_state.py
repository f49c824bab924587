"""The server's periodic sweep, which fires every connection's and application's timeouts."""

from __future__ import annotations

import asyncio
import logging

from django_daphne.core.config import Config
from django_daphne.core.state import ServerState


class Due:
    """Something with a deadline that has passed, as the sweep sees a connection or stream."""

    def __init__(self, fail: bool) -> None:
        self.deadline = 0.0
        self.fail = fail
        self.fired = False

    def deadline_passed(self) -> None:
        self.fired = True
        self.deadline = None
        if self.fail:
            raise RuntimeError("a broken timeout handler")


def test_a_handler_that_raises_does_not_stop_the_others(caplog):
    loop = asyncio.new_event_loop()
    try:
        state = ServerState(app=None, config=Config.build(), loop=loop)
        broken = Due(fail=True)
        others = [Due(fail=False) for _ in range(3)]
        state.streams.add(broken)  # application instances are swept before connections
        state.connections.update(others)
        with caplog.at_level(logging.ERROR, logger="django_daphne.server"):
            state.sweep()
        assert broken.fired and all(other.fired for other in others)
        assert "Error in a timeout handler" in caplog.text
        assert "a broken timeout handler" in caplog.text
    finally:
        loop.close()
