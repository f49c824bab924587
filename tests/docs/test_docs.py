"""The documentation site (docs/) builds without a warning, and what it says is what the
code does: every option, check, signal and ASGI extension, the command-line examples, and
the LOGGING example run as written."""

from __future__ import annotations

import html
import json
import re
import signal as signals
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from django_daphne.checks import CHECKS
from django_daphne.conf import DJANGO_OPTIONS
from django_daphne.core.options import OPTIONS
from django_daphne.server.signals import SIGNALS

from ..conftest import ROOT, client_context
from ..django_helpers import ManageProcess, free_port, settings_module

DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The documentation built as HTML, as a reader gets it, warnings as errors."""
    out = tmp_path_factory.mktemp("docs")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr and "ERROR" not in result.stderr, result.stderr
    return out / "html"


def page_text(site: Path, name: str) -> str:
    """A built page's text, tags dropped and entities read."""
    return html.unescape(re.sub(r"<[^>]+>", "", (site / f"{name}.html").read_text()))


def test_every_page_is_built_and_reachable(site):
    sources = {str(p.relative_to(DOCS).with_suffix("")) for p in DOCS.rglob("*.rst")
               if "_build" not in p.parts}
    assert {"index", "tutorial", "reference/options", "howto/deploying",
            "explanation/architecture", "changelog"} <= sources
    for name in sources:
        assert (site / f"{name}.html").is_file(), name
    # Sphinx warns about a page no table of contents lists; -W made that an error
    index = (site / "index.html").read_text()
    for name in sources - {"index"}:
        assert f'href="{name}.html' in index, f"{name} is not in index.rst's contents"


def test_every_option_is_in_the_reference(site):
    text = page_text(site, "reference/options")
    for option in (*OPTIONS, *DJANGO_OPTIONS):
        assert f'DAPHNE["{option.setting}"]' in text, option.setting
        assert option.variable in text, option.variable
        for flag in option.flags:
            assert flag in text, flag
        assert " ".join(option.help.split()[:6]) in " ".join(text.split()), option.name


def test_every_check_id_is_described_and_in_the_reference(site):
    source = (ROOT / "django_daphne" / "checks.py").read_text()
    used = set(re.findall(r'id="(django_daphne\.[EWI]\d{3})"', source))
    assert used == set(CHECKS), "checks.CHECKS and the ids checks.py raises differ"
    text = page_text(site, "reference/checks")
    for check_id in CHECKS:
        assert check_id in text, check_id


def caught_signals(pid: int) -> set[str]:
    """The signals process ``pid`` has a handler for, from /proc/PID/status's SigCgt."""
    mask = next(int(line.split()[1], 16) for line in Path(f"/proc/{pid}/status").open()
                if line.startswith("SigCgt:"))
    names = {"SIGHUP", "SIGINT", "SIGTERM", "SIGTTIN", "SIGTTOU", "SIGUSR1", "SIGUSR2",
             "SIGQUIT", "SIGWINCH"}
    return {name for name in names if mask & (1 << (getattr(signals, name) - 1))}


@pytest.mark.parametrize("mode", ["single", "supervisor"])
def test_signals_reference_is_what_the_processes_catch(start_server, site, mode):
    server = start_server(*(["--workers", "1"] if mode == "supervisor" else []))
    documented = {s.name for s in SIGNALS if getattr(s, mode)}
    assert caught_signals(server.proc.pid) == documented
    text = " ".join(page_text(site, "reference/signals").split())
    for entry in SIGNALS:
        assert entry.name in text
        for words in (entry.single, entry.supervisor):
            plain = re.sub(r"``", "", words)
            assert " ".join(plain.split()[:5]) in text, plain


def test_access_log_fields_are_in_the_reference(site):
    from django_daphne.core.access_log import FIELDS

    text = page_text(site, "reference/access-log")
    for name in FIELDS:
        assert f"%({name})s" in text, name


def documented_extensions() -> set[str]:
    text = (DOCS / "reference" / "asgi.rst").read_text()
    section = text.split("Extensions\n----------", 1)[1].split("\nThreads\n", 1)[0]
    return set(re.findall(r"^``([\w.]+)``$", section, re.M))


