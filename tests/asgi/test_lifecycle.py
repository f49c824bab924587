"""Lifespan, graceful shutdown, application timeouts, and the options that shape the scope
and the logs, over real sockets and real signals."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time

import httpx
import pytest
from websockets.sync.client import connect

from tests.conftest import read_response


class Background:
    """Run a blocking HTTP request in a thread; collect its result or its exception."""

    def __init__(self, fn):
        self.result = None
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            self.result = fn()
        except Exception as exc:  # handed to the test
            self.error = exc

    def join(self, timeout=20):
        self.thread.join(timeout)
        assert not self.thread.is_alive()
        if self.error:
            raise self.error
        return self.result


# -- lifespan


def test_lifespan_on_failed_startup_exits_with_the_message(start_server):
    server = start_server("--lifespan", "on", env={"TEST_LIFESPAN_FAIL": "1"}, ready=False)
    assert server.wait_exit() == 1
    assert "Application startup failed: database is down" in server.output
    assert "Listening on" not in server.output


def test_lifespan_auto_with_an_app_without_lifespan(start_server):
    server = start_server("-v", "2", app="tests.plain_apps:no_lifespan")
    server.wait_for(r"does not support lifespan")
    response = httpx.get(server.url + "/")
    assert response.status_code == 200
    assert response.json()["has_state"] is False


def test_lifespan_on_with_an_app_without_lifespan_fails(start_server):
    server = start_server("--lifespan", "on", app="tests.plain_apps:no_lifespan", ready=False)
    assert server.wait_exit() == 1
    assert "does not support lifespan" in server.output
    assert "ValueError: only http" in server.output


def test_lifespan_off_never_calls_the_app_for_it(start_server):
    server = start_server("--lifespan", "off")
    assert "state" not in httpx.get(server.url + "/echo").json()


def test_lifespan_shutdown_runs_on_sigterm(start_server, tmp_path):
    marker = tmp_path / "shutdown"
    server = start_server(env={"TEST_LIFESPAN_SHUTDOWN_FILE": str(marker)})
    assert httpx.get(server.url + "/echo").json()["state"] == {"started": "yes"}
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert marker.read_text() == "shutdown"


# -- graceful shutdown


def test_graceful_shutdown_finishes_in_flight_and_stops_accepting(start_server):
    server = start_server()
    port = server.port
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    idle.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    read_response(idle, bytearray())  # a keep-alive connection, now idle
    pending = Background(lambda: httpx.get(f"http://127.0.0.1:{port}/sleep?seconds=1.5"))
    server.wait_for("app: sleeping")
    server.signal(signal.SIGTERM)
    server.wait_for("shutting down gracefully")
    # the idle keep-alive connection is closed at once
    assert idle.recv(100) == b""
    idle.close()
    # new connections are refused while the in-flight request finishes
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    response = pending.join()
    assert response.status_code == 200 and response.text == "slept"
    assert response.headers["connection"] == "close"
    assert server.wait_exit() == 0


def test_shutdown_timeout_cancels_stuck_requests(start_server):
    server = start_server("--shutdown-timeout", "0.3")
    pending = Background(lambda: httpx.get(server.url + "/hang", timeout=10))
    server.wait_for("app: hanging")
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert "Shutdown timeout (0.3s) passed" in server.output
    with pytest.raises(httpx.HTTPError):
        pending.join()


def test_second_signal_stops_at_once(start_server):
    server = start_server("--shutdown-timeout", "60")
    pending = Background(lambda: httpx.get(server.url + "/hang", timeout=10))
    server.wait_for("app: hanging")
    server.signal(signal.SIGINT)
    server.wait_for("shutting down gracefully")
    server.signal(signal.SIGINT)
    assert server.wait_exit(timeout=10) == 1
    assert "Second stop signal" in server.output
    with pytest.raises(httpx.HTTPError):
        pending.join()


# -- application timeouts


def test_http_timeout_answers_503_and_cancels(start_server):
    server = start_server("-t", "0.3")
    response = httpx.get(server.url + "/hang")
    assert response.status_code == 503
    # after a moment to end on its own, the app is cancelled and runs its cleanup
    # (recorded by the test app)
    deadline = time.monotonic() + 10
    while "/hang" not in httpx.get(server.url + "/disconnects").json():
        assert time.monotonic() < deadline, "the application was never cancelled"
    assert httpx.get(server.url + "/echo").status_code == 200


def test_http_timeout_ends_a_django_view_without_a_stray_traceback(start_server):
    """Django's handler hears http.disconnect once the 503 is out and cancels its own view;
    cancelled from outside at once, its disconnect listener would raise RequestAborted where
    nobody waits ("Task exception was never retrieved")."""
    server = start_server("-t", "0.3", app="tests.django_slow_app:application")
    assert httpx.get(server.url + "/slow/").status_code == 503
    server.wait_for("answered 503")
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert "Traceback" not in server.output and "never retrieved" not in server.output


def test_a_stop_during_lifespan_startup_never_listens(start_server, tmp_path):
    marker = tmp_path / "shutdown"
    server = start_server(env={"TEST_LIFESPAN_SLOW": "1",
                               "TEST_LIFESPAN_SHUTDOWN_FILE": str(marker)}, ready=False)
    server.wait_for("lifespan: starting")
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert "Listening on" not in server.output and "Server ready" not in server.output
    assert marker.read_text() == "shutdown"  # what startup opened is closed


def test_http_timeout_0_is_no_limit_as_in_daphne(start_server):
    server = start_server("-t", "0")
    response = httpx.get(server.url + "/sleep?seconds=0.3")
    assert response.status_code == 200 and response.text == "slept"


def test_shutdown_timeout_ends_a_django_view_without_a_stray_traceback(start_server):
    """Past the shutdown timeout, Django's handler first hears http.disconnect and cancels
    its own view; cancelled from outside at once, its disconnect listener would raise
    RequestAborted where nobody waits ("Task exception was never retrieved")."""
    server = start_server("--shutdown-timeout", "0.3", app="tests.django_slow_app:application")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /slow/ HTTP/1.1\r\nHost: x\r\n\r\n")
        server.wait_for("view: waiting")
        server.proc.send_signal(signal.SIGTERM)
        try:
            received = sock.recv(65536)
        except ConnectionResetError:  # cut off: the connection is aborted, not closed
            received = b""
        assert received == b""  # the request unanswered
    assert server.wait_exit() == 0
    assert "Shutdown timeout (0.3s) passed" in server.output
    assert "Traceback" not in server.output and "never retrieved" not in server.output


def test_application_close_timeout_kills_a_lingering_app(start_server):
    server = start_server("--application-close-timeout", "0.2")
    response = httpx.get(server.url + "/ignore-disconnect")
    assert response.text == "done"
    server.wait_for("took too long to shut down and was killed")
    assert "/ignore-disconnect" in httpx.get(server.url + "/disconnects").json()


# -- options that shape the scope and the output


def test_proxy_headers(start_server):
    headers = {
        "X-Forwarded-For": "10.9.9.9, 203.0.113.7",
        "X-Forwarded-Port": "4431",
        "X-Forwarded-Proto": "https",
    }
    plain = start_server()
    scope = httpx.get(plain.url + "/echo", headers=headers).json()
    assert scope["client"][0] == "127.0.0.1" and scope["scheme"] == "http"
    trusting = start_server("--proxy-headers")
    scope = httpx.get(trusting.url + "/echo", headers=headers).json()
    assert scope["client"] == ["203.0.113.7", 4431]
    assert scope["scheme"] == "https"


def test_proxy_headers_take_the_port_and_brackets_off_an_address(start_server):
    # some proxies (IIS, Azure) write the client's port into X-Forwarded-For
    server = start_server("--proxy-headers")
    cases = [
        ({"X-Forwarded-For": "203.0.113.7:5678"}, ["203.0.113.7", 5678]),
        ({"X-Forwarded-For": "10.0.0.1, [2001:db8::7]:443", "X-Forwarded-Port": "80"},
         ["2001:db8::7", 443]),
        ({"X-Forwarded-For": "[2001:db8::7]", "X-Forwarded-Port": "80"}, ["2001:db8::7", 80]),
        ({"X-Forwarded-For": "2001:db8::7"}, ["2001:db8::7", 0]),
    ]
    for headers, client in cases:
        assert httpx.get(server.url + "/echo", headers=headers).json()["client"] == client


def test_proxy_header_names_are_configurable(start_server):
    server = start_server("--proxy-headers", "--proxy-headers-host", "X-Real-IP",
                          "--proxy-headers-port", "X-Real-Port")
    scope = httpx.get(server.url + "/echo", headers={
        "X-Real-IP": "198.51.100.4", "X-Real-Port": "99", "X-Forwarded-For": "1.1.1.1"
    }).json()
    assert scope["client"] == ["198.51.100.4", 99]


def test_proxy_header_named_with_an_underscore_still_counts(start_server):
    # names with underscores never reach the application, but a proxy header configured
    # with one is still read (as Daphne reads it)
    server = start_server("--proxy-headers", "--proxy-headers-host", "X_Real_IP")
    scope = httpx.get(server.url + "/echo", headers={"X_Real_IP": "198.51.100.4"}).json()
    assert scope["client"] == ["198.51.100.4", 0]
    assert "x_real_ip" not in [name for name, _ in scope["headers"]]


def test_proxy_header_names_without_proxy_headers_is_an_error(start_server):
    server = start_server("--proxy-headers-host", "X-Real-IP", ready=False)
    assert server.wait_exit() == 2
    assert "--proxy-headers-host (PROXY_HEADERS_HOST) has no effect without --proxy-headers" \
        in server.output


def test_root_path(start_server):
    server = start_server("--root-path", "/mounted")
    assert httpx.get(server.url + "/echo").json()["root_path"] == "/mounted"


def test_server_name_options(start_server):
    named = start_server("-s", "edge")
    assert httpx.get(named.url + "/echo").headers["server"] == "edge"
    anonymous = start_server("--no-server-name")
    assert "server" not in httpx.get(anonymous.url + "/echo").headers


def test_access_log_to_a_file(start_server, tmp_path):
    log = tmp_path / "access.log"
    server = start_server("--access-log", str(log))
    httpx.get(server.url + "/echo?q=1")
    httpx.post(server.url + "/no-read", content=b"abc")
    httpx.head(server.url + "/no-read")
    httpx.get(server.url + "/no-content")
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("127.0.0.1:")
    assert " - - [" in lines[0]
    assert lines[0].split("] ", 1)[1].startswith('"GET /echo?q=1" 200 ')
    assert '"POST /no-read" 200 21' in lines[1]
    # no body goes out for HEAD, 204 or 304: the size is "-", as Daphne logs it
    assert lines[2].endswith('"HEAD /no-read" 200 -')
    assert lines[3].endswith('"GET /no-content" 204 -')


def test_access_log_format_adds_protocol_and_duration(start_server, tmp_path):
    """--access-log-format picks the fields: the protocol (HTTP/1.1, HTTP/2, WebSocket)
    and the time the response took, which Daphne's line cannot show."""
    log = tmp_path / "access.log"
    server = start_server("--access-log", str(log), "--access-log-format",
                          "%(protocol)s %(status)s %(duration)s %(request)s")
    httpx.get(server.url + "/echo")
    with httpx.Client(http1=False, http2=True) as client:  # h2c by prior knowledge
        client.get(server.url + "/echo?h2=1")
    slow = httpx.get(server.url + "/sleep?seconds=0.3")
    assert slow.status_code == 200
    with connect(f"ws://127.0.0.1:{server.port}/ws/echo") as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "hi"
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    lines = log.read_text().splitlines()
    assert re.fullmatch(r"HTTP/1\.1 200 \d+\.\d{3} GET /echo", lines[0]), lines
    assert re.fullmatch(r"HTTP/2 200 \d+\.\d{3} GET /echo\?h2=1", lines[1]), lines
    took = float(lines[2].split()[2])
    assert lines[2].endswith("GET /sleep?seconds=0.3") and 0.3 <= took < 5, lines
    assert any(re.fullmatch(r"WebSocket - - WSCONNECT /ws/echo", line) for line in lines)


