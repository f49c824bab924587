"""``--workers N``: one supervisor binds every listening socket once and runs N worker
processes that serve them.

Workers are the same command line re-executed, told through ``WORKER_ENV`` which inherited
sockets to serve (``fd:`` endpoints, and ``ssl:...:fileno=N`` for TLS ones), so the
``daphne`` command and ``manage.py daphne`` get workers alike.  The supervisor restarts a
worker that dies, forwards SIGTERM/SIGINT so every worker drains gracefully, and exits 0.

On Linux each worker slot has its own socket on every TCP port (SO_REUSEPORT), bound by the
supervisor and kept open across restarts, so the kernel spreads new connections evenly and
a replacement worker finds what waited in its slot's backlog; UNIX sockets and ``--fd`` are
one socket shared by every worker, accepted one connection per wake-up.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from typing import Any

from .config import Config
from .endpoints import (
    EndpointError,
    _fields,
    _remove_stale_unix_socket,
    check_description,
    systemd_fd,
)
from .notify import Notifier, child_environment

logger = logging.getLogger("django_daphne.supervisor")

WORKER_ENV = "DJANGO_DAPHNE_WORKER_ENDPOINTS"
READY_ENV = "DJANGO_DAPHNE_WORKER_READY_FD"
# set for the workers when systemd's watchdog is on: they send a heartbeat every sweep
HEARTBEAT_ENV = "DJANGO_DAPHNE_WORKER_HEARTBEAT"
# workers that exit before they are ready this many times in a row (none becoming ready in
# between) stop the service; each restart after such a failure waits twice as long
FAILED_STARTS_ALLOWED = 5
FIRST_RETRY_DELAY = 0.1
MAX_RETRY_DELAY = 5.0
# after the stop signal, a worker still running this long past twice --shutdown-timeout
# (its drain, then its lifespan shutdown) is killed
STOP_MARGIN = 5.0
# a worker that ends for the stop signal: gracefully (0), or killed by it before it could
# install its handler
STOPPED_STATUSES = (0, -signal.SIGTERM, 128 + signal.SIGTERM)


def worker_endpoints() -> list[str] | None:
    """In a worker: the endpoint descriptions of the inherited sockets; else None."""
    raw = os.environ.get(WORKER_ENV)
    return json.loads(raw) if raw else None


class SupervisorLink:
    """In a worker: the pipe to the supervisor.  One byte per message: ``R`` ready (every
    socket listens), ``.`` alive (the event loop turns: for systemd's watchdog), ``M``
    replace me (``--max-requests`` reached)."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd
        os.set_blocking(fd, False)
        self.heartbeat_wanted = HEARTBEAT_ENV in os.environ
        self.recycle_asked = False

    def _send(self, message: bytes) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, message)
        except BlockingIOError:
            pass  # the supervisor is behind: a heartbeat more or less does not matter
        except OSError:
            os.close(self.fd)  # the supervisor is gone: our parent-death signal is coming
            self.fd = None

    def ready(self) -> None:
        self._send(b"R")

    def heartbeat(self) -> None:
        if self.heartbeat_wanted:
            self._send(b".")

    def recycle(self) -> None:
        if not self.recycle_asked:
            self.recycle_asked = True
            self._send(b"M")


def supervisor_link() -> SupervisorLink | None:
    """In a worker: its link to the supervisor; else None."""
    raw = os.environ.pop(READY_ENV, None)
    if not raw:
        return None
    try:
        return SupervisorLink(int(raw))
    except (OSError, ValueError):
        return None


