"""What ``manage.py daphne``, ``manage.py runserver`` and the live-server test case share:
the reactor for this thread, logging through Django's ``LOGGING``, the development request
log, and static files."""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import CommandError, SystemCheckError

from ..core.access_log import AccessLog
from ..core.config import Config, log_format, log_level
from ..server.loading import failed_files


def ensure_reactor(kind: str = "auto", fresh: bool = False) -> Any:
    """The asyncio reactor on the loop ``kind`` asks for (the app module installed one at
    import time): see :func:`django_daphne.server.reactor.reinstall`."""
    from ..server.reactor import reinstall

    return reinstall(kind, fresh)


def logging_configured() -> bool:
    """Whether the project's LOGGING gives the ``django_daphne`` logger (or the root
    logger) a handler or a level: then the access log goes through ``logging`` too."""
    for name in ("django_daphne.access", "django_daphne", ""):
        logger = logging.getLogger(name or None)
        if logger.handlers or (name and logger.level != logging.NOTSET):
            return True
    return False


def configure_logging(config: Config, django_logging: bool = True,
                      datefmt: str | None = None) -> None:
    """Send the server's log records somewhere a user sees them.

    Django's ``LOGGING`` wins: when it gives the ``django_daphne`` (or ``twisted``) logger, or
    the root logger, a handler or a level, nothing is changed.  Otherwise the server's lines
    go to stderr in ``LOG_FMT`` at the level the verbosity asks for, as with ``daphne``.
    """
    handler: logging.Handler | None = None
    level = log_level(config)
    for name, wanted in (
        ("django_daphne", level),
        ("twisted", logging.DEBUG if config.verbosity >= 3 else logging.WARNING),
    ):
        logger = logging.getLogger(name)
        configured = logger.handlers or logger.level != logging.NOTSET
        if django_logging and (configured or logging.getLogger().handlers):
            continue
        if handler is None:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter(log_format(config), datefmt))
        logger.addHandler(handler)
        logger.setLevel(wanted)
        logger.propagate = False
    from twisted.python import log

    log.PythonLoggingObserver(loggerName="twisted").start()


class DjangoServerLog(AccessLog):
    """The development request log: one line per request through the ``django.server``
    logger, which Django's default ``LOGGING`` prints with the time and coloured by status,
    like ``runserver``'s own lines."""

    def __init__(self) -> None:
        self.server_logger = logging.getLogger("django.server")

    def write_entry(
        self, client: Any, request: str, status: Any, size: Any, scope: Any = None,
        duration: float | None = None,
    ) -> None:
        code = int(status) if status else 0
        level = logging.ERROR if code >= 500 else logging.WARNING if code >= 400 else (
            logging.INFO
        )
        self.server_logger.log(
            level, '"%s" %s %s', request, status or "-", size or "-",
            extra={"status_code": code or None, "server_time": _server_time()},
        )

    def http(self, stream: Any) -> None:
        """A completed request, as Django writes it: ``"GET /path?query HTTP/1.1" 200 42``."""
        scope = stream.scope
        target = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        request = "%s %s HTTP/%s" % (scope["method"], target, scope["http_version"])
        self.write_entry(scope["client"], request, stream.status, stream.sent, scope)

    def websocket(self, scope: Any, action: str) -> None:
        """A WebSocket event: HANDSHAKING, CONNECT, REJECT or DISCONNECT."""
        path = scope["raw_path"].decode("latin-1")
        client = scope.get("client")
        where = "%s:%s" % tuple(client[:2]) if client else "-"
        # a status only picks the colour: accepted in green, refused in yellow
        code = {"CONNECT": 200, "REJECT": 403}.get(action, 101)
        level = logging.WARNING if action == "REJECT" else logging.INFO
        self.server_logger.log(
            level, "WebSocket %s %s [%s]", action, path, where,
            extra={"status_code": code, "server_time": _server_time()},
        )

    def flush(self) -> None:
        pass


def _server_time() -> str:
    return time.strftime("%d/%b/%Y %H:%M:%S")


