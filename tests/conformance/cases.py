"""The conformance cases, grouped by number as the Autobahn|Testsuite groups them.

Each case is data: what to send (raw frames, or messages compressed with what the handshake
agreed), the events the server must send back (echoed messages, pongs), and how the
connection must end: still open (the client then closes with 1000 and expects 1000 back),
or closed by the server with one of the given codes.  The expectations are RFC 6455's and
RFC 7692's, for a server whose application echoes every message (``/ws/echo`` in
``tests/apps.py``).

Echoes are sent by the application, so they lag behind autobahn's own replies (pongs, close
frames): a case that sends a valid message and a bad frame in one burst accepts any prefix of
the echoes before the close (``strict=False``), as the RFC allows; a case that must see the
echo first waits for it (``Wait``) before sending the bad frame.

A case the server is known to fail for a reason outside our control (autobahn's own rules)
names the reason and what the server does instead (``DEVIATIONS``); the report counts it
apart, and only when the server does exactly that.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from .client import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    Connection,
    close_payload,
    encode_frame,
)

GROUPS = {
    1: "framing",
    2: "pings and pongs",
    3: "reserved bits",
    4: "opcodes",
    5: "fragmentation",
    6: "UTF-8 handling",
    7: "close handling",
    9: "limits",
    12: "permessage-deflate messages",
    13: "permessage-deflate negotiation",
}


@dataclass(frozen=True)
class Limits:
    """The server's --websocket-max-message-size and --websocket-max-frame-size."""

    message: int
    frame: int


# -- steps


@dataclass(frozen=True)
class Send:
    """Raw bytes, written at once or in writes of ``chop`` bytes."""

    data: bytes
    chop: int = 0

    def run(self, conn: Connection) -> None:
        conn.send(self.data, self.chop)


@dataclass(frozen=True)
class Wait:
    """Until the server has sent ``count`` events in all: a synchronisation point."""

    count: int

    def run(self, conn: Connection) -> None:
        conn.wait(lambda events: len(events) >= self.count)


@dataclass(frozen=True)
class Deflated:
    """A message compressed with the agreed permessage-deflate parameters, in
    ``fragments`` frames.  RSV1 goes on the first frame (``rsv_first``) and not on the
    others (``rsv_rest``) unless a case says otherwise.  Without an agreed extension (a
    case where declining is allowed) the message goes uncompressed."""

    opcode: int
    payload: bytes
    fragments: int = 1
    rsv_first: int = 4
    rsv_rest: int = 0
    final_block: bool = False
    chop: int = 0
    interleave: bytes = b""  # frames sent between the first fragment and the rest

    def run(self, conn: Connection) -> None:
        if conn.deflate is None:
            data, rsv_first = self.payload, 0
        else:
            data = conn.deflate.compress(self.payload, self.final_block)
            rsv_first = self.rsv_first
        size = -(-len(data) // self.fragments) if data else 0
        pieces = [data[i * size: (i + 1) * size] for i in range(self.fragments)]
        frames = [
            encode_frame(self.opcode if i == 0 else CONT, piece,
                         fin=i == self.fragments - 1,
                         rsv=rsv_first if i == 0 else self.rsv_rest)
            for i, piece in enumerate(pieces)
        ]
        conn.send(frames[0] + self.interleave + b"".join(frames[1:]), self.chop)


# -- cases


@dataclass(frozen=True)
class Case:
    id: str
    title: str
    steps: tuple
    expect: tuple = ()  # events the server must send before the close
    close: tuple | None = None  # the codes it may close with; None: it must stay open
    strict: bool = True  # False: a prefix of ``expect`` is enough before the close
    extensions: tuple = ()  # Sec-WebSocket-Extensions header lines offered
    negotiate: bool | None = None  # permessage-deflate must (True) / must not (False) result
    deviation: str | None = None  # why the server is known to fail this case ...
    deviation_close: tuple | None = None  # ... closing with these codes instead

    @property
    def group(self) -> int:
        return int(self.id.split(".")[0])


def text(payload: str | bytes) -> tuple:
    return ("text", payload.encode() if isinstance(payload, str) else payload)


def binary(payload: bytes) -> tuple:
    return ("binary", payload)


def pong(payload: bytes) -> tuple:
    return ("pong", payload)


def frame(opcode: int, payload: Any = b"", **kwargs: Any) -> bytes:
    if isinstance(payload, str):
        payload = payload.encode()
    return encode_frame(opcode, payload, **kwargs)


def close_frame(code: int | None = 1000, reason: bytes = b"", **kwargs: Any) -> bytes:
    return encode_frame(CLOSE, close_payload(code, reason), **kwargs)


def fragments(opcode: int, pieces: list, rsv: int = 0) -> bytes:
    """A message in the given pieces: the first frame with ``opcode``, then continuations."""
    return b"".join(
        frame(opcode if i == 0 else CONT, piece, fin=i == len(pieces) - 1,
              rsv=rsv if i == 0 else 0)
        for i, piece in enumerate(pieces)
    )


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i: i + size] for i in range(0, len(data), size)] or [b""]


_rng = random.Random(6455)


def rand_bytes(n: int) -> bytes:
    return _rng.randbytes(n)


def rand_text(n: int) -> bytes:
    """n bytes of printable ASCII: compressible, as text is."""
    words = [b"alpha", b"beta", b"gamma", b"delta", b"echo", b"foxtrot", b"golf", b"hotel"]
    out = bytearray()
    while len(out) < n:
        out += _rng.choice(words) + b" " + str(_rng.randrange(1000)).encode() + b" "
    return bytes(out[:n])


# -- group 1: framing


