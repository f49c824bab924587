"""Flow control both ways, for one HTTP/2 connection.

In: the client's window for a stream's body reopens only as its application takes the
body (``acknowledge``), so a slow application holds back its own client alone.  Out: a
stream's response data waits for the client's window (``send_pending``); a stream that
waits longer than the send timeout is reset by the handler; and what h2 buffers is written
to the transport at once past 64 KiB, where a client that stops reading makes the
applications' ``send`` wait (flow-control windows are not backpressure: the transport is).

One send loop serves every kind of stream (:mod:`.stream`): a kind says how much window
it has and how a frame is written.  A lean stream's frames (:mod:`.lean`) are built rather
than written by h2; they join h2's output in the order they were made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import h2.exceptions

from .h2_workarounds import inbound_window
from .stream import ENDED, ENDING

if TYPE_CHECKING:
    from .stream import Host, Stream

# DATA bytes held in h2's buffer before they are written without waiting for the loop's turn
FLUSH_AT = 65536


class FlowControl:
    """The windows of one connection's streams, and the writes of h2's output."""

    __slots__ = ("host", "blocked", "draining", "unflushed", "flush_pending", "out")

    def __init__(self, host: Host) -> None:
        self.host = host
        # streams whose response waits for the client to open its window, and since when
        self.blocked: dict[Stream, float] = {}
        # streams answered before their request body ended (see drains), and until when
        # the rest of that body may keep them
        self.draining: dict[Stream, float] = {}
        self.unflushed = 0  # DATA bytes handed to h2, or written lean, since the last flush
        self.flush_pending = False
        self.out: list[bytes] = []  # what is to be written, when lean frames are among it

    # -- in

    def acknowledge(self, stream_id: int, size: int) -> None:
        """Reopen the client's window by ``size`` bytes of body taken."""
        if size:
            try:
                self.host.h2.acknowledge_received_data(size, stream_id)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                pass

    def give_back(self, wire: Stream) -> None:
        """Body bytes held unacknowledged for a stream that is gone still count against the
        connection's window: hand them back."""
        if wire.unacked and not self.host.closed:
            self.acknowledge(wire.stream_id, wire.unacked)
            wire.unacked = 0

    def drains(self, wire: Stream) -> bool:
        """Answered before the request body ended: the rest the client may still send
        without more window is taken (a content-length and trailers still checked, its
        END_STREAM a clean end) rather than the stream reset at once; True while the client
        has window left for it.  The stream's window is never reopened (its body is
        dropped), only the connection's."""
        if wire.tunnel or wire.stream is None:
            return False  # (a tunnel has no body; a refused request had no application)
        h2conn = self.host.h2
        if wire.unacked:
            h2conn.increment_flow_control_window(wire.unacked)
            wire.unacked = 0
        if inbound_window(h2conn, wire.stream_id) <= 0:
            return False
        # the rest of the body keeps coming, or the stream is let go after the body timeout
        server = self.host.server
        self.draining[wire] = server.clock + server.config.body_timeout
        return True

    def forget(self, wire: Stream) -> None:
        """The stream is gone: it waits for nothing more."""
        self.blocked.pop(wire, None)
        self.draining.pop(wire, None)
        self.give_back(wire)

    # -- out

    def write_frames(self, *frames: bytes) -> None:
        """Frames built without h2 (a lean stream's), after whatever h2 has to send so far."""
        before = self.host.h2.data_to_send()
        if before:
            self.out.append(before)
        self.out.extend(frames)

    def send_pending(self, wire: Stream) -> None:
        """Send as much of a stream's pending data as the flow-control windows allow, and
        its end once all of it went; then the stream may be released."""
        pending = wire.pending
        sent = False
        try:
            while pending:
                window = wire.send_window()
                if window <= 0:
                    break
                sent = True
                chunk = pending[0]
                if len(chunk) <= window:
                    pending.popleft()
                    last = not pending and wire.state is ENDING and wire.trailers is None
                else:
                    pending[0] = chunk[window:]
                    chunk = chunk[:window]
                    last = False
                wire.write_data(chunk, last)
                self.unflushed += len(chunk)
                if last:
                    wire.move(ENDED)
            else:
                if wire.state is ENDING:
                    wire.write_end()
                    wire.move(ENDED)
        except h2.exceptions.ProtocolError as exc:
            wire.send_failed(exc)
        host = self.host
        if pending:  # waits for window (since now, if some went)
            if sent or wire not in self.blocked:
                self.blocked[wire] = host.server.clock
                host.update_deadline()
            return
        wire.wake()
        if self.blocked.pop(wire, None) is not None:
            host.update_deadline()
        if wire.state is ENDED:
            host.release(wire)

    def window_opened(self, stream_id: int) -> None:
        """The client opened a stream's window, or (0) the connection's or every stream's."""
        streams = self.host.streams
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
        data = self.host.h2.data_to_send()
        if self.out:
            if data:
                self.out.append(data)
            data = b"".join(self.out)
            self.out.clear()
        conn = self.host.conn
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
            self.host.server.loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self.flush_pending = False
        self.flush()
