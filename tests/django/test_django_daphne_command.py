"""``manage.py daphne``: settings.py and the command line land in one Config, it serves the
project over real sockets, logs through Django's LOGGING and stops gracefully."""

from __future__ import annotations

import contextlib
import re
import signal
import socket

import httpx
import pytest

from ..django_helpers import LISTEN_RE, free_port, run_manage, settings_module


@contextlib.contextmanager
def listening_socket():
    """A socket that listens before the server starts (passed with --fd), so a request can
    be sent at once and is answered when the server is up, whatever it logs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock
    finally:
        sock.close()


def get(sock, path):
    host, port = sock.getsockname()
    return httpx.get(f"http://{host}:{port}{path}", timeout=30)


def listening(process) -> tuple[str, int]:
    match = process.wait_for(LISTEN_RE)
    process.wait_for("Server ready")
    return match.group(1), int(match.group(2))


def show_config(*args, env) -> dict[str, tuple[str, str]]:
    result = run_manage("daphne", "--show-config", *args, env=env)
    assert result.returncode == 0, result.stdout
    rows = {}
    for line in result.stdout.splitlines():
        key, value, source = re.split(r"\s{2,}", line.strip())
        if key.startswith("("):  # one row per binding: a list of them
            rows.setdefault(key, []).append((value, source))
        else:
            rows[key] = (value, source)
    return rows


def test_binds_where_settings_say(tmp_path, project, manage):
    port = free_port()
    module = settings_module(tmp_path, f'DAPHNE = {{"BIND": "127.0.0.1", "PORT": {port}}}')
    server = manage("daphne", "--settings", module)
    assert listening(server) == ("127.0.0.1", port)
    response = httpx.get(f"http://127.0.0.1:{port}/json/")
    assert response.json() == {"message": "Hello, World!"}


def test_command_line_port_overrides_settings(tmp_path, project, manage):
    taken = free_port()
    module = settings_module(tmp_path, f'DAPHNE = {{"PORT": {taken}}}')
    server = manage("daphne", "-p", "0", "--settings", module)
    host, port = listening(server)
    assert port != taken
    assert httpx.get(f"http://{host}:{port}/json/").status_code == 200


def test_addrport_like_runserver(manage):
    server = manage("daphne", "127.0.0.1:0")
    host, port = listening(server)
    assert host == "127.0.0.1" and port > 0
    assert httpx.get(f"http://{host}:{port}/sync/").json()["view"] == "sync"


def test_addrport_and_port_flag_conflict(project):
    result = run_manage("daphne", "8001", "-p", "8002", env=project)
    assert result.returncode == 1
    assert "Give either addrport or -b/--bind and -p/--port, not both." in result.stdout


def test_bad_flag_is_one_line_naming_it(project):
    result = run_manage("daphne", "-p", "70000", "--skip-checks", env=project)
    assert result.returncode == 1
    assert result.stdout.strip() == "CommandError: --port: must be at most 65535, got 70000"


def test_show_config_names_the_source_of_each_value(tmp_path, project):
    module = settings_module(tmp_path, """
        DAPHNE = {"HTTP_TIMEOUT": 12, "PROXY_HEADERS": True, "VERBOSITY": 2}
        FORCE_SCRIPT_NAME = "/mounted"
    """)
    rows = show_config("--settings", module, "-p", "9100", "--shutdown-timeout", "3",
                       "-e", "unix:/tmp/x.sock", env=project)
    assert rows["HTTP_TIMEOUT"] == ("12.0", "settings")
    assert rows["PROXY_HEADERS"] == ("True", "settings")
    assert rows["ROOT_PATH"] == ("'/mounted'", "settings")  # from FORCE_SCRIPT_NAME
    assert rows["VERBOSITY"] == ("2", "settings")
    assert rows["PORT"] == ("9100", "command line")
    assert rows["SHUTDOWN_TIMEOUT"] == ("3.0", "command line")
    assert rows["ENDPOINTS"] == ("['unix:/tmp/x.sock']", "command line")
    assert rows["MAX_HEADERS"] == ("100", "default")
    assert rows["APPLICATION"] == (
        "example_project.asgi:application", "settings (ASGI_APPLICATION)"
    )
    assert rows["(listening on)"] == [
        ("tcp:port=9100:interface=127.0.0.1", "command line"),
        ("unix:/tmp/x.sock", "command line"),
    ]
    assert rows["(reached at)"] == [("http://127.0.0.1:9100/", "command line"),
                                    ("UNIX socket /tmp/x.sock", "command line")]


def test_show_config_says_where_a_tls_endpoint_is_reached(tmp_path, project):
    rows = show_config("-e", "ssl:8443:privateKey=k.pem:certKey=c.pem", "-e",
                       r"tcp:port=8001:interface=\:\:1", env=project)
    # (settings.py's own binding is replaced by the command line's)
    assert rows["(reached at)"] == [("https://0.0.0.0:8443/ (every interface)", "command line"),
                                    ("http://[::1]:8001/", "command line")]


def test_bindings_on_the_command_line_replace_those_in_settings(tmp_path, project):
    """A process manager's socket (systemd:, --fd, -u) given on the command line is the one
    bound: settings.py's UNIX_SOCKET is not bound twice (docs/howto/deploying.rst's unit)."""
    module = settings_module(tmp_path, f'DAPHNE = {{"UNIX_SOCKET": "{tmp_path}/d.sock", '
                                       '"PORT": 8001, "HTTP_TIMEOUT": 5}')
    rows = show_config("--settings", module, env=project)
    assert rows["(listening on)"] == [("tcp:port=8001:interface=127.0.0.1", "settings"),
                                      (f"unix:{tmp_path}/d.sock", "settings")]
    rows = show_config("--settings", module, "-e", "systemd:domain=UNIX:index=0", env=project)
    assert rows["(listening on)"] == [("systemd:domain=UNIX:index=0", "command line")]
    assert rows["UNIX_SOCKET"] == ("None", "default")
    assert rows["HTTP_TIMEOUT"] == ("5.0", "settings")  # the rest of the settings stay
    # and a settings binding that cannot be used here (production's directory) is not
    # checked when the command line replaces it
    module = settings_module(tmp_path, 'DAPHNE = {"UNIX_SOCKET": "/nonexistent/d.sock"}',
                             name="production_settings")
    rows = show_config("--settings", module, "-p", "0", env=project)
    assert rows["(listening on)"] == [("tcp:port=0:interface=127.0.0.1", "command line")]


def test_show_config_verbosity_from_djangos_flag(tmp_path, project):
    module = settings_module(tmp_path, 'DAPHNE = {"VERBOSITY": 2}')
    rows = show_config("--settings", module, "-v", "0", env=project)
    assert rows["VERBOSITY"] == ("0", "command line")
    rows = show_config("--application", "tests.apps:app", env=project)
    assert rows["APPLICATION"] == ("tests.apps:app", "command line")
    assert rows["VERBOSITY"] == ("1", "default")


def test_application_flag_overrides_asgi_application(manage):
    server = manage("daphne", "-p", "0", "--application", "tests.apps.app")
    host, port = listening(server)
    scope = httpx.get(f"http://{host}:{port}/echo?x=1").json()
    assert scope["query_string"] == "x=1"


def test_root_path_from_force_script_name_reaches_django(tmp_path, manage):
    module = settings_module(tmp_path, 'FORCE_SCRIPT_NAME = "/mounted"')
    server = manage("daphne", "-p", "0", "--settings", module)
    host, port = listening(server)
    page = httpx.get(f"http://{host}:{port}/mounted/").text
    assert 'href="/mounted/chat/"' in page


def test_sigterm_stops_gracefully_with_lifespan_shutdown(manage):
    server = manage("daphne", "-p", "0")
    host, port = listening(server)
    assert "Lifespan startup ran at" in httpx.get(f"http://{host}:{port}/").text
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert "Received SIGTERM, shutting down gracefully" in server.output
    assert "Example project shutting down" in server.output
    assert "Server stopped" in server.output


def test_logging_follows_djangos_logging_setting(tmp_path, manage):
    log_file = tmp_path / "server.log"
    module = settings_module(tmp_path, f"""
        LOGGING = {{
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {{"tagged": {{"format": "TAGGED %(name)s %(message)s"}}}},
            "handlers": {{"file": {{"class": "logging.FileHandler",
                                   "filename": {str(log_file)!r}, "formatter": "tagged"}}}},
            "loggers": {{"django_daphne": {{"handlers": ["file"], "level": "INFO"}}}},
        }}
    """)
    with listening_socket() as sock:
        server = manage("daphne", "--fd", str(sock.fileno()), "--settings", module,
                        pass_fds=[sock.fileno()])
        assert get(sock, "/json/").status_code == 200
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    text = log_file.read_text()
    # the server's own lines went to LOGGING's file, not to the console
    assert re.search(r"TAGGED django_daphne\.server Listening on TCP address", text), text
    assert "TAGGED django_daphne.server Server stopped" in text
    assert "Listening on" not in server.output


def test_log_fmt_and_verbosity(manage):
    server = manage("daphne", "-p", "0", "--log-fmt", "LINE %(levelname)s %(message)s")
    host, port = listening(server)
    httpx.get(f"http://{host}:{port}/json/")
    server.wait_for(r'"GET /json/" 200')
    assert re.search(r"^LINE INFO Listening on", server.output, re.M)
    with listening_socket() as sock:
        quiet = manage("daphne", "--fd", str(sock.fileno()), "-v", "0",
                       pass_fds=[sock.fileno()])
        assert get(sock, "/json/").status_code == 200
    quiet.signal(signal.SIGTERM)
    assert quiet.wait_exit() == 0
    # -v 0: warnings only, and no access log
    assert "Listening on" not in quiet.output
    assert "GET /json/" not in quiet.output


@pytest.mark.parametrize("command", [
    ["daphne", "-p", "0"], ["runserver", "--noreload", "0"], ["runserver", "0"],
])
def test_bad_asgi_threads_is_one_line(command, project):
    result = run_manage(*command, env={**project, "ASGI_THREADS": "many"})
    assert result.returncode == 1, result.stdout
    assert "CommandError: ASGI_THREADS must be a whole number, got 'many'" in result.stdout
    assert "Traceback" not in result.stdout


@pytest.mark.parametrize("flags,message", [
    (["-e", "ssl:8443:privateKey=/nonexistent/k.pem:certKey=/nonexistent/c.pem"],
     "Endpoint 'ssl:8443:privateKey=/nonexistent/k.pem:certKey=/nonexistent/c.pem': TLS "
     "private key file '/nonexistent/k.pem' does not exist"),
    (["-u", "/nonexistent/dir/s.sock"],
     "Endpoint 'unix:/nonexistent/dir/s.sock': directory '/nonexistent/dir' of the UNIX "
     "socket does not exist"),
])
def test_a_binding_that_cannot_work_is_refused_before_serving(project, flags, message):
    """What system check E007 says of DAPHNE's bindings, said of the command line's too:
    one line, before the application starts or any other address is bound."""
    result = run_manage("daphne", "-p", "0", *flags, env=project)
    assert result.returncode == 1, result.stdout
    assert f"CommandError: {message}" in result.stdout
    assert "Example project started" not in result.stdout
    assert "Listening on" not in result.stdout


def test_logging_setting_routes_the_access_log(tmp_path, manage):
    """A LOGGING that sends django_daphne to a file takes the access log there too (its own
    logger, django_daphne.access), not to stdout. (The server's own lines also go to the
    console here, so that the test sees when it listens.)"""
    log = tmp_path / "server.log"
    module = settings_module(tmp_path, f"""
        LOGGING = {{
            "version": 1,
            "handlers": {{
                "file": {{"class": "logging.FileHandler", "filename": {str(log)!r},
                          "formatter": "plain"}},
                "console": {{"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}},
            }},
            "formatters": {{"plain": {{"format": "%(name)s %(levelname)s %(message)s"}}}},
            "loggers": {{
                "django_daphne": {{"handlers": ["file"], "level": "INFO"}},
                "django_daphne.server": {{"handlers": ["console"], "level": "INFO"}},
            }},
        }}
    """)
    server = manage("daphne", "-p", "0", "--settings", module)
    host, port = listening(server)
    assert httpx.get(f"http://{host}:{port}/json/").status_code == 200
    server.stop()
    text = log.read_text()
    assert re.search(r'django_daphne\.access INFO 127\.0\.0\.1:\d+ - - \[.*\] "GET /json/" 200',
                     text), text
    assert '"GET /json/"' not in server.output
