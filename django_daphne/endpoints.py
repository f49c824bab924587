"""Bindings to Twisted endpoints: checking descriptions, listening, and naming what we bound."""

from __future__ import annotations

import errno
import os
import socket
import stat
from typing import Any

from twisted.internet import endpoints
from twisted.internet.error import CannotListenError


class EndpointError(Exception):
    """A binding we cannot listen on; the message names it and the reason in one line."""


def _fields(description: str) -> tuple[str, list[str], dict[str, str]]:
    """Split an endpoint description into its type, positional and keyword arguments, with
    Twisted's own parser (which handles backslash escapes)."""
    args, kwargs = endpoints._parse(description)
    if not args:
        raise EndpointError(f"Empty endpoint description {description!r}")
    return args[0], args[1:], kwargs


def check_description(description: str) -> list[str]:
    """Problems that make ``description`` fail before we try it: missing TLS files, a UNIX
    socket directory that does not exist.  Shared with the Django system checks."""
    try:
        kind, args, kwargs = _fields(description)
    except (ValueError, EndpointError) as exc:
        return [f"Endpoint {description!r} cannot be parsed: {exc}"]
    problems = []
    if kind == "ssl":
        key = kwargs.get("privateKey")
        cert = kwargs.get("certKey", key)
        if not key:
            problems.append(f"Endpoint {description!r}: ssl: needs privateKey=FILE")
        for what, path in (("private key", key), ("certificate", cert)):
            if path and not os.path.isfile(path):
                problems.append(
                    f"Endpoint {description!r}: TLS {what} file {path!r} does not exist"
                )
    elif kind == "unix":
        path = kwargs.get("address") or (args[0] if args else "")
        directory = os.path.dirname(os.path.abspath(path)) if path else ""
        if directory and not os.path.isdir(directory):
            problems.append(
                f"Endpoint {description!r}: directory {directory!r} of the UNIX socket "
                "does not exist"
            )
    return problems


def _complete_fd(description: str) -> str:
    """Give an ``fd:`` endpoint the address family of the socket it names, so that an
    inherited IPv6 or UNIX socket works without ``domain=``."""
    kind, args, kwargs = _fields(description)
    if kind != "fd" or "domain" in kwargs:
        return description
    fileno = kwargs.get("fileno") or (args[0] if args else None)
    try:
        fd = int(fileno)
        sock = socket.socket(fileno=os.dup(fd))
    except (TypeError, ValueError, OSError) as exc:
        raise EndpointError(f"--fd {fileno}: not an open socket ({exc})") from None
    try:
        family = sock.family
    finally:
        sock.close()
    domain = {socket.AF_INET: "INET", socket.AF_INET6: "INET6", socket.AF_UNIX: "UNIX"}.get(
        family
    )
    if domain is None:
        raise EndpointError(f"--fd {fileno}: unsupported socket family {family!r}")
    return f"{description}:domain={domain}"


def _remove_stale_unix_socket(description: str) -> None:
    """A UNIX socket file left by a server that died makes listening fail: remove it when
    nothing answers on it (a live server's socket is never touched)."""
    kind, args, kwargs = _fields(description)
    if kind != "unix":
        return
    path = kwargs.get("address") or (args[0] if args else "")
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISSOCK(mode):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
    except OSError:
        pass
    finally:
        probe.close()


_FAMILIES = {"INET": socket.AF_INET, "INET6": socket.AF_INET6, "UNIX": socket.AF_UNIX}


class _AdoptedTLSEndpoint:
    """An inherited listening socket served with TLS."""

    def __init__(self, reactor: Any, fileno: int, family: int, context: Any) -> None:
        self.adopted = endpoints.AdoptedStreamServerEndpoint(reactor, fileno, family)
        self.context = context

    def listen(self, factory: Any) -> Any:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        return self.adopted.listen(TLSMemoryBIOFactory(self.context, False, factory))


def make_endpoint(reactor: Any, description: str) -> Any:
    """A Twisted server endpoint for ``description``, or EndpointError saying why not."""
    problems = check_description(description)
    if problems:
        raise EndpointError(problems[0])
    description = _complete_fd(description)
    _remove_stale_unix_socket(description)
    kind, args, kwargs = _fields(description)
    if kind == "ssl" and "fileno" in kwargs:
        # a TLS socket bound by the --workers supervisor: adopt it, wrap it in TLS here
        fileno = int(kwargs["fileno"])
        context = endpoints.serverFromString(
            reactor, description.rsplit(":fileno=", 1)[0])._sslContextFactory
        family = _complete_fd(f"fd:fileno={fileno}").rsplit("domain=", 1)[1]
        return _AdoptedTLSEndpoint(reactor, fileno, _FAMILIES[family], context)
    if kind == "fd":
        # Twisted has no "fd:" parser of its own; Daphne registered one, so we build it here
        fileno = int(kwargs.get("fileno") or args[0])
        return endpoints.AdoptedStreamServerEndpoint(reactor, fileno,
                                                     _FAMILIES[kwargs["domain"]])
    try:
        return endpoints.serverFromString(reactor, description)
    except (ValueError, TypeError, KeyError) as exc:
        raise EndpointError(f"Invalid endpoint {description!r}: {exc}") from None
    except Exception as exc:  # OpenSSL errors for unreadable keys, and plugin errors
        raise EndpointError(f"Cannot use endpoint {description!r}: {exc}") from None


def listen_error(description: str, exc: BaseException) -> EndpointError:
    """A one-line explanation of why listening on ``description`` failed."""
    if isinstance(exc, CannotListenError):
        cause = exc.socketError
        errno_ = getattr(cause, "errno", None)
        where = f"{exc.interface or '*'}:{exc.port}" if exc.port is not None else description
        if errno_ == errno.EADDRINUSE:
            return EndpointError(f"Cannot listen on {where}: address already in use")
        if errno_ == errno.EACCES:
            return EndpointError(f"Cannot listen on {where}: permission denied")
        if errno_ == errno.EADDRNOTAVAIL:
            return EndpointError(f"Cannot listen on {where}: address not available here")
        return EndpointError(f"Cannot listen on {where}: {cause}")
    return EndpointError(f"Cannot listen on {description!r}: {exc}")


def describe_port(description: str, port: Any) -> str:
    """How the startup log names a listening port, with the real port number."""
    host = port.getHost()
    kind = description.split(":", 1)[0]
    name = getattr(host, "name", None)
    if name is not None:
        return f"UNIX socket {name.decode() if isinstance(name, bytes) else name}"
    where = f"[{host.host}]:{host.port}" if ":" in host.host else f"{host.host}:{host.port}"
    if kind == "ssl":
        return f"TLS address {where}"
    if kind == "fd":
        return f"TCP address {where} (inherited fd)"
    return f"TCP address {where}"
