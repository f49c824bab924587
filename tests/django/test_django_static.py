"""``manage.py daphne --static``: STATIC_ROOT served by the server itself after a real
``collectstatic``, with every case of issue 7 section 4b over real sockets."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import socket

import brotli
import httpx
import pytest

from ..django_helpers import LISTEN_RE, ROOT, ManageProcess, raw_get, run_manage, settings_module

CSS = (ROOT / "example_project/demo/static/demo/site.css").read_bytes()
JS = (ROOT / "example_project/demo/static/demo/site.js").read_bytes()


@pytest.fixture(scope="module")
def static_root(tmp_path_factory):
    """A real collectstatic (hashed names, .gz and .br siblings), plus a large file, a
    directory, and symlinks pointing inside and outside the root."""
    base = tmp_path_factory.mktemp("static")
    root = base / "root"
    env = {"EXAMPLE_DB": str(base / "db.sqlite3"), "EXAMPLE_STATIC_ROOT": str(root)}
    result = run_manage("collectstatic", "--noinput", env=env)
    assert result.returncode == 0, result.stdout
    (root / "big.bin").write_bytes(os.urandom(5 * 1024 * 1024 + 123))
    (base / "secret.txt").write_text("outside the root\n")
    (root / "escape.txt").symlink_to(base / "secret.txt")
    (root / "linked.txt").symlink_to(base / "secret.txt")
    (root / "inside.css").symlink_to(root / "demo" / "site.css")
    (root / "stale.css").write_bytes(b"body { color: green }\n" * 40)
    (root / "stale.css.gz").write_bytes(gzip.compress(b"an older version\n" * 40))
    os.utime(root / "stale.css.gz", (1_000_000_000, 1_000_000_000))
    (root / "empty.txt").write_bytes(b"")
    os.mkfifo(root / "pipe.css")
    return root


@pytest.fixture(scope="module")
def server(static_root):
    env = {"EXAMPLE_DB": str(static_root.parent / "db.sqlite3"),
           "EXAMPLE_STATIC_ROOT": str(static_root), "DJANGO_DEBUG": "0"}
    process = ManageProcess(["daphne", "-p", "0", "--static"], env=env)
    try:
        match = process.wait_for(LISTEN_RE)
        process.wait_for("Server ready")
        process.port = int(match.group(2))
        process.url = f"http://127.0.0.1:{process.port}"
        yield process
    finally:
        process.stop()


def get(server, path, **headers):
    return httpx.get(server.url + path, headers=headers, timeout=30)


def test_collectstatic_wrote_hashed_names_and_compressed_siblings(static_root):
    names = {p.name for p in (static_root / "demo").iterdir()}
    hashed_css = next(n for n in names if re.fullmatch(r"site\.[0-9a-f]{12}\.css", n))
    assert {hashed_css + ".gz", hashed_css + ".br", "site.css.gz", "site.css.br"} <= names
    assert gzip.decompress((static_root / "demo" / (hashed_css + ".gz")).read_bytes()) == CSS
    assert brotli.decompress((static_root / "demo" / (hashed_css + ".br")).read_bytes()) == CSS


def test_checks_are_clean_with_static_on(server):
    assert "django_daphne.W002" not in server.output
    assert "django_daphne.W003" not in server.output


def test_the_page_links_hashed_names_cached_for_a_year(server):
    page = get(server, "/").text
    css = re.search(r'href="(/static/demo/site\.[0-9a-f]{12}\.css)"', page).group(1)
    js = re.search(r'src="(/static/demo/site\.[0-9a-f]{12}\.js)"', page).group(1)
    for path, content in ((css, CSS), (js, JS)):
        response = get(server, path, **{"Accept-Encoding": "identity"})
        assert response.status_code == 200
        assert response.content == content
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["etag"] and response.headers["last-modified"]
    assert get(server, css).headers["content-type"] == "text/css; charset=utf-8"


def test_unhashed_names_are_revalidated(server):
    response = get(server, "/static/demo/site.css", **{"Accept-Encoding": "identity"})
    assert response.status_code == 200 and response.content == CSS
    assert response.headers["cache-control"] == "no-cache"


def test_etag_and_last_modified_give_304(server):
    first = get(server, "/static/demo/site.css", **{"Accept-Encoding": "identity"})
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    again = get(server, "/static/demo/site.css", **{"If-None-Match": etag,
                                                     "Accept-Encoding": "identity"})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert get(server, "/static/demo/site.css", **{"If-None-Match": f'"other", W/{etag}',
                                                    "Accept-Encoding": "identity"}
               ).status_code == 304
    assert get(server, "/static/demo/site.css", **{"If-Modified-Since": modified}
               ).status_code == 304
    changed = get(server, "/static/demo/site.css", **{"If-None-Match": '"stale"',
                                                       "If-Modified-Since": modified})
    assert changed.status_code == 200  # If-None-Match decides when both are sent
    older = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert get(server, "/static/demo/site.css", **{"If-Modified-Since": older}
               ).status_code == 200


@pytest.mark.parametrize("accept, encoding", [
    ("gzip, br", "br"),
    ("br", "br"),
    ("gzip", "gzip"),
    ("br;q=0, gzip", "gzip"),
    ("identity", None),
    ("", None),
])
def test_precompressed_siblings_by_accept_encoding(server, accept, encoding):
    with httpx.stream("GET", server.url + "/static/demo/site.css",
                      headers={"Accept-Encoding": accept}, timeout=30) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers.get("content-encoding") == encoding
    decoded = {"br": brotli.decompress, "gzip": gzip.decompress, None: bytes}[encoding](raw)
    assert decoded == CSS
    if encoding:
        assert len(raw) < len(CSS)
        assert response.headers["etag"].endswith(f'-{"br" if encoding == "br" else "gzip"}"')


@pytest.mark.parametrize("accept, encoding", [
    ("gzip;q=1, br;q=0.1", "gzip"),  # the client's preference wins over the server's
    ("br;q=0.5, gzip;q=0.5", "br"),  # a tie goes to the smaller one
    ("*", "br"),
    ("br;q=0, *", "gzip"),
    ("*;q=0, identity", None),
    ("x-gzip", "gzip"),  # RFC 9110 12.5.3: x-gzip is gzip
    ("gzip;q=0.5\r\nAccept-Encoding: br;q=0", "gzip"),  # two header lines are one list
])
def test_accept_encoding_preferences(server, accept, encoding):
    status, headers, body = raw_get(server.port, "/static/demo/site.css",
                                    f"Accept-Encoding: {accept}\r\n")
    assert status == 200
    assert headers.get("content-encoding") == encoding, accept
    decoded = {"br": brotli.decompress, "gzip": gzip.decompress, None: bytes}[encoding](body)
    assert decoded == CSS


def test_a_compressed_file_asked_for_by_name_is_not_labelled_as_its_content(server):
    """site.css.gz is gzip data: sent as text/css it would show the browser binary junk."""
    for name, kind in (("site.css.gz", "application/gzip"),
                       ("site.css.br", "application/octet-stream")):
        status, headers, body = raw_get(server.port, f"/static/demo/{name}",
                                        "Accept-Encoding: identity\r\n")
        assert status == 200
        assert headers["content-type"] == kind, name
        assert "content-encoding" not in headers


def test_web_types_do_not_depend_on_the_platform_table():
    """Windows' registry (read by mimetypes) maps .js to text/plain, which browsers refuse
    to run with nosniff; the types browsers insist on come from a fixed table."""
    import mimetypes

    from django_daphne.staticfiles.handler import content_type

    saved = mimetypes.guess_type("a.js"), mimetypes.guess_type("a.css")
    mimetypes.add_type("text/plain", ".js")
    mimetypes.add_type("application/x-css", ".css")
    try:
        assert content_type("app.js") == b"text/javascript; charset=utf-8"
        assert content_type("app.mjs") == b"text/javascript; charset=utf-8"
        assert content_type("site.css") == b"text/css; charset=utf-8"
        assert content_type("app.wasm") == b"application/wasm"
        assert content_type("app.js.map") == b"application/json"
    finally:
        mimetypes.add_type(saved[0][0], ".js")
        mimetypes.add_type(saved[1][0], ".css")


def test_a_sibling_older_than_its_file_is_not_used(server):
    response = get(server, "/static/stale.css", **{"Accept-Encoding": "gzip"})
    assert "content-encoding" not in response.headers
    assert response.content == b"body { color: green }\n" * 40


def test_range_requests(server, static_root):
    big = (static_root / "big.bin").read_bytes()
    cases = {
        "bytes=0-9": (0, 10),
        "bytes=1000000-2999999": (1000000, 3000000),
        "bytes=-100": (len(big) - 100, len(big)),
        f"bytes={len(big) - 10}-": (len(big) - 10, len(big)),
        f"bytes=5-{len(big) * 2}": (5, len(big)),
    }
    for header, (start, end) in cases.items():
        response = get(server, "/static/big.bin", Range=header)
        assert response.status_code == 206, header
        assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{len(big)}"
        assert response.content == big[start:end], header
    unsatisfiable = get(server, "/static/big.bin", Range=f"bytes={len(big)}-")
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == f"bytes */{len(big)}"
    # several ranges, another unit or a stale If-Range: the whole file
    assert get(server, "/static/big.bin", Range="bytes=0-1,5-6").status_code == 200
    assert get(server, "/static/big.bin", Range="lines=1-2").status_code == 200
    stale = get(server, "/static/big.bin", Range="bytes=0-9", **{"If-Range": '"old"'})
    assert stale.status_code == 200 and len(stale.content) == len(big)
    etag = get(server, "/static/big.bin", Range="bytes=0-0").headers["etag"]
    assert get(server, "/static/big.bin", Range="bytes=0-9", **{"If-Range": etag}
               ).status_code == 206


@pytest.mark.parametrize("header, status, content_range", [
    ("bytes=\xb2-", 200, None),  # a Latin-1 superscript two is not a digit here
    ("bytes=0-\xb9", 200, None),
    ("bytes=" + "9" * 5000 + "-", 416, "bytes */311"),  # past Python's int() digit limit
    ("bytes=0-" + "9" * 5000, 206, "bytes 0-310/311"),
    ("bytes=-" + "9" * 5000, 206, "bytes 0-310/311"),
])
def test_odd_range_numbers_are_not_server_errors(server, header, status, content_range):
    got, headers, body = raw_get(server.port, "/static/demo/site.css",
                                 f"Range: {header}\r\nAccept-Encoding: identity\r\n")
    assert len(CSS) == 311
    assert got == status, header[:20]
    assert headers.get("content-range") == content_range
    if status in (200, 206):
        assert body == CSS


def test_range_on_an_empty_file(server):
    """No Content-Range can describe part of nothing ("bytes 0--1/0" is not one)."""
    for header in ("bytes=-5", "bytes=0-", "bytes=0-0"):
        status, headers, body = raw_get(server.port, "/static/empty.txt",
                                        f"Range: {header}\r\n")
        assert status in (200, 416), header
        assert headers["content-range" if status == 416 else "content-length"] in (
            "bytes */0", "0"), header
        assert body == b""


def test_if_match_and_if_unmodified_since_give_412(server):
    """RFC 9110 13.1.1 and 13.1.4: an origin server MUST evaluate them (resuming downloaders
    send them to be sure the rest is of the same file)."""
    first = get(server, "/static/big.bin")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    older = "Mon, 01 Jan 2001 00:00:00 GMT"
    cases = [
        ({"If-Match": '"other"'}, 412),
        ({"If-Match": f"W/{etag}"}, 412),  # weak tags never match If-Match
        ({"If-Match": f'"other", {etag}'}, 206),
        ({"If-Match": "*"}, 206),
        ({"If-Unmodified-Since": older}, 412),
        ({"If-Unmodified-Since": modified}, 206),
        ({"If-Match": etag, "If-Unmodified-Since": older}, 206),  # If-Match decides
        ({"If-Unmodified-Since": "garbage"}, 206),
    ]
    for headers, status in cases:
        response = get(server, "/static/big.bin", Range="bytes=0-9", **headers)
        assert response.status_code == status, headers
        if status == 412:
            assert response.content == b"Precondition Failed\n"


def test_list_headers_on_several_lines_are_one_list(server):
    etag = get(server, "/static/demo/site.css", **{"Accept-Encoding": "identity"}
               ).headers["etag"]
    status, _, _ = raw_get(server.port, "/static/demo/site.css",
                           f'If-None-Match: {etag}\r\nIf-None-Match: "other"\r\n'
                           "Accept-Encoding: identity\r\n")
    assert status == 304


def test_if_modified_since_that_is_not_an_http_date_is_ignored(server):
    """RFC 9110 13.1.3: a date without its GMT zone is not an HTTP-date; read as local time
    it would be off by the server's offset."""
    modified = get(server, "/static/demo/site.css").headers["last-modified"]
    status, _, _ = raw_get(server.port, "/static/demo/site.css",
                           f"If-Modified-Since: {modified.removesuffix(' GMT')}\r\n")
    assert status == 200


