"""Configuration from the environment: ``DJANGO_DAPHNE_`` and a settings key, for the
``daphne`` command, ``manage.py daphne``, ``runserver`` and the system checks, run as real
processes.  Precedence: defaults < settings.py < environment < command line; the
environment's bindings replace the settings', the command line's replace both."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from django_daphne.core.options import INTERNAL_VARIABLES, OPTIONS

from ..conftest import ROOT, ServerProcess
from ..django_helpers import (
    BANNER_RE,
    LISTEN_RE,
    ManageProcess,
    free_port,
    run_manage,
    settings_module,
)

# -- the daphne command


def daphne(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``daphne ARGS`` run to completion (a startup error, or --show-config)."""
    return subprocess.run(
        [sys.executable, "-m", "django_daphne", *args], cwd=ROOT,
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )


@pytest.fixture
def serve():
    started = []

    def start(*args: str, env: dict[str, str]) -> ServerProcess:
        """``daphne ARGS tests.apps:app``, as given: no binding added."""
        server = ServerProcess([*args, "tests.apps:app"], env=env)
        started.append(server)
        return server.wait_ready()

    yield start
    for server in started:
        server.stop()


def test_daphne_listens_on_the_port_the_environment_names(serve):
    port = free_port()
    server = serve(env={"DJANGO_DAPHNE_PORT": str(port), "DJANGO_DAPHNE_SERVER_NAME": "envy"})
    assert server.port == port
    response = httpx.get(f"http://127.0.0.1:{port}/echo", timeout=10)
    assert response.status_code == 200
    assert response.headers["server"] == "envy"


def test_daphne_command_line_wins_over_the_environment(serve):
    port = free_port()
    server = serve("-p", "0", "--server-name", "flag",
                   env={"DJANGO_DAPHNE_PORT": str(port), "DJANGO_DAPHNE_SERVER_NAME": "envy"})
    assert server.port != port
    assert httpx.get(server.url + "/echo", timeout=10).headers["server"] == "flag"


def test_daphne_list_options_are_comma_separated(serve, tmp_path):
    """ENDPOINTS and FORWARDED_ALLOW_IPS take their items comma-separated (spaces around
    an item dropped); booleans take 1."""
    port = free_port()
    socket_path = tmp_path / "d.sock"
    server = serve(env={
        "DJANGO_DAPHNE_ENDPOINTS": f"tcp:{port}:interface=127.0.0.1, unix:{socket_path}",
        "DJANGO_DAPHNE_PROXY_HEADERS": "1",
        "DJANGO_DAPHNE_FORWARDED_ALLOW_IPS": "10.0.0.1,127.0.0.1",
    })
    assert server.port == port
    assert f"Listening on UNIX socket {socket_path}" in server.output
    seen = httpx.get(f"http://127.0.0.1:{port}/echo", timeout=10,
                     headers={"X-Forwarded-For": "203.0.113.9"}).json()
    assert seen["client"][0] == "203.0.113.9"  # 127.0.0.1 is a trusted proxy
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket_path))) as client:
        assert client.get("http://localhost/echo", timeout=10).status_code == 200


def test_daphne_workers_from_the_environment(serve):
    """WORKERS from the environment runs the supervisor, whose workers inherit the
    environment (and the supervisor's own DJANGO_DAPHNE_WORKER_* variables, which are no
    options) and start."""
    server = serve("-p", "0", env={"DJANGO_DAPHNE_WORKERS": "2"})
    server.wait_for(r"Server ready \(2 workers: ")
    assert httpx.get(server.url + "/pid", timeout=10).status_code == 200


def test_daphne_show_config_names_the_environment(tmp_path):
    result = daphne("--show-config", "-u", str(tmp_path / "s.sock"), "tests.apps:app", env={
        "DJANGO_DAPHNE_PORT": "9100", "DJANGO_DAPHNE_HTTP_TIMEOUT": "5",
        "DJANGO_DAPHNE_FORWARDED_ALLOW_IPS": "10.0.0.1,10.0.0.2",
    })
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    assert rows["HTTP_TIMEOUT"] == ("5.0", "environment")
    assert rows["FORWARDED_ALLOW_IPS"] == ("['10.0.0.1', '10.0.0.2']", "environment")
    # the command line's binding replaced the environment's
    assert rows["PORT"] == ("None", "default")
    assert rows["(listening on)"] == [(f"unix:{tmp_path / 's.sock'}", "command line")]
    assert rows["APPLICATION"] == ("tests.apps:app", "command line")


