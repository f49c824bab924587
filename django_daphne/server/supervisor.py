"""``--workers N``: one supervisor binds every listening socket once (listeners.py) and runs N
worker processes that serve them (worker_process.py; their side of the link is
worker_link.py).

Workers are the same command line re-executed, told through ``WORKER_ENV`` which inherited
sockets to serve, so the ``daphne`` command and ``manage.py daphne`` get workers alike.

The supervisor is a state machine.  Each worker is STARTING, READY, DRAINING or KILLED
(worker_process.WorkerState), and each STARTING or READY one fills a slot of a
:class:`Generation` (the workers of one reload) or is the successor of a recycled worker
(--max-requests, --max-worker-memory, --max-worker-lifetime) about to take a slot over.
Signals, deadlines and the workers' exits and messages change what is wanted (how many
slots, a reload, a stop, a worker recycled) or take a worker out of its role; one pass,
:meth:`_settle`, then starts whatever a live generation lacks, ends a reload whose new
generation is all ready, and reports to systemd.  So every signal at every moment has one
outcome.

The Supervisor owns that state machine whole: every transition of a worker, and what is
wanted, is a method here.  What only feeds it or reports on it, with state of its own and a
narrow interface, is a collaborator it holds: ``recycling`` (recycling.py: which workers
are to be recycled, and when a failed successor may be retried), ``wakeups`` (wakeups.py:
the signal handlers and the wait on signals, worker pipes and deadlines), ``health`` and
``watchdog`` (supervisor_health.py: the --metrics-endpoint listener, /livez and /readyz,
systemd's watchdog).  (Not mixins: the transitions call one another across every concern,
so split over mixins they would each need the whole state declared again.)
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import TYPE_CHECKING

from ..core.config import Config
from .endpoints import EndpointError
from .listeners import Listeners, reuse_port_available
from .notify import Notifier
from .recycling import Recycling
from .supervisor_health import LIVE_TURN, HealthEndpoint, Watchdog, liveness, readiness
from .titles import set_title
from .wakeups import Wakeups
from .worker_link import (
    DUMP_SIGNAL,
    READY_ENV,
    WORKER_ENV,
    SupervisorLink,
    accept_one_at_a_time,
    supervisor_link,
    worker_endpoints,
)
from .worker_process import Generation, RecycleReason, Worker, WorkerState, spawn

if TYPE_CHECKING:
    from .metrics import SupervisorMetrics

__all__ = [
    "READY_ENV", "WORKER_ENV", "RecycleReason", "Supervisor", "SupervisorLink",
    "accept_one_at_a_time", "reuse_port_available", "supervisor_link", "worker_endpoints",
]

logger = logging.getLogger("django_daphne.supervisor")

STARTING, READY = WorkerState.STARTING, WorkerState.READY
DRAINING, KILLED = WorkerState.DRAINING, WorkerState.KILLED
# workers that exit before they are ready this many times in a row (none becoming ready in
# between) stop the service; each restart after such a failure waits twice as long
FAILED_STARTS_ALLOWED = 5
FIRST_RETRY_DELAY = 0.1
MAX_RETRY_DELAY = 5.0
# a worker told to drain (on a stop, or retired) that is still running this long past
# twice --shutdown-timeout (its drain, then its lifespan shutdown) is killed
STOP_MARGIN = 5.0
# between the traceback signal to a hung worker and its SIGKILL
DUMP_GRACE = 1.0
# a worker that ends for the stop signal: gracefully (0), or killed by it before it could
# install its handler
STOPPED_STATUSES = (0, -signal.SIGTERM, 128 + signal.SIGTERM)
# why a worker is retired (the argument of _retire), as daphne_worker_retired's reason
RETIRE_REASONS = {"stopping": "stop", "SIGTTOU": "scale_down", "reloaded": "reload",
                  "its reload failed": "reload_failed",
                  **{reason.flag: "recycle" for reason in RecycleReason}}


class Supervisor:
    """Binds, spawns, restarts, reloads, recycles, scales and stops the worker processes.

    One loop, woken by signals (a wakeup fd), by the workers' pipes and by the next
    deadline, reaps the workers that exit (any child: it can run as PID 1 in a container).

    * A worker that dies is replaced (after a growing delay if it was not ready yet); one
      not ready within --worker-boot-timeout is killed and counts as such a failure; one
      whose loop sends no heartbeat for --worker-timeout is killed (its tracebacks
      dumped first) and replaced.
    * SIGHUP reloads: a new generation starts on the same sockets, and once every slot of it
      is ready the old one drains.  A new worker that fails (or misses its boot deadline)
      fails the reload: the new generation drains, the old one goes on serving.  A SIGHUP
      during a reload starts one more reload when it ends, so the code on disk wins.
    * Recycling (--max-requests, --max-worker-memory, --max-worker-lifetime): a worker that
      ``self.recycling`` (recycling.py) marks gets one successor, which takes its slot
      once ready; none starts during a reload, which replaces every worker anyway.
    * SIGTTIN adds a slot, SIGTTOU removes the last one (its sockets closed at once), in
      every live generation.
    * Every worker leaving its role (reloaded, recycled, removed, a failed reload) drains
      as on SIGTERM and is killed past the stop deadline.  SIGTERM or SIGINT drains them
      all; a second signal asks them to stop at once.
    * Under systemd's ``Type=notify``: READY, RELOADING, STOPPING, STATUS, and the watchdog
      pinged while every worker's loop turns.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.count = config.workers
        # one worker: one plain socket, which a second server on the port cannot join
        self.listeners = Listeners(config.reuse_port and config.workers > 1)
        self.workers: dict[int, Worker] = {}  # every worker process not yet reaped
        self.current = Generation(1)
        self.pending: Generation | None = None  # the one a reload is starting
        self.reload_again = False  # SIGHUP during a reload
        self.wakeups = Wakeups()  # signals, the workers' pipes
        self.stopping = False
        self.failed_starts = 0
        self.announced = False  # "Server ready" logged
        self.to_announce: str | None = ""  # READY=1 due once settled, with this note
        self.exit_code = 0
        self.notifier = Notifier()
        self.watchdog = Watchdog(self.notifier, config)
        self.status_sent: str | None = None  # the last STATUS= systemd heard
        self.recycling = Recycling(config)  # --max-requests, -memory, -lifetime
        self.health = HealthEndpoint()  # --metrics-endpoint
        # readiness (/readyz) and --unready-delay: the old workers of a reload, held until
        # drain_at and then draining (unready until they are gone), and when a stop's
        # workers are told to drain
        self.to_drain: list[Worker] = []
        self.drain_at: float | None = None
        self.reload_leaving: set[int] = set()
        self.stop_at: float | None = None
        self.filled: set[tuple[int, int]] = set()  # (generation, slot) started once
        self.last_turn = time.monotonic()
        self.metrics: SupervisorMetrics | None = None

    def run(self) -> int:
        set_title(f"supervisor ({self.count} workers)")
        unavailable = self.recycling.unavailable()
        if unavailable is not None:
            logger.error("%s", unavailable)
            return 1
        try:
            for name in self.listeners.bind(self.config.endpoint_descriptions(), self.count):
                logger.info("Listening on %s", name)
        except EndpointError as exc:
            logger.error("%s", exc)
            return 1
        try:
            if not self.health.open(self.config, self.liveness, self.readiness):
                self.listeners.close()
                return 1
            self.metrics = self.health.metrics
            return self._run()
        finally:
            self.health.close()

    def _run(self) -> int:
        self.watchdog.start(time.monotonic())
        self.recycling.start(time.monotonic())
        try:
            with self.wakeups:
                self._loop()
        finally:
            for worker in self.workers.values():
                worker.close_pipe()
            self.listeners.close()
        logger.info("Server stopped")
        return self.exit_code

    def _loop(self) -> None:
        while True:
            self._handle_signals()
            self._reap()
            now = self.last_turn = time.monotonic()
            self._check_deadlines(now)
            if self.metrics is not None:
                self.metrics.set_workers(w.state.value for w in self.workers.values())
            if self.stopping:
                if not self.workers:
                    return
            else:
                self.recycling.check(now, self.current)
                self._settle(now)
                if self.watchdog.next_ping is not None:
                    self.watchdog.ping(now, self.workers.values())
            self._wait(now)

    # -- signals: they change what is wanted; _settle does the rest

    def _handle_signals(self) -> None:
        for signum in self.wakeups.received():
            if signum in (signal.SIGTERM, signal.SIGINT):
                if self.stopping:
                    self._stop_now()
                else:
                    logger.info("Received %s, stopping %d workers gracefully",
                                signal.Signals(signum).name, len(self.workers))
                    self._begin_stop()
            elif self.stopping:
                continue  # a stop outranks everything else
            elif signum == signal.SIGHUP:
                if self.pending is not None:
                    self.reload_again = True
                    logger.info("Received SIGHUP during a reload: another reload starts "
                                "once this one ends")
                else:
                    self._reload("Received SIGHUP")
            elif signum == signal.SIGTTIN:
                self._add_slot()
            elif signum == signal.SIGTTOU:
                self._remove_slot()

    def _begin_stop(self, delay: bool = True) -> None:
        """Unready at once; the workers drain after --unready-delay."""
        self.stopping = True
        self.pending = None
        self.reload_again = False
        self.to_drain = []
        self.drain_at = None
        self.notifier.stopping()
        wait = self.config.unready_delay if delay else 0.0
        if wait:
            logger.info("Unready (/readyz answers 503); the workers stop accepting in %gs "
                        "(--unready-delay)", wait)
            self.stop_at = time.monotonic() + wait
        else:
            self._drain_all()

    def _drain_all(self) -> None:
        self.stop_at = None
        for worker in list(self.workers.values()):
            self._retire(worker, "stopping", log=False)

    def _stop_now(self) -> None:
        # SIGINT: a worker takes a repeated SIGTERM (systemd sends one to every process of
        # the service, besides ours) as the same graceful stop
        logger.warning("Second stop signal: workers stop at once")
        self.exit_code = 1
        if self.stop_at is not None:
            self._drain_all()
        soon = time.monotonic() + STOP_MARGIN
        for worker in self.workers.values():
            worker.signal(signal.SIGINT)
            if worker.deadline is not None:
                worker.deadline = min(worker.deadline, soon)

    def _reload(self, why: str) -> None:
        self.pending = Generation(self.current.number + 1)
        self.notifier.reloading()
        logger.info("%s: starting %d new workers; the current ones serve until every new "
                    "one is ready", why, self.count)

    def _add_slot(self) -> None:
        try:
            self.listeners.slot(self.count)  # its own sockets, with reuse-port
        except EndpointError as exc:
            logger.error("Received SIGTTIN: cannot add a worker: %s", exc)
            return
        self.count += 1
        logger.info("Received SIGTTIN: adding a worker (%d now)", self.count)

    def _remove_slot(self) -> None:
        if self.count <= 1:
            logger.info("Received SIGTTOU: one worker is the fewest; none removed")
            return
        self.count -= 1
        slot = self.count
        logger.info("Received SIGTTOU: removing a worker (%d now)", self.count)
        self.listeners.release(slot)  # before its workers are told: see listeners.py
        for generation in self._generations():
            generation.start_after.pop(slot, None)
            for worker in list(generation.members()):
                if worker.slot == slot:
                    self._retire(worker, "SIGTTOU")

    # -- the transitions of one worker

    def _start(self, generation: Generation, slot: int,
               successor_of: Worker | None = None) -> None:
        fds, descriptions = self.listeners.slot(slot)  # bound already: see _add_slot
        try:
            worker = spawn(generation, slot, fds, descriptions,
                           self.config.worker_boot_timeout)
        except OSError as exc:
            logger.error("Cannot start a worker: %s; trying again in %.1fs", exc,
                         MAX_RETRY_DELAY)
            generation.start_after[slot] = time.monotonic() + MAX_RETRY_DELAY
            return
        self.workers[worker.pid] = worker
        if self.metrics is not None:
            place = (generation.number, slot)
            reason = ("recycle" if successor_of is not None
                      else "reload" if generation is self.pending
                      else "replacement" if place in self.filled
                      else "scale_up" if self.announced else "startup")
            self.filled.add(place)
            self.metrics.starts.labels(reason).inc()
        if successor_of is None:
            generation.slots[slot] = worker
        else:
            worker.successor_of = successor_of
            generation.successors[slot] = worker
        logger.info("Started worker %d", worker.pid)

    def _became_ready(self, worker: Worker) -> None:
        """STARTING -> READY."""
        worker.state = READY
        worker.deadline = None
        worker.last_beat = worker.ready_at = now = time.monotonic()
        self.failed_starts = 0
        logger.info("Worker %d ready", worker.pid)
        self.recycling.became_ready(worker, now)
        old = worker.successor_of
        if old is not None:
            generation = worker.generation
            worker.successor_of = None
            del generation.successors[worker.slot]
            generation.slots[worker.slot] = worker
            self.recycling.successor_ready(generation, worker.slot)
            reason = old.recycle or RecycleReason.MAX_REQUESTS  # (a successor has one)
            self._retire(old, reason.flag)
            self.recycled(old, worker, reason)

    def recycled(self, old: Worker, new: Worker, reason: RecycleReason) -> None:
        """``new`` took the slot of ``old``, replaced for ``reason``, and ``old`` drains: one
        call for each recycle done (one whose successor never became ready, or that a reload
        overtook, is not one), counted by ``reason.value``."""
        if self.metrics is not None:
            self.metrics.recycles.labels(reason.value).inc()

    def _retire(self, worker: Worker, why: str, log: bool = True) -> None:
        """STARTING or READY -> DRAINING: out of its role, drained as on SIGTERM, killed
        past the stop deadline."""
        if worker.state in (DRAINING, KILLED):
            return
        worker.generation.leave(worker)
        if self.metrics is not None:
            self.metrics.retired.labels(RETIRE_REASONS.get(why, why)).inc()
        worker.state = DRAINING
        worker.deadline = time.monotonic() + 2 * self.config.shutdown_timeout + STOP_MARGIN
        if log:
            logger.info("Stopping worker %d gracefully (%s)", worker.pid, why)
        worker.signal(signal.SIGTERM)

    def _kill(self, worker: Worker, dump: bool = False) -> None:
        """-> KILLED: SIGKILL, or first the signal that dumps its threads' tracebacks."""
        worker.state = KILLED
        if dump:
            worker.signal(DUMP_SIGNAL)
            worker.deadline = time.monotonic() + DUMP_GRACE
        else:
            worker.signal(signal.SIGKILL)
            worker.deadline = None

    def _lost(self, worker: Worker, why: str, exited: bool) -> None:
        """A STARTING or READY worker left its role without being asked to (it exited, or is
        being killed): what its generation does about it."""
        generation, slot, pid = worker.generation, worker.slot, worker.pid
        was_ready = worker.state is READY
        replaced = worker.successor_of
        generation.leave(worker)
        now = time.monotonic()
        if worker in self.to_drain:
            self.to_drain.remove(worker)
            logger.warning("Worker %d %s (it was about to drain after a reload)", pid, why)
        elif generation is self.pending:
            if was_ready:
                logger.warning("New worker %d %s; starting another in its place", pid, why)
            else:
                self._end_reload(f"new worker {pid} {why}"
                                 + (" (see its error above)" if exited else ""))
        elif replaced is not None:
            delay = self.recycling.successor_failed(generation, slot, now)
            logger.error("The successor %d of worker %d %s; worker %d goes on serving, and "
                         "a new successor starts in %.1fs", pid, replaced.pid, why,
                         replaced.pid, delay)
        elif slot in generation.slots:
            logger.warning("Worker %d %s; its successor %d takes its place", pid, why,
                           generation.slots[slot].pid)
        elif was_ready:
            logger.warning("Worker %d %s; starting a new one", pid, why)
        else:
            self.failed_starts += 1
            if self.failed_starts >= FAILED_STARTS_ALLOWED:
                logger.error("Worker %d %s: %d workers in a row failed to start (see their "
                             "errors above); stopping the server", pid, why,
                             self.failed_starts)
                self.exit_code = 1
                self._begin_stop(delay=False)
                return
            delay = min(FIRST_RETRY_DELAY * 2 ** (self.failed_starts - 1), MAX_RETRY_DELAY)
            logger.warning("Worker %d %s; starting a new one in %.1fs", pid, why, delay)
            generation.start_after[slot] = now + delay

    def _end_reload(self, failure: str | None) -> None:
        new = self.pending
        assert new is not None
        self.pending = None
        if self.metrics is not None:
            self.metrics.reloads.labels("done" if failure is None else "failed").inc()
        if failure is None:
            old, self.current = self.current, new
            leaving = list(old.members())
            logger.info("Reloaded: workers %s serve; %s drain",
                        ", ".join(str(w.pid) for w in new.slots.values()),
                        ", ".join(str(w.pid) for w in leaving) or "none")
            # unready until they are gone (a load balancer moves its traffic first)
            self.reload_leaving.update(w.pid for w in leaving)
            delay = self.config.unready_delay
            if delay and leaving:
                logger.info("Unready (/readyz answers 503); workers %s drain in %gs "
                            "(--unready-delay)", ", ".join(str(w.pid) for w in leaving),
                            delay)
                self.to_drain.extend(leaving)
                self.drain_at = time.monotonic() + delay
            else:
                for worker in leaving:
                    self._retire(worker, "reloaded")
            self.to_announce = ""
        else:
            logger.error("Reload failed: %s; the current workers go on serving", failure)
            for worker in list(new.members()):
                self._retire(worker, "its reload failed")
            self.to_announce = f"Reload failed ({failure}); "
        if self.reload_again:
            self.reload_again = False
            self._reload("Reloading again (SIGHUP during the last reload)")

    # -- settling: start what each live generation lacks, end a ready reload, tell systemd

    def _generations(self) -> list[Generation]:
        return [self.current] if self.pending is None else [self.current, self.pending]

    def _settle(self, now: float) -> None:
        for generation in self._generations():
            for slot in range(self.count):
                if slot not in generation.slots \
                        and generation.start_after.get(slot, 0.0) <= now:
                    generation.start_after.pop(slot, None)
                    self._start(generation, slot)
        for worker in Recycling.due(self.current, self.pending):
            if self.current.recycle_after.get(worker.slot, now) > now:
                continue  # its last successor failed: the next one waits
            logger.info("Worker %d (slot %d) %s; starting its successor", worker.pid,
                        worker.slot, worker.recycle_why)
            self._start(self.current, worker.slot, successor_of=worker)
        if self.pending is not None and self._all_ready(self.pending):
            self._end_reload(None)
        if self.pending is None and self._all_ready(self.current):
            status = self._status()
            if self.to_announce is not None:
                if not self.announced:
                    self.announced = True
                    logger.info("Server ready (%s)", status)
                self.notifier.ready(self.to_announce + status)
                self.to_announce = None
            elif status != self.status_sent:  # a worker replaced: systemctl status's pids
                self.notifier.status(status)
            self.status_sent = status

    def _all_ready(self, generation: Generation) -> bool:
        return all(slot in generation.slots and generation.slots[slot].state is READY
                   for slot in range(self.count))

    def _status(self) -> str:
        serving = sorted(w.pid for w in self.current.slots.values() if w.state is READY)
        return f"{len(serving)} workers: " + ", ".join(map(str, serving))

    # -- deadlines

    def _check_deadlines(self, now: float) -> None:
        if self.stop_at is not None and now >= self.stop_at:
            self._drain_all()
        if self.drain_at is not None and now >= self.drain_at:
            self.drain_at = None
            leaving, self.to_drain = self.to_drain, []
            for worker in leaving:
                self._retire(worker, "reloaded")
        timeout = self.config.worker_timeout
        for worker in list(self.workers.values()):
            if worker.state is READY and timeout and now - worker.last_beat >= timeout:
                self._read_messages(worker)  # what came while this loop was busy
                silent = time.monotonic() - worker.last_beat
                if silent >= timeout:
                    self._death("hung")
                    self._lost(worker, f"sent no heartbeat for {silent:.1f}s "
                                       f"(--worker-timeout {timeout:g}): its event loop is "
                                       "stuck; killing it (its threads' tracebacks follow)",
                               exited=False)
                    self._kill(worker, dump=True)
            elif worker.deadline is None or now < worker.deadline:
                continue
            elif worker.state is STARTING:
                self._death("boot_timeout")
                self._lost(worker, f"was not ready within "
                                   f"{self.config.worker_boot_timeout:g}s "
                                   "(--worker-boot-timeout); killed", exited=False)
                self._kill(worker)
            elif worker.state is DRAINING:
                logger.error("Worker %d did not stop in time; killing it", worker.pid)
                self._death("drain_timeout")
                if self.stopping:
                    self.exit_code = 1
                self._kill(worker)
            else:  # KILLED, its tracebacks dumped: now SIGKILL
                worker.signal(signal.SIGKILL)
                worker.deadline = None

    def _next_deadline(self, now: float) -> float | None:
        times = [w.deadline for w in self.workers.values() if w.deadline is not None]
        times.extend(t for t in (self.stop_at, self.drain_at) if t is not None)
        if self.metrics is not None:
            times.append(now + LIVE_TURN)  # (see liveness)
        timeout = self.config.worker_timeout
        if timeout:
            times.extend(w.last_beat + timeout for w in self.workers.values()
                         if w.state is READY)
        if not self.stopping:
            for generation in self._generations():
                times.extend(generation.start_after.get(slot, now)
                             for slot in range(self.count) if slot not in generation.slots)
            times.extend(self.recycling.deadlines(now, self.current, self.pending))
            if self.watchdog.next_ping is not None:
                times.append(self.watchdog.next_ping)
        return min(times) if times else None

    def _death(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.deaths.labels(reason).inc()

    # -- health (--metrics-endpoint; asked from the listener's thread): supervisor_health.py

    def liveness(self) -> tuple[bool, str]:
        return liveness(self)

    def readiness(self) -> tuple[bool, str]:
        return readiness(self)

    # -- the workers' exits and messages

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue  # not ours: as PID 1 we reap whatever is orphaned to us
            if self.metrics is not None:
                self.metrics.process_dead(pid)
            self.reload_leaving.discard(pid)
            self._read_messages(worker)
            worker.close_pipe()
            code = os.waitstatus_to_exitcode(status)
            worker.process.returncode = code
            self._exited(worker, code)

    def _exited(self, worker: Worker, code: int) -> None:
        if self.metrics is not None and worker.state in (STARTING, READY):
            self._death("failed_start" if worker.state is STARTING else "exited")
        if worker.state is STARTING:
            self._lost(worker, f"exited with status {code} before it was ready", exited=True)
        elif worker.state is READY:
            self._lost(worker, f"exited with status {code}", exited=True)
        elif self.stopping:
            if code not in STOPPED_STATUSES:
                logger.warning("Worker %d exited with status %s while stopping",
                               worker.pid, code)
                self.exit_code = 1
        elif worker.state is KILLED or code not in STOPPED_STATUSES:
            logger.info("Worker %d stopped (status %s)", worker.pid, code)
        else:
            logger.info("Worker %d stopped", worker.pid)

    def _read_messages(self, worker: Worker) -> None:
        data = worker.read_messages()
        if b"R" in data and worker.state is STARTING:
            self._became_ready(worker)
        if b"M" in data:
            worker.recycle_for(RecycleReason.MAX_REQUESTS, "reached --max-requests")

    def _wait(self, now: float) -> None:
        deadline = self._next_deadline(now)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        pipes = {w.pipe: w for w in self.workers.values() if w.pipe is not None}
        for fd in self.wakeups.wait(timeout, pipes):
            self._read_messages(pipes[fd])
