"""How each option's value is read and checked: a converter takes the raw value (from the
settings, the environment or the command line) and returns the typed one, or raises
ValueError saying what would be valid.  The options table (:mod:`.options`) names one per
option."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

# where a server listens when told nothing else (and a metrics endpoint given a port alone)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    raise ValueError(f"expected a whole number, got {value!r}")


def as_seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds, got a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(f"expected a number of seconds, got {value!r}")


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):  # as "0" and "1" are
        return bool(value)
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected True or False (or 1/0, yes/no, on/off), got {value!r}")


def as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__} {value!r}")
    return value


def as_path(value: Any) -> str:
    """A file's path: a string, or a path object (settings.py's ``BASE_DIR / "x"``)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a path (a string or a pathlib.Path), got "
                         f"{type(value).__name__} {value!r}")
    return value


def as_access_log_format(value: Any) -> str:
    from .access_log import check_format

    return check_format(as_str(value))


def as_str_list(value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"expected a list of strings, got {value!r}")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"expected a list of strings, got an item {item!r}")
    return items


def split_list(raw: str) -> list[str]:
    """A list option's value in an environment variable: comma-separated items, the spaces
    around each dropped.  A comma after a backslash belongs to its item, backslash and all
    (a Twisted endpoint description reads that as an escaped comma)."""
    return [item.strip() for item in re.split(r"(?<!\\),", raw) if item.strip()]


def as_file_mode(value: Any) -> str:
    """Permissions in octal: "660", "0660", "0o660", or the number 0o660."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip():
        text = value.strip().lower().removeprefix("0o")
        if not text.isdigit() or any(c in "89" for c in text):
            raise ValueError(f"expected permissions in octal such as 660, got {value!r}")
        number = int(text, 8)
    else:
        raise ValueError(f"expected permissions in octal such as 660, got {value!r}")
    if not 0 <= number <= 0o777:
        raise ValueError(f"expected permissions from 000 to 777, got {value!r}")
    return f"{number:03o}"


def as_header_name(value: Any) -> str:
    name = as_str(value)
    if not name or any(c in name for c in ' \t:\r\n"(),/;<=>?@[\\]{}'):
        raise ValueError(f"expected an HTTP header name such as X-Forwarded-For, got {name!r}")
    return name


def as_cipher_string(value: Any) -> str:
    import ssl

    ciphers = as_str(value)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(ciphers)
    except ssl.SSLError:
        raise ValueError(f"expected an OpenSSL cipher string such as ECDHE+AESGCM; "
                         f"{ciphers!r} selects no cipher") from None
    return ciphers


ALPN_PROTOCOLS = ("h2", "http/1.1", "http/1.0")


def as_alpn_list(value: Any) -> list[str]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) \
        else as_str_list(value)
    items = [item for item in items if item]
    for item in items:
        if item not in ALPN_PROTOCOLS:
            raise ValueError(f"expected protocols of {', '.join(ALPN_PROTOCOLS)}, "
                             f"got {item!r}")
    if not items:
        raise ValueError(f"expected at least one of {', '.join(ALPN_PROTOCOLS)}")
    return items


def as_trusted_proxies(value: Any) -> list[str]:
    from .trust import parse_trusted

    if isinstance(value, str):
        return parse_trusted(value.split(","))
    return parse_trusted(as_str_list(value))


def as_metrics_endpoint(value: Any) -> str:
    """Where the metrics and health listener listens: ``HOST:PORT`` (``[::1]:PORT`` for
    IPv6), ``PORT`` alone (127.0.0.1), or ``unix:PATH``; returned as given, checked."""
    text = as_str(value).strip()
    if text.startswith("unix:"):
        if not text[5:]:
            raise ValueError("expected unix:PATH, got an empty path")
        return text
    try:
        metrics_address(text)
    except ValueError as exc:
        raise ValueError(f"expected HOST:PORT, PORT or unix:PATH ({exc}), got {text!r}") \
            from None
    return text


def metrics_address(text: str) -> tuple[str, int]:
    """(host, port) of a TCP metrics endpoint (see as_metrics_endpoint)."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = DEFAULT_HOST, text
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 address goes in brackets, as [::1]:9100")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not a number from 0 to 65535")
    return host or DEFAULT_HOST, int(port_text)