def test_a_bad_access_log_format_is_refused_naming_the_fields(start_server):
    server = start_server("--access-log-format", "%(client)s %(bytes)s", ready=False)
    assert server.wait_exit() == 2
    assert ("--access-log-format: unknown field 'bytes'; the fields are %(client)s, "
            "%(date)s") in server.output


def test_access_log_on_stdout_by_default_and_off_at_verbosity_0(start_server):
    server = start_server()
    httpx.get(server.url + "/echo")
    server.wait_for(r'"GET /echo" 200 \d+')
    # at verbosity 0 nothing is logged, not even readiness: hand the server a socket that
    # already listens, so the request simply waits in the backlog until it is served
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    quiet = start_server("--fd", str(listener.fileno()), "-v", "0", ready=False,
                         pass_fds=(listener.fileno(),))
    listener.close()
    assert httpx.get(f"http://127.0.0.1:{port}/pid").text == str(quiet.proc.pid)
    quiet.signal(signal.SIGTERM)
    assert quiet.wait_exit() == 0
    assert quiet.output == ""


def test_asgi_threads_sizes_the_thread_pool(start_server):
    server = start_server(env={"ASGI_THREADS": "3"})
    names = httpx.get(server.url + "/threads?n=3").json()
    # three blocking calls met at a barrier: three threads of our pool ran at once
    assert len(set(names)) == 3
    assert all(name.startswith("asgi-thread") for name in names)


