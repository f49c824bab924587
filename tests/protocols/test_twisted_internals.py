"""Each place django_daphne.protocols.twisted_internals reaches past Twisted's public API,
checked directly against the installed Twisted: a Twisted release that changes what one
relies on fails here, by name (the black-box tests would fail too, less plainly)."""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import endpoints, error, protocol, tcp, unix
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.haproxy import proxyEndpoint
from twisted.protocols.haproxy._wrapper import HAProxyWrappingFactory
from twisted.python.failure import Failure

from django_daphne.protocols import twisted_internals
from django_daphne.protocols.twisted_internals import (
    DirectAsyncioReactor,
    HAProxyProtocolWrapper,
    InheritedUNIXPort,
    ProxyHeaderFactory,
    ProxyHeaderWrapper,
    asyncio_loop,
    builtin_endpoint_types,
    can_write_direct,
    direct_writer,
    ipv4_addresses,
    is_asyncio_reactor,
    nothing_unsent,
    parse_description,
    proxy_info,
    read_into,
    set_ssl_context_factory,
    ssl_binding,
    ssl_context_factory,
    wrapped_endpoint,
    write_side_shut,
)
from tests.certs import make_certificate

# -- endpoint descriptions


def test_descriptions_are_split_with_twisteds_escapes():
    assert parse_description(r"tcp:8000:interface=\:\:1") == (
        ["tcp", "8000"], {"interface": "::1"})
    assert parse_description(r"unix:/run/a\:b.sock:mode=660") == (
        ["unix", "/run/a:b.sock"], {"mode": "660"})


def test_twisted_parses_its_built_in_endpoint_types_itself():
    assert {"tcp", "unix", "ssl"} <= builtin_endpoint_types()
    assert "fd" not in builtin_endpoint_types()  # (built by server/endpoints.py)


SYSTEMD = """
import os
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="2", LISTEN_FDNAMES="web:admin")
from django_daphne.protocols.twisted_internals import systemd_fds
fds = systemd_fds()
print(fds.inheritedDescriptors(), sorted(fds.inheritedNamedDescriptors().items()),
      "LISTEN_FDS" in os.environ)
"""


def test_the_systemd_sockets_are_read_at_import_and_taken_from_the_environment():
    out = subprocess.run([sys.executable, "-c", SYSTEMD], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[3, 4] [('admin', 4), ('web', 3)] False", out


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("certs"))


def test_an_ssl_endpoint_keeps_its_tls_options_and_binding(certificate):
    cert, key = certificate
    reactor = MemoryReactor()
    endpoint = endpoints.serverFromString(
        reactor, f"ssl:8443:privateKey={key}:certKey={cert}:interface=127.0.0.1:backlog=7")
    assert isinstance(endpoint, endpoints.SSL4ServerEndpoint)
    assert ssl_binding(endpoint) == (8443, 7, "127.0.0.1")
    options = ssl_context_factory(endpoint)
    assert options.getContext() is not None  # the key and certificate loaded
    other = object()
    set_ssl_context_factory(endpoint, other)
    endpoint.listen(protocol.Factory())
    assert reactor.sslServers[0][2] is other  # what listen serves with


def test_a_haproxy_endpoint_names_the_endpoint_it_wraps():
    reactor = MemoryReactor()
    endpoint = endpoints.serverFromString(reactor, "haproxy:tcp:8000")
    inner = wrapped_endpoint(endpoint)
    assert isinstance(inner, endpoints.TCP4ServerEndpoint)
    assert wrapped_endpoint(inner) is None
    assert isinstance(wrapped_endpoint(proxyEndpoint(inner)), endpoints.TCP4ServerEndpoint)


# -- listening ports and the reactor


def test_twisteds_port_state_that_inherited_unix_port_sets_is_still_there():
    assert tcp.Port._shouldShutdown is True  # (startListening sets it False: no shutdown)
    assert callable(tcp._reservedFD.reserve)
    assert callable(unix.Port._fromListeningDescriptor)


