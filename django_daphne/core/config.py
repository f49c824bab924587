"""The one configuration object.

Every option is declared once, in ``OPTIONS``: its name, default, validation, command-line
flags and ``DAPHNE`` settings key all come from that declaration.  The ``daphne`` command,
``manage.py daphne``, ``manage.py runserver``, the system checks and the server itself read
the same table and the same :class:`Config`, filled from defaults, then settings.py, then
the environment (``DJANGO_DAPHNE_`` and the settings key: ``DJANGO_DAPHNE_WORKERS=2``),
then the command line.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000

DEFAULT = "default"
SETTINGS = "settings"
ENVIRONMENT = "environment"
COMMAND_LINE = "command line"

# every option's environment variable is this and its settings key: DJANGO_DAPHNE_PORT
ENVIRONMENT_PREFIX = "DJANGO_DAPHNE_"
# variables of that prefix that are no option: what the --workers supervisor tells a worker
# (tests/test_config.py holds this list to the names the package uses)
INTERNAL_VARIABLES = frozenset((
    "DJANGO_DAPHNE_WORKER_ENDPOINTS", "DJANGO_DAPHNE_WORKER_READY_FD",
    "DJANGO_DAPHNE_WORKER_TITLE",
))


class ConfigError(ValueError):
    """A setting or flag has a value the server cannot use; the message names it."""


class EnvironmentConfigError(ConfigError):
    """A ``DJANGO_DAPHNE_*`` environment variable is unknown, or its value is not valid;
    the message names the variable."""


# --- value converters: each takes the raw value and returns the typed one or raises ValueError


def as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    raise ValueError(f"expected a whole number, got {value!r}")


def as_seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds, got a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(f"expected a number of seconds, got {value!r}")


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):  # as "0" and "1" are
        return bool(value)
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected True or False (or 1/0, yes/no, on/off), got {value!r}")


def as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__} {value!r}")
    return value


def as_access_log_format(value: Any) -> str:
    from .access_log import check_format

    return check_format(as_str(value))


def as_str_list(value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"expected a list of strings, got {value!r}")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"expected a list of strings, got an item {item!r}")
    return items


def split_list(raw: str) -> list[str]:
    """A list option's value in an environment variable: comma-separated items, the spaces
    around each dropped.  A comma after a backslash belongs to its item, backslash and all
    (a Twisted endpoint description reads that as an escaped comma)."""
    return [item.strip() for item in re.split(r"(?<!\\),", raw) if item.strip()]


def as_file_mode(value: Any) -> str:
    """Permissions in octal: "660", "0660", "0o660", or the number 0o660."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip():
        text = value.strip().lower().removeprefix("0o")
        if not text.isdigit() or any(c in "89" for c in text):
            raise ValueError(f"expected permissions in octal such as 660, got {value!r}")
        number = int(text, 8)
    else:
        raise ValueError(f"expected permissions in octal such as 660, got {value!r}")
    if not 0 <= number <= 0o777:
        raise ValueError(f"expected permissions from 000 to 777, got {value!r}")
    return f"{number:03o}"


def as_header_name(value: Any) -> str:
    name = as_str(value)
    if not name or any(c in name for c in ' \t:\r\n"(),/;<=>?@[\\]{}'):
        raise ValueError(f"expected an HTTP header name such as X-Forwarded-For, got {name!r}")
    return name


def as_cipher_string(value: Any) -> str:
    import ssl

    ciphers = as_str(value)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(ciphers)
    except ssl.SSLError:
        raise ValueError(f"expected an OpenSSL cipher string such as ECDHE+AESGCM; "
                         f"{ciphers!r} selects no cipher") from None
    return ciphers


ALPN_PROTOCOLS = ("h2", "http/1.1", "http/1.0")


def as_alpn_list(value: Any) -> list[str]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) \
        else as_str_list(value)
    items = [item for item in items if item]
    for item in items:
        if item not in ALPN_PROTOCOLS:
            raise ValueError(f"expected protocols of {', '.join(ALPN_PROTOCOLS)}, "
                             f"got {item!r}")
    if not items:
        raise ValueError(f"expected at least one of {', '.join(ALPN_PROTOCOLS)}")
    return items


