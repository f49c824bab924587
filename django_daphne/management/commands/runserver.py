"""``manage.py runserver``: Django's development server command, serving over ASGI with
django-daphne (HTTP and WebSocket), with Django's autoreloader, static files and request log.

``--noasgi`` runs Django's own WSGI server instead.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from datetime import datetime
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.staticfiles.management.commands.runserver import (
    Command as StaticfilesRunserver,
)
from django.core.management.base import CommandError
from django.db import connections
from django.utils import autoreload

from ... import __version__
from ...conf import DjangoConfig, application_path, build_config
from ...core.config import Config, ConfigError, asgi_threads
from ...core.options import DEFAULT, OPTIONS_BY_NAME
from ...server.loading import AppImportError
from ..serving import (
    DjangoServerLog,
    ShowsImportTracebacks,
    configure_logging,
    ensure_reactor,
    import_failure,
    load_application,
    watch_failed_import,
    with_static_files,
)

# The longest a stop (Ctrl-C, or an autoreload restart) waits for requests in flight in
# development, whatever SHUTDOWN_TIMEOUT says for production: an open stream or long poll
# must not hold every reload.
DEVELOPMENT_SHUTDOWN_TIMEOUT = 2.0

# the server's own lines in the format of Django's request lines (its django.server logger)
RUNSERVER_LOG_FORMAT = "[%(asctime)s] %(message)s"
RUNSERVER_DATE_FORMAT = "%d/%b/%Y %H:%M:%S"

# Daphne's runserver flags and the options they set
DAPHNE_RUNSERVER_FLAGS = {
    "--http_timeout": "http_timeout",
    "--websocket_handshake_timeout": "websocket_connect_timeout",
    "--websocket-max-message-size": "websocket_max_message_size",
    "--websocket-max-frame-size": "websocket_max_frame_size",
}


# Django's --nothreading serves one WSGI request at a time; an ASGI server has no such mode
NOTHREADING_NOTE = (
    "--nothreading is ignored: django-daphne serves every request from one event loop "
    "(synchronous views run in asgiref's threads); --noasgi runs Django's WSGI server, "
    "where --nothreading applies.\n"
)


class Command(ShowsImportTracebacks, StaticfilesRunserver):
    help = (
        "Starts the django-daphne ASGI development server (HTTP and WebSocket), restarting "
        "it when code changes and serving static files when DEBUG is on."
    )

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--noasgi", action="store_false", dest="use_asgi",
            help="Run Django's own WSGI development server instead of django-daphne.",
        )
        # Daphne's runserver flags, for projects that switch; each overrides its DAPHNE key
        for flag, name in DAPHNE_RUNSERVER_FLAGS.items():
            option = OPTIONS_BY_NAME[name]
            parser.add_argument(
                flag, dest=name, default=None, metavar=option.metavar,
                help=f"As {option.flag} of manage.py daphne (DAPHNE['{option.setting}']): "
                + option.help.replace("%", "%%"),
            )

    def handle(self, *args: Any, **options: Any) -> None:
        if options.get("use_asgi", True) and not options.get("use_threading", True):
            self.stderr.write(NOTHREADING_NOTE)
        if options.get("use_asgi", True):
            # what no file change can fix is refused here, before the autoreloader starts
            try:
                self.server_flags(options)
                asgi_threads()
            except ConfigError as exc:
                raise CommandError(str(exc)) from None
            problems = DjangoConfig.environment_problems(os.environ)
            if problems:
                raise CommandError(str(problems[0]))
        super().handle(*args, **options)

    def run(self, **options: Any) -> None:
        reloader_parent = os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) != "true"
        if options["use_reloader"] and options.get("use_asgi", True) and reloader_parent:
            # Ctrl-C reaches both the reloader's parent and the serving child. Django's parent
            # kills the child 0.25 s later; wait instead while it stops gracefully (a second
            # Ctrl-C still ends both at once).
            signal.signal(signal.SIGINT, _interrupt_next_time)
        super().run(**options)

    def inner_run(self, *args: Any, **options: Any) -> None:
        self.serving_asgi = options.get("use_asgi", True)
        if not self.serving_asgi:
            return super().inner_run(*args, **options)
        # an exception silenced in the reloader's parent is raised here, in the child
        autoreload.raise_last_exception()
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        self.check_migrations()
        for connection in connections.all(initialized_only=True):
            connection.close()
        try:
            config = self.server_config(options)
            application = self.get_application(**options)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        except AppImportError as exc:
            watch_failed_import(exc)  # (with --skip-checks, E002 did not see it)
            raise import_failure(exc, options, self.stderr) from None
        in_main_thread = threading.current_thread() is threading.main_thread()
        configure_logging(config, datefmt=RUNSERVER_DATE_FORMAT)
        ensure_reactor(config.loop, fresh=not in_main_thread)

        from ...server.runtime import Server

        server = Server(
            application, config, access_log=DjangoServerLog(),
            on_ready=lambda listening: self.on_bind(server.ports[0].getHost().port),
            install_signal_handlers=in_main_thread,
        )
        stopped = threading.Event()
        if not in_main_thread:
            # The autoreloader's main thread exits on Ctrl-C and before each restart: stop
            # gracefully then, so the port is free and the lifespan shutdown runs.
            atexit.register(_stop_from_other_thread, server, stopped, config.shutdown_timeout)
        try:
            code = server.run()
        finally:
            stopped.set()
        if code and not server.listening:
            # the server logged why; sys.exit would not end the process from this thread
            os._exit(1)
        shutdown_message = options.get("shutdown_message", "")
        if shutdown_message:
            self.stdout.write(shutdown_message)
        sys.exit(code)

    def server_config(self, options: dict[str, Any] | None = None) -> Config:
        """The ``DAPHNE`` settings (timeouts, limits, ...), the ``DJANGO_DAPHNE_*``
        environment variables over them and Daphne's runserver flags over both, listening
        on addrport only, stopping within ``DEVELOPMENT_SHUTDOWN_TIMEOUT``, with the
        server's own lines at warning level unless ``VERBOSITY`` asks for more: the banner
        and the request log say the rest."""
        full = build_config(environ=os.environ)
        config, ignored = full.single_process()
        if ignored and (options or {}).get("verbosity", 1) >= 2:
            self.stdout.write(
                "runserver runs one process: " + ", ".join(
                    full.given_as(name) for name in ignored)
                + " apply to manage.py daphne and are ignored here.\n")
        verbosity = config.verbosity if config.sources["verbosity"] != DEFAULT else 1
        if config.sources["log_fmt"] == DEFAULT:
            # as Django's request lines: "[06/Dec/2026 09:30:00] message"
            config = config.replace(log_fmt=RUNSERVER_LOG_FORMAT)
        return config.replace(
            bind=self.addr, port=int(self.port), unix_socket=None, fd=None, endpoints=[],
            verbosity=0 if verbosity < 2 else verbosity,
            shutdown_timeout=min(config.shutdown_timeout, DEVELOPMENT_SHUTDOWN_TIMEOUT),
            **self.server_flags(options or {}),
        )

    @staticmethod
    def server_flags(options: dict[str, Any]) -> dict[str, Any]:
        """The options Daphne's runserver flags set, validated (ConfigError naming the
        flag)."""
        changes: dict[str, Any] = {}
        for flag, name in DAPHNE_RUNSERVER_FLAGS.items():
            raw = options.get(name)
            if raw is not None:
                try:
                    changes[name] = OPTIONS_BY_NAME[name].clean(raw)
                except ValueError as exc:
                    raise ConfigError(f"{flag}: {exc}") from None
        return changes

    def get_application(self, **options: Any) -> Any:
        """ASGI_APPLICATION (Django's own ASGI handler when unset), behind the static files
        handler when staticfiles is installed and DEBUG is on or --insecure is given."""
        application = load_application(application_path())
        serve_static = options["use_static_handler"] and (
            settings.DEBUG or options["insecure_serving"]
        )
        if serve_static and apps.is_installed("django.contrib.staticfiles"):
            application = with_static_files(application)
        return application

    def on_bind(self, server_port: int) -> None:
        if not getattr(self, "serving_asgi", True):
            return super().on_bind(server_port)
        quit_command = "CTRL-BREAK" if sys.platform == "win32" else "CONTROL-C"
        if self._raw_ipv6:
            addr = f"[{self.addr}]"
        elif self.addr == "0":
            addr = "0.0.0.0"
        else:
            addr = self.addr
        now = datetime.now().strftime("%B %d, %Y - %X")
        self.stdout.write(
            f"{now}\n"
            f"Django version {self.get_version()}, using settings "
            f"{settings.SETTINGS_MODULE!r}\n"
            f"Starting ASGI/django-daphne version {__version__} development server at "
            f"{self.protocol}://{addr}:{server_port}/\n"
            f"Quit the server with {quit_command}."
        )
        if os.environ.get("DJANGO_RUNSERVER_HIDE_WARNING") != "true":
            # as Django's runserver warns, naming the production server to use instead
            self.stdout.write(self.style.WARNING(
                "WARNING: This is a development server. Do not use it in a production "
                "setting. Use `manage.py daphne` instead."
            ))
        self.stdout.flush()


def _interrupt_next_time(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _stop_from_other_thread(server: Any, stopped: threading.Event, timeout: float) -> None:
    """Ask the server running in another thread to stop, and wait (bounded) until it has;
    a Ctrl-C meanwhile makes it stop at once."""
    if stopped.is_set() or not server.listening:
        return

    def stop(*args: Any) -> None:
        server.loop.call_soon_threadsafe(server.request_stop)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, stop)
    stop()
    stopped.wait(timeout + 2)
