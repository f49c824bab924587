"""Prometheus metrics and health checks (``--metrics-endpoint``), with prometheus_client.

* Every serving process counts in plain ints and dicts (:mod:`django_daphne.core.counts`,
  :mod:`.loop_lag`) and :class:`ProcessMetrics` folds those into prometheus_client's
  objects once a second and when the server stops: the hot path never takes
  prometheus_client's locks nor writes its memory-mapped files.
* With ``--workers`` prometheus_client's multiprocess mode joins them: the supervisor makes
  a private directory, names it to the workers in ``PROMETHEUS_MULTIPROC_DIR`` (so the
  application's own prometheus_client metrics land there too), marks each worker it reaps
  dead (its live gauges go; its counters stay in the totals) and removes the directory at
  exit.  The supervisor serves the listener from a thread (:class:`ThreadedListener`), and
  adds its own counters (worker starts, deaths, retirements, reloads).
* A single process serves it in its own reactor (:class:`ReactorListener`): ``/livez``
  answered at all means its loop turns.

``/metrics`` is prometheus_client's exposition (text, or OpenMetrics when the scraper asks
for it); ``/livez`` and ``/readyz`` answer ``200 ok`` or ``503`` with the reason.

Library internals: prometheus_client's Histogram has no call to add a bucket's count at
once, so :func:`_add_to_histogram` adds to its children's ``_buckets`` and ``_sum`` value
objects (prometheus_client 0.17 to 0.26; tests/server/test_metrics.py pins what it relies on), and
:func:`use_multiprocess_dir` sets ``values.ValueClass`` again where prometheus_client was
imported before the directory was named.  prometheus_client is imported only when metrics
are on (it is the ``metrics`` extra).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..core.config import ConfigError
from ..core.converters import metrics_address
from ..core.counts import ABORTED, DURATION_BUCKETS, Counts
from .loop_lag import LAG_BUCKETS

if TYPE_CHECKING:
    from ..core.state import ServerState
    from .loop_lag import LoopLag

logger = logging.getLogger("django_daphne.server")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PROTOCOLS = {"1.0": "http/1.0", "1.1": "http/1.1", "2": "http/2", "websocket": "websocket"}
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                     "PATCH"))
# Health is whether something answers, and its reason in words
Health = Callable[[], "tuple[bool, str]"]


def require_prometheus_client() -> None:
    """ConfigError when --metrics-endpoint is asked for without prometheus_client."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigError("--metrics-endpoint (METRICS_ENDPOINT) needs prometheus_client: "
                          "pip install 'django-daphne[metrics]'") from None


def status_class(status: int) -> str:
    return "aborted" if status == ABORTED else f"{status // 100}xx"


# -- the objects


