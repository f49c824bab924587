"""What HTTP/2 header fields may hold, in requests and responses (RFC 9113 8.1-8.3).

h2's own checks are off (it would end the whole connection for a malformed request, where
RFC 9113 8.1.1 makes it an error of that stream alone): every rule is here, once, and a
request is either read into a :class:`RequestFields` or refused with a
:class:`~django_daphne.core.errors.Refusal` (status 0: malformed, the stream is reset with
PROTOCOL_ERROR; else the status of an answer).
"""

from __future__ import annotations

import re

from ...core.errors import Refusal
from ...core.syntax import TARGET, TOKEN, VISIBLE_VALUE_CHARS

# connection-specific header fields HTTP/2 forbids (RFC 9113 8.2.2); "te" has no meaning in
# a response and h2 refuses any value but "trailers"
HOP_BY_HOP = frozenset((
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te",
))
_FORBIDDEN = HOP_BY_HOP - {b"te"}
# a field name as HTTP/2 carries it: a token, in lower case (RFC 9113 8.2.1)
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+").fullmatch
# a field value: the characters the HTTP/1.1 parser accepts, so that one request means the
# same over either protocol, with no whitespace around it (RFC 9113 8.2.1)
_VALUE = re.compile(rb"(?:[%(v)s](?:[\t\x20%(v)s]*[%(v)s])?)?"
                    % {b"v": VISIBLE_VALUE_CHARS}).fullmatch
_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))
LENGTH = re.compile(rb"[0-9]{1,18}").fullmatch
_SPACE = (b" ", b"\t")


def _show(name: bytes) -> str:
    return repr(name.decode("latin-1"))


def malformed(fields: list[tuple[bytes, bytes]], trailers: bool = False) -> str | None:
    """Why a header block is malformed (RFC 9113 8.1.1, 8.2, 8.3), or None when it is not.
    What makes sense only with the pseudo-headers' values is checked by ``read_request``."""
    seen: set[bytes] = set()
    regular = False
    for name, value in fields:
        if name[:1] == b":":
            if trailers or regular:
                return "pseudo-header %s after the header fields" % _show(name) \
                    if regular else "pseudo-header %s in trailers" % _show(name)
            if name not in _PSEUDO:
                return "unknown pseudo-header %s" % _show(name)
            if name in seen:
                return "repeated pseudo-header %s" % _show(name)
            seen.add(name)
        else:
            regular = True
            if not _NAME(name):
                return "invalid header name %s" % _show(name)
            if name in _FORBIDDEN:
                return "connection-specific header %s" % _show(name)
            if name == b"te" and value.lower() != b"trailers":
                return "te other than trailers"
        if not _VALUE(value):
            return "invalid value for %s" % _show(name)
    return None


class RequestFields:
    """A request's pseudo-headers and headers, checked (``host`` from ``:authority`` when the
    request has no ``host``)."""

    __slots__ = ("method", "scheme", "path", "protocol", "headers", "length")

    def __init__(self, method: bytes, scheme: bytes | None, path: bytes,
                 protocol: bytes | None, headers: list[tuple[bytes, bytes]],
                 length: bytes | None) -> None:
        self.method = method
        self.scheme = scheme
        self.path = path
        self.protocol = protocol  # extended CONNECT's (RFC 8441), else None
        self.headers = headers
        self.length = length  # the content-length, if the request has one


def read_request(fields: list[tuple[bytes, bytes]], ended: bool,
                 extended_connect: bool) -> RequestFields:
    """The request a HEADERS frame opens, or a Refusal.  ``ended``: the frame ended the
    stream; ``extended_connect``: we announced SETTINGS_ENABLE_CONNECT_PROTOCOL."""
    problem = malformed(fields)
    if problem is not None:
        raise Refusal.no_answer(problem)
    method = path = scheme = authority = protocol = host = length = None
    headers = []
    cookies = 0
    for name, value in fields:
        if name[:1] == b":":
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":scheme":
                scheme = value
            elif name == b":authority":
                authority = value
            elif name == b":protocol":
                protocol = value
            continue
        if name == b"host":
            if host is not None:
                raise Refusal.no_answer("more than one host header")
            host = value
        elif name == b"content-length":
            if not LENGTH(value) or (length is not None and value != length):
                raise Refusal.no_answer("invalid content-length")
            length = value
        elif name == b"cookie":
            cookies += 1
        headers.append((name, value))
    if cookies > 1:
        headers = _join_cookies(headers)
    if authority is not None:
        if host is None:
            headers.insert(0, (b"host", authority))
        elif host != authority:
            # RFC 9113 8.3.1: the two name the same thing, or the request is suspect
            raise Refusal.no_answer("host differs from :authority")
    elif host is None:
        raise Refusal(400, "no :authority or host")
    if method == b"CONNECT":
        if protocol is None or not extended_connect:
            # we are no proxy; and :protocol unannounced is malformed (RFC 8441 3)
            raise Refusal.no_answer("CONNECT without :protocol" if protocol is None
                          else ":protocol we did not announce")
        if protocol != b"websocket":
            raise Refusal(501, "unsupported :protocol %r" % protocol)
        if path is None or not TARGET(path) or path[0] != 0x2F:
            raise Refusal.no_answer("invalid :path %r" % path)
        if scheme is None:
            raise Refusal.no_answer("no :scheme")
        if ended:
            raise Refusal(400, "a WebSocket stream must stay open")
        return RequestFields(method, scheme, path, protocol, headers, length)
    if protocol is not None:
        raise Refusal.no_answer(":protocol on a request other than CONNECT")
    if scheme is None:
        raise Refusal.no_answer("no :scheme")
    if method is None or not TOKEN(method):
        raise Refusal.no_answer("invalid :method %r" % method)
    if path is None or not TARGET(path) or not (
        path[0] == 0x2F or (path == b"*" and method == b"OPTIONS")
    ):
        # RFC 9113 8.3.1: "/..." always, "*" for OPTIONS; and what HTTP/1.1 would take
        raise Refusal.no_answer("invalid :path %r" % path)
    if ended and length is not None and length != b"0":
        raise Refusal.no_answer("the body is shorter than its content-length")
    return RequestFields(method, scheme, path, None, headers, length)


def _join_cookies(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A cookie split into several fields (a client may, for compression) joined into one
    with "; " where the first was (RFC 9113 8.2.3: before a generic application sees it;
    Django, like any HTTP/1.1 application, joins repeated fields with "," and would read
    ``a=1,b=2`` as one cookie)."""
    values = [value for name, value in headers if name == b"cookie"]
    joined = []
    for name, value in headers:
        if name != b"cookie":
            joined.append((name, value))
        elif values:
            joined.append((name, b"; ".join(values)))
            values = []
    return joined


def response_fields(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Header fields as HTTP/2 carries them: lower-case names, no connection-specific field,
    no whitespace around a value (RFC 9113 8.2.1).  The ASGI layer has already checked that
    names are tokens (so never a pseudo-header) and values free of CR, LF and NUL, so h2 is
    not asked to check every response again (its outbound validation is off)."""
    fields = []
    for name, value in headers:
        name = name.lower()
        if name in HOP_BY_HOP:
            continue
        if value[:1] in _SPACE or value[-1:] in _SPACE:
            value = value.strip(b" \t")
        fields.append((name, value))
    return fields
