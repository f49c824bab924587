"""The one configuration object.

Every option is declared once, in ``OPTIONS`` (:mod:`.options`; how each value is read:
:mod:`.converters`).  The ``daphne`` command, ``manage.py daphne``, ``manage.py
runserver``, the system checks and the server itself read the same table and the same
:class:`Config`, filled from defaults, then settings.py, then the environment
(``DJANGO_DAPHNE_`` and the settings key: ``DJANGO_DAPHNE_WORKERS=2``), then the command
line.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from .converters import DEFAULT_HOST, DEFAULT_PORT, split_list
from .options import (
    BINDING_OPTIONS,
    COMMAND_LINE,
    DEFAULT,
    DEFAULT_LOG_FMT,
    ENVIRONMENT,
    ENVIRONMENT_PREFIX,
    INTERNAL_VARIABLES,
    OPTIONS,
    OPTIONS_BY_NAME,
    PROCESS_OPTIONS,
    RECYCLING_OPTIONS,
    SETTINGS,
    Option,
)


class ConfigError(ValueError):
    """A setting or flag has a value the server cannot use; the message names it."""


class EnvironmentConfigError(ConfigError):
    """A ``DJANGO_DAPHNE_*`` environment variable is unknown, or its value is not valid;
    the message names the variable."""


def suggest(name: str, candidates: Iterable[str]) -> str:
    """A ' Did you mean X?' suffix for a misspelt name, or ''."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" Did you mean {close[0]}?" if close else ""


@dataclass(frozen=True)
class SettingProblem:
    """What is wrong with one setting: an ``unknown`` key, an ``invalid`` value (``reason``
    says why) or a ``combination`` that contradicts itself; ``message`` names it as it was
    given.  ``source`` says where the key was given: ``SETTINGS`` (``key`` is the settings
    key) or ``ENVIRONMENT`` (``key`` is the variable)."""

    kind: str
    key: str
    message: str
    reason: str = ""
    source: str = SETTINGS

    def __str__(self) -> str:
        return self.message


_C = TypeVar("_C", bound="Config")