class _Family:
    """The metric objects of one process (worker or single process), created once: a
    process makes one server (tests may make more: each gets a registry of its own)."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        kw: dict[str, Any] = {"registry": registry}
        self.requests = Counter(
            "daphne_requests", "Requests answered, by protocol, method and status class "
            "(aborted: the client left first); an accepted WebSocket counts as 1xx.",
            ["protocol", "method", "status"], **kw)
        self.duration = Histogram(
            "daphne_request_duration_seconds", "Seconds from an HTTP request's application "
            "starting to its response's end.", ["protocol"], buckets=DURATION_BUCKETS, **kw)
        self.in_flight = Gauge(
            "daphne_requests_in_flight", "HTTP requests whose response is not complete, and "
            "open WebSockets, by protocol.", ["protocol"], multiprocess_mode="livesum", **kw)
        self.connections_open = Gauge(
            "daphne_connections_open", "Open client connections, by the protocol they speak.",
            ["protocol"], multiprocess_mode="livesum", **kw)
        self.connections = Counter("daphne_connections", "Client connections accepted.",
                                   **kw)
        self.websockets_opened = Counter(
            "daphne_websockets_opened", "WebSockets accepted, by the HTTP version of their "
            "handshake.", ["protocol"], **kw)
        self.websockets_closed = Counter(
            "daphne_websockets_closed", "WebSockets closed, by close code (1005: none "
            "given; 1006: the connection dropped).", ["code"], **kw)
        self.received = Counter("daphne_received_bytes", "Bytes read from client "
                                "connections (after TLS).", **kw)
        self.sent = Counter("daphne_sent_bytes", "Bytes written to client connections "
                            "(before TLS).", **kw)
        self.refusals = Counter(
            "daphne_refusals", "Requests refused before any application saw them, by the "
            "status answered (malformed: the connection closed or the HTTP/2 stream reset; "
            "flood and protocol_error: an HTTP/2 connection ended with a GOAWAY).",
            ["reason"], **kw)
        self.app_errors = Counter(
            "daphne_application_errors", "Exceptions raised by the application, by scope "
            "type.", ["type"], **kw)
        self.lag = Histogram(
            "daphne_event_loop_lag_seconds", "How late the event loop ran a timer due every "
            "0.1 s.", buckets=LAG_BUCKETS, **kw)
        self.lag_max = Gauge(
            "daphne_event_loop_lag_max_seconds", "The largest event-loop lag over the last "
            "second (of any worker).", multiprocess_mode="livemax", **kw)
        self.blocked = Counter(
            "daphne_event_loop_blocked", "Times the event loop was blocked longer than "
            "--loop-block-threshold.", **kw)


def _add_to_histogram(child: Any, buckets: list[Any], total: float) -> None:
    """Add counts per bucket (the histogram's own bounds, in order) and their sum to a
    Histogram's child, as that many observe() calls would (see the module docstring)."""
    values = child._buckets
    for index, count in enumerate(buckets):
        if count:
            values[index].inc(count)
    child._sum.inc(total)


def _set_gauge(gauge: Any, seen: set[str], now: dict[str, int]) -> None:
    """Set a labelled gauge to ``now``, and to 0 the labels that had a value before."""
    for label in seen - now.keys():
        gauge.labels(label).set(0)
    for label, value in now.items():
        gauge.labels(label).set(value)
    seen.update(now)


class ProcessMetrics:
    """One serving process's metrics: the counts its server adds to, folded into its
    prometheus_client objects every second (by the loop-lag timer) and at :meth:`close`."""

    def __init__(self, state: ServerState, lag: LoopLag, registry: Any) -> None:
        self.state = state
        self.lag = lag
        self.family = _Family(registry)
        self.counts = state.counts = Counts()
        self._in_flight_seen: set[str] = set()
        self._open_seen: set[str] = set()

    def fold(self) -> None:
        family = self.family
        taken = self.counts.take()
        requests, durations = taken.http_totals()
        requests.update(taken.requests)  # (the WebSocket handshakes)
        for (protocol, method, status), count in requests.items():
            family.requests.labels(PROTOCOLS.get(protocol, protocol),
                                   method if method in METHODS else "OTHER",
                                   status_class(status)).inc(count)
        for version, buckets in durations.items():
            _add_to_histogram(family.duration.labels(PROTOCOLS.get(version, version)),
                              buckets[:-1], buckets[-1])
        for version, count in taken.websockets_opened.items():
            family.websockets_opened.labels(PROTOCOLS.get(version, version)).inc(count)
        for code, count in taken.websockets_closed.items():
            family.websockets_closed.labels(str(code)).inc(count)
        for reason, count in taken.refusals.items():
            family.refusals.labels(reason).inc(count)
        for kind, count in taken.app_errors.items():
            family.app_errors.labels(kind).inc(count)
        if taken.connections:
            family.connections.inc(taken.connections)
        if taken.received:
            family.received.inc(taken.received)
        if taken.sent:
            family.sent.inc(taken.sent)
        lags, total, worst, incidents = self.lag.take()
        _add_to_histogram(family.lag, lags, total)
        family.lag_max.set(worst)
        if incidents:
            family.blocked.inc(incidents)
        self._gauges()

    def _gauges(self) -> None:
        """The open connections and the requests in flight, as they are now: read from the
        server's own sets, so the hot path counts nothing for them."""
        state = self.state
        open_now: dict[str, int] = {}
        for conn in state.connections:
            protocol = _HANDLER_PROTOCOLS.get(type(conn.handler).__name__, "http/1.1")
            open_now[protocol] = open_now.get(protocol, 0) + 1
        in_flight: dict[str, int] = {}
        for stream in state.streams:
            scope = stream.scope
            if scope["type"] == "websocket":
                if stream.disconnected:
                    continue
                protocol = "websocket"
            elif getattr(getattr(stream, "state", None), "value", None) == "done":
                continue
            else:
                protocol = PROTOCOLS.get(scope["http_version"], "http/1.1")
            in_flight[protocol] = in_flight.get(protocol, 0) + 1
        _set_gauge(self.family.connections_open, self._open_seen, open_now)
        _set_gauge(self.family.in_flight, self._in_flight_seen, in_flight)

    def close(self) -> None:
        """The last fold, as the server stops (its gauges go with the process)."""
        self.fold()


# (by name: the server layer reads what the handlers are without importing each wire)
_HANDLER_PROTOCOLS = {"HTTP1Handler": "http/1.1", "HTTP2Handler": "http/2",
                      "WebSocketConnection": "websocket"}


def process_registry() -> Any:
    """A single process's registry: its own metrics, and (forwarded) prometheus_client's
    global one: the application's metrics, and the process and platform collectors."""
    from prometheus_client import REGISTRY, CollectorRegistry

    registry = CollectorRegistry()

    class _Global:
        def collect(self) -> Iterable[Any]:
            return REGISTRY.collect()

    registry.register(_Global())
    return registry


# -- the supervisor's side (--workers)


def use_multiprocess_dir() -> str:
    """Make the private directory, name it for this process and the workers it starts,
    and return it (see the module docstring)."""
    path = tempfile.mkdtemp(prefix="django-daphne-metrics-")
    os.environ[MULTIPROC_ENV] = path
    import sys

    values = sys.modules.get("prometheus_client.values")
    if values is not None:  # imported before (by settings.py?): its values use memory
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]
    return path