def test_large_file_streams_whole(server, static_root):
    big = (static_root / "big.bin").read_bytes()
    response = get(server, "/static/big.bin")
    assert response.headers["content-length"] == str(len(big))
    assert response.headers["content-type"] == "application/octet-stream"
    assert hashlib.sha256(response.content).digest() == hashlib.sha256(big).digest()


def test_head_sends_headers_only(server):
    status, headers, body = raw_get(server.port, "/static/demo/site.css", method="HEAD")
    assert status == 200 and body == b""
    assert headers["content-length"] == str(len(CSS))


def test_post_is_not_allowed(server):
    response = httpx.post(server.url + "/static/demo/site.css", timeout=30)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("target", [
    "/static/",
    "/static/demo",
    "/static/demo/",
    "/static/../manage.py",
    "/static/demo/../../settings.py",
    "/static/%2e%2e/settings.py",
    "/static/demo%2fsite.css",
    "/static/demo%2Fsite.css",
    "/static/demo%5csite.css",
    "/static/demo\\site.css",
    "/static/demo/site.css%00",
    "/static//etc/passwd",
    "/static/escape.txt",
    "/static/missing.css",
    "/static/pipe.css",  # a FIFO: opening it would block a worker thread for ever
    "/static/" + "a" * 300 + ".css",
    "/static/" + "a/" * 3000 + "b.css",
])
def test_refused_paths_are_404_before_django(server, target):
    status, headers, body = raw_get(server.port, target)
    assert status in (400, 404), (target, status)
    if status == 404:
        # answered by the static server, not by Django's HTML 404 page
        assert body == b"Not Found\n"
    assert b"outside the root" not in body


