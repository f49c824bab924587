"""HTTP/2 (RFC 9113) with h2: see :mod:`.connection` for the pieces."""

from .connection import HTTP2Handler
from .h2_workarounds import valid_upgrade_settings

__all__ = ["HTTP2Handler", "valid_upgrade_settings"]