def remove_multiprocess_dir(path: str) -> None:
    if os.environ.get(MULTIPROC_ENV) == path:
        del os.environ[MULTIPROC_ENV]
    shutil.rmtree(path, ignore_errors=True)


class SupervisorMetrics:
    """The supervisor's counters, and the registry that reads every process's files."""

    def __init__(self, path: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge
        from prometheus_client.multiprocess import MultiProcessCollector

        self.path = path
        self.registry = CollectorRegistry()
        MultiProcessCollector(self.registry, path=path)  # type: ignore[no-untyped-call]
        self.starts = Counter(
            "daphne_worker_starts", "Worker processes started, by reason: startup, "
            "replacement (of one that died or was killed), reload (SIGHUP), recycle "
            "(a successor: --max-requests, --max-worker-memory, --max-worker-lifetime), "
            "scale_up (SIGTTIN).", ["reason"], registry=None)
        self.deaths = Counter(
            "daphne_worker_deaths", "Workers lost without being asked to stop, by reason: "
            "exited, failed_start (exited before ready), boot_timeout, hung (no heartbeat "
            "for --worker-timeout), drain_timeout (killed past the stop deadline).",
            ["reason"], registry=None)
        self.retired = Counter(
            "daphne_worker_retired", "Workers told to drain, by reason: reload, recycle "
            "(replaced by a successor), scale_down (SIGTTOU), reload_failed, stop.",
            ["reason"], registry=None)
        self.recycles = Counter(
            "daphne_worker_recycles", "Workers replaced by a successor that became ready, by "
            "reason: max-requests, memory (--max-worker-memory), lifetime "
            "(--max-worker-lifetime).", ["reason"], registry=None)
        self.reloads = Counter(
            "daphne_reloads", "SIGHUP reloads ended, by result: done or failed.",
            ["result"], registry=None)
        self.workers = Gauge("daphne_workers", "Worker processes by state.", ["state"],
                             multiprocess_mode="livesum", registry=None)
        self._workers_now: dict[str, int] = {}

    def set_workers(self, states: Iterable[str]) -> None:
        now = {"starting": 0, "ready": 0, "draining": 0, "killed": 0}
        for state in states:
            now[state] += 1
        if now != self._workers_now:
            self._workers_now = now
            for state, count in now.items():
                self.workers.labels(state).set(count)

    def process_dead(self, pid: int) -> None:
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, self.path)  # type: ignore[no-untyped-call]


# -- serving /metrics, /livez and /readyz


def answer(path: str, accept: str, registry: Any, live: Health, ready: Health
           ) -> tuple[int, str, bytes]:
    """(status, content type, body) for a GET of ``path``."""
    path = path.split("?", 1)[0]
    if path == "/metrics":
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept)
        return 200, content_type, encoder(registry)
    if path in ("/livez", "/readyz"):
        ok, why = (live if path == "/livez" else ready)()
        return (200 if ok else 503), "text/plain; charset=utf-8", why.encode() + b"\n"
    if path == "/":
        return 200, "text/plain; charset=utf-8", b"/metrics /livez /readyz\n"
    return 404, "text/plain; charset=utf-8", b"not found: /metrics, /livez or /readyz\n"


