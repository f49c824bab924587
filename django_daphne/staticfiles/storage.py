"""A static files storage that writes the precompressed siblings ``manage.py daphne
--static`` serves: ``STORAGES["staticfiles"]["BACKEND"] =
"django_daphne.staticfiles.storage.CompressedManifestStaticFilesStorage"``.

It is Django's ``ManifestStaticFilesStorage`` (content-hashed names, which the server
caches for a year), plus, after ``collectstatic``, ``name.gz`` and (with the ``brotli``
package installed) ``name.br`` next to every text file that compression makes smaller.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from typing import Any

from django.contrib.staticfiles.storage import ManifestStaticFilesStorage

COMPRESSIBLE = {
    ".css", ".js", ".mjs", ".map", ".json", ".svg", ".txt", ".html", ".xml", ".ico",
    ".ttf", ".otf", ".eot", ".wasm",
}
MIN_SIZE = 256


def _brotli() -> Any:
    try:
        import brotli
    except ImportError:
        return None
    return brotli


def compress_file(path: str) -> list[str]:
    """Write ``path.gz`` (and ``path.br``) when smaller than ``path``; return what was
    written.  Stale siblings of a file that no longer compresses are removed."""
    with open(path, "rb") as f:
        data = f.read()
    written = []
    brotli = _brotli()
    candidates = [(".gz", lambda: gzip.compress(data, compresslevel=9, mtime=0))]
    if brotli is not None:
        candidates.append((".br", lambda: brotli.compress(data, quality=11)))
    for suffix, compress in candidates:
        target = path + suffix
        packed = compress()
        if len(packed) < len(data):
            with open(target, "wb") as f:
                f.write(packed)
            written.append(target)
        elif os.path.exists(target):
            os.remove(target)
    return written


class CompressedManifestStaticFilesStorage(ManifestStaticFilesStorage):
    """ManifestStaticFilesStorage that also writes ``.gz`` and ``.br`` siblings."""

    def post_process(self, paths: Any, dry_run: bool = False, **options: Any) -> Iterator[Any]:
        yield from super().post_process(paths, dry_run=dry_run, **options)
        if dry_run:
            return
        for directory, _, files in os.walk(self.location):
            for name in files:
                if os.path.splitext(name)[1].lower() not in COMPRESSIBLE:
                    continue
                path = os.path.join(directory, name)
                if os.path.getsize(path) >= MIN_SIZE:
                    compress_file(path)