def test_version_flag(start_server):
    from django_daphne import __version__

    server = start_server("--version", app=None, ready=False)
    assert server.wait_exit() == 0
    assert server.output.strip() == f"django-daphne {__version__}"


def test_access_log_request_header_fields(start_server, tmp_path):
    log = tmp_path / "access.log"
    server = start_server("--access-log", str(log), "--access-log-format",
                          "%(user_agent)s|%(referer)s|%(h_x_request_id)s|%(h_x_absent)s")
    httpx.get(server.url + "/echo", headers={"User-Agent": "probe/1.0", "Referer": "http://r/",
                                             "X-Request-Id": "abc-123"})
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert log.read_text().splitlines()[0] == "probe/1.0|http://r/|abc-123|-"


def test_access_log_as_json(start_server, tmp_path):
    import json

    log = tmp_path / "access.log"
    server = start_server("--access-log", str(log), "--access-log-format", "json")
    httpx.get(server.url + "/echo?x=1", headers={"User-Agent": "probe/1.0"})
    with connect(f"ws://127.0.0.1:{server.port}/ws/echo") as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "hi"
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    first = entries[0]
    assert first["client"] == "127.0.0.1" and isinstance(first["port"], int)
    assert first["request"] == "GET /echo?x=1" and first["status"] == 200
    assert first["protocol"] == "HTTP/1.1" and first["user_agent"] == "probe/1.0"
    assert first["referer"] is None and first["duration"] >= 0 and first["size"] > 0
    assert any(e["request"] == "WSCONNECT /ws/echo" and e["protocol"] == "WebSocket"
               for e in entries)


