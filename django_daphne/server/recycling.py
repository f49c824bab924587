"""Recycling (--max-requests, --max-worker-memory, --max-worker-lifetime): which serving
workers the supervisor is to replace, and when a recycled worker's successor may start.

A worker that reached --max-requests (it says so), that the supervisor measures over
--max-worker-memory (every MEMORY_CHECK_INTERVAL) or that has served --max-worker-lifetime
(plus its jitter) is marked (``Worker.recycle``); the supervisor then starts one successor
for it, which takes its slot once ready.  A successor that fails is tried again with a
growing delay.  A worker already over the memory ceiling when it becomes ready is not
recycled for it (one error per generation says the ceiling is too low).  No successor
starts during a reload, which replaces every worker anyway.

:class:`Recycling` holds the policy and its measurements; the supervisor (supervisor.py)
owns the workers and does every transition.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator

from ..core.config import Config
from ..core.options import MIB
from .worker_process import Generation, RecycleReason, Worker, WorkerState, resident_memory

logger = logging.getLogger("django_daphne.supervisor")

READY = WorkerState.READY
# a recycled worker's successor that fails to start is tried again, waiting twice as long
# each time (the worker it replaces goes on serving meanwhile)
FIRST_RECYCLE_DELAY = 1.0
MAX_RECYCLE_DELAY = 60.0
# --max-worker-memory: how often the serving workers' memory is read (one small read of
# /proc a worker)
MEMORY_CHECK_INTERVAL = 1.0


class Recycling:
    """When the workers of the current generation are to be recycled (see the module
    docstring)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.memory_ceiling = config.max_worker_memory * MIB  # bytes; 0: not measured
        self.next_memory_check: float | None = None
        # the generations whose workers were reported over the memory ceiling as they started
        self.reported_over_at_start: set[int] = set()

    def unavailable(self) -> str | None:
        """Why recycling as configured cannot work on this system, if it cannot."""
        if self.memory_ceiling and resident_memory(os.getpid()) is None:
            return ("--max-worker-memory (MAX_WORKER_MEMORY) needs /proc/PID/statm to "
                    "measure each worker's memory, and this system has no such file "
                    "(Linux has it); leave it unset here (--max-worker-lifetime and "
                    "--max-requests recycle workers anywhere)")
        return None

    def start(self, now: float) -> None:
        """The supervisor's loop starts: memory is measured from now on."""
        if self.memory_ceiling:
            self.next_memory_check = now + MEMORY_CHECK_INTERVAL

    def became_ready(self, worker: Worker, now: float) -> None:
        """A worker serves from ``now``: its lifetime ends (with its own share of the
        jitter, so that workers ready together are not retired together), and its memory
        as it starts is judged."""
        lifetime = self.config.max_worker_lifetime
        if lifetime:
            worker.retire_at = now + lifetime + random.uniform(
                0.0, self.config.max_worker_lifetime_jitter)
        if self.memory_ceiling:
            self._measure_at_start(worker)

    def _measure_at_start(self, worker: Worker) -> None:
        """A worker over --max-worker-memory as it becomes ready: the ceiling is below what
        the application needs, and its successor would be as large, so replacing it would
        only start a loop of replacements.  It serves on, not recycled for its memory (the
        other reasons still apply), and the error is said once a generation (once for the
        code that a start or a reload brought)."""
        rss = resident_memory(worker.pid)
        if rss is None or rss <= self.memory_ceiling:
            return
        worker.over_at_start = True
        number = worker.generation.number
        if number in self.reported_over_at_start:
            logger.debug("Worker %d (slot %d) uses %d MiB as it starts, over "
                         "--max-worker-memory %d: not recycled for its memory", worker.pid,
                         worker.slot, rss // MIB, self.config.max_worker_memory)
            return
        self.reported_over_at_start.add(number)
        logger.error("Worker %d (slot %d) uses %d MiB as it starts, already over "
                     "--max-worker-memory %d (MAX_WORKER_MEMORY): the ceiling is below what "
                     "the application needs, and a new worker would be as large, so workers "
                     "that start over it are not replaced for their memory; set it above "
                     "what a worker uses once warmed up", worker.pid, worker.slot,
                     rss // MIB, self.config.max_worker_memory)

    def check(self, now: float, current: Generation) -> None:
        """Which serving workers are now to be recycled: past their --max-worker-lifetime,
        or (once a MEMORY_CHECK_INTERVAL) over --max-worker-memory.  Only the workers that
        fill a slot of the current generation: a successor, or a new generation's worker,
        is judged once it serves.  A worker already marked is left alone (one successor
        each: it may grow on while its successor starts)."""
        check_memory = self.next_memory_check is not None and now >= self.next_memory_check
        if check_memory:
            self.next_memory_check = now + MEMORY_CHECK_INTERVAL
        measured = []
        for worker in current.slots.values():
            if worker.state is not READY:
                continue
            served = now - (worker.ready_at or now)
            if worker.retire_at is not None and now >= worker.retire_at:
                worker.recycle_for(RecycleReason.LIFETIME, (
                    f"has served {served:.0f} s, past --max-worker-lifetime "
                    f"{self.config.max_worker_lifetime:g}"
                    + (" (plus its jitter)" if self.config.max_worker_lifetime_jitter
                       else "")))
            if not check_memory:
                continue
            rss = resident_memory(worker.pid)
            if rss is None:  # it is exiting: the loop reaps it
                continue
            measured.append(f"{worker.pid} {rss // MIB} MiB")
            if rss > self.memory_ceiling and not worker.over_at_start:
                worker.recycle_for(RecycleReason.MEMORY, (
                    f"uses {rss // MIB} MiB, over --max-worker-memory "
                    f"{self.config.max_worker_memory} after serving {served:.0f} s"))
        if measured:
            logger.debug("Worker memory (--max-worker-memory %d): %s",
                         self.config.max_worker_memory, ", ".join(measured))

    @staticmethod
    def due(current: Generation, pending: Generation | None) -> list[Worker]:
        """The serving workers to be recycled that have no successor starting: none during
        a reload (it replaces them all; if it fails, their successors start then)."""
        if pending is not None:
            return []
        return [worker for slot, worker in current.slots.items()
                if worker.recycle is not None and worker.state is READY
                and slot not in current.successors]

    @staticmethod
    def successor_failed(generation: Generation, slot: int, now: float) -> float:
        """The successor in ``slot`` failed: how long until the next one (growing)."""
        failures = generation.recycle_failures.get(slot, 0) + 1
        generation.recycle_failures[slot] = failures
        delay: float = min(FIRST_RECYCLE_DELAY * 2 ** (failures - 1), MAX_RECYCLE_DELAY)
        generation.recycle_after[slot] = now + delay
        return delay

    @staticmethod
    def successor_ready(generation: Generation, slot: int) -> None:
        """The successor in ``slot`` took it over: its failures are forgotten."""
        generation.recycle_after.pop(slot, None)
        generation.recycle_failures.pop(slot, None)

    def deadlines(self, now: float, current: Generation, pending: Generation | None
                  ) -> Iterator[float]:
        """When something of recycling is next due: a failed successor's retry, a
        lifetime's end, the next memory check."""
        yield from (current.recycle_after.get(w.slot, now) for w in self.due(current, pending))
        yield from (w.retire_at for w in current.slots.values()
                    if w.retire_at is not None and w.recycle is None and w.state is READY)
        if self.next_memory_check is not None:
            yield self.next_memory_check
