"""The lean HTTP/2 path against h2's own: generated frame sequences, served by two real
servers, one with the lean path on and one with it off (``HTTP2Handler.LEAN``, switched by
tests/h2_differential_app.py), over h2c and TLS; their answers, decoded and normalised,
must be the same.

A seeded generator (``DD_H2_DIFF_SEED``, ``DD_H2_DIFF_CONNECTIONS`` connections per
transport: deterministic, and under a minute by default; raise them to fuzz longer) writes
each connection's frames: requests in one HEADERS frame or continued, with and without
padding and priority, split cookies, repeated, pseudo and malformed header fields, bodies
and trailers, DATA, RST_STREAM, SETTINGS (the header table size among them, the same one
twice), WINDOW_UPDATE (with the reserved bit set), PRIORITY, PING, GOAWAY, unknown frames,
and bytes split across reads.  The client waits for the server's answer at each frame
boundary it chooses (a PING, and the responses of the streams it ended), so what the
server sent up to there does not depend on timing.

What may legitimately differ, and is normalised away (see ``normalise``):

1. How a header block is encoded (RFC 7541 2.3, 6: the encoder chooses each field's
   representation; the lean path never indexes): blocks are compared decoded.
2. The ``date`` header's value (RFC 9110 6.6.1: the time the response was made).
3. How a body is cut into DATA frames (RFC 9113 6.1, 4.2: any size up to the frame
   size): a stream's DATA is compared joined.
4. The WINDOW_UPDATE frames the server sends (RFC 9113 6.9, 6.9.1: when and by how much a
   receiver opens a window is its choice): left out.
5. The order of frames of different streams, and of a stream's frames against the
   connection's (RFC 9113 5: streams are independent, their frames interleave): each
   stream's frames are compared apart from the connection's.
6. GOAWAY's debug data (RFC 9113 6.8: opaque, for diagnostics): left out.
7. What the frames of the read that ends the connection got, before the frame that
   ends it (RFC 9113 5.4.1, 6.8: a stream up to the GOAWAY's last stream id "might have
   been processed"; h2 drops the events of the frames before the one it refuses in one
   read, and the frame walk the bytes it has not handed on, where the lean path has
   taken some of those frames, and handed h2 the bytes before them, already): of that
   read only the GOAWAY's error code compares, not its last stream id (which may count
   those streams or not), nor a stream's answer, a PING's or a SETTINGS' ACK.
8. RST_STREAM(STREAM_CLOSED) for a frame on a stream the server had reset already (RFC
   9113 5.1: the client may have sent it before our reset reached it, and whether the
   server read it before or after its reset depends on how the read is cut: the lean
   path's frame walk hands h2 a read in parts, around the frames it takes): left out.
9. What the server sent on a stream the client reset, or sent DATA on after ending it
   (RFC 9113 5.1, 5.4.2: the client's frame and the server's answer or reset cross; h2
   reads all of a read before the handler answers the request in it, the lean path
   answers in frame order, so the answer, or a reset for the malformed request, or one
   (STREAM_CLOSED) for the DATA, may come first): left out (the invariants below still
   hold on it).
10. RST_STREAM(NO_ERROR) after a complete response (RFC 9113 8.1: the server answered
    before the request's end, and asks the client to stop sending it; whether the end
    had been read by then depends on how the read was cut): left out.
11. Whether the client's own PINGs, sent to wait on, are answered once the client has
    sent GOAWAY (RFC 9113 6.8: the server closes the connection as soon as its last
    stream is done, which may be before a PING in the same read): left out.

And what must hold in every answer, both paths alike (RFC MUSTs a difference cannot show
when both paths share the code): GOAWAY's last stream id never increases (RFC 9113 6.8);
every header block decodes with a decoder as strict as nghttp2's about dynamic table size
updates (RFC 7541 4.2, 6.3); an application sees at most one ``cookie`` field (RFC 9113
8.2.3); a frame the RFC makes a connection error ends the connection in the read it
came in, with PROTOCOL_ERROR unless a frame before it in that read was an error too (RFC
9113 6.2: padding over the payload or the priority fields); and setting a WINDOW_UPDATE's
reserved bit changes nothing (RFC 9113 6.9).

After each write it waits at, the client sends a second PING in a write of its own: h2
answers a PING as it reads it, before the handler has acted on the frames before it in
that read, so only the second answer follows all of it.
"""

from __future__ import annotations

import json
import os
import random
import socket
import ssl
import time
from dataclasses import dataclass, field

