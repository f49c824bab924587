"""Scope pieces every protocol shares: the request target, client address and proxy headers.

HTTP/1.1, HTTP/2 and WebSocket hand their raw request data to these functions, so a path is
decoded, and a proxy header trusted, one way only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from ..core.errors import Refusal
from .proxy import apply_proxy_headers

if TYPE_CHECKING:
    from ..core.state import ServerState

_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}


def split_target(target: bytes) -> tuple[str, bytes, bytes]:
    """(path, raw_path, query_string) from a request target.

    Accepts origin-form (``/a%20b?x=1``), absolute-form (``http://host/a``) and ``*``.
    The path is percent-decoded as UTF-8; a target that does not decode is refused.
    """
    raw_path, _, query = target.partition(b"?")
    if raw_path[:1] != b"/":
        if raw_path == b"*" and not query:
            return "*", raw_path, b""
        lowered = raw_path[:8].lower()
        if lowered.startswith(b"http://") or lowered.startswith(b"https://"):
            slash = raw_path.find(b"/", raw_path.find(b"//") + 2)
            raw_path = raw_path[slash:] if slash >= 0 else b"/"
        else:
            raise Refusal(400, "invalid request target")
    if not raw_path.isascii() or not query.isascii():
        raise Refusal(400, "non-ASCII bytes in the request target")
    if b"%" in raw_path:
        try:
            path = unquote_to_bytes(raw_path).decode("utf-8")
        except UnicodeDecodeError:
            raise Refusal(400, "request path is not UTF-8 once percent-decoded") from None
    else:
        path = raw_path.decode("ascii")
    return path, raw_path, query


ROOT_PATH_HEADER = b"daphne-root-path"


def screen_headers(
    headers: list[tuple[bytes, bytes]], root_path: str
) -> tuple[list[tuple[bytes, bytes]], str]:
    """The headers an application may see, and the root path, as Daphne decides them.

    A header whose name holds an underscore is dropped: Django (like CGI) turns ``-`` into
    ``_`` in ``request.META`` names, so ``X_Forwarded_For`` would pass for the
    ``X-Forwarded-For`` a proxy vouches for (CVE-2015-0219); Daphne and Django's runserver
    drop them too.  ``Daphne-Root-Path`` (percent-encoded) sets the scope's ``root_path``
    for this request, as it does in Daphne, and is not passed on.
    """
    kept = []
    for name, value in headers:
        if name == ROOT_PATH_HEADER:
            try:
                root_path = unquote_to_bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise Refusal(400, "Daphne-Root-Path is not UTF-8 once percent-decoded") from None
        elif b"_" not in name:
            kept.append((name, value))
    return kept, root_path


def address(addr: Any) -> list[Any] | None:
    """A Twisted address as the ASGI ``[host, port]`` pair (None for UNIX sockets)."""
    host = getattr(addr, "host", None)
    if host is None:
        return None
    return [host, addr.port]


def server_address(addr: Any) -> list[Any] | None:
    """The listening address as ASGI's ``server``: ``[host, port]`` or ``[path, None]``."""
    host = getattr(addr, "host", None)
    if host is not None:
        return [host, addr.port]
    name = getattr(addr, "name", None)
    if name is not None:
        return [name.decode() if isinstance(name, bytes) else name, None]
    return None


def connection_scope(
    server: ServerState,
    http_version: str,
    scheme: str,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    client: list[Any] | None,
    server_addr: list[Any] | None,
    screen: bool = True,
    method: bytes | None = None,
    tls: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What an HTTP and a WebSocket scope share, for any wire protocol: the target split and
    decoded, the proxy headers applied, the headers screened.  With a ``method`` it is an
    HTTP scope (``build_scope``), without one a WebSocket's.  Raises Refusal for a target
    that cannot be represented.

    ``tls``: the connection's ASGI TLS extension (``scope["extensions"]["tls"]``).

    ``screen``: the headers may hold a name with an underscore or Daphne-Root-Path (see
    :func:`screen_headers`); a wire protocol that can rule both out cheaply (HTTP/1.1 scans
    the raw head) passes False and skips the per-header look.
    """
    path, raw_path, query = split_target(target)
    if server.proxy_headers is not None:
        # before the screening: a proxy header configured with an underscore still counts
        client, scheme = apply_proxy_headers(headers, client, scheme, server.proxy_headers,
                                             server.trusted_proxies)
    root_path = server.config.root_path
    if screen:
        headers, root_path = screen_headers(headers, root_path)
    # "method" in the literal (a key added afterwards can make the dict grow): an HTTP
    # scope's, taken out again of a WebSocket's
    scope: dict[str, Any] = {
        "type": "websocket" if method is None else "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": http_version,
        "method": None if method is None else _METHODS.get(method) or method.decode("ascii"),
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": server_addr,
    }
    if method is None:
        del scope["method"]
    if server.lifespan_state is not None:
        scope["state"] = server.lifespan_state.copy()
    if tls is not None:
        # a copy per scope: an application may change what it is given
        copy: dict[str, Any] = {**tls, "client_cert_chain": [*tls["client_cert_chain"]]}
        scope["extensions"] = {"tls": copy}
    return scope
