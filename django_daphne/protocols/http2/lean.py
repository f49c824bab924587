"""Lean streams: the common request, served beside h2 rather than through it.

Most requests arrive whole in one HEADERS frame (END_STREAM and END_HEADERS: no body) and
are answered with a HEADERS frame and a few DATA frames.  For those, h2's per-stream
machinery (a state machine per stream, frame objects, its HPACK encoder, a walk over every
open stream for each new one) was most of the time an HTTP/2 request took.  Such a
stream is *lean* (a :class:`LeanStream`): h2 never hears of it.  h2 still holds everything
of the connection's: its settings, the connection's flow-control windows, the HPACK
decoder's table (lean header blocks are decoded by h2's own decoder, in order with every
other block), the highest stream id, and the record of closed streams, where a lean stream
is entered as closed by the client's END_STREAM the moment it opens.  So h2 answers every
frame a client may not send on such a stream (DATA, HEADERS, a stream id reused) exactly
as for its own streams, and every request that is not so simple (a body, a header block
in several frames, a WebSocket) goes through h2 as before.

What the lean path takes itself (:class:`~.guards.FrameScreen` offers it, in order): the
request's HEADERS frame, and WINDOW_UPDATE and RST_STREAM frames on a lean stream still
open.  What it writes is built in :mod:`.frames` and goes out through the handler's
:class:`~.flow.FlowControl`, in order with h2's output.
"""

from __future__ import annotations

import logging
from typing import Protocol

from h2.errors import ErrorCodes

from .frames import (
    DATA,
    END_STREAM,
    HEADERS,
    PADDED,
    PRIORITY,
    RST_STREAM,
    frame_header,
    header_frames,
    rst_stream,
)
from .guards import FrameError
from .h2_workarounds import (
    decode_block,
    encode_lean_block,
    lean_stream_reset,
    open_lean_stream,
    spend_connection_window,
)
from .stream import ENDED, Host, Stream

logger = logging.getLogger("django_daphne.http2")

_MAX_WINDOW = _31_BITS = 2**31 - 1  # the largest window; a stream id's or increment's bits