import pytest
from hpack import Decoder, Encoder
from hpack.hpack import decode_integer
from hpack.struct import HeaderTuple, NeverIndexedHeaderTuple

from tests.conftest import ServerProcess, binding_args, client_context

SEED = int(os.environ.get("DD_H2_DIFF_SEED", "21"))
CONNECTIONS = int(os.environ.get("DD_H2_DIFF_CONNECTIONS", "150"))  # per transport
TRANSPORTS = ("h2c", "tls")
WAIT = 5.0  # for an answer the client waits for: far longer than any takes

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADER_TABLE_SIZE, ENABLE_PUSH, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE = 1, 2, 4, 5
NO_ERROR, PROTOCOL_ERROR, STREAM_CLOSED, CANCEL = 0, 1, 5, 8


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return (len(payload).to_bytes(3, "big") + bytes([kind, flags])
            + stream_id.to_bytes(4, "big") + payload)


def settings_frame(values: list[tuple[int, int]]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(k.to_bytes(2, "big") + v.to_bytes(4, "big")
                                          for k, v in values))


# -- the generator


@dataclass
class Step:
    """Bytes sent in one write; with ``sync``, the client then waits for the answer to
    everything so far, and for the responses of the ``awaited`` streams."""

    data: bytes
    sync: bool = True
    awaited: set[int] = field(default_factory=set)
    goaway: bool = False  # the client has sent GOAWAY: the server's GOAWAY is awaited too


@dataclass
class Script:
    steps: list[Step]
    table_sizes: list[int | None]  # per SETTINGS frame sent: its header table size, if any
    must_fail: str | None = None  # why the RFC makes a frame of it a connection error
    must_fail_step: int | None = None  # the step waited at after that frame
    must_fail_first: bool = False  # the first frame of that step
    reserved: bool = False  # a WINDOW_UPDATE with the reserved bit set is among it
    # streams the client reset, or sent DATA on after it had ended them
    unruly: set[int] = field(default_factory=set)
    log: list[str] = field(default_factory=list)  # what was generated, for a failure


GOOD_FIELDS = [(b"user-agent", b"fuzz/1"), (b"accept", b"*/*"), (b"x-a", b"1"),
               (b"accept-encoding", b"gzip, br"), (b"x-long", b"v" * 200)]


def _upper(f):
    return f + [(b"X-Upper", b"1")]


def _connection(f):
    return f + [(b"connection", b"close")]


def _te(f):
    return f + [(b"te", b"gzip")]


def _pseudo_after(f):
    return [x for x in f if x[0] != b":path"] + [x for x in f if x[0] == b":path"]


def _unknown_pseudo(f):
    return [(b":foo", b"1"), *f]


def _repeated_pseudo(f):
    return [*f[:4], (b":path", b"/again"), *f[4:]]


def _no_authority(f):
    return [x for x in f if x[0] != b":authority"]


def _other_host(f):
    return f + [(b"host", b"elsewhere")]


def _cookie_first(f):
    return [(b"cookie", b"early=1"), *f]


def _space(f):
    return f + [(b"x-space", b" v")]


def _empty_path(f):
    return [(n, b"" if n == b":path" else v) for n, v in f]


def _length(f):
    return f + [(b"content-length", b"5")]


BAD_FIELDS = [_upper, _connection, _te, _pseudo_after, _unknown_pseudo, _repeated_pseudo,
              _no_authority, _other_host, _cookie_first, _space, _empty_path, _length]


# what the generator does next, how often: mostly requests, now and then an error
ACTIONS = ("request", "data", "rst", "configure", "window", "ping", "priority", "unknown",
           "goaway", "bad")
WEIGHTS = (12, 2, 1, 2, 2, 1, 1, 1, 0.7, 0.5)
NEED_A_STREAM = {"data", "rst", "priority", "unknown"}


