"""settings.py to :class:`~django_daphne.server.config.Config`.

The ``DAPHNE`` dict holds the ``daphne`` command's long options in upper case
(``DAPHNE = {"PORT": 8001, "PROXY_HEADERS": True}``); ``ROOT_PATH`` defaults to
``FORCE_SCRIPT_NAME``, the WebSocket size limits to Daphne's
``DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE`` and ``DAPHNE_WEBSOCKET_MAX_FRAME_SIZE``; the
application is ``ASGI_APPLICATION``.  One precedence rule everywhere: command line, then
the environment (``DJANGO_DAPHNE_PORT=8001``: see :mod:`django_daphne.core.config`), then
``DAPHNE``, then the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .core.config import Config, ConfigError, EnvironmentConfigError
from .core.converters import as_bool
from .core.options import ENVIRONMENT, OPTIONS, Option

SETTING = "DAPHNE"

# Options that only make sense in a Django project: ``manage.py daphne`` has their flags and
# ``DAPHNE`` their keys; the framework-agnostic ``daphne`` command has neither.
DJANGO_OPTIONS: tuple[Option, ...] = (
    Option(
        "static", False, as_bool, "Serve STATIC_ROOT (the output of collectstatic) at "
        "STATIC_URL from the server itself, before Django is called: ETag/304, a year of "
        "caching for hashed names, precompressed .br/.gz siblings, Range requests.",
        flags=("--static",), action="store_true", group="django",
    ),
)
DJANGO_SETTING_NAMES = {option.setting: option for option in DJANGO_OPTIONS}


class DjangoConfig(Config):
    """The server's options, and the Django-only ones (``DJANGO_OPTIONS``), filled the same
    way from defaults, ``DAPHNE`` and ``manage.py daphne``'s flags."""

    options = (*OPTIONS, *DJANGO_OPTIONS)
    reader = "django-daphne"

    static: bool


# Settings Daphne's runserver reads, kept for projects that switch: the default of their
# ``DAPHNE`` key (which wins when both are set).
DAPHNE_COMPAT_SETTINGS = {
    "DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE": "WEBSOCKET_MAX_MESSAGE_SIZE",
    "DAPHNE_WEBSOCKET_MAX_FRAME_SIZE": "WEBSOCKET_MAX_FRAME_SIZE",
}


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
    for name, key in DAPHNE_COMPAT_SETTINGS.items():
        if key not in values and getattr(settings, name, None) is not None:
            values[key] = getattr(settings, name)
    return values


def setting_label(key: str, settings: Any = None) -> str:
    """How a ``daphne_settings()`` key is spelt in settings.py, for messages:
    ``DAPHNE['PORT']``, or ``DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE`` when the value came from
    Daphne's setting."""
    raw = getattr(_settings(settings), SETTING, None) or {}
    if isinstance(raw, Mapping) and key not in raw:
        for name, compat_key in DAPHNE_COMPAT_SETTINGS.items():
            if compat_key == key and getattr(_settings(settings), name, None) is not None:
                return name
    return f"{SETTING}[{key!r}]"


def build_config(
    command_line: Mapping[str, Any] | None = None, settings: Any = None,
    environ: Mapping[str, str] | None = None,
) -> DjangoConfig:
    """The effective DjangoConfig: ``command_line`` (option names, None = not given) over
    the ``DJANGO_DAPHNE_*`` variables of ``environ`` (None: the environment is not read,
    as in the live-server test case) over ``DAPHNE`` over the defaults.  Raises
    ConfigError naming the setting (as settings.py spells it), the variable
    (EnvironmentConfigError) or the flag."""
    values = daphne_settings(settings)
    for problem in DjangoConfig.setting_problems(values, settings_name=SETTING,
                                                 environ=environ):
        if problem.kind == "combination":
            break  # (build says it, naming where each value came from)
        error = EnvironmentConfigError if problem.source == ENVIRONMENT else ConfigError
        if problem.kind == "invalid" and problem.source != ENVIRONMENT:
            raise error(f"{setting_label(problem.key, settings)}: {problem.reason}")
        raise error(str(problem))
    return DjangoConfig.build(settings=values, command_line=command_line, environ=environ)


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
