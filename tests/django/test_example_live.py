"""The example project's own test suite, which serves it with
``django_daphne.testing.DaphneLiveServerTestCase``, run with Django's test runner."""

from __future__ import annotations

import re

from ..django_helpers import run_manage, settings_module


def test_example_project_tests_pass_on_the_live_server(tmp_path):
    test_db = tmp_path / "test-db.sqlite3"
    result = run_manage(
        "test", "example_project", "-v", "2", "--noinput",
        env={"EXAMPLE_DB": str(tmp_path / "db.sqlite3"), "EXAMPLE_TEST_DB": str(test_db)},
        timeout=300,
    )
    output = result.stdout
    assert result.returncode == 0, output
    ran = int(re.search(r"^Ran (\d+) tests? in", output, re.M).group(1))
    names = re.findall(r"^(test_\w+) \(example_project\.[\w.]+\) \.\.\. ", output, re.M)
    assert ran >= 12 and len(names) == ran, output
    for name in ("test_admin_on_the_test_database",
                 "test_message_is_broadcast_to_everyone_in_the_room"):
        assert name in names
    assert re.search(r"^OK$", output, re.M)
    # the live server ran the lifespan (startup and a graceful shutdown) and cleaned up
    assert "Example project started" in output
    assert "Example project shutting down" in output
    assert not test_db.exists()


def test_live_server_refuses_an_in_memory_test_database(tmp_path):
    module = settings_module(tmp_path, 'DATABASES["default"]["TEST"] = {}')
    result = run_manage(
        "test", "example_project.demo.tests.ExampleViewsTests.test_json_view", "--noinput",
        "--settings", module,
        env={"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db.sqlite3")},
        timeout=300,
    )
    assert result.returncode == 1
    assert "ImproperlyConfigured: DaphneLiveServerTestCase serves from another process" in (
        result.stdout
    )
    assert "DATABASES['default']['TEST']['NAME'] to a file path" in result.stdout


LIVE_URLS = '''
from django.conf import settings
from django.core import mail
from django.http import JsonResponse
from django.urls import path


def env(request):
    mail.send_mail("subject", "body", "from@example.com", ["to@example.com"])
    return JsonResponse({"debug": settings.DEBUG, "email_backend": settings.EMAIL_BACKEND})


urlpatterns = [path("env/", env)]
'''

LIVE_TESTS = '''
import httpx
from django_daphne.testing import DaphneLiveServerTestCase


class ServerSettingsTests(DaphneLiveServerTestCase):
    def test_env(self):
        response = httpx.get(self.live_server_url + "/env/", timeout=30)
        print("SERVER SAYS", response.status_code, response.text[:300])
        assert response.status_code == 200
        assert response.json() == {
            "debug": False,
            "email_backend": "django.core.mail.backends.locmem.EmailBackend",
        }
'''


def test_live_server_runs_in_the_test_environment(tmp_path):
    """As with Django's LiveServerTestCase and Channels' ChannelsLiveServerTestCase: the
    server accepts its own host whatever ALLOWED_HOSTS says, runs with the test runner's
    DEBUG (off), and sends mail to the locmem backend, never to a real SMTP server."""
    (tmp_path / "live_urls.py").write_text(LIVE_URLS)
    (tmp_path / "test_live_env.py").write_text(LIVE_TESTS)
    module = settings_module(tmp_path, """
        DEBUG = True
        ALLOWED_HOSTS = ["www.example.com"]
        ROOT_URLCONF = "live_urls"
        EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        EMAIL_PORT = 1  # nothing listens: a real send fails
    """)
    result = run_manage(
        "test", "test_live_env", "--noinput", "--settings", module,
        env={"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db.sqlite3"),
             "EXAMPLE_TEST_DB": str(tmp_path / "test-db.sqlite3")},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout
    assert "SERVER SAYS 200" in result.stdout


def test_one_settings_file_for_development_and_production(tmp_path):
    """WORKERS and MAX_REQUESTS (with the in-memory layer, as many projects have it in
    development) are for manage.py daphne: ``manage.py test`` with the live-server test case
    runs, one process, and ``check`` passes; ``check --deploy`` names E011."""
    (tmp_path / "live_urls.py").write_text(LIVE_URLS)
    (tmp_path / "test_live_env.py").write_text(LIVE_TESTS)
    module = settings_module(tmp_path, """
        ROOT_URLCONF = "live_urls"
        DAPHNE = {"WORKERS": 2, "MAX_REQUESTS": 1}
        CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    """)
    env = {"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db.sqlite3"),
           "EXAMPLE_TEST_DB": str(tmp_path / "test-db.sqlite3")}
    result = run_manage("test", "test_live_env", "--noinput", "--settings", module, env=env,
                        timeout=300)
    assert result.returncode == 0, result.stdout
    assert "SERVER SAYS 200" in result.stdout
    assert "Started worker" not in result.stdout
    assert run_manage("check", "--settings", module, env=env).returncode == 0
    deploy = run_manage("check", "--deploy", "--settings", module, env=env)
    assert "django_daphne.E011" in deploy.stdout


CHANNELS_TESTS = '''
import json

import httpx
from channels.testing import (
    ApplicationCommunicator,
    ChannelsLiveServerTestCase,
    HttpCommunicator,
    WebsocketCommunicator,
)
from django.test import TestCase
from websockets.sync.client import connect

from example_project.asgi import application
from example_project.chat.consumers import ChatConsumer


class CommunicatorTests(TestCase):
    async def test_websocket_communicator(self):
        communicator = WebsocketCommunicator(ChatConsumer.as_asgi(), "/ws/chat/lobby/")
        communicator.scope["url_route"] = {"kwargs": {"room": "lobby"}}
        connected, _ = await communicator.connect()
        self.assertTrue(connected)
        await communicator.send_json_to({"author": "ada", "text": "hi"})
        self.assertEqual(await communicator.receive_json_from(timeout=5),
                         {"author": "ada", "text": "hi"})
        await communicator.disconnect()

    async def test_http_communicator(self):
        response = await HttpCommunicator(application, "GET", "/json/",
                                          headers=[(b"host", b"testserver")]).get_response()
        self.assertEqual(response["status"], 200)
        self.assertTrue(ApplicationCommunicator)


class LiveTests(ChannelsLiveServerTestCase):
    serve_static = False

    def test_served_by_django_daphne(self):
        page = httpx.get(self.live_server_url + "/json/", timeout=30)
        self.assertEqual(page.json(), {"message": "Hello, World!"})
        self.assertEqual(page.headers["server"], "daphne")
        with connect(self.live_server_ws_url + "/ws/chat/live/",
                     origin=self.live_server_url, open_timeout=30) as ws:
            ws.send(json.dumps({"author": "bob", "text": "live"}))
            self.assertEqual(json.loads(ws.recv(timeout=10))["text"], "live")
'''


def test_channels_test_tools_work_without_daphne_installed(tmp_path):
    """README's upgrade steps uninstall Daphne, whose ``daphne.testing`` channels.testing
    imports: its communicators, and its ChannelsLiveServerTestCase (served by
    django-daphne), still work."""
    import importlib.util

    assert importlib.util.find_spec("daphne") is None  # as after `pip uninstall daphne`
    (tmp_path / "test_channels_tools.py").write_text(CHANNELS_TESTS)
    result = run_manage(
        "test", "test_channels_tools", "-v", "2", "--noinput",
        env={"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db.sqlite3"),
             "EXAMPLE_TEST_DB": str(tmp_path / "test-db.sqlite3")},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout
    assert re.search(r"^Ran 3 tests", result.stdout, re.M), result.stdout