def load_application(path: str | None) -> Any:
    """The application at ``path`` (``module:attribute``), or Django's own ASGI handler when
    ASGI_APPLICATION is not set (system check W001 says so)."""
    if path is None:
        from django.core.asgi import get_asgi_application

        return get_asgi_application()
    from ..server.loading import import_application

    return import_application(path)


def wants_traceback(options: dict[str, Any]) -> bool:
    """Django's --traceback, or -v 2 and above (manage.py daphne's -v defaults to None)."""
    return bool(options.get("traceback")) or (options.get("verbosity") or 1) >= 2


class ShowsImportTracebacks:
    """For a command: when the system checks fail and ASGI_APPLICATION does not import
    (check E002, one line naming the file and line), ``--traceback`` or ``-v 2`` also show
    the traceback of the project's exception, which Django's own traceback would not."""

    wants_traceback = False
    stderr: Any

    def execute(self, *args: Any, **options: Any) -> Any:
        self.wants_traceback = wants_traceback(options)
        return super().execute(*args, **options)  # type: ignore[misc]

    def check(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().check(*args, **kwargs)  # type: ignore[misc]
        except SystemCheckError as exc:
            failed = exc
        if self.wants_traceback:  # (outside the except: its traceback is the project's alone)
            self.write_import_traceback()
        raise failed

    def write_import_traceback(self) -> None:
        from ..conf import application_path
        from ..core.config import ConfigError
        from ..server.loading import AppImportError, import_application

        try:
            path = application_path()
            if path is not None:
                import_application(path)
        except (ConfigError, AppImportError) as exc:
            cause = exc.__cause__ or exc
            self.stderr.write("".join(traceback.format_exception(cause)).rstrip("\n"))


def watch_failed_import(exc: BaseException) -> None:
    """Have Django's autoreloader watch the project files an import of the application
    failed in. A module that failed to import is not in ``sys.modules``, so the reloader
    would not see its fix; Django's runserver adds such a file to the same list when its own
    handler fails to load (``autoreload.check_errors``), but our import fails inside a
    system check, whose traceback ends in Django."""
    from django.utils import autoreload

    error_files = getattr(autoreload, "_error_files", None)
    if error_files is None:  # pragma: no cover - pinned by tests/django/test_django_runserver.py
        return
    for path in failed_files(exc):
        if path not in error_files:
            error_files.append(path)


def import_failure(exc: Exception, options: dict[str, Any], stderr: Any) -> CommandError:
    """The one-line error for an application that did not import (it names the file and
    line); with ``--traceback`` or ``-v 2`` the traceback of the project's exception is
    written first, as Django's commands show theirs."""
    if wants_traceback(options):
        cause = exc.__cause__ or exc
        stderr.write("".join(traceback.format_exception(cause)).rstrip("\n"))
    return CommandError(str(exc))


def with_static_files(application: Any) -> Any:
    """``application`` behind Django's ASGIStaticFilesHandler (STATIC_URL from the finders,
    as runserver serves it in development)."""
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    return ASGIStaticFilesHandler(application)


def static_files(application: Any) -> Any:
    """``application`` behind django-daphne's own static file server (``--static``):
    STATIC_ROOT at STATIC_URL, for production."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from ..staticfiles.handler import StaticFiles

    url = settings.STATIC_URL or ""
    if not settings.STATIC_ROOT:
        raise ImproperlyConfigured("--static (DAPHNE['STATIC']) needs STATIC_ROOT set.")
    if "://" in url or url.startswith("//"):
        # a CDN in front (https://cdn.example.com/static/) pulls the files from this
        # server at the URL's path, as with WhiteNoise
        url = urlsplit(url).path or "/"
    script_prefix = settings.FORCE_SCRIPT_NAME or ""
    if script_prefix and url.startswith(script_prefix.rstrip("/") + "/"):
        url = url[len(script_prefix.rstrip("/")):]
    if url.strip("/") == "":
        raise ImproperlyConfigured(
            f"--static (DAPHNE['STATIC']) cannot serve STATIC_URL {settings.STATIC_URL!r}: it "
            "would take over every URL of the site; give static files a prefix of their "
            "own, such as '/static/'."
        )
    return StaticFiles(application, str(settings.STATIC_ROOT), url)
