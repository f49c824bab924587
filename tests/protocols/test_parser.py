"""Both HTTP/1.1 parsers, driven directly: the same events and the same refusals, however the
bytes are split into packets."""

from __future__ import annotations

import random

import pytest

from django_daphne.core.errors import Refusal
from django_daphne.protocols.http1_parser import HttptoolsParser, Limits, PythonParser

PARSERS = [pytest.param(HttptoolsParser, id="httptools"), pytest.param(PythonParser, id="python")]
DEFAULT = Limits(8 * 1024, 64 * 1024, 100)
H = b"GET /x HTTP/1.1\r\nHost: a\r\n"  # a request line and Host, headers may follow
CHUNKED = H + b"Transfer-Encoding: chunked\r\n\r\n"


class Recorder:
    """A handler that writes down what the parser reports."""

    def __init__(self, take_upgrade: bool = False) -> None:
        self.events: list[tuple] = []
        self.take_upgrade = take_upgrade

    def on_head(self, head) -> bool:
        self.events.append((
            "head", head.method, head.target, head.http_version, head.headers,
            head.keep_alive, head.expect_continue, head.upgrade, head.has_body,
        ))
        return self.take_upgrade and head.upgrade is not None

    def on_body(self, data: bytes) -> None:
        if not data:
            return
        if self.events and self.events[-1][0] == "body":  # packets split bodies anywhere
            self.events[-1] = ("body", self.events[-1][1] + data)
        else:
            self.events.append(("body", data))

    def on_message_complete(self) -> None:
        self.events.append(("complete",))


def run(parser_class, pieces, limits=DEFAULT, take_upgrade=False):
    """Feed ``pieces`` in turn; return (events, (status, reason) or None, rest)."""
    handler = Recorder(take_upgrade)
    parser = parser_class(handler, limits)
    rest = None
    try:
        for piece in pieces:
            rest = parser.feed(piece)
            if rest is not None:
                break
    except Refusal as error:
        return handler.events, (error.status, error.reason), rest
    return handler.events, None, rest


def splits(data: bytes):
    """The ways of sending ``data`` that matter: whole, byte by byte, and in two at
    every position."""
    yield [data]
    yield [data[i:i + 1] for i in range(len(data))]
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]


