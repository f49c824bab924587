"""Which peers are trusted proxies (``--forwarded-allow-ips``): parsed here, for the
configuration and for the ASGI layer that reads proxy headers (asgi/proxy.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

UNIX = "unix"  # a peer on a UNIX socket
EVERYONE = "*"
_CACHE_SIZE = 4096


def parse_trusted(entries: Iterable[str]) -> list[str]:
    """Check the entries of --forwarded-allow-ips; return them stripped.

    Raises ValueError naming the first entry that is not an IP address, a CIDR network,
    ``unix`` or ``*``."""
    cleaned = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        if entry.lower() == UNIX or entry == EVERYONE:
            cleaned.append(entry.lower())
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(
                f"expected IP addresses (127.0.0.1), networks (10.0.0.0/8, fd00::/8), "
                f"'unix' or '*', separated by commas; got {entry!r}"
            ) from None
        cleaned.append(entry)
    return cleaned


def ip_address(host: str) -> _Address | None:
    """An IP address (an IPv4-mapped IPv6 one as IPv4), or None for any other text, an
    IPv6 zone id included (``fe80::1%eth0``: any text may follow the %)."""
    if "%" in host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # an IPv4 peer of a dual-stack socket
    return address


class TrustedProxies:
    """The peers whose proxy headers are believed."""

    def __init__(self, entries: Iterable[str]) -> None:
        entries = parse_trusted(entries)
        self.everyone = EVERYONE in entries
        self.unix = UNIX in entries or self.everyone
        self.networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in entries
            if entry not in (UNIX, EVERYONE)
        )
        self._known: dict[str, bool] = {}

    def trusts(self, host: str | None) -> bool:
        """Whether a peer (an IP address as text; None for a UNIX-socket peer) is trusted."""
        if host is None:
            return self.unix
        if self.everyone:
            return True
        known = self._known.get(host)
        if known is None:
            address = ip_address(host)
            known = address is not None and any(address in net for net in self.networks)
            if len(self._known) < _CACHE_SIZE:
                self._known[host] = known
        return known


