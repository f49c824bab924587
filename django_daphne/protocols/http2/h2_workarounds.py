"""Every place the HTTP/2 handler reaches past h2's public API, with the reason for each.

Written against h2 4.1 to 4.4.1 and hyperframe 6.  ``tests/protocols/http2/test_h2_workarounds.py``
checks each assumption made here directly against the installed h2, so that an h2 release
that breaks one fails there, by name, before anything subtler does.

- A wrong ``content-length`` is a stream error (RFC 9113 8.1.1) where h2 ends the whole
  connection: h2's per-stream length tracking is switched off (the stream state's class
  is swapped for one without it) and the handler counts bodies per stream.
- A field block HPACK cannot decode is a connection error of type COMPRESSION_ERROR (RFC
  9113 4.3) where h2 says PROTOCOL_ERROR: the exception h2 raises is given that code
  before h2 writes its GOAWAY from it.
- A stream over SETTINGS_MAX_CONCURRENT_STREAMS is a stream error (RFC 9113 5.1.2) where
  h2 ends the connection: h2's own limit is lifted after the SETTINGS that announce ours
  are written, and the handler refuses such a stream itself (REFUSED_STREAM).
- The settings we announce apply at once (frame size, header list size), not only once
  the client acknowledges them.
- A stream's inbound window and whether it is closed are read from h2's stream objects
  (``conn.streams``), which h2 keeps public but does not document; whether a reset closed
  it, from h2's record of how streams closed (``_stream_is_closed_by_reset``).
- HPACK's encoder (the class of ``conn.encoder`` is swapped) caps its table at 4 KiB: a
  client's larger SETTINGS_HEADER_TABLE_SIZE is only a ceiling (RFC 7541 4.2), and
  honouring 4 GiB of it would let a connection's memory grow with every distinct header
  value sent.  It also signals the table size updates RFC 7541 4.2 asks for, the smallest
  size since the last header block then the final one, where hpack writes every size it
  was set to (one over the client's last limit, which nghttp2 refuses) and forgets the
  update owed when the same size is set twice.
- The frame buffer (the class of ``conn.incoming_buffer`` is swapped) ignores the reserved
  bit of a WINDOW_UPDATE's increment (RFC 9113 6.9), which hyperframe reads as an increment
  over 2^31-1 (a PROTOCOL_ERROR), and refuses a HEADERS frame whose padding overlaps its
  priority fields (RFC 9113 6.2: PROTOCOL_ERROR), which hyperframe reads as an empty
  field block.  Both act on the bytes h2 has buffered (``_data``) or on the frame just
  parsed, before h2 handles it.
- A graceful GOAWAY is written by hand: h2's ``close_connection`` would refuse to send
  anything after it, and the streams in flight still have their responses to finish.  Its
  last stream id is kept as a ceiling of every GOAWAY h2 writes later (RFC 9113 6.8: it
  never increases), where h2 would name the highest stream the client opened.
- Lean streams (:mod:`.lean`), which h2 never sees, are entered in h2's record of the
  connection: the highest stream id (``highest_inbound_stream_id``), its record of closed
  streams (``_closed_streams``: closed by the client's END_STREAM when one opens, by a
  reset when one is reset), and the connection's send window
  (``outbound_flow_control_window``) their DATA spends.  Their header blocks are decoded
  by h2's HPACK decoder (``conn.decoder``; a block of indexed fields alone is read from
  its table), and the encoder's pending table size update
  (``encoder.header_table.resized``) is read before a lean block is written (h2's encoder
  then writes that block).  The first lean stream moves h2's connection state machine out
  of IDLE, as h2's first HEADERS would.
"""

from __future__ import annotations

import re
from typing import Any

import h2.config
import h2.connection
import h2.exceptions
import h2.settings
import h2.stream
from h2.connection import ConnectionInputs, ConnectionState
from h2.errors import ErrorCodes
from h2.frame_buffer import FrameBuffer
from h2.stream import StreamClosedBy
from hpack import Encoder
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame

from ...core.config import Config
from .frames import encode_fields
from .guards import FrameError

_BASE64URL = re.compile(rb"[A-Za-z0-9_-]*=*").fullmatch
# what h2 turns into a ProtocolError when a field block does not decode
_DECODING_ERRORS = (HPACKError, IndexError, TypeError, UnicodeDecodeError)


class _StreamWithoutLengthChecks(h2.stream.H2Stream):
    """h2's stream state, less its content-length checks (see the module docstring)."""

    __slots__ = ()

    def _initialize_content_length(self, headers: Any) -> None:
        self._expected_content_length = None

    def _track_content_length(self, length: int, end_stream: bool) -> None:
        pass


_ENCODER_TABLE_SIZE = 4096
_WINDOW_UPDATE = 0x8