# (id, request bytes, status, words the reason must contain)
BAD = [
    # the request line
    ("no-version", b"GET /x\r\nHost: a\r\n\r\n", 400, "malformed request line"),
    ("two-spaces", b"GET  /x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request line"),
    ("trailing-space", b"GET /x HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "malformed request line"),
    ("tab-separator", b"GET\t/x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid method token"),
    ("leading-space", b" GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid method token"),
    ("method-paren", b"G(T /x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid method token"),
    ("method-nul", b"G\x00T /x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid method token"),
    ("method-utf8", b"G\xc3\x89T /x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid method token"),
    ("http-2.0", b"GET /x HTTP/2.0\r\nHost: a\r\n\r\n", 400, "unsupported HTTP version 2.0"),
    ("http-0.9", b"GET /x HTTP/0.9\r\nHost: a\r\n\r\n", 400, "unsupported HTTP version 0.9"),
    ("http-1.2", b"GET /x HTTP/1.2\r\nHost: a\r\n\r\n", 400, "unsupported HTTP version 1.2"),
    ("http-lower", b"GET /x http/1.1\r\nHost: a\r\n\r\n", 400, "malformed HTTP version"),
    ("http-11.1", b"GET /x HTTP/11.1\r\nHost: a\r\n\r\n", 400, "malformed HTTP version"),
    ("http-1.", b"GET /x HTTP/1.\r\nHost: a\r\n\r\n", 400, "malformed HTTP version"),
    ("target-ctl", b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid character in the"),
    ("target-8bit", b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", 400, "invalid character in the"),
    ("target-relative", b"GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "not origin-form"),
    ("target-authority", b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "not origin-form"),
    ("target-scheme", b"GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "not origin-form"),
    ("target-no-host", b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "not origin-form"),
    # absolute-form: the authority is an RFC 3986 host and port, or the request is refused
    ("target-open-bracket", b"GET http://[::1/x HTTP/1.1\r\nHost: a\r\n\r\n", 400,
     "with a valid host"),
    ("target-bad-ipv6", b"GET http://[1::2::3]/x HTTP/1.1\r\nHost: a\r\n\r\n", 400,
     "with a valid host"),
    ("target-not-ipv6", b"GET http://[example]/x HTTP/1.1\r\nHost: a\r\n\r\n", 400,
     "with a valid host"),
    ("target-userinfo", b"GET http://user@a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400,
     "with a valid host"),
    ("target-bad-port", b"GET http://a:8o/x HTTP/1.1\r\nHost: a\r\n\r\n", 400,
     "with a valid host"),
    ("target-two-ports", b"GET http://a:1:2/x HTTP/1.1\r\nHost: a\r\n\r\n", 400,
     "with a valid host"),
    ("target-bad-escape", b"GET http://a%zz/x HTTP/1.1\r\nHost: a\r\n\r\n", 400,
     "with a valid host"),
    ("target-backslash", b"GET http://a\\b/x HTTP/1.1\r\nHost: a\r\n\r\n", 400,
     "with a valid host"),
    # not HTTP/1.x at all (h2spec's invalid preface on a cleartext port): no answer
    ("not-http", b"INVALID CONNECTION PREFACE\r\n\r\n", 0, "not an HTTP/1.x request line"),
    ("target-fragment", b"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400, "holds a fragment"),
    ("asterisk-get", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, "only for OPTIONS"),
    # line ends
    ("bare-cr-header", H + b"X: a\rY: b\r\n\r\n", 400, "bare CR"),
    ("bare-cr-request-line", b"GET /x\r HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare CR"),
    ("bare-cr-end", H + b"X: a\r\r\n\r\n", 400, "bare CR"),
    ("bare-lf-all", b"GET /x HTTP/1.1\nHost: a\n\n", 400, "bare LF"),
    ("bare-lf-one", H + b"X: a\nY: b\r\n\r\n", 400, "bare LF"),
    ("bare-lf-end", H + b"X: a\r\n\n", 400, "bare LF"),
    ("bare-lf-leading", b"\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare LF"),
    # header names
    ("space-before-colon", H + b"X : a\r\n\r\n", 400, "whitespace between the header name"),
    ("tab-before-colon", H + b"X\t: a\r\n\r\n", 400, "whitespace between the header name"),
    ("cl-space-before-colon", H + b"Content-Length : 3\r\n\r\nabc", 400, "whitespace between"),
    ("name-paren", H + b"X(y: a\r\n\r\n", 400, "invalid character in the header name"),
    ("name-at", H + b"X@y: a\r\n\r\n", 400, "invalid character in the header name"),
    ("name-8bit", H + b"X\xe9: a\r\n\r\n", 400, "invalid character in the header name"),
    ("name-nul", H + b"X\x00: a\r\n\r\n", 400, "invalid character in the header name"),
    ("name-empty", H + b": a\r\n\r\n", 400, "empty header name"),
    ("no-colon", H + b"Xa\r\n\r\n", 400, "without a colon"),
    # header values: control characters, and those some decoders take for line breaks
    ("value-nul", H + b"X: a\x00b\r\n\r\n", 400, "NUL in the value of header 'X'"),
    ("value-del", H + b"X: a\x7fb\r\n\r\n", 400, "forbidden character 0x7f"),
    *[
        (f"value-{byte:02x}", H + b"X: a" + bytes([byte]) + b"b\r\n\r\n", 400,
         f"forbidden character 0x{byte:02x}")
        for byte in (0x01, 0x08, 0x0B, 0x0C, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F, 0x85)
    ],
    ("value-0x85-host", b"GET /x HTTP/1.1\r\nHost: a\x85b\r\n\r\n", 400, "0x85"),
    # obs-fold
    ("obs-fold-space", H + b"X: a\r\n b\r\n\r\n", 400, "obs-fold"),
    ("obs-fold-tab", H + b"X: a\r\n\tb\r\n\r\n", 400, "obs-fold"),
    ("space-first-header", b"GET /x HTTP/1.1\r\n Host: a\r\n\r\n", 400, "obs-fold"),
    # the body length
    ("cl-and-te", H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     400, "both Content-Length and Transfer-Encoding"),
    ("te-and-cl", H + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
     400, "both Content-Length and Transfer-Encoding"),
    ("cl-differ", H + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400,
     "differing Content-Length"),
    ("cl-list", H + b"Content-Length: 3, 3\r\n\r\nabc", 400, "invalid Content-Length"),
    *[
        (f"cl-{value.decode()}", H + b"Content-Length: " + value + b"\r\n\r\nabcdefgh", 400,
         "invalid Content-Length")
        for value in (b"+5", b"-1", b"0x10", b"1,1", b"5 5", b"1.0", b"five", b"",
                      b"1234567890123456789", b"99999999999999999999999")
    ],
    ("te-gzip-chunked", H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400,
     "unsupported Transfer-Encoding"),
    ("te-chunked-chunked", H + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400,
     "unsupported Transfer-Encoding"),
    ("te-xchunked", H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400,
     "unsupported Transfer-Encoding"),
    ("te-chunkedx", H + b"Transfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n", 400,
     "unsupported Transfer-Encoding"),
    ("te-identity", H + b"Transfer-Encoding: identity\r\n\r\n", 400,
     "unsupported Transfer-Encoding"),
    ("te-empty", H + b"Transfer-Encoding: \r\n\r\n", 400, "unsupported Transfer-Encoding"),
    ("te-twice", H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", 400, "more than one Transfer-Encoding"),
    ("te-http-1.0", b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
     "Transfer-Encoding in an HTTP/1.0 request"),
    # chunk sizes (the app has seen the head by then: the body breaks off)
    ("chunk-not-hex", CHUNKED + b"zz\r\n", 400, "invalid chunk size"),
    ("chunk-negative", CHUNKED + b"-1\r\n", 400, "invalid chunk size"),
    ("chunk-0x", CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk size"),
    ("chunk-empty-size", CHUNKED + b"\r\n", 400, "invalid chunk size"),
    ("chunk-space", CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n", 400, "invalid chunk size"),
    ("chunk-16-digits", CHUNKED + b"1000000000000000\r\n", 400, "more than 15 hex digits"),
    ("chunk-16-zeros", CHUNKED + b"0000000000000005\r\nhello\r\n0\r\n\r\n", 400,
     "more than 15 hex digits"),
    ("chunk-overflow", CHUNKED + b"fffffffffffffffffffff\r\n", 400, "more than 15 hex digits"),
    ("chunk-no-crlf", CHUNKED + b"3\r\nabcd\r\n0\r\n\r\n", 400, "chunk data not followed by CRLF"),
    ("chunk-lf-only", CHUNKED + b"3\r\nabc\n0\r\n\r\n", 400, "chunk data not followed by CRLF"),
    ("chunk-size-lf", CHUNKED + b"3\nabc\r\n0\r\n\r\n", 400, "invalid chunk size"),
    ("chunk-ext-ctl", CHUNKED + b"3;a=\x00\r\nabc\r\n0\r\n\r\n", 400, "invalid chunk size"),
    ("trailer-space-colon", CHUNKED + b"0\r\nX : a\r\n\r\n", 400, "in the trailers"),
    ("trailer-nul", CHUNKED + b"0\r\nX: a\x00\r\n\r\n", 400, "in the trailers"),
    ("trailer-fold", CHUNKED + b"0\r\nX: a\r\n b\r\n\r\n", 400, "in the trailers"),
    ("trailer-bare-lf", CHUNKED + b"0\r\nX: a\nY: b\r\n\r\n", 400, "bare"),
    # Host
    ("no-host", b"GET /x HTTP/1.1\r\n\r\n", 400, "missing Host header"),
    ("no-host-other-headers", b"GET /x HTTP/1.1\r\nX: a\r\n\r\n", 400, "missing Host"),
    ("two-hosts", H + b"Host: b\r\n\r\n", 400, "more than one Host header"),
    ("two-hosts-same", H + b"host: a\r\n\r\n", 400, "more than one Host header"),
    ("two-hosts-1.0", b"GET /x HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400,
     "more than one Host header"),
]
BAD_IDS = [case[0] for case in BAD]


@pytest.mark.parametrize("parser_class", PARSERS)
@pytest.mark.parametrize("name,data,status,reason", BAD, ids=BAD_IDS)
def test_bad_input_refused_however_split(parser_class, name, data, status, reason):
    for pieces in splits(data):
        events, error, _ = run(parser_class, pieces)
        assert error is not None, (pieces, events)
        assert error[0] == status and reason in error[1], (pieces, error)
        assert ("complete",) not in events, (pieces, events)
        if not name.startswith(("chunk", "trailer")):
            # refused before the handler saw anything: no application would start
            assert events == [], (pieces, events)


@pytest.mark.parametrize("name,data,status,reason", BAD, ids=BAD_IDS)
def test_both_parsers_refuse_with_the_same_words(name, data, status, reason):
    for pieces in splits(data):
        assert run(HttptoolsParser, pieces) == run(PythonParser, pieces), pieces


def head(method=b"GET", target=b"/x", version="1.1", headers=((b"host", b"a"),),
         keep_alive=True, expect=False, upgrade=None, has_body=False):
    return ("head", method, target, version, list(headers), keep_alive, expect, upgrade,
            has_body)


# (id, request bytes, the events both parsers must report)
GOOD = [
    ("simple", H + b"\r\n", [head(), ("complete",)]),
    ("http-1.0-no-host", b"GET /x HTTP/1.0\r\n\r\n",
     [head(version="1.0", headers=(), keep_alive=False), ("complete",)]),
    ("http-1.0-keep-alive", b"GET /x HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
     [head(version="1.0", headers=[(b"connection", b"Keep-Alive")]), ("complete",)]),
    ("connection-close", H + b"Connection: close\r\n\r\n",
     [head(headers=[(b"host", b"a"), (b"connection", b"close")], keep_alive=False),
      ("complete",)]),
    ("absolute-form", b"GET http://a/x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n",
     [head(target=b"http://a/x?y=1"), ("complete",)]),
    ("absolute-form-https-upper", b"GET HTTPS://a HTTP/1.1\r\nHost: a\r\n\r\n",
     [head(target=b"HTTPS://a"), ("complete",)]),
    ("absolute-form-ipv6-port", b"GET http://[::1]:8000/x HTTP/1.1\r\nHost: a\r\n\r\n",
     [head(target=b"http://[::1]:8000/x"), ("complete",)]),
    ("absolute-form-ipv4-query", b"GET http://127.0.0.1?q HTTP/1.1\r\nHost: a\r\n\r\n",
     [head(target=b"http://127.0.0.1?q"), ("complete",)]),
    ("absolute-form-escaped-host", b"GET http://ex%41mple.com:/ HTTP/1.1\r\nHost: a\r\n\r\n",
     [head(target=b"http://ex%41mple.com:/"), ("complete",)]),
    ("options-asterisk", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
     [head(method=b"OPTIONS", target=b"*"), ("complete",)]),
    ("extension-method", b"FROB-2 /x HTTP/1.1\r\nHost: a\r\n\r\n",
     [head(method=b"FROB-2"), ("complete",)]),
    ("leading-empty-lines", b"\r\n\r\n" + H + b"\r\n", [head(), ("complete",)]),
    ("content-length-0", H + b"Content-Length: 0\r\n\r\n",
     [head(headers=[(b"host", b"a"), (b"content-length", b"0")]), ("complete",)]),
    ("content-length", H + b"Content-Length: 5\r\n\r\nhello",
     [head(headers=[(b"host", b"a"), (b"content-length", b"5")], has_body=True),
      ("body", b"hello"), ("complete",)]),
    ("content-length-leading-zeros", H + b"Content-Length: 005\r\n\r\nhello",
     [head(headers=[(b"host", b"a"), (b"content-length", b"005")], has_body=True),
      ("body", b"hello"), ("complete",)]),
    ("content-length-whitespace", H + b"Content-Length: \t 5 \t\r\n\r\nhello",
     [head(headers=[(b"host", b"a"), (b"content-length", b"5")], has_body=True),
      ("body", b"hello"), ("complete",)]),
    ("content-length-twice-same", H + b"Content-Length: 5\r\ncontent-length: 5\r\n\r\nhello",
     [head(headers=[(b"host", b"a"), (b"content-length", b"5"), (b"content-length", b"5")],
           has_body=True), ("body", b"hello"), ("complete",)]),
    ("chunked", CHUNKED + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
     [head(headers=[(b"host", b"a"), (b"transfer-encoding", b"chunked")], has_body=True),
      ("body", b"hello world"), ("complete",)]),
    ("chunked-extensions-trailers",
     CHUNKED + b"5;name=value\r\nhello\r\nA;a;b=\"q s\"\r\n0123456789\r\n0;last\r\n"
     b"Trailer-One: 1\r\ntrailer-two: \xe9\r\n\r\n",
     [head(headers=[(b"host", b"a"), (b"transfer-encoding", b"chunked")], has_body=True),
      ("body", b"hello0123456789"), ("complete",)]),
    ("chunked-upper-case", H + b"Transfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
     [head(headers=[(b"host", b"a"), (b"transfer-encoding", b"Chunked")], has_body=True),
      ("body", b"0123456789"), ("complete",)]),
    ("chunk-15-digits", CHUNKED + b"000000000000003\r\nabc\r\n0\r\n\r\n",
     [head(headers=[(b"host", b"a"), (b"transfer-encoding", b"chunked")], has_body=True),
      ("body", b"abc"), ("complete",)]),
    ("obs-text", H + b"X: caf\xe9 \x80\x84\x86\xff\r\n\r\n",
     [head(headers=[(b"host", b"a"), (b"x", b"caf\xe9 \x80\x84\x86\xff")]), ("complete",)]),
    ("value-whitespace", H + b"X:  \t a \t b \t \r\nY:\r\nZ:   \r\n\r\n",
     [head(headers=[(b"host", b"a"), (b"x", b"a \t b"), (b"y", b""), (b"z", b"")]),
      ("complete",)]),
    ("names-lowered-order-kept", b"GET /x HTTP/1.1\r\nX-B: 1\r\nHOST: a\r\nx-b: 2\r\n\r\n",
     [head(headers=[(b"x-b", b"1"), (b"host", b"a"), (b"x-b", b"2")]), ("complete",)]),
    ("expect-continue", H + b"Expect: 100-Continue\r\nContent-Length: 2\r\n\r\nok",
     [head(headers=[(b"host", b"a"), (b"expect", b"100-Continue"), (b"content-length", b"2")],
           expect=True, has_body=True), ("body", b"ok"), ("complete",)]),
    ("upgrade-declined-then-next",
     H + b"Connection: Upgrade\r\nUpgrade: foo\r\n\r\n" + H + b"\r\n",
     [head(headers=[(b"host", b"a"), (b"connection", b"Upgrade"), (b"upgrade", b"foo")],
           upgrade=b"foo"), ("complete",), head(), ("complete",)]),
    ("upgrade-declined-with-body",
     H + b"Connection: upgrade\r\nUpgrade: foo\r\nContent-Length: 3\r\n\r\nabc" + H + b"\r\n",
     [head(headers=[(b"host", b"a"), (b"connection", b"upgrade"), (b"upgrade", b"foo"),
                    (b"content-length", b"3")], upgrade=b"foo", has_body=True),
      ("body", b"abc"), ("complete",), head(), ("complete",)]),
    ("upgrade-header-without-connection", H + b"Upgrade: foo\r\n\r\n",
     [head(headers=[(b"host", b"a"), (b"upgrade", b"foo")]), ("complete",)]),
    ("pipelined-mixed",
     H + b"\r\n" + H + b"Content-Length: 2\r\n\r\nab" + CHUNKED + b"1\r\nc\r\n0\r\n\r\n"
     + b"GET /y HTTP/1.0\r\n\r\n",
     [head(), ("complete",),
      head(headers=[(b"host", b"a"), (b"content-length", b"2")], has_body=True),
      ("body", b"ab"), ("complete",),
      head(headers=[(b"host", b"a"), (b"transfer-encoding", b"chunked")], has_body=True),
      ("body", b"c"), ("complete",),
      head(target=b"/y", version="1.0", headers=(), keep_alive=False), ("complete",)]),
    ("trailers-not-carried-over", CHUNKED + b"0\r\nX-Trailer: t\r\n\r\n" + H + b"\r\n",
     [head(headers=[(b"host", b"a"), (b"transfer-encoding", b"chunked")], has_body=True),
      ("complete",), head(), ("complete",)]),
]


@pytest.mark.parametrize("parser_class", PARSERS)
@pytest.mark.parametrize("name,data,expected", GOOD, ids=[case[0] for case in GOOD])
def test_valid_requests_parse_the_same_however_split(parser_class, name, data, expected):
    for pieces in splits(data):
        events, error, rest = run(parser_class, pieces)
        assert error is None, (pieces, error)
        assert events == expected, pieces
        assert rest is None


@pytest.mark.parametrize("parser_class", PARSERS)
def test_taken_upgrade_stops_parsing_and_returns_the_rest(parser_class):
    head_bytes = H + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    data = head_bytes + b"\x81\x05hello"
    for pieces in splits(data):
        handler = Recorder(take_upgrade=True)
        parser = parser_class(handler, DEFAULT)
        fed = 0
        for piece in pieces:
            fed += len(piece)
            rest = parser.feed(piece)
            if rest is not None:
                break
        assert [e[0] for e in handler.events] == ["head"], pieces
        assert handler.events[0][7] == b"websocket"
        # the bytes after the head that were fed come back for the other protocol
        assert rest == data[len(head_bytes):fed], pieces
        assert parser.feed(b"more") == b"more"


# -- limits

SMALL = Limits(64, 256, 5)


def request_line(length: int) -> bytes:
    """A request line of exactly ``length`` bytes."""
    line = b"GET /" + b"a" * (length - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
    assert len(line) == length
    return line


def header_block(size: int, count: int = 1) -> bytes:
    """``count`` header lines (Host first) of exactly ``size`` bytes with their CRLFs."""
    lines = [b"Host: a\r\n"] + [b"X%d: v\r\n" % i for i in range(1, count)]
    used = sum(map(len, lines))
    lines[-1] = lines[-1][:-2] + b"v" * (size - used) + b"\r\n"
    block = b"".join(lines)
    assert len(block) == size and block.count(b"\r\n") == count
    return block


@pytest.mark.parametrize("parser_class", PARSERS)
@pytest.mark.parametrize("limits", [DEFAULT, SMALL], ids=["default", "small"])
def test_request_line_limit_gives_414(parser_class, limits):
    at_limit = request_line(limits.max_request_line) + b"\r\nHost: a\r\n\r\n"
    events, error, _ = run(parser_class, [at_limit], limits)
    assert error is None and events[0][0] == "head"
    too_long = request_line(limits.max_request_line + 1) + b"\r\nHost: a\r\n\r\n"
    for pieces in ([too_long], [too_long[:limits.max_request_line + 3]]):
        events, error, _ = run(parser_class, pieces, limits)
        assert error is not None and error[0] == 414, pieces
        assert "request line longer than %d bytes" % limits.max_request_line in error[1]
        assert events == []
    # a line that never ends is refused once it is too long, not when it ends
    events, error, _ = run(parser_class, [b"GET /" + b"a" * limits.max_request_line], limits)
    assert error is not None and error[0] == 414


@pytest.mark.parametrize("parser_class", PARSERS)
@pytest.mark.parametrize("limits", [DEFAULT, SMALL], ids=["default", "small"])
def test_header_block_limit_gives_431(parser_class, limits):
    size = limits.max_header_size
    for pieces in splits(b"GET /x HTTP/1.1\r\n" + header_block(size) + b"\r\n") if (
        limits is SMALL
    ) else [[b"GET /x HTTP/1.1\r\n" + header_block(size) + b"\r\n"]]:
        events, error, _ = run(parser_class, pieces, limits)
        assert error is None and events[0][0] == "head", pieces
    too_big = b"GET /x HTTP/1.1\r\n" + header_block(size + 1) + b"\r\n"
    for pieces in ([too_big], [too_big[:len(too_big) - 1]], [too_big + b"more"]):
        events, error, _ = run(parser_class, pieces, limits)
        assert error is not None and error[0] == 431, pieces
        assert "request header block larger than %d bytes" % size in error[1]
        assert events == []


@pytest.mark.parametrize("parser_class", PARSERS)
@pytest.mark.parametrize("limits", [DEFAULT, SMALL], ids=["default", "small"])
def test_header_count_limit_gives_431(parser_class, limits):
    count = limits.max_headers
    events, error, _ = run(
        parser_class, [b"GET /x HTTP/1.1\r\n" + header_block(count * 8, count) + b"\r\n"],
        limits)
    assert error is None and len(events[0][4]) == count
    events, error, _ = run(
        parser_class,
        [b"GET /x HTTP/1.1\r\n" + header_block((count + 1) * 8, count + 1) + b"\r\n"], limits)
    assert error == (431, "more than %d request headers" % count)
    assert events == []


@pytest.mark.parametrize("parser_class", PARSERS)
def test_trailers_are_held_to_the_header_limits(parser_class):
    too_many = CHUNKED + b"0\r\n" + b"".join(b"T%d: v\r\n" % i for i in range(6)) + b"\r\n"
    events, error, _ = run(parser_class, [too_many], SMALL)
    assert error == (431, "more than 5 request trailers")
    too_big = CHUNKED + b"0\r\nT: " + b"v" * 300 + b"\r\n\r\n"
    for pieces in ([too_big], [too_big[:-10]]):
        events, error, _ = run(parser_class, pieces, SMALL)
        assert error is not None and error[0] == 431 and "trailers larger" in error[1]
        assert ("complete",) not in events


@pytest.mark.parametrize("parser_class", PARSERS)
def test_trickled_head_is_not_rescanned_from_the_start(parser_class):
    # a 60 KiB head sent byte by byte: each packet is checked once, so this stays linear
    # (rescanning the whole buffer with the regular expressions on every byte would take
    # minutes and hit the test timeout)
    data = b"GET /x HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 60000 + b"\r\n\r\n"
    events, error, _ = run(parser_class, [data[i:i + 1] for i in range(len(data))])
    assert error is None and events[-1] == ("complete",)


@pytest.mark.parametrize("parser_class", PARSERS)
def test_parse_error_names_status_and_reason(parser_class):
    with pytest.raises(Refusal) as caught:
        parser_class(Recorder(), DEFAULT).feed(b"GET /x HTTP/1.1\r\n\r\n")
    assert caught.value.status == 400
    assert caught.value.reason == str(caught.value) == "missing Host header in an HTTP/1.1 request"


def test_parsers_agree_on_mangled_requests():
    """Seeded mutations of every request above (bytes dropped, inserted, replaced, pieces
    of syntax spliced in): both parsers must report the same events and the same refusal,
    and a request split in two must be accepted or refused as it is whole."""
    rng = random.Random(20261125)
    seeds = [case[1] for case in GOOD] + [case[1] for case in BAD]
    splices = [b"\r\n", b"\r\n\r\n", b"\r", b"\n", b" ", b"\t", b":", b";", b"\x00", b"\x85",
               b"\xff", b"0", b"f", b"-", b"+", b"Host: b\r\n", b"Content-Length: 3\r\n",
               b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n", b"5\r\nhello\r\n",
               b"HTTP/1.0", b"Connection: close\r\n", b"Connection: upgrade\r\nUpgrade: x\r\n"]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) + 1)
            roll = rng.random()
            if roll < 0.3 and at < len(data):
                del data[at]
            elif roll < 0.5 and at < len(data):
                data[at] = rng.randrange(256)
            else:
                data[at:at] = rng.choice(splices)
        data = bytes(data)
        limits = SMALL if rng.random() < 0.2 else DEFAULT
        cut = rng.randrange(len(data) + 1)
        whole = run(PythonParser, [data], limits)
        assert run(HttptoolsParser, [data], limits) == whole, data
        split = run(PythonParser, [data[:cut], data[cut:]], limits)
        assert run(HttptoolsParser, [data[:cut], data[cut:]], limits) == split, (data, cut)
        # with two faults in one head, which is named first may depend on the split
        assert (whole[1] is None) == (split[1] is None), (data, cut, whole, split)
        if whole[1] is None:
            assert whole[0] == split[0], (data, cut)


def test_llhttp_reads_ordinary_heads_itself(monkeypatch):
    """The httptools parser falls back on the Python rules only for heads llhttp refuses:
    ordinary traffic (keep-alive, bodies, pipelining, a declined upgrade) stays on llhttp."""
    from django_daphne.protocols import http1_parser

    fallbacks = []
    python_rules = http1_parser.parse_header_lines

    def counting(block):
        fallbacks.append(block)
        return python_rules(block)

    monkeypatch.setattr(http1_parser, "parse_header_lines", counting)
    ordinary = (H + b"\r\n" + H + b"\r\n" + H + b"Content-Length: 2\r\n\r\nab" + CHUNKED
                + b"1\r\nc\r\n0\r\nT: t\r\n\r\n" + H + b"Connection: Upgrade\r\nUpgrade: x\r\n\r\n"
                + H + b"\r\n" + b"GET /y HTTP/1.0\r\n\r\n")
    for pieces in ([ordinary], [ordinary[i:i + 7] for i in range(0, len(ordinary), 7)]):
        events, error, _ = run(HttptoolsParser, pieces)
        assert error is None and events.count(("complete",)) == 7
        assert fallbacks == []
    # llhttp refuses a repeated Content-Length; the Python rules accept an identical one
    twice = H + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nz"
    events, error, _ = run(HttptoolsParser, [twice])
    assert error is None and ("body", b"z") in events
    assert fallbacks == [b"Host: a\r\nContent-Length: 1\r\nContent-Length: 1"]
