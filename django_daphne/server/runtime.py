"""The server: Twisted's reactor on the asyncio loop, listening ports, lifespan, and a
graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Factory
from zope.interface import implementer

from ..asgi.http import CANCEL_GRACE
from ..asgi.lifespan import Lifespan, LifespanFailure
from ..core.config import Config, asgi_threads
from ..core.state import ServerState
from ..protocols.connection import Connection
from ..protocols.twisted_internals import asyncio_loop
from .endpoints import EndpointError, describe_port, listen_error, make_endpoint
from .loop_lag import LoopLag
from .notify import Notifier
from .pid_file import PidFile, PidFileError
from .tls import ReloadableTLS, TLSSettingError, options_for

if TYPE_CHECKING:
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    from ..core.access_log import AccessLog
    from .metrics import ProcessMetrics, ReactorListener
    from .supervisor import SupervisorLink

logger = logging.getLogger("django_daphne.server")


def _hand_to(loop: asyncio.AbstractEventLoop, handler: Callable[..., Any],
             args: tuple[Any, ...]) -> Callable[[int, Any], None]:
    """A plain signal handler that has ``loop`` run ``handler(*args)``."""

    def received(signum: int, frame: Any) -> None:
        loop.call_soon_threadsafe(handler, *args)

    return received


class StartupError(Exception):
    """The server could not start; the message says why in one line."""


@implementer(IProtocolNegotiationFactory)
class ConnectionFactory(Factory):
    """Builds the protocol for each accepted connection, and names the protocols TLS may
    offer by ALPN (a client offering only unknown ones is refused in the handshake)."""

    noisy = False

    def __init__(self, server: ServerState) -> None:
        self.server = server
        # http/1.0 too by default: a client offering only that (curl --http1.0) would
        # otherwise fail the TLS handshake with no protocol in common; HTTP/1.1's parser
        # serves it
        config = server.config
        offered = config.ssl_alpn or ["h2", "http/1.1", "http/1.0"]
        self.protocols = [p.encode() for p in offered if p != "h2" or config.http2]

    def acceptableProtocols(self) -> list[bytes]:
        return self.protocols

    # a Connection reads its addresses from its socket: the reactor's ports need not build
    # an address object for buildProtocol (protocols/twisted_internals.py)
    takes_no_address = True

    def buildProtocol(self, addr: Any) -> Connection:  # Twisted's name
        return Connection(self.server)


class Server:
    """Serves one ASGI application on every binding of a :class:`Config`.

    ``run()`` blocks until the server stops and returns the process exit status.
    ``on_ready(listening)`` is called once every port listens, with their descriptions.
    """

    def __init__(
        self,
        app: Any,
        config: Config,
        *,
        access_log: AccessLog | None = None,
        on_ready: Callable[[list[str]], None] | None = None,
        install_signal_handlers: bool = True,
    ) -> None:
        self.app = app
        self.config = config
        self.access_log = access_log
        self.on_ready = on_ready
        self.install_signal_handlers = install_signal_handlers
        self.ports: list[Any] = []
        self.listening: list[str] = []
        self.tls_bindings: list[ReloadableTLS] = []  # what SIGHUP reloads certificates of
        self.exit_code = 0
        self.state: ServerState | None = None
        self.lifespan: Lifespan | None = None
        self._stop_requested: asyncio.Event | None = None
        self._stopping = False
        self._sweeper: asyncio.TimerHandle | None = None
        # systemd's Type=notify (a --workers worker leaves it to the supervisor)
        self.notifier = Notifier()
        self.link: SupervisorLink | None = None  # in a --workers worker
        self._reported_connections = 0
        # --loop-block-threshold, and --metrics-endpoint (a single process serves its
        # listener; a --workers worker only counts, for the supervisor to serve)
        self.loop_lag: LoopLag | None = None
        self.metrics: ProcessMetrics | None = None
        self.metrics_listener: ReactorListener | None = None
        self.serving = False  # every binding listens (and the lifespan started up)

    # -- running

    def run(self) -> int:
        from .supervisor import worker_endpoints

        if self.config.pid_file is None or worker_endpoints() is not None:
            return self._run()
        pid_file = PidFile(self.config.pid_file)  # (the main process's: see .pid_file)
        try:
            pid_file.write()
        except PidFileError as exc:
            logger.error("%s", exc)
            return 1
        try:
            return self._run()
        finally:
            pid_file.remove()

    def _run(self) -> int:
        from twisted.internet import reactor

        from .supervisor import Supervisor, worker_endpoints

        if self.config.supervised and worker_endpoints() is None:
            return Supervisor(self.config).run()
        # the asyncio reactor (see .reactor): Twisted types the installed reactor as zope
        # interfaces, which mypy cannot check calls through
        self.reactor = cast("AsyncioSelectorReactor", reactor)
        self.loop = asyncio_loop(self.reactor)
        self.reactor.callWhenRunning(self._launch)
        self.reactor.run(installSignalHandlers=False)
        return self.exit_code

    def _launch(self) -> None:
        self.loop.create_task(self._main())

    async def _main(self) -> None:
        self._stop_requested = asyncio.Event()
        try:
            await self.start()
        except StartupError as exc:
            logger.error("%s", exc)
            self.exit_code = 1
            await self._close_ports()
            if self.lifespan is not None:
                # a binding failed after the application started up: let it clean up
                await self.lifespan.shutdown(max(1.0, self.config.shutdown_timeout))
            self._close_metrics()
            self.reactor.stop()
            return
        except BaseException:
            logger.exception("Server failed to start")
            self.exit_code = 1
            self._close_metrics()
            self.reactor.stop()
            return
        await self._stop_requested.wait()
        try:
            from .supervisor import worker_endpoints

            delay = self.config.unready_delay
            if delay and worker_endpoints() is None:  # (a worker's supervisor waited)
                logger.info("Unready (/readyz answers 503); closing the listeners in %gs "
                            "(--unready-delay)", delay)
                await asyncio.sleep(delay)
            await self.stop()
        except Exception:
            logger.exception("Error during shutdown")
            self.exit_code = 1
        finally:
            self._close_metrics()
            self._stop_reactor()

    # -- health (--metrics-endpoint, in a single process)

    def liveness(self) -> tuple[bool, str]:
        return True, "ok"  # asked in this loop: it turns

    def readiness(self) -> tuple[bool, str]:
        if self._stopping:
            return False, "stopping"
        if not self.serving:
            return False, "starting"
        return True, "ok"

    def _start_metrics(self, state: ServerState, worker: bool) -> None:
        """The loop-lag timer (always, for --loop-block-threshold) and, with
        --metrics-endpoint, the counts: a single process serves them on a listener of its
        own (started before the lifespan, so that /livez answers a slow startup)."""
        config = self.config
        self.loop_lag = lag = LoopLag(self.loop, config.loop_block_threshold)
        if config.metrics_endpoint is not None:
            from ..core.config import ConfigError
            from .metrics import (
                ProcessMetrics,
                ReactorListener,
                bind_socket,
                describe_socket,
                process_registry,
                require_prometheus_client,
            )

            try:
                require_prometheus_client()
            except ConfigError as exc:
                raise StartupError(str(exc)) from None
            registry = None if worker else process_registry()
            self.metrics = ProcessMetrics(state, lag, registry)
            lag.every_second = self.metrics.fold
            if not worker:
                try:
                    sock = bind_socket(config.metrics_endpoint)
                except OSError as exc:
                    raise StartupError(f"Cannot serve metrics on {config.metrics_endpoint}: "
                                       f"{exc}") from None
                self.metrics_listener = ReactorListener(
                    self.reactor, sock, registry, self.liveness, self.readiness)
                logger.info("Metrics and health checks on %s", describe_socket(sock))
        lag.start()

    def _close_metrics(self) -> None:
        if self.loop_lag is not None:
            self.loop_lag.stop()
        if self.metrics is not None:
            try:
                self.metrics.close()
            except Exception:
                logger.exception("Error in the last update of the metrics")
        if self.metrics_listener is not None:
            self.metrics_listener.close()
            self.metrics_listener = None

    async def start(self) -> None:
        """Start the application's lifespan, then listen on every binding."""
        loop = self.loop
        threads = asgi_threads()
        if threads is not None:
            loop.set_default_executor(
                ThreadPoolExecutor(max_workers=threads, thread_name_prefix="asgi-thread")
            )
        self.state = state = ServerState(self.app, self.config, loop)
        state.access_log = self.access_log
        from ..protocols.websocket_framing import factory_for

        factory_for(state)  # loads autobahn now, not on the first WebSocket
        if self.install_signal_handlers:
            self._handle_signals(loop)
        from .supervisor import worker_endpoints

        self._start_metrics(state, worker=worker_endpoints() is not None)
        self.lifespan = Lifespan(self.app, self.config.lifespan, loop)
        try:
            await self.lifespan.startup()
        except LifespanFailure as exc:
            raise StartupError(str(exc)) from None
        if self.lifespan.supported:
            state.lifespan_state = self.lifespan.state
        if self._stopping:
            # a stop signal came while the application started up: nothing to serve
            logger.info("Stopping before listening: a stop was asked for during startup")
            return
        factory = ConnectionFactory(state)
        from .supervisor import accept_one_at_a_time, supervisor_link, worker_endpoints

        inherited = worker_endpoints()
        descriptions = inherited or self.config.endpoint_descriptions()
        try:
            reloadable = options_for(self.config)
        except TLSSettingError as exc:
            raise StartupError(str(exc)) from None

        def tls(base: Any, description: str) -> ReloadableTLS:
            binding = reloadable(base, description)
            self.tls_bindings.append(binding)
            return binding

        endpoints = []
        for description in descriptions:  # every one understood before any is bound
            try:
                endpoints.append((description, make_endpoint(
                    self.reactor, description, self.config.proxy_protocol, tls)))
            except (EndpointError, TLSSettingError) as exc:
                raise StartupError(str(exc)) from None
        for description, endpoint in endpoints:
            try:
                port = await endpoint.listen(factory).asFuture(loop)
            except Exception as exc:
                raise StartupError(str(listen_error(description, exc))) from None
            if inherited:
                accept_one_at_a_time(port)  # the socket is shared with the other workers
            self.ports.append(port)
            where = describe_port(description, port)
            self.listening.append(where)
            logger.info("Listening on %s", where)
        self._schedule_sweep()
        self.serving = True
        logger.info("Server ready (%d connection handler%s)", len(self.ports),
                    "" if len(self.ports) == 1 else "s")
        if self.on_ready is not None:
            self.on_ready(self.listening)
        if inherited:
            self.link = supervisor_link()
            if self.link is not None:
                self.link.ready()  # to the --workers supervisor
                limit = self._request_limit()
                if limit is not None:
                    state.limit_instances(limit, self._request_limit_reached)
        else:
            self.notifier.ready("Serving on " + ", ".join(self.listening))
            if self.notifier.watchdog_interval is not None:
                self._ping_watchdog()

    def _ping_watchdog(self) -> None:
        """WATCHDOG=1 from the event loop itself: a loop that stops turning stops the pings,
        and systemd restarts the service."""
        self.notifier.watchdog()  # (a graceful stop's drain is pinged through too)
        interval = self.notifier.watchdog_interval
        assert interval is not None  # only scheduled with a watchdog
        self.loop.call_later(interval, self._ping_watchdog)

    def _handle_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        """SIGINT and SIGTERM stop gracefully, SIGHUP reloads certificates. Where the loop
        cannot watch signals itself (Windows' loops raise NotImplementedError) a plain
        handler hands them to it; a signal the platform lacks (SIGHUP on Windows) is left
        out."""
        for name, handler, args in (("SIGINT", self.request_stop, (signal.SIGINT,)),
                                    ("SIGTERM", self.request_stop, (signal.SIGTERM,)),
                                    ("SIGHUP", self._cannot_reload, ())):
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            try:
                loop.add_signal_handler(signum, handler, *args)
            except NotImplementedError:
                signal.signal(signum, _hand_to(loop, handler, args))

    def _cannot_reload(self) -> None:
        """SIGHUP to a single process: its TLS certificates are read again (a renewed one
        is served to new connections); its code cannot be."""
        for binding in self.tls_bindings:
            try:
                fingerprint = binding.reload(self.reactor)
            except TLSSettingError as exc:
                logger.error("Received SIGHUP: the certificate of %s was not reloaded (%s); "
                             "the current one is still served", binding.description, exc)
            else:
                logger.info("Received SIGHUP: reloaded the certificate of %s (SHA-256 %s)",
                            binding.description, fingerprint)
        # (where it reloaded certificates, that was the point: no warning each renewal)
        logger.log(
            logging.INFO if self.tls_bindings else logging.WARNING,
            "Received SIGHUP: a single server process cannot reload its code; run it with "
            "--workers (1 or more) to reload on SIGHUP without dropping a connection"
        )

    def _request_limit(self) -> int | None:
        """--max-requests, plus this worker's share of the jitter (so that the workers are
        not all replaced at once)."""
        limit = self.config.max_requests
        if not limit:
            return None
        return limit + random.randint(0, self.config.max_requests_jitter)

    def _report_connections(self, state: ServerState) -> None:
        """STATUS= for ``systemctl status``: the open connections, when their number
        changed (at most once a sweep)."""
        count = len(state.connections)
        if count != self._reported_connections and self.listening:
            self._reported_connections = count
            self.notifier.status(f"Serving on {', '.join(self.listening)}: {count} "
                                 f"connection{'' if count == 1 else 's'}")

    def _request_limit_reached(self, served: int) -> None:
        assert self.link is not None  # a limit is set only in a worker
        logger.info("Served %d requests (--max-requests): asking to be replaced", served)
        self.link.recycle()

    def _schedule_sweep(self) -> None:
        state = self.state
        assert state is not None  # start() made it
        state.sweep()
        if self.link is not None:
            self.link.heartbeat()
        elif self.notifier.enabled:
            self._report_connections(state)
        self._sweeper = self.loop.call_later(state.sweep_interval(), self._schedule_sweep)

    # -- stopping

    def _stop_reactor(self) -> None:
        from twisted.internet.error import ReactorNotRunning

        try:
            self.reactor.stop()
        except ReactorNotRunning:  # a second signal already stopped it
            pass

    def request_stop(self, signum: int | None = None) -> None:
        """Begin a graceful stop; a second request stops at once."""
        if self._stopping:
            from .supervisor import worker_endpoints

            if signum == signal.SIGTERM and worker_endpoints() is not None:
                # A --workers worker: systemd's stop sends SIGTERM to every process of the
                # service and the supervisor forwards its own; the supervisor's second
                # stop signal reaches us as SIGINT.
                logger.info("Received SIGTERM again; still stopping gracefully")
                return
            logger.warning("Second stop signal: closing every connection now")
            self.exit_code = 1
            self._abort_everything()
            self._stop_reactor()
            return
        self._stopping = True
        self.notifier.stopping()
        if self.link is not None:
            self.link.draining()
        if signum is not None:
            logger.info("Received %s, shutting down gracefully", signal.Signals(signum).name)
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish within the shutdown timeout, close
        idle connections, then run the lifespan shutdown."""
        state = self.state
        assert state is not None  # start() made it before any stop could be asked for
        state.shutting_down = True
        await self._close_ports()
        for conn in list(state.connections):
            try:
                conn.shutdown()
            except Exception:  # one broken connection must not stop the others' drain
                logger.exception("Error while asking a connection to finish; dropping it")
                with contextlib.suppress(Exception):
                    conn.transport.abortConnection()
        logger.info("Stopped accepting; draining %d connection(s)", len(state.connections))
        deadline = self.loop.time() + self.config.shutdown_timeout
        while (state.connections or state.streams) and self.loop.time() < deadline:
            for stream in list(state.streams):
                if stream.disconnected:  # nobody is waiting for its answer any more
                    stream.cancel()
            await asyncio.sleep(0.02)
        if state.connections or state.streams:
            logger.warning(
                "Shutdown timeout (%ss) passed with %d connection(s) still open; closing them",
                self.config.shutdown_timeout, len(state.connections),
            )
            for conn in list(state.connections):
                conn.transport.abortConnection()
            # Their applications hear the disconnect: a moment to end on their own (Django's
            # handler then cancels its view itself, and collects its own tasks) before the
            # ones still running are cancelled.
            tasks = [s.task for s in state.streams if s.task is not None and not s.task.done()]
            if tasks:
                await asyncio.wait(tasks, timeout=CANCEL_GRACE)
            self._abort_everything()
            await asyncio.sleep(0)
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.lifespan is not None:
            await self.lifespan.shutdown(max(1.0, self.config.shutdown_timeout))
        if state.access_log is not None:
            state.access_log.flush()
        logger.info("Server stopped")

    async def _close_ports(self) -> None:
        ports, self.ports = self.ports, []
        for port in ports:
            try:
                result = port.stopListening()
                if result is not None:
                    await result.asFuture(self.loop)
            except OSError as exc:
                # e.g. a UNIX socket file another --workers process already removed
                logger.debug("Closing %r: %s", port, exc)

    def _abort_everything(self) -> None:
        state = self.state
        if state is None:
            return
        for stream in list(state.streams):
            stream.cancel()
        for conn in list(state.connections):
            conn.transport.abortConnection()
