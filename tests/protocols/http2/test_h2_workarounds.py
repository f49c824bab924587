"""Each place django_daphne.protocols.http2.h2_workarounds reaches past h2's public API,
checked directly against the installed h2: an h2 release that changes what one relies on
fails here, by name (the black-box HTTP/2 tests would fail too, less plainly)."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.frame_buffer
import h2.settings
import h2.stream
import pytest
from h2.errors import ErrorCodes
from hpack import Encoder
from hpack.hpack import decode_integer
from hyperframe.exceptions import InvalidDataError
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from django_daphne.core.config import Config
from django_daphne.protocols.http2.guards import FrameError
from django_daphne.protocols.http2.h2_workarounds import (
    decode_block,
    graceful_goaway,
    lean_stream_reset,
    new_connection,
    open_lean_stream,
    owes_table_resize,
    reset_already,
    spend_connection_window,
    valid_upgrade_settings,
)

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


def test_graceful_goaway_is_a_goaway_h2_does_not_know_of():
    """Written beside h2, it leaves h2 able to answer the streams in flight (h2's own
    close_connection would refuse every frame after it)."""
    conn = server()
    [frame] = frames(graceful_goaway(conn, 7))
    assert isinstance(frame, GoAwayFrame)
    assert (frame.last_stream_id, frame.error_code) == (7, ErrorCodes.NO_ERROR)
    peer = client()
    peer.send_headers(1, REQUEST, end_stream=True)
    conn.receive_data(peer.data_to_send())
    conn.send_headers(1, [(b":status", b"200")], end_stream=True)
    assert [f.stream_id for f in frames(conn.data_to_send()) if isinstance(f, HeadersFrame)] \
        == [1]


PING_ON_A_STREAM = b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + bytes(8)  # h2 refuses it


@pytest.mark.parametrize("close", ["h2's own", "ours"])
def test_no_goaway_names_a_stream_after_the_graceful_goaways(close):
    """RFC 9113 6.8: the last stream id never increases.  Streams 1 and 3 opened (h2 saw
    both), the graceful GOAWAY said 1: a connection error after it says 1 too, whether h2
    writes it (for a frame it refuses) or the handler has it written (close_connection)."""
    conn, peer = handshaken()
    peer.send_headers(1, REQUEST, end_stream=True)
    conn.receive_data(peer.data_to_send())
    [first] = frames(graceful_goaway(conn, 1))
    assert first.last_stream_id == 1
    peer.send_headers(3, REQUEST, end_stream=True)
    conn.receive_data(peer.data_to_send())
    assert conn.highest_inbound_stream_id == 3
    conn.data_to_send()
    if close == "ours":
        conn.close_connection(ErrorCodes.PROTOCOL_ERROR, last_stream_id=3)
    else:
        with pytest.raises(h2.exceptions.ProtocolError):
            conn.receive_data(PING_ON_A_STREAM)
    [second] = [f for f in frames(conn.data_to_send()) if isinstance(f, GoAwayFrame)]
    assert (second.last_stream_id, second.error_code) == (1, ErrorCodes.PROTOCOL_ERROR)
    assert frames(graceful_goaway(conn, 5))[0].last_stream_id == 1


def table_size_updates(block: bytes) -> list[int]:
    """The dynamic table size updates (RFC 7541 6.3) a header block begins with."""
    sizes = []
    while block and block[0] & 0xE0 == 0x20:
        size, used = decode_integer(block, 5)
        sizes.append(size)
        block = block[used:]
    return sizes


def settings_then_block(conn, *sizes: int) -> list[int]:
    """The client's SETTINGS_HEADER_TABLE_SIZE, once per size (each acknowledged), then the
    table size updates of the next response header block."""
    for size in sizes:
        conn.receive_data(SettingsFrame(0, settings={
            h2.settings.SettingCodes.HEADER_TABLE_SIZE: size}).serialize())
    return table_size_updates(conn.encoder.encode([(b":status", b"200")]))


def test_hpack_still_writes_every_table_size_and_forgets_a_repeated_one():
    """What the encoder's swapped class corrects: hpack's own encoder, as h2 drives it."""
    plain = Encoder()
    for size in (100, 50):
        plain.header_table_size = size
    assert table_size_updates(plain.encode([(b":status", b"200")])) == [100, 50]
    for size in (0, 0):
        plain.header_table_size = size
    assert table_size_updates(plain.encode([(b":status", b"200")])) == []


@pytest.mark.parametrize("sizes, updates", [
    ((2**30,), []),  # capped at 4 KiB, which it was already: nothing to signal
    ((8192, 100), [100]),
    ((100, 50), [50]),  # the smallest, which is the final one
    ((0, 0), [0]),  # the same size twice: the update is still owed
    ((0, 4096), [0, 4096]),  # the smallest, then the final
    ((100, 0, 2**30, 200), [0, 200]),
    ((4096,), []),
])
def test_the_encoder_signals_the_smallest_then_the_final_table_size(sizes, updates):
    """RFC 7541 4.2, and the 4 KiB cap on the table whatever the client allows."""
    conn, _ = handshaken()
    assert settings_then_block(conn, *sizes) == updates
    assert conn.encoder.header_table_size == min(sizes[-1], 4096)
    assert table_size_updates(conn.encoder.encode([(b":status", b"200")])) == []


def test_a_window_update_with_the_reserved_bit_is_its_increment():
    """RFC 9113 6.9: the bit is ignored; hyperframe alone reads it as part of the
    increment, and refuses the frame."""
    payload = (0x80000000 | 1000).to_bytes(4, "big")
    with pytest.raises(InvalidDataError):
        WindowUpdateFrame(0).parse_body(memoryview(payload))
    conn, _ = handshaken()
    before = conn.outbound_flow_control_window
    raw = b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + payload
    [event] = conn.receive_data(raw[:10]) + conn.receive_data(raw[10:])  # (split too)
    assert isinstance(event, h2.events.WindowUpdated) and event.delta == 1000
    assert conn.outbound_flow_control_window == before + 1000


def padding_over_priority() -> bytes:
    """A HEADERS frame of 10 bytes: pad length 5, priority (5 bytes), 4 bytes of field
    block: the padding (5) is longer than what is left (4)."""
    payload = bytes([5]) + (0).to_bytes(4, "big") + bytes([15]) + b"\x82\x84\x86\x41"
    flags = 0x1 | 0x4 | 0x8 | 0x20  # END_STREAM, END_HEADERS, PADDED, PRIORITY
    return len(payload).to_bytes(3, "big") + bytes([0x1, flags]) + (1).to_bytes(4, "big") \
        + payload


def test_padding_over_the_priority_fields_is_a_protocol_error():
    """RFC 9113 6.2; hyperframe alone reads the frame as an empty field block."""
    raw = padding_over_priority()
    plain, length = Frame.parse_frame_header(memoryview(raw[:9]))
    plain.parse_body(memoryview(raw[9:9 + length]))
    assert plain.data == b""
    conn, _ = handshaken()
    with pytest.raises(h2.exceptions.ProtocolError):
        conn.receive_data(raw)
    [goaway] = [f for f in frames(conn.data_to_send()) if isinstance(f, GoAwayFrame)]
    assert goaway.error_code == ErrorCodes.PROTOCOL_ERROR


def test_h2_still_buffers_frames_as_the_swapped_classes_expect():
    buffer = h2.connection.H2Connection().incoming_buffer
    assert type(buffer) is h2.frame_buffer.FrameBuffer and isinstance(buffer._data, bytearray)
    assert callable(h2.frame_buffer.FrameBuffer._update_header_buffer)
    assert isinstance(Encoder().table_size_changes, list)
    assert callable(h2.connection.H2Connection._terminate_connection)


def test_a_stream_reset_is_told_from_one_ended():
    conn, peer = handshaken()
    for stream_id in (1, 3):
        peer.send_headers(stream_id, REQUEST, end_stream=True)
    conn.receive_data(peer.data_to_send())
    conn.reset_stream(1, ErrorCodes.PROTOCOL_ERROR)
    conn.send_headers(3, [(b":status", b"200")], end_stream=True)
    assert reset_already(conn, 1) and not reset_already(conn, 3)
    assert not reset_already(conn, 5)  # (one never opened)


def test_upgrade_settings_h2_takes_or_refuses():
    assert valid_upgrade_settings(b"AAMAAABkAAQAoAAAAAIAAAAA")
    assert valid_upgrade_settings(b"")
    assert not valid_upgrade_settings(b"AAMAAABk!")  # not base64url
    assert not valid_upgrade_settings(b"AAMAAAB")  # not whole 6-byte settings
    assert not valid_upgrade_settings(b"AAIAAAAC")  # ENABLE_PUSH of 2: out of range


# -- lean streams: h2 never sees them, but keeps the connection's record of them


def handshaken() -> tuple[h2.connection.H2Connection, h2.connection.H2Connection]:
    """A server connection that has read the client's preface and SETTINGS, as when the
    handler starts taking lean streams, and that client."""
    conn, peer = server(), client()
    conn.receive_data(peer.data_to_send())
    conn.data_to_send()
    return conn, peer


def test_a_lean_stream_opens_the_connection_and_takes_its_stream_id():
    conn, peer = handshaken()
    open_lean_stream(conn, 5)
    assert conn.highest_inbound_stream_id == 5
    assert conn.state_machine.state is not h2.connection.ConnectionState.IDLE
    # a lower stream id is refused as for a stream of h2's own (RFC 9113 5.1.1)
    with pytest.raises(h2.exceptions.ProtocolError):
        conn.receive_data(HeadersFrame(3, data=Encoder().encode(REQUEST),
                                       flags=["END_HEADERS"]).serialize())


def test_a_lean_stream_that_ended_is_closed_to_h2():
    """Once answered, a HEADERS on it is what it is on a closed stream of h2's own."""
    conn, _ = handshaken()
    open_lean_stream(conn, 5)
    with pytest.raises(h2.exceptions.StreamClosedError):
        conn.receive_data(HeadersFrame(5, data=Encoder().encode(REQUEST),
                                       flags=["END_HEADERS", "END_STREAM"]).serialize())