def group1(limits: Limits) -> list[Case]:
    cases = []
    lengths = [0, 125, 126, 127, 128, 65535, 65536]
    for sub, (opcode, make) in enumerate(((TEXT, text), (BINARY, binary)), 1):
        for n, length in enumerate(lengths, 1):
            payload = rand_text(length) if opcode == TEXT else rand_bytes(length)
            cases.append(Case(f"1.{sub}.{n}",
                              f"{'text' if opcode == TEXT else 'binary'} message of "
                              f"{length} bytes echoed",
                              (Send(frame(opcode, payload)),), (make(payload),)))
        payload = rand_text(65536) if opcode == TEXT else rand_bytes(65536)
        cases.append(Case(f"1.{sub}.{len(lengths) + 1}",
                          "65536-byte message written in pieces of 997 bytes echoed",
                          (Send(frame(opcode, payload), chop=997),), (make(payload),)))
    cases += [
        Case("1.3.1", "an unmasked client frame fails with 1002 (RFC 6455 5.1)",
             (Send(frame(TEXT, "unmasked", mask=False)),), close=(1002,)),
        Case("1.3.2", "a 5-byte length sent in the 16-bit form fails with 1002 (5.2: "
                      "the minimal length encoding MUST be used)",
             (Send(frame(TEXT, "hello", length_bytes=2)),), close=(1002,)),
        Case("1.3.3", "a 200-byte length sent in the 64-bit form fails with 1002",
             (Send(frame(BINARY, rand_bytes(200), length_bytes=8)),), close=(1002,)),
        Case("1.3.4", "a 64-bit length with its most significant bit set fails with 1002",
             (Send(encode_frame(BINARY, b"", length=1 << 63)),), close=(1002,)),
        Case("1.3.5", "ten messages in one write are echoed in order",
             (Send(b"".join(frame(TEXT, f"message {i}") for i in range(10))),),
             tuple(text(f"message {i}") for i in range(10))),
        Case("1.3.6", "text and binary messages interleaved keep their types",
             (Send(frame(TEXT, "one") + frame(BINARY, b"\x00two") + frame(TEXT, "three")),),
             (text("one"), binary(b"\x00two"), text("three"))),
    ]
    return cases


# -- group 2: pings and pongs


def group2(limits: Limits) -> list[Case]:
    hello = b"Hello, world!"
    data = bytes(range(0, 256, 3))[:80]
    p125 = rand_bytes(125)
    pings10 = [b"ping %d" % i for i in range(10)]
    return [
        Case("2.1", "a ping without payload is answered by an empty pong",
             (Send(frame(PING)),), (pong(b""),)),
        Case("2.2", "a ping with a text payload is answered with the same payload",
             (Send(frame(PING, hello)),), (pong(hello),)),
        Case("2.3", "a ping with a binary payload is answered with the same payload",
             (Send(frame(PING, data)),), (pong(data),)),
        Case("2.4", "a ping with 125 bytes (the control frame limit) is answered",
             (Send(frame(PING, p125)),), (pong(p125),)),
        Case("2.5", "a ping with 126 bytes fails with 1002 (5.5: control frames carry at "
                    "most 125)",
             (Send(frame(PING, rand_bytes(126))),), close=(1002,)),
        Case("2.6", "a 125-byte ping written one byte at a time is answered",
             (Send(frame(PING, p125), chop=1),), (pong(p125),)),
        Case("2.7", "an unsolicited pong without payload is ignored",
             (Send(frame(PONG)),)),
        Case("2.8", "an unsolicited pong with payload is ignored",
             (Send(frame(PONG, b"unsolicited")),)),
        Case("2.9", "an unsolicited pong then a ping: only the ping is answered",
             (Send(frame(PONG, b"unsolicited") + frame(PING, b"solicited")),),
             (pong(b"solicited"),)),
        Case("2.10", "ten pings in one write get ten pongs in order",
             (Send(b"".join(frame(PING, p) for p in pings10)),),
             tuple(pong(p) for p in pings10)),
        Case("2.11", "ten pings written one byte at a time get ten pongs in order",
             (Send(b"".join(frame(PING, p) for p in pings10), chop=1),),
             tuple(pong(p) for p in pings10)),
        Case("2.12", "a ping with a 126-byte length in the 16-bit form fails with 1002",
             (Send(frame(PING, rand_bytes(126), length_bytes=2)),), close=(1002,)),
        Case("2.13", "a ping announcing 65536 bytes fails with 1002 before its payload",
             (Send(encode_frame(PING, b"", length=65536)),), close=(1002,)),
        Case("2.14", "a ping between two messages is answered; the messages are echoed",
             (Send(frame(TEXT, "before")), Wait(1), Send(frame(PING, b"between")), Wait(2),
              Send(frame(TEXT, "after"))),
             (text("before"), pong(b"between"), text("after"))),
    ]


# -- group 3: reserved bits


