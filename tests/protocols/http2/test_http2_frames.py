"""The frames a lean HTTP/2 stream is answered with (django_daphne.protocols.http2.frames),
read back by hyperframe and hpack, the libraries an h2 client decodes them with."""

from __future__ import annotations

import pytest
from hpack import Decoder
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, RstStreamFrame

from django_daphne.protocols.http2.frames import (
    DATA,
    END_STREAM,
    encode_fields,
    frame_header,
    header_frames,
    rst_stream,
)
from tests.protocols.http2.test_h2_workarounds import frames as parse

FIELDS = [
    (b":status", b"200"),  # whole field in the static table
    (b":status", b"418"),  # static name, index under 15
    (b"content-type", b"text/html; charset=utf-8"),  # static name, index over 15
    (b"www-authenticate", b"Basic"),  # the last static entry (61)
    (b"x-request-id", b"abc"),  # a name the static table lacks
    (b"set-cookie", b"a" * 200),  # a value longer than a one-byte length
    (b"x-empty", b""),
    (b"x-" + b"n" * 300, b"v" * 70000),  # lengths of several continuation bytes
]


@pytest.mark.parametrize("field", FIELDS)
def test_each_kind_of_field_decodes_and_leaves_the_dynamic_table_alone(field):
    decoder = Decoder()
    decoder.max_header_list_size = 2**20
    assert decoder.decode(encode_fields([field]), raw=True) == [field]
    assert len(decoder.header_table.dynamic_entries) == 0


def test_a_header_block_decodes_whole_and_repeats_from_the_cache():
    decoder = Decoder()
    decoder.max_header_list_size = 2**20
    first = encode_fields(FIELDS)
    again = encode_fields(FIELDS)
    assert first == again
    assert decoder.decode(first + again, raw=True) == FIELDS + FIELDS
    assert len(decoder.header_table.dynamic_entries) == 0


def test_a_block_within_the_frame_size_is_one_headers_frame():
    [frame] = parse(b"".join(header_frames(5, b"block", True, 16384)))
    assert isinstance(frame, HeadersFrame)
    assert frame.stream_id == 5 and frame.data == b"block"
    assert frame.flags == {"END_HEADERS", "END_STREAM"}


@pytest.mark.parametrize("end_stream", [False, True])
def test_a_larger_block_goes_on_in_continuation_frames(end_stream):
    block = bytes(range(256)) * 100  # 25,600 bytes
    frames = parse(b"".join(header_frames(3, block, end_stream, 10000)))
    assert [type(f) for f in frames] == [HeadersFrame, ContinuationFrame, ContinuationFrame]
    assert b"".join(f.data for f in frames) == block
    assert all(f.stream_id == 3 and len(f.data) <= 10000 for f in frames)
    assert frames[0].flags == ({"END_STREAM"} if end_stream else set())
    assert frames[1].flags == set() and frames[2].flags == {"END_HEADERS"}


def test_data_and_rst_stream_frames():
    data, reset = parse(frame_header(3, DATA, END_STREAM, 7) + b"abc" + rst_stream(9, 8))
    assert isinstance(data, DataFrame) and isinstance(reset, RstStreamFrame)
    assert (data.stream_id, data.data, data.flags) == (7, b"abc", {"END_STREAM"})
    assert (reset.stream_id, reset.error_code) == (9, 8)
    assert frame_header(2**24 - 1, DATA, 0, 2**31 - 1)[:3] == b"\xff\xff\xff"