class Generator:
    """One connection's frames, from a seeded random generator.  ``clear_reserved``: the
    same frames, with no WINDOW_UPDATE's reserved bit set."""

    def __init__(self, seed: int, clear_reserved: bool = False) -> None:
        self.rng = random.Random(seed)
        self.clear_reserved = clear_reserved
        self.encoder = Encoder()
        self.next_id = 1
        self.streams: dict[int, str] = {}  # "open" (the client sends more), "ended", "reset"
        self.window = 65535  # a stream's initial window, as the client last set it
        self.room = 65535  # of the connection's window, roughly what is left
        self.script = Script([], [])
        self.awaited: set[int] = set()
        self.going = False  # the client sent GOAWAY, and sends nothing more
        self.must_fail = b""  # the frame that is a connection error, once written
        self.refusing = False  # the client sent GOAWAY, and sends what the server refuses

    def generate(self) -> Script:
        rng = self.rng
        # (the lean path takes requests from the client's first SETTINGS on)
        self._step(PREFACE + self._settings(initial=True))
        for _ in range(rng.randint(2, 6)):
            frames = []
            for _ in range(rng.randint(1, 3)):
                if not self.going:
                    frames += self._action()
            self._step(b"".join(frames))
        ending = [frame(RST_STREAM, 0, sid, CANCEL.to_bytes(4, "big"))
                  for sid, state in self.streams.items() if state == "open"]
        self._step(b"".join(ending))
        return self.script

    def _step(self, data: bytes) -> None:
        rng = self.rng
        if self.must_fail and self.script.must_fail_step is None:
            self.script.must_fail_step = sum(step.sync for step in self.script.steps)
            # the first frame of its step: no other frame's error can come first
            self.script.must_fail_first = data.startswith(self.must_fail)
        if len(data) > 1 and rng.random() < 0.3:  # split across reads
            cut = rng.randint(1, len(data) - 1)
            self.script.steps.append(Step(data[:cut], sync=False))
            data = data[cut:]
        self.script.steps.append(Step(data, awaited=self.awaited,
                                      goaway=self.going or self.refusing))
        self.awaited = set()

    def _action(self) -> list[bytes]:
        rng = self.rng
        kind = rng.choices(ACTIONS, WEIGHTS)[0]
        if kind in NEED_A_STREAM and not self.streams:
            kind = "request"
        if self.refusing:  # (and the stream that keeps the connection open, left alone)
            kind = rng.choice(["request", "request", "bad"])
        self.script.log.append(kind)
        return getattr(self, "_" + kind)()

    # -- requests

    def _request(self) -> list[bytes]:
        rng = self.rng
        sid = self.next_id
        self.next_id += 2
        method = rng.choice([b"GET"] * 4 + [b"POST", b"POST", b"HEAD"])
        size = rng.choice([0] * 6 + [100, 20000, 70000])
        fields = [(b":method", method), (b":scheme", rng.choice([b"http", b"https"])),
                  (b":authority", b"localhost"), (b":path", b"/s%d?size=%d" % (sid, size))]
        fields += rng.sample(GOOD_FIELDS, rng.randint(0, 3))
        if rng.random() < 0.3:  # a cookie split over fields, as HPACK makes worthwhile
            cookies = [(b"cookie", b"c%d=%d" % (n, n)) for n in range(rng.randint(2, 3))]
            for cookie in cookies:
                fields.insert(rng.randint(4, len(fields)), cookie)
        if rng.random() < 0.15:
            fields += [(b"x-r", b"1"), (b"x-r", b"2")]
        bad = rng.choice(BAD_FIELDS) if rng.random() < 0.15 else None
        if bad is not None:
            fields = bad(fields)
        body = rng.random() < 0.35
        frames = []
        # the window the response needs, opened first
        need = size + 2000
        if need > self.room:
            frames.append(self._window_update(0, 200000))
            self.room += 200000
        self.room -= need
        frames += self._headers(sid, fields, end_stream=not body)
        self.streams[sid] = "open" if body else "ended"
        if need > self.window:
            frames.append(self._window_update(sid, need))
        if body:
            frames += self._body(sid, good_trailers=bad is _no_authority)  # (answered: 400)
        if self.streams[sid] == "ended":
            self.awaited.add(sid)
        return frames

    def _block(self, fields: list[tuple[bytes, bytes]]) -> bytes:
        rng = self.rng
        if rng.random() < 0.08:  # a dynamic table size update first
            self.encoder.header_table_size = rng.choice([0, 256, 4096, 4096, 4096, 8192])
        tuples = [NeverIndexedHeaderTuple(n, v) if rng.random() < 0.2 else HeaderTuple(n, v)
                  for n, v in fields]
        return self.encoder.encode(tuples, huffman=rng.random() < 0.5)

    def _headers(self, sid: int, fields, end_stream: bool) -> list[bytes]:
        rng = self.rng
        block = self._block(fields)
        flags = END_STREAM if end_stream else 0
        prefix = b""
        if rng.random() < 0.15:
            flags |= PRIORITY_FLAG
            depends = rng.choice([0, 0, sid - 2 if sid > 2 else 0,
                                  sid if rng.random() < 0.1 else 0])  # (itself: an error)
            prefix = (depends | (rng.random() < 0.3) << 31).to_bytes(4, "big") + bytes(
                [rng.randrange(256)])
        pieces = [block]
        if len(block) > 4 and rng.random() < 0.15:  # continued in CONTINUATION frames
            cut = rng.randint(1, len(block) - 1)
            pieces = [block[:cut], block[cut:]]
        first = prefix + pieces[0]
        if rng.random() < 0.15:
            flags |= PADDED
            padding = rng.randint(0, 20)
            pad = padding
            if rng.random() < (0.5 if prefix else 0.1):  # over what the frame holds
                pad = padding + len(pieces[0]) + rng.randint(1, 5)
                if pad < 256 and not self.must_fail:
                    self.script.must_fail = ("HEADERS padding over its %s (RFC 9113 6.2)"
                                             % ("priority fields" if prefix else "payload"))
                else:
                    pad = padding
            first = bytes([pad]) + first + bytes(padding)
        if len(pieces) == 1:
            frames = [frame(HEADERS, flags | END_HEADERS, sid, first)]
        else:
            frames = [frame(HEADERS, flags, sid, first),
                      frame(CONTINUATION, END_HEADERS, sid, pieces[1])]
        if self.script.must_fail and not self.must_fail:
            self.must_fail = frames[0]
        return frames

    def _body(self, sid: int, good_trailers: bool) -> list[bytes]:
        """A request body, and its end.  A request the server answers before its end
        (refused) gets no malformed trailers: the server ends the connection for them when
        they come in the read it answered in, and ignores them after (the stream is reset
        by then): which of the two depends on how the read is cut, lean path or not."""
        rng = self.rng
        frames = [frame(DATA, 0, sid, b"b" * rng.randint(0, 50))]
        ending = rng.random()
        if ending < 0.6:
            frames.append(frame(DATA, END_STREAM, sid, b"e"))
        elif ending < 0.85:  # trailers
            trailers = [(b"x-trailer", b"t")] if good_trailers or rng.random() < 0.8 \
                else [(b":path", b"/")]
            frames.append(frame(HEADERS, END_STREAM | END_HEADERS, sid,
                                self._block(trailers)))
        else:
            return frames  # still open: reset at the end
        self.streams[sid] = "ended"
        return frames

    # -- other frames

    def _some_stream(self) -> int:
        """A stream the client opened, or now and then one it never did."""
        rng = self.rng
        if self.streams and rng.random() < 0.95:
            return rng.choice(list(self.streams))
        return self.next_id + 2 * rng.randint(0, 3)  # (an idle stream: PROTOCOL_ERROR)

    def _data(self) -> list[bytes]:
        rng = self.rng
        sid = self._some_stream()
        end = rng.random() < 0.7
        payload = b"d" * rng.randint(0, 30)
        if rng.random() < 0.2:
            pad = rng.randint(0, 10)
            data = frame(DATA, PADDED | (END_STREAM if end else 0), sid,
                         bytes([pad]) + payload + bytes(pad))
        else:
            data = frame(DATA, END_STREAM if end else 0, sid, payload)
        if self.streams.get(sid) != "open":
            self.script.unruly.add(sid)
        elif end:
            self.streams[sid] = "ended"
            self.awaited.add(sid)
        return [data]

    def _rst(self) -> list[bytes]:
        sid = self._some_stream()
        if sid in self.streams:
            self.streams[sid] = "reset"
            self.awaited.discard(sid)
            self.script.unruly.add(sid)
        return [frame(RST_STREAM, 0, sid, CANCEL.to_bytes(4, "big"))]

    def _settings(self, initial: bool = False) -> bytes:
        rng = self.rng
        values = []
        if initial or rng.random() < 0.7:
            values.append((HEADER_TABLE_SIZE, rng.choice([0, 0, 100, 4096, 8192, 65536])))
        if rng.random() < 0.3:
            self.window = rng.choice([16384, 65535, 1 << 20])
            values.append((INITIAL_WINDOW_SIZE, self.window))
        if rng.random() < 0.2:
            values.append((MAX_FRAME_SIZE, rng.choice([16384, 32768])))
        if rng.random() < 0.2:
            values.append((ENABLE_PUSH, 0))
        rng.shuffle(values)
        sizes = [v for k, v in values if k == HEADER_TABLE_SIZE]
        self.script.table_sizes.append(sizes[-1] if sizes else None)
        return settings_frame(values)

    def _configure(self) -> list[bytes]:
        window = self.window
        first = self._settings()
        frames = [first]
        if self.rng.random() < 0.4:  # the same again (hpack once forgot the update)
            self.script.table_sizes.append(self.script.table_sizes[-1])
            frames.append(first)
        if self.window < window:
            # every stream's window shrank with it (RFC 9113 6.9.2): given back to the
            # streams whose response may still be to come, for it not to wait
            frames += [self._window_update(sid, window - self.window) for sid, state in
                       self.streams.items() if state == "open" or sid in self.awaited]
        return frames

    def _window_update(self, sid: int, increment: int) -> bytes:
        reserved = self.rng.random() < 0.4
        if reserved:
            self.script.reserved = True
            if not self.clear_reserved:
                increment |= 1 << 31
        return frame(WINDOW_UPDATE, 0, sid, increment.to_bytes(4, "big"))

    def _window(self) -> list[bytes]:
        rng = self.rng
        sid = 0 if rng.random() < 0.5 or not self.streams else self._some_stream()
        increment = rng.choice([1, 1000, 65535, 1 << 20]) if rng.random() < 0.97 else 0
        if sid == 0:
            self.room += increment
        return [self._window_update(sid, increment)]

    def _ping(self) -> list[bytes]:
        rng = self.rng
        choice = rng.random()
        if choice < 0.8:
            return [frame(PING, 0, 0, b"gen%05d" % rng.randrange(10**5))]
        if choice < 0.9:
            return [frame(PING, ACK, 0, b"unasked!")]  # an ACK nobody asked for: ignored
        return [frame(PING, 0, 0, b"short")]  # FRAME_SIZE_ERROR

    def _priority(self) -> list[bytes]:
        rng = self.rng
        sid = self._some_stream()
        depends = sid if rng.random() < 0.1 else rng.choice([0, 1])
        return [frame(PRIORITY, 0, sid, depends.to_bytes(4, "big") + bytes([16]))]

    def _unknown(self) -> list[bytes]:
        return [frame(0xFA, 0x5, self._some_stream(), b"extension")]

    def _goaway(self) -> list[bytes]:
        """The client goes away.  The server closes the connection once no stream is left:
        then it is the last thing the client sends, but the resets of its streams still
        open; while a request body is still to come, the client may go on with new
        streams (refused) and frames that are errors."""
        rng = self.rng
        code = 0  # (with an error code the server closes at once, racing what came before)
        frames = []
        if rng.random() < 0.7:
            # an upload in progress, which keeps the connection open (a stream the client
            # thinks open may have been reset by the server, for its malformed request)
            sid = self.next_id
            self.next_id += 2
            frames += self._headers(sid, [
                (b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"localhost"),
                (b":path", b"/upload")], end_stream=False)
            self.streams[sid] = "open"
            self.refusing = True
        self.going = not self.refusing
        return [*frames, frame(GOAWAY, 0, 0, (0).to_bytes(4, "big") + code.to_bytes(4, "big"))]

    def _bad(self) -> list[bytes]:
        rng = self.rng
        choice = rng.random()
        if choice < 0.4:
            return [frame(PING, 0, max(1, self._some_stream()), b"onstream")]
        if choice < 0.7:
            return [frame(CONTINUATION, END_HEADERS, self._some_stream(), b"")]
        return [settings_frame([(ENABLE_PUSH, 2)])]


