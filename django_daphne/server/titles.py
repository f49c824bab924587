"""Process titles, so that ``ps`` and ``top`` tell the supervisor from each worker (and a
worker's generation: which reload started it), as Gunicorn's do. They need the optional
``setproctitle`` package (``pip install django-daphne[setproctitle]``); without it the
titles stay the command line, and nothing else changes."""

from __future__ import annotations

import sys

TITLE_ENV = "DJANGO_DAPHNE_WORKER_TITLE"  # a worker's role, set by the supervisor


def set_title(role: str) -> bool:
    """``django-daphne: ROLE: ARGUMENTS``; whether it could be set."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return False
    arguments = " ".join(sys.argv[1:])
    setproctitle(f"django-daphne: {role}: {arguments}" if arguments else
                 f"django-daphne: {role}")
    return True
