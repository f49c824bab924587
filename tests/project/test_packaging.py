"""Packaging: the wheel carries the package and the `daphne` command; the server runs on
the pure-Python fallbacks (no httptools parser, no uvloop); installed alone in a fresh
environment, it keeps Channels' test tools working without Daphne."""

from __future__ import annotations

import os
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


# A Channels project of its own, with Channels' test tools, for the fresh environment below
FRESH_SETTINGS = '''
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "fresh-venv-tests"
DEBUG = True
ALLOWED_HOSTS = ["testserver", "localhost"]
INSTALLED_APPS = ["django_daphne"]
ROOT_URLCONF = "freshsite.urls"
ASGI_APPLICATION = "freshsite.asgi.application"
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": BASE_DIR / "db.sqlite3",
                         "TEST": {"NAME": BASE_DIR / "test-db.sqlite3"}}}
USE_TZ = True
'''

FRESH_URLS = '''
from django.http import JsonResponse
from django.urls import path


def hello(request):
    return JsonResponse({"hello": request.GET.get("name", "world")})


urlpatterns = [path("hello/", hello)]
'''

FRESH_ASGI = '''
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "freshsite.settings")
django_asgi_app = get_asgi_application()

from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class EchoConsumer(AsyncJsonWebsocketConsumer):
    async def receive_json(self, content, **kwargs):
        await self.send_json({"echo": content})


application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": URLRouter([path("ws/echo/", EchoConsumer.as_asgi())]),
})
'''

FRESH_CONFTEST = '''
import django

django.setup()
'''

FRESH_TESTS = '''
import asyncio
import json
import sys
import urllib.request

from channels.testing import (
    ApplicationCommunicator,
    ChannelsLiveServerTestCase,
    HttpCommunicator,
    WebsocketCommunicator,
)

from freshsite.asgi import EchoConsumer, application


def test_daphne_is_the_stand_in():
    import daphne
    import daphne.testing

    assert daphne.testing is sys.modules["django_daphne.daphne_compat"]
    assert "stand-in" in daphne.__doc__
    assert ChannelsLiveServerTestCase.ProtocolServerProcess is daphne.testing.DaphneProcess


def test_websocket_communicator():
    async def talk():
        communicator = WebsocketCommunicator(EchoConsumer.as_asgi(), "/ws/echo/")
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_json_to({"text": "hi"})
        assert await communicator.receive_json_from(timeout=5) == {"echo": {"text": "hi"}}
        await communicator.disconnect()

    asyncio.run(talk())


def test_http_communicator():
    async def ask():
        communicator = HttpCommunicator(application, "GET", "/hello/?name=ada",
                                        headers=[(b"host", b"testserver")])
        return await communicator.get_response(timeout=10)

    response = asyncio.run(ask())
    assert response["status"] == 200
    assert json.loads(response["body"]) == {"hello": "ada"}
    assert ApplicationCommunicator is not None


class LiveServerTests(ChannelsLiveServerTestCase):
    serve_static = False

    def test_served(self):
        with urllib.request.urlopen(self.live_server_url + "/hello/?name=live",
                                    timeout=30) as response:
            assert json.loads(response.read()) == {"hello": "live"}
            assert response.headers["Server"] == "daphne"
'''


def test_channels_test_tools_in_a_fresh_environment_without_daphne(tmp_path):
    """README's *Upgrading from Daphne*, step 4, as a new project has it: a fresh virtual
    environment (nothing from this one) with the wheel and its ``channels`` extra, and
    pytest, resolved by pip from the configured indexes. Daphne is not installed there;
    ``channels.testing`` imports our stand-in ``daphne.testing``, and a project's tests
    with WebsocketCommunicator, HttpCommunicator and ChannelsLiveServerTestCase pass."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    [wheel] = list(tmp_path.glob("django_daphne-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = str(venv / "bin" / "python")
    # nothing of this environment or checkout: only what the fresh one has installed
    env = {name: value for name, value in os.environ.items()
           if name not in ("PYTHONPATH", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE",
                           "PYTHONHOME")}
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "-q",
         f"{wheel}[channels]", "pytest"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert installed.returncode == 0, installed.stdout

    project = tmp_path / "project"
    (project / "freshsite").mkdir(parents=True)
    for name, text in (("freshsite/__init__.py", ""), ("freshsite/settings.py", FRESH_SETTINGS),
                       ("freshsite/urls.py", FRESH_URLS), ("freshsite/asgi.py", FRESH_ASGI),
                       ("conftest.py", FRESH_CONFTEST),
                       ("test_channels_tools.py", FRESH_TESTS)):
        (project / name).write_text(text.lstrip("\n"))
    env["DJANGO_SETTINGS_MODULE"] = "freshsite.settings"

    where = subprocess.run(
        [python, "-c", "import importlib.util, django_daphne, channels; "
         "print(importlib.util.find_spec('daphne')); print(django_daphne.__file__)"],
        cwd=project, env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    assert where[0] == "None", where  # Daphne is not installed: no `daphne` to import
    assert where[1].startswith(str(venv)), where  # the wheel's package, not this checkout's

    result = subprocess.run(
        [python, "-m", "pytest", "-v", "-p", "no:cacheprovider", "test_channels_tools.py"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=300)
    assert result.returncode == 0, result.stdout
    assert "4 passed" in result.stdout, result.stdout
