"""Each place django_daphne.protocols.http2.h2_workarounds reaches past h2's public API,
checked directly against the installed h2: an h2 release that changes what one relies on
fails here, by name (the black-box HTTP/2 tests would fail too, less plainly)."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.settings
import h2.stream
from h2.errors import ErrorCodes
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, SettingsFrame

from django_daphne.protocols.http2.h2_workarounds import (
    cap_encoder_table,
    graceful_goaway,
    new_connection,
    valid_upgrade_settings,
)
from django_daphne.server.config import Config

REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"x"),
           (b":path", b"/")]


def settings(**values) -> Config:
    return Config.build(command_line={"http2_max_concurrent_streams": 2, **values})


def server(**values) -> h2.connection.H2Connection:
    conn = new_connection(settings(**values))
    conn.data_to_send()
    return conn


def client() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    return conn


def frames(data: bytes) -> list[Frame]:
    found = []
    while data:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9:9 + length]))
        found.append(frame)
        data = data[9 + length:]
    return found


def test_h2_still_has_the_stream_length_hooks_we_switch_off():
    for name in ("_initialize_content_length", "_track_content_length"):
        assert callable(getattr(h2.stream.H2Stream, name, None)), name


def test_a_wrong_content_length_is_left_to_the_handler():
    """Plain h2 makes it a connection error; ours passes the body on."""
    peer = client()
    peer.send_headers(1, [*REQUEST, (b"content-length", b"2")])
    peer.send_data(1, b"12345", end_stream=True)
    events = server().receive_data(peer.data_to_send())
    assert any(isinstance(e, h2.events.DataReceived) and e.data == b"12345" for e in events)
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)


def test_an_undecodable_field_block_is_compression_error():
    conn = server()
    peer = client()
    block = b"\xff\xff\xff\xff\x0f"  # an indexed field far past any table
    raw = peer.data_to_send() + HeadersFrame(1, data=block, flags=["END_HEADERS"]).serialize()
    try:
        conn.receive_data(raw)
    except h2.exceptions.ProtocolError:
        pass
    else:
        raise AssertionError("h2 took a field block it cannot decode")
    [goaway] = [f for f in frames(conn.data_to_send()) if isinstance(f, GoAwayFrame)]
    assert goaway.error_code == ErrorCodes.COMPRESSION_ERROR


def test_streams_over_the_announced_limit_are_left_to_the_handler():
    """The SETTINGS say 2; h2 itself takes a third stream (the handler refuses it)."""
    conn = new_connection(settings())
    announced = [f for f in frames(conn.data_to_send()) if isinstance(f, SettingsFrame)]
    assert announced[0].settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 2
    peer = client()
    for stream_id in (1, 3, 5):
        peer.send_headers(stream_id, REQUEST)
    events = conn.receive_data(peer.data_to_send())
    opened = [e.stream_id for e in events if isinstance(e, h2.events.RequestReceived)]
    assert opened == [1, 3, 5]


def test_announced_sizes_apply_before_the_client_acknowledges_them():
    conn = server(http2_max_frame_size=32768, http2_max_header_list_size=4096)
    assert conn.max_inbound_frame_size == 32768
    assert conn.decoder.max_header_list_size == 4096


def test_the_encoder_table_is_capped():
    conn = server()
    peer = client()
    peer.update_settings({h2.settings.SettingCodes.HEADER_TABLE_SIZE: 2**30})
    conn.receive_data(peer.data_to_send())
    assert conn.encoder.header_table_size > 4096  # h2 honours the client's ceiling
    cap_encoder_table(conn)
    assert conn.encoder.header_table_size == 4096


def test_graceful_goaway_is_a_goaway_h2_does_not_know_of():
    """Written beside h2, it leaves h2 able to answer the streams in flight (h2's own
    close_connection would refuse every frame after it)."""
    [frame] = frames(graceful_goaway(7))
    assert isinstance(frame, GoAwayFrame)
    assert (frame.last_stream_id, frame.error_code) == (7, ErrorCodes.NO_ERROR)
    conn = server()
    peer = client()
    peer.send_headers(1, REQUEST, end_stream=True)
    conn.receive_data(peer.data_to_send())
    conn.send_headers(1, [(b":status", b"200")], end_stream=True)
    assert [f.stream_id for f in frames(conn.data_to_send()) if isinstance(f, HeadersFrame)] \
        == [1]


def test_upgrade_settings_h2_takes_or_refuses():
    assert valid_upgrade_settings(b"AAMAAABkAAQAoAAAAAIAAAAA")
    assert valid_upgrade_settings(b"")
    assert not valid_upgrade_settings(b"AAMAAABk!")  # not base64url
    assert not valid_upgrade_settings(b"AAMAAAB")  # not whole 6-byte settings
    assert not valid_upgrade_settings(b"AAIAAAAC")  # ENABLE_PUSH of 2: out of range