def unix_listener(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(5)
    return sock


def test_an_inherited_unix_port_leaves_the_socket_file_alone(tmp_path):
    path = tmp_path / "s.sock"
    sock = unix_listener(path)
    reactor = MemoryReactor()
    port = InheritedUNIXPort.adopt(reactor, sock.fileno(), protocol.Factory())
    port.startListening()
    try:
        assert port.connected and port in reactor.readers
        assert port.fileno() != sock.fileno()  # its own duplicate
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        port.connectionLost(Failure(Exception("stopped")))
        assert path.exists()
    finally:
        sock.close()


def test_twisteds_own_adopted_unix_port_still_chmods_and_unlinks(tmp_path):
    """The reason InheritedUNIXPort exists: should this fail, it may be Twisted's alone."""
    path = tmp_path / "s.sock"
    sock = unix_listener(path)
    port = unix.Port._fromListeningDescriptor(MemoryReactor(), sock.fileno(),
                                              protocol.Factory())
    port.startListening()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
        port.connectionLost(Failure(Exception("stopped")))
        assert not path.exists()
    finally:
        sock.close()


def test_an_asyncio_reactor_names_its_loop():
    loop = asyncio.new_event_loop()
    try:
        reactor = AsyncioSelectorReactor(loop)
        assert is_asyncio_reactor(reactor) and asyncio_loop(reactor) is loop
        assert not is_asyncio_reactor(MemoryReactor())
    finally:
        loop.close()


def test_the_asyncio_reactor_internals_the_direct_reactor_overrides():
    assert list(inspect.signature(AsyncioSelectorReactor._readOrWrite).parameters) == [
        "self", "selectable", "read"]
    assert list(inspect.signature(tcp.Port._buildAddr).parameters) == ["self", "address"]
    assert list(inspect.signature(tcp.Port._fromListeningDescriptor).parameters) == [
        "reactor", "fd", "addressFamily", "factory"]
    loop = asyncio.new_event_loop()
    try:
        reactor = AsyncioSelectorReactor(loop)
        # each registered selectable's descriptor, by selectable (the waker's already)
        assert isinstance(reactor._readers, dict) and isinstance(reactor._writers, dict)
        assert all(type(fd) is int for fd in reactor._readers.values())
        polling = reactor._continuousPolling
        assert polling._readers == set() and polling._writers == set()
        for name in ("isReading", "isWriting", "removeReader", "removeWriter"):
            assert callable(getattr(polling, name)), name
        assert {socket.AF_INET, socket.AF_INET6} <= set(reactor._supportedAddressFamilies)
    finally:
        loop.close()


class Recorder(protocol.Protocol):
    def connectionMade(self) -> None:
        self.factory.made.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.factory.received.append(data)


class RecordingFactory(protocol.Factory):
    protocol = Recorder

    def __init__(self, takes_no_address: bool) -> None:
        self.takes_no_address = takes_no_address
        self.addresses: list[Any] = []
        self.made: list[Recorder] = []
        self.received: list[bytes] = []

    def buildProtocol(self, addr: Any) -> protocol.Protocol | None:
        self.addresses.append(addr)
        return super().buildProtocol(addr)


@pytest.fixture
def direct_reactor() -> Iterator[tuple[DirectAsyncioReactor, asyncio.AbstractEventLoop]]:
    loop = asyncio.new_event_loop()
    reactor = DirectAsyncioReactor(loop)
    try:
        yield reactor, loop
    finally:
        loop.close()


def turn(loop: asyncio.AbstractEventLoop, until: Any, seconds: float = 5.0) -> None:
    async def wait() -> None:
        for _ in range(int(seconds / 0.01)):
            if until():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("timed out")

    loop.run_until_complete(wait())


@pytest.mark.parametrize("takes_no_address", [True, False])
def test_the_direct_reactor_accepts_and_reads(direct_reactor, takes_no_address):
    reactor, loop = direct_reactor
    factory = RecordingFactory(takes_no_address)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    assert reactor._readers[port] == port.fileno()  # registered with its descriptor
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    try:
        client.sendall(b"hello")
        turn(loop, lambda: factory.received)
        assert factory.received == [b"hello"]
        addr = factory.addresses[0]
        if takes_no_address:
            assert addr is None  # no address object built (_buildAddr)
        else:
            assert isinstance(addr, IPv4Address)
            assert (addr.host, addr.port) == client.getsockname()
        transport = factory.made[0].transport
        transport.loseConnection()
        turn(loop, lambda: transport not in reactor._readers)
    finally:
        client.close()
        port.stopListening()
        turn(loop, lambda: port not in reactor._readers)


def test_the_direct_reactor_adopts_a_tcp_socket(direct_reactor):
    reactor, loop = direct_reactor
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)  # as Twisted asks of an adopted socket
    factory = RecordingFactory(True)
    port = reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, factory)
    sock.close()
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    try:
        client.sendall(b"x")
        turn(loop, lambda: factory.received)
        assert factory.addresses == [None]
    finally:
        client.close()
        port.stopListening()
        turn(loop, lambda: port not in reactor._readers)


