"""What every connection of one server shares, precomputed once so the hot path only reads it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Protocol

from .config import Config
from .counts import Counts
from .errors import Refusal
from .trust import TrustedProxies

if TYPE_CHECKING:
    from .access_log import AccessLog

logger = logging.getLogger("django_daphne.server")

# what a request refused at the concurrency limit is told: try again in a second
RETRY_AFTER = b"1"
# at most one warning this often (seconds) while requests are refused at the limit
BUSY_WARNING_INTERVAL = 10.0


class Abortable(Protocol):
    """A connection's transport, as the server drops it (Twisted's name)."""

    def abortConnection(self) -> None: ...


class LiveConnection(Protocol):
    """What the state's sweep and the server's stop ask of a connection (one per socket:
    protocols/connection.py's Connection, declared here so that the core imports nothing
    above it)."""

    @property
    def deadline(self) -> float | None:
        """When its handler's deadline is due (None: no deadline)."""
        ...

    @property
    def stalled_until(self) -> float:
        """With its writes stalled: when the send timeout cuts it off."""
        ...

    @property
    def handler(self) -> object:
        """The wire protocol speaking on it (the metrics name it by its class)."""
        ...

    @property
    def transport(self) -> Abortable: ...

    def deadline_passed(self) -> None: ...

    def send_timed_out(self) -> None: ...

    def shutdown(self) -> None:
        """The server stops: finish what is in flight, take nothing new."""
        ...


class RunningInstance(Protocol):
    """What the state's sweep, the metrics and the server's stop ask of a running
    application instance (asgi/instance.py's ApplicationInstance: an HTTP request or a
    WebSocket)."""

    @property
    def deadline(self) -> float | None: ...

    @property
    def scope(self) -> dict[str, Any]: ...

    @property
    def task(self) -> asyncio.Task[None] | None: ...

    @property
    def disconnected(self) -> bool:
        """Its client went away: nobody waits for its answer any more."""
        ...

    def deadline_passed(self) -> None: ...

    def cancel(self) -> None: ...