def as_trusted_proxies(value: Any) -> list[str]:
    from .trust import parse_trusted

    if isinstance(value, str):
        return parse_trusted(value.split(","))
    return parse_trusted(as_str_list(value))


def as_metrics_endpoint(value: Any) -> str:
    """Where the metrics and health listener listens: ``HOST:PORT`` (``[::1]:PORT`` for
    IPv6), ``PORT`` alone (127.0.0.1), or ``unix:PATH``; returned as given, checked."""
    text = as_str(value).strip()
    if text.startswith("unix:"):
        if not text[5:]:
            raise ValueError("expected unix:PATH, got an empty path")
        return text
    try:
        metrics_address(text)
    except ValueError as exc:
        raise ValueError(f"expected HOST:PORT, PORT or unix:PATH ({exc}), got {text!r}") \
            from None
    return text


def metrics_address(text: str) -> tuple[str, int]:
    """(host, port) of a TCP metrics endpoint (see as_metrics_endpoint)."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = DEFAULT_HOST, text
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 address goes in brackets, as [::1]:9100")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not a number from 0 to 65535")
    return host or DEFAULT_HOST, int(port_text)


@dataclass(frozen=True)
class Option:
    """One option: how it is spelled, parsed, checked and documented."""

    name: str
    default: Any
    convert: Callable[[Any], Any]
    help: str
    flags: tuple[str, ...] = ()
    metavar: str | None = None
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    none_ok: bool = False
    # -1 (or another sentinel) that means "no limit" and bypasses the minimum
    unlimited: Any = None
    action: str = "store"  # "store", "store_true", "append", "count"
    group: str = "server"

    @property
    def setting(self) -> str:
        return self.name.upper()

    @property
    def variable(self) -> str:
        """The environment variable that sets it: DJANGO_DAPHNE_ and the settings key."""
        return ENVIRONMENT_PREFIX + self.setting

    @property
    def flag(self) -> str:
        """The long flag, the name used in error messages about the command line."""
        longs = [f for f in self.flags if f.startswith("--")]
        return longs[0] if longs else (self.flags[0] if self.flags else self.name)

    def clean(self, value: Any) -> Any:
        """Convert and validate one value; raise ValueError saying what would be valid."""
        if value is None:
            if self.none_ok:
                return None
            raise ValueError("a value is required")
        value = self.convert(value)
        if self.unlimited is not None and value == self.unlimited:
            return value
        if self.choices is not None and value not in self.choices:
            raise ValueError(
                f"expected one of {', '.join(map(str, self.choices))}, got {value!r}"
            )
        if self.minimum is not None and value < self.minimum:
            bound = f"at least {self.minimum:g}"
            if self.unlimited is not None:
                bound += f" (or {self.unlimited} for no limit)"
            raise ValueError(f"must be {bound}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be at most {self.maximum:g}, got {value!r}")
        return value


DEFAULT_LOG_FMT = "%(asctime)-15s %(levelname)-8s %(message)s"  # Daphne's
KIB = 1024
MIB = 1024 * 1024

OPTIONS: tuple[Option, ...] = (
    # -- where to listen
    Option(
        "bind", None, as_str, "The host or IP address to bind to (default 127.0.0.1 when "
        "nothing else is bound; with -p alone, 127.0.0.1).",
        flags=("-b", "--bind"), metavar="ADDRESS", none_ok=True, group="binding",
    ),
    Option(
        "port", None, as_int, "The port to bind to (default 8000 when nothing else is bound; "
        "0 picks a free port).",
        flags=("-p", "--port"), metavar="PORT", none_ok=True, minimum=0, maximum=65535,
        group="binding",
    ),
    Option(
        "unix_socket", None, as_str, "Bind to a UNIX socket at this path.",
        flags=("-u", "--unix-socket"), metavar="PATH", none_ok=True, group="binding",
    ),
    Option(
        "unix_socket_mode", None, as_file_mode, "The permissions of the UNIX socket that -u "
        "creates, in octal, e.g. 660 (owner and group only; default 666, everyone).",
        flags=("--unix-socket-mode",), metavar="MODE", none_ok=True, group="binding",
    ),
    Option(
        "fd", None, as_int, "Serve on an inherited, already listening socket file descriptor.",
        flags=("--fd",), metavar="FD", none_ok=True, minimum=0, group="binding",
    ),
    Option(
        "endpoints", [], as_str_list, "A Twisted endpoint description to listen on, e.g. "
        "tcp:8000, unix:/tmp/d.sock or ssl:443:privateKey=key.pem:certKey=crt.pem. "
        "Repeatable; adds to the other bindings.",
        flags=("-e", "--endpoint"), metavar="ENDPOINT", action="append", group="binding",
    ),
    # -- logging
    Option(
        "verbosity", 1, as_int, "How verbose to make the output: 0 warnings only, 1 info and "
        "the access log, 2 debug and tracebacks, 3 everything.",
        flags=("-v", "--verbosity"), metavar="{0,1,2,3}", minimum=0, maximum=3, group="logging",
    ),
    Option(
        "access_log", None, as_str, "Where to write the access log: a file path, - for "
        "stdout (the default at verbosity 1 and above), or logging for the "
        "django_daphne.access logger (the default under manage.py daphne when LOGGING "
        "configures the django_daphne logger or the root logger).",
        flags=("--access-log",), metavar="FILE", none_ok=True, group="logging",
    ),
    Option(
        "access_log_format", None, as_access_log_format, "The fields of an access log line, "
        "as a %-format: %(client)s %(date)s %(request)s %(status)s %(size)s %(protocol)s "
        "%(duration)s %(user_agent)s %(referer)s, any request header as %(h_x_request_id)s; "
        "or json, a JSON object a line (default: Daphne's line, '%(client)s - - [%(date)s] "
        "\"%(request)s\" %(status)s %(size)s').",
        flags=("--access-log-format",), metavar="FORMAT", none_ok=True, group="logging",
    ),
    Option(
        "log_fmt", DEFAULT_LOG_FMT, as_str,
        "The format of log lines (Python logging syntax).",
        flags=("--log-fmt",), metavar="FORMAT", group="logging",
    ),
    # -- HTTP behaviour
    Option(
        "http_timeout", None, as_seconds, "Seconds an application has to start its response "
        "before the client gets a 503 and the application is cancelled (default, or 0: no "
        "limit).",
        flags=("-t", "--http-timeout"), metavar="SECONDS", none_ok=True, minimum=0.001,
        unlimited=0, group="http",
    ),
    Option(
        "application_close_timeout", 10.0, as_seconds, "Seconds an application may keep running "
        "after its client disconnected or its response finished, before it is cancelled.",
        flags=("--application-close-timeout",), metavar="SECONDS", minimum=0, group="http",
    ),
    Option(
        "root_path", "", as_str, "The path prefix the application is mounted at behind a "
        "proxy (ASGI root_path, WSGI SCRIPT_NAME), e.g. /myapp.",
        flags=("--root-path",), metavar="PATH", group="http",
    ),
    Option(
        "proxy_headers", False, as_bool, "Trust X-Forwarded-For, X-Forwarded-Port and "
        "X-Forwarded-Proto for the client address and scheme. Only enable behind a proxy "
        "that sets them.",
        flags=("--proxy-headers",), action="store_true", group="http",
    ),
    Option(
        "forwarded_allow_ips", ["127.0.0.1", "::1", "unix"], as_trusted_proxies,
        "The peers whose proxy headers are believed, comma-separated: IP addresses, "
        "networks (10.0.0.0/8), unix (a peer on a UNIX socket) or * (every peer: only when "
        "nothing but the proxy can reach the server). Others' headers are ignored.",
        flags=("--forwarded-allow-ips",), metavar="ADDRESSES", group="http",
    ),
    Option(
        "proxy_protocol", False, as_bool, "Every connection starts with a PROXY protocol "
        "header (v1 or v2, as HAProxy's send-proxy and send-proxy-v2 write it, before TLS): "
        "the client address it carries is the connection's. A connection without a valid "
        "one is closed before anything is served.",
        flags=("--proxy-protocol",), action="store_true", group="http",
    ),
    Option(
        "proxy_headers_host", None, as_header_name, "The header that carries the client "
        "address (default X-Forwarded-For; Forwarded reads RFC 7239's header instead, "
        "proto= included). Needs --proxy-headers.",
        flags=("--proxy-headers-host",), metavar="HEADER", none_ok=True, group="http",
    ),
    Option(
        "proxy_headers_port", None, as_header_name, "The header that carries the client port "
        "(default X-Forwarded-Port). Needs --proxy-headers.",
        flags=("--proxy-headers-port",), metavar="HEADER", none_ok=True, group="http",
    ),
    Option(
        "proxy_headers_proto", None, as_header_name, "The header that carries the scheme the "
        "client used (default X-Forwarded-Proto). Needs --proxy-headers.",
        flags=("--proxy-headers-proto",), metavar="HEADER", none_ok=True, group="http",
    ),
    # -- TLS (every ssl: binding)
    Option(
        "ssl_minimum_version", "1.2", as_str, "The oldest TLS version a client may use.",
        flags=("--ssl-minimum-version",), choices=("1.2", "1.3"), group="tls",
    ),
    Option(
        "ssl_ciphers", None, as_cipher_string, "The TLS 1.2 cipher suites offered, as an "
        "OpenSSL cipher string, e.g. ECDHE+AESGCM (default: Twisted's, forward-secret AEAD "
        "first). TLS 1.3's suites are always on.",
        flags=("--ssl-ciphers",), metavar="CIPHERS", none_ok=True, group="tls",
    ),
    Option(
        "ssl_alpn", None, as_alpn_list, "The protocols offered by ALPN, in order of "
        "preference, comma-separated, of h2, http/1.1 and http/1.0 (default: all three, "
        "h2 first; h2 left out with --http2 off).",
        flags=("--ssl-alpn",), metavar="PROTOCOLS", none_ok=True, group="tls",
    ),
    Option(
        "ssl_ca_certs", None, as_str, "A PEM file of the certificate authorities whose client "
        "certificates are accepted (needs --ssl-cert-reqs optional or required).",
        flags=("--ssl-ca-certs",), metavar="FILE", none_ok=True, group="tls",
    ),
    Option(
        "ssl_cert_reqs", "none", as_str, "Client certificates: none (not asked for), "
        "optional (asked for; one that does not verify fails the handshake) or required. "
        "The application sees them in scope['extensions']['tls'].",
        flags=("--ssl-cert-reqs",), choices=("none", "optional", "required"), group="tls",
    ),
    Option(
        "server_name", "daphne", as_str, "The value of the Server response header; "
        "--no-server-name leaves the header out.",
        flags=("-s", "--server-name"), metavar="NAME", group="http",
    ),
    Option(
        "lifespan", "auto", as_str, "Send the ASGI lifespan events: auto (if the application "
        "supports them), on (a failed startup stops the server) or off.",
        flags=("--lifespan",), choices=("auto", "on", "off"), group="http",
    ),
    Option(
        "shutdown_timeout", 30.0, as_seconds, "On SIGTERM or SIGINT, seconds to let in-flight "
        "requests finish before the remaining connections are closed.",
        flags=("--shutdown-timeout",), metavar="SECONDS", minimum=0, group="http",
    ),
    Option(
        "workers", 1, as_int, "Worker processes: given (even 1), a supervisor binds every "
        "socket once and runs this many workers serving them, restarting any that die, "
        "reloading them on SIGHUP, adding one on SIGTTIN and removing one on SIGTTOU.",
        flags=("--workers",), metavar="N", minimum=1, group="http",
    ),
    Option(
        "max_requests", 0, as_int, "Replace a worker once it has served this many requests "
        "(and WebSockets), starting its successor first, so that a leak is contained without "
        "a dropped request; 0 for never. Runs the workers under a supervisor.",
        flags=("--max-requests",), metavar="N", minimum=0, group="http",
    ),
    Option(
        "max_requests_jitter", 0, as_int, "With --max-requests: add up to this many requests "
        "at random to each worker's limit, so that they are not all replaced at once.",
        flags=("--max-requests-jitter",), metavar="N", minimum=0, group="http",
    ),
    Option(
        "max_worker_memory", 0, as_int, "Replace a worker whose resident memory (RSS, which "
        "the supervisor reads from /proc every second: Linux) is over this many MiB, "
        "starting its successor first as --max-requests does; 0 for never. Set it above "
        "what a worker needs once warmed up: a worker already over it when it starts is "
        "not replaced for it (an error says so). Runs the workers under a supervisor.",
        flags=("--max-worker-memory",), metavar="MIB", minimum=0, group="http",
    ),
    Option(
        "max_worker_lifetime", 0.0, as_seconds, "Replace a worker once it has served for "
        "this many seconds, starting its successor first as --max-requests does; 0 for "
        "never. Runs the workers under a supervisor.",
        flags=("--max-worker-lifetime",), metavar="SECONDS", minimum=1, unlimited=0,
        group="http",
    ),
    Option(
        "max_worker_lifetime_jitter", 0.0, as_seconds, "With --max-worker-lifetime: add up "
        "to this many seconds at random to each worker's lifetime, so that workers started "
        "together are not all replaced at once.",
        flags=("--max-worker-lifetime-jitter",), metavar="SECONDS", minimum=0, group="http",
    ),
    Option(
        "worker_boot_timeout", 60.0, as_seconds, "With --workers: seconds a new worker has "
        "to import the application, run its lifespan startup and listen; one still starting "
        "then is killed and counts as a worker that failed to start (in a reload: the "
        "reload fails and the current workers go on serving).",
        flags=("--worker-boot-timeout",), metavar="SECONDS", minimum=1, group="http",
    ),
    Option(
        "worker_timeout", 30.0, as_seconds, "With --workers: a worker whose event loop sends "
        "no heartbeat (one a sweep, every second or so) for this many seconds is stuck "
        "(blocking code in async code, a deadlock): it is killed, its threads' tracebacks "
        "logged first, and replaced; 0 for never.",
        flags=("--worker-timeout",), metavar="SECONDS", minimum=2, unlimited=0,
        group="http",
    ),
    Option(
        "reuse_port", True, as_bool, "With --workers: give each worker its own listening "
        "socket on every TCP port (SO_REUSEPORT, Linux), so the kernel spreads new "
        "connections evenly; off: the workers share one socket, where the first to wake can "
        "take a whole burst, but one stuck in blocking code leaves new connections to the "
        "others. UNIX sockets and --fd are always shared. on or off.",
        flags=("--reuse-port",), metavar="{on,off}", group="http",
    ),
    Option(
        "http_parser", "auto", as_str, "The HTTP/1.1 parser: httptools (llhttp, fast), python "
        "(pure Python) or auto (httptools where installed). Both are equally strict.",
        flags=("--http-parser",), choices=("auto", "httptools", "python"), group="http",
    ),
    Option(
        "loop", "auto", as_str, "The asyncio event loop under Twisted's reactor: uvloop, "
        "asyncio or auto (uvloop where installed).",
        flags=("--loop",), choices=("auto", "asyncio", "uvloop"), group="http",
    ),
    # -- request limits
    Option(
        "max_request_line", 8 * KIB, as_int, "Longest request line in bytes; longer gets 414.",
        flags=("--max-request-line",), metavar="BYTES", minimum=64, group="limits",
    ),
    Option(
        "max_header_size", 64 * KIB, as_int, "Largest request header block in bytes; larger "
        "gets 431.",
        flags=("--max-header-size",), metavar="BYTES", minimum=256, group="limits",
    ),
    Option(
        "max_headers", 100, as_int, "Most request header fields; more gets 431.",
        flags=("--max-headers",), metavar="COUNT", minimum=1, group="limits",
    ),
    Option(
        "header_timeout", 30.0, as_seconds, "Seconds a client has to send a complete request "
        "head once it starts one (or after connecting); slower clients are disconnected.",
        flags=("--header-timeout",), metavar="SECONDS", minimum=0.001, group="limits",
    ),
    Option(
        "body_timeout", 60.0, as_seconds, "Seconds a client may pause while sending a request "
        "body (between two pieces of it, while the server is reading); slower clients get "
        "408 (over HTTP/1.1 also disconnected, over HTTP/2 the stream reset). Time the "
        "application takes to read is not counted.",
        flags=("--body-timeout",), metavar="SECONDS", minimum=0.001, group="limits",
    ),
    Option(
        "keep_alive_timeout", 5.0, as_seconds, "Seconds an idle keep-alive connection stays "
        "open waiting for its next request.",
        flags=("--keep-alive-timeout",), metavar="SECONDS", minimum=0, group="limits",
    ),
    Option(
        "limit_concurrency", 0, as_int, "Most application calls one worker runs at once: "
        "HTTP requests being handled (HTTP/1.1, and each HTTP/2 stream) plus open "
        "WebSockets, each counted until its application returns. Past it, a request is "
        "answered 503 with Retry-After, and a WebSocket handshake refused with 503, without "
        "calling the application. Per worker: with --workers N, N times as many in all; 0 "
        "for no limit.",
        flags=("--limit-concurrency",), metavar="N", minimum=1, unlimited=0, group="limits",
    ),
    Option(
        "send_timeout", 60.0, as_seconds, "Seconds a client may take nothing of what the server "
        "has written (once the write buffer is full) before the connection is cut off: a "
        "slow or stuck reader cannot hold a connection and its buffers forever.",
        flags=("--send-timeout",), metavar="SECONDS", minimum=0.001, group="limits",
    ),
    # -- HTTP/2
    Option(
        "http2", True, as_bool, "Serve HTTP/2: by ALPN on TLS endpoints, and in cleartext by "
        "prior knowledge or Upgrade: h2c. on or off.",
        flags=("--http2",), metavar="{on,off}", group="http2",
    ),
    Option(
        "http2_max_concurrent_streams", 100, as_int, "Most streams one HTTP/2 client may have "
        "open at once (SETTINGS_MAX_CONCURRENT_STREAMS).",
        flags=("--http2-max-concurrent-streams",), metavar="COUNT", minimum=1,
        group="http2",
    ),
    Option(
        "http2_initial_window_size", 65535, as_int, "The flow-control window of each HTTP/2 "
        "request body in bytes: how much a client may send before the application reads.",
        flags=("--http2-initial-window-size",), metavar="BYTES", minimum=1,
        maximum=2**31 - 1, group="http2",
    ),
    Option(
        "http2_max_frame_size", 16384, as_int, "Largest HTTP/2 frame payload the server accepts, "
        "in bytes.",
        flags=("--http2-max-frame-size",), metavar="BYTES", minimum=16384,
        maximum=2**24 - 1, group="http2",
    ),
    Option(
        "http2_max_header_list_size", 64 * KIB, as_int, "Largest decoded HTTP/2 header list "
        "in bytes (bounds HPACK bombs and CONTINUATION floods).",
        flags=("--http2-max-header-list-size",), metavar="BYTES", minimum=1024,
        group="http2",
    ),
    Option(
        "http2_idle_timeout", 60.0, as_seconds, "Seconds an HTTP/2 connection with no open "
        "stream stays open.",
        flags=("--http2-idle-timeout",), metavar="SECONDS", minimum=0.001, group="http2",
    ),
    Option(
        "http2_websocket", True, as_bool, "Serve WebSockets over HTTP/2 streams (RFC 8441 "
        "extended CONNECT, as browsers open them on an HTTP/2 connection): on or off.",
        flags=("--http2-websocket",), metavar="{on,off}", group="http2",
    ),
    # -- WebSocket
    Option(
        "websocket_timeout", 86400.0, as_seconds, "Longest life of a WebSocket connection in "
        "seconds; -1 for no limit.",
        flags=("--websocket-timeout", "--websocket_timeout"), metavar="SECONDS", minimum=0,
        unlimited=-1, group="websocket",
    ),
    Option(
        "websocket_connect_timeout", 5.0, as_seconds, "Seconds for the WebSocket handshake and "
        "the application's accept or refusal; -1 for no limit.",
        flags=("--websocket-connect-timeout", "--websocket_connect_timeout"),
        metavar="SECONDS", minimum=0, unlimited=-1, group="websocket",
    ),
    Option(
        "ping_interval", 20.0, as_seconds, "Seconds a WebSocket may be idle before the server "
        "pings it; 0 for no pings.",
        flags=("--ping-interval",), metavar="SECONDS", minimum=0.001, unlimited=0,
        group="websocket",
    ),
    Option(
        "ping_timeout", 30.0, as_seconds, "Seconds after an unanswered ping before the "
        "WebSocket is closed; 0 to never close it for that.",
        flags=("--ping-timeout",), metavar="SECONDS", minimum=0.001, unlimited=0,
        group="websocket",
    ),
    Option(
        "websocket_max_message_size", 1 * MIB, as_int, "Largest WebSocket message in bytes "
        "(after decompression); 0 for no limit.",
        flags=("--websocket-max-message-size",), metavar="BYTES", minimum=0,
        group="websocket",
    ),
    Option(
        "websocket_compression", True, as_bool, "Negotiate permessage-deflate compression "
        "with WebSocket clients that offer it: on or off.",
        flags=("--websocket-compression",), metavar="{on,off}", group="websocket",
    ),
    Option(
        "websocket_max_frame_size", 1 * MIB, as_int, "Largest WebSocket frame in bytes; 0 for "
        "no limit.",
        flags=("--websocket-max-frame-size",), metavar="BYTES", minimum=0, group="websocket",
    ),
    # -- observability: metrics and health (docs/howto/metrics-and-health.rst)
    Option(
        "metrics_endpoint", None, as_metrics_endpoint, "Serve Prometheus metrics (/metrics) "
        "and health checks (/livez, /readyz) on a listener of their own, never the "
        "application's: HOST:PORT, PORT (on 127.0.0.1) or unix:PATH. With --workers the "
        "supervisor serves it, one view of every worker. Off by default.",
        flags=("--metrics-endpoint",), metavar="ADDRESS", none_ok=True,
        group="observability",
    ),
    Option(
        "unready_delay", 0.0, as_seconds, "On SIGTERM or SIGINT, seconds between /readyz "
        "turning unready and the listeners closing (requests are served as usual "
        "meanwhile), so that a load balancer stops sending first; with --workers, also "
        "between a SIGHUP reload's new workers being ready and the old ones draining.",
        flags=("--unready-delay",), metavar="SECONDS", minimum=0, group="observability",
    ),
    Option(
        "loop_block_threshold", 0.5, as_seconds, "Log a warning (once per incident, with its "
        "duration) when the event loop was blocked longer than this many seconds; 0 for "
        "never. With --metrics-endpoint the lag is also a metric "
        "(daphne_event_loop_lag_seconds).",
        flags=("--loop-block-threshold",), metavar="SECONDS", minimum=0.05, unlimited=0,
        group="observability",
    ),
)

OPTIONS_BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}
# where to listen: given on the command line, they replace those of the settings
BINDING_OPTIONS = ("bind", "port", "unix_socket", "fd", "endpoints")
# what only a served process reads (the --workers supervisor, or a daphne process of its
# own): a server that always runs in one process among others (runserver, the live-server
# test case) ignores them; a metrics listener's address in settings.py would have every
# live-server test case bind it
PROCESS_OPTIONS = ("workers", "max_requests", "max_requests_jitter", "max_worker_memory",
                   "max_worker_lifetime", "max_worker_lifetime_jitter", "worker_boot_timeout",
                   "worker_timeout", "reuse_port", "metrics_endpoint", "unready_delay")
# what replaces a worker as it runs, successor first (supervisor.py): any of them, set,
# runs the workers under a supervisor
RECYCLING_OPTIONS = ("max_requests", "max_worker_memory", "max_worker_lifetime")
SETTING_NAMES: dict[str, Option] = {option.setting: option for option in OPTIONS}


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
    (``config.port``, ``config.http_timeout``, ...; tests/test_config.py holds the
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
