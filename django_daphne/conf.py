"""settings.py to :class:`~django_daphne.config.Config`.

The ``DAPHNE`` dict holds the ``daphne`` command's long options in upper case
(``DAPHNE = {"PORT": 8001, "PROXY_HEADERS": True}``); ``ROOT_PATH`` defaults to
``FORCE_SCRIPT_NAME``; the application is ``ASGI_APPLICATION``.  One precedence rule
everywhere: command line, then ``DAPHNE``, then the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .config import Config, ConfigError

SETTING = "DAPHNE"


def _settings(settings: Any = None) -> Any:
    if settings is None:
        from django.conf import settings as django_settings

        return django_settings
    return settings


def daphne_settings(settings: Any = None) -> dict[str, Any]:
    """The ``DAPHNE`` dict, with ``ROOT_PATH`` filled in from ``FORCE_SCRIPT_NAME``."""
    settings = _settings(settings)
    raw = getattr(settings, SETTING, None)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{SETTING} must be a dict of options such as {{'PORT': 8001}}, "
            f"got {type(raw).__name__}"
        )
    values = dict(raw)
    script_name = getattr(settings, "FORCE_SCRIPT_NAME", None)
    if "ROOT_PATH" not in values and script_name:
        values["ROOT_PATH"] = script_name.rstrip("/")
    return values


def build_config(
    command_line: Mapping[str, Any] | None = None, settings: Any = None
) -> Config:
    """The effective Config: ``command_line`` (option names, None = not given) over
    ``DAPHNE`` over the defaults.  Raises ConfigError naming the setting or flag."""
    return Config.build(settings=daphne_settings(settings), command_line=command_line)


def import_path(dotted: str) -> str:
    """``ASGI_APPLICATION``'s ``package.module.attribute`` as ``package.module:attribute``
    (a value that already has a colon is kept)."""
    if ":" in dotted:
        return dotted
    module, _, attribute = dotted.rpartition(".")
    return f"{module}:{attribute}" if module else dotted


def application_path(settings: Any = None) -> str | None:
    """``ASGI_APPLICATION`` in ``module:attribute`` form, or None when it is not set."""
    value = getattr(_settings(settings), "ASGI_APPLICATION", None)
    if not value:
        return None
    if not isinstance(value, str):
        raise ConfigError(
            f"ASGI_APPLICATION must be a dotted path such as 'mysite.asgi.application', "
            f"got {value!r}"
        )
    return import_path(value)
