"""Live-server tests with django-daphne.

:class:`DaphneLiveServerTestCase` is to django-daphne what Django's ``LiveServerTestCase``
and Channels' ``ChannelsLiveServerTestCase`` are to their servers: for each test class it
serves the project's ``ASGI_APPLICATION`` (HTTP and WebSocket) with this server, in its own
process, on a free port, and stops it gracefully afterwards::

    from django_daphne.testing import DaphneLiveServerTestCase

    class ChatTests(DaphneLiveServerTestCase):
        def test_home(self):
            response = httpx.get(self.live_server_url + "/")
            ...
            # WebSocket clients connect to self.live_server_ws_url + "/ws/chat/lobby/"

The server runs in a separate process, so it sees the test database only through a file:
for SQLite set ``DATABASES["default"]["TEST"]["NAME"]`` to a file path (the class refuses
an in-memory test database and says so).  It is a ``TransactionTestCase``: data a test
creates is committed, so the server sees it.  The server process is started from the
settings module with the test database names and the test runner's ``DEBUG`` (off),
``EMAIL_BACKEND`` (locmem) and ``ALLOWED_HOSTS`` (plus the server's host), as Django's and
Channels' live servers run; ``override_settings`` in a test does not reach it (use
``server_settings`` for DAPHNE options).  The ``DJANGO_DAPHNE_*`` environment variables are
not read: a test run serves settings.py's configuration wherever it runs, whatever a
deployment's variables left in the environment say.

:class:`LiveServer` is the same server as a context manager, for test runners other than
Django's (``with LiveServer() as server: server.url``).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import traceback
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test import TransactionTestCase
from django.utils.functional import classproperty

__all__ = ["DaphneLiveServerTestCase", "LiveServer"]


def _test_databases() -> dict[str, str]:
    """The database names the server process must use: the test databases' files."""
    names = {}
    for connection in connections.all():
        if connection.vendor == "sqlite" and connection.is_in_memory_db():
            raise ImproperlyConfigured(
                f"DaphneLiveServerTestCase serves from another process, which cannot see the "
                f"in-memory SQLite test database {connection.alias!r}: set "
                f"DATABASES[{connection.alias!r}]['TEST']['NAME'] to a file path."
            )
        names[connection.alias] = connection.settings_dict["NAME"]
    return names


def _test_environment(host: str) -> dict[str, Any]:
    """The settings the test runner changed in this process (``setup_test_environment``)
    that the server process must share, as Django's and Channels' live servers do: DEBUG
    (off under the test runner), the mail backend (locmem: a view never sends real mail),
    and ALLOWED_HOSTS with the server's own host added."""
    from django.conf import settings

    allowed = list(settings.ALLOWED_HOSTS)
    own = f"[{host}]" if ":" in host else host  # a Host header's IPv6 literal
    if own not in allowed:
        allowed.append(own)
    return {
        "DEBUG": settings.DEBUG,
        "EMAIL_BACKEND": settings.EMAIL_BACKEND,
        "ALLOWED_HOSTS": allowed,
    }


def _serve(
    settings_module: str,
    databases: dict[str, Any],
    environment: dict[str, Any],
    host: str,
    port: int,
    serve_static: bool,
    server_settings: dict[str, Any],
    channel: Any,
) -> None:
    """The server process: Django set up on the test databases, then the server, which
    reports its port through ``channel`` once it listens."""
    try:
        os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
        from django.conf import settings

        for alias, name in databases.items():
            settings.DATABASES[alias]["NAME"] = name
        for key, value in environment.items():
            setattr(settings, key, value)
        import django

        django.setup()
        from .conf import DJANGO_SETTING_NAMES, application_path, daphne_settings
        from .core.config import Config
        from .management.serving import (
            configure_logging,
            ensure_reactor,
            load_application,
            with_static_files,
        )
        from .server.runtime import Server

        values = {**daphne_settings(), "VERBOSITY": 0, **server_settings}
        values.update(BIND=host, PORT=port, UNIX_SOCKET=None, FD=None, ENDPOINTS=[])
        for key in DJANGO_SETTING_NAMES:  # static files come from serve_static here
            values.pop(key, None)
        # one process, whatever WORKERS or MAX_REQUESTS say for manage.py daphne
        config, _ignored = Config.build(settings=values).single_process()
        configure_logging(config)
        ensure_reactor(config.loop, fresh=True)
        application = load_application(application_path())
        if serve_static:
            application = with_static_files(application)
        server = Server(
            application, config,
            on_ready=lambda listening: channel.send(("ready", server.ports[0].getHost().port)),
        )
        code = server.run()
        if not server.listening:
            channel.send(("error", "the server did not start (see its log above)"))
        os._exit(code)
    except BaseException:
        channel.send(("error", traceback.format_exc()))
        os._exit(1)


