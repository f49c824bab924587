"""Serving ``STATIC_ROOT`` at ``STATIC_URL`` from the server itself, in production.

Daphne serves no static files, so every Channels deployment needs WhiteNoise or a proxy for
its CSS and JS.  :class:`StaticFiles` is an ASGI wrapper put in front of the application by
``manage.py daphne --static``: requests under ``STATIC_URL`` never reach Django.

What it does: ``ETag`` and ``Last-Modified`` with 304 answers; a year of ``immutable``
caching for files whose names carry a content hash (``ManifestStaticFilesStorage``);
precompressed ``.br``/``.gz`` siblings chosen by ``Accept-Encoding`` (with ``Vary``);
single ``Range`` requests (206/416); HEAD.  What it refuses (404): directories, ``..``,
encoded slashes and backslashes, NUL, and any path, symlinks included, that resolves
outside ``STATIC_ROOT``.  Files are opened and read in the thread pool, never on the event
loop, and sent in chunks so a large file never sits whole in memory.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
import re
import stat
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

CHUNK = 64 * 1024
IMMUTABLE = b"public, max-age=31536000, immutable"
REVALIDATE = b"no-cache"
# a 12-hex-digit hash before the extension, as ManifestStaticFilesStorage names files
HASHED_NAME = re.compile(r"\.[0-9a-f]{12}\.[^/.]+$")
ENCODINGS = (("br", ".br"), ("gzip", ".gz"))
FORBIDDEN_RAW = re.compile(rb"%(?:2f|5c|00)", re.IGNORECASE)


@dataclass(frozen=True)
class Found:
    """One file chosen to answer a request: where it is, what it is, how it is encoded."""

    path: str
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

    def find(self, name: str, accepted: list[str]) -> Found | None:
        """The file (or its best precompressed sibling) to send; runs in a worker thread."""
        path = self._inside_root(os.path.join(self.root, *name.split("/")))
        if path is None:
            return None
        try:
            info = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        chosen, vary = (path, info.st_size, None), False
        for encoding, suffix in ENCODINGS:
            sibling = self._inside_root(path + suffix)
            if sibling is None:
                continue
            try:
                sibling_info = os.stat(sibling)
            except OSError:
                continue
            # a sibling older than its file was compressed from an earlier version
            if not stat.S_ISREG(sibling_info.st_mode) or sibling_info.st_mtime < info.st_mtime:
                continue
            vary = True
            if encoding in accepted and chosen[2] is None:
                chosen = (sibling, sibling_info.st_size, encoding)
        found_path, size, encoding = chosen
        # one Last-Modified for every encoding of the file; an ETag for each
        etag = '"%x-%x%s"' % (info.st_mtime_ns, size, "-" + encoding if encoding else "")
        return Found(found_path, size, info.st_mtime, etag.encode("ascii"), encoding, vary)

    # -- answering

    async def serve(self, scope: dict, name: str, send: Any) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await respond(send, 405, b"Method Not Allowed\n", [(b"allow", b"GET, HEAD")])
            return
        relative = self.relative_name(scope, name)
        headers = request_headers(scope)
        loop = asyncio.get_running_loop()
        found = None
        if relative is not None:
            accepted = accepted_encodings(headers.get(b"accept-encoding", b""))
            found = await loop.run_in_executor(None, self.find, relative, accepted)
        if found is None:
            await respond(send, 404, b"Not Found\n")
            return
        response_headers = [
            (b"last-modified", formatdate(found.mtime, usegmt=True).encode("ascii")),
            (b"etag", found.etag),
            (b"cache-control", IMMUTABLE if self.is_hashed(relative) else REVALIDATE),
            (b"accept-ranges", b"bytes"),
            (b"content-type", content_type(relative)),
            (b"x-content-type-options", b"nosniff"),
        ]
        if found.vary:
            response_headers.append((b"vary", b"Accept-Encoding"))
        if found.encoding:
            response_headers.append((b"content-encoding", found.encoding.encode("ascii")))
        if not_modified(headers, found):
            await send({"type": "http.response.start", "status": 304,
                        "headers": [h for h in response_headers if h[0] != b"content-type"]})
            await send({"type": "http.response.body", "body": b""})
            return
        start, end, status = 0, found.size, 200
        ranges = headers.get(b"range")
        if ranges is not None and if_range_matches(headers, found):
            span = parse_range(ranges, found.size)
            if span == "unsatisfiable":
                await respond(send, 416, b"Range Not Satisfiable\n", [
                    (b"content-range", b"bytes */%d" % found.size),
                    (b"accept-ranges", b"bytes"),
                ])
                return
            if span is not None:
                start, end = span
                status = 206
                response_headers.append(
                    (b"content-range", b"bytes %d-%d/%d" % (start, end - 1, found.size))
                )
        response_headers.append((b"content-length", b"%d" % (end - start)))
        await send({"type": "http.response.start", "status": status,
                    "headers": response_headers})
        if method == "HEAD" or end == start:
            await send({"type": "http.response.body", "body": b""})
            return
        await send_file(loop, send, found.path, start, end)


async def send_file(loop: Any, send: Any, path: str, start: int, end: int) -> None:
    """Send bytes [start, end) of ``path`` in chunks, each read in a worker thread."""
    handle = await loop.run_in_executor(None, open, path, "rb")
    try:
        await loop.run_in_executor(None, handle.seek, start)
        remaining = end - start
        while remaining > 0:
            chunk = await loop.run_in_executor(None, handle.read, min(CHUNK, remaining))
            if not chunk:  # the file shrank under us: end the response short
                break
            remaining -= len(chunk)
            await send({"type": "http.response.body", "body": chunk,
                        "more_body": remaining > 0})
        if remaining > 0:
            raise OSError(f"{path} changed size while it was being sent")
    finally:
        await loop.run_in_executor(None, handle.close)


async def respond(send: Any, status: int, body: bytes, headers: list | None = None) -> None:
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", b"%d" % len(body)), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": body})


def request_headers(scope: dict) -> dict[bytes, bytes]:
    """The request headers this handler reads (the last one of each name wins)."""
    wanted = (b"accept-encoding", b"if-none-match", b"if-modified-since", b"range",
              b"if-range")
    return {name: value for name, value in scope["headers"] if name in wanted}


def accepted_encodings(header: bytes) -> list[str]:
    """The codings of ``Accept-Encoding`` with a non-zero quality, best first."""
    weighted = []
    for index, item in enumerate(header.decode("latin-1").split(",")):
        coding, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        coding = coding.strip().lower()
        if coding and quality > 0:
            weighted.append((-quality, index, coding))
    return [coding for _, _, coding in sorted(weighted)]


def content_type(name: str) -> bytes:
    guessed, _ = mimetypes.guess_type(name)
    guessed = guessed or "application/octet-stream"
    if guessed.startswith("text/") or guessed in ("application/javascript", "image/svg+xml"):
        guessed += "; charset=utf-8"
    return guessed.encode("latin-1")


def _etags(header: bytes) -> list[bytes]:
    return [tag.strip().removeprefix(b"W/") for tag in header.split(b",")]


def not_modified(headers: dict[bytes, bytes], found: Found) -> bool:
    """RFC 9110 13.2.2: If-None-Match decides when present, else If-Modified-Since."""
    if_none_match = headers.get(b"if-none-match")
    if if_none_match is not None:
        tags = _etags(if_none_match)
        return b"*" in tags or found.etag in tags
    since = headers.get(b"if-modified-since")
    if since is None:
        return False
    try:
        when = parsedate_to_datetime(since.decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError):
        return False
    return int(found.mtime) <= when


def if_range_matches(headers: dict[bytes, bytes], found: Found) -> bool:
    """A Range applies unless If-Range names another version of the file."""
    if_range = headers.get(b"if-range")
    if if_range is None:
        return True
    if if_range.startswith((b'"', b"W/")):
        return if_range.strip() == found.etag
    try:
        return parsedate_to_datetime(if_range.decode("latin-1")).timestamp() == int(found.mtime)
    except (TypeError, ValueError, IndexError):
        return False


def parse_range(header: bytes, size: int) -> tuple[int, int] | str | None:
    """A single ``bytes=`` range as [start, end), "unsatisfiable", or None to ignore the
    header (another unit, several ranges, or a malformed one: the whole file is sent)."""
    unit, _, spec = header.decode("latin-1").partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if last and int(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, end
