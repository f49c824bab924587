"""HTTP/1.1 request parsing: strict, incremental, sans-I/O.

Two parsers with one interface and one set of rules: :class:`PythonParser`, which reads the
header lines with regular expressions, and :class:`HttptoolsParser`, which lets llhttp
(through httptools) tokenise them.  Both call the same handler methods::

    handler.on_head(head: RequestHead) -> bool   # True: stop, the rest is another protocol
    handler.on_body(data: bytes)
    handler.on_message_complete()

and raise :class:`Refusal` (with the HTTP status to answer) for anything malformed or
ambiguous.  The rules are those that keep two parsers from ever splitting one request
differently (request smuggling): CRLF only, no obs-fold, no whitespace before a colon, no
control characters (nor 0x85, which some decoders take for a line break) in values, exactly
one Host, and a single unambiguous body length.

Why both parsers answer every request identically: everything but the tokenising of header
lines is written once, in :class:`Parser` -- finding the end of the head, the limits, the
request line, the body length, chunked decoding and trailers.  llhttp sees only complete
heads; when it refuses one, the Python rules decide the answer (and accept what they
accept, such as a repeated identical Content-Length, which llhttp always refuses).

Limits: the request line is the first line without its CRLF (longer than ``max_request_line``
gets 414); the header block is the header lines with their CRLFs (larger than
``max_header_size`` gets 431, as do more than ``max_headers`` lines); trailers of a chunked
body are held to the same two header limits.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from typing import Protocol

from ..asgi.wire import RequestHead
from ..core.errors import Refusal
from ..core.syntax import TARGET, TCHAR, TOKEN, VISIBLE_VALUE_CHARS

try:  # pragma: no cover - depends on the platform
    import httptools
except ImportError:  # pragma: no cover
    httptools = None  # type: ignore[assignment]  # optional (CPython): parser_class checks

_VCHARS = rb"\t\x20" + VISIBLE_VALUE_CHARS
_REQUEST_LINE = re.compile(rb"(%s+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])" % TCHAR).fullmatch
_HEADER_LINE = re.compile(rb"(%s+):([%s]*)" % (TCHAR, _VCHARS)).fullmatch
# absolute-form (RFC 9112 3.2.2): an http(s) URI with a host (RFC 3986 3.2.2: an IP literal
# in brackets, or a reg-name, which also covers IPv4), an optional port, and no userinfo
# (RFC 9110 4.2.4); then the path or query, or nothing
_ABSOLUTE_FORM = re.compile(
    rb"[Hh][Tt][Tt][Pp][Ss]?://"
    rb"(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|\[[Vv][0-9A-Fa-f]+\.[-A-Za-z0-9._~!$&'()*+,;=:]+\]"
    rb"|(?:[-A-Za-z0-9._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)"
    rb"(?::[0-9]*)?(?:[/?]|$)"
).match
_BAD_EOL = re.compile(rb"\r(?!\n)|(?<!\r)\n").search
# a header name that the scope must screen (see asgi.scope.screen_headers) may be in the
# head: one with an underscore, or daphne-root-path in any case
_ODD_NAME = re.compile(rb"_|[Tt]-[Pp]").search
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)(;[\t\x20-\x7e]*)?").fullmatch
_DIGITS = re.compile(rb"[0-9]{1,18}").fullmatch
_MAX_CHUNK_DIGITS = 15  # 16 hex digits would pass 2**60; no real body needs that
_MAX_CHUNK_LINE = 4096  # a chunk size with its extensions


class ParserHandler(Protocol):
    """What a parser reports a request's head, body and end to (see the module docstring)."""

    def on_head(self, head: RequestHead) -> bool:
        """True: stop, the rest is another protocol."""
        ...

    def on_body(self, data: bytes) -> None: ...

    def on_message_complete(self) -> None: ...