class LeanStream(Stream):
    """A stream h2 never hears of: its frames are built here, its send window kept on it
    (``window``, from the client's SETTINGS_INITIAL_WINDOW_SIZE when it opened)."""

    __slots__ = ()

    def send_window(self) -> int:
        h2conn = self.host.h2
        return min(h2conn.outbound_flow_control_window, self.window,
                   h2conn.max_outbound_frame_size)

    def write_headers(self, fields: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        h2conn = self.host.h2
        self.host.flow.write_frames(*header_frames(
            self.stream_id, encode_lean_block(h2conn, fields), end_stream,
            h2conn.max_outbound_frame_size))
        if end_stream:
            self.move(ENDED)

    def write_data(self, chunk: bytes, last: bool) -> None:
        size = len(chunk)
        host = self.host
        host.flow.write_frames(
            frame_header(size, DATA, END_STREAM if last else 0, self.stream_id), chunk)
        self.window -= size
        spend_connection_window(host.h2, size)

    def write_end(self) -> None:
        if self.trailers is not None:
            self.write_headers(self.trailers, True)
        else:
            self.host.flow.write_frames(frame_header(0, DATA, END_STREAM, self.stream_id))

    def write_reset(self, code: int) -> None:
        if self.state is not ENDED:  # (once ended, it is closed: no frame more)
            self.host.flow.write_frames(rst_stream(self.stream_id, code))
            lean_stream_reset(self.host.h2, self.stream_id, sent=True)


class LeanHost(Host, Protocol):
    """What the lean path asks of the connection besides what a stream does."""

    @property
    def shutting_down(self) -> bool:
        """After our last GOAWAY: no stream is taken."""
    def stream_limit_reached(self) -> bool: ...
    def to_h2(self, data: bytes) -> None:
        """Bytes for h2, and what its events ask."""
    def request(self, wire: Stream, fields: list[tuple[bytes, bytes]], ended: bool) -> None:
        """A HEADERS frame opened a stream, of ``wire``'s kind."""
    def stream_reset(self, stream_id: int, counted: bool) -> None:
        """The stream ended in a reset; ``counted`` with the client's resets."""
    def terminate(self, code: int | None) -> None:
        """A connection error: GOAWAY with ``code``, then close."""


class LeanPath:
    """The lean streams of one connection: what the frame walk offers them."""

    __slots__ = ("host", "offering")

    def __init__(self, host: LeanHost) -> None:
        self.host = host
        self.offering = False  # from the client's first SETTINGS on, while open

    @property
    def closed(self) -> bool:
        return self.host.closed

    def deliver(self, data: bytes) -> None:
        self.host.to_h2(data)

    def lean_open(self, stream_id: int) -> bool:
        return type(self.host.streams.get(stream_id)) is LeanStream

    def end_lean(self, stream_id: int) -> None:
        """The client sent DATA or HEADERS on a lean stream, which it had ended (RFC 9113
        5.1, half-closed (remote)): h2 answers with RST_STREAM(STREAM_CLOSED), as for a
        stream of its own, and the stream's application hears the client is gone."""
        self._reset(stream_id, by_client=False)

    def _reset(self, stream_id: int, by_client: bool) -> None:
        """A lean stream ends in a reset: the client's RST_STREAM (``by_client``), or a
        stream error whose RST_STREAM h2 writes; either counts with the client's resets."""
        if stream_id not in self.host.streams:
            return  # (already done: h2 answers as on any closed stream)
        lean_stream_reset(self.host.h2, stream_id, sent=not by_client)
        self.host.stream_reset(stream_id, counted=True)

    def offer(self, kind: int, flags: int, stream_id: int, data: bytes, start: int,
              end: int) -> bool:
        if kind == HEADERS:
            return self._request(flags, stream_id, data, start, end)
        host = self.host
        wire = host.streams.get(stream_id)
        if type(wire) is not LeanStream:
            return False  # h2's stream, or one closed: h2 knows what to do
        if kind == RST_STREAM:
            self._reset(stream_id, by_client=True)
            return True
        increment = int.from_bytes(data[start + 9:end], "big") & _31_BITS
        if not increment:
            return False  # h2 ends the connection for it (PROTOCOL_ERROR)
        if wire.window + increment > _MAX_WINDOW:
            logger.info("HTTP/2 client %s opened the window of stream %d past 2^31-1",
                        host.conn.client, stream_id)
            host.reset(stream_id, ErrorCodes.FLOW_CONTROL_ERROR)
            return True
        wire.window += increment
        if wire.pending:
            host.flow.send_pending(wire)
        return True

    def _request(self, flags: int, stream_id: int, data: bytes, start: int, end: int
                 ) -> bool:
        """A request in one HEADERS frame, taken if it opens a new stream; h2 is left
        everything else, and every frame it must refuse."""
        host = self.host
        h2conn = host.h2
        if (not stream_id & 1 or stream_id <= h2conn.highest_inbound_stream_id
                or host.shutting_down or host.stream_limit_reached()):
            return False  # (h2 refuses a stream over the limit or after our GOAWAY)
        at = start + 9
        if flags & PADDED:
            if at >= end or data[at] >= end - at:
                return False  # h2 refuses the padding
            end -= data[at]
            at += 1
        if flags & PRIORITY:
            if end - at < 5 or int.from_bytes(data[at:at + 4], "big") & _31_BITS \
                    == stream_id:
                return False  # h2 refuses it
            at += 5
        try:
            fields = decode_block(h2conn, data[at:end])
        except FrameError as exc:
            logger.info("HTTP/2 client %s sent %s; closing the connection",
                        host.conn.client, exc.reason)
            host.terminate(exc.code)
            return True
        open_lean_stream(h2conn, stream_id)
        host.request(LeanStream(host, stream_id,
                                h2conn.remote_settings.initial_window_size), fields, True)
        return True

    def settings_changed(self, delta: int) -> bool:
        """The client's SETTINGS_INITIAL_WINDOW_SIZE moved every lean stream's window by
        ``delta``; False if one went past 2^31-1 (a FLOW_CONTROL_ERROR, RFC 9113 6.9.2)."""
        for wire in self.host.streams.values():
            if type(wire) is LeanStream:
                wire.window += delta
                if wire.window > _MAX_WINDOW:
                    return False
        return True
