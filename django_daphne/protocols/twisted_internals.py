"""Every place django_daphne reaches past Twisted's public API, with the reason for each.

Written against Twisted 23.8 to 26.10.  ``tests/protocols/test_twisted_internals.py`` checks each
name used here, and what is relied on of it, directly against the installed Twisted, so
that a release that breaks one fails there, by name, before anything subtler does.  Nothing
else in the package touches a private name of Twisted's: it calls what is defined here.
(This module imports nothing of ours, so every layer may use it.)

Endpoint descriptions (server/endpoints.py, server/tls.py)

- ``endpoints._parse``: an endpoint description split into its positional and keyword
  arguments, with Twisted's own escaping rules (``\\:``), so that we read descriptions
  exactly as ``serverFromString`` will (:func:`parse_description`).
- ``endpoints._serverParsers``: the endpoint types Twisted parses itself (tcp, unix, ssl,
  ...), so that an unknown type is named before serverFromString's plugin search says
  something vaguer (:func:`builtin_endpoint_types`).
- ``endpoints._SystemdParser._sddaemon``: the LISTEN_FDS sockets Twisted took out of the
  environment when it was imported; nothing public gives them back (:func:`systemd_fds`).
- ``SSL4ServerEndpoint._sslContextFactory`` (and ``_port``, ``_backlog``, ``_interface``): the
  TLS options an ``ssl:`` description built (private keys and chains read, ciphers set), so
  that they are used outside Twisted's ssl: endpoint (TLS inside a PROXY header, TLS on a
  socket the supervisor bound, certificate reloads) and rebuilt by server/tls.py
  (:func:`ssl_context_factory`, :func:`set_ssl_context_factory`, :func:`ssl_binding`).
- ``_WrapperServerEndpoint._wrappedEndpoint``: the endpoint a ``haproxy:`` description
  wraps, to refuse a PROXY header read twice or inside TLS (:func:`wrapped_endpoint`).

Listening ports and the reactor (server/endpoints.py, server/reactor.py, server/runtime.py)

- :class:`InheritedUNIXPort` adopts a listening UNIX socket this process did not bind
  (``unix.Port._fromListeningDescriptor``): Twisted's own adopted UNIX port chmods the file
  on start and unlinks it on stop.  Its ``startListening`` is Twisted's less those two, so
  it sets the base class's state itself (``_preexistingSocket``, ``_shouldShutdown``,
  ``tcp._reservedFD``, the accept loop's spare descriptor for EMFILE).
- ``AsyncioSelectorReactor._asyncioEventloop``: the asyncio loop the reactor runs on, which
  Twisted does not expose (:func:`asyncio_loop`, :func:`is_asyncio_reactor`).
- :class:`DirectAsyncioReactor` (Twisted's asyncio reactor, calling each socket's read and
  write handler directly): Twisted's registers ``twisted.python.log.callWithLogger`` around
  the handler, so for every read the legacy log's context (the protocol's logPrefix, copied
  into a new context dict, set and restored) is built for messages logged through
  ``twisted.python.log``, which nothing here logs through.  The handler,
  ``_readOrWrite``, catches and logs what a read or write raises itself.  Anything the loop
  refuses to watch (a regular file, which epoll cannot) goes through Twisted's own
  registration and its fallbacks (``_continuousPolling``).  A registration ends with the
  file descriptor it was made with, in one dictionary lookup (``_readers``, ``_writers``:
  Twisted's looks the reader up three times and asks it for its descriptor again), on every
  connection's close.  Its TCP listening ports (``listenTCP``, and ``adoptStreamPort`` for
  inherited sockets, through ``tcp.Port._fromListeningDescriptor`` and
  ``_supportedAddressFamilies`` as Twisted's own) hand the server's own factory no address
  for each connection it accepts (``tcp.Port._buildAddr``): the factory declares it takes
  none (``takes_no_address``), because a connection reads its addresses from its socket
  (:func:`ipv4_addresses`), and Twisted builds an address object per accepted connection
  for it.  Any other factory gets its address as from Twisted.

Transports (protocols/transport.py)

- :func:`direct_writer`: a write straight to the socket of a plain TCP or UNIX transport
  while Twisted holds nothing unsent (``dataBuffer`` and ``_tempDataBuffer``, the list
  Twisted's ``write`` appends to before it joins it into ``dataBuffer``): Twisted's own
  ``write`` always waits for the next writable event (an epoll registration, a loop turn
  and a deregistration per response).  This is the hot path: the attribute reads are
  inlined in the closure, with no call of ours around them.
- :func:`nothing_unsent`: the same test, for closing such a transport at once.
- :func:`read_into`: with metrics on, such a transport's ``_dataReceived`` (what its
  ``doRead`` hands each read to, which calls the protocol's ``dataReceived``) is replaced
  by one that counts the bytes and calls the handler: the count costs no call of its own
  per read, where a counting ``dataReceived`` would be a call more.
- ``tcp.Server._addressType``: whether an accepted connection is IPv4, so that its addresses
  are read from what Twisted stored at accept and from the socket, without the two address
  objects (attrs classes) ``getPeer`` and ``getHost`` build on every call
  (:func:`ipv4_addresses`).
- ``twisted.protocols.haproxy._wrapper.HAProxyProtocolWrapper`` and its ``_proxyInfo``: which
  transport reads a PROXY header, and what the header said (its v2 UNIX-socket source
  comes back as a UNIX address that must not be taken for a peer on our own socket)
  (:data:`HAProxyProtocolWrapper`, :func:`proxy_info`).
- :class:`ProxyHeaderFactory` (what ``--proxy-protocol`` and a ``haproxy:`` endpoint listen
  with): Twisted's ``HAProxyWrappingFactory`` with a wrapper whose ``dataReceived`` decides
  v1 or v2 on the bytes it has so far, where Twisted's decides on the first read alone and
  closes a connection whose header begins in a read shorter than 8 bytes (v1) or 16 (v2),
  as TCP may deliver it; and that takes v1's shortest header, ``PROXY UNKNOWN`` (what a
  proxy sends for a connection of its own, a health check), which Twisted's v1 parser
  refuses: a proxy's health checks were closed unanswered.  It sets Twisted's ``_parser``
  and ``_proxyInfo`` (the parsers themselves, ``V1Parser`` and ``V2Parser``, and
  ``ProxyInfo``, are in private modules of ``twisted.protocols.haproxy``).
- ``abstract.FileDescriptor._writeDisconnected``: whether a lingering close has shut the
  write side, that is whether all written went out (:func:`write_side_shut`).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet import endpoints, error, main, tcp, unix
from twisted.internet.address import IPv4Address
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._info import ProxyInfo
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.haproxy._wrapper import HAProxyProtocolWrapper, HAProxyWrappingFactory
from twisted.python.systemd import ListenFDs

__all__ = [
    "DirectAsyncioReactor", "HAProxyProtocolWrapper", "InheritedUNIXPort",
    "ProxyHeaderFactory", "ProxyHeaderWrapper", "asyncio_loop",
    "builtin_endpoint_types", "can_write_direct", "direct_writer", "ipv4_addresses",
    "is_asyncio_reactor", "nothing_unsent", "parse_description", "proxy_info", "read_into",
    "set_ssl_context_factory", "ssl_binding", "ssl_context_factory", "systemd_fds",
    "wrapped_endpoint", "write_side_shut",
]


# -- endpoint descriptions


def parse_description(description: str) -> tuple[list[str], dict[str, str]]:
    """A description's positional arguments (its type first) and keyword arguments, as
    Twisted's serverFromString reads them (backslash escapes included)."""
    args, kwargs = endpoints._parse(description)
    return args, kwargs


