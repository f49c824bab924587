"""HTTP/1.1 request parsing: strict, incremental, sans-I/O.

Two parsers with one interface and one set of rules: :class:`PythonParser`, written here,
and :class:`HttptoolsParser`, which lets llhttp (through httptools) do the scanning and adds
the checks llhttp leaves out.  Both call the same handler methods::

    handler.on_head(head: RequestHead) -> bool   # True: stop, the rest is another protocol
    handler.on_body(data: bytes)
    handler.on_message_complete()

and raise :class:`ParseError` (with the HTTP status to answer) for anything malformed or
ambiguous.  The rules are those that keep two parsers from ever splitting one request
differently (request smuggling): CRLF only, no obs-fold, no whitespace before a colon, no
control characters (nor the Unicode line breaks 0x85 and 0x1c-0x1e) in values, exactly one
Host, and a single unambiguous body length.
"""

from __future__ import annotations

import re

try:  # pragma: no cover - depends on the platform
    import httptools
except ImportError:  # pragma: no cover
    httptools = None

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_REQUEST_LINE = re.compile(rb"(%s+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])" % _TCHAR)
_HEADER_LINE = re.compile(rb"(%s+):([\t\x20-\x7e\x80-\x84\x86-\xff]*)" % _TCHAR)
_TOKEN = re.compile(rb"%s+" % _TCHAR)
_VALUE_OK = re.compile(rb"[\t\x20-\x7e\x80-\x84\x86-\xff]*")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_BARE_CR = re.compile(rb"\r(?!\n)")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})(?:;[\t\x20-\x7e]*)?")
_DIGITS = re.compile(rb"[0-9]{1,18}")


class ParseError(Exception):
    """A request the server refuses: ``status`` is the answer, the message says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RequestHead:
    """What the request line and headers say, in wire terms (bytes, lower-case names)."""

    __slots__ = (
        "method", "target", "http_version", "headers", "keep_alive",
        "expect_continue", "upgrade", "has_body",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        expect_continue: bool,
        upgrade: bytes | None,
        has_body: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.upgrade = upgrade
        self.has_body = has_body


def _diagnose_header(line: bytes) -> str:
    """Say precisely what is wrong with a header line that did not match (slow path)."""
    if line[:1] in (b" ", b"\t"):
        return "obs-fold continuation lines are not allowed"
    if b"\r" in line:
        return "bare CR in the request head"
    if b"\n" in line:
        return "bare LF in the request head"
    name, colon, value = line.partition(b":")
    if not colon:
        return "header line without a colon"
    if not name:
        return "empty header name"
    if name[-1:] in (b" ", b"\t"):
        return "whitespace between a header name and its colon"
    if not _TOKEN.fullmatch(name):
        return "invalid character in header name %r" % name[:40]
    for byte in value:
        if byte in (0x00,):
            return "NUL in header value"
        if (byte < 0x20 and byte != 0x09) or byte in (0x7F, 0x85):
            return "forbidden character 0x%02x in header value" % byte
    return "malformed header line"  # pragma: no cover - every failing case is named above


def analyse_headers(
    headers: list[tuple[bytes, bytes]], http_version: str
) -> tuple[int | None, bool, bool, bool, bytes | None]:
    """The framing decisions both parsers share.

    Returns (content_length, chunked, keep_alive, expect_continue, upgrade) or raises
    ParseError for a missing or repeated Host, conflicting lengths and unknown codings.
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
            if not _DIGITS.fullmatch(value):
                raise ParseError(400, "invalid Content-Length %r" % value[:40])
            length = int(value)
            if content_length is not None and content_length != length:
                raise ParseError(400, "differing Content-Length values")
            content_length = length
        elif name == b"transfer-encoding":
            transfer_encodings += 1
            if value.lower() != b"chunked":
                raise ParseError(400, "unsupported Transfer-Encoding %r" % value[:40])
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
        raise ParseError(400, "more than one Transfer-Encoding header")
    if chunked and content_length is not None:
        raise ParseError(400, "both Content-Length and Transfer-Encoding")
    if chunked and http_version == "1.0":
        raise ParseError(400, "Transfer-Encoding in an HTTP/1.0 request")
    if hosts > 1:
        raise ParseError(400, "more than one Host header")
    if hosts == 0 and http_version == "1.1":
        raise ParseError(400, "missing Host header")
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


class Limits:
    """The request-head limits, from the Config."""

    __slots__ = ("max_request_line", "max_header_size", "max_headers")

    def __init__(self, max_request_line: int, max_header_size: int, max_headers: int) -> None:
        self.max_request_line = max_request_line
        self.max_header_size = max_header_size
        self.max_headers = max_headers


_HEAD, _LENGTH, _CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _STOPPED = range(7)


