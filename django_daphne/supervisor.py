"""``--workers N``: one supervisor binds every listening socket once and runs N worker
processes that serve them.

Workers are the same command line re-executed, told through ``WORKER_ENV`` which inherited
sockets to serve (``fd:`` endpoints, and ``ssl:...:fileno=N`` for TLS ones), so the
``daphne`` command and ``manage.py daphne`` get workers alike.  The supervisor restarts a
worker that dies, forwards SIGTERM/SIGINT so every worker drains gracefully, and exits 0.
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


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def bind(description: str) -> tuple[socket.socket | None, int, str, str]:
    """Bind one endpoint here, in the supervisor.

    Returns (socket or None for an inherited fd, fd, the description a worker uses, how the
    log names it)."""
    problems = check_description(description)
    if problems:
        raise EndpointError(problems[0])
    kind, args, kwargs = _fields(description)
    if kind in ("tcp", "ssl"):
        port = int(kwargs.get("port") or (args[0] if args else 0))
        host = kwargs.get("interface", "")
        sock = socket.socket(_family(host), socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            where = f"{host or '*'}:{port}"
            raise EndpointError(f"Cannot listen on {where}: {exc.strerror.lower()}") from None
        sock.listen(int(kwargs.get("backlog", 50)))
        sock.set_inheritable(True)
        bound_host, bound_port = sock.getsockname()[:2]
        where = f"[{bound_host}]:{bound_port}" if ":" in bound_host else \
            f"{bound_host}:{bound_port}"
        if kind == "ssl":
            return sock, sock.fileno(), f"{description}:fileno={sock.fileno()}", \
                f"TLS address {where}"
        domain = "INET6" if sock.family == socket.AF_INET6 else "INET"
        return sock, sock.fileno(), f"fd:fileno={sock.fileno()}:domain={domain}", \
            f"TCP address {where}"
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
        return sock, sock.fileno(), f"fd:fileno={sock.fileno()}:domain=UNIX", \
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
        return None, fd, description, f"inherited fd {fd}"
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
        self.fds: list[int] = []
        self.descriptions: list[str] = []
        self.workers: dict[int, tuple[subprocess.Popen, float]] = {}
        self.stopping = False
        self.signals = 0
        self.quick_deaths = 0

    def run(self) -> int:
        try:
            for description in self.config.endpoint_descriptions():
                sock, fd, worker_description, name = bind(description)
                if sock is not None:
                    self.sockets.append(sock)
                self.fds.append(fd)
                self.descriptions.append(worker_description)
                logger.info("Listening on %s", name)
        except EndpointError as exc:
            logger.error("%s", exc)
            return 1
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for _ in range(self.count):
            self._spawn()
        logger.info("Server ready (%d workers: %s)", self.count,
                    ", ".join(str(pid) for pid in self.workers))
        code = self._watch()
        for sock in self.sockets:
            sock.close()
        logger.info("Server stopped")
        return code

    def _spawn(self) -> None:
        env = dict(os.environ)
        env[WORKER_ENV] = json.dumps(self.descriptions)
        argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
        process = subprocess.Popen(
            argv, env=env, pass_fds=self.fds, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self.workers[process.pid] = (process, time.monotonic())
        logger.info("Started worker %d", process.pid)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1
        if not self.stopping:
            logger.info("Received %s, stopping %d workers gracefully",
                        signal.Signals(signum).name, len(self.workers))
        else:
            logger.warning("Second stop signal: workers stop at once")
        self.stopping = True
        for process, _ in self.workers.values():
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
            process, started = entry
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
                    for other, _ in self.workers.values():
                        other.send_signal(signal.SIGTERM)
                    exit_code = 1
                    continue
            else:
                self.quick_deaths = 0
            self._spawn()
        if self.signals > 1:
            exit_code = 1
        return exit_code
