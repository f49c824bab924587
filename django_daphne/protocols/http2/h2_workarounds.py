"""Every place the HTTP/2 handler reaches past h2's public API, with the reason for each.

Written against h2 4.1 to 4.4.1 and hyperframe 6.  ``tests/test_h2_workarounds.py``
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
  (``conn.streams``), which h2 keeps public but does not document.
- The HPACK table for response headers is capped at 4 KiB: a client's larger
  SETTINGS_HEADER_TABLE_SIZE is only a ceiling (RFC 7541 4.2), and honouring 4 GiB of it
  would let a connection's memory grow with every distinct header value sent.
- A graceful GOAWAY is written by hand: h2's ``close_connection`` would refuse to send
  anything after it, and the streams in flight still have their responses to finish.
"""

from __future__ import annotations

import re
from typing import Any

import h2.config
import h2.connection
import h2.exceptions
import h2.settings
import h2.stream
from h2.errors import ErrorCodes
from hpack.exceptions import HPACKError
from hyperframe.frame import GoAwayFrame

from ...server.config import Config

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


class ServerH2Connection(h2.connection.H2Connection):
    """h2's connection with the two changes the module docstring gives."""

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
        validate_outbound_headers=False, normalize_outbound_headers=False,
    ))
    conn.local_settings = h2.settings.Settings(client=False, initial_values={
        codes.MAX_CONCURRENT_STREAMS: config.http2_max_concurrent_streams,
        codes.INITIAL_WINDOW_SIZE: config.http2_initial_window_size,
        codes.MAX_FRAME_SIZE: config.http2_max_frame_size,
        codes.MAX_HEADER_LIST_SIZE: config.http2_max_header_list_size,
        codes.ENABLE_CONNECT_PROTOCOL: int(config.http2_websocket),
    })
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


_ENCODER_TABLE_SIZE = 4096


def cap_encoder_table(conn: h2.connection.H2Connection) -> None:
    """After the client's SETTINGS: our HPACK encoder's table back to at most 4 KiB."""
    if conn.encoder.header_table_size > _ENCODER_TABLE_SIZE:
        conn.encoder.header_table_size = _ENCODER_TABLE_SIZE


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


def valid_upgrade_settings(value: bytes) -> bool:
    """Whether an ``HTTP2-Settings`` header (RFC 7540 3.2.1: base64url SETTINGS payload) is
    one h2 will take: a whole number of 6-byte settings, each value within its range."""
    if not _BASE64URL(value):
        return False
    try:
        h2.connection.H2Connection(h2.config.H2Configuration(client_side=False)) \
            .initiate_upgrade_connection(value)
    except Exception:  # noqa: BLE001 - whatever h2 refuses, the upgrade is declined
        return False
    return True


def graceful_goaway(last_stream_id: int) -> bytes:
    """A GOAWAY(NO_ERROR) naming the last stream taken, for h2 not to know of."""
    return GoAwayFrame(0, last_stream_id=last_stream_id,
                       error_code=ErrorCodes.NO_ERROR).serialize()
