"""What the hot path counts for the metrics (--metrics-endpoint): plain ints and dicts.

The protocols and the ASGI streams add to one :class:`Counts` per server (``server.counts``,
None when metrics are off: a server without them pays one attribute test), and
:mod:`django_daphne.server.metrics` folds it into prometheus_client's objects once a second
and at shutdown, taking what was counted and starting afresh (:meth:`Counts.take`).  So a
request costs a few dictionary updates, never prometheus_client's own locks and
memory-mapped files.  Labels are kept raw here (the status itself, the method as sent) and
mapped to their bounded Prometheus values at the fold: at most a second of requests' keys
between two folds.

Nothing here imports prometheus_client, nor anything of ours.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

# the request duration histogram's upper bounds (seconds); one more bucket holds the rest
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0, 10.0, 30.0, 60.0)
# a count per bucket (and one over the last bound), then the durations' sum
_NO_BUCKETS: list[float] = [0] * (len(DURATION_BUCKETS) + 1) + [0.0]
FIRST_BOUND = DURATION_BUCKETS[0]
# what a request whose client left before its response ended has for a status
ABORTED = 0


class Counts:
    """The counters of one server process since the last fold."""

    __slots__ = ("requests", "http_requests", "websockets_opened",
                 "websockets_closed", "refusals", "app_errors", "connections", "received",
                 "sent")

    def __init__(self) -> None:
        # WebSocket handshakes: ("websocket", "GET", status) -> handshakes
        self.requests: dict[tuple[str, str, int], int] = {}
        # HTTP requests: http_version -> method -> status -> a count per DURATION_BUCKETS
        # bucket (and one over), then their durations' sum; the requests are the buckets'
        # total (:meth:`http_totals`)
        self.http_requests: dict[str, dict[str, dict[int, list[float]]]] = {}
        self.websockets_opened: dict[str, int] = {}  # http_version -> opened
        self.websockets_closed: dict[int, int] = {}  # close code -> closed
        self.refusals: dict[str, int] = {}  # reason (a status, or a word) -> refused
        self.app_errors: dict[str, int] = {}  # scope type -> exceptions raised
        self.connections = 0  # accepted
        self.received = 0  # bytes read from connections (after TLS)
        self.sent = 0  # bytes written to them

    def take(self) -> Counts:
        """What was counted, for the fold; this object starts again from nothing."""
        taken = Counts()
        for name in self.__slots__:
            value = getattr(self, name)
            setattr(taken, name, value)
            setattr(self, name, type(value)())
        return taken

    def http_totals(self) -> tuple[dict[tuple[str, str, int], int],
                                   dict[str, list[float]]]:
        """The HTTP requests by (http_version, method, status), and the duration buckets
        (and their sum, last) by http_version: what :meth:`http` kept in one table."""
        requests: dict[tuple[str, str, int], int] = {}
        durations: dict[str, list[float]] = {}
        for version, methods in self.http_requests.items():
            total = durations.setdefault(version, list(_NO_BUCKETS))
            for method, statuses in methods.items():
                for status, row in statuses.items():
                    requests[(version, method, status)] = int(sum(row[:-1]))
                    for index, value in enumerate(row):
                        total[index] += value
        return requests, durations

    # -- the hot path's calls

    def http(self, scope: dict[str, Any], status: int, duration: float) -> None:
        """An HTTP request answered (``status``), or abandoned by its client (ABORTED),
        ``duration`` seconds after its application started.

        The most frequent count with metrics on, so written for CPython's costs: nested
        dicts rather than a tuple key (no tuple to build and hash), and a comparison
        before the bisect for the first bucket, where a fast application's requests are
        (a slower one's requests make this cost small beside their own).  With
        HTTPStream._finished's inlined copy of it for a key already seen, they took the
        cost of metrics on a keep-alive request from 4.5% to 3.0% of its instructions
        (bench/instructions.py)."""
        version = scope["http_version"]
        method = scope["method"]
        try:
            row = self.http_requests[version][method][status]
        except KeyError:
            row = list(_NO_BUCKETS)
            self.http_requests.setdefault(version, {}).setdefault(method, {})[status] = row
        row[0 if duration <= FIRST_BOUND else bisect_left(DURATION_BUCKETS, duration)] += 1
        row[-1] += duration

    def websocket(self, scope: dict[str, Any], status: int) -> None:
        """A WebSocket handshake answered: accepted (``status`` 101), or denied."""
        key = ("websocket", "GET", status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        if status == 101:
            version = scope["http_version"]
            opened = self.websockets_opened
            opened[version] = opened.get(version, 0) + 1

    def websocket_closed(self, code: int) -> None:
        closed = self.websockets_closed
        closed[code] = closed.get(code, 0) + 1

    def refused(self, reason: str) -> None:
        """A request (or a connection, for a flood) the server refused itself."""
        refusals = self.refusals
        refusals[reason] = refusals.get(reason, 0) + 1

    def app_error(self, kind: str) -> None:
        errors = self.app_errors
        errors[kind] = errors.get(kind, 0) + 1
