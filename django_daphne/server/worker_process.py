"""The supervisor's record of its worker processes: each one's state, and the generation
(one per reload) whose slot it fills."""

from __future__ import annotations

import enum
import json
import mmap
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from .notify import child_environment
from .titles import TITLE_ENV
from .worker_link import READY_ENV, WORKER_ENV


class WorkerState(enum.Enum):
    """Where a worker process is in its life.  A STARTING or READY worker fills a slot of
    its generation (or is about to take one over, as a recycled worker's successor); a
    DRAINING or KILLED one has left its role and only waits to be reaped."""

    STARTING = "starting"  # importing the application: it has until its boot deadline
    READY = "ready"  # listening and serving: its loop's heartbeat is watched
    DRAINING = "draining"  # sent SIGTERM: it has until its stop deadline
    KILLED = "killed"  # sent SIGKILL (or the traceback signal first, then SIGKILL)


class RecycleReason(enum.Enum):
    """Why a serving worker is replaced, its successor started first.  The value is a short
    name, stable enough to count recycles by (Supervisor.recycled); ``flag`` is the option
    that asked for it, as the log names it."""

    MAX_REQUESTS = "max-requests"  # the worker served --max-requests (it said so: ``M``)
    MEMORY = "memory"  # the supervisor measured it over --max-worker-memory
    LIFETIME = "lifetime"  # it has served for --max-worker-lifetime (plus its jitter)

    @property
    def flag(self) -> str:
        return _RECYCLE_FLAGS[self]


_RECYCLE_FLAGS = {
    RecycleReason.MAX_REQUESTS: "--max-requests",
    RecycleReason.MEMORY: "--max-worker-memory",
    RecycleReason.LIFETIME: "--max-worker-lifetime",
}


class Worker:
    """One worker process: its slot, its generation, its state and the pipe it reports on
    (see worker_link.SupervisorLink)."""

    def __init__(self, process: subprocess.Popen[bytes], generation: Generation, slot: int,
                 pipe: int, deadline: float) -> None:
        self.process = process
        self.pid = process.pid
        self.generation = generation
        self.slot = slot
        self.pipe: int | None = pipe
        self.state = WorkerState.STARTING
        self.deadline: float | None = deadline  # of the state it is in, if it has one
        self.last_beat = time.monotonic()
        self.ready_at: float | None = None
        # why it is to be replaced (the first reason found wins), and the log's words for it
        self.recycle: RecycleReason | None = None
        self.recycle_why = ""
        self.retire_at: float | None = None  # its --max-worker-lifetime ends, with jitter
        self.over_at_start = False  # over --max-worker-memory when it became ready
        self.successor_of: Worker | None = None  # the worker it replaces once ready

    def recycle_for(self, reason: RecycleReason, why: str) -> bool:
        """Mark it to be replaced for ``reason`` (``why``: what the log says after its pid);
        whether it was not already."""
        if self.recycle is not None:
            return False
        self.recycle, self.recycle_why = reason, why
        return True

    def read_messages(self) -> bytes:
        """What the worker sent on its pipe since the last read (worker_link's one-byte
        messages, each a heartbeat too); b"" when nothing came, and when the worker closed
        the pipe on its way out (it is closed here then)."""
        if self.pipe is None:
            return b""
        try:
            data = os.read(self.pipe, 512)
        except BlockingIOError:
            return b""
        except OSError:
            data = b""
        if not data:
            self.close_pipe()
            return b""
        self.last_beat = time.monotonic()
        return data

    def close_pipe(self) -> None:
        if self.pipe is not None:
            os.close(self.pipe)
            self.pipe = None

    def signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass  # exited: the loop reaps it


class Generation:
    """The workers started together by one reload (or at startup): the worker that fills
    each slot, the successors starting to replace a recycled one, and when an empty slot (or a
    successor that failed) may next be started."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.slots: dict[int, Worker] = {}
        self.successors: dict[int, Worker] = {}
        self.start_after: dict[int, float] = {}  # slot -> a restart's backoff
        self.recycle_after: dict[int, float] = {}  # slot -> a failed successor's backoff
        self.recycle_failures: dict[int, int] = {}

    def members(self) -> Iterator[Worker]:
        yield from self.slots.values()
        yield from self.successors.values()

    def holds(self, worker: Worker) -> bool:
        return (self.slots.get(worker.slot) is worker
                or self.successors.get(worker.slot) is worker)

    def leave(self, worker: Worker) -> None:
        """``worker`` leaves its place; a successor left alone takes its slot over."""
        if self.successors.get(worker.slot) is worker:
            del self.successors[worker.slot]
        elif self.slots.get(worker.slot) is worker:
            del self.slots[worker.slot]
            successor = self.successors.pop(worker.slot, None)
            if successor is not None:
                successor.successor_of = None
                self.slots[worker.slot] = successor


# where resident_memory reads a process's memory (a test points it elsewhere)
PROC = "/proc"


def resident_memory(pid: int) -> int | None:
    """The resident set size of process ``pid`` in bytes, as Linux counts VmRSS (shared
    libraries included, its own child processes not), from /proc/PID/statm: one small read,
    cheap enough every second.  None where it cannot be read (the process is gone, or the
    system has no /proc)."""
    try:
        with open(f"{PROC}/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        return None


def _die_with_parent(parent: int) -> Any:
    def preexec() -> None:  # pragma: no cover - runs in the child before exec
        """Linux: a worker gets SIGTERM if the supervisor is killed outright (kill -9, the
        OOM killer), and drains as on a stop.  The parent-death signal is per thread and
        survives exec; a supervisor that died before it was set is noticed here."""
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
        except OSError:
            pass
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def spawn(generation: Generation, slot: int, fds: list[int], descriptions: list[str],
          boot_timeout: float) -> Worker:
    """Start a worker: this process's command line again, told which inherited sockets to
    serve and which pipe to report on."""
    pipe_r, pipe_w = os.pipe()
    os.set_blocking(pipe_r, False)  # a worker's own child may hold the other end
    env = child_environment(os.environ)
    env[WORKER_ENV] = json.dumps(descriptions)
    env[READY_ENV] = str(pipe_w)
    env[TITLE_ENV] = f"worker {slot} (generation {generation.number})"
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    try:
        process = subprocess.Popen(
            argv, env=env, pass_fds=[*fds, pipe_w], start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid())
            if sys.platform.startswith("linux") else None,
        )
    except BaseException:
        os.close(pipe_r)
        raise
    finally:
        os.close(pipe_w)
    return Worker(process, generation, slot, pipe_r, time.monotonic() + boot_timeout)
