"""What each signal does to the server: the table the documentation's reference is
written from (docs/reference/signals.rst).

The handlers themselves live where the work is (runtime.py for one process,
supervisor.py for ``--workers``); tests/docs/test_docs.py reads the signal mask of a running
server and of a running supervisor from ``/proc`` and holds this table to what each
catches.
"""

from __future__ import annotations

from typing import NamedTuple


class Signal(NamedTuple):
    name: str
    single: str  # one process (no --workers); "" when it is not caught
    supervisor: str  # the supervisor of --workers; "" when it is not caught


SIGNALS = (
    Signal("SIGTERM",
           "Graceful stop: stop accepting, serve every request a client has begun within "
           "``SHUTDOWN_TIMEOUT``, close WebSockets with 1001, run the lifespan shutdown, "
           "exit 0. A second one stops at once (exit 1).",
           "Drain every worker gracefully, then exit 0. A second one to the supervisor "
           "stops the workers at once. A worker that gets SIGTERM again goes on draining "
           "(systemd signals every process of the service)."),
    Signal("SIGINT",
           "As SIGTERM (Ctrl-C).",
           "As SIGTERM."),
    Signal("SIGHUP",
           "Read the TLS certificates again (renewed ones are served to new connections); "
           "the code is not reloaded: run ``--workers 1`` for that.",
           "Reload: a new generation of workers imports the code afresh; once every one is "
           "ready the old ones drain. A failed reload leaves the old workers serving. A "
           "SIGHUP during a reload starts one more reload once it ends."),
    Signal("SIGTTIN",
           "",
           "Add a worker."),
    Signal("SIGTTOU",
           "",
           "Remove a worker (not below one); its sockets close in the supervisor at once "
           "and it drains."),
)