class _Encoder(Encoder):
    """hpack's encoder, its table capped and its size updates as RFC 7541 4.2 has them."""

    @property
    def header_table_size(self) -> int:
        return self.header_table.maxsize

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        size = min(value, _ENCODER_TABLE_SIZE)
        table = self.header_table
        if size == table.maxsize:
            return  # nothing moves (an update still owed stays owed)
        table.maxsize = size  # (evicts what no longer fits, and marks the table resized)
        changes = self.table_size_changes
        smallest = min(changes[0], size) if changes else size
        self.table_size_changes = [smallest, size] if smallest < size else [size]


class _FrameBuffer(FrameBuffer):
    """h2's frame buffer, with the two changes the module docstring gives."""

    def __next__(self) -> Frame:
        data = self._data  # the next frame's header first
        if len(data) > 9 and data[3] == _WINDOW_UPDATE and data[9] & 0x80 \
                and data[:3] == b"\x00\x00\x04":  # (any other length is refused whole)
            data[9] &= 0x7F
        return super().__next__()

    def _update_header_buffer(self, f: Frame | None) -> Frame | None:
        if (type(f) is HeadersFrame and "PRIORITY" in f.flags
                and f.pad_length + 5 > f.body_len):
            raise h2.exceptions.ProtocolError("HEADERS padding overlaps its priority fields")
        return super()._update_header_buffer(f)


class ServerH2Connection(h2.connection.H2Connection):
    """h2's connection with the changes the module docstring gives."""

    goaway_limit = 2**31 - 1  # the last stream id of our graceful GOAWAY, once sent

    def close_connection(self, error_code: ErrorCodes | int = 0,
                         additional_data: bytes | None = None,
                         last_stream_id: int | None = None) -> None:
        if last_stream_id is None:
            last_stream_id = self.highest_inbound_stream_id
        super().close_connection(error_code, additional_data,
                                 min(last_stream_id, self.goaway_limit))

    def _terminate_connection(self, error_code: ErrorCodes) -> None:
        self.close_connection(error_code)  # (h2's own does the same, less the ceiling)

    def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> h2.stream.H2Stream:
        state = super()._begin_new_stream(stream_id, allowed_ids)
        state.__class__ = _StreamWithoutLengthChecks
        return state

    def _receive_headers_frame(self, frame: Any) -> Any:
        try:
            return super()._receive_headers_frame(frame)
        except h2.exceptions.ProtocolError as exc:
            if type(exc) is h2.exceptions.ProtocolError and isinstance(
                exc.__cause__, _DECODING_ERRORS
            ):
                # receive_data writes its GOAWAY with the code of the exception
                exc.error_code = ErrorCodes.COMPRESSION_ERROR
            raise


def new_connection(config: Config, upgrade_settings: bytes | None = None
                   ) -> ServerH2Connection:
    """A server-side h2 connection with our settings announced and in effect; its preface
    (or, after ``Upgrade: h2c``, its answer to the client's HTTP2-Settings) is in
    ``data_to_send()``."""
    codes = h2.settings.SettingCodes
    conn = ServerH2Connection(h2.config.H2Configuration(
        client_side=False, header_encoding=None, validate_inbound_headers=False,
        # split cookies are joined by read_request, on h2's path and the lean one alike
        # (h2 would move them after every other field, a pseudo-header's too)
        normalize_inbound_headers=False,
        validate_outbound_headers=False, normalize_outbound_headers=False,
    ))
    conn.local_settings = h2.settings.Settings(client=False, initial_values={
        codes.MAX_CONCURRENT_STREAMS: config.http2_max_concurrent_streams,
        codes.INITIAL_WINDOW_SIZE: config.http2_initial_window_size,
        codes.MAX_FRAME_SIZE: config.http2_max_frame_size,
        codes.MAX_HEADER_LIST_SIZE: config.http2_max_header_list_size,
        codes.ENABLE_CONNECT_PROTOCOL: int(config.http2_websocket),
    })
    conn.encoder.__class__ = _Encoder
    conn.incoming_buffer.__class__ = _FrameBuffer
    # in effect at once, not once the client acknowledges them
    conn.max_inbound_frame_size = config.http2_max_frame_size
    conn.decoder.max_header_list_size = config.http2_max_header_list_size
    if upgrade_settings is None:
        conn.initiate_connection()
    else:
        conn.initiate_upgrade_connection(upgrade_settings)
    # the SETTINGS written announce the stream limit; h2's own check of it is lifted
    local = conn.local_settings
    local.max_concurrent_streams = 2**31 - 1
    local.acknowledge()
    return conn


def inbound_window(conn: h2.connection.H2Connection, stream_id: int) -> int:
    """How much more body the client may send on a stream without a WINDOW_UPDATE from us
    (h2 keeps each stream's window on its stream object, in ``conn.streams``); 0 for a
    stream h2 no longer has."""
    stream = conn.streams.get(stream_id)
    return stream.inbound_flow_control_window if stream is not None else 0


def stream_closed(conn: h2.connection.H2Connection, stream_id: int) -> bool:
    """Whether no frame but PRIORITY may go on the stream any more (RFC 9113 5.1): both
    sides ended it, it was reset, or h2 has forgotten it."""
    stream = conn.streams.get(stream_id)
    return stream is None or stream.closed


