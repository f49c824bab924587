"""``manage.py daphne``: serve ASGI_APPLICATION in production, configured by settings.py.

Every option of the ``daphne`` command is a flag here with the same name; each also has a
``DAPHNE`` settings key and a ``DJANGO_DAPHNE_*`` environment variable.  The command line
wins over the environment, the environment over settings, settings over the defaults.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
from typing import Any

from django.core.checks import CheckMessage
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, SystemCheckError

from ... import __version__
from ...checks import serving_checks
from ...conf import DJANGO_OPTIONS, application_path, build_config, import_path
from ...core.config import ConfigError, asgi_threads
from ...core.options import BINDING_OPTIONS, COMMAND_LINE, DEFAULT, OPTIONS, SETTINGS
from ...server.cli import (
    add_option_arguments,
    binding_problems,
    format_config,
    open_access_log,
    stop_during_startup,
)
from ...server.loading import AppImportError
from ..serving import (
    ShowsImportTracebacks,
    configure_logging,
    ensure_reactor,
    import_failure,
    load_application,
    logging_configured,
    static_files,
)

ADDRPORT_RE = re.compile(
    r"^(?:(?P<addr>\d{1,3}(?:\.\d{1,3}){3}|\[[a-fA-F0-9:]+\]|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*)"
    r":)?(?P<port>\d+)$"
)


def parse_addrport(value: str) -> tuple[str | None, int]:
    """runserver's ``addrport``: ``8001``, ``0.0.0.0:8001``, ``[::1]:8001``, ``host:8001``."""
    match = ADDRPORT_RE.match(value)
    if match is None:
        raise CommandError(
            f"{value!r} is not a valid port number or address:port pair "
            "(for example 8001, 0.0.0.0:8001 or [::1]:8001)."
        )
    addr = match.group("addr")
    if addr == "0":
        addr = "0.0.0.0"
    elif addr and addr.startswith("["):
        addr = addr[1:-1]
    return addr, int(match.group("port"))


class Command(ShowsImportTracebacks, BaseCommand):
    help = (
        "Serve the project's ASGI application (ASGI_APPLICATION) with django-daphne, "
        "configured by the DAPHNE setting and these flags. The production server: no "
        "autoreload, graceful shutdown on SIGTERM and SIGINT."
    )

    def get_version(self) -> str:
        return f"django-daphne {__version__} (Django {super().get_version()})"

    def report_checks(self, messages: list[CheckMessage]) -> None:
        """Show what serving_checks found as Django shows its system checks: errors stop
        the command, warnings are printed (SILENCED_SYSTEM_CHECKS applies)."""
        messages = [m for m in messages if not m.is_silenced()]
        errors = [m for m in messages if m.is_serious()]
        warnings = [m for m in messages if not m.is_serious()]
        if errors:
            raise SystemCheckError(  # as Django's own check() formats it
                "SystemCheckError: System check identified some issues:\n\nERRORS:\n"
                + "\n".join(str(m) for m in errors))
        if warnings:
            self.stderr.write("System check identified some issues:\n\nWARNINGS:\n"
                              + "\n".join(str(m) for m in warnings) + "\n")

    def execute(self, *args: Any, **options: Any) -> Any:
        if options.get("addrport") or any(options.get(name) not in (None, [])
                                          for name in BINDING_OPTIONS):
            # the command line's bindings replace settings.py's: E007 about the latter
            # would refuse a binding that is not bound (the former are checked in handle)
            from django.conf import settings

            settings.SILENCED_SYSTEM_CHECKS = [*settings.SILENCED_SYSTEM_CHECKS,
                                               "django_daphne.E007"]
        return super().execute(*args, **options)

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # Django's -v is daphne's -v: "not given" must stay None so that DAPHNE['VERBOSITY']
        # applies when the flag is absent.
        parser.set_defaults(verbosity=None)
        return parser

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "addrport", nargs="?",
            help="Optional port number, or ipaddr:port, as for runserver (the same as -b/-p).",
        )
        parser.add_argument(
            "--application", metavar="PATH",
            help="The ASGI application to serve instead of ASGI_APPLICATION, as "
            "module.path:attribute or module.path.attribute.",
        )
        parser.add_argument(
            "--show-config", action="store_true",
            help="Print every setting's effective value and where it came from (default, "
            "settings, environment or command line), then exit.",
        )
        add_option_arguments(parser, skip={"verbosity"})
        group = parser.add_argument_group("Django")
        for option in DJANGO_OPTIONS:
            group.add_argument(
                *option.flags, dest=option.name, action=option.action, default=None,
                help=option.help,
            )

    def handle(self, *args: Any, **options: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            # as the daphne command: a SIGTERM before the server's own handler is in place
            # ends the process (as PID 1 in a container it would otherwise be ignored)
            signal.signal(signal.SIGTERM, stop_during_startup)
        command_line = {o.name: options.get(o.name) for o in (*OPTIONS, *DJANGO_OPTIONS)}
        if options["addrport"]:
            if options["bind"] is not None or options["port"] is not None:
                raise CommandError("Give either addrport or -b/--bind and -p/--port, not both.")
            addr, port = parse_addrport(options["addrport"])
            command_line["port"] = port
            if addr is not None:
                command_line["bind"] = addr
        app_path: str | None
        try:
            config = build_config(command_line, environ=os.environ)
            asgi_threads()
            if options["application"]:
                app_path, app_source = import_path(options["application"]), COMMAND_LINE
            else:
                app_path, app_source = application_path(), f"{SETTINGS} (ASGI_APPLICATION)"
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        if app_path is None:
            app_source = f"{DEFAULT} (ASGI_APPLICATION is not set)"
        if options["show_config"]:
            shown = app_path or "django.core.asgi.get_asgi_application()"
            self.stdout.write(format_config(config, shown, app_source), ending="")
            return
        problem = binding_problems(config)
        if problem is not None:  # the command line's bindings (check E007 did DAPHNE's)
            raise CommandError(problem)
        if not options["skip_checks"]:
            self.report_checks(serving_checks(config))
        routed = logging_configured()  # (before configure_logging adds our handler)
        configure_logging(config)
        try:
            ensure_reactor(config.loop)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        try:
            application = load_application(app_path)
        except AppImportError as exc:
            raise import_failure(exc, options, self.stderr) from None
        if config.static:
            try:
                application = static_files(application)
            except ImproperlyConfigured as exc:
                raise CommandError(str(exc)) from None
        try:
            access_log = open_access_log(config, to_logging=routed)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        from ...server.runtime import Server

        code = Server(application, config, access_log=access_log).run()
        if code:
            sys.exit(code)
