"""``manage.py runserver`` on django-daphne: Django's banner, checks, migrations warning,
static files, request log, autoreload, Ctrl-C, ``--noasgi``, and the DAPHNE limits."""

from __future__ import annotations

import json
import re
import signal
import socket

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

import django_daphne

from ..django_helpers import (
    BANNER_RE,
    ROOT,
    ManageProcess,
    copy_example,
    free_port,
    run_manage,
    settings_module,
)

CSS = (ROOT / "example_project/demo/static/demo/site.css").read_bytes()


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory):
    """A migrated SQLite file; each test copies it."""
    path = tmp_path_factory.mktemp("db") / "db.sqlite3"
    result = run_manage("migrate", "-v", "0", env={"EXAMPLE_DB": str(path)})
    assert result.returncode == 0, result.stdout
    return path


@pytest.fixture
def env(tmp_path, migrated_db):
    db = tmp_path / "db.sqlite3"
    db.write_bytes(migrated_db.read_bytes())
    return {"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(db)}


@pytest.fixture
def runserver(env):
    started = []

    def start(*args, extra_env=None, cwd=None, pty=False):
        process = ManageProcess(["runserver", *args], env={**env, **(extra_env or {})},
                                cwd=cwd, pty=pty)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def url(process, path="/", start=0) -> str:
    match = process.wait_for(BANNER_RE, start=start)
    return f"http://{match.group(1)}:{match.group(2)}{path}"


def test_banner_static_files_and_request_log(runserver):
    server = runserver("127.0.0.1:0")
    match = server.wait_for(BANNER_RE)
    assert int(match.group(2)) > 0
    output = server.output
    assert "Performing system checks..." in output
    assert "System check identified no issues (0 silenced)." in output
    assert "using settings 'example_project.settings'" in output
    assert (f"Starting ASGI/django-daphne version {django_daphne.__version__} development "
            "server at http://127.0.0.1:") in output
    assert "Quit the server with CONTROL-C." in output
    assert "unapplied migration" not in output
    response = httpx.get(url(server, "/static/demo/site.css"))
    assert response.status_code == 200
    assert response.content == CSS
    assert response.headers["content-type"].startswith("text/css")
    # Django's request line format, on the django.server logger
    server.wait_for(r'^\[\d\d/\w{3}/\d{4} [\d:]{8}\] "GET /static/demo/site.css HTTP/1.1" 200 '
                    + str(len(CSS)) + "$")
    assert httpx.get(url(server, "/nope/")).status_code == 404
    server.wait_for(r'"GET /nope/ HTTP/1.1" 404 \d+$')


def test_nostatic_turns_static_files_off(runserver):
    server = runserver("127.0.0.1:0", "--nostatic")
    assert httpx.get(url(server, "/static/demo/site.css")).status_code == 404
    assert httpx.get(url(server, "/json/")).status_code == 200


def test_no_static_files_when_debug_is_off_unless_insecure(runserver):
    plain = runserver("127.0.0.1:0", extra_env={"DJANGO_DEBUG": "0"})
    insecure = runserver("127.0.0.1:0", "--insecure", extra_env={"DJANGO_DEBUG": "0"})
    assert httpx.get(url(plain, "/static/demo/site.css")).status_code == 404
    assert httpx.get(url(plain, "/json/")).status_code == 200
    response = httpx.get(url(insecure, "/static/demo/site.css"))
    assert response.status_code == 200 and response.content == CSS


def test_unapplied_migrations_warning(runserver, tmp_path):
    server = runserver("127.0.0.1:0", extra_env={"EXAMPLE_DB": str(tmp_path / "fresh.sqlite3")})
    server.wait_for(r"You have \d+ unapplied migration\(s\)")
    server.wait_for(r"Run 'python manage.py migrate' to apply them\.")
    assert httpx.get(url(server, "/json/")).status_code == 200


@pytest.mark.parametrize("reload", [True, False], ids=["autoreload", "noreload"])
def test_ctrl_c_exits_cleanly(runserver, reload):
    server = runserver("127.0.0.1:0", *([] if reload else ["--noreload"]))
    assert httpx.get(url(server, "/json/")).status_code == 200
    server.signal(signal.SIGINT, group=True)  # as a terminal's Ctrl-C does
    assert server.wait_exit() == 0
    assert "Traceback" not in server.output
    # the server stopped gracefully: the lifespan shutdown ran
    assert "Example project shutting down" in server.output


def test_autoreload_restarts_after_a_source_change(tmp_path, env):
    copy_example(tmp_path)
    port = free_port()
    server = ManageProcess(["runserver", f"127.0.0.1:{port}"], env=env, cwd=tmp_path)
    try:
        before = httpx.get(url(server, "/json/")).json()
        assert before == {"message": "Hello, World!"}
        mark = server.line_count()
        views = tmp_path / "example_project/demo/views.py"
        source = views.read_text().replace("Hello, World!", "Hello, reloaded!")
        # the reloader compares each file with its first scan, which under load can come
        # after our edit: edit again (a new mtime each time) until it reports the change
        for attempt in range(10):
            views.write_text(source + f"\n# edit {attempt}\n")
            try:
                server.wait_for(r"views\.py changed, reloading\.", timeout=3, start=mark)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError("the reloader never noticed the edit:\n" + server.output)
        after = url(server, "/json/", start=mark + 1)  # the banner of the restarted server
        assert httpx.get(after).json() == {"message": "Hello, reloaded!"}
        # the old server stopped gracefully before the restart
        assert "Example project shutting down" in server.output
    finally:
        server.stop()


def test_noasgi_runs_djangos_wsgi_server(runserver):
    server = runserver("127.0.0.1:0", "--noasgi", "--noreload")
    match = server.wait_for(r"Starting development server at http://127\.0\.0\.1:(\d+)/")
    assert "django-daphne" not in server.output
    response = httpx.get(f"http://127.0.0.1:{match.group(1)}/json/")
    assert response.json() == {"message": "Hello, World!"}
    assert "WSGIServer" in response.headers["server"]


def test_request_lines_are_coloured_like_djangos(runserver):
    from django.utils.termcolors import DARK_PALETTE, PALETTES, colorize

    palette = PALETTES[DARK_PALETTE]
    server = runserver("127.0.0.1:0", pty=True)  # Django colours only on a terminal
    httpx.get(url(server, "/nope/"))
    httpx.get(url(server, "/json/"))
    for pattern, role in ((r'"GET /nope/ HTTP/1.1" 404 \d+', "HTTP_NOT_FOUND"),
                          (r'"GET /json/ HTTP/1.1" 200 \d+', "HTTP_SUCCESS")):
        match = server.wait_for(pattern)
        message = match.group(0)
        assert match.string.endswith("] " + colorize(message, **palette[role])), (
            repr(match.string)
        )
    assert palette["HTTP_NOT_FOUND"], "the 404 line is coloured"


def test_daphne_limits_apply(runserver, tmp_path):
    module = settings_module(tmp_path, 'DAPHNE = {"MAX_REQUEST_LINE": 100}')
    server = runserver("127.0.0.1:0", "--settings", module)
    match = server.wait_for(BANNER_RE)
    with socket.create_connection((match.group(1), int(match.group(2))), timeout=10) as sock:
        sock.sendall(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 414 ")
    assert httpx.get(url(server, "/json/")).status_code == 200


def test_ipv6(runserver):
    server = runserver("--ipv6", "0", "--noreload")
    match = server.wait_for(BANNER_RE)
    assert match.group(1) == "::1"
    assert f"at http://[::1]:{match.group(2)}/" in server.output
    response = httpx.get(f"http://[::1]:{match.group(2)}/async/")
    assert response.json()["view"] == "async"


def test_port_in_use_is_one_clear_line(env):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        result = run_manage("runserver", f"127.0.0.1:{port}", "--noreload", env=env)
    assert result.returncode == 1
    assert f"Cannot listen on 127.0.0.1:{port}: address already in use" in result.stdout
    assert "Traceback" not in result.stdout




def test_websocket_chat_and_its_log_lines(runserver):
    server = runserver("127.0.0.1:0", "--noreload")
    base = url(server, "")
    ws = "ws" + base[len("http"):] + "/ws/chat/lobby/"
    with connect(ws, origin=base, open_timeout=30) as ada, \
            connect(ws, origin=base, open_timeout=30) as bob:
        ada.send(json.dumps({"author": "ada", "text": "hi bob"}))
        assert json.loads(bob.recv(timeout=10)) == {"author": "ada", "text": "hi bob"}
    with pytest.raises(InvalidStatus):
        connect(ws, origin="http://evil.example", open_timeout=30).close()
    client = r"\[127\.0\.0\.1:\d+\]$"
    for action in ("HANDSHAKING", "CONNECT", "DISCONNECT", "REJECT"):
        server.wait_for(rf"^\[[^]]+\] WebSocket {action} /ws/chat/lobby/ {client}")


def test_daphnes_runserver_flags_are_accepted_and_applied(runserver, tmp_path):
    """Daphne's runserver flags (--http_timeout, --websocket_handshake_timeout,
    --websocket-max-message-size, --websocket-max-frame-size) keep working for a project
    that switches; its DAPHNE_WEBSOCKET_MAX_* settings too, with the flags winning."""
    from websockets.exceptions import ConnectionClosedError

    module = settings_module(tmp_path, """
        ASGI_APPLICATION = "tests.apps.app"
        DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = 100
        DAPHNE_WEBSOCKET_MAX_FRAME_SIZE = 100
    """)
    server = runserver("127.0.0.1:0", "--noreload", "--settings", module,
                       "--http_timeout", "1", "--websocket_handshake_timeout", "3",
                       "--websocket-max-message-size", "1000")
    base = url(server, "")
    assert httpx.get(base + "/hang", timeout=30).status_code == 503
    with connect("ws" + base[len("http"):] + "/ws/echo", open_timeout=30,
                 compression=None) as ws:
        ws.send("a" * 100)  # within the settings' frame limit
        assert ws.recv(timeout=10) == "a" * 100
        ws.send("b" * 101)  # one frame over DAPHNE_WEBSOCKET_MAX_FRAME_SIZE
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1009
    with connect("ws" + base[len("http"):] + "/ws/echo", open_timeout=30,
                 compression=None, max_size=None) as ws:
        # fragments under the frame limit: the message limit is the flag's 1000, not 100
        ws.send(["c" * 100] * 5)
        assert ws.recv(timeout=10) == "c" * 500
        with pytest.raises(ConnectionClosedError) as closed:
            # the server closes once the fragments pass 1000 bytes: the client may hear
            # of it while it still sends the last of them, or at its next receive
            ws.send(["d" * 100] * 11)
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1009
    result = run_manage("daphne", "--show-config", "--settings", module,
                        env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stdout
    rows = {line.split()[0]: tuple(re.split(r"\s{2,}", line.strip())[1:])
            for line in result.stdout.splitlines() if line.strip()}
    assert rows["WEBSOCKET_MAX_MESSAGE_SIZE"] == ("100", "settings")
    assert rows["WEBSOCKET_MAX_FRAME_SIZE"] == ("100", "settings")


@pytest.mark.parametrize("reload", [[], ["--noreload"]], ids=["autoreload", "noreload"])
def test_bad_daphne_runserver_flag_names_it(env, reload):
    # refused before the autoreloader starts: no traceback in its thread, no waiting for a
    # file change that cannot fix a flag
    result = run_manage("runserver", *reload, "--http_timeout", "soon", "0", env=env)
    assert result.returncode == 1
    assert "--http_timeout: expected a number of seconds, got 'soon'" in result.stdout
    assert "Traceback" not in result.stdout


def test_a_request_in_flight_delays_a_stop_by_two_seconds_at_most(runserver, tmp_path):
    """Ctrl-C (and each autoreload restart) lets requests in flight finish for at most 2 s
    in development, not the production SHUTDOWN_TIMEOUT: an open stream (server-sent
    events, a long poll) must not hold every reload for 30 s."""
    module = settings_module(tmp_path, 'DAPHNE = {"SHUTDOWN_TIMEOUT": 600}')
    server = runserver("127.0.0.1:0", "--noreload", "--settings", module)
    match = server.wait_for(BANNER_RE)
    with socket.create_connection((match.group(1), int(match.group(2))), timeout=30) as sock:
        sock.sendall(b"GET /stream/?count=100000&delay=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200 ")
        server.signal(signal.SIGINT, group=True)
        assert server.wait_exit() == 0
    assert "Shutdown timeout (2.0s) passed with 1 connection(s) still open" in server.output
    assert "Example project shutting down" in server.output


def test_production_warning_as_djangos_runserver_prints_it(runserver):
    """Django's runserver warns that it is no production server (hidden by
    DJANGO_RUNSERVER_HIDE_WARNING=true); ours names the production server to use."""
    warned = runserver("127.0.0.1:0", "--noreload")
    warned.wait_for(BANNER_RE)
    warned.wait_for(r"^WARNING: This is a development server\. Do not use it in a production "
                    r"setting\. Use `manage\.py daphne` instead\.$")
    hidden = runserver("127.0.0.1:0", "--noreload",
                       extra_env={"DJANGO_RUNSERVER_HIDE_WARNING": "true"})
    hidden.wait_for(BANNER_RE)
    hidden.signal(signal.SIGINT, group=True)
    assert hidden.wait_exit() == 0
    assert "Quit the server with CONTROL-C." in hidden.output
    assert "WARNING: This is a development server" not in hidden.output


def test_nothreading_is_accepted_and_said_to_be_ignored(runserver):
    server = runserver("127.0.0.1:0", "--nothreading")
    assert httpx.get(url(server, "/json/")).status_code == 200
    assert "--nothreading is ignored: django-daphne serves every request" in server.output


def edit_until_noticed(server, path, source: str, mark: int) -> int:
    """Write ``source`` to ``path`` (again, with a fresh trailing comment, until the
    reloader reports the change: its first scan of the file may come after an edit); the
    line count once it has."""
    pattern = re.escape(path.name) + r" changed, reloading\."
    for attempt in range(15):
        path.write_text(source + f"\n# edit {attempt}\n")
        try:
            server.wait_for(pattern, timeout=3, start=mark)
            return server.line_count()
        except AssertionError:
            continue
    raise AssertionError(f"the reloader never noticed {path.name}:\n" + server.output)


BREAKAGES = {
    "syntax error in a consumer": ("example_project/chat/consumers.py", "\ndef broken(:\n"),
    "name error in asgi.py": ("example_project/asgi.py", "\nundefined_name_in_asgi\n"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
@pytest.mark.parametrize("when", ["mid-run", "at start"])
def test_runserver_serves_again_once_an_import_error_is_fixed(tmp_path, env, breakage, when):
    """The file that failed to import is watched: its fix restarts the server, whether it
    broke while runserver ran or runserver started broken."""
    copy_example(tmp_path)
    relative, bad_code = BREAKAGES[breakage]
    path = tmp_path / relative
    good = path.read_text()
    if when == "at start":
        path.write_text(good + bad_code)
    server = ManageProcess(["runserver", f"127.0.0.1:{free_port()}"], env=env, cwd=tmp_path)
    try:
        if when == "mid-run":
            assert httpx.get(url(server, "/json/")).status_code == 200
            mark = edit_until_noticed(server, path, good + bad_code, server.line_count())
        else:
            mark = 0
        server.wait_for(r"django_daphne\.E002", start=mark)
        assert path.name in server.output[-3000:]  # the error names the file
        mark = edit_until_noticed(server, path, good, server.line_count())
        assert httpx.get(url(server, "/json/", start=mark)).json() == {
            "message": "Hello, World!"}
    finally:
        server.stop()


def test_runserver_runs_one_process_whatever_workers_says(runserver, tmp_path):
    module = settings_module(tmp_path, """
        DAPHNE = {"WORKERS": 2, "MAX_REQUESTS": 1}
        CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    """)
    server = runserver("127.0.0.1:0", "--noreload", "-v", "2", "--settings", module)
    for _ in range(3):  # past MAX_REQUESTS: nothing is recycled in one process
        assert httpx.get(url(server, "/json/")).status_code == 200
    assert "runserver runs one process: DAPHNE['WORKERS'], DAPHNE['MAX_REQUESTS'] apply " \
        "to manage.py daphne and are ignored here." in server.output
    assert "Started worker" not in server.output
    assert "E011" not in server.output


def test_server_lines_and_request_lines_share_djangos_date_format(runserver, tmp_path):
    module = settings_module(tmp_path, 'DAPHNE = {"VERBOSITY": 2}')
    server = runserver("127.0.0.1:0", "--noreload", "--settings", module)
    httpx.get(url(server, "/json/"))
    stamp = r"^\[\d\d/[A-Z][a-z]{2}/\d{4} \d\d:\d\d:\d\d\] "
    server.wait_for(stamp + r'"GET /json/ HTTP/1\.1" 200')
    server.wait_for(stamp + r"Listening on TCP address 127\.0\.0\.1:\d+")
