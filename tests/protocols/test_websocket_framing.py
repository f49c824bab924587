"""The WebSocket framing's lean path against autobahn's own reader and writer.

The lean path (websocket_framing.Framing) takes whole text and binary frames itself and
hands everything else to autobahn.  Each stream of client frames here, valid and not, cut
into reads at many places, is fed to two Framings, one with the lean path and one without:
what the application is given, what is written back and how the WebSocket ends must be the
same, byte for byte.  The conformance suite (test_ws_conformance) runs over the lean path
in a real server; this is where the two paths are held to each other.
"""

from __future__ import annotations

import contextlib
import os
import random
import struct

import pytest
import txaio
from autobahn.websocket.xormasker import create_xor_masker

from django_daphne.core.config import Config


@contextlib.contextmanager
def txaio_on_twisted():
    """txaio serves one framework per process: the server's is Twisted, and this test
    process also runs autobahn's asyncio client (test_websocket).  Twisted is chosen for
    what is done here, and the choice before it put back."""
    before = txaio._explicit_framework
    txaio._explicit_framework = None
    txaio.use_twisted()
    try:
        yield
    finally:
        txaio._explicit_framework = None
        if before == "asyncio":
            txaio.use_asyncio()


with txaio_on_twisted():
    from django_daphne.protocols.websocket_framing import (
        Framing,
        frame_header,
        make_factory,
        unmask,
    )


@pytest.fixture(autouse=True)
def _twisted_txaio():
    with txaio_on_twisted():
        yield

LIMIT = 4096  # the frame and message size limits of these framings


class Recorder:
    """FramingEvents that write down what happens, in order."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data

    def message_received(self, message: bytes | str) -> None:
        self.events.append(("message", type(message).__name__, message))

    def pong_received(self, payload: bytes) -> None:
        self.events.append(("pong", payload))

    def closed(self, code: int | None, reason: str | None) -> None:
        self.events.append(("closed", code))

    def end_connection(self, abort: bool) -> None:
        self.events.append(("end", abort))


def framing(lean: bool) -> tuple[Framing, Recorder]:
    factory = make_factory(Config.build(command_line={
        "websocket_max_frame_size": LIMIT, "websocket_max_message_size": LIMIT}))
    factory.lean = lean
    recorder = Recorder()
    return Framing(factory, recorder, recorder.write, "test", None, None), recorder


def client_frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0,
                 masked: bool = True, long_form: bool = False) -> bytes:
    """A client frame, masked with a random key (``long_form``: a 16-bit length even for a
    short payload, which RFC 6455 forbids)."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    if size < 126 and not long_form:
        header = bytes((first, mask_bit | size))
    elif size < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, size)
    if not masked:
        return header + payload
    key = os.urandom(4)
    return header + key + create_xor_masker(key, size).process(payload)


TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10
close_payload = struct.pack("!H", 1000) + b"bye"

STREAMS = {
    "small text and binary": [client_frame(TEXT, b"hello"), client_frame(BINARY, b"\x00\xff"),
                              client_frame(TEXT, "h\u00e9llo \u2603".encode())],
    "empty messages": [client_frame(TEXT, b""), client_frame(BINARY, b"")],
    "every length form": [client_frame(BINARY, os.urandom(n))
                          for n in (125, 126, 127, 1000, 2048, 2049, 4096)],
    "a ping between messages": [client_frame(TEXT, b"a"), client_frame(PING, b"p"),
                                client_frame(TEXT, b"b"), client_frame(PONG, b"x")],
    "fragments with a ping inside": [
        client_frame(TEXT, b"one ", fin=False), client_frame(PING, b"mid"),
        client_frame(CONTINUATION, b"two"), client_frame(TEXT, b"after")],
    "close then more": [client_frame(TEXT, b"last"), client_frame(CLOSE, close_payload),
                        client_frame(TEXT, b"never")],
    "invalid UTF-8": [client_frame(TEXT, b"ok"), client_frame(TEXT, b"\xc3\x28"),
                      client_frame(TEXT, b"never")],
    "over the frame limit": [client_frame(BINARY, b"x" * 10),
                             client_frame(BINARY, b"x" * (LIMIT + 1))],
    "a 64-bit length": [client_frame(BINARY, b"y" * 70000)],
    "a length not in its shortest form": [client_frame(TEXT, b"ok"),
                                          client_frame(TEXT, b"short", long_form=True)],
    "an unmasked frame": [client_frame(TEXT, b"ok"), client_frame(TEXT, b"bare", masked=False)],
    "an RSV bit without an extension": [client_frame(TEXT, b"ok"),
                                        client_frame(TEXT, b"rsv", rsv=4)],
    "a reserved opcode": [client_frame(TEXT, b"ok"), client_frame(3, b"what")],
    "a continuation without a start": [client_frame(CONTINUATION, b"lost")],
}


