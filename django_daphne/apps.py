"""The Django app.

Importing this module installs Twisted's asyncio reactor, as Daphne's app does: Django
imports app modules in ``INSTALLED_APPS`` order, so listing ``django_daphne`` first puts the
reactor in place before any other app can import Twisted's default one.
"""

from __future__ import annotations

from django.apps import AppConfig

from .server import reactor


def _loop_kind() -> str:
    """The ``DAPHNE["LOOP"]`` setting when it is valid; the system checks report it if not."""
    from django.conf import settings

    from .core.options import OPTIONS_BY_NAME

    try:
        value = dict(getattr(settings, "DAPHNE", None) or {}).get("LOOP", "auto")
        return OPTIONS_BY_NAME["loop"].clean(value)
    except (ValueError, TypeError):
        return "auto"


try:
    reactor.install(_loop_kind())
except RuntimeError:  # LOOP = "uvloop" without uvloop: check E005 says so, commands still run
    reactor.install("asyncio")


class DjangoDaphneConfig(AppConfig):
    name = "django_daphne"
    verbose_name = "django-daphne"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .daphne_compat import install

        install()  # channels.testing importable once Daphne is uninstalled
