"""Twisted's asyncio reactor, calling each socket's read and write handler directly.

Twisted's registers ``twisted.python.log.callWithLogger`` around the handler: for every
read the legacy log's context (the protocol's logPrefix, copied into a new context dict,
set and restored) is built for messages logged through ``twisted.python.log``, which
nothing here logs through.  The handler, ``_readOrWrite``, catches and logs what a read or
write raises itself.  Anything the loop refuses to watch (a regular file, which epoll
cannot) goes through Twisted's own registration and its fallbacks.  A registration ends
with the file descriptor it was made with, in one dictionary lookup (Twisted's looks the
reader up three times and asks it for its descriptor again), on every connection's close.

Its TCP listening ports (``listenTCP``, and ``adoptStreamPort`` for inherited sockets) hand
the server's own factory no address for each connection it accepts: the factory declares
it takes none (``takes_no_address``), because a connection reads its addresses from its
socket (``protocols/transport.addresses``), and Twisted builds an address object per
accepted connection for it.  Any other factory gets its address as from Twisted.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import error, tcp
from twisted.internet.asyncioreactor import AsyncioSelectorReactor


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
    """See the module docstring (tests/test_reactor.py checks what it relies on)."""

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