def test_a_symlink_out_of_the_root_is_logged(server):
    """``collectstatic --link`` fills STATIC_ROOT with links to the apps' own static
    directories; every one of them is refused, so the operator must be told why."""
    start = server.line_count()
    status, _, body = raw_get(server.port, "/static/linked.txt")
    assert status == 404 and body == b"Not Found\n"
    server.wait_for(r"WARNING .*linked\.txt resolves to .*secret\.txt, outside STATIC_ROOT",
                    start=start)


def test_symlink_inside_the_root_is_served(server):
    response = get(server, "/static/inside.css", **{"Accept-Encoding": "identity"})
    assert response.status_code == 200 and response.content == CSS


def test_without_static_django_answers_and_the_check_warns(tmp_path, static_root):
    module = settings_module(tmp_path, 'DAPHNE = {**DAPHNE, "STATIC": False}')
    env = {"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db.sqlite3"),
           "EXAMPLE_STATIC_ROOT": str(static_root), "DJANGO_DEBUG": "0"}
    process = ManageProcess(["daphne", "-p", "0", "--settings", module], env=env)
    try:
        match = process.wait_for(LISTEN_RE)
        process.wait_for("Server ready")
        assert "(django_daphne.W002) DEBUG is off and nothing serves static files" in (
            process.output
        )
        response = httpx.get(f"http://127.0.0.1:{match.group(2)}/static/demo/site.css")
        assert response.status_code == 404
        assert "text/html" in response.headers["content-type"]  # Django's 404 page
    finally:
        process.stop()