def accept_one_at_a_time(port: Any) -> None:
    """Make a worker's listening port take one connection per wake-up.

    Every worker waits on the same listening socket.  Twisted accepts up to 100 connections
    (and more as bursts grow) each time the socket is readable, so the first worker to wake
    takes a whole burst, say a load balancer's 50 keep-alive connections, and the others sit
    idle for as long as those connections live.  One accept per wake-up lets the workers
    that woke together share the burst.
    """
    cls = type(port)
    sock = getattr(port, "socket", None)
    if not hasattr(port, "numberAccepts") or sock is None or _reuses_port(sock):
        return  # not a listening port, or this worker's own socket (--reuse-port)
    shared = _SHARED_PORT_CLASSES.get(cls)
    if shared is None:
        shared = type(f"OneAccept{cls.__name__}", (cls,), {
            # a data descriptor: Twisted's doRead cannot grow it again
            "numberAccepts": property(lambda self: 1, lambda self, value: None),
        })
        _SHARED_PORT_CLASSES[cls] = shared
    port.__class__ = shared


_SHARED_PORT_CLASSES: dict[type, type] = {}


def _reuses_port(sock: socket.socket) -> bool:
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))
    except (AttributeError, OSError):
        return False


def reuse_port_available() -> bool:
    """SO_REUSEPORT spreads connections over the sockets that share a port on Linux only
    (elsewhere it may send every connection to one of them)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


Bound = tuple[socket.socket | None, int, str]  # (socket, or None for --fd; fd; description)


def bind(description: str, copies: int = 1) -> tuple[list[Bound], str]:
    """Bind one endpoint here, in the supervisor.

    Returns what each of ``copies`` worker slots serves (socket or None for an inherited fd,
    its fd, the endpoint description the worker uses) and how the log names the endpoint.
    A TCP endpoint asked for more than one copy gets one socket per slot on the same port
    (SO_REUSEPORT); any other is one socket that every slot shares."""
    problems = check_description(description)
    if problems:
        raise EndpointError(problems[0])
    kind, args, kwargs = _fields(description)
    if kind in ("tcp", "ssl"):
        port = int(kwargs.get("port") or (args[0] if args else 0))
        host = kwargs.get("interface", "")
        sockets: list[socket.socket] = []
        try:
            for _ in range(copies):
                sock = socket.socket(_family(host), socket.SOCK_STREAM)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if copies > 1:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((host, port))
                port = sock.getsockname()[1]  # port 0: the others join the one it got
                sock.listen(int(kwargs.get("backlog", 50)))
                sock.set_inheritable(True)
        except OSError as exc:
            for sock in sockets:
                sock.close()
            where = f"{host or '*'}:{port}"
            assert exc.strerror is not None  # a socket call's error has its message
            raise EndpointError(f"Cannot listen on {where}: {exc.strerror.lower()}") from None
        bound_host, bound_port = sockets[0].getsockname()[:2]
        where = f"[{bound_host}]:{bound_port}" if ":" in bound_host else \
            f"{bound_host}:{bound_port}"
        if kind == "ssl":
            return [(sock, sock.fileno(), f"{description}:fileno={sock.fileno()}")
                    for sock in sockets], f"TLS address {where}"
        domain = "INET6" if sockets[0].family == socket.AF_INET6 else "INET"
        return [(sock, sock.fileno(), f"fd:fileno={sock.fileno()}:domain={domain}")
                for sock in sockets], f"TCP address {where}"
    if kind == "unix":
        path = kwargs.get("address") or args[0]
        _remove_stale_unix_socket(description)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
        except OSError as exc:
            sock.close()
            assert exc.strerror is not None  # a socket call's error has its message
            raise EndpointError(f"Cannot listen on {path}: {exc.strerror.lower()}") from None
        os.chmod(path, int(kwargs.get("mode", "666"), 8))
        sock.listen(int(kwargs.get("backlog", 50)))
        sock.set_inheritable(True)
        return [(sock, sock.fileno(), f"fd:fileno={sock.fileno()}:domain=UNIX")] * copies, \
            f"UNIX socket {path}"
    if kind in ("fd", "systemd"):
        fd = systemd_fd(description) if kind == "systemd" else \
            int(kwargs.get("fileno") or args[0])
        if kind == "systemd":
            description = f"fd:fileno={fd}"
            if kwargs.get("domain"):
                description += f":domain={kwargs['domain']}"
        try:
            mode = os.fstat(fd).st_mode
        except OSError as exc:
            raise EndpointError(f"--fd {fd}: not an open socket ({exc})") from None
        if not stat.S_ISSOCK(mode):
            raise EndpointError(f"--fd {fd}: not a socket")
        os.set_inheritable(fd, True)
        return [(None, fd, description)] * copies, f"inherited fd {fd}"
    raise EndpointError(
        f"--workers cannot share endpoint {description!r}: the supervisor binds tcp:, ssl:, "
        "unix:, fd: and systemd: endpoints only"
    )


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


class Worker:
    """One worker process: its slot, its generation (each reload starts a new one), and the
    pipe it reports on (see SupervisorLink)."""

    def __init__(self, process: subprocess.Popen[bytes], slot: int, generation: int,
                 ready_fd: int) -> None:
        self.process = process
        self.pid = process.pid
        self.slot = slot
        self.generation = generation
        self.ready_fd: int | None = ready_fd
        self.ready = False
        self.retiring = False  # told to drain: replaced, or its slot removed
        self.last_beat = time.monotonic()
        self.replaces: int | None = None  # the worker it takes over from (--max-requests)

    def close_ready_fd(self) -> None:
        if self.ready_fd is not None:
            os.close(self.ready_fd)
            self.ready_fd = None


class Supervisor:
    """Binds, spawns, restarts, reloads and drains the worker processes.

    One loop, woken by signals (a wakeup fd) and by the workers' pipes, reaps the workers
    that exit (it reaps any child, so it can run as PID 1 in a container), restarts them,
    and stops them: SIGTERM or SIGINT asks every worker to drain; a second signal asks them
    to stop at once; a worker still running well past the shutdown timeout is killed.

    SIGHUP reloads: a new generation of workers starts on the same sockets (they import the
    application afresh), and once every one of them is ready the old ones drain as on
    SIGTERM; a new generation that fails to start is stopped and the old one goes on
    serving.  A worker that reaches --max-requests is replaced the same way, one at a time.
    SIGTTIN adds a worker, SIGTTOU removes one.  Under systemd's ``Type=notify`` the
    supervisor reports READY, RELOADING, STOPPING and STATUS, and pings the watchdog while
    every worker's loop is turning.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.count = config.workers
        self.sockets: list[socket.socket] = []
        self.unix_paths: list[str] = []
        # what each worker slot serves: its fds and their endpoint descriptions (a slot's
        # replacement worker inherits the same sockets, and whatever waits in their backlog)
        self.slots: list[tuple[list[int], list[str]]] = [([], []) for _ in range(self.count)]
        self.bound_slots = self.count  # slots with sockets of their own; more share them
        self.workers: dict[int, Worker] = {}
        self.restarts: dict[int, float] = {}  # slot -> when to start its next worker
        self.signals: list[int] = []
        self.signals_handled = 0
        self.stopping = False
        self.stop_deadline: float | None = None
        self.failed_starts = 0
        self.announced = False
        self.exit_code = 0
        self.generation = 0  # of the workers that serve
        self.reloading: int | None = None  # the generation being started, during a reload
        self.notifier = Notifier()
        self.next_ping: float | None = None

    def run(self) -> int:
        try:
            own = self.count if self.config.reuse_port and reuse_port_available() else 1
            self.bound_slots = own
            for description in self.config.endpoint_descriptions():
                bound, name = bind(description, own)
                if name.startswith("UNIX socket "):
                    self.unix_paths.append(name[len("UNIX socket "):])
                for slot, (sock, fd, worker_description) in enumerate(
                        bound[slot % len(bound)] for slot in range(self.count)):
                    if sock is not None and sock not in self.sockets:
                        self.sockets.append(sock)
                    self.slots[slot][0].append(fd)
                    self.slots[slot][1].append(worker_description)
                logger.info("Listening on %s", name)
        except EndpointError as exc:
            logger.error("%s", exc)
            self._close_sockets()
            return 1
        wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(wakeup_r, False)
        os.set_blocking(wakeup_w, False)
        self.wakeup_fd = wakeup_r
        signal.set_wakeup_fd(wakeup_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the loop
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN,
                       signal.SIGTTOU):
            signal.signal(signum, self._on_signal)
        if self.notifier.watchdog_interval is not None:
            self.next_ping = time.monotonic()
        try:
            for slot in range(self.count):
                if self._stop_asked():  # a stop signal during startup: start no more
                    break
                self._spawn(slot)
            self._watch()
        finally:
            signal.set_wakeup_fd(-1)
            os.close(wakeup_r)
            os.close(wakeup_w)
            for worker in self.workers.values():
                worker.close_ready_fd()
            self._close_sockets()
        logger.info("Server stopped")
        return self.exit_code

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()
        for path in self.unix_paths:  # the workers leave the file to the one who bound it
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)
            except OSError:
                pass

    def _spawn(self, slot: int, generation: int | None = None) -> Worker:
        fds, descriptions = self.slots[slot]
        ready_r, ready_w = os.pipe()
        os.set_blocking(ready_r, False)  # a worker's own child may hold the other end
        env = child_environment(os.environ)
        env[WORKER_ENV] = json.dumps(descriptions)
        env[READY_ENV] = str(ready_w)
        if self.notifier.watchdog_interval is not None:
            env[HEARTBEAT_ENV] = "1"
        argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
        try:
            process = subprocess.Popen(
                argv, env=env, pass_fds=[*fds, ready_w], start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid())
                if sys.platform.startswith("linux") else None,
            )
        except BaseException:
            os.close(ready_r)
            raise
        finally:
            os.close(ready_w)
        worker = Worker(process, slot, self.generation if generation is None else generation,
                        ready_r)
        self.workers[process.pid] = worker
        logger.info("Started worker %d", process.pid)
        return worker

    # -- signals, acted on by the loop (which the wakeup fd wakes)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)

    def _stop_asked(self) -> bool:
        return any(s in (signal.SIGTERM, signal.SIGINT) for s in self.signals)

    def _send(self, signum: int, workers: list[Worker] | None = None) -> None:
        for worker in self.workers.values() if workers is None else workers:
            try:
                os.kill(worker.pid, signum)
            except ProcessLookupError:
                pass

    def _handle_signals(self) -> None:
        while self.signals_handled < len(self.signals):
            signum = self.signals[self.signals_handled]
            self.signals_handled += 1
            if signum == signal.SIGHUP:
                self._reload()
            elif signum == signal.SIGTTIN:
                self._add_worker()
            elif signum == signal.SIGTTOU:
                self._remove_worker()
            elif not self.stopping:
                logger.info("Received %s, stopping %d workers gracefully",
                            signal.Signals(signum).name, len(self.workers))
                self._begin_stop()
            else:
                # SIGINT: a worker takes a repeated SIGTERM (systemd sends one to every
                # process of the service, besides ours) as the same graceful stop
                logger.warning("Second stop signal: workers stop at once")
                self.exit_code = 1
                self._send(signal.SIGINT)
                if self.stop_deadline is not None:
                    self.stop_deadline = min(self.stop_deadline,
                                             time.monotonic() + STOP_MARGIN)

    def _begin_stop(self) -> None:
        self.stopping = True
        self.reloading = None
        self.restarts.clear()
        self.notifier.stopping()
        self.stop_deadline = (time.monotonic() + 2 * self.config.shutdown_timeout
                              + STOP_MARGIN)
        self._send(signal.SIGTERM)

    def _retire(self, workers: list[Worker], why: str) -> None:
        """Drain these workers as on SIGTERM; they are not restarted."""
        for worker in workers:
            if not worker.retiring:
                worker.retiring = True
                logger.info("Stopping worker %d gracefully (%s)", worker.pid, why)
                self._send(signal.SIGTERM, [worker])

    def _serving(self) -> list[Worker]:
        return [w for w in self.workers.values() if not w.retiring
                and w.generation == self.generation and w.replaces is None]

    # -- reload, recycling and scaling

    def _reload(self) -> None:
        if self.stopping:
            return
        if self.reloading is not None:
            logger.info("Received SIGHUP during a reload: the reload under way goes on")
            return
        self.reloading = self.generation + 1
        self.restarts.clear()  # the new generation fills every slot
        self.notifier.reloading()
        logger.info("Received SIGHUP: starting %d new workers; the current ones serve until "
                    "every new one is ready", self.count)
        for slot in range(self.count):
            self._spawn(slot, self.reloading)

    def _reload_ready(self) -> None:
        """Every worker of the new generation is ready: the old ones drain."""
        new = self.reloading
        assert new is not None
        fresh = [w for w in self.workers.values() if w.generation == new]
        if len(fresh) < self.count or not all(w.ready for w in fresh):
            return
        old = [w for w in self.workers.values() if w.generation != new and not w.retiring]
        self.generation = new
        self.reloading = None
        logger.info("Reloaded: workers %s serve; %s drain",
                    ", ".join(str(w.pid) for w in fresh),
                    ", ".join(str(w.pid) for w in old) or "none")
        self._retire(old, "reloaded")
        self.notifier.ready(self._status())

    def _reload_failed(self, worker: Worker, code: int) -> None:
        logger.error("Reload failed: new worker %d exited with status %s before it was ready "
                     "(see its error above); the current workers go on serving",
                     worker.pid, code)
        self._retire([w for w in self.workers.values() if w.generation == self.reloading],
                     "its reload failed")
        self.reloading = None
        self.notifier.ready(self._status())

    def _recycle(self, worker: Worker) -> None:
        """A worker reached --max-requests: its successor starts, then it drains."""
        if self.stopping or worker.retiring or worker.generation != self.generation:
            return
        if any(w.replaces == worker.pid for w in self.workers.values()):
            return
        logger.info("Worker %d reached --max-requests; starting its successor", worker.pid)
        successor = self._spawn(worker.slot)
        successor.replaces = worker.pid

    def _add_worker(self) -> None:
        if self.stopping:
            return
        slot = self.count
        self.count += 1
        if slot >= len(self.slots):
            # a slot beyond those with sockets of their own shares one's
            self.slots.append(self.slots[slot % self.bound_slots])
        logger.info("Received SIGTTIN: adding a worker (%d now)", self.count)
        self._spawn(slot)

    def _remove_worker(self) -> None:
        if self.stopping:
            return
        if self.count <= 1:
            logger.info("Received SIGTTOU: one worker is the fewest; none removed")
            return
        self.count -= 1
        slot = self.count
        self.restarts.pop(slot, None)
        logger.info("Received SIGTTOU: removing a worker (%d now)", self.count)
        self._retire([w for w in self.workers.values() if w.slot == slot], "SIGTTOU")

    def _status(self) -> str:
        serving = [w.pid for w in self.workers.values() if not w.retiring and w.ready]
        return f"{len(serving)} workers: " + ", ".join(map(str, sorted(serving)))

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
            self._read_messages(worker)
            worker.close_ready_fd()
            code = os.waitstatus_to_exitcode(status)
            worker.process.returncode = code
            self._exited(worker, code)

    def _exited(self, worker: Worker, code: int) -> None:
        pid = worker.pid
        if self.stopping:
            if code not in STOPPED_STATUSES:
                logger.warning("Worker %d exited with status %s while stopping", pid, code)
                self.exit_code = 1
            return
        if worker.retiring:
            logger.info("Worker %d stopped", pid)
            return
        if self.reloading is not None and worker.generation == self.reloading \
                and not worker.ready:
            self._reload_failed(worker, code)
            return
        if worker.replaces is not None and not worker.ready:
            logger.error("The successor %d of worker %d exited with status %s before it was "
                         "ready; worker %d goes on serving", pid, worker.replaces, code,
                         worker.replaces)
            return
        if worker.slot >= self.count:
            return  # its slot was removed
        if worker.ready:
            logger.warning("Worker %d exited with status %s; starting a new one", pid, code)
            self.restarts[worker.slot] = time.monotonic()
            return
        self.failed_starts += 1
        if self.failed_starts >= FAILED_STARTS_ALLOWED:
            logger.error(
                "Worker %d exited with status %s before it was ready: %d workers in a row "
                "failed to start (see their errors above); stopping the server",
                pid, code, self.failed_starts,
            )
            self.exit_code = 1
            self._begin_stop()
            return
        delay = min(FIRST_RETRY_DELAY * 2 ** (self.failed_starts - 1), MAX_RETRY_DELAY)
        logger.warning("Worker %d exited with status %s before it was ready; starting a new "
                       "one in %.1fs", pid, code, delay)
        self.restarts[worker.slot] = time.monotonic() + delay

    def _read_messages(self, worker: Worker) -> None:
        if worker.ready_fd is None:
            return
        try:
            data = os.read(worker.ready_fd, 512)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the worker closed it on its way out
            worker.close_ready_fd()
            return
        worker.last_beat = time.monotonic()
        if b"R" in data and not worker.ready:
            self._became_ready(worker)
        if b"M" in data:
            self._recycle(worker)

    def _became_ready(self, worker: Worker) -> None:
        worker.ready = True
        self.failed_starts = 0
        logger.info("Worker %d ready", worker.pid)
        if worker.replaces is not None:
            old = self.workers.get(worker.replaces)
            worker.replaces = None
            if old is not None:
                self._retire([old], "--max-requests")
        if self.reloading is not None and worker.generation == self.reloading:
            self._reload_ready()
            return
        if not self.announced and not self.stopping and self.reloading is None:
            serving = self._serving()
            if len(serving) == self.count and all(w.ready for w in serving):
                self.announced = True
                logger.info("Server ready (%d workers: %s)", self.count,
                            ", ".join(str(w.pid) for w in serving))
                self.notifier.ready(self._status())

    def _ping_watchdog(self, now: float) -> None:
        """WATCHDOG=1 while every worker's loop turns (it sends a heartbeat each sweep);
        a stuck one stops the pings, and systemd restarts the service."""
        interval = self.notifier.watchdog_interval
        assert interval is not None and self.next_ping is not None
        if now < self.next_ping:
            return
        self.next_ping = now + interval
        late = [w for w in self.workers.values()
                if w.ready and not w.retiring and now - w.last_beat > 2 * interval]
        if late:
            logger.warning("Worker %s sent no heartbeat for %.1fs: no watchdog ping",
                           ", ".join(str(w.pid) for w in late), now - late[0].last_beat)
            return
        self.notifier.watchdog()

    def _watch(self) -> None:
        while True:
            self._handle_signals()
            self._reap()
            now = time.monotonic()
            for slot, due in list(self.restarts.items()):
                if due <= now and not self.stopping:
                    del self.restarts[slot]
                    self._spawn(slot)
            if self.stopping and self.stop_deadline is not None and now >= self.stop_deadline:
                for pid in self.workers:
                    logger.error("Worker %d did not stop in time; killing it", pid)
                self._send(signal.SIGKILL)
                self.exit_code = 1
                self.stop_deadline = None
            if self.next_ping is not None and not self.stopping:
                self._ping_watchdog(now)
            if not self.workers and (self.stopping or not self.restarts):
                return
            waits = [*self.restarts.values()]
            if self.stopping and self.stop_deadline is not None:
                waits.append(self.stop_deadline)
            if self.next_ping is not None and not self.stopping:
                waits.append(self.next_ping)
            timeout = max(0.0, min(waits) - now) if waits else None
            readers = [self.wakeup_fd, *(w.ready_fd for w in self.workers.values()
                                         if w.ready_fd is not None)]
            readable, _, _ = select.select(readers, [], [], timeout)
            for fd in readable:
                if fd == self.wakeup_fd:
                    try:
                        while os.read(fd, 512):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    for worker in list(self.workers.values()):
                        if worker.ready_fd == fd:
                            self._read_messages(worker)
