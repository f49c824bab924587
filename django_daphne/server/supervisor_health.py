"""What the supervisor of ``--workers`` tells the outside about its health: the metrics and
health-check listener of ``--metrics-endpoint`` (its /livez and /readyz answered by
Supervisor.liveness and Supervisor.readiness), and systemd's watchdog pings.

The supervisor (supervisor.py) decides; these only report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from ..core.config import Config, ConfigError
from .notify import Notifier
from .worker_process import Generation, Worker, WorkerState

if TYPE_CHECKING:
    from .metrics import SupervisorMetrics

logger = logging.getLogger("django_daphne.supervisor")

# with --metrics-endpoint: the supervisor's loop turns at least this often, and /livez
# fails once it has not turned for LIVE_STALE seconds
LIVE_TURN = 1.0
LIVE_STALE = 10.0

Check = Callable[[], "tuple[bool, str]"]


class Supervised(Protocol):
    """What the health checks read of the supervisor (supervisor.Supervisor)."""

    stopping: bool
    announced: bool  # every first worker was ready
    last_turn: float  # when its loop last turned (time.monotonic())
    current: Generation
    to_drain: list[Worker]  # the old workers of a reload, drained after --unready-delay
    reload_leaving: set[int]  # the old workers of a reload, until they are gone


def liveness(supervisor: Supervised) -> tuple[bool, str]:
    """Live while the supervisor's loop turns (it does at least every LIVE_TURN seconds; a
    worker whose own loop is stuck is the supervisor's to replace, not a reason to restart
    all)."""
    silent = time.monotonic() - supervisor.last_turn
    if silent > LIVE_STALE:
        return False, f"the supervisor's loop has not turned for {silent:.0f}s"
    return True, "ok"


def readiness(supervisor: Supervised) -> tuple[bool, str]:
    """Ready once every first worker was ready, while a worker of the current generation is
    ready, and not stopping nor draining the old workers of a reload (see
    docs/howto/metrics-and-health.rst)."""
    if supervisor.stopping:
        return False, "stopping"
    if not supervisor.announced:
        return False, "starting"
    if supervisor.to_drain or supervisor.reload_leaving:
        return False, "draining the workers of the last reload"
    if not any(w.state is WorkerState.READY for w in list(supervisor.current.slots.values())):
        return False, "no worker ready"
    return True, "ok"


class HealthEndpoint:
    """The ``--metrics-endpoint`` listener of the supervisor: the workers' metrics (a
    prometheus_client multiprocess directory, made before any worker starts) and the
    supervisor's own, /livez and /readyz."""

    def __init__(self) -> None:
        self.metrics: SupervisorMetrics | None = None
        self._listener: Any = None
        self._directory: str | None = None

    def open(self, config: Config, liveness: Check, readiness: Check) -> bool:
        """Listen (where configured); False, the reason logged, when it cannot."""
        if config.metrics_endpoint is None:
            return True
        from .metrics import (
            SupervisorMetrics,
            ThreadedListener,
            bind_socket,
            describe_socket,
            require_prometheus_client,
            use_multiprocess_dir,
        )

        try:
            require_prometheus_client()
            sock = bind_socket(config.metrics_endpoint)
        except (ConfigError, OSError) as exc:
            logger.error("Cannot serve metrics on %s: %s", config.metrics_endpoint, exc)
            return False
        self._directory = use_multiprocess_dir()  # before any worker starts
        self.metrics = SupervisorMetrics(self._directory)
        self._listener = ThreadedListener(sock, self.metrics.registry, liveness, readiness)
        self._listener.start()
        logger.info("Metrics and health checks on %s", describe_socket(sock))
        return True

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._directory is not None:
            from .metrics import remove_multiprocess_dir

            remove_multiprocess_dir(self._directory)


class Watchdog:
    """systemd's watchdog (``WatchdogSec=``), pinged from the supervisor's loop."""

    def __init__(self, notifier: Notifier, config: Config) -> None:
        self.notifier = notifier
        self.config = config
        self.next_ping: float | None = None  # None: no watchdog

    def start(self, now: float) -> None:
        if self.notifier.watchdog_interval is not None:
            self.next_ping = now

    def ping(self, now: float, workers: Iterable[Worker]) -> None:
        """WATCHDOG=1 while the supervisor's loop turns and, with --worker-timeout 0, while
        every worker's loop turns too (it sends a heartbeat each sweep): then a stuck one
        stops the pings, and systemd restarts the service.  With a --worker-timeout, the
        supervisor replaces a stuck worker itself, which a restart of the service would
        pre-empt."""
        interval = self.notifier.watchdog_interval
        assert interval is not None and self.next_ping is not None
        if now < self.next_ping:
            return
        self.next_ping = now + interval
        late = [w for w in workers if not self.config.worker_timeout
                and w.state is WorkerState.READY and now - w.last_beat > 2 * interval]
        if late:
            logger.warning("Worker %s sent no heartbeat for %.1fs: no watchdog ping",
                           ", ".join(str(w.pid) for w in late), now - late[0].last_beat)
            return
        self.notifier.watchdog()