def test_a_cdn_static_url_is_served_at_its_path(tmp_path, static_root):
    """STATIC_URL on a CDN that pulls from this server (as WhiteNoise documents it): the
    files are served at the URL's path, open to pages of other origins (fonts, modules)."""
    module = settings_module(tmp_path, 'STATIC_URL = "https://cdn.example.com/static/"')
    env = {"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db.sqlite3"),
           "EXAMPLE_STATIC_ROOT": str(static_root), "DJANGO_DEBUG": "0"}
    process = ManageProcess(["daphne", "-p", "0", "--static", "--settings", module], env=env)
    try:
        match = process.wait_for(LISTEN_RE)
        process.wait_for("Server ready")
        response = httpx.get(f"http://127.0.0.1:{match.group(2)}/static/demo/site.css",
                             headers={"Accept-Encoding": "identity"})
        assert response.status_code == 200 and response.content == CSS
        assert response.headers["cache-control"] == "no-cache"  # ours, not Django's
        assert response.headers["access-control-allow-origin"] == "*"
    finally:
        process.stop()


def test_static_url_at_the_root_is_refused(tmp_path, static_root):
    module = settings_module(tmp_path, 'STATIC_URL = "/"')
    env = {"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db.sqlite3"),
           "EXAMPLE_STATIC_ROOT": str(static_root), "DJANGO_DEBUG": "0"}
    result = run_manage("daphne", "-p", "0", "--static", "--settings", module, env=env)
    assert result.returncode != 0
    assert "cannot serve STATIC_URL '/': it would take over every URL of the site" in (
        result.stdout), result.stdout
    assert "Traceback" not in result.stdout