class Config:
    """Every option's effective value, as a typed attribute, plus where each came from.

    Build one with :meth:`Config.build`.  The attributes are the options of ``options``
    (``config.port``, ``config.http_timeout``, ...; tests/core/test_config.py holds the
    annotations below to that table), and ``config.sources[name]`` says whether the value
    is the default, from settings.py, from the environment or from the command line.  A
    subclass adds options of its own (the Django layer's ``DjangoConfig``).
    """

    options: ClassVar[tuple[Option, ...]] = OPTIONS
    # what reads these options, for the message about an unknown DJANGO_DAPHNE_ variable
    reader: ClassVar[str] = "the daphne command"

    bind: str | None
    port: int | None
    unix_socket: str | None
    unix_socket_mode: str | None
    fd: int | None
    endpoints: list[str]
    verbosity: int
    access_log: str | None
    access_log_format: str | None
    log_fmt: str
    http_timeout: float | None
    application_close_timeout: float
    root_path: str
    proxy_headers: bool
    forwarded_allow_ips: list[str]
    proxy_protocol: bool
    proxy_headers_host: str | None
    proxy_headers_port: str | None
    proxy_headers_proto: str | None
    ssl_minimum_version: str
    ssl_ciphers: str | None
    ssl_alpn: list[str] | None
    ssl_ca_certs: str | None
    ssl_cert_reqs: str
    server_name: str
    lifespan: str
    shutdown_timeout: float
    workers: int
    max_requests: int
    max_requests_jitter: int
    max_worker_memory: int
    max_worker_lifetime: float
    max_worker_lifetime_jitter: float
    worker_boot_timeout: float
    worker_timeout: float
    reuse_port: bool
    pid_file: str | None
    http_parser: str
    loop: str
    max_request_line: int
    max_header_size: int
    max_headers: int
    header_timeout: float
    body_timeout: float
    keep_alive_timeout: float
    limit_concurrency: int
    send_timeout: float
    http2: bool
    http2_max_concurrent_streams: int
    http2_initial_window_size: int
    http2_max_frame_size: int
    http2_max_header_list_size: int
    http2_idle_timeout: float
    http2_websocket: bool
    websocket_timeout: float
    websocket_connect_timeout: float
    ping_interval: float
    ping_timeout: float
    websocket_max_message_size: int
    websocket_compression: bool
    websocket_max_frame_size: int
    metrics_endpoint: str | None
    unready_delay: float
    loop_block_threshold: float

    def __init__(self, values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
        for option in self.options:
            setattr(self, option.name, values[option.name])
        self.sources: dict[str, str] = dict(sources)

    @property
    def values(self) -> dict[str, Any]:
        return {option.name: getattr(self, option.name) for option in self.options}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.values!r})"

    @classmethod
    def build(
        cls: type[_C],
        settings: Mapping[str, Any] | None = None,
        command_line: Mapping[str, Any] | None = None,
        settings_name: str = "DAPHNE",
        environ: Mapping[str, str] | None = None,
    ) -> _C:
        """Defaults, then ``settings`` (upper-case keys), then the ``DJANGO_DAPHNE_*``
        variables of ``environ`` (None: the environment is not read), then ``command_line``
        (option names).

        A ``None`` on the command line means "not given".  Bindings replace those of the
        sources before them: the environment's replace the settings', the command line's
        both.  Raises :class:`ConfigError` naming the setting or flag and saying what would
        be valid (:class:`EnvironmentConfigError`, naming the variable, for the
        environment).
        """
        values, sources, problems = cls._read_settings(settings or {}, settings_name)
        if problems:
            raise ConfigError(str(problems[0]))
        if environ is not None:
            found, problems = cls._read_environment(environ)
            if problems:
                raise EnvironmentConfigError(str(problems[0]))
            cls._apply_environment(values, sources, found)
        by_name = {option.name: option for option in cls.options}
        for name, raw in (command_line or {}).items():
            option = by_name[name]
            if raw is None or (option.action == "append" and not raw):
                continue
            if option.action == "store_true" and raw is False:
                continue
            try:
                values[name] = option.clean(raw)
            except ValueError as exc:
                raise ConfigError(f"{option.flag}: {exc}") from None
            sources[name] = COMMAND_LINE
        if any(sources[name] == COMMAND_LINE for name in BINDING_OPTIONS):
            # bindings on the command line replace those in the settings and the
            # environment, as a process manager that passes its own socket (systemd:,
            # --fd) expects
            _reset_bindings(values, sources, (SETTINGS, ENVIRONMENT))
        config = cls(values, sources)
        config._check_combinations(settings_name)
        return config

    @classmethod
    def setting_problems(cls, settings: Mapping[str, Any], settings_name: str = "DAPHNE",
                         environ: Mapping[str, str] | None = None) -> list[SettingProblem]:
        """Every unknown key and invalid value of ``settings`` (and of the
        ``DJANGO_DAPHNE_*`` variables of ``environ``, when given), and (when there are none)
        every combination that contradicts itself: what :meth:`build` would refuse, all at
        once (the system checks report them all)."""
        values, sources, problems = cls._read_settings(settings, settings_name)
        if environ is not None:
            found, environment_problems = cls._read_environment(environ)
            problems += environment_problems
            cls._apply_environment(values, sources, found)
        if not problems:
            problems = cls(values, sources)._combination_problems(settings_name)
        return problems

    @classmethod
    def environment_problems(cls, environ: Mapping[str, str]) -> list[SettingProblem]:
        """Every ``DJANGO_DAPHNE_*`` variable of ``environ`` that names no option, or whose
        value is not valid."""
        return cls._read_environment(environ)[1]

    @classmethod
    def _read_environment(cls, environ: Mapping[str, str]
                          ) -> tuple[dict[str, Any], list[SettingProblem]]:
        """The options that ``DJANGO_DAPHNE_*`` variables set (by option name, cleaned), and
        what was wrong: a variable of the prefix that names no option, or a value that is
        not valid.  An empty variable counts as unset, as for ASGI_THREADS; a list option
        takes its items comma-separated."""
        by_variable = {option.variable: option for option in cls.options}
        found: dict[str, Any] = {}
        problems: list[SettingProblem] = []
        for variable in sorted(environ):
            if not variable.startswith(ENVIRONMENT_PREFIX) or variable in INTERNAL_VARIABLES:
                continue
            option = by_variable.get(variable)
            if option is None:
                problems.append(SettingProblem(
                    "unknown", variable, f"The environment variable {variable} is not a "
                    f"setting of {cls.reader}.{suggest(variable, by_variable)}",
                    source=ENVIRONMENT))
                continue
            raw = environ[variable]
            if not raw.strip():
                continue
            try:
                found[option.name] = option.clean(
                    split_list(raw) if option.action == "append" else raw)
            except ValueError as exc:
                problems.append(SettingProblem(
                    "invalid", variable, f"{variable}: {exc}", str(exc), source=ENVIRONMENT))
        return found, problems

    @staticmethod
    def _apply_environment(values: dict[str, Any], sources: dict[str, str],
                           found: Mapping[str, Any]) -> None:
        """The environment's values over the settings'; its bindings replace theirs."""
        if any(name in found for name in BINDING_OPTIONS):
            _reset_bindings(values, sources, (SETTINGS,))
        for name, value in found.items():
            values[name] = value
            sources[name] = ENVIRONMENT

    @classmethod
    def _read_settings(cls, settings: Mapping[str, Any], settings_name: str
                       ) -> tuple[dict[str, Any], dict[str, str], list[SettingProblem]]:
        """The defaults, then ``settings``: values, sources, and what was wrong."""
        by_setting = {option.setting: option for option in cls.options}
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        problems: list[SettingProblem] = []
        option: Option | None
        for option in cls.options:
            default = option.default
            values[option.name] = list(default) if isinstance(default, list) else default
            sources[option.name] = DEFAULT
        for key, raw in settings.items():
            option = by_setting.get(key) if isinstance(key, str) else None
            if option is None:
                problems.append(SettingProblem(
                    "unknown", str(key), f"{settings_name}[{key!r}] is not a setting of "
                    f"django-daphne.{suggest(str(key), by_setting)}"))
                continue
            try:
                values[option.name] = option.clean(raw)
            except ValueError as exc:
                problems.append(SettingProblem(
                    "invalid", key, f"{settings_name}[{key!r}]: {exc}", str(exc)))
                continue
            sources[option.name] = SETTINGS
        return values, sources, problems

    def given_as(self, name: str, settings_name: str = "DAPHNE") -> str:
        """How the option ``name`` was given, for messages: ``DAPHNE['PORT']``,
        ``DJANGO_DAPHNE_PORT``, or its flag (from the command line, or by default)."""
        option = next(o for o in self.options if o.name == name)
        source = self.sources.get(name, DEFAULT)
        if source == SETTINGS:
            return f"{settings_name}[{option.setting!r}]"
        if source == ENVIRONMENT:
            return option.variable
        return option.flag

    def replace(self: _C, **changes: Any) -> _C:
        """A copy with some values changed (validated, marked as from the command line)."""
        by_name = {option.name: option for option in self.options}
        values = self.values
        sources = dict(self.sources)
        for name, raw in changes.items():
            values[name] = by_name[name].clean(raw)
            sources[name] = COMMAND_LINE
        config = type(self)(values, sources)
        config._check_combinations()
        return config

    def _check_combinations(self, settings_name: str = "DAPHNE") -> None:
        problems = self._combination_problems(settings_name)
        if problems:
            option = next((o for o in self.options if o.setting == problems[0].key), None)
            if option is not None and self.sources.get(option.name) == ENVIRONMENT:
                raise EnvironmentConfigError(str(problems[0]))
            raise ConfigError(str(problems[0]))

    def _combination_problems(self, settings_name: str) -> list[SettingProblem]:
        """Values that contradict each other, named as they were given."""
        problems = []
        if not self.proxy_headers:
            for name in ("proxy_headers_host", "proxy_headers_port", "proxy_headers_proto"):
                if getattr(self, name) is not None:
                    option = OPTIONS_BY_NAME[name]
                    if self.sources[name] == SETTINGS:
                        message = (f"{settings_name}[{option.setting!r}] has no effect without "
                                   f"{settings_name}['PROXY_HEADERS'] = True, and the server "
                                   "refuses to start.")
                    elif self.sources[name] == ENVIRONMENT:
                        message = (f"{option.variable} has no effect without PROXY_HEADERS "
                                   "on (DJANGO_DAPHNE_PROXY_HEADERS=1), and the server "
                                   "refuses to start.")
                    else:
                        message = (f"{option.flag} ({option.setting}) has no effect without "
                                   "--proxy-headers (PROXY_HEADERS = True).")
                    problems.append(SettingProblem("combination", option.setting, message,
                                                   source=self.sources[name]))
        if self.supervised and not hasattr(os, "fork"):
            option = OPTIONS_BY_NAME["workers"]
            problems.append(SettingProblem(
                "combination", option.setting,
                f"{option.flag} ({option.setting}) and --max-requests need a POSIX system "
                "(fork, and signals between processes), as do --max-worker-memory and "
                "--max-worker-lifetime; run one process here (Windows is for development: "
                "runserver, or daphne without --workers)."))
        if self.ssl_alpn == ["h2"] and not self.http2:
            problems.append(SettingProblem(
                "combination", "SSL_ALPN", "--ssl-alpn (SSL_ALPN) offers h2 alone while "
                "--http2 (HTTP2) is off: TLS clients would have no protocol to agree on."))
        if self.ssl_cert_reqs != "none" and not self.ssl_ca_certs:
            option = OPTIONS_BY_NAME["ssl_cert_reqs"]
            name = self.given_as("ssl_cert_reqs", settings_name)
            problems.append(SettingProblem(
                "combination", option.setting,
                f"{name} is {self.ssl_cert_reqs!r}, which needs the certificate authorities "
                "to check client certificates against: set --ssl-ca-certs (SSL_CA_CERTS)."))
        return problems

    def single_process(self: _C) -> tuple[_C, list[str]]:
        """This configuration for a server that runs in one process whatever it says
        (``runserver``, the live-server test case): the options only a supervisor uses back
        at their defaults, and the names of those that were set."""
        values, sources = self.values, dict(self.sources)
        ignored = []
        for name in PROCESS_OPTIONS:
            if sources.get(name, DEFAULT) != DEFAULT:
                ignored.append(name)
                values[name] = OPTIONS_BY_NAME[name].default
                sources[name] = DEFAULT
        return type(self)(values, sources), ignored

    # -- derived values

    @property
    def supervised(self) -> bool:
        """Whether a supervisor runs the server as worker processes: --workers given (1
        too: then SIGHUP reloads), or a reason to recycle workers (--max-requests,
        --max-worker-memory, --max-worker-lifetime), which only a supervisor can do."""
        return (self.workers > 1 or self.sources.get("workers", DEFAULT) != DEFAULT
                or bool(self.recycling_flags()))

    def recycling_flags(self) -> list[str]:
        """The flags set that replace workers as they run (each one implies the
        supervisor)."""
        return [OPTIONS_BY_NAME[name].flag for name in RECYCLING_OPTIONS
                if getattr(self, name)]

    def endpoint_descriptions(self) -> list[str]:
        """Twisted endpoint strings for every binding, with Daphne's defaults.

        No binding at all means 127.0.0.1:8000; a host without a port uses 8000; a port
        without a host binds 127.0.0.1.
        """
        return [description for description, _ in self.bindings()]

    def bindings(self) -> list[tuple[str, str]]:
        """(endpoint string, where it came from) for every binding."""
        host, port = self.bind, self.port
        sources = {self.sources[name] for name in ("bind", "port")
                   if getattr(self, name) is not None}
        if host is None and port is None and not (
            self.unix_socket or self.fd is not None or self.endpoints
        ):
            host, port = DEFAULT_HOST, DEFAULT_PORT
        elif host is not None and port is None:
            port = DEFAULT_PORT
        elif port is not None and host is None:
            host = DEFAULT_HOST
        found = []
        if host is not None:
            interface = host.strip("[]").replace(":", r"\:")
            source = next((s for s in (COMMAND_LINE, ENVIRONMENT, SETTINGS) if s in sources),
                          DEFAULT)
            found.append((f"tcp:port={port}:interface={interface}", source))
        if self.unix_socket:
            mode = f":mode={self.unix_socket_mode}" if self.unix_socket_mode else ""
            found.append(("unix:" + self.unix_socket.replace(":", r"\:") + mode,
                          self.sources["unix_socket"]))
        if self.fd is not None:
            found.append((f"fd:fileno={self.fd}", self.sources["fd"]))
        found.extend((endpoint, self.sources["endpoints"]) for endpoint in self.endpoints)
        return found

    @property
    def proxy_address_header(self) -> bytes:
        return (self.proxy_headers_host or "X-Forwarded-For").lower().encode("latin-1")

    @property
    def proxy_port_header(self) -> bytes:
        return (self.proxy_headers_port or "X-Forwarded-Port").lower().encode("latin-1")

    @property
    def proxy_proto_header(self) -> bytes:
        return (self.proxy_headers_proto or "X-Forwarded-Proto").lower().encode("latin-1")

    def describe(self) -> list[tuple[str, Any, str]]:
        """(setting key, value, source) for every option, for ``--show-config``."""
        return [(o.setting, getattr(self, o.name), self.sources[o.name]) for o in self.options]