def group3(limits: Limits) -> list[Case]:
    cases = []
    n = 0
    for rsv in range(1, 8):
        n += 1
        cases.append(Case(f"3.{n}", f"a text frame with RSV={rsv:03b} and no extension "
                                    f"fails with 1002 (5.2)",
                          (Send(frame(TEXT, "reserved", rsv=rsv)),), close=(1002,)))
    for kind, opcode in (("binary", BINARY), ("ping", PING), ("pong", PONG)):
        for rsv in (4, 2, 1):
            n += 1
            cases.append(Case(f"3.{n}", f"a {kind} frame with RSV={rsv:03b} fails with 1002",
                              (Send(frame(opcode, b"reserved", rsv=rsv)),), close=(1002,)))
    n += 1
    cases.append(Case(f"3.{n}", "a close frame with RSV=100 fails with 1002",
                      (Send(close_frame(1000, rsv=4)),), close=(1002,)))
    n += 1
    cases.append(Case(f"3.{n}", "a continuation frame with RSV=100 fails with 1002",
                      (Send(frame(TEXT, "first", fin=False) + frame(CONT, "rest", rsv=4)),),
                      close=(1002,)))
    n += 1
    cases.append(Case(f"3.{n}", "a valid message, then RSV=010, then a ping in one write: "
                                "fails with 1002 (the echo may or may not come first)",
                      (Send(frame(TEXT, "valid") + frame(TEXT, "bad", rsv=2)
                            + frame(PING, b"late")),),
                      (text("valid"),), close=(1002,), strict=False))
    n += 1
    cases.append(Case(f"3.{n}", "a valid message echoed, then RSV=011: fails with 1002",
                      (Send(frame(TEXT, "valid")), Wait(1), Send(frame(TEXT, "bad", rsv=3))),
                      (text("valid"),), close=(1002,)))
    n += 1
    cases.append(Case(f"3.{n}", "a valid message echoed, then RSV=101 written byte by byte",
                      (Send(frame(TEXT, "valid")), Wait(1),
                       Send(frame(BINARY, b"bad", rsv=5), chop=1)),
                      (text("valid"),), close=(1002,)))
    return cases


# -- group 4: opcodes


def group4(limits: Limits) -> list[Case]:
    cases = []
    for sub, opcodes in ((1, range(3, 8)), (2, range(0xB, 0x10))):
        kind = "non-control" if sub == 1 else "control"
        n = 0
        for opcode in opcodes:
            n += 1
            cases.append(Case(f"4.{sub}.{n}",
                              f"reserved {kind} opcode {opcode:#x} fails with 1002 (5.2)",
                              (Send(frame(opcode)),), close=(1002,)))
            n += 1
            cases.append(Case(f"4.{sub}.{n}",
                              f"a message echoed, then opcode {opcode:#x} with a payload: "
                              f"fails with 1002",
                              (Send(frame(TEXT, "valid")), Wait(1),
                               Send(frame(opcode, b"reserved"))),
                              (text("valid"),), close=(1002,)))
            n += 1
            cases.append(Case(f"4.{sub}.{n}",
                              f"a message, opcode {opcode:#x}, a ping, in one write: fails "
                              f"with 1002, no pong",
                              (Send(frame(TEXT, "valid") + frame(opcode, b"reserved")
                                    + frame(PING, b"late")),),
                              (text("valid"),), close=(1002,), strict=False))
    cases.append(Case("4.3.1", "reserved opcode 0x3 inside a fragmented message fails with "
                               "1002",
                      (Send(frame(TEXT, "first", fin=False) + frame(3, b"x")
                            + frame(CONT, "last")),), close=(1002,)))
    return cases


# -- group 5: fragmentation


def group5(limits: Limits) -> list[Case]:
    two = fragments(TEXT, [b"frag", b"ment"])
    with_ping = (frame(TEXT, "frag", fin=False) + frame(PING, b"inside")
                 + frame(CONT, "ment"))
    long_binary = rand_bytes(3000)
    hundred = rand_text(1000)
    return [
        Case("5.1", "a ping in two fragments fails with 1002 (5.4: control frames MUST NOT "
                    "be fragmented)",
             (Send(frame(PING, b"half", fin=False) + frame(CONT, b"half")),), close=(1002,)),
        Case("5.2", "a pong in two fragments fails with 1002",
             (Send(frame(PONG, b"half", fin=False) + frame(CONT, b"half")),), close=(1002,)),
        Case("5.3", "a text message in two fragments is echoed as one message",
             (Send(two),), (text("fragment"),)),
        Case("5.4", "the same, written one byte at a time",
             (Send(two, chop=1),), (text("fragment"),)),
        Case("5.5", "the same, the second fragment sent only after a ping between them is "
                    "answered",
             (Send(frame(TEXT, "frag", fin=False) + frame(PING, b"sync")), Wait(1),
              Send(frame(CONT, "ment"))),
             (pong(b"sync"), text("fragment"))),
        Case("5.6", "a ping between two fragments is answered, the message echoed whole",
             (Send(with_ping),), (pong(b"inside"), text("fragment"))),
        Case("5.7", "the same, written one byte at a time",
             (Send(with_ping, chop=1),), (pong(b"inside"), text("fragment"))),
        Case("5.8", "an unsolicited pong between two fragments is ignored",
             (Send(frame(TEXT, "frag", fin=False) + frame(PONG, b"x")
                   + frame(CONT, "ment")),),
             (text("fragment"),)),
        Case("5.9", "a final continuation frame with no message to continue fails with 1002",
             (Send(frame(CONT, "orphan")),), close=(1002,)),
        Case("5.10", "the same, written one byte at a time",
             (Send(frame(CONT, "orphan"), chop=1),), close=(1002,)),
        Case("5.11", "a non-final continuation with no message to continue, then a text "
                     "message: fails with 1002",
             (Send(frame(CONT, "orphan", fin=False) + frame(TEXT, "text")),), close=(1002,)),
        Case("5.12", "a message echoed, then a continuation frame: fails with 1002",
             (Send(two), Wait(1), Send(frame(CONT, "orphan"))),
             (text("fragment"),), close=(1002,)),
        Case("5.13", "a fragmented message, then a continuation, in one write: fails with "
                     "1002",
             (Send(two + frame(CONT, "orphan", fin=False) + frame(TEXT, "text")),),
             (text("fragment"),), close=(1002,), strict=False),
        Case("5.14", "a new text frame inside a fragmented message fails with 1002",
             (Send(frame(TEXT, "first", fin=False) + frame(TEXT, "second")),),
             close=(1002,)),
        Case("5.15", "a new binary frame inside a fragmented text message fails with 1002",
             (Send(frame(TEXT, "first", fin=False) + frame(BINARY, b"second")),),
             close=(1002,)),
        Case("5.16", "a new non-final text frame inside a fragmented message fails with 1002",
             (Send(frame(TEXT, "first", fin=False) + frame(TEXT, "second", fin=False)
                   + frame(CONT, "end")),), close=(1002,)),
        Case("5.17", "a binary message in three fragments is echoed as one message",
             (Send(fragments(BINARY, split(long_binary, 1000))),), (binary(long_binary),)),
        Case("5.18", "a text message in five fragments, a ping after each answered before "
                     "the next is sent",
             tuple(step for i, piece in enumerate(split(b"abcdefghij", 2)) for step in (
                 Send(frame(TEXT if i == 0 else CONT, piece, fin=i == 4)
                      + (frame(PING, b"p%d" % i) if i < 4 else b"")),
                 Wait(i + 1))),
             tuple(pong(b"p%d" % i) for i in range(4)) + (text("abcdefghij"),)),
        Case("5.19", "empty fragments make an empty text message",
             (Send(fragments(TEXT, [b"", b"", b""])),), (text(""),)),
        Case("5.20", "empty and non-empty fragments mixed",
             (Send(fragments(TEXT, [b"", b"mid", b""])),), (text("mid"),)),
        Case("5.21", "a text message in 1000 one-byte fragments",
             (Send(fragments(TEXT, split(hundred, 1))),), (text(hundred),)),
        Case("5.22", "two fragmented messages back to back are echoed in order",
             (Send(fragments(TEXT, [b"one-", b"a"]) + fragments(BINARY, [b"two-", b"b"])),),
             (text("one-a"), binary(b"two-b"))),
        Case("5.23", "two pings and a pong between fragments: two pongs, then the message",
             (Send(frame(BINARY, b"x", fin=False) + frame(PING, b"1") + frame(PONG, b"u")
                   + frame(PING, b"2") + frame(CONT, b"y")),),
             (pong(b"1"), pong(b"2"), binary(b"xy"))),
    ]