def test_static_setting_source_in_show_config(tmp_path):
    env = {"EXAMPLE_DB": str(tmp_path / "db.sqlite3")}
    result = run_manage("daphne", "--show-config", env=env)
    assert re.search(r"^STATIC\s+True\s+settings$", result.stdout, re.M), result.stdout
    module = settings_module(tmp_path, 'DAPHNE = {}')
    result = run_manage("daphne", "--show-config", "--static", "--settings", module,
                        env={**env, "PYTHONPATH": str(tmp_path)})
    assert re.search(r"^STATIC\s+True\s+command line$", result.stdout, re.M), result.stdout




def test_static_files_never_read_stay_bounded(static_root):
    """The file goes out a chunk at a time as the client takes it, whatever the client: 200
    pipelined requests for a 5 MiB file with nothing read, then 20 HTTP/2 streams for it
    with every window open and nothing read.  Peak memory stays bounded (from /proc) and
    the send timeout cuts each client off; the server serves meanwhile and afterwards."""
    import socket

    from tests.h2client import SETTINGS, H2Client
    from tests.protocols.test_resource_bounds import BOUND_KIB, CUT_OFF, send_what_is_taken

    env = {"EXAMPLE_DB": str(static_root.parent / "db.sqlite3"),
           "EXAMPLE_STATIC_ROOT": str(static_root), "DJANGO_DEBUG": "0"}
    process = ManageProcess(["daphne", "-p", "0", "--static", "--send-timeout", "2"], env=env)
    try:
        port = int(process.wait_for(LISTEN_RE).group(2))
        process.wait_for("Server ready")
        url = f"http://127.0.0.1:{port}"

        def serving():
            assert httpx.get(url + "/static/big.bin", timeout=30).content == (
                static_root / "big.bin").read_bytes()

        def peak():
            with open(f"/proc/{process.proc.pid}/status") as status:
                return next(int(line.split()[1]) for line in status
                            if line.startswith("VmHWM:"))

        serving()
        before = peak()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            send_what_is_taken(sock, b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
            serving()
            process.wait_for(CUT_OFF)
        mark = process.line_count()
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with H2Client(0, sock=sock, settings={SETTINGS.INITIAL_WINDOW_SIZE: 2**31 - 1}) as h2:
            h2.open_window(2**31 - 1 - 65535)
            for _ in range(20):
                h2.request("/static/big.bin")
            serving()
            process.wait_for(CUT_OFF, start=mark)
        assert peak() - before < BOUND_KIB, (before, peak())
        serving()
    finally:
        process.stop()


@pytest.mark.parametrize("target,headers", [
    ("/static/demo/site.css", ""),  # a file, with every header the handler sends
    ("/static/demo/site.css", "Range: bytes=0-3\r\n"),  # a 206
    ("/static/nope.css", ""),  # a 404
])
def test_static_response_header_names_have_one_case(server, target, headers):
    """Every header name of a static file response is written in HTTP/1.1's usual case,
    as the server's own Date and Server are (it used to mix content-type with Date)."""
    request = (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
               f"{headers}\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    names = [line.partition(":")[0] for line in head[1:]]
    assert len(names) >= 3, head
    for name in names:
        assert re.fullmatch(r"(?:[A-Z][A-Za-z]*|ETag)(?:-[A-Z][A-Za-z]*)*", name), head
