"""Lean streams: the common request, served beside h2 rather than through it.

Most requests arrive whole in one HEADERS frame (END_STREAM and END_HEADERS: no body) and
are answered with a HEADERS frame and a few DATA frames.  For those, h2's per-stream
machinery (a state machine per stream, frame objects, its HPACK encoder, a walk over every
open stream for each new one) was most of the time an HTTP/2 request took.  Such a
stream is *lean*: h2 never hears of it.  h2 still holds everything of the connection's:
its settings, the connection's flow-control windows, the HPACK decoder's table (lean
header blocks are decoded by h2's own decoder, in order with every other block), the
highest stream id, and the record of closed streams, where a lean stream is entered as
closed by the client's END_STREAM the moment it opens.  So h2 answers every frame a client
may not send on such a stream (DATA, HEADERS, a stream id reused) exactly as for its own
streams, and every request that is not so simple (a body, a header block in several
frames, a WebSocket) goes through h2 as before.

What the lean path takes itself (:class:`~.guards.FrameScreen` offers it, in order): the
request's HEADERS frame, and WINDOW_UPDATE and RST_STREAM frames on a lean stream still
open.  What it writes is built in :mod:`.frames` and goes out through the handler's
:class:`~.flow.FlowControl`, in order with h2's output.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from h2.errors import ErrorCodes

from .frames import HEADERS, PADDED, PRIORITY, RST_STREAM
from .guards import FrameError
from .h2_workarounds import decode_block, open_lean_stream

if TYPE_CHECKING:
    from .host import H2Host
    from .stream import H2Stream

logger = logging.getLogger("django_daphne.http2")

_MAX_WINDOW = _31_BITS = 2**31 - 1  # the largest window; a stream id's or increment's bits


class LeanPath:
    """The lean streams of one connection: what the frame walk offers them."""

    __slots__ = ("http2", "offering")

    def __init__(self, http2: H2Host[H2Stream]) -> None:
        self.http2 = http2
        self.offering = False  # from the client's first SETTINGS on, while open

    @property
    def closed(self) -> bool:
        return self.http2.closed

    def deliver(self, data: bytes) -> None:
        self.http2.to_h2(data)

    def lean_open(self, stream_id: int) -> bool:
        wire = self.http2.streams.get(stream_id)
        return wire is not None and wire.lean

    def end_lean(self, stream_id: int) -> None:
        """The client sent DATA or HEADERS on a lean stream, which it had ended (RFC 9113
        5.1, half-closed (remote)): h2 answers with RST_STREAM(STREAM_CLOSED), as for a
        stream of its own, and the stream's application hears the client is gone."""
        self.http2.end_lean_stream(stream_id, by_client=False)

    def offer(self, kind: int, flags: int, stream_id: int, data: bytes, start: int,
              end: int) -> bool:
        if kind == HEADERS:
            return self._request(flags, stream_id, data, start, end)
        http2 = self.http2
        wire = http2.streams.get(stream_id)
        if wire is None or not wire.lean:
            return False  # h2's stream, or one closed: h2 knows what to do
        if kind == RST_STREAM:
            http2.end_lean_stream(stream_id, by_client=True)
            return True
        increment = int.from_bytes(data[start + 9:end], "big") & _31_BITS
        if not increment:
            return False  # h2 ends the connection for it (PROTOCOL_ERROR)
        if wire.window + increment > _MAX_WINDOW:
            logger.info("HTTP/2 client %s opened the window of stream %d past 2^31-1",
                        http2.conn.client, stream_id)
            http2.reset(stream_id, ErrorCodes.FLOW_CONTROL_ERROR)
            return True
        wire.window += increment
        if wire.pending:
            http2.flow.send_pending(wire)
        return True

    def _request(self, flags: int, stream_id: int, data: bytes, start: int, end: int
                 ) -> bool:
        """A request in one HEADERS frame, taken if it opens a new stream; h2 is left
        everything else, and every frame it must refuse."""
        http2 = self.http2
        h2conn = http2.h2
        if (not stream_id & 1 or stream_id <= h2conn.highest_inbound_stream_id
                or http2.shutting_down or http2.stream_limit_reached()):
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
                        http2.conn.client, exc.reason)
            http2.terminate(exc.code)
            return True
        open_lean_stream(h2conn, stream_id)
        http2.request(stream_id, fields, True, lean=True)
        return True

    def settings_changed(self, delta: int) -> bool:
        """The client's SETTINGS_INITIAL_WINDOW_SIZE moved every lean stream's window by
        ``delta``; False if one went past 2^31-1 (a FLOW_CONTROL_ERROR, RFC 9113 6.9.2)."""
        for wire in self.http2.streams.values():
            if wire.lean:
                wire.window += delta
                if wire.window > _MAX_WINDOW:
                    return False
        return True