class Limits:
    """The request-head limits, from the Config."""

    __slots__ = ("max_request_line", "max_header_size", "max_headers")

    def __init__(self, max_request_line: int, max_header_size: int, max_headers: int) -> None:
        self.max_request_line = max_request_line
        self.max_header_size = max_header_size
        self.max_headers = max_headers


def _show(data: bytes) -> str:
    """A short, printable rendering of client bytes for an error message."""
    text = data[:40].decode("ascii", "backslashreplace")
    text = "".join(c if " " <= c <= "~" else "\\x%02x" % ord(c) for c in text)
    return "'%s%s'" % (text, "..." if len(data) > 40 else "")


def _bad_eol(data: bytes, start: int = 0) -> str | None:
    """Why ``data[start:]`` is refused for a line end without its pair, or None.

    A CR as the very last byte is not yet bare: its LF may be in the next packet.
    """
    match = _BAD_EOL(data, start)
    if match is None or (match.start() == len(data) - 1 and match.group() == b"\r"):
        return None
    if match.group() == b"\n":
        return "bare LF (a line end without CR) in the request head"
    return "bare CR (not followed by LF) in the request head"


def _absolute_form(target: bytes) -> bool:
    """Whether ``target`` is a valid absolute-form request target."""
    match = _ABSOLUTE_FORM(target)
    if match is None:
        return False
    literal = match.group("ip6")
    if literal is not None:
        try:
            ipaddress.IPv6Address(literal.decode("ascii"))
        except ValueError:
            return False
    return True


def _diagnose_request_line(line: bytes) -> Refusal:
    """Say precisely what is wrong with a request line that did not match (slow path)."""
    reason = _bad_eol(line + b"\r\n")
    if reason is not None:
        return Refusal(400, reason)
    parts = line.split(b" ")
    if not TOKEN(parts[0]):
        return Refusal(400, "invalid method token %s in the request line" % _show(parts[0]))
    if len(parts) != 3 or not parts[1]:
        return Refusal(
            400, "malformed request line %s: expected METHOD SP target SP HTTP/x.y"
            % _show(line))
    if not TARGET(parts[1]):
        return Refusal(400, "invalid character in the request target %s" % _show(parts[1]))
    if parts[2][:5].upper() != b"HTTP/":
        # not HTTP/1.x (an HTTP/2 client's broken preface, another protocol): no status
        # line it could read, so no answer, only the close
        return Refusal.no_answer("not an HTTP/1.x request line: %s" % _show(line))
    return Refusal(400, "malformed HTTP version %s in the request line" % _show(parts[2]))


def _diagnose_header(line: bytes) -> str:
    """Say precisely what is wrong with a header line that did not match (slow path)."""
    reason = _bad_eol(line + b"\r\n")
    if reason is not None:
        return reason
    if line[:1] in (b" ", b"\t"):
        return "header line starting with whitespace (obs-fold) is not allowed"
    name, colon, value = line.partition(b":")
    if not colon:
        return "header line without a colon: %s" % _show(line)
    if not name:
        return "empty header name"
    if name[-1:] in (b" ", b"\t"):
        return "whitespace between the header name %s and its colon" % _show(name.rstrip())
    if not TOKEN(name):
        return "invalid character in the header name %s" % _show(name)
    for byte in value:
        if byte == 0:
            return "NUL in the value of header %s" % _show(name)
        if byte == 0x0D or byte == 0x0A:
            return "bare %s in the value of header %s" % (
                "CR" if byte == 0x0D else "LF", _show(name))
        if (byte < 0x20 and byte != 0x09) or byte in (0x7F, 0x85):
            return "forbidden character 0x%02x in the value of header %s" % (byte, _show(name))
    return "malformed header line %s" % _show(line)  # pragma: no cover - all named above


