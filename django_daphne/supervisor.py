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
import signal
import socket
import stat
import subprocess
import sys
import time
from typing import Any

from .config import Config
from .endpoints import EndpointError, _fields, _remove_stale_unix_socket, check_description

logger = logging.getLogger("django_daphne.supervisor")

WORKER_ENV = "DJANGO_DAPHNE_WORKER_ENDPOINTS"
# a worker that dies this soon after starting, this many times in a row, stops the service
QUICK_DEATH_SECONDS = 2.0
QUICK_DEATHS_ALLOWED = 5


def worker_endpoints() -> list[str] | None:
    """In a worker: the endpoint descriptions of the inherited sockets; else None."""
    raw = os.environ.get(WORKER_ENV)
    return json.loads(raw) if raw else None


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
            raise EndpointError(f"Cannot listen on {path}: {exc.strerror.lower()}") from None
        os.chmod(path, int(kwargs.get("mode", "666"), 8))
        sock.listen(int(kwargs.get("backlog", 50)))
        sock.set_inheritable(True)
        return [(sock, sock.fileno(), f"fd:fileno={sock.fileno()}:domain=UNIX")] * copies, \
            f"UNIX socket {path}"
    if kind == "fd":
        fd = int(kwargs.get("fileno") or args[0])
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
        "unix: and fd: endpoints only"
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: a worker gets SIGTERM if the supervisor is killed outright."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Supervisor:
    """Binds, spawns, restarts and drains the worker processes."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.count = config.workers
        self.sockets: list[socket.socket] = []
        # what each worker slot serves: its fds and their endpoint descriptions (a slot's
        # replacement worker inherits the same sockets, and whatever waits in their backlog)
        self.slots: list[tuple[list[int], list[str]]] = [([], []) for _ in range(self.count)]
        self.workers: dict[int, tuple[subprocess.Popen, float, int]] = {}
        self.stopping = False
        self.signals = 0
        self.quick_deaths = 0

    def run(self) -> int:
        try:
            own = self.count if self.config.reuse_port and reuse_port_available() else 1
            for description in self.config.endpoint_descriptions():
                bound, name = bind(description, own)
                for slot, (sock, fd, worker_description) in enumerate(
                        bound[slot % len(bound)] for slot in range(self.count)):
                    if sock is not None and sock not in self.sockets:
                        self.sockets.append(sock)
                    self.slots[slot][0].append(fd)
                    self.slots[slot][1].append(worker_description)
                logger.info("Listening on %s", name)
        except EndpointError as exc:
            logger.error("%s", exc)
            return 1
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for slot in range(self.count):
            self._spawn(slot)
        logger.info("Server ready (%d workers: %s)", self.count,
                    ", ".join(str(pid) for pid in self.workers))
        code = self._watch()
        for sock in self.sockets:
            sock.close()
        logger.info("Server stopped")
        return code

    def _spawn(self, slot: int) -> None:
        fds, descriptions = self.slots[slot]
        env = dict(os.environ)
        env[WORKER_ENV] = json.dumps(descriptions)
        argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
        process = subprocess.Popen(
            argv, env=env, pass_fds=fds, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self.workers[process.pid] = (process, time.monotonic(), slot)
        logger.info("Started worker %d", process.pid)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1
        if not self.stopping:
            logger.info("Received %s, stopping %d workers gracefully",
                        signal.Signals(signum).name, len(self.workers))
        else:
            logger.warning("Second stop signal: workers stop at once")
        self.stopping = True
        for process, _, _ in self.workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def _watch(self) -> int:
        exit_code = 0
        while self.workers:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            entry = self.workers.pop(pid, None)
            if entry is None:
                continue
            process, started, slot = entry
            process.returncode = os.waitstatus_to_exitcode(status)
            if self.stopping:
                if process.returncode not in (0, -signal.SIGTERM):
                    exit_code = 1
                continue
            logger.warning("Worker %d exited with status %s; starting a new one",
                           pid, process.returncode)
            if time.monotonic() - started < QUICK_DEATH_SECONDS:
                self.quick_deaths += 1
                if self.quick_deaths >= QUICK_DEATHS_ALLOWED:
                    logger.error("Workers keep dying at startup; stopping the server")
                    self.stopping = True
                    for other, _, _ in self.workers.values():
                        other.send_signal(signal.SIGTERM)
                    exit_code = 1
                    continue
            else:
                self.quick_deaths = 0
            self._spawn(slot)
        if self.signals > 1:
            exit_code = 1
        return exit_code
