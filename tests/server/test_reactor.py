"""The asyncio reactor is installed whatever imported Twisted first, on one shared loop."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import asyncio, warnings
{before}
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from django_daphne.server.reactor import install
    reactor = install("{loop}")
from twisted.internet import reactor as imported
print(type(reactor).__name__, imported is reactor,
      type(reactor._asyncioEventloop).__module__.split(".")[0],
      asyncio.get_event_loop() is reactor._asyncioEventloop,
      [str(w.message)[:40] for w in caught])
"""


def run(before: str, loop: str = "auto") -> str:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(before=before, loop=loop)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()


def test_installs_on_uvloop_by_default():
    out = run("")
    assert out.startswith("DirectAsyncioReactor True uvloop True []"), out


def test_replaces_a_default_reactor_imported_first_and_warns():
    out = run("import twisted.internet.reactor")
    assert out.startswith("DirectAsyncioReactor True uvloop True"), out
    assert "Something imported twisted.internet.reac" in out


def test_keeps_an_asyncio_reactor_already_installed():
    out = run("from twisted.internet import asyncioreactor; asyncioreactor.install()")
    assert out == "AsyncioSelectorReactor True asyncio True []", out


def test_plain_asyncio_loop_on_request():
    assert run("", loop="asyncio").startswith("DirectAsyncioReactor True asyncio True")


DIRECT = """
import os, tempfile
from django_daphne.server.reactor import install
reactor = install("{loop}")
from twisted.internet import protocol
from twisted.internet.abstract import FileDescriptor
from twisted.python import log

errors = []
log.addObserver(lambda event: event.get("isError") and errors.append(event))
events = []
lost = []


def count_lost(who):
    lost.append(who)
    if len(lost) == 2:  # the server's connection and the client's
        reactor.stop()


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        if data == b"boom":
            raise ValueError("raised while reading")
        self.transport.write(data)

    def connectionLost(self, reason):
        events.append(("lost", reason.type.__name__))
        count_lost("server")


class Client(protocol.Protocol):
    def connectionMade(self):
        self.transport.write(b"hello")

    def dataReceived(self, data):
        events.append(("echo", data))
        self.transport.write(b"boom")

    def connectionLost(self, reason):
        count_lost("client")


port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")


class FileReader(FileDescriptor):
    # a regular file: epoll refuses it, Twisted's fallback polls it
    def __init__(self, path):
        super().__init__(reactor)
        self.fd = os.open(path, os.O_RDONLY)

    def fileno(self):
        return self.fd

    def doRead(self):
        events.append(("file", os.read(self.fd, 100)))
        self.stopReading()
        protocol.ClientCreator(reactor, Client).connectTCP("127.0.0.1", port.getHost().port)


with tempfile.NamedTemporaryFile() as f:
    f.write(b"from a file")
    f.flush()
    FileReader(f.name).startReading()
    reactor.run()
print(type(reactor).__name__, events, [str(e["failure"].value) for e in errors])
"""


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_direct_reads_serve_sockets_files_and_errors(loop):
    """The reactor's own read registration: a socket is read and written, a regular file
    (which epoll refuses) through Twisted's fallback, and what a read raises is logged and
    loses that connection, as Twisted's own registration does."""
    out = subprocess.run([sys.executable, "-c", DIRECT.format(loop=loop)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        "DirectAsyncioReactor [('file', b'from a file'), ('echo', b'hello'), "
        "('lost', 'ValueError')] ['raised while reading']"), out.stdout + out.stderr


ADDRESSES = """
import socket
from django_daphne.server.reactor import install
reactor = install("uvloop")
from twisted.internet import protocol
from twisted.internet.ssl import CertificateOptions
from twisted.protocols.tls import TLSMemoryBIOFactory

seen = {}


class Recorder(protocol.Factory):
    def __init__(self, name, takes_no_address):
        self.name = name
        self.takes_no_address = takes_no_address

    def buildProtocol(self, addr):
        seen[self.name] = type(addr).__name__
        if len(seen) == 4:
            reactor.callLater(0, reactor.stop)
        return protocol.Protocol()


ports = {
    "own": reactor.listenTCP(0, Recorder("own", True), interface="127.0.0.1"),
    "other": reactor.listenTCP(0, Recorder("other", False), interface="127.0.0.1"),
    "own under TLS": reactor.listenTCP(0, TLSMemoryBIOFactory(
        CertificateOptions(), False, Recorder("own under TLS", True)), interface="127.0.0.1"),
}
bound = socket.socket()
bound.bind(("127.0.0.1", 0))
bound.listen()
bound.setblocking(False)
ports["own, adopted"] = reactor.adoptStreamPort(
    bound.fileno(), socket.AF_INET, Recorder("own, adopted", True))
for port in ports.values():
    socket.create_connection(("127.0.0.1", port.getHost().port)).close()
reactor.run()
print(sorted(seen.items()))
"""


def test_the_servers_own_factories_get_no_address_object():
    """Twisted's ports build an address object per accepted connection for the factory;
    the reactor's skip it for a factory that declares it takes none (the server's own,
    also under TLS and on an adopted socket), and only for such a factory."""
    out = subprocess.run([sys.executable, "-c", ADDRESSES], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        "[('other', 'IPv4Address'), ('own', 'NoneType'), ('own under TLS', 'NoneType'), "
        "('own, adopted', 'NoneType')]"), out.stdout + out.stderr