def feed(lean: bool, data: bytes, cuts: list[int]) -> Recorder:
    framer, recorder = framing(lean)
    start = 0
    for cut in [*cuts, len(data)]:
        if cut > start:
            framer.data_received(data[start:cut])
        start = cut
    return recorder


@pytest.mark.parametrize("name", list(STREAMS))
def test_lean_path_and_autobahn_agree(name):
    data = b"".join(STREAMS[name])
    rng = random.Random(name)
    splits = [[]] + [[i] for i in range(1, min(len(data), 40))]
    splits += [sorted(rng.sample(range(1, len(data)), min(len(data) - 1, 5)))
               for _ in range(30)]
    splits += [list(range(1, len(data)))] if len(data) < 5000 else []
    for cuts in splits:
        # autobahn's own answer can depend on where the reads end (whether it has ended
        # the connection when the read that failed it returns): compared read for read
        reference = feed(False, data, cuts)
        assert reference.events or reference.written, "the stream does something"
        got = feed(True, data, cuts)
        assert (got.events, bytes(got.written)) == \
            (reference.events, bytes(reference.written)), cuts


def test_lean_path_takes_whole_frames_in_one_read():
    """The common case goes through the lean path: autobahn's reader is not called."""
    framer, recorder = framing(True)
    calls = []
    reader = framer._protocol._dataReceived
    framer._protocol._dataReceived = lambda data: (calls.append(data), reader(data))
    framer.data_received(client_frame(TEXT, b"one") + client_frame(BINARY, b"two"))
    assert recorder.events == [("message", "str", "one"), ("message", "bytes", b"two")]
    assert calls == []
    # a frame cut by the read goes to autobahn, and so does the rest of it
    frame = client_frame(TEXT, b"three")
    framer.data_received(frame[:4])
    framer.data_received(frame[4:])
    assert calls == [frame[:4], frame[4:]]
    assert recorder.events[-1] == ("message", "str", "three")
    # once autobahn holds nothing, whole frames take the lean path again
    framer.data_received(client_frame(TEXT, b"four"))
    assert len(calls) == 2
    assert recorder.events[-1] == ("message", "str", "four")


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 100_000])
def test_sent_frames_match_autobahns(size, binary):
    payload = os.urandom(size)
    out = {}
    for lean in (False, True):
        framer, recorder = framing(lean)
        framer.send_message(payload, binary)
        out[lean] = bytes(recorder.written)
    assert out[True] == out[False]
    assert out[True][len(frame_header(size, binary)):] == payload


def test_unmask_matches_autobahns_masker():
    rng = random.Random(7)
    for size in [*range(0, 70), 2047, 2048, 2049, 5000, 1 << 20]:
        key = rng.randbytes(4)
        payload = rng.randbytes(size)
        assert unmask(payload, key) == create_xor_masker(key, size).process(payload), size


def test_each_connection_starts_with_the_factorys_options():
    """Framing hands autobahn's protocol the factory's options itself (autobahn's own copy
    pretty-prints them on every connection): every one of them is there."""
    from autobahn.twisted.websocket import WebSocketServerProtocol

    framer, _ = framing(True)
    factory = framer._protocol.factory
    for name in WebSocketServerProtocol.CONFIG_ATTRS:
        assert getattr(framer._protocol, name) == getattr(factory, name), name
    assert framer._protocol.maxFramePayloadSize == LIMIT
