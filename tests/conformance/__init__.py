"""Our own WebSocket conformance suite (RFC 6455, RFC 7692) over raw frames.

The Autobahn|Testsuite needs Python 2.7; this walks the same case groups: framing (1),
pings and pongs (2), reserved bits (3), opcodes (4), fragmentation (5), UTF-8 (6), close
handling (7), limits (9) and permessage-deflate (12, 13).  ``python -m tests.conformance``
runs it (see ``__main__.py``); ``tests/protocols/test_ws_conformance.py`` runs it under pytest.
"""
