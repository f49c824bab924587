"""The frames a lean stream's response is written in, built without h2 (and the frame
types and flags the frame walk reads).

A lean stream (see :mod:`.lean`) is one h2 never hears of, so its HEADERS, CONTINUATION,
DATA and RST_STREAM frames are serialized here.  Its response header block is HPACK-encoded
with the static table and literals that are never indexed into the dynamic table (RFC 7541
6.1, 6.2.2): such a block neither reads nor changes the dynamic table, so it may go out in
any order among the blocks h2's encoder writes for the other streams, and the client's
decoder stays in step with h2's encoder.  (nginx encoded its responses the same way for
years.)  What is lost is the compression of repeated header values on one connection: tens
of bytes a response.
"""

from __future__ import annotations

import struct

from hpack.table import HeaderTable

# frame types (RFC 9113 6), and flags
DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY, WINDOW_UPDATE, CONTINUATION = \
    0x0, 0x1, 0x3, 0x4, 0x7, 0x8, 0x9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20

_frame_header = struct.Struct(">BHBBL").pack


def frame_header(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    """The 9-byte header of a frame (RFC 9113 4.1)."""
    return _frame_header(length >> 16, length & 0xFFFF, kind, flags, stream_id)


def rst_stream(stream_id: int, code: int) -> bytes:
    return frame_header(4, RST_STREAM, 0, stream_id) + code.to_bytes(4, "big")


def header_frames(stream_id: int, block: bytes, end_stream: bool, max_size: int
                  ) -> list[bytes]:
    """A header block as one HEADERS frame, or HEADERS and CONTINUATION frames when it is
    larger than the client's SETTINGS_MAX_FRAME_SIZE."""
    flags = END_STREAM if end_stream else 0
    if len(block) <= max_size:
        return [frame_header(len(block), HEADERS, flags | END_HEADERS, stream_id), block]
    frames = []
    kind = HEADERS
    for at in range(0, len(block), max_size):
        piece = block[at:at + max_size]
        last = at + max_size >= len(block)
        frames.append(frame_header(len(piece), kind, flags | (END_HEADERS if last else 0),
                                   stream_id))
        frames.append(piece)
        kind, flags = CONTINUATION, 0
    return frames


# the static table (RFC 7541 Appendix A): whole fields, and the first index of each name
_STATIC_FIELDS: dict[tuple[bytes, bytes], int] = {}
_STATIC_NAMES: dict[bytes, int] = {}
for _index, _field in enumerate(HeaderTable.STATIC_TABLE, 1):
    _STATIC_FIELDS.setdefault(_field, _index)
    _STATIC_NAMES.setdefault(_field[0], _index)
del _index, _field


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer (RFC 7541 5.1), its first byte's high bits set to ``first``."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(value: bytes) -> bytes:
    """An HPACK string literal, not Huffman-coded (RFC 7541 5.2)."""
    return _integer(len(value), 7, 0) + value


def _encode_field(name: bytes, value: bytes) -> bytes:
    index = _STATIC_FIELDS.get((name, value))
    if index is not None:
        return bytes((0x80 | index,))  # indexed (6.1); the static table has 61 entries
    index = _STATIC_NAMES.get(name)
    if index is not None:  # literal without indexing, indexed name (6.2.2)
        return _integer(index, 4, 0) + _string(value)
    return b"\x00" + _string(name) + _string(value)


# encoded fields by (name, value): the same few recur on every response of a site
_cache: dict[tuple[bytes, bytes], bytes] = {}
_CACHE_SIZE = 4096
_CACHED_VALUE = 256  # longer values (cookies, say) are encoded each time


def encode_fields(fields: list[tuple[bytes, bytes]]) -> bytes:
    """A response header block that never touches the dynamic table (see the module
    docstring)."""
    cache = _cache
    out = []
    for field in fields:
        encoded = cache.get(field)
        if encoded is None:
            encoded = _encode_field(field[0], field[1])
            if len(field[1]) <= _CACHED_VALUE:
                if len(cache) >= _CACHE_SIZE:
                    cache.clear()
                cache[field] = encoded
        out.append(encoded)
    return b"".join(out)
