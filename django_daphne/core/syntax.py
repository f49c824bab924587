"""The HTTP field syntax (RFC 9110 5.6) that the request parsers of every protocol and the
ASGI layer's checks of responses follow alike, written once."""

from __future__ import annotations

import re

# a token's characters (RFC 9110 5.6.2): methods and header names
TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
TOKEN = re.compile(rb"%s+" % TCHAR).fullmatch
# what a header value may hold, over HTTP/1.1 and HTTP/2 alike: visible bytes, and space
# and tab between them; not NUL, CR, LF, nor the bytes other parsers split lines on
# (\x0b \x0c \x1c-\x1e \x85: the CVE-2026-44546 class)
VISIBLE_VALUE_CHARS = rb"\x21-\x7e\x80-\x84\x86-\xff"
# what a request target may hold (RFC 9112 3.2), in either protocol
TARGET = re.compile(rb"[\x21-\x7e]+").fullmatch