def bind_socket(where: str) -> socket.socket:
    """The listening socket of ``--metrics-endpoint`` (HOST:PORT, PORT or unix:PATH); a
    stale UNIX socket file is replaced.  Raises OSError naming the address."""
    if where.startswith("unix:"):
        path = where[5:]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                os.unlink(path)  # a socket file left by a server that was killed
            except FileNotFoundError:
                pass
            sock.bind(path)
        except OSError:
            sock.close()
            raise
    else:
        host, port = metrics_address(where)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
    sock.listen(64)
    return sock


def describe_socket(sock: socket.socket) -> str:
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{address}"
    host = f"[{address[0]}]" if sock.family == socket.AF_INET6 else address[0]
    return f"http://{host}:{address[1]}"


def _unlink_unix(sock: socket.socket) -> None:
    if sock.family == socket.AF_UNIX:
        try:
            os.unlink(sock.getsockname())
        except OSError:
            pass


class ThreadedListener:
    """The listener served from a thread of the ``--workers`` supervisor."""

    def __init__(self, sock: socket.socket, registry: Any, live: Health,
                 ready: Health) -> None:
        import socketserver
        from http.server import BaseHTTPRequestHandler

        class Handler(BaseHTTPRequestHandler):
            server_version = "django-daphne-metrics"
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:  # http.server's name
                status, content_type, body = answer(
                    self.path, self.headers.get("Accept", ""), registry, live, ready)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_HEAD = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes and probes every few seconds: not for the log

        class Server(socketserver.ThreadingMixIn, socketserver.BaseServer):
            daemon_threads = True

            def __init__(self) -> None:
                socketserver.BaseServer.__init__(self, sock.getsockname(), Handler)
                self.socket = sock

            def fileno(self) -> int:
                return sock.fileno()

            def get_request(self) -> tuple[socket.socket, Any]:
                return sock.accept()

            def shutdown_request(self, request: Any) -> None:
                try:
                    request.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                request.close()

            def close_request(self, request: Any) -> None:
                request.close()

        self.sock = sock
        self.server = Server()
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.5},
                                       name="metrics-listener", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(5)
        _unlink_unix(self.sock)
        self.sock.close()


class ReactorListener:
    """The listener served by a single process's own reactor (its loop answers, or
    nobody does)."""

    def __init__(self, reactor: Any, sock: socket.socket, registry: Any, live: Health,
                 ready: Health) -> None:
        from twisted.internet.protocol import Factory, Protocol

        class Answer(Protocol):
            buffer = b""
            transport: Any

            def dataReceived(self, data: bytes) -> None:  # Twisted's name
                self.buffer += data
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buffer) > 16384:
                        self.transport.loseConnection()
                    return
                head = self.buffer[:end].decode("latin-1").split("\r\n")
                self.buffer = b""
                parts = head[0].split()
                accept = ""
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "accept":
                        accept = value.strip()
                if len(parts) != 3 or parts[0] not in ("GET", "HEAD"):
                    status, content_type, body = (405, "text/plain; charset=utf-8",
                                                  b"GET or HEAD only\n")
                else:
                    try:
                        status, content_type, body = answer(parts[1], accept, registry,
                                                            live, ready)
                    except Exception:
                        logger.exception("Error answering %s on the metrics listener",
                                         parts[1])
                        status, content_type, body = (500, "text/plain; charset=utf-8",
                                                      b"error\n")
                phrase = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
                          500: "Internal Server Error", 503: "Service Unavailable"}[status]
                transport = self.transport
                transport.write(
                    f"HTTP/1.0 {status} {phrase}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + (b"" if parts[:1] == ["HEAD"] else body))
                transport.loseConnection()

        factory = Factory.forProtocol(Answer)
        factory.noisy = False
        self.sock = sock
        self.port = reactor.adoptStreamPort(sock.fileno(), sock.family, factory)

    def close(self) -> None:
        self.port.stopListening()
        _unlink_unix(self.sock)
        self.sock.close()
