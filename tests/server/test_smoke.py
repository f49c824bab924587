import httpx


def test_hello(server):
    response = httpx.get(server.url + "/echo?x=1")
    assert response.status_code == 200
    assert response.json()["query_string"] == "x=1"


def test_daphne_command_bad_asgi_threads_is_one_line():
    """A startup problem is one line on stderr and exit status 1, ASGI_THREADS included."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    result = subprocess.run(
        [sys.executable, "-m", "django_daphne", "-p", "0", "tests.apps:app"],
        cwd=ROOT, env={**os.environ, "ASGI_THREADS": "0"}, capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == "daphne: error: ASGI_THREADS must be at least 1, got 0\n"


def test_help_shows_on_off_defaults_as_they_are_typed():
    import re

    from django_daphne.server.cli import build_parser

    text = " ".join(build_parser().format_help().split())
    assert "Default: True" not in text and "Default: False" not in text
    assert re.search(r"--http2 \{on,off\} Serve HTTP/2: .*? Default: on\.", text)


def test_daphne_command_refuses_a_binding_that_cannot_work_before_serving():
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    result = subprocess.run(
        [sys.executable, "-m", "django_daphne", "-p", "0", "-u", "/nonexistent/dir/s.sock",
         "tests.apps:app"],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "daphne: error: Endpoint 'unix:/nonexistent/dir/s.sock': directory "
        "'/nonexistent/dir' of the UNIX socket does not exist\n"
    )
    assert "Listening on" not in result.stdout
