"""Serving ``STATIC_ROOT`` at ``STATIC_URL`` from the server itself, in production.

Daphne serves no static files, so every Channels deployment needs WhiteNoise or a proxy for
its CSS and JS.  :class:`StaticFiles` is an ASGI wrapper put in front of the application by
``manage.py daphne --static``: requests under ``STATIC_URL`` never reach Django.

What it does: ``ETag`` and ``Last-Modified`` with 304 answers (and 412 for ``If-Match`` and
``If-Unmodified-Since``, in RFC 9110's order); a year of ``immutable`` caching for files
whose names carry a content hash (``ManifestStaticFilesStorage``); precompressed
``.br``/``.gz`` siblings chosen by ``Accept-Encoding`` q-values (with ``Vary``); single
``Range`` requests (206/416); HEAD.  What it refuses (404): directories, ``..``, encoded
slashes and backslashes, NUL, anything but a regular file, and any path, symlinks
included, that resolves outside ``STATIC_ROOT`` (logged once per name).  Files are opened
and read in the thread pool, never on the event loop, and sent in chunks at the pace the
client reads them, so a large file never sits whole in memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import os
import re
import stat
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from typing import Any, Literal

logger = logging.getLogger("django_daphne.static")

CHUNK = 64 * 1024
IMMUTABLE = b"public, max-age=31536000, immutable"
REVALIDATE = b"no-cache"
# a 12-hex-digit hash before the extension, as ManifestStaticFilesStorage names files
HASHED_NAME = re.compile(r"\.[0-9a-f]{12}\.[^/.]+$")
# the precompressed siblings, smallest first: the first wins when the client ranks them equal
ENCODINGS = (("br", ".br"), ("gzip", ".gz"))
FORBIDDEN_RAW = re.compile(rb"%(?:2f|5c|00)", re.IGNORECASE)
# first-pos "-" last-pos, or "-" suffix-length; ASCII digits only (str.isdigit takes "²")
RANGE_SPEC = re.compile(r"\s*([0-9]*)\s*-\s*([0-9]*)\s*", re.ASCII)
# a number of more digits than this is larger than any file (and past int()'s digit limit)
HUGE = 1 << 64
# the types browsers insist on (with X-Content-Type-Options: nosniff a script or a
# stylesheet of another type is refused), fixed rather than read from the platform's table
# (Windows' registry, which mimetypes reads, often maps .js to text/plain)
WEB_TYPES = {
    ".css": "text/css", ".js": "text/javascript", ".mjs": "text/javascript",
    ".html": "text/html", ".htm": "text/html", ".txt": "text/plain",
    ".json": "application/json", ".map": "application/json",
    ".webmanifest": "application/manifest+json", ".xml": "application/xml",
    ".wasm": "application/wasm", ".svg": "image/svg+xml", ".png": "image/png",
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
    ".avif": "image/avif", ".ico": "image/vnd.microsoft.icon",
    ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".otf": "font/otf",
    # a compressed file asked for by its own name is that file, not what it decompresses to
    ".gz": "application/gzip", ".br": "application/octet-stream",
}
CHARSET_TYPES = ("application/javascript", "image/svg+xml")


@dataclass(frozen=True)
class Found:
    """One file chosen to answer a request: its open descriptor, what it is, how it is
    encoded.  Size and dates come from the descriptor, so they describe the bytes sent even
    when the file is replaced while the request is answered."""

    fd: int
    size: int
    mtime: float
    etag: bytes
    encoding: str | None
    vary: bool


class StaticFiles:
    """ASGI wrapper: ``url`` (``STATIC_URL``, e.g. ``/static/``) served from ``root``
    (``STATIC_ROOT``); everything else goes to ``application``."""

    def __init__(self, application: Any, root: str, url: str) -> None:
        self.application = application
        self.root = os.path.realpath(root)
        self.prefix = "/" + url.strip("/") + "/"
        self.hashed_names = self._manifest_names()
        self.warned_links: set[str] = set()

    def _manifest_names(self) -> frozenset[str]:
        """The hashed names that ManifestStaticFilesStorage's manifest lists, if any."""
        try:
            with open(os.path.join(self.root, "staticfiles.json"), encoding="utf-8") as f:
                manifest = json.load(f)
            return frozenset(manifest.get("paths", {}).values())
        except (OSError, ValueError, AttributeError):
            return frozenset()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            root_path = scope.get("root_path", "")
            if root_path and path.startswith(root_path + "/"):
                path = path[len(root_path):]
            if path.startswith(self.prefix):
                await self.serve(scope, path[len(self.prefix):], send)
                return
        await self.application(scope, receive, send)

    # -- choosing the file

    def relative_name(self, scope: dict, name: str) -> str | None:
        """The file name under the root that the request names, or None when the request
        is one to refuse: traversal, encoded separators, NUL, backslashes, empty parts."""
        if FORBIDDEN_RAW.search(scope.get("raw_path", b"")):
            return None
        if not name or "\\" in name or "\x00" in name:
            return None
        parts = name.split("/")
        if any(part in ("", ".", "..") for part in parts):
            return None
        return "/".join(parts)

    def is_hashed(self, name: str) -> bool:
        return name in self.hashed_names or bool(HASHED_NAME.search(name))

    def _inside_root(self, path: str) -> str | None:
        real = os.path.realpath(path)
        if real == self.root or not real.startswith(self.root + os.sep):
            return None
        return real

    def _refused_link(self, path: str) -> None:
        """Tell the operator, once per name, that a link out of the root is refused."""
        if path in self.warned_links or not os.path.lexists(path):
            return
        self.warned_links.add(path)
        logger.warning(
            "%s resolves to %s, outside STATIC_ROOT (%s): refused with 404. "
            "`collectstatic --link` makes such links; collect copies instead.",
            path, os.path.realpath(path), self.root,
        )

    def find(self, name: str, accepted: dict[str, float]) -> Found | None:
        """The file (or its best precompressed sibling), opened; runs in a worker thread."""
        lexical = os.path.join(self.root, *name.split("/"))
        path = self._inside_root(lexical)
        if path is None:
            self._refused_link(lexical)
            return None
        opened = open_regular(path)
        if opened is None:
            return None
        fd, info = opened
        siblings = []
        encoding: str | None
        for encoding, suffix in ENCODINGS:
            sibling = self._inside_root(path + suffix)
            if sibling is None:
                continue
            try:
                sibling_info = os.stat(sibling)
            except (OSError, ValueError):
                continue
            # a sibling older than its file was compressed from an earlier version
            if stat.S_ISREG(sibling_info.st_mode) and sibling_info.st_mtime >= info.st_mtime:
                siblings.append((encoding, sibling))
        encoding = choose_encoding(accepted, [coding for coding, _ in siblings])
        size = info.st_size
        if encoding is not None:
            opened = open_regular(dict(siblings)[encoding])
            if opened is None:  # gone since the stat above: send the file itself
                encoding = None
            else:
                os.close(fd)
                fd, size = opened[0], opened[1].st_size
        # one Last-Modified for every encoding of the file; an ETag for each
        etag = '"%x-%x%s"' % (info.st_mtime_ns, size, "-" + encoding if encoding else "")
        return Found(fd, size, info.st_mtime, etag.encode("ascii"), encoding, bool(siblings))

    # -- answering

    async def serve(self, scope: dict, name: str, send: Any) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await respond(send, 405, b"Method Not Allowed\n", [(b"Allow", b"GET, HEAD")])
            return
        relative = self.relative_name(scope, name)
        headers = request_headers(scope)
        loop = asyncio.get_running_loop()
        found = None
        if relative is not None:
            accepted = accepted_encodings(headers.get(b"accept-encoding", b""))
            found = await loop.run_in_executor(None, self.find, relative, accepted)
        if relative is None or found is None:
            await respond(send, 404, b"Not Found\n")
            return
        try:
            await self.answer(loop, send, method, relative, headers, found)
        finally:
            await loop.run_in_executor(None, os.close, found.fd)

    async def answer(self, loop: Any, send: Any, method: str, relative: str,
                     headers: dict[bytes, bytes], found: Found) -> None:
        response_headers = [
            (b"Last-Modified", formatdate(found.mtime, usegmt=True).encode("ascii")),
            (b"ETag", found.etag),
            (b"Cache-Control", IMMUTABLE if self.is_hashed(relative) else REVALIDATE),
            (b"Accept-Ranges", b"bytes"),
            (b"Content-Type", content_type(relative)),
            (b"X-Content-Type-Options", b"nosniff"),
            # public files: fonts and modules loaded by pages of another origin (a CDN in
            # front, a second site) need it, as WhiteNoise sends it by default
            (b"Access-Control-Allow-Origin", b"*"),
        ]
        if found.vary:
            response_headers.append((b"Vary", b"Accept-Encoding"))
        if found.encoding:
            response_headers.append((b"Content-Encoding", found.encoding.encode("ascii")))
        if precondition_failed(headers, found):
            await respond(send, 412, b"Precondition Failed\n", [(b"ETag", found.etag)])
            return
        if not_modified(headers, found):
            await send({"type": "http.response.start", "status": 304,
                        "headers": [h for h in response_headers if h[0] != b"Content-Type"]})
            await send({"type": "http.response.body", "body": b""})
            return
        start, end, status = 0, found.size, 200
        ranges = headers.get(b"range")
        if ranges is not None and if_range_matches(headers, found):
            span = parse_range(ranges, found.size)
            if span == "unsatisfiable":
                await respond(send, 416, b"Range Not Satisfiable\n", [
                    (b"Content-Range", b"bytes */%d" % found.size),
                    (b"Accept-Ranges", b"bytes"),
                ])
                return
            if span is not None:
                start, end = span
                status = 206
                response_headers.append(
                    (b"Content-Range", b"bytes %d-%d/%d" % (start, end - 1, found.size))
                )
        response_headers.append((b"Content-Length", b"%d" % (end - start)))
        await send({"type": "http.response.start", "status": status,
                    "headers": response_headers})
        if method == "HEAD" or end == start:
            await send({"type": "http.response.body", "body": b""})
            return
        await send_file(loop, send, found.fd, start, end)


