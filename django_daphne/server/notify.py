"""systemd's service notifications (``Type=notify``), with the standard library.

Under a unit with ``Type=notify``, systemd passes ``NOTIFY_SOCKET``, a datagram socket the
service tells its state to (sd_notify(3)): ``READY=1`` once it serves, ``RELOADING=1`` and
``READY=1`` around a reload, ``STOPPING=1`` when it stops, ``STATUS=...`` for
``systemctl status``, and, when the unit sets ``WatchdogSec=`` (``WATCHDOG_USEC``),
``WATCHDOG=1`` at least that often, or systemd restarts the service. Each message is one
datagram of ``NAME=value`` lines. Without ``NOTIFY_SOCKET`` every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

logger = logging.getLogger("django_daphne.server")

# what systemd sets for the service's main process, and no child should believe its own
NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """Where this process reports to systemd, if anywhere."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        self.address: str | None = address if address[:1] in ("/", "\0") else None
        self.failed = False
        # the watchdog: ping twice per period, as sd_watchdog_enabled(3) advises
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_interval: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 2_000_000

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> None:
        """Send ``NAME=value`` fields as one message; a failure is logged once, and the
        server goes on (systemd then judges it by its own timeouts)."""
        if self.address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                sock.sendall("\n".join(fields).encode("utf-8"))
        except OSError as exc:
            if not self.failed:
                self.failed = True
                logger.warning("Cannot notify systemd at %s: %s",
                               self.address.replace("\0", "@"), exc)

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        # MONOTONIC_USEC: systemd 253 and later match the reload to this moment
        self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}",
                    "STATUS=Reloading")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=Stopping")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for a child process: systemd's notification variables are the main
    process's alone (a worker that used them would be ignored, or be taken for it)."""
    return {k: v for k, v in environ.items() if k not in NOTIFY_VARIABLES}
