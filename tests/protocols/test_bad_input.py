"""Bad input over raw sockets against the real server, on every transport (plain TCP under
both parsers, TLS and a UNIX socket: conftest.SERVER_VARIANTS): every refusal is a 4xx with
a reason and ``Connection: close``, no application instance starts for it, the connection
ends, and the server goes on serving."""

from __future__ import annotations

import itertools
import json
import socket
import ssl
import time
from http import HTTPStatus

import pytest

from tests.conftest import SERVER_VARIANTS, ServerProcess, read_response, start_variant

_ids = itertools.count()
# a non-blocking send the socket has no room for: BlockingIOError, or on TLS the want-write
# (repeated with the same bytes, as OpenSSL requires)
NO_ROOM = (BlockingIOError, ssl.SSLWantWriteError)


@pytest.fixture(scope="module")
def server(transport_server):
    """Each test here runs on every conftest.SERVER_VARIANTS entry."""
    return transport_server


def tag(name: str) -> str:
    """A request id no other test uses, to look for in what /record saw."""
    return "%s-%d" % (name, next(_ids))


def connect(server: ServerProcess, timeout: float = 5.0) -> socket.socket:
    """A new connection to ``server``, whatever its binding (TLS: handshake done)."""
    return server.connect(timeout)


def read_to_close(sock: socket.socket, received: bytes = b"") -> tuple[bytes, bool]:
    """Read until the server closes. Returns (bytes, True) on close, (bytes, False) if the
    socket timeout passed first.  A FIN, a reset and a TLS close_notify all end it."""
    chunks = [received]
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
    except (ConnectionResetError, ssl.SSLError):
        return b"".join(chunks), True
    except TimeoutError:
        return b"".join(chunks), False


def exchange(server: ServerProcess, data: bytes) -> tuple[bytes, bool]:
    """Send ``data`` on a new connection and read until the server closes it."""
    with connect(server) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the server refused before reading it all; its answer is still there
        return read_to_close(sock)


def check_refusal(response: bytes, status: int, reason: str) -> str:
    """Assert ``response`` is exactly one refusal with ``status`` that closes the
    connection and names ``reason``; return its body."""
    assert response, "no response at all"
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 %d %s" % (status, HTTPStatus(status).phrase), response
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    assert headers["connection"] == "close", response
    assert int(headers["content-length"]) == len(body), response  # nothing follows it
    text = body.decode("utf-8")
    assert text.startswith("%d %s: " % (status, HTTPStatus(status).phrase)), text
    assert reason in text, text
    return text


