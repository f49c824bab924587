"""What the connections need from Twisted's transports beyond their interfaces, in one place.

Written against Twisted 23.8 to 26.10; ``tests/protocols/test_transport.py`` fails if a Twisted
release changes what these functions rely on.  The private names of Twisted's that they
read are in :mod:`.twisted_internals` (each pinned by tests/protocols/test_twisted_internals.py).

- A direct write to the socket of a plain TCP or UNIX transport while Twisted holds nothing
  unsent: Twisted's ``write`` always waits for the next writable event (an epoll
  registration, a loop turn and a deregistration per response).
- The addresses of an IPv4 TCP connection, from what Twisted stored at accept and from the
  socket, without the two address objects (attrs classes) Twisted's ``getPeer`` and
  ``getHost`` build on every call.
- Closing a plain TCP or UNIX transport that holds nothing unsent: Twisted's
  ``loseConnection`` waits for the next writable event to find its buffer empty (an epoll
  registration and a loop turn per connection); the socket is closed at once instead, as
  Twisted itself does when the write side is already shut, with one reason object for
  every such close.  (Twisted's ``shutdown`` before ``close`` stays: without it, a
  keep-alive client whose next request crossed the close got a reset now and then rather
  than the end of the connection it may retry on, in tests/server/test_operations.py's reload
  under load.)
- Closing a TLS transport: Twisted's TLS layer starts its close only once no producer is
  registered, and then waits for the peer's own close_notify before it closes the socket, so
  a client that never answers (or never reads) would hold the connection for ever.  RFC 8446
  6.1 lets the side that closes stop there: after our close_notify the socket is closed.
- A lingering close, after an error answer: the write side shut once the answer has gone out
  (on TLS after our close_notify), the socket still read, what arrives dropped (on TLS never
  decrypted).  Closing a socket whose receive buffer holds unread bytes makes the kernel
  send a reset, which can overtake the answer still on its way (RFC 9112 9.6).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet import main, tcp
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from ..asgi.scope import address, server_address
from .twisted_internals import (
    HAProxyProtocolWrapper,
    can_write_direct,
    direct_writer,
    ipv4_addresses,
    nothing_unsent,
    proxy_info,
    write_side_shut,
)

if TYPE_CHECKING:
    from ..core.counts import Counts


class Transport(Protocol):
    """What a connection uses of its Twisted transport (TCP, TLS or UNIX).  Twisted declares
    ``Protocol.transport`` as ``ITransport``, a zope.interface declaration whose methods mypy
    cannot check calls to, and leaves out the producer and TCP calls."""

    disconnecting: bool

    def write(self, data: bytes) -> None: ...

    def getPeer(self) -> IAddress: ...  # Twisted's names

    def getHost(self) -> IAddress: ...

    def setTcpNoDelay(self, enabled: bool) -> None:
        """TCP only: raises AttributeError on a UNIX socket."""
        ...

    def registerProducer(self, producer: object, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def loseConnection(self) -> None: ...

    def loseWriteConnection(self) -> None: ...

    def abortConnection(self) -> None: ...


# whether a transport class is one make_writer can write past (decided once per class)
_DIRECT: dict[type, bool] = {}


def writes_direct(transport: Any) -> bool:
    """Whether a transport is one :func:`make_writer` writes past (a plain TCP or UNIX
    one), decided once per class."""
    kind = type(transport)
    direct = _DIRECT.get(kind)
    if direct is None:
        direct = _DIRECT[kind] = can_write_direct(transport)
    return direct


def make_writer(transport: Any, counts: Counts | None = None) -> Callable[[bytes], None]:
    """The function a connection writes through.  For a plain TCP or UNIX transport it
    sends straight to the socket while Twisted holds nothing unsent before it
    (:func:`.twisted_internals.direct_writer`); for TLS (and anything else) it is the
    transport's own write.  With ``counts`` (metrics on) it adds what it writes to
    ``counts.sent``."""
    if writes_direct(transport):
        return direct_writer(transport, counts)
    write: Callable[[bytes], None] = transport.write
    if counts is None:
        return write

    def write_counted(data: bytes) -> None:
        counts.sent += len(data)
        write(data)

    return write_counted


def addresses(transport: Any) -> tuple[list[Any] | None, list[Any] | None]:
    """The client's and the server's address as ASGI's ``[host, port]`` (see
    :func:`..asgi.scope.address`), read straight from an IPv4 TCP transport; any other
    (IPv6, whose scoped hosts Twisted rewrites; UNIX, whose transport is a subclass; TLS)
    through Twisted's own calls."""
    found = ipv4_addresses(transport)
    if found is not None:
        return found
    return address(transport.getPeer()), server_address(transport.getHost())


def behind_proxy_header(transport: Any) -> bool:
    """Whether a connection starts with a PROXY protocol header that Twisted's wrapper reads
    (``--proxy-protocol``, or a ``haproxy:`` endpoint): its addresses are known only once
    the first bytes after the header arrive."""
    if type(transport) is tcp.Server:
        return False  # the common case, at once
    lower = getattr(transport, "transport", None)  # a TLS connection's socket side
    return isinstance(transport, HAProxyProtocolWrapper) or \
        isinstance(lower, HAProxyProtocolWrapper)


