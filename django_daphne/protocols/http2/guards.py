"""Bounds on what an HTTP/2 client can make the server hold or do.

:class:`FrameScreen` reads each frame header before h2 sees the bytes, and ends the
connection for what h2 would buffer first and refuse later (or refuse with the wrong
code); it also offers the frames a lean stream may take (:mod:`.lean`) before h2 sees
them.  :class:`FloodGuard` counts, per second, the resets a client causes and the control
frames it sends (rapid reset, CVE-2023-44487; "MadeYouReset"; PING and SETTINGS floods).
"""

from __future__ import annotations

from typing import Protocol

from h2.errors import ErrorCodes

from .frames import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# more than this many control frames (PING, SETTINGS, empty DATA, PRIORITY, ...) a second
CONTROL_FRAMES_PER_SECOND = 1000

_REQUEST_IN_ONE_FRAME = END_STREAM | END_HEADERS


class Router(Protocol):
    """Where the frame walk hands bytes, in order: h2's, or a lean stream's frames."""

    offering: bool  # whether frames are offered at all (not before the client's SETTINGS)

    @property
    def closed(self) -> bool:
        """The connection ended: the walk stops."""

    def deliver(self, data: bytes) -> None:
        """Bytes for h2, before a frame that is offered next."""

    def offer(self, kind: int, flags: int, stream_id: int, data: bytes, start: int,
              end: int) -> bool:
        """A whole frame, ``data[start:end]``; True if it was taken (h2 never sees it)."""

    def lean_open(self, stream_id: int) -> bool:
        """Whether a DATA or HEADERS frame on this stream is one h2 must answer for a
        lean stream (a STREAM_CLOSED stream error); ``end_lean`` is called next."""

    def end_lean(self, stream_id: int) -> None:
        """The lean stream ends: h2 answers the frame that follows."""


class FrameError(Exception):
    """What the client sent ends the connection with a GOAWAY of this error code, once h2
    has read the frames before it (``before``: an error among those comes first)."""

    def __init__(self, code: int, reason: str, before: bytes = b"") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.before = before


