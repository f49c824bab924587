"""A raw WebSocket client over a plain socket, for the cases real clients will not produce
(never answering pings, never reading, malformed frames)."""

from __future__ import annotations

import base64
import os
import socket
import struct


def handshake(port: int, path: str = "/ws/echo", extra: bytes = b"",
              host: str = "127.0.0.1", timeout: float = 5) -> tuple[socket.socket, bytes]:
    """Open a WebSocket with a hand-written handshake; return the socket and the response
    head (any bytes after it stay unread in the socket buffer)."""
    return handshake_on(socket.create_connection((host, port), timeout=timeout), path, extra)


def handshake_on(sock: socket.socket, path: str = "/ws/echo",
                 extra: bytes = b"") -> tuple[socket.socket, bytes]:
    """``handshake`` over a socket already connected (a TLS or UNIX one, say)."""
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        byte = sock.recv(1)
        if not byte:
            break
        head += byte
    return sock, head


def frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0,
          mask: bool = True) -> bytes:
    """One client frame (masked, as RFC 6455 requires of clients)."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, (0x80 if mask else 0) | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, length)
    else:
        header = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, length)
    if not mask:
        return header + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if length < 4096 else (
        _mask_fast(payload, key))
    return header + key + masked


def _mask_fast(payload: bytes, key: bytes) -> bytes:
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big")


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """(opcode, payload) of the next server frame; raises ConnectionError at EOF."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    first, second = exactly(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", exactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", exactly(8))[0]
    return first & 0x0F, exactly(length) if length else b""


def close_code(payload: bytes) -> int | None:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def answer_close(sock: socket.socket, code: int, timeout: float = 5.0) -> None:
    """Read the server's close frame (it must carry ``code``), answer it, and see the server
    end the connection, as a server must once the closing handshake is done (RFC 6455
    7.1.1)."""
    from tests.conftest import read_to_close

    opcode, payload = read_frame(sock)
    assert opcode == 0x8 and close_code(payload) == code, (opcode, payload)
    sock.sendall(frame(0x8, payload[:2]))
    rest, ended = read_to_close(sock, timeout)
    assert ended and rest == b"", rest
