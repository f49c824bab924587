"""Proxy headers: whose are believed, and what they say.

A client that reaches the server directly can send X-Forwarded-For itself, so the headers are
believed only from a peer listed as a trusted proxy (``--forwarded-allow-ips``: addresses,
networks, ``unix`` for a UNIX-socket peer, ``*``), and only as far as the chain of trusted
proxies goes: the client is the right-most address that is not itself a trusted proxy. A
value that is not an IP address (or is ``unknown``) is not believed, so nothing but an
address ever reaches ``scope["client"]``, the access log and ``REMOTE_ADDR``.

One family of headers is read: X-Forwarded-For/-Port/-Proto by default, or RFC 7239's
``Forwarded`` when the address header is set to ``Forwarded``. The other family is ignored
even when present: a proxy that sets one passes a client's copy of the other through
unchanged, and believing it would let that client choose its address.
"""

from __future__ import annotations

from typing import Any

from ..core.trust import TrustedProxies, ip_address

# the schemes a proxy may report, and their WebSocket counterparts
_SCHEMES = {"http": ("http", "ws"), "https": ("https", "wss"),
            "ws": ("http", "ws"), "wss": ("https", "wss")}


def _port(raw: str) -> int | None:
    return int(raw) if raw.isdigit() and len(raw) <= 5 and int(raw) < 65536 else None


def _node(entry: str) -> tuple[str, int | None] | None:
    """An address as proxies write it (``203.0.113.7``, ``::1``, ``203.0.113.7:5678``,
    ``[2001:db8::1]:5678``, ``[2001:db8::1]``) as (address, port or None); None for anything
    that is not an IP address (``unknown`` and RFC 7239's obfuscated names included)."""
    port: int | None = None
    if entry.startswith("["):
        close = entry.find("]")
        if close < 0:
            return None
        host, rest = entry[1:close], entry[close + 1:]
        if rest:
            if rest[:1] != ":" or (port := _port(rest[1:])) is None:
                return None
    elif entry.count(":") == 1:
        host, _, raw = entry.partition(":")
        if (port := _port(raw)) is None:
            return None
    else:
        host = entry
    address = ip_address(host)
    return None if address is None else (str(address), port)


def _split_forwarded(value: str) -> list[dict[str, str] | None]:
    """RFC 7239's elements (``for=...;proto=...``, comma-separated, values token or
    quoted-string) as dicts of lower-cased parameter names, each on its own: an element that
    is malformed is None, and does not spoil the others (a client's copy of the header, left
    of what its proxy appended, may be anything)."""
    elements: list[dict[str, str] | None] = []
    current: dict[str, str] | None = {}
    i, n = 0, len(value)

    def close() -> None:
        if current is None or current:
            elements.append(current)

    while i < n:
        char = value[i]
        if char in " \t;":
            i += 1
            continue
        if char == ",":
            close()
            current, i = {}, i + 1
            continue
        equals, comma = value.find("=", i), value.find(",", i)
        if equals < 0 or (0 <= comma < equals):
            current = None  # a parameter without a value
            i = comma if comma >= 0 else n
            continue
        name = value[i:equals].strip().lower()
        i = equals + 1
        if i < n and value[i] == '"':
            opening = i
            chars, i = [], i + 1
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(value[i])
                i += 1
            if i >= n:
                # an unterminated quoted-string: this element is malformed, and the next
                # comma (what a proxy appended after it) starts the next one
                current = None
                comma = value.find(",", opening)
                i = comma if comma >= 0 else n
                continue
            parameter, i = "".join(chars), i + 1
        else:
            end = i
            while end < n and value[end] not in ";,":
                end += 1
            parameter, i = value[i:end].strip(), end
        if current is not None:
            if not name or name in current:
                current = None  # an empty or repeated parameter name
            else:
                current[name] = parameter
    close()
    return elements


def _client_hop(nodes: list[str], trust: TrustedProxies) -> int | None:
    """The index of the client in a proxy chain (left to right, as the headers list it):
    the right-most node that is not a trusted proxy, or the left-most if all are; None if a
    node reached on the way is not an address."""
    for index in range(len(nodes) - 1, -1, -1):
        node = _node(nodes[index])
        if node is None:
            return None
        if index == 0 or not trust.trusts(node[0]):
            return index
    return None


def _scheme(proto: str | None, scheme: str) -> str:
    if proto is None:
        return scheme
    schemes = _SCHEMES.get(proto.strip().lower())
    if schemes is None:
        return scheme  # not a scheme we know: not believed
    return schemes[1] if scheme in ("ws", "wss") else schemes[0]


def _values(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """Every field of that name joined as one list (RFC 9110 5.3), or None."""
    found = [value for header, value in headers if header == name]
    if not found:
        return None
    return ",".join(value.decode("latin-1") for value in found)


def apply_proxy_headers(
    headers: list[tuple[bytes, bytes]],
    client: list[Any] | None,
    scheme: str,
    names: tuple[bytes, bytes, bytes],
    trust: TrustedProxies,
) -> tuple[list[Any] | None, str]:
    """The client and scheme the proxy headers report, if the peer is a trusted proxy and
    they hold addresses; else the client and scheme seen on the connection."""
    if not trust.trusts(client[0] if client else None):
        return client, scheme
    address_header, port_header, proto_header = names
    if address_header == b"forwarded":
        return _from_forwarded(_values(headers, b"forwarded"), client, scheme, trust)
    forwarded_for = _values(headers, address_header)
    if forwarded_for is not None:
        nodes = [node.strip() for node in forwarded_for.split(",")]
        hop = _client_hop(nodes, trust)
        if hop is not None:
            host, port = _node(nodes[hop]) or ("", None)
            if port is None:
                forwarded_port = _values(headers, port_header)
                port = _port(forwarded_port.rsplit(",", 1)[-1].strip()) \
                    if forwarded_port is not None else None
            client = [host, port or 0]
    forwarded_proto = _values(headers, proto_header)
    if forwarded_proto is not None:
        scheme = _scheme(forwarded_proto.rsplit(",", 1)[-1], scheme)
    return client, scheme


def _from_forwarded(value: str | None, client: list[Any] | None, scheme: str,
                    trust: TrustedProxies) -> tuple[list[Any] | None, str]:
    if value is None:
        return client, scheme
    elements = _split_forwarded(value)
    # a malformed element, or one without for=, stops the walk where it is reached
    nodes = [element.get("for", "") if element is not None else "" for element in elements]
    if not nodes:
        return client, scheme
    hop = _client_hop(nodes, trust)
    if hop is None:
        return client, scheme
    element = elements[hop]
    assert element is not None  # _client_hop reached only addresses
    host, port = _node(element["for"]) or ("", None)
    # proto= of the element that names the client: the scheme it used to reach that proxy
    return [host, port or 0], _scheme(element.get("proto"), scheme)
