"""How late the event loop runs a timer: the signal of a loop blocked by code that should
not run on it (blocking I/O in an async view, a long computation), measured in every
serving process.

A timer due every :data:`INTERVAL` seconds notes how late it ran (its lag); a lag over
``--loop-block-threshold`` is one incident, logged once with its duration (a run of late
ticks in a row is the same incident: one line when it starts, one more when it ends if
the loop was blocked again meanwhile).  The lags are kept as plain counts, which the
metrics fold into prometheus_client's (``daphne_event_loop_lag_seconds``).  The
``--workers`` supervisor's heartbeat watch (--worker-timeout) replaces a worker whose loop
stays blocked; this says how long and how often it was blocked before that.

Nothing here imports prometheus_client.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections.abc import Callable

logger = logging.getLogger("django_daphne.server")

INTERVAL = 0.1  # a block shorter than this may go unseen; a longer one never does
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class LoopLag:
    """The timer, and what it measured since the last :meth:`take`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float,
                 every_second: Callable[[], None] | None = None) -> None:
        self.loop = loop
        self.threshold = threshold  # 0: no warnings
        self.every_second = every_second  # (the metrics' fold)
        self.buckets = [0] * (len(LAG_BUCKETS) + 1)
        self.total = 0.0
        self.worst = 0.0  # the largest lag since the last take
        self.incidents = 0  # since the last take
        self.in_incident = False
        self.incident_blocks = 0
        self.incident_seconds = 0.0
        self._ticks = 0
        self._due = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._due = self.loop.time() + INTERVAL
        self._timer = self.loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        now = self.loop.time()
        lag = now - self._due
        if lag < 0.0:
            lag = 0.0
        self.buckets[bisect_left(LAG_BUCKETS, lag)] += 1
        self.total += lag
        if lag > self.worst:
            self.worst = lag
        threshold = self.threshold
        if threshold and lag >= threshold:
            self._blocked(lag)
        elif self.in_incident:
            self._incident_over()
        self._due = now + INTERVAL
        self._timer = self.loop.call_at(self._due, self._tick)
        self._ticks += 1
        if self._ticks * INTERVAL >= 1.0:
            self._ticks = 0
            if self.every_second is not None:
                try:
                    self.every_second()
                except Exception:
                    logger.exception("Error while updating the metrics; serving goes on")

    def _blocked(self, lag: float) -> None:
        if not self.in_incident:
            self.in_incident = True
            self.incidents += 1
            self.incident_blocks = 0
            self.incident_seconds = 0.0
            logger.warning(
                "The event loop was blocked for %.2fs (--loop-block-threshold %gs): no "
                "request was served meanwhile; blocking calls in async code are the usual "
                "cause (run them in a thread: asgiref's sync_to_async)", lag, self.threshold)
        else:
            self.incident_blocks += 1
            self.incident_seconds += lag

    def _incident_over(self) -> None:
        self.in_incident = False
        if self.incident_blocks:
            logger.warning("The event loop was blocked %d more time(s) in a row, %.2fs in all",
                           self.incident_blocks, self.incident_seconds)

    def take(self) -> tuple[list[int], float, float, int]:
        """(a count per LAG_BUCKETS bucket and one over, their sum, the largest lag,
        incidents begun), since the last take."""
        taken = (self.buckets, self.total, self.worst, self.incidents)
        self.buckets = [0] * (len(LAG_BUCKETS) + 1)
        self.total = 0.0
        self.worst = 0.0
        self.incidents = 0
        return taken