def script_for(seed: int, clear_reserved: bool = False) -> Script:
    return Generator(seed, clear_reserved).generate()


# -- running a script against a server


class Connection:
    """The client's socket and every frame the server sent on it, parsed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.frames: list[tuple[int, int, int, bytes]] = []  # kind, flags, stream, payload
        self.closed = False

    def send(self, data: bytes) -> None:
        """Write, unless the server has ended the connection: what it wrote last (its
        GOAWAY) is read first, for a write after its close to make no reset that the
        GOAWAY could be lost to."""
        while not self.closed and self.read(0):
            pass
        if self.closed or not data or any(
                kind == GOAWAY and payload[4:8] != bytes(4)
                for kind, _, _, payload in self.frames):
            return
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def read(self, timeout: float) -> bool:
        """One read (``timeout`` 0: only what has come); whether anything came."""
        self.sock.settimeout(timeout if timeout <= 0 else max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, BlockingIOError, ssl.SSLWantReadError):
            return False
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return False
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 9:
            end = 9 + int.from_bytes(buffer[:3], "big")
            if len(buffer) < end:
                break
            sid = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
            self.frames.append((buffer[3], buffer[4], sid, bytes(buffer[9:end])))
            del buffer[:end]
        return True

    def wait(self, condition, timeout: float = WAIT) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return condition()
            self.read(left)
        return True

    def acked(self, token: bytes) -> bool:
        return any(k == PING and f & ACK and p == token for k, f, _, p in self.frames)

    def resolved(self, sid: int) -> bool:
        """The server is done with the stream: it ended or reset it (one it refuses after
        its graceful GOAWAY too), or it ends the connection."""
        for kind, flags, stream, payload in self.frames:
            if stream == sid and (kind == RST_STREAM or (
                    kind in (HEADERS, DATA) and flags & END_STREAM)):
                return True
            if kind == GOAWAY and payload[4:8] != bytes(4):
                return True
        return self.closed


def connect(server: ServerProcess, transport: str) -> socket.socket:
    kind = "TLS" if transport == "tls" else "TCP"
    port = next(port for k, _, port in server.addresses if k == kind)
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if transport == "tls":
        sock = client_context(("h2",)).wrap_socket(sock, server_hostname="localhost")
    return sock


class Elsewhere:
    """A second connection to the same server: a PING answered there after a write here
    lets the server read that write alone, before what follows it (bytes split across
    reads, without a sleep)."""

    def __init__(self, server: ServerProcess, transport: str) -> None:
        self.conn = Connection(connect(server, transport))
        self.conn.send(PREFACE + settings_frame([]))
        self.count = 0

    def round_trip(self) -> None:
        self.count += 1
        token = b"else%04d" % self.count
        self.conn.send(frame(PING, 0, 0, token))
        assert self.conn.wait(lambda: self.conn.acked(token)), "no PING ACK elsewhere"
        self.conn.frames.clear()


@dataclass
class Answer:
    frames: list[tuple[int, int, int, bytes]]
    marks: list[int]  # after each step the client waited at: how many frames had come
    timeouts: list[int]  # the steps whose answer did not come within WAIT
    closed: bool


def run(script: Script, server: ServerProcess, transport: str, elsewhere: Elsewhere
        ) -> Answer:
    conn = Connection(connect(server, transport))
    marks, timeouts = [], []
    try:
        for n, step in enumerate(script.steps):
            if not step.sync:
                conn.send(step.data)
                elsewhere.round_trip()
                continue
            token = b"sync%04d" % n
            conn.send(step.data + frame(PING, 0, 0, token))  # (one write: read at once)
            if not conn.wait(lambda token=token, step=step: conn.acked(token) and all(
                    conn.resolved(sid) for sid in step.awaited) and (
                        not step.goaway or any(k == GOAWAY for k, *_ in conn.frames))
                             ) and not conn.closed:
                timeouts.append(n)
            # h2 answers a PING as it reads it, before the handler acts on the frames
            # before it: a second PING, in a read of its own, is answered after that
            token = b"sync+%03d" % n
            conn.send(frame(PING, 0, 0, token))
            conn.wait(lambda token=token: conn.acked(token))
            marks.append(len(conn.frames))
        if any(kind == GOAWAY for kind, *_ in conn.frames):
            conn.wait(lambda: conn.closed)  # (a graceful one too: no stream is left open)
        return Answer(conn.frames, marks, timeouts, conn.closed)
    finally:
        conn.sock.close()


# -- what an answer means, less what may legitimately differ


class StrictDecoder:
    """HPACK decoding as strict as nghttp2's about dynamic table size updates (RFC 7541
    4.2, 6.3): once a SETTINGS_HEADER_TABLE_SIZE below the table's size is acknowledged,
    the next block begins with an update no larger than the smallest such limit; every
    update is within the limit in effect; two at most, at the start of a block."""

    def __init__(self, table_sizes: list[int | None]) -> None:
        self.unacked = list(table_sizes)
        self.limit = self.size = 4096
        self.smallest: int | None = None
        self.decoder = Decoder()
        self.decoder.max_header_list_size = 1 << 20

    def settings_acked(self) -> None:
        size = self.unacked.pop(0) if self.unacked else None
        if size is None:
            return
        self.limit = size
        self.decoder.max_allowed_table_size = size
        if size < self.size:
            self.smallest = size if self.smallest is None else min(self.smallest, size)

    def decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        updates, at = [], 0
        while at < len(block) and block[at] & 0xE0 == 0x20:
            size, used = decode_integer(block[at:], 5)
            updates.append(size)
            at += used
        if self.smallest is not None and (not updates or updates[0] > self.smallest):
            raise ValueError("after SETTINGS_HEADER_TABLE_SIZE %d, a block beginning with "
                             "the table size updates %r" % (self.smallest, updates))
        if len(updates) > 2 or any(size > self.limit for size in updates):
            raise ValueError("table size updates %r with a limit of %d"
                             % (updates, self.limit))
        if updates:
            self.size = updates[-1]
        self.smallest = None
        return self.decoder.decode(block, raw=True)


def normalise(answer: Answer, script: Script) -> tuple[list, list[str]]:
    """The answer step by step, each step's connection frames and each stream's own, as
    the module docstring has it; and what in it breaks a MUST of the RFCs."""
    broken: list[str] = []
    decoder = StrictDecoder(script.table_sizes)
    steps: list[dict] = []
    bounds = [*answer.marks, len(answer.frames)]
    block: list = []  # a header block continued: its stream, flags, fragments
    last_goaway = None
    fatal = None
    reset: set[int] = set()  # the streams the server reset
    # per step waited at (and what came after the last): whether the client went away
    going = [step.goaway for step in script.steps if step.sync] + [True]
    n = 0
    for bound in bounds:
        conn: list = []
        streams: dict[int, list] = {}
        while n < bound:
            kind, flags, sid, payload = answer.frames[n]
            n += 1
            events = streams.setdefault(sid, []) if sid else conn
            if kind == SETTINGS:
                if flags & ACK:
                    decoder.settings_acked()
                    conn.append("SETTINGS ACK")
                else:
                    conn.append(("SETTINGS", sorted(
                        (int.from_bytes(payload[i:i + 2], "big"),
                         int.from_bytes(payload[i + 2:i + 6], "big"))
                        for i in range(0, len(payload), 6))))
            elif kind == PING:
                if not (going[len(steps)] and payload.startswith(b"sync")):  # (11)
                    conn.append(("PING", flags, payload))
            elif kind == GOAWAY:
                last, code = (int.from_bytes(payload[:4], "big") & 0x7FFFFFFF,
                              int.from_bytes(payload[4:8], "big"))
                if last_goaway is not None and last > last_goaway:
                    broken.append("GOAWAY's last stream id went up from %d to %d"
                                  % (last_goaway, last))
                last_goaway = last
                if code and fatal is None:
                    fatal = len(steps)
                    last = "(7)"
                conn.append(("GOAWAY", code, last))
            elif kind == WINDOW_UPDATE:
                pass  # (4)
            elif kind in (HEADERS, CONTINUATION):
                if kind == HEADERS:
                    block = [sid, flags, payload]
                else:
                    block.append(payload)
                if flags & END_HEADERS:
                    try:
                        fields = decoder.decode(b"".join(block[2:]))
                    except Exception as exc:  # any failure is the finding
                        broken.append("a header block that does not decode: %s" % exc)
                        fields = [(b"?", b"undecodable")]
                    events.append(("HEADERS", [f for f in fields if f[0] != b"date"],
                                   bool(block[1] & END_STREAM)))
                    if block[1] & END_STREAM:
                        events.append("END")
            elif kind == DATA:
                if events and events[-1][0] == "DATA":
                    events[-1] = ("DATA", events[-1][1] + payload)
                else:
                    events.append(("DATA", payload))
                if flags & END_STREAM:
                    events.append("END")
            elif kind == RST_STREAM:
                code = int.from_bytes(payload, "big")
                if code == STREAM_CLOSED and sid in reset:
                    pass  # (8)
                elif code == NO_ERROR and "END" in streams.get(sid, ()):
                    pass  # (10)
                else:
                    events.append(("RST", code))
                reset.add(sid)
            else:
                events.append(("FRAME", kind, flags, payload))
        steps.append({"connection": conn, "streams": streams})
    for step in steps:
        for events in step["streams"].values():
            for event in events:
                if event[0] == "DATA" and event[1][:1] == b"{":
                    echo = json.loads(event[1].split(b"\n", 1)[0])
                    cookies = [v for k, v in echo["headers"] if k == "cookie"]
                    if len(cookies) > 1:
                        broken.append("the application saw the cookie fields %r" % cookies)
    for step in steps:
        for sid in script.unruly:  # (9)
            step["streams"].pop(sid, None)
        for events in step["streams"].values():  # (the same, shorter to read in a report)
            for n, event in enumerate(events):
                if event[0] == "DATA" and event[1][:1] == b"{":
                    echo, _, rest = event[1].partition(b"\n")
                    events[n] = ("DATA", json.loads(echo), "and %d x" % len(rest))
    if fatal is not None:  # (7)
        steps[fatal]["streams"] = "cut by the connection error"
        steps[fatal]["connection"] = [e for e in steps[fatal]["connection"]
                                      if e[0] == "GOAWAY"]
    if script.must_fail_step is not None:
        if fatal is None or fatal > script.must_fail_step:
            broken.append("no connection error for %s" % script.must_fail)
        elif fatal == script.must_fail_step:
            [code] = [e[1] for e in steps[fatal]["connection"] if e[0] == "GOAWAY" and e[1]]
            if code != PROTOCOL_ERROR and script.must_fail_first:
                broken.append("GOAWAY(%d), not PROTOCOL_ERROR, for %s"
                              % (code, script.must_fail))
    return [*steps, ("closed", answer.closed), ("timeouts", answer.timeouts)], broken


# -- the test


def start(lean: bool) -> ServerProcess:
    proc = ServerProcess(["-p", "0", *binding_args("tls"), "tests.h2_differential_app:app"],
                         env={"DD_HTTP2_LEAN": "1" if lean else "0"})
    try:
        return proc.wait_ready(count=2)
    except BaseException:
        proc.stop()
        raise


@pytest.fixture(scope="module")
def servers():
    started = {}
    try:
        for mode in ("lean", "h2"):
            started[mode] = start(mode == "lean")
        yield started
    finally:
        for proc in started.values():
            proc.stop()


def describe(seed: int, transport: str, script: Script, what: str, detail: object) -> str:
    return ("connection %d (DD_H2_DIFF_SEED=%d) over %s, generated %s: %s\n%s"
            % (seed, SEED, transport, script.log, what, detail))


def first_difference(one: list, other: list) -> str:
    for n, (a, b) in enumerate(zip(one, other, strict=False)):
        if a != b:
            return "at step %d:\n  lean: %r\n  h2:   %r" % (n, a, b)
    return "lean: %r\nh2: %r" % (one[len(other):], other[len(one):])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_lean_path_answers_as_h2s_does(servers, transport):
    found: list[str] = []
    answered = 0  # responses that ended, over all connections: the test is no empty one
    elsewhere = {mode: Elsewhere(proc, transport) for mode, proc in servers.items()}
    try:
        for n in range(CONNECTIONS):
            seed = SEED * 1000 + n
            script = script_for(seed)
            results = {}
            for mode, proc in servers.items():
                result, broken = normalise(run(script, proc, transport, elsewhere[mode]),
                                           script)
                results[mode] = result
                answered += sum(events.count("END") for step in result[:-2]
                                if isinstance(step["streams"], dict)
                                for events in step["streams"].values())
                found += [describe(seed, transport, script, "%s path: %s" % (mode, b), "")
                          for b in broken]
            if results["lean"] != results["h2"]:
                found.append(describe(seed, transport, script, "the answers differ",
                                      first_difference(results["lean"], results["h2"])))
            if script.reserved:
                cleared = script_for(seed, clear_reserved=True)
                for mode, proc in servers.items():
                    result, _ = normalise(run(cleared, proc, transport, elsewhere[mode]),
                                          cleared)
                    if result != results[mode]:
                        found.append(describe(
                            seed, transport, script,
                            "%s path: a WINDOW_UPDATE's reserved bit changed the answer "
                            "(RFC 9113 6.9)" % mode,
                            first_difference(results[mode], result)))
    finally:
        for side in elsewhere.values():
            side.conn.sock.close()
    report = os.environ.get("DD_H2_DIFF_REPORT")
    if report:  # every finding, for a longer run
        with open(report, "a") as out:
            out.write("".join(f + "\n\n" for f in found))
    assert not found, "%d findings; the first:\n\n%s" % (len(found), "\n\n".join(found[:4]))
    assert answered >= 2 * CONNECTIONS, answered


def test_the_switch_turns_the_lean_path_off(servers):
    """A GET's response block: the lean path never indexes a field into the dynamic table
    (RFC 7541 6.2.2), h2's encoder does (6.2.1): the two servers differ as meant."""
    indexed = {}
    for mode, proc in servers.items():
        conn = Connection(connect(proc, "h2c"))
        try:
            conn.send(PREFACE + settings_frame([]))
            assert conn.wait(lambda conn=conn: any(k == SETTINGS and f & ACK
                                                   for k, f, _, _ in conn.frames))
            block = Encoder().encode([(b":method", b"GET"), (b":scheme", b"http"),
                                      (b":authority", b"localhost"), (b":path", b"/")])
            conn.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, block))
            assert conn.wait(lambda conn=conn: conn.resolved(1)) and not conn.closed
            [response] = [p for k, _, s, p in conn.frames if k == HEADERS and s == 1]
            decoder = Decoder()
            assert decoder.decode(response, raw=True)[0] == (b":status", b"200")
            indexed[mode] = bool(decoder.header_table.dynamic_entries)
        finally:
            conn.sock.close()
    assert indexed == {"lean": False, "h2": True}
