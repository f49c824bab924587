"""The ``daphne`` command: Daphne's command line, filled into the one Config."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from .. import __version__
from ..core.config import (
    Config,
    ConfigError,
    EnvironmentConfigError,
    asgi_threads,
    log_format,
    log_level,
)
from ..core.options import COMMAND_LINE, OPTIONS, Option
from .pid_file import remove_written

if TYPE_CHECKING:
    from ..core.access_log import AccessLog

logger = logging.getLogger("django_daphne")

GROUP_TITLES = {
    "binding": "where to listen (default 127.0.0.1:8000)",
    "logging": "logging",
    "http": "HTTP and the application",
    "tls": "TLS (every ssl: binding)",
    "limits": "request limits and timeouts",
    "http2": "HTTP/2",
    "websocket": "WebSocket",
    "observability": "metrics and health",
}


def add_option_arguments(
    parser: argparse.ArgumentParser, skip: Iterable[str] = ()
) -> None:
    """Add a flag for every option (but those in ``skip``), in titled groups.  Every flag
    defaults to None, meaning "not given", so the Config can tell flags from defaults."""
    skip = set(skip)
    groups: dict[str, Any] = {}
    for option in OPTIONS:
        if option.name in skip or not option.flags:
            continue
        group = groups.get(option.group)
        if group is None:
            group = groups[option.group] = parser.add_argument_group(
                GROUP_TITLES.get(option.group, option.group)
            )
        group.add_argument(*option.flags, **_argument_kwargs(option))
        if option.name == "server_name":
            group.add_argument(
                "--no-server-name", dest="server_name", action="store_const", const="",
                help="Send no Server header.",
            )


def _argument_kwargs(option: Option) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dest": option.name, "default": None}
    help_text = option.help
    if option.metavar == "{on,off}":
        help_text += f" Default: {'on' if option.default else 'off'}."
    elif option.default not in (None, [], False, ""):
        help_text += f" Default: {option.default}."
    kwargs["help"] = help_text.replace("%", "%%")
    if option.action == "store_true":
        kwargs["action"] = "store_true"
        return kwargs
    if option.action == "append":
        kwargs["action"] = "append"
    if option.choices:
        kwargs["choices"] = option.choices
    elif option.metavar:
        kwargs["metavar"] = option.metavar
    return kwargs


def command_line_values(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line, by option name (None for absent ones)."""
    return {o.name: getattr(args, o.name, None) for o in OPTIONS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="daphne",
        description="Serve an ASGI application (Django, Channels, or any ASGI 3 app) over "
        "HTTP/1.1, HTTP/2 and WebSocket on the same port.",
        epilog="Example: daphne -b 0.0.0.0 -p 8001 myproject.asgi:application",
    )
    parser.add_argument(
        "application", metavar="APPLICATION",
        help="The application to serve, as module.path:attribute "
        "(e.g. myproject.asgi:application). The current directory is on the import path.",
    )
    parser.add_argument("--version", action="version", version=f"django-daphne {__version__}")
    parser.add_argument(
        "--show-config", action="store_true",
        help="Print every setting's effective value and where it came from (default, "
        "environment or command line), then exit without importing the application.",
    )
    add_option_arguments(parser)
    return parser


def format_config(config: Config, application: str, application_source: str) -> str:
    """The ``--show-config`` table: each setting, its effective value and its source."""
    from .endpoints import endpoint_url

    rows = [("APPLICATION", application, application_source)]
    rows += [(key, repr(value), source) for key, value, source in config.describe()]
    for description, source in config.bindings():
        rows.append(("(listening on)", description, source))
        rows.append(("(reached at)", endpoint_url(description), source))
    width = max(len(row[0]) for row in rows)
    value_width = min(50, max(len(row[1]) for row in rows))
    return "".join(
        f"{key:<{width}}  {value:<{value_width}}  {source}\n" for key, value, source in rows
    )


def configure_logging(config: Config) -> None:
    """Python logging at the level the verbosity asks for, with Twisted's log bridged in."""
    logging.basicConfig(level=log_level(config), format=log_format(config))
    if config.verbosity < 3:
        logging.getLogger("twisted").setLevel(logging.WARNING)
    from twisted.python import log

    log.PythonLoggingObserver(loggerName="twisted").start()


def open_access_log(config: Config, to_logging: bool = False) -> AccessLog | None:
    """The AccessLog the options ask for, or None. ``to_logging``: with no --access-log,
    the lines go to the ``django_daphne.access`` logger (a project's LOGGING routes it)."""
    from ..core.access_log import AccessLog

    stream: TextIO | None
    if config.access_log == "logging" or (
            to_logging and config.access_log is None and config.verbosity >= 1):
        return AccessLog(None, config.access_log_format)
    if config.access_log == "-":
        stream = sys.stdout
    elif config.access_log:
        try:
            stream = open(config.access_log, "a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--access-log: cannot open {config.access_log!r}: {exc}") from None
    elif config.verbosity >= 1:
        stream = sys.stdout
    else:
        stream = None
    return AccessLog(stream, config.access_log_format) if stream is not None else None


def binding_problems(config: Config) -> str | None:
    """What makes a binding fail before it is tried (a missing TLS file, a missing UNIX
    socket directory, an endpoint that does not parse), in one line; None when nothing."""
    from .endpoints import check_description

    problems = [p for d in config.endpoint_descriptions() for p in check_description(d)]
    return "; ".join(problems) or None


def serve(application: Any, config: Config, access_log: AccessLog | None = None) -> int:
    """Run the server for ``application`` (already imported) until it stops."""
    from .runtime import Server

    return Server(application, config, access_log=access_log).run()


def fail(message: str, verbosity: int = 1, exc: BaseException | None = None) -> int:
    """Report a startup error in one line (with its traceback at verbosity 2 and above)."""
    if exc is not None and verbosity >= 2:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    print(f"daphne: error: {message}", file=sys.stderr)
    return 1


def stop_during_startup(signum: int, frame: Any) -> None:
    """SIGTERM before the server installs its own handler (while the application imports,
    say): die of it, as without a handler.  As PID 1 in a container the kernel ignores a
    signal left to its default action, so `docker stop` would wait its 10 seconds and
    SIGKILL a server that went on to start: exit instead."""
    remove_written()  # (--pid-file: written, but no server to remove it yet)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop_during_startup)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = Config.build(command_line=command_line_values(args), environ=os.environ)
    except EnvironmentConfigError as exc:
        return fail(str(exc))  # (not a usage error: 1, as for any other failure to start)
    except ConfigError as exc:
        print(f"daphne: error: {exc}", file=sys.stderr)
        return 2
    try:
        asgi_threads()
    except ConfigError as exc:
        return fail(str(exc))
    if args.show_config:
        sys.stdout.write(format_config(config, args.application, COMMAND_LINE))
        return 0
    problem = binding_problems(config)
    if problem is not None:
        return fail(problem)
    configure_logging(config)
    from . import reactor

    try:
        reactor.install(config.loop)
    except RuntimeError as exc:
        return fail(str(exc))
    from .loading import AppImportError, import_application

    try:
        application = import_application(args.application)
    except AppImportError as exc:
        return fail(str(exc), config.verbosity, exc.__cause__ or exc)
    try:
        access_log = open_access_log(config)
    except ConfigError as exc:
        return fail(str(exc))
    return serve(application, config, access_log)
