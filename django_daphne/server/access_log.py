"""The access log, in Daphne's format (a common-log-format line per request).

Lines are formatted only when the log is on, with the timestamp formatted once a second,
and flushed by the server's periodic sweep rather than per line.
"""

from __future__ import annotations

import time
from typing import Any, TextIO


def _client(client: Any) -> str:
    if not client:
        return "-"
    return "%s:%s" % (client[0], client[1])


class AccessLog:
    """Writes ``host - - [date] "METHOD /path?query" status size`` lines to a stream."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._second = -1
        self._date = ""

    def _now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._date = time.strftime("%d/%b/%Y:%H:%M:%S", time.localtime(now))
        return self._date

    def write_entry(
        self, client: Any, request: str, status: Any, size: Any, scope: Any = None
    ) -> None:
        self.stream.write(
            '%s - - [%s] "%s" %s %s\n'
            % (_client(client), self._now(), request, status or "-", size or "-")
        )

    def http(self, stream: Any) -> None:
        """A completed HTTP request (called with the ASGI stream that served it)."""
        scope = stream.scope
        path = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            path += "?" + scope["query_string"].decode("latin-1")
        self.write_entry(
            scope["client"], "%s %s" % (scope["method"], path), stream.status, stream.sent,
            scope,
        )

    def refused(self, client: Any, status: int, size: int) -> None:
        """A request refused before it reached the application."""
        self.write_entry(client, "-", status, size)

    def websocket(self, scope: Any, action: str) -> None:
        """A WebSocket event: HANDSHAKING, CONNECT, REJECT or DISCONNECT."""
        path = scope["raw_path"].decode("latin-1")
        self.write_entry(scope["client"], "WS%s %s" % (action, path), None, None, scope)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass
