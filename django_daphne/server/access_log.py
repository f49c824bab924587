"""The access log: a line per request, in Daphne's format unless ``--access-log-format``
names the fields.

Lines are formatted only when the log is on, with the timestamp formatted once a second,
and flushed by the server's periodic sweep rather than per line.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

# Daphne's line: a common-log-format line, ``host:port - - [date] "GET /path" 200 1234``
DAPHNE_FORMAT = '%(client)s - - [%(date)s] "%(request)s" %(status)s %(size)s'
# what a format may use, with what each holds
FIELDS = {
    "client": "the client's address and port (host:port), or -",
    "date": "the local time, 02/Dec/2026:12:00:00",
    "request": "METHOD /path?query, or WSCONNECT /path (WebSocket events), or - (refused)",
    "status": "the response status, or -",
    "size": "the bytes of the response body, or -",
    "protocol": "HTTP/1.0, HTTP/1.1, HTTP/2, WebSocket (over HTTP/1.1) or WebSocket/2",
    "duration": "seconds from the request to the end of its response (3 decimals), or -",
}


def check_format(fmt: str) -> str:
    """``fmt`` if it is a %-format of known fields; ValueError naming what is wrong."""
    sample = dict.fromkeys(FIELDS, "-")
    try:
        fmt % sample
    except KeyError as exc:
        raise ValueError(f"unknown field {exc.args[0]!r}; the fields are "
                         + ", ".join(f"%({name})s" for name in FIELDS)) from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a %-format of named fields such as %(status)s ({exc})") from None
    return fmt


def _client(client: Any) -> str:
    if not client:
        return "-"
    return "%s:%s" % (client[0], client[1])


class AccessLog:
    """Writes a line per request (``host - - [date] "METHOD /path?query" status size`` by
    default) to a stream."""

    def __init__(self, stream: TextIO, fmt: str | None = None) -> None:
        self.stream = stream
        self.format = fmt or DAPHNE_FORMAT
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
        self, client: Any, request: str, status: Any, size: Any, scope: Any = None,
        duration: float | None = None,
    ) -> None:
        if self.format is DAPHNE_FORMAT:
            self.stream.write(
                '%s - - [%s] "%s" %s %s\n'
                % (_client(client), self._now(), request, status or "-", size or "-")
            )
            return
        if scope is None:
            protocol = "-"
        elif scope["type"] == "websocket":
            protocol = "WebSocket/2" if scope["http_version"] == "2" else "WebSocket"
        else:
            protocol = "HTTP/" + scope["http_version"]
        self.stream.write(self.format % {
            "client": _client(client), "date": self._now(), "request": request,
            "status": status or "-", "size": size or "-", "protocol": protocol,
            "duration": "-" if duration is None else "%.3f" % duration,
        } + "\n")

    def http(self, stream: Any) -> None:
        """A completed HTTP request (called with the ASGI stream that served it)."""
        scope = stream.scope
        path = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            path += "?" + scope["query_string"].decode("latin-1")
        self.write_entry(
            scope["client"], "%s %s" % (scope["method"], path), stream.status, stream.sent,
            scope, stream.server.loop.time() - stream.started_at,
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
