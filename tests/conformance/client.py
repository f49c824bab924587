"""A raw-frame WebSocket client that records everything the server sends.

Real clients refuse to produce the frames the conformance cases need (reserved bits, bad
opcodes, invalid UTF-8, oversized control frames), so this one writes bytes as told.  A
reader thread parses the server's frames as they come, checks them against RFC 6455 and
RFC 7692 (the server must be conformant too), and turns them into a list of events that a
case compares with what it expects.  Reading on a thread means a case can send a long
stream without the server blocking on a client that is not reading.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import threading
import time
import zlib
from typing import Any

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
# close codes a server may put in a close frame (RFC 6455 7.4 and the IANA registry)
SENDABLE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                            1013, 1014))

# An event is a tuple: ("text", bytes), ("binary", bytes), ("pong", bytes),
# ("close", code or None, reason bytes), ("eof",) when the server closed TCP, ("reset",),
# ("server-error", what) when the server broke the protocol itself.
Event = tuple


def mask_payload(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big")


def encode_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
                 mask: bool = True, length: int | None = None,
                 length_bytes: int | None = None) -> bytes:
    """One client frame.  ``rsv`` is the three RSV bits as a number (4 = RSV1);
    ``length`` announces another length than the payload's (a truncated frame);
    ``length_bytes`` forces the 2- or 8-byte length form (non-minimal encodings)."""
    size = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask else 0
    if length_bytes == 8 or (length_bytes is None and size > 0xFFFF):
        header = struct.pack("!BBQ", first, mask_bit | 127, size)
    elif length_bytes == 2 or (length_bytes is None and size > 125):
        header = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        header = struct.pack("!BB", first, mask_bit | size)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + mask_payload(payload, key)


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason


def parse_extensions(values: list[str]) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Sec-WebSocket-Extensions values -> [(name, [(param, value or None), ...]), ...]."""
    result = []
    for value in values:
        for item in value.split(","):
            parts = [p.strip() for p in item.split(";")]
            if not parts[0]:
                continue
            params = []
            for part in parts[1:]:
                name, sep, val = part.partition("=")
                val = val.strip()
                if len(val) >= 2 and val[0] == val[-1] == '"':
                    val = val[1:-1]
                params.append((name.strip().lower(), val if sep else None))
            result.append((parts[0].lower(), params))
    return result


class Deflate:
    """permessage-deflate as a client, with the parameters the server's response agreed."""

    def __init__(self, params: list[tuple[str, str | None]]) -> None:
        agreed = dict(params)
        self.client_no_context = "client_no_context_takeover" in agreed
        self.server_no_context = "server_no_context_takeover" in agreed
        self.client_bits = int(agreed.get("client_max_window_bits") or 15)
        self.server_bits = int(agreed.get("server_max_window_bits") or 15)
        self._compressor: Any = None
        self._decompressor: Any = None

    def compress(self, data: bytes, final_block: bool = False) -> bytes:
        """One message's compressed payload (RFC 7692 7.2.1), the trailing 00 00 ff ff
        removed; ``final_block`` ends it with a BFINAL=1 block instead (7.2.3.3)."""
        if self._compressor is None or self.client_no_context:
            # zlib cannot make raw streams with an 8-bit window; a 9-bit one never
            # references further than 250 bytes back, within 256
            self._compressor = zlib.compressobj(6, zlib.DEFLATED, -max(self.client_bits, 9))
        if final_block:
            out = self._compressor.compress(data) + self._compressor.flush(zlib.Z_FINISH)
            self._compressor = None
            return out
        out = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(b"\x00\x00\xff\xff")
        return out[:-4]

    def decompress(self, payload: bytes) -> bytes:
        """A server message, inflated within the window the server agreed to."""
        if self._decompressor is None or self.server_no_context:
            self._decompressor = zlib.decompressobj(-self.server_bits)
        return self._decompressor.decompress(payload + b"\x00\x00\xff\xff")


class HandshakeFailed(Exception):
    pass