class PythonParser:
    """The pure-Python parser: finds the head with one search, checks each line by regex."""

    def __init__(self, handler, limits: Limits) -> None:
        self.handler = handler
        self.limits = limits
        self.state = _HEAD
        self.buffer = b""
        self.remaining = 0
        self.trailer_bytes = 0

    @property
    def in_head(self) -> bool:
        """True between requests and while a request head is arriving."""
        return self.state == _HEAD

    def feed(self, data: bytes) -> bytes | None:
        """Parse what arrived.  Returns the unparsed rest if a handler asked to stop."""
        buffer = self.buffer + data if self.buffer else data
        self.buffer = b""
        while buffer:
            state = self.state
            if state == _HEAD:
                buffer = self._head(buffer)
                if buffer is None:
                    return None
            elif state == _LENGTH:
                remaining = self.remaining
                if len(buffer) < remaining:
                    self.remaining = remaining - len(buffer)
                    self.handler.on_body(buffer)
                    return None
                chunk, buffer = buffer[:remaining], buffer[remaining:]
                self.state = _HEAD
                self.handler.on_body(chunk)
                self.handler.on_message_complete()
            elif state == _CHUNK_DATA:
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
            elif state == _CHUNK_END:
                if len(buffer) < 2:
                    if buffer != b"\r":
                        raise ParseError(400, "chunk data not followed by CRLF")
                    self.buffer = buffer
                    return None
                if buffer[:2] != b"\r\n":
                    raise ParseError(400, "chunk data not followed by CRLF")
                buffer = buffer[2:]
                self.state = _CHUNK_SIZE_LINE
            elif state == _CHUNK_SIZE_LINE:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > 1024 or _BARE_LF.search(buffer):
                        raise ParseError(400, "invalid chunk size line")
                    self.buffer = buffer
                    return None
                match = _CHUNK_SIZE.fullmatch(buffer, 0, end)
                if match is None:
                    raise ParseError(400, "invalid chunk size %r" % buffer[:min(end, 40)])
                size = int(match.group(1), 16)
                buffer = buffer[end + 2:]
                if size:
                    self.state = _CHUNK_DATA
                    self.remaining = size
                else:
                    self.state = _TRAILERS
                    self.trailer_bytes = 0
            elif state == _TRAILERS:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) + self.trailer_bytes > self.limits.max_header_size:
                        raise ParseError(431, "request trailers too large")
                    if _BARE_LF.search(buffer):
                        raise ParseError(400, "bare LF in the request trailers")
                    self.buffer = buffer
                    return None
                line, buffer = buffer[:end], buffer[end + 2:]
                if not line:
                    self.state = _HEAD
                    self.handler.on_message_complete()
                    continue
                self.trailer_bytes += end + 2
                if self.trailer_bytes > self.limits.max_header_size:
                    raise ParseError(431, "request trailers too large")
                if not _HEADER_LINE.fullmatch(line):
                    raise ParseError(400, _diagnose_header(line))
            else:  # _STOPPED
                return buffer
        return None

    def _head(self, buffer: bytes) -> bytes | None:
        """Parse one request head from the front of ``buffer``; return what follows it."""
        while buffer[:2] == b"\r\n":  # RFC 9112 2.2: ignore empty lines before a request
            buffer = buffer[2:]
        if not buffer:
            return None
        end = buffer.find(b"\r\n\r\n")
        limits = self.limits
        if end < 0:
            line_end = buffer.find(b"\r\n")
            if (line_end < 0 and len(buffer) > limits.max_request_line) or (
                line_end > limits.max_request_line
            ):
                raise ParseError(414, "request line too long")
            if len(buffer) > limits.max_header_size:
                raise ParseError(431, "request header block too large")
            if _BARE_LF.search(buffer):
                raise ParseError(400, "bare LF in the request head")
            if _BARE_CR.search(buffer, 0, len(buffer) - 1):
                raise ParseError(400, "bare CR in the request head")
            self.buffer = buffer
            return None
        if end > limits.max_header_size:
            raise ParseError(431, "request header block too large")
        lines = buffer[:end].split(b"\r\n")
        rest = buffer[end + 4:]
        request_line = lines[0]
        if len(request_line) > limits.max_request_line:
            raise ParseError(414, "request line too long")
        match = _REQUEST_LINE.fullmatch(request_line)
        if match is None:
            if b"\r" in request_line or b"\n" in request_line:
                raise ParseError(400, "bare CR or LF in the request line")
            if not _TOKEN.match(request_line) or request_line[:1] == b" ":
                raise ParseError(400, "invalid method in the request line")
            raise ParseError(400, "malformed request line")
        method, target, major, minor = match.groups()
        if major != b"1" or minor not in (b"0", b"1"):
            raise ParseError(400, "unsupported HTTP version %s.%s" % (
                major.decode(), minor.decode()))
        http_version = "1.1" if minor == b"1" else "1.0"
        if len(lines) - 1 > limits.max_headers:
            raise ParseError(431, "too many request headers")
        headers = []
        append = headers.append
        header_line = _HEADER_LINE.fullmatch
        for line in lines[1:]:
            m = header_line(line)
            if m is None:
                raise ParseError(400, _diagnose_header(line))
            append((m.group(1).lower(), m.group(2).strip(b" \t")))
        content_length, chunked, keep_alive, expect, upgrade = analyse_headers(
            headers, http_version
        )
        has_body = chunked or bool(content_length)
        head = RequestHead(
            method, target, http_version, headers, keep_alive, expect, upgrade, has_body
        )
        if chunked:
            self.state = _CHUNK_SIZE_LINE
        elif content_length:
            self.state = _LENGTH
            self.remaining = content_length
        if self.handler.on_head(head):
            self.state = _STOPPED
            return rest
        if not has_body:
            self.handler.on_message_complete()
        return rest


