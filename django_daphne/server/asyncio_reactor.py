"""Twisted's asyncio reactor, calling each socket's read and write handler directly.

Twisted's registers ``twisted.python.log.callWithLogger`` around the handler: for every
read the legacy log's context (the protocol's logPrefix, copied into a new context dict,
set and restored) is built for messages logged through ``twisted.python.log``, which
nothing here logs through.  The handler, ``_readOrWrite``, catches and logs what a read or
write raises itself.  Anything the loop refuses to watch (a regular file, which epoll
cannot) goes through Twisted's own registration and its fallbacks.  A registration ends
with the file descriptor it was made with, in one dictionary lookup (Twisted's looks the
reader up three times and asks it for its descriptor again), on every connection's close.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.asyncioreactor import AsyncioSelectorReactor


class DirectAsyncioReactor(AsyncioSelectorReactor):
    """See the module docstring (tests/test_reactor.py checks what it relies on)."""

    def addReader(self, reader: Any) -> None:  # noqa: N802 - Twisted's name
        if reader in self._readers or reader in self._continuousPolling._readers:
            return
        try:
            fd = reader.fileno()
            self._asyncioEventloop.add_reader(fd, self._readOrWrite, reader, True)
        except Exception:  # noqa: BLE001 - Twisted's own path decides what it means
            super().addReader(reader)  # type: ignore[no-untyped-call]
            return
        self._readers[reader] = fd

    def addWriter(self, writer: Any) -> None:  # noqa: N802 - Twisted's name
        if writer in self._writers or writer in self._continuousPolling._writers:
            return
        try:
            fd = writer.fileno()
            self._asyncioEventloop.add_writer(fd, self._readOrWrite, writer, False)
        except Exception:  # noqa: BLE001 - Twisted's own path decides what it means
            super().addWriter(writer)  # type: ignore[no-untyped-call]
            return
        self._writers[writer] = fd

    def removeReader(self, reader: Any) -> None:  # noqa: N802 - Twisted's name
        fd = self._readers.pop(reader, None)
        if fd is not None:
            self._asyncioEventloop.remove_reader(fd)
        elif self._continuousPolling.isReading(reader):
            self._continuousPolling.removeReader(reader)

    def removeWriter(self, writer: Any) -> None:  # noqa: N802 - Twisted's name
        fd = self._writers.pop(writer, None)
        if fd is not None:
            self._asyncioEventloop.remove_writer(fd)
        elif self._continuousPolling.isWriting(writer):
            self._continuousPolling.removeWriter(writer)
