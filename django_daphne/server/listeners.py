"""The ``--workers`` supervisor's listening sockets: bound once, in the supervisor, and
handed to the worker processes by descriptor.

With reuse-port (Linux, the default, and more than one worker) each worker slot has its own
socket on every TCP port (SO_REUSEPORT), bound when the slot is first filled (SIGTTIN binds
a new slot's) and kept open across that slot's
restarts, reloads and recycling, so the kernel spreads new connections evenly and a
replacement worker finds what waited in its slot's backlog.  A slot that is removed
(SIGTTOU) has its sockets closed here at once: the kernel then sends new connections to the
sockets that have a worker accepting (a socket left open with nobody accepting would take
its share of them and never answer).  UNIX sockets and ``--fd`` are one socket shared by
every slot.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
from dataclasses import dataclass, field

from .endpoints import (
    EndpointError,
    _fields,
    _remove_stale_unix_socket,
    check_description,
    systemd_fd,
)


def reuse_port_available() -> bool:
    """SO_REUSEPORT spreads connections over the sockets that share a port on Linux only
    (elsewhere it may send every connection to one of them)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _cannot_listen(where: str, exc: OSError) -> EndpointError:
    assert exc.strerror is not None  # a socket call's error has its message
    return EndpointError(f"Cannot listen on {where}: {exc.strerror.lower()}")


@dataclass
class _Endpoint:
    """One endpoint: a socket per slot (TCP and TLS with reuse-port) or one for all."""

    description: str
    name: str  # how the log names it
    tls: bool = False
    host: str = ""
    port: int = 0
    backlog: int = 50
    per_slot: dict[int, socket.socket] = field(default_factory=dict)
    shared: tuple[socket.socket | None, int, str] | None = None  # (socket, fd, description)

    def bind_one(self, reuse_port: bool) -> socket.socket:
        """A new listening socket on this endpoint's address (its port, once one is
        bound: port 0 then means the port the first one got)."""
        sock = socket.socket(_family(self.host), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, self.port))
            sock.listen(self.backlog)
        except OSError as exc:
            sock.close()
            raise _cannot_listen(f"{self.host or '*'}:{self.port}", exc) from None
        sock.set_inheritable(True)
        self.port = sock.getsockname()[1]
        return sock

    def bind_slot(self, slot: int) -> None:
        if self.shared is None and slot not in self.per_slot:
            self.per_slot[slot] = self.bind_one(reuse_port=True)

    def describe(self, sock: socket.socket) -> tuple[int, str]:
        """The fd of a TCP or TLS socket, and the description a worker listens on."""
        fd = sock.fileno()
        if self.tls:
            return fd, f"{self.description}:fileno={fd}"
        domain = "INET6" if sock.family == socket.AF_INET6 else "INET"
        return fd, f"fd:fileno={fd}:domain={domain}"

    def address(self) -> str:
        """Where a TCP or TLS endpoint listens, as the log shows it ("" for others)."""
        if self.shared is not None:
            sock = self.shared[0]
        else:
            sock = next(iter(self.per_slot.values()), None)
        if sock is None or sock.family == socket.AF_UNIX:
            return ""
        host, port = sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def served_by(self, slot: int) -> tuple[int, str]:
        """The fd a worker of ``slot`` inherits, and the description it listens on."""
        if self.shared is not None:
            return self.shared[1], self.shared[2]
        return self.describe(self.per_slot[slot])

    def release(self, slot: int) -> None:
        sock = self.per_slot.pop(slot, None)
        if sock is not None:
            sock.close()

    def close(self) -> None:
        for slot in list(self.per_slot):
            self.release(slot)
        if self.shared is not None and self.shared[0] is not None:
            self.shared[0].close()


class Listeners:
    """Every endpoint of a Config, bound here; what each worker slot serves."""

    def __init__(self, reuse_port: bool) -> None:
        self.per_slot = reuse_port and reuse_port_available()
        self.endpoints: list[_Endpoint] = []
        self.unix_paths: list[str] = []

    def bind(self, descriptions: list[str], slots: int) -> list[str]:
        """Bind every endpoint for ``slots`` slots; how the log names each.  Raises
        EndpointError (having closed what it bound)."""
        try:
            for description in descriptions:
                endpoint = self._endpoint(description)
                self.endpoints.append(endpoint)
                for slot in range(slots):
                    endpoint.bind_slot(slot)
                endpoint.name += endpoint.address()
        except EndpointError:
            self.close()
            raise
        return [endpoint.name for endpoint in self.endpoints]

    def _endpoint(self, description: str) -> _Endpoint:
        problems = check_description(description)
        if problems:
            raise EndpointError(problems[0])
        kind, args, kwargs = _fields(description)
        backlog = int(kwargs.get("backlog", 50))
        if kind in ("tcp", "ssl"):
            endpoint = _Endpoint(
                description, "TLS address " if kind == "ssl" else "TCP address ",
                tls=kind == "ssl", host=kwargs.get("interface", ""),
                port=int(kwargs.get("port") or (args[0] if args else 0)), backlog=backlog)
            if not self.per_slot:  # one socket every worker accepts from
                sock = endpoint.bind_one(reuse_port=False)
                endpoint.shared = (sock, *endpoint.describe(sock))
            return endpoint
        if kind == "unix":
            path = kwargs.get("address") or args[0]
            _remove_stale_unix_socket(description)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(path)
            except OSError as exc:
                sock.close()
                raise _cannot_listen(path, exc) from None
            self.unix_paths.append(path)
            os.chmod(path, int(kwargs.get("mode", "666"), 8))
            sock.listen(backlog)
            sock.set_inheritable(True)
            return _Endpoint(description, f"UNIX socket {path}",
                             shared=(sock, sock.fileno(),
                                     f"fd:fileno={sock.fileno()}:domain=UNIX"))
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
            return _Endpoint(description, f"inherited fd {fd}", shared=(None, fd, description))
        raise EndpointError(
            f"--workers cannot share endpoint {description!r}: the supervisor binds tcp:, "
            "ssl:, unix:, fd: and systemd: endpoints only"
            + ("; for the PROXY protocol, bind one of those and add --proxy-protocol"
               if description.startswith("haproxy:") else "")
        )

    def slot(self, slot: int) -> tuple[list[int], list[str]]:
        """What a worker of ``slot`` serves: the fds it inherits and the descriptions it
        listens on (binding the slot's own sockets if it has none yet: raises
        EndpointError)."""
        for endpoint in self.endpoints:
            try:
                endpoint.bind_slot(slot)
            except EndpointError:
                self.release(slot)
                raise
        served = [endpoint.served_by(slot) for endpoint in self.endpoints]
        return [fd for fd, _ in served], [description for _, description in served]

    def release(self, slot: int) -> None:
        """Close the slot's own sockets (once it has no worker): the kernel gives the
        connections that would have reached them to the others."""
        for endpoint in self.endpoints:
            endpoint.release(slot)

    def close(self) -> None:
        for endpoint in self.endpoints:
            endpoint.close()
        for path in self.unix_paths:  # the workers leave the file to the one who bound it
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)
            except OSError:
                pass
