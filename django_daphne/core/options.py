"""Every option, declared once: its name, default, converter, checks, command-line flags,
``DAPHNE`` settings key and environment variable all come from its :class:`Option` in
``OPTIONS``.  The ``daphne`` command, ``manage.py daphne``, ``manage.py runserver``, the
system checks, the documentation and the server itself read this one table
(:class:`~.config.Config` holds the values)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .converters import (
    as_access_log_format,
    as_alpn_list,
    as_bool,
    as_cipher_string,
    as_file_mode,
    as_header_name,
    as_int,
    as_metrics_endpoint,
    as_path,
    as_seconds,
    as_str,
    as_str_list,
    as_trusted_proxies,
)

# where a value came from (Config.sources), from the first source to the last
DEFAULT = "default"
SETTINGS = "settings"
ENVIRONMENT = "environment"
COMMAND_LINE = "command line"

# every option's environment variable is this and its settings key: DJANGO_DAPHNE_PORT
ENVIRONMENT_PREFIX = "DJANGO_DAPHNE_"
# variables of that prefix that are no option: what the --workers supervisor tells a worker
# (tests/core/test_config.py holds this list to the names the package uses)
INTERNAL_VARIABLES = frozenset((
    "DJANGO_DAPHNE_WORKER_ENDPOINTS", "DJANGO_DAPHNE_WORKER_READY_FD",
    "DJANGO_DAPHNE_WORKER_TITLE",
))


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
        "unix_socket", None, as_path, "Bind to a UNIX socket at this path.",
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
        "access_log", None, as_path, "Where to write the access log: a file path, - for "
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
        "ssl_ca_certs", None, as_path, "A PEM file of the certificate authorities whose client "
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
        "pid_file", None, as_path, "Write the server's process id (the supervisor's, with "
        "--workers: the one to send SIGHUP and SIGTERM to) to this file once it starts, and "
        "remove it when it exits. A file naming another running process stops the start "
        "(a second server); one naming a process that is gone is replaced.",
        flags=("--pid-file",), metavar="FILE", none_ok=True, group="http",
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
                   "worker_timeout", "reuse_port", "metrics_endpoint", "unready_delay",
                   "pid_file")
# what replaces a worker as it runs, successor first (supervisor.py): any of them, set,
# runs the workers under a supervisor
RECYCLING_OPTIONS = ("max_requests", "max_worker_memory", "max_worker_lifetime")
SETTING_NAMES: dict[str, Option] = {option.setting: option for option in OPTIONS}