def open_regular(path: str) -> tuple[int, os.stat_result] | None:
    """``path`` opened for reading if it is a regular file.  Non-blocking, so that a FIFO
    put there does not hold the worker thread until a writer comes; the type is checked
    on the descriptor, so a file swapped after a check is not the one sent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError):
        return None
    try:
        info = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    return fd, info


async def send_file(loop: Any, send: Any, fd: int, start: int, end: int) -> None:
    """Send bytes [start, end) of the open file ``fd`` in chunks, each read in a worker
    thread; ``send`` waits while the client is not reading, so nothing piles up."""
    offset = start
    while offset < end:
        chunk = await loop.run_in_executor(None, os.pread, fd, min(CHUNK, end - offset), offset)
        if not chunk:  # the file shrank under us: end the response short
            raise OSError(f"a static file shrank while it was being sent ({end - offset} "
                          "bytes short): the response is cut")
        offset += len(chunk)
        await send({"type": "http.response.body", "body": chunk, "more_body": offset < end})


async def respond(send: Any, status: int, body: bytes, headers: list | None = None) -> None:
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"Content-Type", b"text/plain; charset=utf-8"),
                    (b"Content-Length", b"%d" % len(body)), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": body})


def request_headers(scope: dict) -> dict[bytes, bytes]:
    """The request headers this handler reads; a name sent on several lines is one
    comma-separated list (RFC 9110 5.3), which for a single-valued header makes it invalid."""
    wanted = (b"accept-encoding", b"if-match", b"if-unmodified-since", b"if-none-match",
              b"if-modified-since", b"range", b"if-range")
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in wanted:
            found[name] = found[name] + b", " + value if name in found else value
    return found


def accepted_encodings(header: bytes) -> dict[str, float]:
    """The codings of ``Accept-Encoding`` with their quality (``*`` included)."""
    weights: dict[str, float] = {}
    for item in header.decode("latin-1").split(","):
        coding, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
                if not 0.0 <= quality <= 1.0:  # NaN included
                    quality = 0.0
        coding = coding.strip().lower()
        if coding == "x-gzip":  # RFC 9110 12.5.3: the same as gzip
            coding = "gzip"
        if coding:
            weights[coding] = quality
    return weights


def choose_encoding(accepted: dict[str, float], available: list[str]) -> str | None:
    """The available coding the client ranks highest (None: the file as it is).  A coding
    not named takes ``*``'s quality; the file itself is acceptable unless ``identity`` or
    ``*`` rule it out, and ranks below any accepted coding unless ``identity`` is named.
    On a tie the smaller (earlier in ENCODINGS) is sent."""
    star = accepted.get("*")
    # the file itself, unless named, is the fallback: any coding the client accepts wins
    identity = accepted.get("identity", 0.0001 if star is None or star > 0 else 0.0)
    best, best_quality = None, identity
    for coding in available:  # smallest first: a later one must rank strictly higher
        quality = accepted.get(coding, star or 0.0)
        if quality > 0 and (quality > best_quality or quality == best_quality and best is None):
            best, best_quality = coding, quality
    return best


def content_type(name: str) -> bytes:
    _, extension = os.path.splitext(name)
    guessed = WEB_TYPES.get(extension.lower())
    if guessed is None:
        guessed, encoding = mimetypes.guess_type(name)
        if encoding is not None:  # a compressed file (.bz2, .xz, ...): not its content's type
            guessed = None
    guessed = guessed or "application/octet-stream"
    if guessed.startswith("text/") or guessed in CHARSET_TYPES:
        guessed += "; charset=utf-8"
    return guessed.encode("latin-1")


def _etags(header: bytes) -> list[bytes]:
    return [tag.strip().removeprefix(b"W/") for tag in header.split(b",")]


def http_date(value: bytes) -> float | None:
    """An HTTP-date as a timestamp; None for anything else, a date without its zone too
    (read as local time it would be off by the server's offset)."""
    try:
        when = parsedate_to_datetime(value.decode("latin-1"))
        if when.tzinfo is None:
            return None
        return when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def precondition_failed(headers: dict[bytes, bytes], found: Found) -> bool:
    """RFC 9110 13.2.2, steps 1 and 2: If-Match (strong comparison) decides when present,
    else If-Unmodified-Since."""
    if_match = headers.get(b"if-match")
    if if_match is not None:
        tags = [tag.strip() for tag in if_match.split(b",")]
        return not (b"*" in tags or found.etag in tags)
    since = headers.get(b"if-unmodified-since")
    when = None if since is None else http_date(since)
    return when is not None and int(found.mtime) > when


def not_modified(headers: dict[bytes, bytes], found: Found) -> bool:
    """RFC 9110 13.2.2, steps 3 and 4: If-None-Match decides when present, else
    If-Modified-Since."""
    if_none_match = headers.get(b"if-none-match")
    if if_none_match is not None:
        tags = _etags(if_none_match)
        return b"*" in tags or found.etag in tags
    since = headers.get(b"if-modified-since")
    when = None if since is None else http_date(since)
    return when is not None and int(found.mtime) <= when


def if_range_matches(headers: dict[bytes, bytes], found: Found) -> bool:
    """A Range applies unless If-Range names another version of the file."""
    if_range = headers.get(b"if-range")
    if if_range is None:
        return True
    if if_range.startswith((b'"', b"W/")):
        return if_range.strip() == found.etag
    return http_date(if_range) == int(found.mtime)


def _number(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 19 else HUGE


def parse_range(header: bytes, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """A single ``bytes=`` range as [start, end), "unsatisfiable", or None to ignore the
    header (another unit, several ranges, a malformed one, or an empty file, of which no
    part can be described: the whole file is sent)."""
    unit, _, spec = header.decode("latin-1").partition("=")
    if unit.strip().lower() != "bytes" or "," in spec or size == 0:
        return None
    match = RANGE_SPEC.fullmatch(spec)
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None
        suffix = _number(last)
        if suffix == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size
    start = _number(first)
    if last and _number(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    end = min(_number(last) + 1, size) if last else size
    return start, end