def builtin_endpoint_types() -> frozenset[str]:
    """The endpoint types Twisted parses without a plugin (tcp, unix, ssl, systemd, ...)."""
    return frozenset(endpoints._serverParsers)


def systemd_fds() -> ListenFDs:
    """Twisted's ``ListenFDs``: the sockets systemd passed (``inheritedDescriptors()``,
    ``inheritedNamedDescriptors()``), read once when twisted.internet.endpoints was imported,
    and then taken out of the environment."""
    return endpoints._SystemdParser._sddaemon


def ssl_context_factory(endpoint: Any) -> Any:
    """The TLS options of an ``ssl:`` endpoint (an ``SSL4ServerEndpoint``)."""
    return endpoint._sslContextFactory


def set_ssl_context_factory(endpoint: Any, options: Any) -> None:
    """Serve an ``ssl:`` endpoint with other TLS options."""
    endpoint._sslContextFactory = options


def ssl_binding(endpoint: Any) -> tuple[int, int, str]:
    """An ``ssl:`` endpoint's port, backlog and interface."""
    return endpoint._port, endpoint._backlog, endpoint._interface


def wrapped_endpoint(endpoint: Any) -> Any:
    """The endpoint a ``haproxy:`` endpoint reads its PROXY header on, or None for any other
    endpoint."""
    return getattr(endpoint, "_wrappedEndpoint", None)


