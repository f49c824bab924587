"""What ``django_daphne.protocols.transport`` relies on in Twisted, checked against the
installed Twisted with real sockets: if a Twisted release renames the transport's buffers
or changes how a TLS transport closes, these fail (and the server's fast write path or its
TLS close would silently stop working).

Each case runs a reactor in a child process (a reactor runs once per process).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from ..certs import make_certificate

PROBE = textwrap.dedent("""
    import json, os, socket, ssl, sys, threading
    from twisted.internet import reactor, protocol, ssl as tssl
    from django_daphne.protocols.transport import addresses, close_transport, make_writer
    from twisted.protocols.tls import TLSMemoryBIOProtocol

    mode, key, cert = sys.argv[1], sys.argv[2], sys.argv[3]
    found = {}
    BIG = bytes(range(256)) * 40000  # 10 MB: far more than the socket buffers take

    class Recorder:  # the transport's socket, with the calls that end it written down

        def __init__(self, sock):
            self.sock = sock

        def __getattr__(self, name):
            if name in ("shutdown", "close"):
                found.setdefault("socket_calls", []).append(name)
            return getattr(self.sock, name)

    class Probe(protocol.Protocol):
        lost = False

        def connectionLost(self, reason):
            self.lost = True
            found["lost_reason"] = reason.type.__name__

        def connectionMade(self):
            t = self.transport
            write = make_writer(t)
            found["tls"] = isinstance(t, TLSMemoryBIOProtocol)
            found["addresses"] = addresses(t)
            if mode != "unix-close":
                peer, host = t.getPeer(), t.getHost()
                found["twisted_addresses"] = [[peer.host, peer.port], [host.host, host.port]]
            found["own_writer"] = write != t.write
            if mode == "tcp":
                write(b"small")  # nothing queued: it goes out now, nothing is held
                found["held_after_small"] = bool(t.dataBuffer or t._tempDataBuffer)
                write(BIG)  # the socket takes part; the rest is queued, in order
                found["held_after_big"] = bool(t.dataBuffer or t._tempDataBuffer)
                write(b"END")  # behind what is queued, not before it
                close_transport(t)  # once the queue has gone out
                found["lost_at_once"] = self.lost
            elif mode in ("tcp-close", "unix-close"):
                write(b"small")
                t.socket = Recorder(t.socket)
                close_transport(t)  # nothing held: closed now, not a loop turn later
                found["lost_at_once"] = self.lost
            else:
                t.registerProducer(self, True)
                self.write = write

        def dataReceived(self, data):
            # (TLS: the handshake is done once the client's first bytes arrive)
            self.write(b"hello over tls")
            close_transport(self.transport)  # a client that never sends close_notify

        def pauseProducing(self): pass
        def resumeProducing(self): pass
        def stopProducing(self): pass

    factory = protocol.Factory.forProtocol(Probe)
    if mode == "unix-close":
        path = os.path.join(os.path.dirname(key), "probe.sock")
        port = reactor.listenUNIX(path, factory)
    elif mode != "tls":
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    else:
        options = tssl.DefaultOpenSSLContextFactory(key, cert)
        port = reactor.listenSSL(0, factory, options, interface="127.0.0.1")

    def client():
        try:
            read_all()
        except Exception as exc:
            found["client_error"] = repr(exc)
        finally:
            reactor.callFromThread(reactor.stop)

    def read_all():
        if mode == "unix-close":
            raw = socket.socket(socket.AF_UNIX)
            raw.settimeout(20)
            raw.connect(path)
        else:
            raw = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=20)
        sock = raw
        if mode == "tls":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(raw)
            sock.sendall(b"go")
        chunks = []
        try:
            while True:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            found["eof"] = True
        except (socket.timeout, OSError) as exc:
            found["eof"] = repr(exc)
        if mode == "tls":
            # TLS said it ended (our close_notify); has the server closed the socket too,
            # without waiting for a close_notify of ours?  Read under the TLS layer.
            plain = socket.socket(fileno=os.dup(sock.fileno()))
            plain.settimeout(10)
            try:
                found["socket_closed"] = plain.recv(1) == b""
            except socket.timeout:
                found["socket_closed"] = False
            plain.close()
        data = b"".join(chunks)
        found["received_in_order"] = (
            data == b"small" + BIG + b"END" if mode == "tcp" else
            data == b"small" if mode.endswith("-close") else data == b"hello over tls")

    threading.Thread(target=client, daemon=True).start()
    reactor.run(installSignalHandlers=False)
    print(json.dumps(found))
""")


def probe(mode: str, tmp_path) -> dict:
    key, cert = make_certificate(tmp_path)
    done = subprocess.run([sys.executable, "-c", PROBE, mode, str(key), str(cert)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_tcp_writes_go_straight_to_the_socket_and_stay_in_order(tmp_path):
    found = probe("tcp", tmp_path)
    assert found["tls"] is False
    assert found["own_writer"] is True, "Twisted's TCP buffers were not found: no fast path"
    assert found["held_after_small"] is False, "a small write waited for the reactor"
    assert found["held_after_big"] is True, "the rest of a large write was not queued"
    assert found["received_in_order"] is True
    assert found["eof"] is True
    assert found["lost_at_once"] is False  # the queue went out first
    # read from the socket, the same as Twisted's address objects say
    assert found["addresses"] == found["twisted_addresses"]
    assert found["addresses"][1][0] == "127.0.0.1"
    assert found["lost_reason"] == "ConnectionDone"


@pytest.mark.parametrize("mode", ["tcp-close", "unix-close"])
def test_close_with_nothing_held_is_immediate_and_orderly(tmp_path, mode):
    found = probe(mode, tmp_path)
    assert found["lost_at_once"] is True, "the close waited for the reactor"
    assert found["lost_reason"] == "ConnectionDone"
    assert found["received_in_order"] is True
    assert found["eof"] is True  # a FIN after the data, not a reset
    # shut down, then closed, as Twisted closes (see the module docstring of transport.py)
    assert found["socket_calls"] == ["shutdown", "close"]
    if mode == "unix-close":
        assert found["addresses"] == [None, [found["addresses"][1][0], None]]


def test_tls_close_ends_the_socket_without_the_peers_close_notify(tmp_path):
    found = probe("tls", tmp_path)
    assert found["tls"] is True
    assert found["own_writer"] is False  # TLS writes go through its transport
    assert found["addresses"] == found["twisted_addresses"]
    assert found["received_in_order"] is True
    assert found["eof"] is True
    # the client never sent its own close_notify: Twisted alone would wait for it with the
    # socket open, and the read under the TLS layer would time out
    assert found["socket_closed"] is True