# -- group 6: UTF-8

VALID_UTF8 = [
    ("an empty string", b""),
    ("ASCII with DEL", b"Hello-\x7f"),
    ("Greek", "κόσμε".encode()),
    ("the 2-byte boundaries U+0080 and U+07FF", "\u0080\u07ff".encode()),
    ("the 3-byte boundaries U+0800 and U+FFFF", "\u0800\uffff".encode()),
    ("the 4-byte boundaries U+10000 and U+10FFFF", "\U00010000\U0010ffff".encode()),
    ("U+D7FF and U+E000 around the surrogates", "\ud7ff\ue000".encode()),
    ("U+FFFD", "\ufffd".encode()),
    ("the noncharacters U+FFFE, U+FDD0, U+1FFFF (valid UTF-8)",
     "\ufffe\ufdd0\U0001ffff".encode()),
    ("U+0000", b"a\x00b"),
    ("mixed scripts", "Ünïcödé ✓ 𝄞 中文 مرحبا".encode()),
]

INVALID_UTF8 = [
    ("a lone continuation byte 0x80", b"\x80"),
    ("a lone continuation byte 0xBF", b"\xbf"),
    ("all 64 continuation bytes", bytes(range(0x80, 0xC0))),
    ("a 2-byte lead then a space", b"\xc3 "),
    ("a 3-byte lead then a space", b"\xe2 "),
    ("a 4-byte lead then a space", b"\xf1 "),
    ("a 2-byte sequence missing its last byte", b"\xdf"),
    ("a 3-byte sequence missing its last byte", b"\xef\xbf"),
    ("a 4-byte sequence missing its last byte", b"\xf4\x8f\xbf"),
    ("truncated sequences one after another", b"\xdf\xef\xbf\xf4\x8f\xbf"),
    ("the byte 0xF5", b"\xf5\x80\x80\x80"),
    ("the byte 0xFE", b"\xfe"),
    ("the byte 0xFF", b"\xff"),
    ("a 5-byte form", b"\xf8\x88\x80\x80\x80"),
    ("a 6-byte form", b"\xfc\x84\x80\x80\x80\x80"),
    ("an overlong '/' in 2 bytes", b"\xc0\xaf"),
    ("an overlong '/' in 3 bytes", b"\xe0\x80\xaf"),
    ("an overlong '/' in 4 bytes", b"\xf0\x80\x80\xaf"),
    ("the largest overlong 2-byte form", b"\xc1\xbf"),
    ("the largest overlong 3-byte form", b"\xe0\x9f\xbf"),
    ("the largest overlong 4-byte form", b"\xf0\x8f\xbf\xbf"),
    ("an overlong NUL", b"\xc0\x80"),
    ("a code point above U+10FFFF", b"\xf4\x90\x80\x80"),
    ("a lone high surrogate U+D800", b"\xed\xa0\x80"),
    ("a lone low surrogate U+DFFF", b"\xed\xbf\xbf"),
    ("a surrogate pair U+D800 U+DC00", b"\xed\xa0\x80\xed\xb0\x80"),
]