# -- listening ports and the reactor


class InheritedUNIXPort(unix.Port):
    """A listening UNIX socket this process did not bind (``--fd``, ``systemd:``, or the
    --workers supervisor's).  Its file belongs to whoever bound it: Twisted's own adopted
    port makes it mode 0666 on start (or fails when another user owns it), and on stop
    shuts the socket down and removes the file, taking it from every other process that
    serves it (the other workers, or systemd's socket unit)."""

    @classmethod
    def adopt(cls, reactor: Any, fileno: int, factory: Any) -> InheritedUNIXPort:
        """The port of listening socket ``fileno`` (duplicated: the caller closes its
        own), not yet listening."""
        port: InheritedUNIXPort = cls._fromListeningDescriptor(
            reactor, fileno, factory)
        return port

    def startListening(self) -> None:
        """unix.Port's, less the chmod of the file and the bind (see the class docstring)."""
        skt, self._preexistingSocket = self._preexistingSocket, None
        assert skt is not None and self.factory is not None  # set by adopt
        self._shouldShutdown = False
        skt.setblocking(False)
        tcp._reservedFD.reserve()
        self.factory.doStart()
        self.connected = True
        self.socket = skt
        self.fileno = skt.fileno  # type: ignore[method-assign]  # as Twisted's own ports do
        self.numberAccepts = 100
        self.startReading()

    def connectionLost(self, reason: Any) -> None:
        tcp.Port.connectionLost(self, reason)  # not unix.Port's: it unlinks the file


def is_asyncio_reactor(reactor: Any) -> bool:
    """Whether a reactor (or the module standing for one) is an asyncio reactor."""
    return hasattr(reactor, "_asyncioEventloop")


def asyncio_loop(reactor: Any) -> Any:
    """The asyncio event loop an asyncio reactor runs on."""
    return reactor._asyncioEventloop


def _takes_no_address(factory: Any) -> bool:
    """The factory, or the one Twisted's TLS wraps, says it ignores buildProtocol's
    address."""
    inner = getattr(factory, "wrappedFactory", None)
    return bool(getattr(factory, "takes_no_address", False)
                or getattr(inner, "takes_no_address", False))


class _Port(tcp.Port):
    """tcp.Port, with no address object per connection for a factory that takes none."""

    _no_address: bool | None = None  # decided at the first connection

    def _buildAddr(self, address: Any) -> Any:  # Twisted's name
        no_address = self._no_address
        if no_address is None:
            no_address = self._no_address = _takes_no_address(self.factory)
        if no_address:
            return None
        return super()._buildAddr(address)  # type: ignore[no-untyped-call]