def proxied_addresses(transport: Any) -> tuple[list[Any] | None, list[Any] | None] | None:
    """After a PROXY protocol header: the addresses it carried, as :func:`addresses`; None
    when its source is not an IP address (Twisted's v1 parser takes any word there)."""
    wrapper = transport if isinstance(transport, HAProxyProtocolWrapper) else \
        getattr(transport, "transport", None)
    info = proxy_info(wrapper)
    if info is not None and info.source is not None and \
            not isinstance(info.source, (IPv4Address, IPv6Address)):
        # a v2 header's UNIX-socket client: no address, and not to be taken for a peer on
        # our own UNIX socket (which the default trust believes)
        return None
    try:
        client, server = addresses(transport)
    except (UnicodeDecodeError, ValueError):  # a v2 UNIX path that is not text
        return None
    for pair in (client, server):
        if pair is None or pair[1] is None:
            continue  # a UNIX-socket address
        host, port = pair
        if "%" in host or not 0 <= port <= 65535:  # a zone id: any text may follow the %
            return None
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None
    return client, server


# TLS versions and cipher suites as the ASGI TLS extension numbers them (IANA's ids)
_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
_CIPHER_IDS: dict[str, int] = {}


def _cipher_id(name: str | None) -> int | None:
    """An OpenSSL cipher name's IANA id, from the standard library's table of them."""
    if not _CIPHER_IDS:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_ciphers("ALL:@SECLEVEL=0")
        _CIPHER_IDS.update((c["name"], c["id"] & 0xFFFF) for c in context.get_ciphers())
    return _CIPHER_IDS.get(name) if name else None


def _pem(certificate: Any) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    pem: bytes = certificate.to_cryptography().public_bytes(Encoding.PEM)
    return pem.decode("ascii")


def tls_extension(transport: Any) -> dict[str, Any] | None:
    """The ASGI TLS extension's fields of a TLS connection whose handshake is done (None
    for any other): the server's certificate, the client's chain and name, the version and
    the cipher suite. A client certificate that does not verify never gets here: it fails
    the handshake, so ``client_cert_error`` is always None."""
    if not isinstance(transport, TLSMemoryBIOProtocol):
        return None
    tls = transport.getHandle()  # pyOpenSSL's Connection
    own = tls.get_certificate()
    leaf = tls.get_peer_certificate()
    chain = [leaf] if leaf is not None else []
    for certificate in tls.get_peer_cert_chain() or ():
        # a server's view of the chain may or may not begin with the client's own
        if leaf is None or certificate.digest("sha256") != leaf.digest("sha256"):
            chain.append(certificate)
    return {
        "server_cert": _pem(own) if own is not None else None,
        "client_cert_chain": [_pem(certificate) for certificate in chain],
        "client_cert_name": leaf.to_cryptography().subject.rfc4514_string()
        if leaf is not None else None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(tls.get_protocol_version_name()),
        "cipher_suite": _cipher_id(tls.get_cipher_name()),
    }


# the reason a connection closed at once gives its protocol (Twisted's connectionLost
# reads the exception's classes from it, computed once here rather than per connection)
_CLOSED = Failure(main.CONNECTION_DONE)


def close_transport(transport: Any) -> None:
    """Close once what was written has gone out, whatever the transport."""
    if isinstance(transport, TLSMemoryBIOProtocol):
        # the producer the connection registered is unregistered: Twisted's TLS layer would
        # not start its close otherwise
        transport.unregisterProducer()
        transport.loseConnection()
        lower: Transport | None = transport.transport
        if lower is not None and not lower.disconnecting:
            # our close_notify is written to it (or the handshake never finished, and
            # there is nothing to say): close the socket once it has gone out
            lower.loseConnection()
    elif nothing_unsent(transport):
        # nothing unsent: what Twisted's loseConnection does once its buffer is found empty
        # (the socket closed, the protocol told), without waiting for a turn
        transport.connectionLost(_CLOSED)
    else:
        transport.loseConnection()


def linger(transport: Any, discard: Callable[[bytes], None]) -> None:
    """Shut the write side once what was written has gone out, and hand every byte read
    from then on to ``discard``: the start of a lingering close (the connection ends when
    the client closes its side, or when its owner cuts it off)."""
    # no producer: Twisted shuts the write side only once none is registered (a paused one
    # would be resumed instead, and the shutdown forgotten)
    transport.unregisterProducer()
    lower: Any = transport
    if isinstance(transport, TLSMemoryBIOProtocol):
        transport.loseConnection()  # our close_notify, after what was written
        # the client's records are dropped as they come, undecrypted (its own close_notify
        # among them: the TCP close ends the connection)
        transport.dataReceived = discard  # type: ignore[method-assign]
        lower = transport.transport
    if lower is not None and not lower.disconnecting:
        lower.loseWriteConnection()
        lower.resumeProducing()  # read, whatever paused reading before


def written_out(transport: Any) -> bool:
    """Whether a lingering close has sent all that was written, and shut the write side."""
    lower = transport.transport if isinstance(transport, TLSMemoryBIOProtocol) else transport
    return lower is None or write_side_shut(lower)
