"""Packaging: the wheel carries the package and the `daphne` command; the server runs on
the pure-Python fallbacks (no httptools parser, no uvloop)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import httpx

from tests.conftest import ROOT


def test_wheel_has_the_package_and_the_daphne_command(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    [wheel] = list(tmp_path.glob("django_daphne-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        metadata = next(n for n in names if n.endswith("/METADATA"))
        scripts = archive.read(entry_points).decode()
        requirements = archive.read(metadata).decode()
    assert "django_daphne/__main__.py" in names
    assert "django_daphne/management/commands/daphne.py" in names
    for module in ("protocols/http2/connection.py", "server/cli.py", "staticfiles/handler.py"):
        assert "django_daphne/" + module in names
    assert "daphne = django_daphne.server.cli:main" in scripts
    for requirement in ("Twisted", "autobahn", "h2", "asgiref", "Django", "zope.interface",
                        "hyperframe", "hpack", "txaio"):
        assert f"requires-dist: {requirement.lower()}" in requirements.lower()
    # Channels only as an extra: the server runs any ASGI application
    assert 'requires-dist: channels>=4.0; extra == "channels"' in requirements.lower()
    # the fast parser and loop are real dependencies where they build, not everywhere
    assert "httptools" in requirements and "platform_python_implementation" in requirements


def test_daphne_console_script_runs():
    daphne = Path(sys.executable).with_name("daphne")
    result = subprocess.run([str(daphne), "--help"], capture_output=True, text=True,
                            check=True)
    assert "usage: daphne" in result.stdout
    assert "--websocket_timeout" in result.stdout and "--proxy-headers" in result.stdout


def test_pure_python_fallbacks_serve(start_server):
    server = start_server("--http-parser", "python", "--loop", "asyncio")
    scope = httpx.post(server.url + "/echo", content=b"fallback").json()
    assert scope["body"] == "fallback"
    loop = subprocess.run(
        [sys.executable, "-c",
         "from django_daphne.server.reactor import new_event_loop; "
         "print(type(new_event_loop('asyncio')).__module__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert loop.startswith("asyncio")
