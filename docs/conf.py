"""Sphinx configuration of django-daphne's documentation.

Build it with ``python -m sphinx -W -b html docs docs/_build/html`` (the ``docs`` extra);
the test suite builds it the same way, warnings as errors.  The reference pages are
generated from the code by ``_ext/daphne_reference.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))

from django_daphne import __version__  # noqa: E402

project = "django-daphne"
author = "the django-daphne developers"
copyright = "2026, the django-daphne developers"
release = version = __version__

extensions = ["daphne_reference"]
exclude_patterns = ["_build"]
root_doc = "index"
html_theme = "alabaster"
html_theme_options = {"description": "The ASGI server for Django and Channels"}
pygments_style = "sphinx"
# flags such as --workers must read as typed, not as en dashes
smartquotes = False
