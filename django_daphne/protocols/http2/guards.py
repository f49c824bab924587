"""Bounds on what an HTTP/2 client can make the server hold or do.

:class:`FrameScreen` reads each frame header before h2 sees the bytes, and ends the
connection for what h2 would buffer first and refuse later (or refuse with the wrong
code); :class:`FloodGuard` counts, per second, the resets a client causes and the control
frames it sends (rapid reset, CVE-2023-44487; "MadeYouReset"; PING and SETTINGS floods).
"""

from __future__ import annotations

from h2.errors import ErrorCodes

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# more than this many control frames (PING, SETTINGS, empty DATA, PRIORITY, ...) a second
CONTROL_FRAMES_PER_SECOND = 1000

_HEADERS, _SETTINGS, _GOAWAY, _CONTINUATION = 0x1, 0x4, 0x7, 0x9
_END_HEADERS, _ACK = 0x4, 0x1


class FrameError(Exception):
    """What the client sent ends the connection with a GOAWAY of this error code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class FrameScreen:
    """The frame walk over a client's bytes (only frame headers are read; payloads pass
    untouched), with any GOAWAY from the client taken out.

    Raises FrameError for:

    - a broken connection preface (PROTOCOL_ERROR; the walk must not read it as frames);
    - a frame over the size we announced (FRAME_SIZE_ERROR): h2 would buffer its whole
      declared length before looking at it;
    - a header block (HEADERS and its CONTINUATION frames) over the header list size we
      announced (ENHANCE_YOUR_CALM): h2 gathers up to 64 frames, each as large as a frame
      may be, before decoding any of it;
    - a SETTINGS acknowledgement with a payload: FRAME_SIZE_ERROR (RFC 9113 6.5), where h2
      says PROTOCOL_ERROR.

    GOAWAY: h2 takes a client's GOAWAY for the end of the connection and refuses to send
    anything more, but the client still waits for the responses of the streams it opened
    (RFC 9113 6.8): the handler finishes those first, so h2 never sees it.
    """

    __slots__ = ("max_frame_size", "max_header_block", "preface", "skip", "held", "block")

    def __init__(self, max_frame_size: int, max_header_block: int) -> None:
        self.max_frame_size = max_frame_size
        self.max_header_block = max_header_block
        self.preface = PREFACE  # what of the client's preface is still to come
        self.skip = len(PREFACE)  # payload bytes (the preface first) passed on, still due
        self.held = b""  # held back until a frame header, or a whole GOAWAY, is in
        self.block = 0  # the size so far of a header block that continues

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
        kept = []
        start = 0
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
                                 % (length, self.max_frame_size))
            if kind == _HEADERS or kind == _CONTINUATION:
                flags = data[pos + 4]
                block = length + self.block if kind == _CONTINUATION else length
                if block > self.max_header_block and not (
                    kind == _HEADERS and flags & _END_HEADERS
                ):
                    # (a header block in one frame is held to its size by h2's decoder)
                    raise FrameError(ErrorCodes.ENHANCE_YOUR_CALM,
                                     "a header block over %d bytes" % self.max_header_block)
                self.block = 0 if flags & _END_HEADERS else block
            elif kind == _SETTINGS and data[pos + 4] & _ACK and length:
                raise FrameError(ErrorCodes.FRAME_SIZE_ERROR,
                                 "a SETTINGS acknowledgement with a payload")
            elif kind == _GOAWAY and length >= 8 and not any(data[pos + 5:pos + 9]):
                if end > size:  # a GOAWAY is taken whole or not at all
                    self.held = data[pos:]
                    break
                code = int.from_bytes(data[pos + 13:pos + 17], "big")
                kept.append(data[start:pos])
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