def group6(limits: Limits) -> list[Case]:
    cases = []
    for n, (what, data) in enumerate(VALID_UTF8, 1):
        cases.append(Case(f"6.1.{n}", f"valid text: {what}, in one frame",
                          (Send(frame(TEXT, data)),), (text(data),)))
        cases.append(Case(f"6.2.{n}", f"valid text: {what}, one byte per fragment",
                          (Send(fragments(TEXT, split(data, 1))),), (text(data),)))
    kosme = "κόσμε".encode()
    for n in range(1, len(kosme)):
        cases.append(Case(f"6.3.{n}", f"valid Greek text split into two fragments after byte "
                                      f"{n} (mid code point when odd)",
                          (Send(fragments(TEXT, [kosme[:n], kosme[n:]])),), (text(kosme),)))
    for n, (what, data) in enumerate(INVALID_UTF8, 1):
        wrapped = b"ab" + data + b"cd"
        cases.append(Case(f"6.4.{n}", f"invalid text: {what}, fails with 1007 (8.1)",
                          (Send(frame(TEXT, wrapped)),), close=(1007,)))
        cases.append(Case(f"6.5.{n}", f"invalid text: {what}, one byte per fragment, fails "
                                      f"with 1007",
                          (Send(fragments(TEXT, split(wrapped, 1))),), close=(1007,)))
    bad = kosme + b"\xed\xa0\x80" + b"edited"
    cases += [
        Case("6.6.1", "an invalid sequence split across two fragments fails with 1007",
             (Send(fragments(TEXT, [b"ok \xed\xa0", b"\x80 end"])),), close=(1007,)),
        Case("6.6.2", "a sequence truncated at the end of the last fragment fails with 1007",
             (Send(fragments(TEXT, [b"ok ", b"\xe2\x82"])),), close=(1007,)),
        Case("6.6.3", "valid text, invalid bytes, valid text in three fragments: 1007",
             (Send(fragments(TEXT, [kosme, b"\xc0\xaf", kosme])),), close=(1007,)),
        Case("6.6.4", "valid fragments, a binary message is not checked for UTF-8",
             (Send(fragments(BINARY, [b"\xed\xa0", b"\x80\xff"])),),
             (binary(b"\xed\xa0\x80\xff"),)),
        # fail fast: the rest of the message is never sent; the server must not wait for it
        Case("6.7.1", "fail fast: the first fragment valid, the second (not final) invalid: "
                      "1007 without the rest of the message",
             (Send(frame(TEXT, kosme, fin=False) + frame(CONT, b"\xed\xa0\x80", fin=False)),),
             close=(1007,)),
        Case("6.7.2", "fail fast: a code point start in one fragment, the invalid byte in "
                      "the next: 1007 without the rest",
             (Send(frame(TEXT, kosme + b"\xf4", fin=False)), Send(frame(CONT, b"\x90",
                                                                        fin=False))),
             close=(1007,)),
        Case("6.7.3", "fail fast: a single frame cut after the invalid byte: 1007 before the "
                      "rest of the frame arrives",
             (Send(_partial_frame(TEXT, bad, 1000)),),
             close=(1007,)),
        Case("6.7.4", "fail fast: a single frame cut right after 0xF4 0x90 (invalid at the "
                      "second byte): 1007 before the rest",
             (Send(_partial_frame(TEXT, kosme + b"\xf4\x90", 100)),), close=(1007,)),
    ]
    return cases


def _partial_frame(opcode: int, sent: bytes, missing: int) -> bytes:
    """A frame announcing ``len(sent) + missing`` bytes of which only ``sent`` is written.
    The mask covers the whole announced payload, so the bytes sent unmask correctly."""
    full = encode_frame(opcode, sent + b"\x00" * missing)
    return full[: len(full) - missing]


# -- group 7: close handling

VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
                     1014, 3000, 3999, 4000, 4999]
INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
# case id -> (why, the close codes the server sends instead)
DEVIATIONS: dict = {}