class DirectAsyncioReactor(AsyncioSelectorReactor):
    """Twisted's asyncio reactor, calling each socket's handler directly (see the module
    docstring; tests/server/test_reactor.py checks what it does)."""

    def listenTCP(self, port: int, factory: Any, backlog: int = 50,
                  interface: str = "") -> tcp.Port:
        listening = _Port(port, factory, backlog, interface, self)
        listening.startListening()
        return listening

    def adoptStreamPort(self, fileDescriptor: int, addressFamily: int,
                        factory: Any) -> Any:
        if addressFamily not in (socket.AF_INET, socket.AF_INET6):
            return super().adoptStreamPort(  # type: ignore[no-untyped-call]
                fileDescriptor, addressFamily, factory)
        if addressFamily not in self._supportedAddressFamilies:
            raise error.UnsupportedAddressFamily(addressFamily)
        listening = _Port._fromListeningDescriptor(  # type: ignore[no-untyped-call]
            self, fileDescriptor, addressFamily, factory)
        listening.startListening()
        return listening

    def addReader(self, reader: Any) -> None:  # Twisted's name
        if reader in self._readers or reader in self._continuousPolling._readers:
            return
        try:
            fd = reader.fileno()
            self._asyncioEventloop.add_reader(fd, self._readOrWrite, reader, True)
        except Exception:  # Twisted's own path decides what it means
            super().addReader(reader)  # type: ignore[no-untyped-call]
            return
        self._readers[reader] = fd

    def addWriter(self, writer: Any) -> None:  # Twisted's name
        if writer in self._writers or writer in self._continuousPolling._writers:
            return
        try:
            fd = writer.fileno()
            self._asyncioEventloop.add_writer(fd, self._readOrWrite, writer, False)
        except Exception:  # Twisted's own path decides what it means
            super().addWriter(writer)  # type: ignore[no-untyped-call]
            return
        self._writers[writer] = fd

    def removeReader(self, reader: Any) -> None:  # Twisted's name
        fd = self._readers.pop(reader, None)
        if fd is not None:
            self._asyncioEventloop.remove_reader(fd)
        elif self._continuousPolling.isReading(reader):
            self._continuousPolling.removeReader(reader)

    def removeWriter(self, writer: Any) -> None:  # Twisted's name
        fd = self._writers.pop(writer, None)
        if fd is not None:
            self._asyncioEventloop.remove_writer(fd)
        elif self._continuousPolling.isWriting(writer):
            self._continuousPolling.removeWriter(writer)


# -- transports


class SentCounter(Protocol):
    """What :func:`direct_writer` adds the bytes it writes to (server/counts.py's Counts)."""

    sent: int


class ReceivedCounter(Protocol):
    """What :func:`read_into` adds the bytes it reads to (server/counts.py's Counts)."""

    received: int


def read_into(transport: Any, receive: Callable[[bytes], None] | None,
              counts: ReceivedCounter | None = None) -> None:
    """Have a transport :func:`can_write_direct` takes hand each read to ``receive``
    itself, adding its length to ``counts.received``; ``receive`` (or ``counts``) None:
    back to Twisted's own, which calls the protocol's ``dataReceived``.  An empty read is
    the end of the stream, for the transport to close on, as in Twisted's."""
    if receive is None or counts is None:
        transport.__dict__.pop("_dataReceived", None)
        return
    done = main.CONNECTION_DONE

    def read(data: bytes) -> Any:
        if not data:
            return done
        counts.received += len(data)
        receive(data)
        return None

    transport._dataReceived = read


def can_write_direct(transport: Any) -> bool:
    """Whether :func:`direct_writer` can write past a transport: a plain TCP or UNIX one
    (isinstance, not hasattr: a TLS wrapper forwards attributes to the TCP transport under
    it) whose unsent data is where direct_writer looks for it."""
    return (isinstance(transport, tcp.Connection) and hasattr(transport, "_tempDataBuffer")
            and hasattr(transport, "dataBuffer"))


def direct_writer(transport: Any, counts: SentCounter | None = None
                  ) -> Callable[[bytes], None]:
    """A write function for a transport :func:`can_write_direct` takes: straight to the
    socket while Twisted holds nothing unsent, what the socket does not take (or all of it)
    queued through the transport's own write, in order; with ``counts``, what it writes is
    added to ``counts.sent``."""
    sock: socket.socket = transport.socket
    queue: Callable[[bytes], None] = transport.write
    if counts is not None:

        def write_now_counted(data: bytes) -> None:
            counts.sent += len(data)
            if not transport.dataBuffer and not transport._tempDataBuffer \
                    and not transport.disconnecting:
                try:
                    sent = sock.send(data)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    sent = 0
                if sent == len(data):
                    return
                data = data[sent:]
            queue(data)

        return write_now_counted

    def write_now(data: bytes) -> None:
        if not transport.dataBuffer and not transport._tempDataBuffer \
                and not transport.disconnecting:
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # let the transport meet the error and report connectionLost
            if sent == len(data):
                return
            data = data[sent:]
        queue(data)

    return write_now