def parse_header_lines(block: bytes) -> list[tuple[bytes, bytes]]:
    """Header lines (CRLF-separated, no final CRLF) as (lower-case name, value) pairs."""
    headers: list[tuple[bytes, bytes]] = []
    append = headers.append
    match = _HEADER_LINE
    for line in block.split(b"\r\n"):
        m = match(line)
        if m is None:
            raise Refusal(400, _diagnose_header(line))
        name, value = m.groups()
        append((name.lower(), value.strip(b" \t")))
    return headers


def analyse_headers(
    headers: list[tuple[bytes, bytes]], http_version: str
) -> tuple[int | None, bool, bool, bool, bytes | None]:
    """The framing decisions both parsers share.

    Returns (content_length, chunked, keep_alive, expect_continue, upgrade) or raises
    Refusal for a missing or repeated Host, conflicting lengths and unknown codings.
    """
    content_length: int | None = None
    chunked = False
    transfer_encodings = 0
    hosts = 0
    connection = b""
    expect_continue = False
    upgrade = None
    for name, value in headers:
        if name == b"content-length":
            if not _DIGITS(value):
                raise Refusal(
                    400, "invalid Content-Length %s: it must be 1 to 18 digits" % _show(value))
            length = int(value)
            if content_length is not None and content_length != length:
                raise Refusal(400, "differing Content-Length values")
            content_length = length
        elif name == b"transfer-encoding":
            transfer_encodings += 1
            if value.lower() != b"chunked":
                raise Refusal(
                    400, "unsupported Transfer-Encoding %s: only chunked is accepted"
                    % _show(value))
            chunked = True
        elif name == b"host":
            hosts += 1
        elif name == b"connection":
            connection = connection + b"," + value.lower() if connection else value.lower()
        elif name == b"expect":
            if value.lower() == b"100-continue":
                expect_continue = True
        elif name == b"upgrade":
            upgrade = value.lower()
    if transfer_encodings > 1:
        raise Refusal(400, "more than one Transfer-Encoding header")
    if chunked and content_length is not None:
        raise Refusal(400, "both Content-Length and Transfer-Encoding")
    if chunked and http_version == "1.0":
        raise Refusal(400, "Transfer-Encoding in an HTTP/1.0 request")
    if hosts > 1:
        raise Refusal(400, "more than one Host header")
    if hosts == 0 and http_version == "1.1":
        raise Refusal(400, "missing Host header in an HTTP/1.1 request")
    if connection:
        tokens = [t.strip() for t in connection.split(b",")]
        if http_version == "1.1":
            keep_alive = b"close" not in tokens
        else:
            keep_alive = b"keep-alive" in tokens and b"close" not in tokens
        if upgrade is not None and b"upgrade" not in tokens:
            upgrade = None
    else:
        keep_alive = http_version == "1.1"
        upgrade = None
    if http_version == "1.0":
        expect_continue = False
    return content_length, chunked, keep_alive, expect_continue, upgrade


class ParseState(enum.Enum):
    """What the parser reads next (``Parser.state``)."""

    HEAD = "head"  # a request head (the empty lines before one skipped)
    LENGTH = "length"  # ``remaining`` bytes of a Content-Length body
    CHUNK_SIZE_LINE = "chunk size line"
    CHUNK_DATA = "chunk data"  # ``remaining`` bytes of a chunk
    CHUNK_END = "chunk end"  # the CRLF after a chunk's data
    TRAILERS = "trailers"  # trailer lines, to the empty one that ends the request
    STOPPED = "stopped"  # the handler took the connection (an upgrade): nothing more


(_HEAD, _LENGTH, _CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILERS,
 _STOPPED) = ParseState


