"""A ``--workers`` worker's side of its link to the supervisor: which inherited sockets it
serves, and the pipe it reports on (ready, alive, replace me)."""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import socket
import sys
from typing import Any

from .titles import TITLE_ENV, set_title

WORKER_ENV = "DJANGO_DAPHNE_WORKER_ENDPOINTS"
READY_ENV = "DJANGO_DAPHNE_WORKER_READY_FD"
# what the supervisor sends a worker whose loop stopped turning (SIGKILL follows): every
# thread's traceback goes to stderr, so the log says where it was stuck, then it aborts
DUMP_SIGNAL = signal.SIGABRT


def worker_endpoints() -> list[str] | None:
    """In a worker: the endpoint descriptions of the inherited sockets; else None."""
    raw = os.environ.get(WORKER_ENV)
    return json.loads(raw) if raw else None


class SupervisorLink:
    """In a worker: the pipe to the supervisor.  One byte per message: ``R`` ready (every
    socket listens), ``.`` alive (sent by each sweep of the event loop: a loop that stops
    turning is found hung and replaced), ``M`` replace me (``--max-requests`` reached)."""

    def __init__(self, fd: int, role: str = "worker") -> None:
        self.fd: int | None = fd
        os.set_blocking(fd, False)
        self.recycle_asked = False
        self.role = role  # its process title: "worker SLOT (generation N)"

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
        self._send(b".")

    def recycle(self) -> None:
        if not self.recycle_asked:
            self.recycle_asked = True
            self._send(b"M")

    def draining(self) -> None:
        """Its process title says it drains: while a recycled worker's successor serves
        beside it, ``ps`` tells the two apart."""
        set_title(f"{self.role}, draining")


def supervisor_link() -> SupervisorLink | None:
    """In a worker: its link to the supervisor (taken once); else None.  From then on the
    supervisor's DUMP_SIGNAL writes every thread's traceback before the process aborts
    (faulthandler: a handler in C, which runs even while the loop is blocked)."""
    raw = os.environ.pop(READY_ENV, None)
    if not raw:
        return None
    try:
        link = SupervisorLink(int(raw), os.environ.pop(TITLE_ENV, "worker"))
    except (OSError, ValueError):
        return None
    faulthandler.enable(file=sys.stderr, all_threads=True)
    set_title(link.role)
    return link


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