def nothing_unsent(transport: Any) -> bool:
    """Whether a plain TCP or UNIX transport is open, not closing, and holds nothing
    unsent: it can be closed at once."""
    return bool(isinstance(transport, tcp.Connection) and transport.connected
                and not transport.disconnecting and not transport.dataBuffer
                and not transport._tempDataBuffer)


def ipv4_addresses(transport: Any) -> tuple[list[Any], list[Any]] | None:
    """The client's and the server's ``[host, port]`` of an accepted IPv4 TCP connection,
    from what Twisted stored at accept and the socket; None for any other transport (IPv6,
    whose scoped hosts Twisted rewrites; UNIX, whose transport is a subclass; TLS)."""
    if type(transport) is tcp.Server and transport._addressType is IPv4Address:
        client = transport.client
        host, port = transport.socket.getsockname()
        return [client[0], client[1]], [host, port]
    return None


def proxy_info(wrapper: Any) -> Any:
    """What the PROXY header read by an ``HAProxyProtocolWrapper`` said (Twisted's
    ``ProxyInfo``: ``source``, ``destination``), or None before it was read or for any other
    transport."""
    return getattr(wrapper, "_proxyInfo", None)


# what a connection's first bytes must begin with to be a PROXY header: v2's signature, or
# v1's word (and the 4 bits after v2's signature say its version: 2)
_V2_SIGNATURE = V2Parser.PREFIX
_V1_WORD = V1Parser.PROXYSTR
_V1_UNKNOWN = b"PROXY UNKNOWN"


class ProxyHeaderWrapper(HAProxyProtocolWrapper):
    """Twisted's PROXY header reader, taking a header however TCP splits it, and v1's
    ``PROXY UNKNOWN`` (see the module docstring).  It holds at most 15 bytes before it
    hands them to Twisted's parser; the connection's own timers close one that stops
    there."""

    _held = b""

    def dataReceived(self, data: bytes) -> None:  # Twisted's name
        # (Twisted declares both through zope.interface, which mypy cannot check calls of)
        wrapped: Any = self.wrappedProtocol
        if self._proxyInfo is not None:
            wrapped.dataReceived(data)
            return
        lose: Callable[[], None] = self.loseConnection
        parser = self._parser
        if parser is None:
            data = self._held + data
            self._held = b""
            if data[:12] == _V2_SIGNATURE:
                if len(data) > 12 and data[12] & 0xF0 != 0x20:  # not version 2
                    lose()
                    return
                if len(data) < 16:  # (what Twisted's V2Parser needs to begin)
                    self._held = data
                    return
                self._parser = parser = V2Parser()
            elif data[:5] == _V1_WORD:
                self._parser = parser = V1Parser()
            elif _V2_SIGNATURE.startswith(data) or _V1_WORD.startswith(data):
                self._held = data  # a header's beginning, so far
                return
            else:
                lose()
                return
        if isinstance(parser, V1Parser):
            line, crlf, rest = (parser.buffer + data).partition(b"\r\n")
            if crlf and line == _V1_UNKNOWN:
                parser.buffer = b""
                self._proxyInfo = ProxyInfo(line, None, None)
                if rest:
                    wrapped.dataReceived(rest)
                return
        try:
            self._proxyInfo, remaining = parser.feed(data)
        except (InvalidProxyHeader, ValueError):  # (a port that is no number: ValueError)
            lose()
            return
        if remaining:
            wrapped.dataReceived(remaining)


class ProxyHeaderFactory(HAProxyWrappingFactory):
    """Twisted's HAProxyWrappingFactory, with :class:`ProxyHeaderWrapper`."""

    # (a subclass: Twisted's annotation of the attribute is narrower than it need be)
    protocol = ProxyHeaderWrapper  # type: ignore[assignment]


def write_side_shut(transport: Any) -> bool:
    """Whether Twisted has shut a transport's write side (after ``loseWriteConnection``,
    once all written went out); True for a transport that has no such state."""
    return bool(getattr(transport, "_writeDisconnected", True))
