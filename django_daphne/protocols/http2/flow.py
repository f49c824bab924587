"""Flow control both ways, for one HTTP/2 connection.

In: the client's window for a stream's body reopens only as its application takes the
body (``acknowledge``), so a slow application holds back its own client alone.  Out: a
stream's response data waits for the client's window (``send_pending``); a stream that
waits longer than the send timeout is reset by the handler; and what h2 buffers is written
to the transport at once past 64 KiB, where a client that stops reading makes the
applications' ``send`` wait (flow-control windows are not backpressure: the transport is).

A lean stream's frames (:mod:`.lean`) are built here rather than by h2, its send window
kept on its wire; they join h2's output in the order they were made.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import h2.exceptions
from h2.errors import ErrorCodes

from .frames import DATA, END_STREAM, encode_fields, frame_header, header_frames
from .h2_workarounds import owes_table_resize, spend_connection_window

if TYPE_CHECKING:
    from .host import H2Host
    from .stream import H2Stream

logger = logging.getLogger("django_daphne.http2")

# DATA bytes held in h2's buffer before they are written without waiting for the loop's turn
FLUSH_AT = 65536


class FlowControl:
    """The windows of one connection's streams, and the writes of h2's output."""

    __slots__ = ("http2", "blocked", "unflushed", "flush_pending", "out")

    def __init__(self, http2: H2Host[H2Stream]) -> None:
        self.http2 = http2
        # streams whose response waits for the client to open its window, and since when
        self.blocked: dict[H2Stream, float] = {}
        self.unflushed = 0  # DATA bytes handed to h2, or written lean, since the last flush
        self.flush_pending = False
        self.out: list[bytes] = []  # what is to be written, when lean frames are among it

    # -- in

    def acknowledge(self, stream_id: int, size: int) -> None:
        """Reopen the client's window by ``size`` bytes of body taken."""
        if size:
            try:
                self.http2.h2.acknowledge_received_data(size, stream_id)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                pass

    def give_back(self, wire: H2Stream) -> None:
        """Body bytes held unacknowledged for a stream that is gone still count against the
        connection's window: hand them back."""
        if wire.unacked and not self.http2.closed:
            self.acknowledge(wire.stream_id, wire.unacked)
            wire.unacked = 0

    # -- out

    def write_lean(self, *frames: bytes) -> None:
        """Frames of a lean stream, after whatever h2 has to send so far."""
        before = self.http2.h2.data_to_send()
        if before:
            self.out.append(before)
        self.out.extend(frames)

    def lean_headers(self, wire: H2Stream, fields: list[tuple[bytes, bytes]],
                     end_stream: bool) -> None:
        h2conn = self.http2.h2
        # h2's encoder owes the client a table size update: its block carries it
        block = h2conn.encoder.encode(fields) if owes_table_resize(h2conn) \
            else encode_fields(fields)
        self.write_lean(*header_frames(wire.stream_id, block, end_stream,
                                       h2conn.max_outbound_frame_size))

    def _send_lean(self, wire: H2Stream) -> bool:
        """send_pending's frames for a lean stream; True if any DATA went."""
        h2conn = self.http2.h2
        stream_id = wire.stream_id
        pending = wire.pending
        sent = False
        while pending:
            window = min(h2conn.outbound_flow_control_window, wire.window,
                         h2conn.max_outbound_frame_size)
            if window <= 0:
                return sent
            sent = True
            chunk = pending[0]
            if len(chunk) <= window:
                pending.popleft()
                last = not pending and wire.end_after and wire.trailers is None
            else:
                pending[0] = chunk[window:]
                chunk = chunk[:window]
                last = False
            size = len(chunk)
            self.write_lean(frame_header(size, DATA, END_STREAM if last else 0, stream_id),
                            chunk)
            wire.window -= size
            spend_connection_window(h2conn, size)
            self.unflushed += size
            if last:
                wire.ended = True
                return sent
        if wire.end_after and not wire.ended:
            if wire.trailers is not None:
                self.lean_headers(wire, wire.trailers, True)
            else:
                self.write_lean(frame_header(0, DATA, END_STREAM, stream_id))
            wire.ended = True
        return sent

    def send_pending(self, wire: H2Stream) -> None:
        """Send as much of a stream's pending data as the flow-control windows allow."""
        if wire.lean:
            http2 = self.http2
            sent = self._send_lean(wire)
            if wire.pending:  # waits for window (since now, if some went)
                if sent or wire not in self.blocked:
                    self.blocked[wire] = http2.server.clock
                    http2.update_deadline()
                return
            wire.wake()
            if self.blocked.pop(wire, None) is not None:
                http2.update_deadline()
            if wire.ended:
                http2.release(wire)
            return
        http2 = self.http2
        h2conn = http2.h2
        stream_id = wire.stream_id
        pending = wire.pending
        sent = False
        try:
            while pending:
                window = min(h2conn.local_flow_control_window(stream_id),
                             h2conn.max_outbound_frame_size)
                if window <= 0:
                    if sent or wire not in self.blocked:
                        self.blocked[wire] = http2.server.clock
                        http2.update_deadline()
                    return
                sent = True
                chunk = pending[0]
                if len(chunk) <= window:
                    pending.popleft()
                    last = not pending and wire.end_after and wire.trailers is None
                    h2conn.send_data(stream_id, chunk, end_stream=last)
                    self.unflushed += len(chunk)
                    if last:
                        wire.ended = True
                else:
                    h2conn.send_data(stream_id, chunk[:window])
                    self.unflushed += window
                    pending[0] = chunk[window:]
            if wire.end_after and not wire.ended:
                if wire.trailers is not None:
                    h2conn.send_headers(stream_id, wire.trailers, end_stream=True)
                else:
                    h2conn.end_stream(stream_id)
                wire.ended = True
        except h2.exceptions.StreamClosedError:
            pending.clear()
            wire.ended = True
        except h2.exceptions.ProtocolError as exc:
            # not left hanging: the client learns the response broke off
            logger.error("HTTP/2 refused to send the response on stream %d: %s", stream_id,
                         exc)
            pending.clear()
            wire.ended = True
            try:
                h2conn.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)
            except h2.exceptions.ProtocolError:
                pass
        finally:
            if not pending:
                wire.wake()
        if self.blocked.pop(wire, None) is not None:
            http2.update_deadline()
        if wire.ended:
            http2.release(wire)

    def window_opened(self, stream_id: int) -> None:
        """The client opened a stream's window, or (0) the connection's or every stream's."""
        streams = self.http2.streams
        if stream_id:
            wire = streams.get(stream_id)
            if wire is not None and wire.pending:
                self.send_pending(wire)
        else:
            for wire in list(streams.values()):
                if wire.pending:
                    self.send_pending(wire)

    def flush(self) -> None:
        self.unflushed = 0
        data = self.http2.h2.data_to_send()
        if self.out:
            if data:
                self.out.append(data)
            data = b"".join(self.out)
            self.out.clear()
        conn = self.http2.conn
        if data and not conn.closed:
            conn.write(data)

    def flush_soon(self) -> None:
        """Write what the streams' applications sent, once per turn of the loop: the
        responses of many streams finishing together leave in one write, not one each.
        Past FLUSH_AT bytes it is written at once (see the module docstring): an
        application whose sends do not wait never gives the loop a turn to flush."""
        if self.unflushed >= FLUSH_AT:
            self.flush_pending = False
            self.flush()
        elif not self.flush_pending:
            self.flush_pending = True
            self.http2.server.loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self.flush_pending = False
        self.flush()