class Parser:
    """Framing, limits and the request line: everything both parsers share.

    Subclasses supply only ``_headers(buffer, start, end, count)``: the ``count`` header lines
    of a complete head (``buffer[start:end]``, CRLF-separated, the head's blank line at
    ``end``) as (lower-case name, stripped value) pairs.
    """

    def __init__(self, handler: ParserHandler, limits: Limits) -> None:
        self.handler = handler
        self.limits = limits
        self.state = _HEAD
        self.buffer = b""
        self.remaining = 0
        self.scanned = 0  # bytes of a partial head or line already checked
        self.line_end = -1  # where a partial head's request line ends, once seen
        self.trailer_bytes = 0
        self.trailer_count = 0

    def _headers(
        self, buffer: bytes, start: int, end: int, count: int
    ) -> list[tuple[bytes, bytes]]:
        raise NotImplementedError  # pragma: no cover

    def _head_parsed(self, head: RequestHead) -> None:
        """Called once a head passed every rule, before the handler sees it."""

    def feed(self, data: bytes) -> bytes | None:
        """Parse what arrived.  Returns the unparsed rest if a handler asked to stop."""
        buffer: bytes | None = self.buffer + data if self.buffer else data
        self.buffer = b""
        while buffer:
            state = self.state
            if state is _HEAD:
                buffer = self._head(buffer)
                if buffer is None:
                    return None
            elif state is _LENGTH:
                remaining = self.remaining
                if len(buffer) < remaining:
                    self.remaining = remaining - len(buffer)
                    self.handler.on_body(buffer)
                    return None
                chunk, buffer = buffer[:remaining], buffer[remaining:]
                self.state = _HEAD
                self.handler.on_body(chunk)
                self.handler.on_message_complete()
            elif state is _CHUNK_DATA:
                remaining = self.remaining
                if len(buffer) <= remaining:
                    self.remaining = remaining - len(buffer)
                    if not self.remaining:
                        self.state = _CHUNK_END
                    self.handler.on_body(buffer)
                    return None
                chunk, buffer = buffer[:remaining], buffer[remaining:]
                self.state = _CHUNK_END
                self.handler.on_body(chunk)
            elif state is _CHUNK_END:
                if buffer[:2] != b"\r\n":
                    if buffer == b"\r":
                        self.buffer = buffer
                        return None
                    raise Refusal(400, "chunk data not followed by CRLF")
                buffer = buffer[2:]
                self.state = _CHUNK_SIZE_LINE
            elif state is _CHUNK_SIZE_LINE:
                buffer = self._chunk_size(buffer)
                if buffer is None:
                    return None
            elif state is _TRAILERS:
                buffer = self._trailer(buffer)
                if buffer is None:
                    return None
            else:  # _STOPPED
                return buffer
        return None

    # -- the request head

    def _head(self, buffer: bytes) -> bytes | None:
        """Parse one request head from the front of ``buffer``; return what follows it."""
        if buffer[:2] == b"\r\n":  # RFC 9112 2.2: ignore empty lines before a request
            skip = 2
            while buffer[skip:skip + 2] == b"\r\n":
                skip += 2
            buffer = buffer[skip:]
            self.scanned = 0
            if not buffer:
                return None
        scanned = self.scanned
        end = buffer.find(b"\r\n\r\n", scanned - 3 if scanned > 3 else 0)
        if end < 0:
            self._partial_head(buffer)
            return None
        self.scanned = 0
        self.line_end = -1
        limits = self.limits
        first = buffer.find(b"\r\n", 0, end)
        if first < 0:
            first = end
        if first > limits.max_request_line:
            raise Refusal(414, "request line longer than %d bytes" % limits.max_request_line)
        if end - first > limits.max_header_size:
            raise Refusal(
                431, "request header block larger than %d bytes" % limits.max_header_size)
        lines = buffer.count(b"\r\n", 0, end)  # a bare CR or LF fails the line checks
        if lines > limits.max_headers:
            raise Refusal(431, "more than %d request headers" % limits.max_headers)
        match = _REQUEST_LINE(buffer, 0, first)
        if match is None:
            raise _diagnose_request_line(buffer[:first])
        method, target, major, minor = match.groups()
        if major != b"1" or (minor != b"1" and minor != b"0"):
            raise Refusal(400, "unsupported HTTP version %s.%s" % (
                major.decode(), minor.decode()))
        http_version = "1.1" if minor == b"1" else "1.0"
        if target[0] != 0x2F:  # not origin-form ("/...")
            if target == b"*":
                if method != b"OPTIONS":
                    raise Refusal(400, "the asterisk-form target * is only for OPTIONS")
            elif not _absolute_form(target):
                raise Refusal(
                    400, "request target %s is not origin-form, absolute-form (with a valid "
                    "host) or asterisk-form" % _show(target))
        if b"#" in target:  # RFC 9112 3.2: a fragment is never sent in a request target
            raise Refusal(400, "request target %s holds a fragment (#)" % _show(target))
        headers = self._headers(buffer, first + 2, end, lines) if lines else []
        content_length, chunked, keep_alive, expect, upgrade = analyse_headers(
            headers, http_version
        )
        has_body = chunked or bool(content_length)
        head_ = RequestHead(
            method, target, http_version, headers, keep_alive, expect, upgrade, has_body
        )
        if lines and _ODD_NAME(buffer, first, end) is None:
            head_.odd_names = False  # nothing to screen
        self._head_parsed(head_)
        if chunked:
            self.state = _CHUNK_SIZE_LINE
            self.trailer_bytes = self.trailer_count = 0
        elif content_length:
            self.state = _LENGTH
            self.remaining = content_length
        if self.handler.on_head(head_):
            self.state = _STOPPED
            return buffer[end + 4:]
        if not has_body:
            self.handler.on_message_complete()
        return buffer[end + 4:]

    def _partial_head(self, buffer: bytes) -> None:
        """Check the part of an incomplete head not yet checked, then keep it."""
        limits = self.limits
        scanned = self.scanned
        line_end = self.line_end
        if line_end < 0:
            line_end = buffer.find(b"\r\n", scanned - 1 if scanned else 0)
            self.line_end = line_end
        if line_end < 0:
            if len(buffer) > limits.max_request_line + 1:
                raise Refusal(
                    414, "request line longer than %d bytes" % limits.max_request_line)
        elif line_end > limits.max_request_line:
            raise Refusal(414, "request line longer than %d bytes" % limits.max_request_line)
        elif len(buffer) - line_end - 3 > limits.max_header_size:
            raise Refusal(
                431, "request header block larger than %d bytes" % limits.max_header_size)
        reason = _bad_eol(buffer, scanned - 1 if scanned else 0)
        if reason is not None:
            raise Refusal(400, reason)
        self.scanned = len(buffer)
        self.buffer = buffer

    # -- chunked bodies

    def _chunk_size(self, buffer: bytes) -> bytes | None:
        end = buffer.find(b"\r\n", 0, _MAX_CHUNK_LINE + 2)
        if end < 0:
            # no CRLF here, so any LF, or a CR before the last byte, is a bare one
            if len(buffer) > _MAX_CHUNK_LINE or b"\n" in buffer or b"\r" in buffer[:-1]:
                raise Refusal(400, "invalid chunk size line %s" % _show(buffer))
            self.buffer = buffer
            return None
        match = _CHUNK_SIZE(buffer, 0, end)
        if match is None:
            raise Refusal(400, "invalid chunk size line %s" % _show(buffer[:end]))
        digits = match.group(1)
        if len(digits) > _MAX_CHUNK_DIGITS:
            raise Refusal(
                400, "chunk size %s has more than %d hex digits" % (
                    _show(digits), _MAX_CHUNK_DIGITS))
        size = int(digits, 16)
        if size:
            self.state = _CHUNK_DATA
            self.remaining = size
        else:
            self.state = _TRAILERS
            self.scanned = 0
        return buffer[end + 2:]

    def _trailer(self, buffer: bytes) -> bytes | None:
        scanned = self.scanned
        end = buffer.find(b"\r\n", scanned - 1 if scanned else 0)
        limits = self.limits
        if end < 0:
            if self.trailer_bytes + len(buffer) > limits.max_header_size + 1:
                raise Refusal(
                    431, "request trailers larger than %d bytes" % limits.max_header_size)
            start = scanned - 1 if scanned else 0
            if buffer.find(b"\n", start) >= 0 or buffer.find(b"\r", start, len(buffer) - 1) >= 0:
                raise Refusal(400, "bare CR or LF in the request trailers")
            self.scanned = len(buffer)
            self.buffer = buffer
            return None
        self.scanned = 0
        line, buffer = buffer[:end], buffer[end + 2:]
        if not line:
            self.state = _HEAD
            self.handler.on_message_complete()
            return buffer
        self.trailer_bytes += end + 2
        self.trailer_count += 1
        if self.trailer_bytes > limits.max_header_size:
            raise Refusal(
                431, "request trailers larger than %d bytes" % limits.max_header_size)
        if self.trailer_count > limits.max_headers:
            raise Refusal(431, "more than %d request trailers" % limits.max_headers)
        if not _HEADER_LINE(line):
            raise Refusal(400, "in the trailers: " + _diagnose_header(line))
        return buffer


