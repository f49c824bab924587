"""Twisted's asyncio reactor, calling each socket's read and write handler directly.

Twisted's registers ``twisted.python.log.callWithLogger`` around the handler: for every
read the legacy log's context (the protocol's logPrefix, copied into a new context dict,
set and restored) is built for messages logged through ``twisted.python.log``, which
nothing here logs through.  The handler, ``_readOrWrite``, catches and logs what a read or
write raises itself.  Anything the loop refuses to watch (a regular file, which epoll
cannot) goes through Twisted's own registration and its fallbacks.
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