class HttptoolsParser:
    """llhttp through httptools, held to the same rules as :class:`PythonParser`."""

    def __init__(self, handler, limits: Limits) -> None:
        self.handler = handler
        self.limits = limits
        self.parser = httptools.HttpRequestParser(self)
        self._reset_head()
        self.in_head = True
        self.stopped = False
        self.message_open = False

    def _reset_head(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0

    # -- llhttp callbacks

    def on_message_begin(self) -> None:
        self.in_head = True
        self.message_open = True

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_request_line:
            raise ParseError(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not _VALUE_OK.fullmatch(value):
            raise ParseError(400, _diagnose_header(name + b":" + value))
        headers = self.headers
        headers.append((name.lower(), value))
        if len(headers) > self.limits.max_headers:
            raise ParseError(431, "too many request headers")

    def on_headers_complete(self) -> None:
        parser = self.parser
        http_version = parser.get_http_version()
        if http_version not in ("1.1", "1.0"):
            raise ParseError(400, "unsupported HTTP version %s" % http_version)
        headers = self.headers
        content_length, chunked, keep_alive, expect, upgrade = analyse_headers(
            headers, http_version
        )
        head = RequestHead(
            parser.get_method(), self.url, http_version, headers, keep_alive, expect,
            upgrade, chunked or bool(content_length),
        )
        self._reset_head()
        self.in_head = False
        if self.handler.on_head(head):
            self.stopped = True

    def on_body(self, body: bytes) -> None:
        self.handler.on_body(body)

    def on_message_complete(self) -> None:
        self.message_open = False
        self.in_head = True
        if not self.stopped:
            self.handler.on_message_complete()

    # -- feeding

    def feed(self, data: bytes) -> bytes | None:
        if self.stopped:
            return data
        if self.in_head:
            self.head_bytes += len(data)
            if self.head_bytes > self.limits.max_header_size + self.limits.max_request_line:
                self._check_head_limits(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            offset = upgrade.args[0]
            if self.stopped:
                return data[offset:]
            # an Upgrade the handler did not take: go on parsing HTTP/1.1 after it
            self.parser = httptools.HttpRequestParser(self)
            self.in_head = True
            return self.feed(data[offset:]) if offset < len(data) else None
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, ParseError):
                raise cause from None
            raise
        except httptools.HttpParserInvalidMethodError:
            raise ParseError(400, "invalid method in the request line") from None
        except httptools.HttpParserInvalidURLError:
            raise ParseError(400, "invalid request target") from None
        except httptools.HttpParserError as exc:
            raise ParseError(400, _llhttp_reason(str(exc))) from None
        if self.stopped:  # pragma: no cover - llhttp raises HttpParserUpgrade first
            return b""
        return None

    def _check_head_limits(self, data: bytes) -> None:
        if len(self.url) >= self.limits.max_request_line or (
            not self.headers and b"\r\n" not in data and not self.url
        ):
            raise ParseError(414, "request line too long")
        raise ParseError(431, "request header block too large")


def _llhttp_reason(message: str) -> str:
    """llhttp's error text, turned into the words the Python parser uses where they differ."""
    lowered = message.lower()
    if "lf" in lowered and "cr" in lowered:
        return "bare CR or LF in the request head"
    if "content-length" in lowered and "transfer-encoding" in lowered:
        return "both Content-Length and Transfer-Encoding"
    if "content-length" in lowered:
        return "invalid Content-Length"
    if "chunk" in lowered:
        return "invalid chunk size"
    if "version" in lowered:
        return "unsupported HTTP version"
    if "header" in lowered:
        return "malformed header: " + message
    return message


def make_parser(kind: str, handler, limits: Limits):
    """The parser ``kind`` names ("auto", "httptools" or "python")."""
    if kind == "python" or (kind == "auto" and httptools is None):
        return PythonParser(handler, limits)
    if httptools is None:
        raise RuntimeError("--http-parser httptools needs httptools installed")
    return HttptoolsParser(handler, limits)