def group7(limits: Limits) -> list[Case]:
    big = rand_bytes(min(limits.message // 2, limits.frame))
    cases = [
        Case("7.1.1", "a message echoed, then a close: the server replies with 1000",
             (Send(frame(TEXT, "hello")), Wait(1), Send(close_frame(1000))),
             (text("hello"),), close=(1000,)),
        Case("7.1.2", "two close frames: one reply, then the server closes TCP",
             (Send(close_frame(1000) + close_frame(1000)),), close=(1000,)),
        Case("7.1.3", "a ping after the close is not answered",
             (Send(close_frame(1000) + frame(PING, b"late")),), close=(1000,)),
        Case("7.1.4", "a text message after the close is not echoed",
             (Send(close_frame(1000) + frame(TEXT, "late")),), close=(1000,)),
        Case("7.1.5", "a close between two fragments: closed with 1000, nothing echoed",
             (Send(frame(TEXT, "frag", fin=False) + close_frame(1000)
                   + frame(CONT, "ment")),), close=(1000,)),
        Case("7.1.6", f"a {len(big)}-byte message, a close, a ping in one write: closed "
                      f"with 1000 (the echo may be cut off by the close, no pong)",
             (Send(frame(BINARY, big) + close_frame(1000) + frame(PING, b"late")),),
             (binary(big),), close=(1000,), strict=False),
        Case("7.3.1", "a close without payload is answered with a close (empty or 1000)",
             (Send(close_frame(None)),), close=(None, 1000)),
        Case("7.3.2", "a close with a 1-byte payload fails with 1002 (5.5.1)",
             (Send(frame(CLOSE, b"\x03")),), close=(1002,)),
        Case("7.3.3", "a close 1000 without reason is answered with 1000",
             (Send(close_frame(1000)),), close=(1000,)),
        Case("7.3.4", "a close 1000 with a reason is answered with 1000",
             (Send(close_frame(1000, b"bye now")),), close=(1000,)),
        Case("7.3.5", "a close with a 123-byte reason (125 in all) is answered",
             (Send(close_frame(1000, b"r" * 123)),), close=(1000,)),
        Case("7.3.6", "a close with a 124-byte reason (126 in all) fails with 1002",
             (Send(close_frame(1000, b"r" * 124)),), close=(1002,)),
        Case("7.5.1", "a close reason that is not UTF-8 fails with 1007 (8.1)",
             (Send(close_frame(1000, b"\xce\xba\xe1\xbd\xb9\xed\xa0\x80edited")),),
             close=(1007,)),
        Case("7.5.2", "a close reason ending mid code point fails with 1007",
             (Send(close_frame(1000, b"ok \xe2\x82")),), close=(1007,)),
        Case("7.5.3", "a close reason in valid multi-byte UTF-8 is answered",
             (Send(close_frame(1000, "κόσμε 𝄞".encode())),), close=(1000,)),
    ]
    for n, code in enumerate(VALID_CLOSE_CODES, 1):
        why, instead = DEVIATIONS.get(f"7.7.{n}", (None, None))
        cases.append(Case(f"7.7.{n}", f"a close with code {code} is answered with {code} or "
                                      f"1000",
                          (Send(close_frame(code)),), close=(code, 1000),
                          deviation=why, deviation_close=instead))
    for n, code in enumerate(INVALID_CLOSE_CODES, 1):
        cases.append(Case(f"7.9.{n}", f"a close with the invalid code {code} fails with 1002 "
                                      f"(7.4)",
                          (Send(close_frame(code)),), close=(1002,)))
    return cases


# -- group 9: limits (at the server's --websocket-max-message-size/-frame-size)


def group9(limits: Limits) -> list[Case]:
    big_m, big_f = limits.message, limits.frame
    cases = []
    n = 0
    for kind, opcode, make, gen in (("text", TEXT, text, rand_text),
                                    ("binary", BINARY, binary, rand_bytes)):
        at_frame = gen(big_f)
        at_message = gen(big_m)
        over_message = gen(big_m + 1)
        small = gen(big_m)
        for title, steps, expect, close in (
            (f"a {kind} frame of exactly the frame limit ({big_f}) is echoed",
             (Send(frame(opcode, at_frame)),), (make(at_frame),), None),
            (f"a {kind} frame one byte over the frame limit fails with 1009",
             (Send(frame(opcode, gen(big_f + 1))),), (), (1009,)),
            (f"a {kind} message of exactly the message limit ({big_m}), in frames of at "
             f"most the frame limit, is echoed",
             (Send(fragments(opcode, split(at_message, big_f))),), (make(at_message),),
             None),
            (f"a {kind} message one byte over the message limit fails with 1009",
             (Send(fragments(opcode, split(over_message, big_f))),), (), (1009,)),
            (f"a {kind} message of the message limit in 1 KiB frames is echoed",
             (Send(fragments(opcode, split(small, 1024))),), (make(small),), None),
            (f"a {kind} message one byte over the limit in 1 KiB frames fails with 1009",
             (Send(fragments(opcode, split(over_message, 1024))),), (), (1009,)),
        ):
            n += 1
            cases.append(Case(f"9.1.{n}", title, steps, expect, close=close))
    cases += [
        Case("9.2.1", "a frame announcing 2^40 bytes fails with 1009 at its header",
             (Send(encode_frame(BINARY, b"", length=1 << 40)),), close=(1009,)),
        Case("9.2.2", "a frame announcing one byte over the frame limit fails with 1009 "
                      "before its payload",
             (Send(encode_frame(BINARY, b"", length=big_f + 1)),), close=(1009,)),
        Case("9.2.3", "a message that reaches the limit, then a continuation header that "
                      "would pass it: 1009 before its payload",
             (Send(b"".join(frame(BINARY if i == 0 else CONT, piece, fin=False)
                            for i, piece in enumerate(split(rand_bytes(big_m), big_f)))
                   + encode_frame(CONT, b"", length=100)),), close=(1009,)),
    ]
    n = 0
    for chop in (64, 256, 1024, 4096):
        for opcode, make, gen in ((TEXT, text, rand_text), (BINARY, binary, rand_bytes)):
            payload = gen(big_f)
            n += 1
            cases.append(Case(f"9.3.{n}", f"a {big_f}-byte frame written in pieces of {chop} "
                                          f"bytes is echoed",
                              (Send(frame(opcode, payload), chop=chop),), (make(payload),)))
    n = 0
    for size in (64, 256, 1024, 4096, 16384, 65536):
        for opcode, make, gen in ((TEXT, text, rand_text), (BINARY, binary, rand_bytes)):
            if size > big_f:
                continue
            payload = gen(big_m)
            n += 1
            cases.append(Case(f"9.4.{n}", f"a {big_m}-byte message in {size}-byte frames is "
                                          f"echoed",
                              (Send(fragments(opcode, split(payload, size))),),
                              (make(payload),)))
    many_text = [b"message %04d" % i for i in range(1000)]
    many_binary = [rand_bytes(1024) for _ in range(200)]
    round_trips = [b"trip %03d" % i for i in range(100)]
    cases += [
        Case("9.5.1", "1000 small text messages in one write are echoed in order",
             (Send(b"".join(frame(TEXT, m) for m in many_text)),),
             tuple(text(m) for m in many_text)),
        Case("9.5.2", "200 binary messages of 1 KiB in one write are echoed in order",
             (Send(b"".join(frame(BINARY, m) for m in many_binary)),),
             tuple(binary(m) for m in many_binary)),
        Case("9.5.3", "100 round trips, each message sent after the previous echo",
             tuple(step for i, m in enumerate(round_trips)
                   for step in (Send(frame(TEXT, m)), Wait(i + 1))),
             tuple(text(m) for m in round_trips)),
    ]
    return cases


# -- groups 12 and 13: permessage-deflate

DEFLATE = ("permessage-deflate",)


def _window_test_payload() -> bytes:
    """Repeats 1000 bytes apart: compressible only with a window of 1 KiB or more."""
    block = rand_bytes(1000)
    return block * 4


def group12(limits: Limits) -> list[Case]:
    cases = []
    n = 0
    for size in (0, 16, 64, 256, 1024, 4096, 16384, 65536):
        payload = rand_text(size)
        n += 1
        cases.append(Case(f"12.1.{n}", f"a compressed text message of {size} bytes is echoed",
                          (Deflated(TEXT, payload),), (text(payload),),
                          extensions=DEFLATE, negotiate=True))
    n = 0
    for size, gen, what in ((16, rand_bytes, "random"), (1024, rand_bytes, "random"),
                            (65536, rand_bytes, "random"), (1024, bytes, "zero"),
                            (65536, bytes, "zero")):
        payload = gen(size)
        n += 1
        cases.append(Case(f"12.2.{n}", f"a compressed binary message of {size} {what} bytes "
                                       f"is echoed",
                          (Deflated(BINARY, payload),), (binary(payload),),
                          extensions=DEFLATE, negotiate=True))
    payload = rand_text(20000)
    n = 0
    for parts in (2, 5, 100):
        n += 1
        cases.append(Case(f"12.3.{n}", f"a compressed message in {parts} frames (RSV1 on the "
                                       f"first only) is echoed",
                          (Deflated(TEXT, payload, fragments=parts),), (text(payload),),
                          extensions=DEFLATE, negotiate=True))
    n += 1
    cases.append(Case(f"12.3.{n}", "a compressed message in 5 frames written one byte at "
                                   "a time is echoed",
                      (Deflated(TEXT, payload[:2000], fragments=5, chop=1),),
                      (text(payload[:2000]),), extensions=DEFLATE, negotiate=True))
    repeat = rand_text(2000)
    window = _window_test_payload()
    cases += [
        Case("12.4.1", "ten compressed messages sharing the context (each referencing the "
                       "last) are echoed",
             tuple(Deflated(TEXT, repeat) for _ in range(10)), (text(repeat),) * 10,
             extensions=DEFLATE, negotiate=True),
        Case("12.4.2", "compressed and uncompressed messages mixed are echoed",
             (Deflated(TEXT, repeat), Send(frame(TEXT, "plain")), Deflated(BINARY, window),
              Send(frame(BINARY, b"plain too")), Deflated(TEXT, repeat)),
             (text(repeat), text("plain"), binary(window), binary(b"plain too"),
              text(repeat)),
             extensions=DEFLATE, negotiate=True),
        Case("12.4.3", "a ping between the frames of a compressed message is answered",
             (Deflated(TEXT, repeat, fragments=2, interleave=frame(PING, b"mid")),),
             (pong(b"mid"), text(repeat)),
             extensions=DEFLATE, negotiate=True),
        Case("12.4.4", "an empty compressed message (the single 0x00 byte) is echoed",
             (Send(frame(TEXT, b"\x00", rsv=4)),), (text(""),),
             extensions=DEFLATE, negotiate=True),
        Case("12.5.1", "RSV1 on a continuation frame fails with 1002 (RFC 7692 6)",
             (Deflated(TEXT, repeat, fragments=2, rsv_rest=4),), close=(1002,),
             extensions=DEFLATE, negotiate=True),
        Case("12.5.2", "RSV1 on a ping fails with 1002 (control frames are not compressed)",
             (Send(frame(PING, b"x", rsv=4)),), close=(1002,),
             extensions=DEFLATE, negotiate=True),
        Case("12.5.3", "RSV1 on a pong fails with 1002",
             (Send(frame(PONG, b"x", rsv=4)),), close=(1002,),
             extensions=DEFLATE, negotiate=True),
        Case("12.5.4", "RSV1 on a close fails with 1002",
             (Send(close_frame(1000, rsv=4)),), close=(1002,),
             extensions=DEFLATE, negotiate=True),
        Case("12.5.5", "RSV2 on a data frame fails with 1002 (only RSV1 is negotiated)",
             (Deflated(TEXT, repeat, rsv_first=6),), close=(1002,),
             extensions=DEFLATE, negotiate=True),
        Case("12.5.6", "RSV3 on an uncompressed data frame fails with 1002",
             (Send(frame(BINARY, b"x", rsv=1)),), close=(1002,),
             extensions=DEFLATE, negotiate=True),
        Case("12.6.1", "a compressed payload that is not valid DEFLATE fails with 1007 "
                       "(the payload is inconsistent with the message; 1002 accepted too)",
             (Send(frame(BINARY, b"\xff\xff\xff\xff not deflate", rsv=4)),),
             close=(1007, 1002), extensions=DEFLATE, negotiate=True),
        Case("12.6.2", "compressed text that inflates to invalid UTF-8 fails with 1007",
             (Deflated(TEXT, b"ok \xed\xa0\x80 not ok"),), close=(1007,),
             extensions=DEFLATE, negotiate=True),
        Case("12.6.3", "compressed text whose invalid UTF-8 straddles two frames fails with "
                       "1007",
             (Deflated(TEXT, rand_text(300) + b"\xc0\xaf" + rand_text(300), fragments=2),),
             close=(1007,), extensions=DEFLATE, negotiate=True),
    ]
    at_limit = rand_text(limits.message)
    cases += [
        Case("12.7.1", f"a compressed message inflating to exactly the limit "
                       f"({limits.message}) is echoed",
             (Deflated(TEXT, at_limit),), (text(at_limit),),
             extensions=DEFLATE, negotiate=True),
        Case("12.7.2", "a compressed message inflating to one byte over the limit fails "
                       "with 1009",
             (Deflated(TEXT, at_limit + b"x"),), close=(1009,),
             extensions=DEFLATE, negotiate=True),
        Case("12.7.3", "a compression bomb (16 times the limit in zeros, a few KiB on the "
                       "wire) fails with 1009",
             (Deflated(BINARY, bytes(16 * limits.message)),), close=(1009,),
             extensions=DEFLATE, negotiate=True),
        Case("12.7.4", "the same bomb in 50 small frames fails with 1009",
             (Deflated(BINARY, bytes(16 * limits.message), fragments=50),), close=(1009,),
             extensions=DEFLATE, negotiate=True),
    ]
    return cases


def _exchange() -> tuple[tuple, tuple]:
    """Messages for a negotiation case: context reuse, a 1 KiB-distance repeat (window
    size), text and binary."""
    first = rand_text(3000)
    window = _window_test_payload()
    steps = (Deflated(TEXT, first), Deflated(BINARY, window), Deflated(TEXT, first),
             Deflated(BINARY, window, fragments=3), Deflated(TEXT, b""))
    expect = (text(first), binary(window), text(first), binary(window), text(b""))
    return steps, expect


NEGOTIATIONS = [
    # (offers, must it be negotiated, title)
    (["permessage-deflate"], True, "no parameters"),
    (["permessage-deflate; client_no_context_takeover"], True, "client_no_context_takeover"),
    (["permessage-deflate; server_no_context_takeover"], True,
     "server_no_context_takeover (the server must agree and compress each message alone)"),
    (["permessage-deflate; client_no_context_takeover; server_no_context_takeover"], True,
     "both no_context_takeover parameters"),
    (["permessage-deflate; client_max_window_bits"], True,
     "client_max_window_bits without a value"),
    (["permessage-deflate; client_max_window_bits=9"], True, "client_max_window_bits=9"),
    (["permessage-deflate; client_max_window_bits=15"], True, "client_max_window_bits=15"),
    (["permessage-deflate; server_max_window_bits=9"], True,
     "server_max_window_bits=9 (the server must compress within 512 bytes)"),
    (["permessage-deflate; server_max_window_bits=12"], True, "server_max_window_bits=12"),
    (["permessage-deflate; server_max_window_bits=15"], True, "server_max_window_bits=15"),
    (["permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
      "server_max_window_bits=10; client_max_window_bits=10"], True, "all four parameters"),
    (['permessage-deflate; client_max_window_bits="10"'], True,
     "a quoted parameter value (RFC 7692 5.1)"),
    (["PerMessage-Deflate; Server_No_Context_Takeover"], None,
     "names in mixed case (tokens compare case-insensitively; declining is allowed)"),
    (["permessage-deflate; server_max_window_bits=8"], None,
     "server_max_window_bits=8 (valid: accept with 8, or decline the offer)"),
    (["permessage-deflate; client_max_window_bits=8"], None,
     "client_max_window_bits=8 (valid: accept, or decline the offer)"),
    (["permessage-deflate; unknown_parameter=1"], False,
     "an unknown parameter (the offer MUST be declined, the connection still opens)"),
    (["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], False,
     "a duplicated parameter (declined)"),
    (["permessage-deflate; server_max_window_bits=16"], False,
     "server_max_window_bits=16 (out of range: declined)"),
    (["permessage-deflate; server_max_window_bits"], False,
     "server_max_window_bits without a value (declined)"),
    (["permessage-deflate; client_max_window_bits=07"], False,
     "a value with a leading zero (declined)"),
    (["permessage-deflate; client_no_context_takeover=1"], False,
     "a value on a parameter that takes none (declined)"),
    (["permessage-deflate; unknown_parameter, permessage-deflate; server_no_context_takeover"],
     True, "an unusable offer, then a usable one: the second is accepted"),
    (["x-unknown-extension"], False, "only an unknown extension: nothing is negotiated"),
    (["x-unknown-extension; a=1, permessage-deflate"], True,
     "an unknown extension, then permessage-deflate"),
    (["x-unknown-extension", "permessage-deflate; client_no_context_takeover"], True,
     "offers on two Sec-WebSocket-Extensions header lines (RFC 6455 9.1)"),
]


def group13(limits: Limits) -> list[Case]:
    cases = []
    for n, (offers, negotiate, title) in enumerate(NEGOTIATIONS, 1):
        steps, expect = _exchange()
        cases.append(Case(f"13.{n}", f"offer {title}: messages are echoed",
                          steps, expect, extensions=tuple(offers), negotiate=negotiate))
    n = len(NEGOTIATIONS)
    payload = rand_text(5000)
    cases += [
        Case(f"13.{n + 1}", "messages each ending with a BFINAL=1 block, under "
                            "client_no_context_takeover (RFC 7692 7.2.3.3), are echoed",
             (Deflated(TEXT, payload, final_block=True), Deflated(TEXT, payload[:100],
                                                                  final_block=True)),
             (text(payload), text(payload[:100])),
             extensions=("permessage-deflate; client_no_context_takeover",), negotiate=True),
        Case(f"13.{n + 2}", "without an offer, a frame with RSV1 fails with 1002",
             (Send(frame(TEXT, b"\x00", rsv=4)),), close=(1002,), negotiate=False),
    ]
    return cases


BUILDERS = {1: group1, 2: group2, 3: group3, 4: group4, 5: group5, 6: group6, 7: group7,
            9: group9, 12: group12, 13: group13}


def build_cases(limits: Limits, groups: list[int] | None = None) -> list[Case]:
    """Every case of the given groups (all by default), for a server with these limits."""
    _rng.seed(6455)
    cases = []
    for number, builder in BUILDERS.items():
        built = builder(limits)
        if groups is None or number in groups:
            cases.extend(built)
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    return cases