class FrameScreen:
    """The frame walk over a client's bytes (only frame headers are read; payloads pass
    untouched), with any GOAWAY from the client taken out.

    Raises FrameError, with the bytes before the frame that h2 has not had yet, for:

    - a broken connection preface (PROTOCOL_ERROR; the walk must not read it as frames);
    - a frame over the size we announced (FRAME_SIZE_ERROR): h2 would buffer its whole
      declared length before looking at it;
    - a header block (HEADERS and its CONTINUATION frames) over the header list size we
      announced (ENHANCE_YOUR_CALM): h2 gathers up to 64 frames, each as large as a frame
      may be, before decoding any of it;
    - a SETTINGS acknowledgement with a payload: FRAME_SIZE_ERROR (RFC 9113 6.5), where h2
      says PROTOCOL_ERROR;
    - a CONTINUATION frame that continues no header block: PROTOCOL_ERROR (RFC 9113 6.10),
      where h2's answer depends on the state of the stream it names.

    GOAWAY: h2 takes a client's GOAWAY for the end of the connection and refuses to send
    anything more, but the client still waits for the responses of the streams it opened
    (RFC 9113 6.8): the handler finishes those first, so h2 never sees it.

    With a ``router``, a HEADERS frame that holds a whole request (END_STREAM and
    END_HEADERS), and a RST_STREAM or WINDOW_UPDATE on a stream, are offered to it whole
    (held back until all of the frame is in), outside any header block, after the bytes
    before them went to h2: what the router does with a frame always follows what h2 did
    with the frames before it.  A DATA or HEADERS frame it declines on a stream it has
    open ends that stream before h2 sees the frame.
    """

    __slots__ = ("max_frame_size", "max_header_block", "preface", "skip", "held", "block",
                 "in_block", "router")

    def __init__(self, max_frame_size: int, max_header_block: int,
                 router: Router | None = None) -> None:
        self.max_frame_size = max_frame_size
        self.max_header_block = max_header_block
        self.preface = PREFACE  # what of the client's preface is still to come
        self.skip = len(PREFACE)  # payload bytes (the preface first) passed on, still due
        self.held = b""  # held back until a frame header, a whole GOAWAY, or a whole
        # offered frame is in
        self.block = 0  # the size so far of a header block that continues
        self.in_block = False  # a header block continues (CONTINUATION is due)
        self.router = router

    def screen(self, data: bytes) -> tuple[bytes, int | None]:
        """The bytes for h2, and the error code of a GOAWAY taken out of them (or None)."""
        if self.preface:
            seen = min(len(data), len(self.preface))
            if data[:seen] != self.preface[:seen]:
                raise FrameError(ErrorCodes.PROTOCOL_ERROR, "an invalid connection preface")
            self.preface = self.preface[seen:]
        if not self.held and len(data) <= self.skip:  # all inside the current payload
            self.skip -= len(data)
            return data, None
        return self._walk(data)

    def _walk(self, data: bytes) -> tuple[bytes, int | None]:
        if self.held:
            data = self.held + data
            self.held = b""
        size = len(data)
        pos = self.skip
        code = None
        kept: list[bytes] = []
        start = 0
        router = self.router
        offering = router is not None and router.offering
        while pos < size:
            if size - pos < 9:  # the header's end is still to come
                self.held = data[pos:]
                break
            length = int.from_bytes(data[pos:pos + 3], "big")
            kind = data[pos + 3]
            end = pos + 9 + length
            if length > self.max_frame_size:
                raise FrameError(ErrorCodes.FRAME_SIZE_ERROR,
                                 "a frame of %d bytes (the limit is %d)"
                                 % (length, self.max_frame_size),
                                 b"".join(kept) + data[start:pos])
            if offering and router is not None and not self.in_block and kind <= WINDOW_UPDATE:
                stream_id = int.from_bytes(data[pos + 5:pos + 9], "big") & 0x7FFFFFFF
                if not stream_id:
                    pass
                elif (kind == HEADERS and data[pos + 4] & _REQUEST_IN_ONE_FRAME
                      == _REQUEST_IN_ONE_FRAME) or (
                          length == 4 and (kind == RST_STREAM or kind == WINDOW_UPDATE)):
                    if end > size:  # offered whole or not at all
                        self.held = data[pos:]
                        break
                    if start < pos:
                        router.deliver(data[start:pos])
                        start = pos
                    if router.closed:
                        return b"", None
                    if router.offer(kind, data[pos + 4], stream_id, data, pos, end):
                        start = end
                        if router.closed:
                            return b"", None
                        pos = end
                        continue
                    offering = router.offering
                if (kind == DATA or kind == HEADERS) and router.lean_open(stream_id):
                    if start < pos:
                        router.deliver(data[start:pos])
                        start = pos
                        if router.closed:
                            return b"", None
                    # (what just went to h2 may have let the stream's response finish:
                    # then it is closed, and h2 alone answers the frame)
                    if router.lean_open(stream_id):
                        router.end_lean(stream_id)
                        if router.closed:
                            return b"", None
            if kind == HEADERS or kind == CONTINUATION:
                if kind == CONTINUATION and not self.in_block:
                    # RFC 9113 6.10, on whatever stream (h2 answers by the stream's state)
                    raise FrameError(ErrorCodes.PROTOCOL_ERROR,
                                     "a CONTINUATION frame outside a header block",
                                     b"".join(kept) + data[start:pos])
                flags = data[pos + 4]
                block = length + self.block if kind == CONTINUATION else length
                if block > self.max_header_block and not (
                    kind == HEADERS and flags & END_HEADERS
                ):
                    # (a header block in one frame is held to its size by h2's decoder)
                    raise FrameError(ErrorCodes.ENHANCE_YOUR_CALM,
                                     "a header block over %d bytes" % self.max_header_block,
                                     b"".join(kept) + data[start:pos])
                self.block = 0 if flags & END_HEADERS else block
                self.in_block = not flags & END_HEADERS
            elif kind == SETTINGS and data[pos + 4] & ACK and length:
                raise FrameError(ErrorCodes.FRAME_SIZE_ERROR,
                                 "a SETTINGS acknowledgement with a payload",
                                 b"".join(kept) + data[start:pos])
            elif kind == GOAWAY and length >= 8 and not any(data[pos + 5:pos + 9]):
                if end > size:  # a GOAWAY is taken whole or not at all
                    self.held = data[pos:]
                    break
                code = int.from_bytes(data[pos + 13:pos + 17], "big")
                if router is None:
                    kept.append(data[start:pos])
                elif start < pos:
                    # with a router, h2's bytes go out as the walk goes: these now, in
                    # order with what it delivers next
                    router.deliver(data[start:pos])
                    if router.closed:
                        return b"", None
                start = end
            pos = end
        else:
            self.skip = pos - size
            if start:
                kept.append(data[start:])
                return b"".join(kept), code
            return data, code
        # stopped at bytes held back: pass on what came before them
        self.skip = 0
        kept.append(data[start:pos])
        return b"".join(kept), code


class FloodGuard:
    """Counts, within each second of the server's clock, the streams a client reset (or had
    refused or reset for being malformed) and the control frames it sent."""

    __slots__ = ("max_resets", "window_start", "resets", "control_frames")

    def __init__(self, now: float, max_resets: int) -> None:
        self.max_resets = max_resets
        self.window_start = now
        self.resets = 0
        self.control_frames = 0

    def _tick(self, now: float) -> None:
        if now - self.window_start >= 1.0:
            self.window_start = now
            self.resets = 0
            self.control_frames = 0

    def reset(self, now: float) -> bool:
        """One more reset; True once the client is over the bound."""
        self._tick(now)
        self.resets += 1
        return self.resets > self.max_resets

    def control_frame(self, now: float) -> bool:
        """One more control frame; True once the client is over the bound."""
        self._tick(now)
        self.control_frames += 1
        return self.control_frames > CONTROL_FRAMES_PER_SECOND
