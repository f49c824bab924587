"""The access log: a line per request, in Daphne's format unless ``--access-log-format``
names the fields (or asks for ``json``).

Lines are formatted only when the log is on, with the timestamp formatted once a second,
and written to a stream flushed by the server's periodic sweep rather than per line, or
to the ``django_daphne.access`` logger (``--access-log logging``, or a Django project whose
``LOGGING`` routes the server's loggers), where the project's handlers take them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from time import perf_counter
from typing import Any, TextIO

LOGGER = "django_daphne.access"
JSON = "json"  # --access-log-format json: one JSON object a line, every field
HEADER_PREFIX = "h_"  # %(h_x_request_id)s: the request's X-Request-Id header

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
    "user_agent": "the request's User-Agent header, or -",
    "referer": "the request's Referer header, or -",
    "h_NAME": "any request header, its name with _ for -: %(h_x_request_id)s, or -",
}
_HEADER_FIELDS = {"user_agent": b"user-agent", "referer": b"referer"}


def request_field(scope: Mapping[str, Any]) -> str:
    """An HTTP request as the access log's %(request)s names it: METHOD /path?query."""
    path = scope["raw_path"].decode("latin-1")
    if scope["query_string"]:
        path += "?" + scope["query_string"].decode("latin-1")
    return "%s %s" % (scope["method"], path)


class _Fields(dict[str, Any]):
    """A line's fields; the request's headers looked up only when the format names one."""

    def __init__(self, values: dict[str, Any], scope: Any) -> None:
        super().__init__(values)
        self.scope = scope

    def __missing__(self, key: str) -> str:
        if key in _HEADER_FIELDS:
            name = _HEADER_FIELDS[key]
        elif key.startswith(HEADER_PREFIX) and len(key) > len(HEADER_PREFIX):
            name = key[len(HEADER_PREFIX):].replace("_", "-").lower().encode("latin-1")
        else:
            raise KeyError(key)
        if self.scope is not None:
            for header, value in self.scope["headers"]:
                if header == name:
                    text: str = value.decode("latin-1")
                    return text
        return "-"


def check_format(fmt: str) -> str:
    """``fmt`` if it is ``json`` or a %-format of known fields; ValueError naming what is
    wrong."""
    if fmt == JSON:
        return fmt
    sample = _Fields(dict.fromkeys(FIELDS, "-"), None)
    try:
        fmt % sample
    except KeyError as exc:
        raise ValueError(f"unknown field {exc.args[0]!r}; the fields are "
                         + ", ".join(f"%({name})s" for name in FIELDS)) from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a %-format of named fields such as %(status)s ({exc})") from None
    return fmt


def _none(value: str) -> str | None:
    return None if value == "-" else value


def _client(client: Any) -> str:
    if not client:
        return "-"
    return "%s:%s" % (client[0], client[1])


class AccessLog:
    """Writes a line per request (``host - - [date] "METHOD /path?query" status size`` by
    default) to a stream, or to the ``django_daphne.access`` logger (``stream`` None)."""

    def __init__(self, stream: TextIO | None, fmt: str | None = None) -> None:
        self.stream = stream
        self.logger = logging.getLogger(LOGGER) if stream is None else None
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
            line = '%s - - [%s] "%s" %s %s' % (
                _client(client), self._now(), request, status or "-", size or "-")
        else:
            line = self._format(client, request, status, size, scope, duration)
        if self.logger is not None:
            self.logger.info(line)
        else:
            assert self.stream is not None
            self.stream.write(line + "\n")

    def _format(self, client: Any, request: str, status: Any, size: Any, scope: Any,
                duration: float | None) -> str:
        if scope is None:
            protocol = "-"
        elif scope["type"] == "websocket":
            protocol = "WebSocket/2" if scope["http_version"] == "2" else "WebSocket"
        else:
            protocol = "HTTP/" + scope["http_version"]
        if self.format == JSON:
            fields = _Fields({}, scope)
            return json.dumps({
                "client": client[0] if client else None,
                "port": client[1] if client else None,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "request": request, "status": status, "size": size,
                "protocol": None if protocol == "-" else protocol,
                "duration": None if duration is None else round(duration, 6),
                "user_agent": _none(fields["user_agent"]),
                "referer": _none(fields["referer"]),
            })
        return self.format % _Fields({
            "client": _client(client), "date": self._now(), "request": request,
            "status": status or "-", "size": size or "-", "protocol": protocol,
            "duration": "-" if duration is None else "%.3f" % duration,
        }, scope)

    def http(self, stream: Any) -> None:
        """A completed HTTP request (called with the ASGI stream that served it)."""
        scope = stream.scope
        self.write_entry(
            scope["client"], request_field(scope), stream.status, stream.sent,
            scope, perf_counter() - stream.started_at,
        )

    def refused(self, client: Any, status: int, size: int, request: str = "-") -> None:
        """A request refused before it reached the application: ``request`` as for the
        others when it was read (METHOD /path?query, WSREJECT /path), else -."""
        self.write_entry(client, request, status, size)

    def websocket(self, scope: Any, action: str) -> None:
        """A WebSocket event: HANDSHAKING, CONNECT, REJECT or DISCONNECT."""
        path = scope["raw_path"].decode("latin-1")
        self.write_entry(scope["client"], "WS%s %s" % (action, path), None, None, scope)

    def flush(self) -> None:
        if self.stream is None:
            return  # the logger's handlers flush as they do
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass
