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
    assert "django-daphne = django_daphne.server.cli:main" in scripts
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


def test_switching_from_daphne_leaves_a_working_command(tmp_path):
    """Install Daphne, install django-daphne over it, uninstall Daphne (as W004's hint
    says): Daphne's uninstall deletes the shared `daphne` script, `django-daphne` stays and
    works, and the reinstall the hint gives brings `daphne` back as ours."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_dir = venv / "bin"
    pip = [str(bin_dir / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    # the dependencies come from this environment; only the two packages are installed
    purelib = subprocess.run([str(bin_dir / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    ours = subprocess.run([sys.executable, "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "deps.pth").write_text(ours + "\n")
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    [wheel] = list(tmp_path.glob("django_daphne-*.whl"))

    subprocess.run([*pip, "install", "--no-deps", "daphne"], check=True)
    subprocess.run([*pip, "install", "--no-deps", str(wheel)], check=True)
    subprocess.run([*pip, "uninstall", "-y", "daphne"], check=True)

    assert not (bin_dir / "daphne").exists()  # what the hint warns about
    result = subprocess.run([str(bin_dir / "django-daphne"), "--help"],
                            capture_output=True, text=True, check=True)
    assert "--http2-max-concurrent-streams" in result.stdout  # ours, not Daphne's

    subprocess.run([*pip, "install", "--force-reinstall", "--no-deps", str(wheel)],
                   check=True)
    result = subprocess.run([str(bin_dir / "daphne"), "--help"], capture_output=True,
                            text=True, check=True)
    assert "--http2-max-concurrent-streams" in result.stdout