def recorded(server) -> list[str]:
    """What /record saw, asked on a new connection: also proves the server still serves."""
    with connect(server) as sock:
        sock.sendall(b"GET /recorded HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body = read_response(sock, bytearray())
    assert status == 200
    return json.loads(body)


def wait_recorded(server, entry: str) -> list[str]:
    """/record runs in the server's loop: ask until ``entry`` shows up (or fail)."""
    for _ in range(200):
        seen = recorded(server)
        if entry in seen:
            return seen
    raise AssertionError(f"/record never saw {entry!r}: {seen}")


def assert_refused(server, data: bytes, status: int, reason: str, request_id: str) -> None:
    response, closed = exchange(server, data)
    check_refusal(response, status, reason)
    assert closed, "the connection stayed open after %d" % status
    assert request_id not in recorded(server), "an application instance ran for it"


def R(request_id: str, method: bytes = b"POST", version: bytes = b"HTTP/1.1") -> bytes:
    """A request line for /record, and a Host header."""
    return b"%s /record?id=%s %s\r\nHost: a\r\n" % (method, request_id.encode(), version)


# (id, a function of the request id giving the bytes, the reason's words)
HEAD_ERRORS = [
    ("malformed-request-line", lambda i: b"GET /record?id=%s\r\nHost: a\r\n\r\n" % i.encode(),
     "malformed request line"),
    ("request-line-double-space",
     lambda i: b"GET  /record?id=%s HTTP/1.1\r\nHost: a\r\n\r\n" % i.encode(),
     "malformed request line"),
    ("invalid-method", lambda i: R(i, method=b"G(T") + b"\r\n", "invalid method token"),
    ("method-with-nul", lambda i: R(i, method=b"GE\x00T") + b"\r\n", "invalid method token"),
    ("http-2.0", lambda i: R(i, version=b"HTTP/2.0") + b"\r\n", "unsupported HTTP version 2.0"),
    ("http-0.9", lambda i: R(i, version=b"HTTP/0.9") + b"\r\n", "unsupported HTTP version 0.9"),
    ("http-1.2", lambda i: R(i, version=b"HTTP/1.2") + b"\r\n", "unsupported HTTP version 1.2"),
    ("bare-cr-in-head", lambda i: R(i) + b"X: a\rY: b\r\n\r\n", "bare CR"),
    ("bare-cr-before-crlf", lambda i: R(i) + b"X: a\r\r\n\r\n", "bare CR"),
    ("bare-lf-line-ends",
     lambda i: b"GET /record?id=%s HTTP/1.1\nHost: a\n\n" % i.encode(), "bare LF"),
    ("bare-lf-one-header", lambda i: R(i) + b"X: a\nY: b\r\n\r\n", "bare LF"),
    ("space-before-colon", lambda i: R(i) + b"X-Test : a\r\n\r\n",
     "whitespace between the header name 'X-Test' and its colon"),
    ("space-before-colon-content-length",
     lambda i: R(i) + b"Content-Length : 3\r\n\r\nabc", "whitespace between the header name"),
    ("tab-before-colon", lambda i: R(i) + b"X\t: a\r\n\r\n", "whitespace between"),
    ("non-token-header-name", lambda i: R(i) + b"X(y): a\r\n\r\n",
     "invalid character in the header name"),
    ("8bit-header-name", lambda i: R(i) + b"X\xe9: a\r\n\r\n",
     "invalid character in the header name"),
    ("header-without-colon", lambda i: R(i) + b"NoColon\r\n\r\n", "without a colon"),
    ("value-nul", lambda i: R(i) + b"X: a\x00b\r\n\r\n", "NUL in the value of header 'X'"),
    *[
        (f"value-0x{byte:02x}", (lambda b: lambda i: R(i) + b"X: a%cb\r\n\r\n" % b)(byte),
         f"forbidden character 0x{byte:02x} in the value of header 'X'")
        for byte in (0x0B, 0x0C, 0x1C, 0x1D, 0x1E, 0x85, 0x7F, 0x01)
    ],
    ("value-0x85-in-content-length",
     lambda i: R(i) + b"Content-Length: 3\x85\r\n\r\nabc", "forbidden character 0x85"),
    ("obs-fold", lambda i: R(i) + b"X: a\r\n b\r\n\r\n", "obs-fold"),
    ("obs-fold-tab", lambda i: R(i) + b"X: a\r\n\tb\r\n\r\n", "obs-fold"),
    ("content-length-and-transfer-encoding",
     lambda i: R(i) + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "both Content-Length and Transfer-Encoding"),
    ("transfer-encoding-and-content-length",
     lambda i: R(i) + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
     "both Content-Length and Transfer-Encoding"),
    ("differing-content-lengths",
     lambda i: R(i) + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
     "differing Content-Length values"),
    *[
        (f"content-length-{name}",
         (lambda v: lambda i: R(i) + b"Content-Length: %s\r\n\r\nabcdefghijklmnop" % v)(value),
         "invalid Content-Length")
        for name, value in (("plus", b"+5"), ("minus", b"-1"), ("hex", b"0x10"),
                            ("comma", b"1,1"), ("list", b"5, 5"), ("inner-space", b"5 5"),
                            ("word", b"five"), ("empty", b""), ("19-digits", b"1" * 19))
    ],
    *[
        (f"transfer-encoding-{name}",
         (lambda v: lambda i: R(i) + b"Transfer-Encoding: %s\r\n\r\n0\r\n\r\n" % v)(value),
         "unsupported Transfer-Encoding")
        for name, value in (("gzip-chunked", b"gzip, chunked"),
                            ("chunked-chunked", b"chunked, chunked"),
                            ("xchunked", b"xchunked"), ("identity", b"identity"))
    ],
    ("transfer-encoding-twice",
     lambda i: R(i) + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", "more than one Transfer-Encoding header"),
    ("transfer-encoding-http-1.0",
     lambda i: R(i, version=b"HTTP/1.0") + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "Transfer-Encoding in an HTTP/1.0 request"),
    ("missing-host", lambda i: b"GET /record?id=%s HTTP/1.1\r\n\r\n" % i.encode(),
     "missing Host header"),
    ("duplicate-host", lambda i: R(i) + b"Host: b\r\n\r\n", "more than one Host header"),
    ("relative-target",
     lambda i: b"GET record?id=%s HTTP/1.1\r\nHost: a\r\n\r\n" % i.encode(),
     "is not origin-form, absolute-form (with a valid host) or asterisk-form"),
    ("authority-target", lambda i: b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\nX-Id: %s\r\n\r\n"
     % i.encode(), "is not origin-form, absolute-form (with a valid host) or asterisk-form"),
    ("fragment-target",
     lambda i: b"GET /record?id=%s#frag HTTP/1.1\r\nHost: a\r\n\r\n" % i.encode(),
     "holds a fragment (#)"),
    ("asterisk-target-not-options",
     lambda i: b"GET * HTTP/1.1\r\nHost: a\r\nX-Id: %s\r\n\r\n" % i.encode(),
     "only for OPTIONS"),
    ("path-not-utf8", lambda i: b"GET /record%%ff?id=%s HTTP/1.1\r\nHost: a\r\n\r\n"
     % i.encode(), "not UTF-8"),
    ("non-ascii-target", lambda i: b"GET /record\xc3\xa9?id=%s HTTP/1.1\r\nHost: a\r\n\r\n"
     % i.encode(), "invalid character in the request target"),
]


@pytest.mark.parametrize("name,make,reason", HEAD_ERRORS, ids=[c[0] for c in HEAD_ERRORS])
def test_bad_head_gets_400_and_no_application(server, name, make, reason):
    request_id = tag(name)
    assert_refused(server, make(request_id), 400, reason, request_id)


BODY_ERRORS = [
    ("chunk-size-not-hex", b"zz\r\n", "invalid chunk size"),
    ("chunk-size-signed", b"-5\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
    ("chunk-size-16-hex-digits", b"1000000000000000\r\n", "more than 15 hex digits"),
    ("chunk-size-overflow", b"ffffffffffffffffffffffff\r\n", "more than 15 hex digits"),
    ("chunk-data-without-crlf", b"5\r\nhelloXX0\r\n\r\n", "chunk data not followed by CRLF"),
    ("chunk-size-bare-lf", b"5\nhello\r\n0\r\n\r\n", "invalid chunk size"),
    ("bad-trailer", b"0\r\nX : t\r\n\r\n", "in the trailers: whitespace"),
]


@pytest.mark.parametrize("name,body,reason", BODY_ERRORS, ids=[c[0] for c in BODY_ERRORS])
def test_bad_chunked_body_gets_400_and_never_reaches_the_app_whole(server, name, body, reason):
    # the head was good, so the application started; the body must break off for it
    request_id = tag(name)
    data = R(request_id) + b"Transfer-Encoding: chunked\r\n\r\n" + body
    response, closed = exchange(server, data)
    check_refusal(response, 400, reason)
    assert closed
    seen = wait_recorded(server, request_id + ":disconnect")
    assert request_id + ":complete" not in seen


def test_default_request_line_limit_gives_414(server):
    # config.py: --max-request-line defaults to 8 KiB
    assert_line_limit(server, 8 * 1024)


def test_default_header_block_limit_gives_431(server):
    # config.py: --max-header-size defaults to 64 KiB (the header lines with their CRLFs)
    assert_header_size_limit(server, 64 * 1024)


def test_default_header_count_limit_gives_431(server):
    # config.py: --max-headers defaults to 100
    assert_header_count_limit(server, 100)


def record_line(request_id: str, length: int) -> bytes:
    """A GET /record request line of exactly ``length`` bytes."""
    start = b"GET /record?id=%s&pad=" % request_id.encode()
    line = start + b"p" * (length - len(start) - len(b" HTTP/1.1")) + b" HTTP/1.1"
    assert len(line) == length
    return line


def headers_of(size: int, count: int) -> bytes:
    """``count`` header lines, Host first, of exactly ``size`` bytes with their CRLFs."""
    lines = [b"Host: a\r\n"] + [b"X-%d: v\r\n" % n for n in range(1, count)]
    lines[-1] = lines[-1][:-2] + b"v" * (size - sum(map(len, lines))) + b"\r\n"
    block = b"".join(lines)
    assert len(block) == size and block.count(b"\r\n") == count
    return block


def assert_served(server, data: bytes, request_id: str) -> None:
    with connect(server) as sock:
        sock.sendall(data)
        status, _, _ = read_response(sock, bytearray())
    assert status == 200
    assert request_id + ":complete" in wait_recorded(server, request_id + ":complete")


def assert_line_limit(server, limit: int) -> None:
    ok = tag("line-at-limit")
    assert_served(server, record_line(ok, limit) + b"\r\nHost: a\r\n\r\n", ok)
    too_long = tag("line-over-limit")
    assert_refused(server, record_line(too_long, limit + 1) + b"\r\nHost: a\r\n\r\n", 414,
                   "request line longer than %d bytes" % limit, too_long)


def assert_header_size_limit(server, limit: int) -> None:
    ok = tag("block-at-limit")
    assert_served(server, b"GET /record?id=%s HTTP/1.1\r\n" % ok.encode()
                  + headers_of(limit, 3) + b"\r\n", ok)
    too_big = tag("block-over-limit")
    assert_refused(server, b"GET /record?id=%s HTTP/1.1\r\n" % too_big.encode()
                   + headers_of(limit + 1, 3) + b"\r\n", 431,
                   "request header block larger than %d bytes" % limit, too_big)


def assert_header_count_limit(server, limit: int) -> None:
    ok = tag("count-at-limit")
    assert_served(server, b"GET /record?id=%s HTTP/1.1\r\n" % ok.encode()
                  + headers_of(limit * 10, limit) + b"\r\n", ok)
    too_many = tag("count-over-limit")
    assert_refused(server, b"GET /record?id=%s HTTP/1.1\r\n" % too_many.encode()
                   + headers_of((limit + 1) * 10, limit + 1) + b"\r\n", 431,
                   "more than %d request headers" % limit, too_many)


@pytest.fixture(scope="module", params=SERVER_VARIANTS)
def tight_server(request):
    """Small configured limits and a short keep-alive timeout (the header timeout stays at
    its 30 s default, so a close seen here comes from the keep-alive timer)."""
    proc = start_variant(request.param, "--max-request-line", "64", "--max-header-size", "256",
                         "--max-headers", "5", "--keep-alive-timeout", "0.3")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module", params=SERVER_VARIANTS)
def slow_server(request):
    """A short header timeout; the keep-alive timeout is long so it cannot be the cause."""
    proc = start_variant(request.param, "--header-timeout", "0.3", "--keep-alive-timeout", "30")
    try:
        yield proc
    finally:
        proc.stop()


def test_configured_request_line_limit_gives_414(tight_server):
    assert_line_limit(tight_server, 64)


def test_configured_header_block_limit_gives_431(tight_server):
    assert_header_size_limit(tight_server, 256)


def test_configured_header_count_limit_gives_431(tight_server):
    assert_header_count_limit(tight_server, 5)


def test_request_line_that_never_ends_gets_414_before_it_ends(tight_server):
    with connect(tight_server) as sock:
        sock.sendall(b"GET /" + b"a" * 100)  # no CRLF yet, already over 64 bytes
        response, closed = read_to_close(sock)
    check_refusal(response, 414, "request line longer than 64 bytes")
    assert closed


def test_header_block_that_never_ends_gets_431_before_it_ends(tight_server):
    with connect(tight_server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 300)
        response, closed = read_to_close(sock)
    check_refusal(response, 431, "request header block larger than 256 bytes")
    assert closed


def test_idle_keep_alive_connection_is_closed(tight_server):
    with connect(tight_server) as sock:
        buffer = bytearray()
        for _ in range(2):  # kept alive between requests, closed once idle
            sock.sendall(b"GET /status HTTP/1.1\r\nHost: a\r\n\r\n")
            status, headers, _ = read_response(sock, buffer)
            assert status == 200 and headers.get("connection") != "close"
        rest, closed = read_to_close(sock)
    assert closed and rest == b"" and not buffer  # closed quietly: nothing was pending


def test_silent_connection_is_closed_after_header_timeout(slow_server):
    with connect(slow_server) as sock:
        received, closed = read_to_close(sock)
    assert closed and received == b""  # nothing was asked, so nothing is answered


def test_partial_head_gets_408_after_header_timeout(slow_server):
    request_id = tag("partial-head")
    with connect(slow_server) as sock:
        sock.sendall(R(request_id) + b"X-Almost: there\r\n")
        response, closed = read_to_close(sock)
    check_refusal(response, 408, "request head not received in time")
    assert closed
    assert request_id not in recorded(slow_server)


def test_trickled_head_does_not_extend_the_header_timeout(slow_server):
    # a byte at a time, each before the server could time out on silence alone
    data = R(tag("trickle")) + b"X-Long: " + b"v" * 200
    with connect(slow_server) as sock:
        sock.settimeout(0.05)  # after the TLS handshake, which must not be held to it
        for byte in range(len(data)):
            sock.sendall(data[byte:byte + 1])
            try:
                response = sock.recv(65536)
            except TimeoutError:
                continue
            sock.settimeout(5)
            response, closed = read_to_close(sock, response)
            break
        else:
            raise AssertionError("the server waited for the whole trickled head")
    check_refusal(response, 408, "request head not received in time")
    assert closed


def test_partial_head_after_keep_alive_gets_408(slow_server):
    with connect(slow_server) as sock:
        buffer = bytearray()
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: a\r\n\r\n")
        status, _, _ = read_response(sock, buffer)
        assert status == 200
        sock.sendall(b"GET /status HTTP/1.1\r\n")
        response, closed = read_to_close(sock, bytes(buffer))
    check_refusal(response, 408, "request head not received in time")
    assert closed


def test_partial_head_sent_with_the_previous_request_gets_408(slow_server):
    # the start of the next head came in the same packet as the request before it: once
    # that response is out, the header timeout (not the 30 s keep-alive) runs for it
    with connect(slow_server) as sock:
        buffer = bytearray()
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: a\r\n\r\nGET /status HTTP/1.1\r\nHo")
        status, _, _ = read_response(sock, buffer)
        assert status == 200
        response, closed = read_to_close(sock, bytes(buffer))
    check_refusal(response, 408, "request head not received in time")
    assert closed


def test_slow_body_is_not_cut_by_the_header_timeout(slow_server):
    request_id = tag("slow-body")
    with connect(slow_server) as sock:
        sock.settimeout(1.0)
        sock.sendall(R(request_id) + b"Content-Length: 10\r\n\r\nhello")
        # longer than the 0.3 s header timeout: the head was complete, the body may dawdle
        received, closed = read_to_close(sock)
        assert received == b"" and not closed
        sock.sendall(b"world")
        sock.settimeout(5)
        status, _, body = read_response(sock, bytearray())
    assert status == 200 and body == b"helloworld"


@pytest.fixture(scope="module", params=SERVER_VARIANTS)
def body_server(request):
    """A short body timeout; the header and keep-alive timeouts are long."""
    proc = start_variant(request.param, "--body-timeout", "0.3", "--header-timeout", "30",
                         "--keep-alive-timeout", "30")
    try:
        yield proc
    finally:
        proc.stop()


def test_stalled_body_gets_408_and_the_app_hears_the_disconnect(body_server):
    request_id = tag("stalled-body")
    with connect(body_server) as sock:
        sock.sendall(R(request_id) + b"Content-Length: 10\r\n\r\nhello")
        response, closed = read_to_close(sock)
    check_refusal(response, 408, "request body not received in time")
    assert closed
    seen = recorded(body_server)
    assert request_id in seen and request_id + ":disconnect" in seen


def test_a_body_that_keeps_coming_is_not_cut_off(body_server):
    request_id = tag("steady-body")
    with connect(body_server) as sock:
        sock.sendall(R(request_id) + b"Content-Length: 8\r\n\r\n")
        sock.settimeout(0.15)
        for piece in (b"ab", b"cd", b"ef", b"gh"):
            # a piece every 0.15 s (while checking nothing came back): each within the
            # 0.3 s timeout, the whole body well over it
            try:
                received = sock.recv(65536)
            except TimeoutError:
                received = b""
            assert received == b"", received
            sock.sendall(piece)
        sock.settimeout(5)
        status, _, body = read_response(sock, bytearray())
    assert status == 200 and body == b"abcdefgh"


def test_time_the_app_takes_to_read_is_not_counted(body_server):
    """The server stops reading while the application does not take the body: the client
    is not to blame for that pause, however long."""
    total = 8 * 1024 * 1024
    with connect(body_server) as sock:
        block = b"b" * 65536
        sock.sendall(b"POST /gated-body?gate=bt1 HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: %d\r\n\r\n" % total + block)
        sent = len(block)
        body_server.wait_for("app: gated")  # it took the first piece, and waits
        sock.setblocking(False)
        stalled_since = None
        while True:  # until the server's buffer and the kernel's stay full: it stopped reading
            try:
                sent += sock.send(block)
                stalled_since = None
            except NO_ROOM:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 0.5:
                    break
        sock.settimeout(1.0)  # more than three body timeouts with the server not reading
        received, closed = read_to_close(sock)
        assert received == b"" and not closed
        with connect(body_server) as other:
            other.sendall(b"GET /open-gate?gate=bt1 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(other, bytearray())[0] == 200
        sock.settimeout(10)
        while sent < total:
            sent += sock.send(block[: total - sent])
        status, _, body = read_response(sock, bytearray())
    assert status == 200 and int(body) == total


def test_a_client_waiting_for_100_continue_is_not_cut_off(body_server):
    with connect(body_server) as sock:
        sock.settimeout(1.0)
        sock.sendall(b"POST /gate-then-body?gate=bt2 HTTP/1.1\r\nHost: x\r\n"
                     b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        body_server.wait_for("app: waiting before the body")
        received, closed = read_to_close(sock)  # a second: three body timeouts
        assert received == b"" and not closed
        with connect(body_server) as other:
            other.sendall(b"GET /open-gate?gate=bt2 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(other, bytearray())[0] == 200
        sock.settimeout(5)
        buffer = bytearray()
        while b"\r\n\r\n" not in buffer:
            buffer += sock.recv(65536)
        assert buffer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        del buffer[:25]
        sock.sendall(b"hello")
        status, _, body = read_response(sock, buffer)
    assert status == 200 and body == b"hello"


def test_a_client_that_stalls_after_100_continue_gets_408(body_server):
    request_id = tag("stall-after-continue")
    with connect(body_server) as sock:
        sock.sendall(R(request_id) + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        response, closed = read_to_close(sock)
    assert response.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    check_refusal(response[25:], 408, "request body not received in time")
    assert closed


def test_good_then_bad_pipelined_are_answered_in_order(server):
    good, bad = tag("pipelined-good"), tag("pipelined-bad")
    with connect(server) as sock:
        sock.sendall(R(good) + b"Content-Length: 2\r\n\r\nok" + R(bad) + b"X-Bad : x\r\n\r\n")
        buffer = bytearray()
        status, headers, body = read_response(sock, buffer)
        assert status == 200 and body == b"ok" and headers.get("connection") != "close"
        response, closed = read_to_close(sock, bytes(buffer))
    check_refusal(response, 400, "whitespace between the header name 'X-Bad' and its colon")
    assert closed
    seen = recorded(server)
    assert good + ":complete" in seen and bad not in seen


def echo(server, data: bytes, count: int = 1) -> list[tuple[int, dict, bytes]]:
    """Send ``data`` and read ``count`` responses on one connection."""
    with connect(server) as sock:
        sock.sendall(data)
        buffer = bytearray()
        return [read_response(sock, buffer) for _ in range(count)]


def echoed(server, data: bytes) -> dict:
    [(status, _, body)] = echo(server, data)
    assert status == 200, body
    return json.loads(body)


def test_absolute_form_target(server):
    scope = echoed(server, b"GET http://example.com/echo/p?x=1 HTTP/1.1\r\nHost: example.com"
                           b"\r\n\r\n")
    assert scope["path"] == "/echo/p" and scope["query_string"] == "x=1"


def test_options_asterisk_reaches_the_app(server):
    [(status, _, body)] = echo(server, b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (status, body) == (404, b"no such test route")  # the test app's answer


def test_extension_method_reaches_the_app(server):
    assert echoed(server, b"FROB /echo HTTP/1.1\r\nHost: a\r\n\r\n")["method"] == "FROB"


def test_leading_empty_line_is_ignored(server):
    assert echoed(server, b"\r\n\r\nGET /echo HTTP/1.1\r\nHost: a\r\n\r\n")["path"] == "/echo"


def test_chunked_body_with_extensions_and_trailers(server):
    scope = echoed(server, b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                           b"\r\n5;name=value\r\nhello\r\n6;a;b=\"c d\"\r\n world\r\n0;end\r\n"
                           b"X-Trailer: t\r\n\r\n")
    assert scope["body"] == "hello world"
    assert ["x-trailer", "t"] not in scope["headers"]  # trailers are not request headers


@pytest.mark.parametrize("lengths,body", [
    ([b"0"], b""), ([b"5", b"5"], b"hello"), ([b" 5"], b"hello"), ([b"005 "], b"hello"),
], ids=["zero", "duplicate-identical", "leading-space", "leading-zeros"])
def test_valid_content_lengths(server, lengths, body):
    headers = b"".join(b"Content-Length:%s\r\n" % value for value in lengths)
    scope = echoed(server, b"POST /echo HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n" + body)
    assert scope["body"] == body.decode()


def test_obs_text_header_value(server):
    value = bytes([0x80, 0x84, 0x86, 0xE9, 0xFF])
    scope = echoed(server, b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Text: caf" + value + b"\r\n\r\n")
    assert ["x-text", "caf" + value.decode("latin-1")] in scope["headers"]


def test_unknown_upgrade_is_served_as_a_normal_request(server):
    responses = echo(server, b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                             b"Upgrade: foo\r\nContent-Length: 3\r\n\r\nabc"
                             b"GET /echo?next=1 HTTP/1.1\r\nHost: a\r\n\r\n", count=2)
    assert [status for status, _, _ in responses] == [200, 200]
    first, second = (json.loads(body) for _, _, body in responses)
    assert first["body"] == "abc" and ["upgrade", "foo"] in first["headers"]
    assert second["query_string"] == "next=1"