class Connection:
    """One WebSocket connection: ``send`` raw bytes, read ``events``."""

    def __init__(self, host: str, port: int, path: str = "/ws/echo",
                 extensions: list[str] | None = None, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16))
        request = (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + host.encode()
                   + b":%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" % port
                   + b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n")
        for value in extensions or ():
            request += b"Sec-WebSocket-Extensions: " + value.encode("latin-1") + b"\r\n"
        self.sock.sendall(request + b"\r\n")
        self.buffer = bytearray()
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise HandshakeFailed(f"connection closed during the handshake: "
                                      f"{bytes(self.buffer)[:200]!r}")
            self.buffer += chunk
        end = self.buffer.index(b"\r\n\r\n")
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        del self.buffer[: end + 4]
        self.status = int(lines[0].split(" ")[1])
        self.headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.append((name.strip().lower(), value.strip()))
        if self.status != 101:
            raise HandshakeFailed(f"status {self.status} instead of 101: {lines[0]}")
        expected_accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        if self.header("sec-websocket-accept") != [expected_accept]:
            raise HandshakeFailed("wrong Sec-WebSocket-Accept")
        self.extensions = parse_extensions(self.header("sec-websocket-extensions"))
        self.deflate: Deflate | None = None
        for name, params in self.extensions:
            if name == "permessage-deflate":
                self.deflate = Deflate(params)
        self.events: list[Event] = []
        self.sent_close = False
        self.cond = threading.Condition()
        self.sock.settimeout(None)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def header(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name]

    # -- sending

    def send(self, data: bytes, chop: int = 0) -> None:
        """Write bytes, in pieces of ``chop`` bytes when given (each piece its own write)."""
        try:
            if not chop:
                self.sock.sendall(data)
                return
            for i in range(0, len(data), chop):
                self.sock.sendall(data[i: i + chop])
        except OSError:
            pass  # the server may close first: its close frame, read by the reader, says why

    def send_close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        self.sent_close = True
        self.send(encode_frame(CLOSE, close_payload(code, reason)))

    # -- the events

    def wait(self, predicate: Any, timeout: float | None = None) -> bool:
        """Until ``predicate(events)`` holds or the connection ends; True if it holds."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self.cond:
            while not predicate(self.events):
                if self.events and self.events[-1][0] in ("eof", "reset"):
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
            return True

    def _add(self, event: Event) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def _read(self) -> None:
        try:
            self._read_frames()
        except ConnectionResetError:
            self._add(("reset",))
        except OSError:
            self._add(("eof",))
        else:
            self._add(("eof",))

    def _fill(self, n: int) -> bool:
        while len(self.buffer) < n:
            chunk = self.sock.recv(262144)
            if not chunk:
                return False
            self.buffer += chunk
        return True

    def _read_frames(self) -> None:
        message: list[bytes] = []
        message_opcode = None
        compressed = False
        closed = False
        while self._fill(2):
            first, second = self.buffer[0], self.buffer[1]
            fin, rsv, opcode = bool(first & 0x80), (first >> 4) & 7, first & 0x0F
            length = second & 0x7F
            offset = 2
            if length == 126:
                if not self._fill(4):
                    return
                length = struct.unpack_from("!H", self.buffer, 2)[0]
                offset = 4
            elif length == 127:
                if not self._fill(10):
                    return
                length = struct.unpack_from("!Q", self.buffer, 2)[0]
                offset = 10
            if not self._fill(offset + length):
                return
            payload = bytes(self.buffer[offset: offset + length])
            del self.buffer[: offset + length]
            problem = None
            if closed:
                problem = "a frame after the server's close frame"
            elif second & 0x80:
                problem = "a masked server frame"
            elif opcode in (TEXT, BINARY, CONT):
                if rsv & 3 or (rsv & 4 and (self.deflate is None or opcode == CONT)):
                    problem = f"reserved bits {rsv:03b} on a data frame"
                elif (opcode == CONT) != (message_opcode is not None):
                    problem = "a data frame out of message order"
            elif opcode in (CLOSE, PING, PONG):
                if rsv or not fin or length > 125:
                    problem = "a malformed control frame"
            else:
                problem = f"reserved opcode {opcode}"
            if problem:
                self._add(("server-error", problem))
                continue
            if opcode == PING:
                self.send(encode_frame(PONG, payload))  # the server's own keepalive
            elif opcode == PONG:
                self._add(("pong", payload))
            elif opcode == CLOSE:
                closed = True
                self._add(self._close_event(payload))
            else:
                if opcode != CONT:
                    message_opcode, compressed, message = opcode, bool(rsv & 4), []
                message.append(payload)
                if fin:
                    self._add(self._message_event(message_opcode, b"".join(message),
                                                  compressed))
                    message_opcode = None

    def _close_event(self, payload: bytes) -> Event:
        if not payload:
            return ("close", None, b"")
        if len(payload) == 1:
            return ("server-error", "a close frame with a 1-byte payload")
        code = struct.unpack("!H", payload[:2])[0]
        if code not in SENDABLE_CODES and not 3000 <= code <= 4999:
            return ("server-error", f"close code {code} may not be sent")
        try:
            payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            return ("server-error", "a close reason that is not UTF-8")
        return ("close", code, payload[2:])

    def _message_event(self, opcode: int, data: bytes, compressed: bool) -> Event:
        if compressed:
            try:
                data = self.deflate.decompress(data)  # type: ignore[union-attr]
            except zlib.error as exc:
                return ("server-error", f"a compressed message that does not inflate "
                                        f"within the agreed parameters: {exc}")
        if opcode == TEXT:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                return ("server-error", "a text message that is not UTF-8")
            return ("text", data)
        return ("binary", data)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.reader.join(2)