class PythonParser(Parser):
    """The pure-Python parser: each header line checked by one regular expression."""

    def _headers(
        self, buffer: bytes, start: int, end: int, count: int
    ) -> list[tuple[bytes, bytes]]:
        return parse_header_lines(buffer[start:end])


class HttptoolsParser(Parser):
    """llhttp (through httptools) tokenises the header lines; the Python rules decide
    whatever llhttp refuses, so both parsers answer alike."""

    def __init__(self, handler: ParserHandler, limits: Limits) -> None:
        super().__init__(handler, limits)
        self._collected: list[tuple[bytes, bytes]] = []
        # an llhttp parser that sits between messages, ready for reuse
        self._llhttp: httptools.HttpRequestParser | None = None
        self._used: httptools.HttpRequestParser | None = None  # the one that read the last head

    def on_header(self, name: bytes, value: bytes) -> None:  # llhttp callback
        if value[-1:] in (b" ", b"\t"):  # llhttp strips leading whitespace only
            value = value.rstrip(b" \t")
        self._collected.append((name.lower(), value))

    def _headers(
        self, buffer: bytes, start: int, end: int, count: int
    ) -> list[tuple[bytes, bytes]]:
        llhttp = self._llhttp
        self._llhttp = self._used = None
        if llhttp is None:
            llhttp = httptools.HttpRequestParser(self)
        headers = self._collected = []
        try:
            llhttp.feed_data(buffer[:end + 4])  # the head, blank line included
        except httptools.HttpParserUpgrade:
            pass  # the head was read whole; the handler decides about the upgrade
        except httptools.HttpParserError:
            return parse_header_lines(buffer[start:end])
        else:
            self._used = llhttp
        # what llhttp lets through but the rules refuse (0x85, a CR or LF alone), or a
        # header it dropped
        if len(headers) != count or buffer.find(b"\x85", start, end) >= 0 or buffer.count(
            b"\n", start, end
        ) != count - 1 or buffer.count(b"\r", start, end) != count - 1:
            return parse_header_lines(buffer[start:end])
        return headers

    def _head_parsed(self, head: RequestHead) -> None:
        # llhttp is between messages again only after a bodiless, kept-alive request
        used = self._used
        self._used = None
        if used is not None and not head.has_body and head.keep_alive and head.upgrade is None:
            self._llhttp = used


def parser_class(kind: str) -> type[Parser]:
    """The parser ``kind`` names ("auto", "httptools" or "python")."""
    if kind == "python" or (kind == "auto" and httptools is None):
        return PythonParser
    if httptools is None:
        raise RuntimeError("--http-parser httptools needs httptools installed")
    return HttptoolsParser