def test_asgi_extensions_reference_is_what_scopes_carry(start_server):
    """A request of each kind (HTTP/1.1, HTTP/2, WebSocket, over TLS) on a real server: the
    extensions its scope carries are the ones docs/reference/asgi.rst lists."""
    server = start_server(binding="tls")
    seen: dict[str, set[str]] = {}
    with httpx.Client(verify=client_context(), http2=True, timeout=10) as client:
        response = client.get(f"https://localhost:{server.port}/echo")
        assert response.http_version == "HTTP/2"
        seen["http/2"] = set(response.json().get("extensions", {}))
    seen["http/1.1"] = set(server.http.get("/echo").json().get("extensions", {}))
    with server.ws_connect("/ws/scope") as ws:
        seen["websocket"] = set(json.loads(ws.recv(timeout=10)).get("extensions", {}))
    assert seen["http/2"] == {"tls", "http.response.trailers"}
    assert seen["http/1.1"] == {"tls"}
    assert seen["websocket"] == {"tls", "websocket.http.response"}
    assert set().union(*seen.values()) == documented_extensions()


def test_command_line_examples_are_in_the_reference(site):
    text = page_text(site, "reference/command-line")
    for example in (
        "daphne myproject.asgi:application",
        "daphne -b 0.0.0.0 -p 8001 myproject.asgi:application",
        "daphne -u /tmp/daphne.sock myproject.asgi:application",
        "daphne --fd 5 myproject.asgi:application",
        "daphne -e ssl:443:privateKey=key.pem:certKey=crt.pem myproject.asgi:application",
        "usage: daphne",  # the --help output, written at build time
    ):
        assert example in text, example


def logging_example() -> str:
    """The python block of docs/howto/logging.rst's LOGGING section."""
    text = (DOCS / "howto" / "logging.rst").read_text()
    section = text.split("the LOGGING setting\n", 1)[1]
    block = section.split(".. code-block:: python\n", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line and not line.startswith("   "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


def wait_for_text(path: Path, text: str, process: ManageProcess, timeout: float = 30) -> None:
    """Until ``path`` holds ``text``, polled while ``process`` runs (it fails if it exits)."""
    for _ in range(int(timeout / 0.05)):
        if path.exists() and text in path.read_text():
            return
        try:
            process.proc.wait(0.05)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"the server exited: {process.output}")
    raise AssertionError(f"{path} never said {text!r}; console: {process.output}")


def test_logging_example_routes_the_server_and_the_access_log(tmp_path):
    """docs/howto/logging.rst's LOGGING, run by manage.py daphne with only the two file
    paths changed: the server's lines in one file, the access log as JSON in the other,
    neither on the console."""
    example = logging_example()
    assert '"filename": "server.log"' in example and '"filename": "access.log"' in example
    example = example.replace('"server.log"', repr(str(tmp_path / "server.log")))
    example = example.replace('"access.log"', repr(str(tmp_path / "access.log")))
    module = settings_module(tmp_path, example, name="logging_settings")
    port = free_port()
    env = {"DJANGO_SETTINGS_MODULE": module, "EXAMPLE_DB": str(tmp_path / "db.sqlite3"),
           "PYTHONPATH": str(tmp_path)}
    server = ManageProcess(["daphne", "-p", str(port), "--skip-checks"], env=env)
    try:
        server_log = tmp_path / "server.log"
        wait_for_text(server_log, f":{port}", server)  # it says where it listens there
        response = httpx.get(f"http://127.0.0.1:{port}/json/", timeout=10)
        assert response.status_code == 200
        server.signal(signals.SIGTERM)
        assert server.wait_exit() == 0
    finally:
        server.stop()
    assert "Listening on TCP address" in server_log.read_text()
    [line] = (tmp_path / "access.log").read_text().splitlines()
    entry = json.loads(line)
    assert entry["request"] == "GET /json/" and entry["status"] == 200
    assert "Listening on" not in server.output and "/json/" not in server.output


def test_environment_and_limits_page_names_what_the_code_does(site):
    """The how-to's variable names, check ids and refusal are the code's."""
    from django_daphne.core.options import INTERNAL_VARIABLES, OPTIONS_BY_NAME

    text = " ".join(page_text(site, "howto/environment-and-limits").split())
    for name in ("workers", "proxy_headers", "limit_concurrency", "forwarded_allow_ips"):
        assert OPTIONS_BY_NAME[name].variable in text, name
    for variable in INTERNAL_VARIABLES:
        assert variable in text, variable
    for check_id in ("django_daphne.E012", "django_daphne.E013"):
        assert check_id in text and check_id in CHECKS
    assert "--limit-concurrency" in text and "Retry-After: 1" in text
