"""Bindings to Twisted endpoints: checking descriptions, listening, and naming what we bound."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import stat
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, endpoints
from twisted.internet.error import CannotListenError

from ..protocols.twisted_internals import (
    InheritedUNIXPort,
    ProxyHeaderFactory,
    builtin_endpoint_types,
    parse_description,
    set_ssl_context_factory,
    ssl_binding,
    ssl_context_factory,
    systemd_fds,
    wrapped_endpoint,
)


class EndpointError(Exception):
    """A binding we cannot listen on; the message names it and the reason in one line."""


def _fields(description: str) -> tuple[str, list[str], dict[str, str]]:
    """Split an endpoint description into its type, positional and keyword arguments, with
    Twisted's own parser (which handles backslash escapes)."""
    args, kwargs = parse_description(description)
    if not args:
        raise EndpointError(f"Empty endpoint description {description!r}")
    return args[0], args[1:], kwargs


def _known_kind(kind: str) -> bool:
    """Whether Twisted (its parsers and installed plugins, whose prefixes it matches
    without regard to case) or this module knows the endpoint type."""
    if kind in builtin_endpoint_types() or kind in ("fd", "systemd", "tcp6"):
        return True
    from twisted.internet.interfaces import IStreamServerEndpointStringParser
    from twisted.plugin import getPlugins

    wanted = kind.upper()
    return any(getattr(plugin, "prefix", "").upper() == wanted
               for plugin in getPlugins(IStreamServerEndpointStringParser))


def endpoint_url(description: str) -> str:
    """Where a client reaches an endpoint, as ``--show-config`` shows it: a URL for TCP and
    TLS (``http://127.0.0.1:8000/``), else what it is (``UNIX socket /run/d.sock``)."""
    try:
        kind, args, kwargs = _fields(description)
    except (ValueError, EndpointError):
        return description
    if kind in ("tcp", "tcp6", "ssl"):
        port = kwargs.get("port") or (args[0] if args else "?")
        given = kwargs.get("interface")
        everywhere = given is None
        host = ("::" if kind == "tcp6" else "0.0.0.0") if given is None else given
        if ":" in host:
            host = f"[{host}]"
        url = f"{'https' if kind == 'ssl' else 'http'}://{host}:{port}/"
        if port == "0":
            url += " (a free port, chosen at startup)"
        return url + (" (every interface)" if everywhere else "")
    if kind == "unix":
        return f"UNIX socket {kwargs.get('address') or (args[0] if args else '?')}"
    if kind == "fd":
        return f"inherited fd {kwargs.get('fileno') or (args[0] if args else '?')}"
    if kind == "systemd":
        which = kwargs.get("name") or kwargs.get("index", "?")
        return f"systemd socket {which}"
    return description


def check_description(description: str) -> list[str]:
    """Problems that make ``description`` fail before we try it: missing TLS files, a UNIX
    socket directory that does not exist.  Shared with the Django system checks."""
    try:
        kind, args, kwargs = _fields(description)
    except (ValueError, EndpointError) as exc:
        return [f"Endpoint {description!r} cannot be parsed: {exc}"]
    problems = []
    if not _known_kind(kind):
        return [f"Invalid endpoint {description!r}: unknown endpoint type {kind!r} (built in: "
                "tcp, tcp6, unix, ssl, fd, systemd; others come from installed Twisted "
                "endpoint plugins)"]
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
    # None when there is none: int() raises the TypeError reported below
    fileno: Any = kwargs.get("fileno") or (args[0] if args else None)
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