# -- transports


def test_an_accepted_tcp_connection_as_the_transport_helpers_read_it(direct_reactor):
    reactor, loop = direct_reactor
    factory = RecordingFactory(True)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    client.settimeout(5)
    try:
        turn(loop, lambda: factory.made)
        transport = factory.made[0].transport
        assert type(transport) is tcp.Server and transport._addressType is IPv4Address
        peer, host = transport.getPeer(), transport.getHost()
        assert ipv4_addresses(transport) == ([peer.host, peer.port], [host.host, host.port])
        # what direct_writer and nothing_unsent read: Twisted's write queues into
        # _tempDataBuffer (then dataBuffer) until the socket is writable
        assert can_write_direct(transport)
        assert transport._tempDataBuffer == [] and not transport.dataBuffer
        assert nothing_unsent(transport)
        direct_writer(transport)(b"direct")
        assert client.recv(100) == b"direct"
        transport.write(b"queued")
        assert transport._tempDataBuffer == [b"queued"] and not nothing_unsent(transport)
        written: list[bytes] = []
        transport.write = written.append  # a direct write behind queued data queues too
        direct_writer(transport)(b"after")
        assert written == [b"after"]
        del transport.write
        turn(loop, lambda: not transport._tempDataBuffer and not transport.dataBuffer)
        assert client.recv(100) == b"queued"  # (sent at the next writable event)
        assert not write_side_shut(transport)
        transport.loseWriteConnection()
        turn(loop, lambda: write_side_shut(transport))
    finally:
        client.close()
        port.stopListening()
        turn(loop, lambda: port not in reactor._readers)


class Lost(Recorder):
    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.factory.lost.append(reason)


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_reads_counted_by_the_transport(direct_reactor, tmp_path, family):
    """read_into puts its reader where the transport's doRead hands each read: the bytes
    reach the handler and are counted, the protocol's dataReceived is passed by, and the
    end of the stream still closes the connection; None puts Twisted's own back."""
    reactor, loop = direct_reactor
    factory = RecordingFactory(True)
    factory.protocol = Lost
    factory.lost = []
    if family == "tcp":
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        client = socket.create_connection(("127.0.0.1", port.getHost().port))
    else:
        port = reactor.listenUNIX(str(tmp_path / "s.sock"), factory)
        client = socket.socket(socket.AF_UNIX)
        client.connect(str(tmp_path / "s.sock"))
    try:
        turn(loop, lambda: factory.made)
        transport = factory.made[0].transport
        assert can_write_direct(transport)

        class Counts:
            received = 0

        counts, handled = Counts(), []
        read_into(transport, handled.append, counts)
        client.sendall(b"counted")
        turn(loop, lambda: counts.received == 7)
        assert b"".join(handled) == b"counted" and factory.received == []
        read_into(transport, None)  # Twisted's own again: the protocol's dataReceived
        client.sendall(b"twisted")
        turn(loop, lambda: b"".join(factory.received) == b"twisted")
        assert counts.received == 7
        read_into(transport, handled.append, counts)
        client.shutdown(socket.SHUT_WR)  # the end of the stream, read by ours
        turn(loop, lambda: factory.lost)
        assert factory.lost[0].check(error.ConnectionDone)
    finally:
        client.close()
        port.stopListening()
        turn(loop, lambda: port not in reactor._readers)


def test_no_direct_writes_past_other_transports():
    assert not can_write_direct(StringTransport())
    assert ipv4_addresses(StringTransport()) is None
    assert not nothing_unsent(StringTransport())
    assert write_side_shut(object())  # no such state: nothing held back


def test_a_proxy_header_is_read_by_the_wrapper_transport_helpers_know():
    inner = protocol.Factory.forProtocol(protocol.Protocol)
    wrapper = HAProxyWrappingFactory(inner).buildProtocol(IPv4Address("TCP", "10.0.0.1", 1))
    assert isinstance(wrapper, HAProxyProtocolWrapper)
    wrapper.makeConnection(StringTransport())
    assert proxy_info(wrapper) is None
    wrapper.dataReceived(b"PROXY TCP4 1.2.3.4 5.6.7.8 111 222\r\n")
    info = proxy_info(wrapper)
    assert info.source == IPv4Address("TCP", "1.2.3.4", 111)
    assert info.destination == IPv4Address("TCP", "5.6.7.8", 222)
    assert proxy_info(StringTransport()) is None


class Received(protocol.Protocol):
    """What a wrapped protocol was given."""

    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