class ServerState:
    """The application, the loop, the config values the protocols read per request, the
    coarse clock and Date header that one periodic sweep keeps fresh, and the sets of live
    connections and running application instances that the sweep checks for timeouts.
    """

    def __init__(self, app: Any, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.config = config
        self.loop = loop
        self.connections: set[LiveConnection] = set()
        # connections whose client is not taking our writes
        self.stalled: set[LiveConnection] = set()
        self.streams: set[RunningInstance] = set()  # the running application instances
        self.lifespan_state: dict[str, Any] | None = None
        self.access_log: AccessLog | None = None  # None when it is off
        self.counts: Counts | None = None  # None when metrics are off (see .counts)
        self.shutting_down = False
        # what the hot path needs in another form than the config's
        self.http_timeout: float | None = config.http_timeout or None  # 0: no limit
        # the names of the proxy headers (address, port, scheme), or None when off, and the
        # peers they are believed from
        self.proxy_headers: tuple[bytes, bytes, bytes] | None = (
            config.proxy_address_header, config.proxy_port_header, config.proxy_proto_header,
        ) if config.proxy_headers else None
        self.trusted_proxies = TrustedProxies(config.forwarded_allow_ips)
        # --limit-concurrency: how many application instances (``streams``) may run at
        # once (None: no limit); one more is answered with ``busy`` instead (the ASGI
        # streams' start() checks, before calling the application)
        self.limit_concurrency: int | None = config.limit_concurrency or None
        self.busy = Refusal(503, "the server is at its concurrency limit; try again shortly",
                            [(b"Retry-After", RETRY_AFTER)])
        self._busy_warned_at: float | None = None
        self.server_header = (
            b"Server: " + config.server_name.encode("latin-1") + b"\r\n"
            if config.server_name else b""
        )
        # autobahn's factory, made once per server by the WebSocket protocol that uses it
        # (protocols/websocket_framing.py: factory_for), before the server listens
        self.framing_factory: object | None = None
        self.clock = loop.time()
        self._second = 0
        self.date_header = b""
        self.http_date = ""
        self.tick()


    def limit_instances(self, limit: int, reached: Callable[[int], None]) -> None:
        """--max-requests: call ``reached(limit)`` once ``limit`` application instances
        (requests and WebSockets) have started.  Counted as they join ``streams``, so a
        server without a limit pays nothing for it."""
        self.streams = _CountingSet(self.streams, limit, reached)

    def refused(self, client: Any, status: int, reason: str, size: int,
                request: str = "-") -> None:
        """A request the server answered itself without calling the application: one its
        wire protocol would not take (malformed, too large, too slow: 4xx), or one
        refused at the concurrency limit (``busy``).  Every such answer is recorded
        here, once: the access log's line (``request`` when it was read), the metrics (status
        0: not answered: the connection closed, or the HTTP/2 stream reset, for a malformed
        request), and a warning (at most one every BUSY_WARNING_INTERVAL seconds) while the
        limit refuses."""
        if self.counts is not None:
            self.counts.refused(str(status) if status else "malformed")
        if status == 503 and reason == self.busy.reason:
            warned = self._busy_warned_at
            if warned is None or self.clock - warned >= BUSY_WARNING_INTERVAL:
                self._busy_warned_at = self.clock
                logger.warning("Refusing requests with 503: %d application calls are in "
                               "flight, the concurrency limit (--limit-concurrency)",
                               self.limit_concurrency)
        if status and self.access_log is not None:
            self.access_log.refused(client, status, size, request)

    def tick(self) -> None:
        """Advance the coarse clock; reformat the Date header when the second changed."""
        self.clock = self.loop.time()
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self.http_date = formatdate(now, usegmt=True)
            self.date_header = b"Date: " + self.http_date.encode("ascii") + b"\r\n"

    def sweep_interval(self) -> float:
        """How often to check deadlines: a second, or finer when a timeout is short."""
        config = self.config
        timeouts = [config.header_timeout, config.body_timeout,
                    config.application_close_timeout, config.send_timeout]
        # 0: no pings, or no limit on waiting for the pong
        timeouts.extend(t for t in (config.ping_interval, config.ping_timeout) if t)
        if config.keep_alive_timeout:
            timeouts.append(config.keep_alive_timeout)
        if config.http2:
            timeouts.append(config.http2_idle_timeout)
        if self.http_timeout:
            timeouts.append(self.http_timeout)
        return max(0.05, min(1.0, min(timeouts) / 4))

    def sweep(self) -> None:
        """Fire every deadline that has passed; called by the server every interval.

        A timeout handler that raises is logged and the sweep goes on: one broken
        connection must not stop every other connection's timeouts for good."""
        self.tick()
        now = self.clock
        for stream in [s for s in self.streams if s.deadline is not None and s.deadline <= now]:
            _guarded(stream.deadline_passed)
        for conn in [c for c in self.connections if c.deadline is not None and c.deadline <= now]:
            _guarded(conn.deadline_passed)
        for conn in [c for c in self.stalled if c.stalled_until <= now]:
            _guarded(conn.send_timed_out)
        if self.access_log is not None:
            _guarded(self.access_log.flush)


class _CountingSet(set[RunningInstance]):
    """The running instances, counting every one added (see limit_instances)."""

    def __init__(self, items: set[RunningInstance], limit: int,
                 reached: Callable[[int], None]) -> None:
        super().__init__(items)
        self.added = len(items)
        self.limit = limit
        self.reached: Callable[[int], None] | None = reached

    def add(self, item: RunningInstance) -> None:
        super().add(item)
        self.added += 1
        if self.added >= self.limit and self.reached is not None:
            reached, self.reached = self.reached, None
            reached(self.added)


def _guarded(handler: Callable[[], object]) -> None:
    try:
        handler()
    except Exception:
        logger.exception("Error in a timeout handler (%r); serving goes on", handler)