def systemd_fd(description: str) -> int:
    """The file descriptor a ``systemd:domain=...:index=N`` (or ``name=NAME``) endpoint
    names, or EndpointError saying why there is none.

    Twisted reads LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES once, when
    twisted.internet.endpoints is imported, and takes them out of the environment (so
    that no child process believes they are its own); its list is what we look in."""
    _kind, _args, kwargs = _fields(description)
    index, name = kwargs.get("index"), kwargs.get("name")
    if (index is None) == (name is None):
        raise EndpointError(f"Endpoint {description!r}: give exactly one of index=N or name=NAME")
    listen_fds = systemd_fds()
    inherited = listen_fds.inheritedDescriptors()
    if not inherited:
        raise EndpointError(
            f"Endpoint {description!r}: this process was given no socket by systemd socket "
            "activation (LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES unset or not for it)"
        )
    if name is not None:
        named = listen_fds.inheritedNamedDescriptors()
        if name not in named:
            raise EndpointError(f"Endpoint {description!r}: systemd passed no socket named "
                                f"{name!r}; it passed {', '.join(sorted(named))}")
        return named[name]
    assert index is not None  # exactly one of the two, checked above
    try:
        return inherited[int(index)]
    except (ValueError, IndexError):
        raise EndpointError(f"Endpoint {description!r}: systemd passed {len(inherited)} "
                            f"socket(s): index must be 0 to {len(inherited) - 1}") from None


class _InheritedUNIXEndpoint:
    def __init__(self, reactor: Any, fileno: int) -> None:
        self.reactor = reactor
        self.fileno = fileno

    def listen(self, factory: Any) -> Any:
        try:
            # not Twisted's adopted UNIX port: see InheritedUNIXPort
            port = InheritedUNIXPort.adopt(self.reactor, self.fileno, factory)
            port.startListening()
            os.close(self.fileno)  # the port holds its own duplicate, as Twisted's does
        except Exception:
            return defer.fail()
        return defer.succeed(port)


def _adopted(reactor: Any, fileno: int, domain: str) -> Any:
    if domain == "UNIX":
        return _InheritedUNIXEndpoint(reactor, fileno)
    return endpoints.AdoptedStreamServerEndpoint(reactor, fileno, _FAMILIES[domain])


class _LayeredEndpoint:
    """A listening endpoint whose connections pass through TLS (``context``) and, outside
    it, the PROXY protocol header (``proxy``), layered here: Twisted's own ssl: endpoint
    puts TLS outermost, where the PROXY header, sent before the TLS handshake, must be."""

    def __init__(self, inner: Any, context: Any = None, proxy: bool = False) -> None:
        self.inner = inner
        self.context = context
        self.proxy = proxy

    def listen(self, factory: Any) -> Any:
        if self.context is not None:
            from twisted.protocols.tls import TLSMemoryBIOFactory

            factory = TLSMemoryBIOFactory(self.context, False, factory)
        if self.proxy:
            # (Twisted's WrappingFactory.__init__ has no annotations)
            factory = ProxyHeaderFactory(factory)  # type: ignore[no-untyped-call]
        return self.inner.listen(factory)


def make_endpoint(reactor: Any, description: str, proxy_protocol: bool = False,
                  tls: Callable[[Any, str], Any] | None = None) -> Any:
    """A Twisted server endpoint for ``description``, or EndpointError saying why not.

    ``proxy_protocol``: each connection starts with a PROXY protocol header (v1 or v2),
    read before anything else, TLS included; the address it carries is the client's.
    ``tls``: rebuilds the TLS options of an ``ssl:`` endpoint (server/tls.py)."""
    endpoint = _make_endpoint(reactor, description)
    wrapped = wrapped_endpoint(endpoint)  # a haproxy: endpoint's inner one
    if proxy_protocol and wrapped is not None:
        raise EndpointError(
            f"Endpoint {description!r} reads a PROXY header itself: with --proxy-protocol "
            "each connection would need two. Use a plain tcp:/ssl: endpoint with "
            "--proxy-protocol, or this endpoint without it.")
    if isinstance(wrapped, endpoints.SSL4ServerEndpoint):
        raise EndpointError(
            f"Endpoint {description!r} would read the PROXY header inside TLS, where no load "
            "balancer sends it: use an ssl: endpoint with --proxy-protocol (the header "
            "before the handshake)")
    if tls is not None:
        inner = wrapped if wrapped is not None else endpoint
        if isinstance(inner, _LayeredEndpoint) and inner.context is not None:
            inner.context = tls(inner.context, description)
        elif isinstance(inner, endpoints.SSL4ServerEndpoint):
            set_ssl_context_factory(inner, tls(ssl_context_factory(inner), description))
    if wrapped is not None:
        # a haproxy: endpoint: its inner one, read through our PROXY header reader, which
        # takes a header however TCP splits it (twisted_internals.ProxyHeaderWrapper)
        return _LayeredEndpoint(wrapped, proxy=True)
    if not proxy_protocol:
        return endpoint
    if isinstance(endpoint, _LayeredEndpoint):
        endpoint.proxy = True
        return endpoint
    if isinstance(endpoint, endpoints.SSL4ServerEndpoint):
        # TLS inside the PROXY header: the same port served as TCP, TLS layered on it here
        port, backlog, interface = ssl_binding(endpoint)
        tcp_endpoint = (endpoints.TCP6ServerEndpoint if ":" in interface
                        else endpoints.TCP4ServerEndpoint)
        return _LayeredEndpoint(tcp_endpoint(reactor, port, backlog, interface),
                                ssl_context_factory(endpoint), proxy=True)
    return _LayeredEndpoint(endpoint, proxy=True)