def reset_already(conn: h2.connection.H2Connection, stream_id: int) -> bool:
    """Whether a RST_STREAM, ours or the client's, ended the stream (h2's own record of
    how each stream closed)."""
    return conn._stream_is_closed_by_reset(stream_id)


def valid_upgrade_settings(value: bytes) -> bool:
    """Whether an ``HTTP2-Settings`` header (RFC 7540 3.2.1: base64url SETTINGS payload) is
    one h2 will take: a whole number of 6-byte settings, each value within its range."""
    if not _BASE64URL(value):
        return False
    try:
        h2.connection.H2Connection(h2.config.H2Configuration(client_side=False)) \
            .initiate_upgrade_connection(value)
    except Exception:  # whatever h2 refuses, the upgrade is declined
        return False
    return True


def graceful_goaway(conn: ServerH2Connection, last_stream_id: int) -> bytes:
    """A GOAWAY(NO_ERROR) naming the last stream taken, for h2 not to know of, but for its
    later GOAWAYs never to name a higher one."""
    last_stream_id = min(last_stream_id, conn.goaway_limit)
    conn.goaway_limit = last_stream_id
    return GoAwayFrame(0, last_stream_id=last_stream_id,
                       error_code=ErrorCodes.NO_ERROR).serialize()


# -- what lean streams (see the module docstring) enter in h2's record of the connection


def open_lean_stream(conn: h2.connection.H2Connection, stream_id: int) -> None:
    """A lean stream opens: h2 takes its id as the highest the client used (a lower one
    later is refused), and knows it as closed by the client's END_STREAM (a DATA or
    HEADERS frame on it is a STREAM_CLOSED error, as on a stream of h2's own)."""
    conn.highest_inbound_stream_id = stream_id
    conn._closed_streams[stream_id] = StreamClosedBy.RECV_END_STREAM
    if conn.state_machine.state is ConnectionState.IDLE:
        # what h2's own first HEADERS does: the connection is open from now on
        conn.state_machine.process_input(ConnectionInputs.RECV_HEADERS)


def lean_stream_reset(conn: h2.connection.H2Connection, stream_id: int, sent: bool
                      ) -> None:
    """A lean stream was reset, by us (``sent``) or by the client: frames still on their
    way on it are answered as h2 answers them on a stream reset."""
    conn._closed_streams[stream_id] = (
        StreamClosedBy.SEND_RST_STREAM if sent else StreamClosedBy.RECV_RST_STREAM)


def spend_connection_window(conn: h2.connection.H2Connection, size: int) -> None:
    """DATA of a lean stream went out: the connection's send window shrinks by it."""
    conn.outbound_flow_control_window -= size


def owes_table_resize(conn: h2.connection.H2Connection) -> bool:
    """Whether the next header block must begin with a dynamic table size update (RFC
    7541 4.2), which h2's encoder writes."""
    return bool(conn.encoder.header_table.resized)


def encode_lean_block(conn: h2.connection.H2Connection, fields: list[tuple[bytes, bytes]]
                      ) -> bytes:
    """A lean response's header block: by h2's encoder when it owes the client a table size
    update (the block carries it), else without the dynamic table (see :mod:`.frames`)."""
    encoder = conn.encoder  # (owes_table_resize, inline: this is once a response)
    return encoder.encode(fields) if encoder.header_table.resized else encode_fields(fields)


def decode_block(conn: h2.connection.H2Connection, block: bytes) -> list[tuple[bytes, bytes]]:
    """A lean request's header block, decoded by h2's decoder; FrameError with the code
    h2 would have ended the connection with (the decoder's table is then out of step).

    A block of one-byte indexed fields only (RFC 7541 6.1: indexes 1 to 126), which is
    what a client sends for a request it repeats, is read straight from the decoder's
    table (``header_table.get_by_index``): it changes nothing in the table, and hpack's
    decoder would spend most of a request's decoding time on it field by field."""
    decoder = conn.decoder
    if block and min(block) > 0x80 and max(block) < 0xFF:
        table = decoder.header_table
        try:
            fields = [table.get_by_index(byte & 0x7F) for byte in block]
        except HPACKError as exc:
            raise FrameError(ErrorCodes.COMPRESSION_ERROR,
                             "a header block that does not decode (%s)" % exc) from exc
        if sum(len(n) + len(v) + 32 for n, v in fields) > decoder.max_header_list_size:
            raise FrameError(ErrorCodes.ENHANCE_YOUR_CALM,
                             "a header list over the size we announced")
        return fields
    try:
        return decoder.decode(block, raw=True)  # type: ignore[return-value]
    except OversizedHeaderListError as exc:
        raise FrameError(ErrorCodes.ENHANCE_YOUR_CALM,
                         "a header list over the size we announced") from exc
    except _DECODING_ERRORS as exc:
        raise FrameError(ErrorCodes.COMPRESSION_ERROR,
                         "a header block that does not decode (%s)" % exc) from exc