def test_access_log_through_logging(start_server):
    server = start_server("--access-log", "logging")
    httpx.get(server.url + "/echo")
    # the logging format (LOG_FMT: time and level) around Daphne's line
    server.wait_for(r'^\S+ \S+ INFO +127\.0\.0\.1:\d+ - - \[.*\] "GET /echo" 200 \d+$')


WINDOWS_LIKE = '''
# what Windows lacks, taken away before the server starts: SIGHUP and the job-control
# signals, fork, and an event loop that watches signals itself
import asyncio.unix_events
import os
import signal

for name in ("SIGHUP", "SIGTTIN", "SIGTTOU"):
    delattr(signal, name)
del os.fork


def add_signal_handler(self, *args, **kwargs):
    raise NotImplementedError


asyncio.unix_events._UnixSelectorEventLoop.add_signal_handler = add_signal_handler
'''


def test_serves_and_stops_where_posix_signals_and_fork_are_missing(start_server, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(WINDOWS_LIKE)
    env = {"PYTHONPATH": str(tmp_path)}
    server = start_server("--loop", "asyncio", env=env)
    assert httpx.get(server.url + "/echo").status_code == 200
    server.signal(signal.SIGINT)  # Ctrl-C
    assert server.wait_exit() == 0
    assert "Received SIGINT, shutting down gracefully" in server.output
    workers = start_server("--loop", "asyncio", "--workers", "2", env=env, ready=False)
    assert workers.wait_exit() == 2
    assert "--workers (WORKERS) and --max-requests need a POSIX system" in workers.output