class LiveServer:
    """django-daphne serving the current project in a child process.

    ``host`` and ``port`` (0: a free one) say where; ``serve_static`` puts Django's static
    files handler in front, as runserver does; ``server_settings`` overrides ``DAPHNE``
    keys.  ``start()`` returns once the server listens; ``stop()`` stops it gracefully and
    returns its exit status.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        serve_static: bool = True,
        server_settings: dict[str, Any] | None = None,
        startup_timeout: float = 60.0,
        shutdown_timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.serve_static = serve_static
        self.server_settings = dict(server_settings or {})
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self.port: int | None = None
        self.process: Any = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http"):]

    def start(self) -> LiveServer:
        from django.conf import settings

        settings_module = os.environ.get("DJANGO_SETTINGS_MODULE") or getattr(
            settings, "SETTINGS_MODULE", None
        )
        if not settings_module:
            raise ImproperlyConfigured(
                "LiveServer needs a settings module (DJANGO_SETTINGS_MODULE), not "
                "settings.configure()."
            )
        # spawn: a fresh interpreter, whatever threads and reactor this process has
        context = multiprocessing.get_context("spawn")
        receiver, sender = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_serve,
            args=(settings_module, _test_databases(), _test_environment(self.host),
                  self.host, self.requested_port,
                  self.serve_static, self.server_settings, sender),
            name="django-daphne live server",
            daemon=True,
        )
        self.process.start()
        sender.close()
        try:
            if not receiver.poll(self.startup_timeout):
                raise RuntimeError(
                    f"django-daphne live server did not start in {self.startup_timeout}s"
                )
            kind, value = receiver.recv()
        except EOFError:
            kind, value = "error", "the server process exited before it listened"
        finally:
            receiver.close()
        if kind != "ready":
            self.process.join(5)
            raise RuntimeError(f"django-daphne live server failed to start:\n{value}")
        self.port = value
        return self

    def stop(self) -> int | None:
        """SIGTERM (a graceful stop), then wait; returns the exit status."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
        process.join(self.shutdown_timeout + 5)
        if process.is_alive():
            process.kill()
            process.join()
        return process.exitcode

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


class DaphneLiveServerTestCase(TransactionTestCase):
    """A TransactionTestCase with django-daphne serving the project for the whole class at
    ``live_server_url`` (HTTP) and ``live_server_ws_url`` (WebSocket).

    Class attributes: ``host`` (127.0.0.1), ``port`` (0: a free port), ``serve_static``
    (True: STATIC_URL served from the finders, as runserver does), ``server_settings``
    (``DAPHNE`` keys for this server).  The server is stopped gracefully after the class,
    and a server that does not exit cleanly fails the class.
    """

    host = "127.0.0.1"
    port = 0
    serve_static = True
    server_settings: dict[str, Any] = {}

    _live_server: LiveServer | None = None

    @classproperty
    def live_server_url(cls) -> str:
        return cls._server().url

    @classproperty
    def live_server_ws_url(cls) -> str:
        return cls._server().ws_url

    @classmethod
    def _server(cls) -> LiveServer:
        if cls._live_server is None:
            raise RuntimeError("the live server runs only between setUpClass and "
                               "tearDownClass")
        return cls._live_server

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls._live_server = LiveServer(
            host=cls.host, port=cls.port, serve_static=cls.serve_static,
            server_settings=cls.server_settings,
        ).start()
        cls.addClassCleanup(cls._stop_live_server)

    @classmethod
    def _stop_live_server(cls) -> None:
        server, cls._live_server = cls._live_server, None
        code = server.stop() if server is not None else 0
        if code != 0:
            raise AssertionError(f"django-daphne live server exited with status {code}")