def _reset_bindings(values: dict[str, Any], sources: dict[str, str],
                    replaced: tuple[str, ...]) -> None:
    """The binding options given by the ``replaced`` sources back at their defaults."""
    for name in BINDING_OPTIONS:
        if sources[name] in replaced:
            default = OPTIONS_BY_NAME[name].default
            values[name] = list(default) if isinstance(default, list) else default
            sources[name] = DEFAULT


def log_level(config: Config) -> int:
    """The level of the server's own log lines that the verbosity asks for."""
    return logging.WARNING if config.verbosity == 0 else (
        logging.INFO if config.verbosity == 1 else logging.DEBUG)


def log_format(config: Config) -> str:
    """LOG_FMT; with --workers and the default format, each line also names its process,
    so that the workers' (and the supervisor's) lines can be told apart."""
    if config.supervised and config.log_fmt == DEFAULT_LOG_FMT:
        return "%(asctime)-15s %(levelname)-8s [%(process)d] %(message)s"
    return config.log_fmt


def asgi_threads() -> int | None:
    """The ASGI_THREADS environment variable, as Daphne reads it (None when unset)."""
    raw = os.environ.get("ASGI_THREADS")
    if raw is None or raw == "":
        return None
    try:
        threads = int(raw)
    except ValueError:
        raise ConfigError(f"ASGI_THREADS must be a whole number, got {raw!r}") from None
    if threads < 1:
        raise ConfigError(f"ASGI_THREADS must be at least 1, got {threads}")
    return threads
