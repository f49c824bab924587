"""The ASGI HTTP spec over real sockets, on every transport (the `server` fixture: plain TCP
under both parsers, TLS and a UNIX socket)."""

from __future__ import annotations

import itertools
import json

import pytest

from tests.conftest import read_response, read_to_close

_tags = itertools.count()


@pytest.fixture(scope="module")
def server(transport_server):
    """Each test here runs on every conftest.SERVER_VARIANTS entry."""
    return transport_server


def get_json(server, path, **kwargs):
    response = server.http.get(path, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def test_scope_is_complete(server):
    scope = get_json(server, "/echo/a%20b/%C3%A9?x=1&y=%20", headers={"X-Custom": "Value"})
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == server.scheme  # "https" on TLS
    assert scope["path"] == "/echo/a b/é"
    assert scope["raw_path"] == "/echo/a%20b/%C3%A9"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["root_path"] == ""
    assert ["x-custom", "Value"] in scope["headers"]
    if server.binding == "unix":
        # a UNIX socket has no client address, and the server is the socket's path
        assert scope["client"] is None
        assert scope["server"] == [server.unix_path, None]
    else:
        assert scope["client"][0] == "127.0.0.1" and isinstance(scope["client"][1], int)
        assert scope["server"] == ["127.0.0.1", server.port]
    assert scope["state"] == {"started": "yes"}  # from the lifespan startup


def test_headers_keep_order_case_and_duplicates(server):
    request = (
        b"GET /echo HTTP/1.1\r\nHost: x\r\nX-B: 1\r\nx-a: 2\r\nX-B: 3\r\n"
        b"Connection: close\r\n\r\n"
    )
    response = server.raw_request(request)
    body = json.loads(response.split(b"\r\n\r\n", 1)[1])
    assert body["headers"] == [
        ["host", "x"], ["x-b", "1"], ["x-a", "2"], ["x-b", "3"], ["connection", "close"]
    ]


def test_http_10_request(server):
    response = server.raw_request(b"GET /echo HTTP/1.0\r\n\r\n")
    head, body = response.split(b"\r\n\r\n", 1)
    assert json.loads(body)["http_version"] == "1.0"
    assert b"content-length:" in head.lower()
    # HTTP/1.0 without keep-alive: the server closed (raw_request fails unless it did)


def test_http_10_keep_alive_and_streaming_is_close_delimited(server):
    with server.connect() as sock:
        buffer = bytearray()
        sock.sendall(b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, _ = read_response(sock, buffer)
        assert status == 200 and headers["connection"] == "keep-alive"
        # a streamed response to HTTP/1.0 cannot be chunked: it ends with the connection
        sock.sendall(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        rest, ended = read_to_close(sock)
        data = bytes(buffer) + rest
    assert ended, data
    assert b"transfer-encoding" not in data.lower()
    assert data.endswith(b"chunk0;chunk1;chunk2;")


def test_request_body_in_several_messages(server):
    # a chunked upload sent in separate writes reaches the app as it arrives, in several
    # http.request messages: /gated-body says so once it has the first (which the server
    # must deliver without the rest), and only then is the rest sent.  (A round trip on
    # another connection instead proved nothing: under load the two parts were still
    # delivered as one message, the first one waiting in the server until the app ran.)
    gate = b"parts-%d" % next(_tags)
    with server.connect() as sock:
        sock.sendall(b"POST /gated-body?gate=%s HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" % gate)
        sock.sendall(b"5\r\nhello\r\n")
        server.wait_for("app: gated")  # the only /gated-body request to this module's server
        sock.sendall(b"6\r\n world\r\n0\r\n\r\n")
        assert server.http.get("/open-gate?gate=%s" % gate.decode()).text == "open"
        status, _, body = read_response(sock, bytearray())
    assert status == 200
    assert body == b"11"  # all of it: the first message ("hello"), then the rest


def test_large_upload_with_content_length(server):
    payload = b"z" * (3 * 1024 * 1024 + 17)
    response = server.http.post("/count-body", content=payload)
    assert response.status_code == 200
    count, _, messages = response.text.partition(" bytes in ")
    assert int(count) == len(payload)
    assert int(messages.split()[0]) > 1


def test_streamed_response_is_chunked(server):
    response = server.raw_request(
        b"GET /stream?n=4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, body = response.split(b"\r\n\r\n", 1)
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"7\r\nchunk0;\r\n7\r\nchunk1;\r\n7\r\nchunk2;\r\n7\r\nchunk3;\r\n0\r\n\r\n"


def test_single_body_gets_content_length(server):
    response = server.raw_request(
        b"GET /status?code=201 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head = response.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 201 created")
    assert b"content-length: 0" in head
    assert b"transfer-encoding" not in head


def test_big_streamed_response_with_content_length(server):
    response = server.http.get("/big?size=2000000")
    assert response.status_code == 200
    assert response.headers["content-length"] == "2000000"
    assert len(response.content) == 2000000


def test_keep_alive_and_pipelining_answer_in_order(server):
    requests = b"".join(
        b"GET /echo/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5)
    ) + b"GET /sleep?seconds=0.2 HTTP/1.1\r\nHost: x\r\n\r\n" + (
        b"GET /echo/last HTTP/1.1\r\nHost: x\r\n\r\n")
    with server.connect() as sock:
        sock.sendall(requests)
        buffer = bytearray()
        paths = []
        for _ in range(5):
            status, _, body = read_response(sock, buffer)
            paths.append(json.loads(body)["path"])
        assert read_response(sock, buffer)[2] == b"slept"
        paths.append(json.loads(read_response(sock, buffer)[2])["path"])
        # the connection is still usable afterwards
        sock.sendall(b"GET /echo/again HTTP/1.1\r\nHost: x\r\n\r\n")
        assert json.loads(read_response(sock, buffer)[2])["path"] == "/echo/again"
    assert paths == ["/echo/0", "/echo/1", "/echo/2", "/echo/3", "/echo/4", "/echo/last"]


def test_head_has_no_body(server):
    with server.connect() as sock:
        sock.sendall(b"HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\nGET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(
            str(server.proc.pid).encode()
        ):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    first, second = data.split(b"HTTP/1.1 200", 2)[1:]
    assert b"content-length" in first.lower()
    assert first.endswith(b"\r\n\r\n")  # headers only, then straight to the next response
    assert second.endswith(str(server.proc.pid).encode())


def test_expect_100_continue_answered_when_app_reads(server):
    with server.connect() as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        interim = sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        status, _, body = read_response(sock, bytearray())
    assert status == 200 and json.loads(body)["body"] == "hello"


def test_expect_100_continue_not_sent_when_app_does_not_read(server):
    with server.connect() as sock:
        sock.sendall(
            b"POST /no-read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        status, headers, body = read_response(sock, bytearray())
    assert status == 200 and body == b"not reading your body"
    # the unread body makes the connection unusable for keep-alive: the server says so
    assert headers.get("connection") == "close"


def test_date_and_server_headers(server):
    response = server.http.get("/echo")
    assert response.headers["server"] == "daphne"
    assert response.headers["date"].endswith(" GMT")


def test_duplicate_response_headers_kept(server):
    response = server.http.get("/headers")
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]


@pytest.mark.parametrize("path", ["/raise", "/no-response", "/bad-status", "/bad-header",
                                  "/unknown-type", "/body-first", "/header-injection"])
def test_app_errors_before_start_give_500_and_server_goes_on(server, path):
    response = server.http.get(path)
    assert response.status_code == 500
    assert "set-cookie" not in response.headers
    assert server.http.get("/echo").status_code == 200


def test_app_error_messages_name_the_problem(server):
    for path in ("/bad-status", "/bad-header", "/unknown-type", "/header-injection"):
        server.http.get(path)
    server.wait_for(r"'status' must be an int from 200 to 599, got '200'")
    server.wait_for(r"header names and values must be bytes")
    server.wait_for(r"expected 'http.response.start' first, got 'http.response.nonsense'")
    server.wait_for(r"header b'x-a' has a value containing CR, LF or NUL")
    server.wait_for(r"Application returned without completing the response to GET /no-resp")


@pytest.mark.parametrize("path", ["/raise-after-start", "/half-response"])
def test_app_errors_after_start_close_the_connection(server, path):
    data = server.raw_request(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    # the chunked body never got its terminating chunk: the client can tell it is cut
    assert data.startswith(b"HTTP/1.1 200")
    assert not data.endswith(b"0\r\n\r\n")
    assert server.http.get("/echo").status_code == 200


def test_disconnect_reaches_the_app(server):
    with server.connect() as sock:
        sock.sendall(b"GET /wait-disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
        # make sure the request was dispatched before closing: a second connection's
        # round trip happens after the first request's head was parsed
        server.http.get("/echo")
    for _ in range(200):
        seen = server.http.get("/disconnects").json()
        if "/wait-disconnect" in seen:
            break
    assert "/wait-disconnect" in seen


def test_a_listener_hears_the_disconnect_while_another_receive_is_cancelled(server):
    # two coroutines in receive() at once, one of them cancelled: the other one still wakes
    tag = "two-%d" % next(_tags)
    with server.connect() as sock:
        sock.sendall(b"GET /two-receivers?id=%s HTTP/1.1\r\nHost: x\r\n\r\n" % tag.encode())
        buffer = b""
        while b"streaming" not in buffer:
            buffer += sock.recv(65536)
    server.wait_for(r"mark: listener heard http.disconnect %s" % tag)


def echo_raw(server, header_lines: bytes) -> dict:
    response = server.raw_request(
        b"GET /echo HTTP/1.1\r\nHost: x\r\n" + header_lines + b"Connection: close\r\n\r\n")
    head, body = response.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), response
    return json.loads(body)


def test_header_names_with_underscores_never_reach_the_app(server):
    # Django maps both X-Forwarded-For and X_Forwarded_For to HTTP_X_FORWARDED_FOR: a client
    # must not pass for what a proxy vouches for (Daphne drops these names too)
    scope = echo_raw(server, b"X_Forwarded_For: 6.6.6.6\r\nX-Kept: a_b\r\nCookie: _ga=1\r\n")
    assert scope["headers"] == [
        ["host", "x"], ["x-kept", "a_b"], ["cookie", "_ga=1"], ["connection", "close"]]


@pytest.mark.parametrize("name", [b"Daphne-Root-Path", b"daphne-root-path", b"dAPHNE-rOOT-pATH"])
def test_daphne_root_path_header_sets_root_path(server, name):
    # Daphne's documented way for a proxy to say where the app is mounted
    scope = echo_raw(server, name + b": /mounted%20here\r\n")
    assert scope["root_path"] == "/mounted here"
    assert [n for n, _ in scope["headers"]] == ["host", "connection"]


def test_daphne_root_path_that_is_not_utf8_is_refused(server):
    response = server.raw_request(b"GET /echo HTTP/1.1\r\nHost: x\r\n"
                                  b"Daphne-Root-Path: /%ff\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 400")
    assert b"Daphne-Root-Path is not UTF-8" in response


def test_body_short_of_its_content_length_before_trailers_gets_500(server):
    # a body short of its Content-Length would make the next response read as the rest of
    # it: the whole body came in one message, nothing went out yet, so a 500 goes instead,
    # whole, and the pipelined request after it is served
    response = server.raw_request(b"GET /trailers-short HTTP/1.1\r\nHost: x\r\n\r\n"
                                  b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close"
                                  b"\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 500") and b"12345" not in response
    assert response.count(b"HTTP/1.1") == 2 and b"\r\n\r\nInternal Server Error\nHTTP/1.1 200"\
        in response
    server.wait_for(r"cannot be sent \(less body than its Content-Length\); answered 500")


def test_body_that_breaks_its_content_length_after_the_head_closes(server):
    """The head went out with the first part: the connection is closed, so that the client
    cannot take what it got for the whole response (or read more as the next one)."""
    response = server.raw_request(b"GET /big?size=100&short=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                                  b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200") and response.count(b"HTTP/1.1") == 1
    server.wait_for(r"Application sent less body than its Content-Length on GET /big")


def test_status_may_be_an_int_enum(server):
    # http.HTTPStatus members are ints: Daphne and Uvicorn send them as such
    response = server.http.get("/enum-status")
    assert response.status_code == 201 and response.text == "created"