@pytest.mark.parametrize(("env", "message"), [
    ({"DJANGO_DAPHNE_PORT": "x"}, "DJANGO_DAPHNE_PORT: expected a whole number, got 'x'"),
    ({"DJANGO_DAPHNE_PROXY_HEADERS": "maybe"}, "DJANGO_DAPHNE_PROXY_HEADERS: expected True "
     "or False (or 1/0, yes/no, on/off), got 'maybe'"),
    ({"DJANGO_DAPHNE_PROT": "8001"}, "The environment variable DJANGO_DAPHNE_PROT is not a "
     "setting of the daphne command. Did you mean DJANGO_DAPHNE_PORT?"),
    ({"DJANGO_DAPHNE_STATIC": "1"}, "The environment variable DJANGO_DAPHNE_STATIC is not a "
     "setting of the daphne command."),
    ({"DJANGO_DAPHNE_PROXY_HEADERS_HOST": "Forwarded"}, "DJANGO_DAPHNE_PROXY_HEADERS_HOST has "
     "no effect without PROXY_HEADERS on (DJANGO_DAPHNE_PROXY_HEADERS=1)"),
])
def test_daphne_refuses_a_bad_variable_naming_it(env, message):
    result = daphne("-p", "0", "tests.apps:app", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("daphne: error: " + message), result.stderr
    assert result.stderr.count("\n") == 1


def test_asgi_threads_keeps_working_beside_the_prefix(serve):
    bad = daphne("tests.apps:app", env={"ASGI_THREADS": "0", "DJANGO_DAPHNE_PORT": "0"})
    assert bad.returncode == 1
    assert bad.stderr == "daphne: error: ASGI_THREADS must be at least 1, got 0\n"
    server = serve(env={"ASGI_THREADS": "2", "DJANGO_DAPHNE_PORT": "0"})
    assert httpx.get(server.url + "/threads?n=2", timeout=30).status_code == 200


# -- manage.py daphne


def table(output: str) -> dict:
    """The --show-config table: key -> (value, source); binding rows -> lists of them."""
    rows: dict = {}
    for line in output.splitlines():
        key, value, source = re.split(r"\s{2,}", line.strip())
        if key.startswith("("):
            rows.setdefault(key, []).append((value, source))
        else:
            rows[key] = (value, source)
    return rows


def listening_port(process: ManageProcess) -> int:
    match = process.wait_for(LISTEN_RE)
    process.wait_for("Server ready")
    return int(match.group(2))


def test_manage_py_daphne_environment_beats_settings(tmp_path, manage):
    settings_port, env_port = free_port(), free_port()
    module = settings_module(tmp_path, f'DAPHNE = {{"PORT": {settings_port}}}')
    server = manage("daphne", "--settings", module, env={"DJANGO_DAPHNE_PORT": str(env_port)})
    assert listening_port(server) == env_port
    assert httpx.get(f"http://127.0.0.1:{env_port}/json/", timeout=10).status_code == 200


def test_manage_py_daphne_command_line_beats_environment(tmp_path, manage):
    env_port = free_port()
    server = manage("daphne", "-p", "0", env={"DJANGO_DAPHNE_PORT": str(env_port)})
    port = listening_port(server)
    assert port != env_port
    assert httpx.get(f"http://127.0.0.1:{port}/json/", timeout=10).status_code == 200


def test_manage_py_daphne_show_config_sources(tmp_path, project):
    module = settings_module(tmp_path, f"""
        DAPHNE = {{"SHUTDOWN_TIMEOUT": 3, "KEEP_ALIVE_TIMEOUT": 7, "HTTP_TIMEOUT": 9,
                  "UNIX_SOCKET": "{tmp_path / 'settings.sock'}"}}
    """)
    env = {**project, "DJANGO_DAPHNE_SHUTDOWN_TIMEOUT": "4", "DJANGO_DAPHNE_WORKERS": "2",
           "DJANGO_DAPHNE_STATIC": "yes", "DJANGO_DAPHNE_PORT": "9100",
           "DJANGO_DAPHNE_FORWARDED_ALLOW_IPS": " 10.0.0.1 , 10.0.0.0/8 ",
           "DJANGO_DAPHNE_ENDPOINTS": ""}  # empty: as if unset
    result = run_manage("daphne", "--show-config", "--settings", module, "--http-timeout",
                        "5", env=env)
    assert result.returncode == 0, result.stdout
    rows = table(result.stdout)
    assert rows["KEEP_ALIVE_TIMEOUT"] == ("7.0", "settings")
    assert rows["SHUTDOWN_TIMEOUT"] == ("4.0", "environment")
    assert rows["WORKERS"] == ("2", "environment")
    assert rows["STATIC"] == ("True", "environment")
    assert rows["FORWARDED_ALLOW_IPS"] == ("['10.0.0.1', '10.0.0.0/8']", "environment")
    assert rows["ENDPOINTS"] == ("[]", "default")
    assert rows["HTTP_TIMEOUT"] == ("5.0", "command line")
    # the environment's binding replaced the settings' UNIX socket
    assert rows["UNIX_SOCKET"] == ("None", "default")
    assert rows["(listening on)"] == [("tcp:port=9100:interface=127.0.0.1", "environment")]


@pytest.mark.parametrize(("env", "check", "message"), [
    ({"DJANGO_DAPHNE_PORT": "x"}, "django_daphne.E013",
     "DJANGO_DAPHNE_PORT: expected a whole number, got 'x'"),
    ({"DJANGO_DAPHNE_PROXY_HEADER": "1"}, "django_daphne.E012",
     "The environment variable DJANGO_DAPHNE_PROXY_HEADER is not a setting of "
     "django-daphne. Did you mean DJANGO_DAPHNE_PROXY_HEADERS?"),
])
def test_manage_py_daphne_refuses_a_bad_variable(project, env, check, message):
    """Named by the system checks (exit status 1), and, with --skip-checks, in the one-line
    CommandError."""
    checked = run_manage("daphne", env={**project, **env})
    assert checked.returncode == 1
    assert f"?: ({check}) {message}" in checked.stdout
    skipped = run_manage("daphne", "--skip-checks", env={**project, **env})
    assert skipped.returncode == 1
    assert skipped.stdout.strip() == f"CommandError: {message}"


def test_checks_judge_settings_and_environment_together(tmp_path, project):
    """E006 names the variable that set a proxy header without PROXY_HEADERS; and an
    environment that turns PROXY_HEADERS on answers the settings' E006."""
    result = run_manage("check", env={**project,
                                      "DJANGO_DAPHNE_PROXY_HEADERS_HOST": "Forwarded"})
    assert result.returncode == 1
    assert ("(django_daphne.E006) DJANGO_DAPHNE_PROXY_HEADERS_HOST has no effect without "
            "PROXY_HEADERS on") in result.stdout
    assert "DJANGO_DAPHNE_PROXY_HEADERS=1" in result.stdout
    module = settings_module(tmp_path, 'DAPHNE = {"PROXY_HEADERS_HOST": "Forwarded"}')
    assert run_manage("check", "--settings", module, env=project).returncode == 1
    fixed = run_manage("check", "--settings", module,
                       env={**project, "DJANGO_DAPHNE_PROXY_HEADERS": "on"})
    assert fixed.returncode == 0, fixed.stdout


# -- runserver and the live-server test case


def test_runserver_takes_the_environment_but_not_its_bindings_or_processes(tmp_path, project):
    """runserver serves addrport whatever DJANGO_DAPHNE_PORT says, runs one process whatever
    DJANGO_DAPHNE_WORKERS says (and says so at -v 2), and applies the rest."""
    env_port = free_port()
    server = ManageProcess(
        ["runserver", "127.0.0.1:0", "--noreload", "-v", "2"],
        env={**project, "DJANGO_DAPHNE_PORT": str(env_port), "DJANGO_DAPHNE_WORKERS": "2",
             "DJANGO_DAPHNE_MAX_REQUEST_LINE": "100"})
    try:
        match = server.wait_for(BANNER_RE)
        port = int(match.group(2))
        assert port != env_port
        long_target = "/" + "a" * 200
        response = httpx.get(f"http://127.0.0.1:{port}{long_target}", timeout=10)
        assert response.status_code == 414
        assert httpx.get(f"http://127.0.0.1:{port}/json/", timeout=10).status_code == 200
        assert ("runserver runs one process: DJANGO_DAPHNE_WORKERS apply to manage.py "
                "daphne and are ignored here.") in server.output
        assert "Started worker" not in server.output
    finally:
        server.stop()


def test_runserver_refuses_a_bad_variable_before_serving(project):
    result = run_manage("runserver", "127.0.0.1:0", env={**project,
                                                         "DJANGO_DAPHNE_WORKRES": "2"})
    assert result.returncode == 1
    assert result.stdout.strip() == (
        "CommandError: The environment variable DJANGO_DAPHNE_WORKRES is not a setting of "
        "django-daphne. Did you mean DJANGO_DAPHNE_WORKERS?")


LIVE_TESTS = '''
import httpx
from django_daphne.testing import DaphneLiveServerTestCase


class EnvironmentTests(DaphneLiveServerTestCase):
    def test_server_header(self):
        response = httpx.get(self.live_server_url + "/json/", timeout=30)
        print("SERVER HEADER", response.headers.get("server"))
'''


def test_live_server_test_case_ignores_the_environment(tmp_path):
    """Tests run against settings.py, the same wherever they run: a deployment's
    DJANGO_DAPHNE_* variables left in a CI's environment do not change them."""
    (tmp_path / "test_live_environment.py").write_text(LIVE_TESTS)
    result = run_manage(
        "test", "test_live_environment", "--noinput",
        env={"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db.sqlite3"),
             "EXAMPLE_TEST_DB": str(tmp_path / "test-db.sqlite3"),
             "DJANGO_DAPHNE_SERVER_NAME": "from-the-environment"},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout
    assert "SERVER HEADER daphne" in result.stdout


# -- the names


def test_every_prefixed_name_in_the_package_is_an_option_or_internal():
    """A DJANGO_DAPHNE_ variable the package itself uses (the supervisor's, for its
    workers) must not read as an unknown option: INTERNAL_VARIABLES lists them all."""
    options = {option.variable for option in OPTIONS}
    used = set()
    for path in Path(ROOT, "django_daphne").rglob("*.py"):
        used.update(re.findall(r'"(DJANGO_DAPHNE_[A-Z0-9_]+)"', path.read_text()))
    assert used - options <= INTERNAL_VARIABLES
    assert INTERNAL_VARIABLES <= used
    assert not INTERNAL_VARIABLES & options