def _make_endpoint(reactor: Any, description: str) -> Any:
    problems = check_description(description)
    if problems:
        raise EndpointError(problems[0])
    kind, args, kwargs = _fields(description)
    if kind == "systemd":
        # Twisted's own systemd: parser reads the environment once, at import, and says
        # "list index out of range" when socket activation passed nothing
        fileno = systemd_fd(description)
        domain = kwargs.get("domain")
        if domain not in _FAMILIES:
            raise EndpointError(f"Endpoint {description!r}: domain must be INET, INET6 or UNIX")
        return _adopted(reactor, fileno, domain)
    description = _complete_fd(description)
    _remove_stale_unix_socket(description)
    kind, args, kwargs = _fields(description)
    if kind == "ssl" and "fileno" in kwargs:
        # a TLS socket bound by the --workers supervisor: adopt it, wrap it in TLS here
        fileno = int(kwargs["fileno"])
        try:
            context = ssl_context_factory(endpoints.serverFromString(
                reactor, description.rsplit(":fileno=", 1)[0]))
        except Exception as exc:  # OpenSSL's errors for a key that does not fit, and the like
            raise EndpointError(f"Cannot use endpoint {description!r}: {exc}") from None
        family = _complete_fd(f"fd:fileno={fileno}").rsplit("domain=", 1)[1]
        return _LayeredEndpoint(
            endpoints.AdoptedStreamServerEndpoint(reactor, fileno, _FAMILIES[family]), context)
    if kind == "fd":
        # Twisted has no "fd:" parser of its own; Daphne registered one, so we build it here
        fileno = int(kwargs.get("fileno") or args[0])
        return _adopted(reactor, fileno, kwargs["domain"])
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


def beyond_loopback(description: str) -> bool:
    """Whether a TCP or TLS endpoint can be reached from other machines: it has no
    interface= (every interface), or one that is not a loopback address."""
    try:
        kind, _, kwargs = _fields(description)
    except (EndpointError, ValueError):
        return False
    if kind not in ("tcp", "tcp6", "ssl"):
        return False
    interface = kwargs.get("interface", "")
    try:
        return not ipaddress.ip_address(interface.strip("[]")).is_loopback
    except ValueError:
        return interface != "localhost"


def describe_port(description: str, port: Any) -> str:
    """How the startup log names a listening port, with the real port number."""
    host = port.getHost()
    kind = description.split(":", 1)[0]
    name = getattr(host, "name", None)
    if name is not None:
        return f"UNIX socket {name.decode() if isinstance(name, bytes) else name}"
    where = f"[{host.host}]:{host.port}" if ":" in host.host else f"{host.host}:{host.port}"
    if kind in ("tcp", "tcp6", "ssl") and "interface=" not in description:
        # Twisted's endpoints listen everywhere without one, while -b defaults to 127.0.0.1
        where += " (every interface: the endpoint has no interface=)"
    if kind == "ssl":
        return f"TLS address {where}"
    if kind in ("fd", "systemd"):
        return f"TCP address {where} (inherited fd)"
    return f"TCP address {where}"