def test_data_on_a_lean_stream_that_ended_is_answered_by_h2():
    """A lean stream still answering is entered as reset by us when the client sends DATA
    on it (see LeanPath.end_lean): h2 answers RST_STREAM(STREAM_CLOSED), the connection
    goes on, and the DATA's bytes are given back to the connection's window."""
    conn, _ = handshaken()
    open_lean_stream(conn, 1)
    lean_stream_reset(conn, 1, sent=True)
    conn.receive_data(b"".join(DataFrame(1, data=b"x" * 16000).serialize()
                               for _ in range(3)))
    sent = frames(conn.data_to_send())
    resets = {(f.stream_id, f.error_code) for f in sent if isinstance(f, RstStreamFrame)}
    assert resets == {(1, ErrorCodes.STREAM_CLOSED)}
    given = sum(f.window_increment for f in sent
                if isinstance(f, WindowUpdateFrame) and f.stream_id == 0)
    assert given >= 32000  # (h2 gives back a window once half of it is spent)


def test_headers_on_a_lean_stream_reset_are_decoded_then_refused():
    conn, _ = handshaken()
    encoder = Encoder()
    open_lean_stream(conn, 1)
    lean_stream_reset(conn, 1, sent=False)
    conn.receive_data(HeadersFrame(1, data=encoder.encode([(b"x-new", b"1")]),
                                   flags=["END_HEADERS", "END_STREAM"]).serialize())
    resets = [f for f in frames(conn.data_to_send()) if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [(1, ErrorCodes.STREAM_CLOSED)]
    # the block went into the decoder's table: the next block may refer to it
    assert decode_block(conn, encoder.encode([(b"x-new", b"1")])) == [(b"x-new", b"1")]


def test_lean_data_spends_the_connections_window():
    conn, peer = handshaken()
    peer.send_headers(1, REQUEST, end_stream=True)
    conn.receive_data(peer.data_to_send())
    window = conn.local_flow_control_window(1)
    spend_connection_window(conn, window - 10)
    assert conn.local_flow_control_window(1) == 10


def test_a_pending_table_size_update_is_seen_and_written_by_h2s_encoder():
    conn, peer = handshaken()
    assert not owes_table_resize(conn)
    peer.update_settings({h2.settings.SettingCodes.HEADER_TABLE_SIZE: 0})
    conn.receive_data(peer.data_to_send())
    assert owes_table_resize(conn)
    block = conn.encoder.encode([(b":status", b"200")])
    assert block[0] & 0xE0 == 0x20  # a dynamic table size update (RFC 7541 6.3) first
    assert not owes_table_resize(conn)


def test_a_lean_block_is_decoded_by_h2s_decoder_with_h2s_errors():
    conn, _ = handshaken()
    assert decode_block(conn, Encoder().encode(REQUEST)) == REQUEST
    with pytest.raises(FrameError) as bad:
        decode_block(conn, b"\xff\xff\xff\xff\x0f")
    assert bad.value.code == ErrorCodes.COMPRESSION_ERROR
    small = server(http2_max_header_list_size=1024)
    with pytest.raises(FrameError) as big:
        decode_block(small, Encoder().encode([(b"x-big", b"v" * 2000)]))
    assert big.value.code == ErrorCodes.ENHANCE_YOUR_CALM


def test_a_block_of_indexed_fields_is_read_from_the_decoders_table():
    """What a client sends for a request it repeats: every field indexed, static or
    dynamic.  Read from the table, it gives what hpack's decoder gives, and its errors."""
    conn, _ = handshaken()
    encoder = Encoder()
    fields = [*REQUEST, (b"user-agent", b"test/1"), (b"accept", b"*/*")]
    assert decode_block(conn, encoder.encode(fields)) == fields  # (literals: via hpack)
    repeated = encoder.encode(fields)
    assert min(repeated) > 0x80 and max(repeated) < 0xFF  # indexed, one byte each
    assert decode_block(conn, repeated) == fields
    with pytest.raises(FrameError) as bad:
        decode_block(conn, bytes([0x80 | 120]))  # an index past both tables
    assert bad.value.code == ErrorCodes.COMPRESSION_ERROR
    small = server(http2_max_header_list_size=1024)
    encoder = Encoder()
    big = [(b"x-big", b"v" * 600)]
    decode_block(small, encoder.encode(big))
    with pytest.raises(FrameError) as over:
        decode_block(small, encoder.encode(big + big))  # 2 x 637 bytes, indexed
    assert over.value.code == ErrorCodes.ENHANCE_YOUR_CALM