def read_through(factory_class, chunks) -> tuple[Any, bytes, bool]:
    """Feed ``chunks`` to a new PROXY header wrapper; (what the header said, the bytes
    after it that reached the wrapped protocol, whether it closed the connection)."""
    received = Received()
    inner = protocol.Factory.forProtocol(lambda: received)
    wrapper = factory_class(inner).buildProtocol(IPv4Address("TCP", "10.0.0.1", 1))
    transport = StringTransport()
    wrapper.makeConnection(transport)
    for chunk in chunks:
        if transport.disconnecting:
            break
        wrapper.dataReceived(chunk)
    info = proxy_info(wrapper)
    said = None if info is None else (info.source, info.destination)
    return said, received.data, transport.disconnecting


V2 = b"\r\n\r\n\x00\r\nQUIT\n"
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
HEADERS = [  # (a header, what it says: source and destination)
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 111 222\r\n",
     (IPv4Address("TCP", "1.2.3.4", 111), IPv4Address("TCP", "5.6.7.8", 222))),
    (b"PROXY TCP6 2001:db8::1 2001:db8::2 111 222\r\n",
     (IPv6Address("TCP", "2001:db8::1", 111), IPv6Address("TCP", "2001:db8::2", 222))),
    (b"PROXY UNKNOWN\r\n", (None, None)),  # a proxy's own connection (a health check)
    (b"PROXY UNKNOWN 2001:db8::1 2001:db8::2 1 2\r\n", (None, None)),
    (V2 + b"\x21\x11\x00\x0c" + bytes([1, 2, 3, 4, 5, 6, 7, 8, 0, 111, 0, 222]),
     (IPv4Address("TCP", "1.2.3.4", 111), IPv4Address("TCP", "5.6.7.8", 222))),
    (V2 + b"\x20\x00\x00\x00", (None, None)),  # v2's LOCAL: a health check
]


@pytest.mark.parametrize("header,said", HEADERS, ids=range(len(HEADERS)))
def test_a_proxy_header_is_read_however_tcp_splits_it(header, said):
    """Every split of the header and what follows (at each byte, and a byte at a time)
    gives what the whole gives: Twisted's own wrapper closes a connection whose first
    read is under 8 bytes (v1) or 16 (v2), and refuses ``PROXY UNKNOWN``."""
    data = header + REQUEST
    assert read_through(ProxyHeaderFactory, [data]) == (said, REQUEST, False)
    for cut in range(1, len(data)):
        assert read_through(ProxyHeaderFactory, [data[:cut], data[cut:]]) \
            == (said, REQUEST, False), cut
    assert read_through(ProxyHeaderFactory, [bytes([b]) for b in data]) \
        == (said, REQUEST, False)
    # what Twisted's own does with these (the reason for ProxyHeaderWrapper)
    assert read_through(HAProxyWrappingFactory, [data[:4], data[4:]])[2]
    if header == b"PROXY UNKNOWN\r\n":
        assert read_through(HAProxyWrappingFactory, [data])[2]


@pytest.mark.parametrize("data", [
    REQUEST,  # no header
    b"PROXZ TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    V2[:11] + b"X",
    V2 + b"\x10\x00\x00\x00",  # version 1 in v2's signature
    b"PROXY TCP4 1.2.3.4 5.6.7.8 port 2\r\n",  # (Twisted's parser: a ValueError)
    b"PROXY SCTP 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY " + b"x" * 120,  # no end of line within v1's 107 bytes
])
def test_what_is_no_proxy_header_closes_the_connection(data):
    """Byte by byte too: the wrapper closes as soon as the bytes cannot begin a header,
    passing nothing on, and holds no more than the 15 bytes before Twisted's v2 parser
    can begin."""
    for chunks in ([data], [bytes([b]) for b in data]):
        assert read_through(ProxyHeaderFactory, chunks) == (None, b"", True), chunks
    wrapper = ProxyHeaderFactory(protocol.Factory.forProtocol(Received)).buildProtocol(None)
    assert isinstance(wrapper, ProxyHeaderWrapper)
    wrapper.makeConnection(StringTransport())
    for byte in V2 + b"\x21\x11\x00":
        wrapper.dataReceived(bytes([byte]))
        assert len(wrapper._held) <= 15


def test_every_name_in_the_module_is_tested_here():
    body = Path(__file__).read_text().split("from tests.certs import", 1)[1]
    untested = [name for name in twisted_internals.__all__ if name not in body]
    assert not untested, untested
