"""System checks for django-daphne (``manage.py check``; run before ``daphne`` and
``runserver`` serve).

Each problem that would stop the server, or quietly make it serve the wrong thing, is
reported here with an id, before a deployment finds it.
"""

from __future__ import annotations

import os
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Warning, register

from .conf import (
    DJANGO_SETTING_NAMES,
    SETTING,
    application_path,
    build_config,
    daphne_settings,
    setting_label,
)
from .server.config import OPTIONS_BY_NAME, SETTING_NAMES, Config, ConfigError, suggest
from .server.endpoints import check_description

APP = "django_daphne"
# set by `manage.py daphne --static` before the checks run
static_on_command_line = False
# set by `manage.py runserver`, which serves static files its own way in development
development_server = False
STATICFILES = "django.contrib.staticfiles"
DAPHNE_APP = "daphne"  # Daphne's own Django app


@register()
def check_app_order(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """django_daphne must come before staticfiles, or staticfiles' runserver wins."""
    names = list(settings.INSTALLED_APPS)
    positions = {name: i for i, name in enumerate(names)}
    ours = next((i for name, i in positions.items() if name.split(".apps.")[0] == APP), None)
    theirs = next(
        (i for name, i in positions.items() if name.split(".apps.")[0] == STATICFILES), None
    )
    if ours is not None and theirs is not None and ours > theirs:
        return [Error(
            f"{APP} is listed after {STATICFILES} in INSTALLED_APPS, so `manage.py runserver` "
            "is staticfiles' WSGI server, not django-daphne's.",
            hint=f"Move '{APP}' before '{STATICFILES}' (first in INSTALLED_APPS is best: it "
            "installs the asyncio reactor before other apps can import Twisted).",
            id="django_daphne.E001",
        )]
    return []


@register()
def check_runserver_command(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``manage.py runserver`` must be ours: an app listed before django_daphne that has a
    runserver of its own (Daphne's ``daphne``, ``whitenoise.runserver_nostatic``, channels
    3, ...) takes it over, as staticfiles would (E001)."""
    from django.core.management import get_commands

    owner = get_commands().get("runserver")
    errors: list[Any] = []
    if owner not in (None, APP, STATICFILES, "django.core"):
        errors.append(Error(
            f"`manage.py runserver` is the command of {owner!r}, listed before {APP} in "
            "INSTALLED_APPS, so it does not serve with django-daphne.",
            hint=f"Move '{APP}' before '{owner}' (first in INSTALLED_APPS is best)"
            + (", or remove 'daphne': django_daphne replaces Daphne's app."
               if owner == DAPHNE_APP else "."),
            id="django_daphne.E009",
        ))
    if owner != DAPHNE_APP and apps.is_installed(DAPHNE_APP):
        errors.append(Warning(
            f"Daphne's own app {DAPHNE_APP!r} is in INSTALLED_APPS beside {APP}: it is not "
            "needed, and imports Daphne's server at every start.",
            hint=f"Remove '{DAPHNE_APP}' from INSTALLED_APPS (and uninstall Daphne: both "
            "packages install a `daphne` command, and the last one installed wins).",
            id="django_daphne.W004",
        ))
    return errors


@register()
def check_asgi_application(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """ASGI_APPLICATION must name an application that imports."""
    from .server.loading import AppImportError, import_application

    try:
        path = application_path()
    except ConfigError as exc:
        return [Error(str(exc), id="django_daphne.E002")]
    if path is None:
        return [Warning(
            "ASGI_APPLICATION is not set: django-daphne serves Django's own ASGI handler "
            "(HTTP only, no Channels consumers).",
            hint="Set ASGI_APPLICATION = 'mysite.asgi.application' to serve your ASGI "
            "application (for example a Channels ProtocolTypeRouter).",
            id="django_daphne.W001",
        )]
    try:
        import_application(path)
    except AppImportError as exc:
        return [Error(
            f"ASGI_APPLICATION {settings.ASGI_APPLICATION!r} cannot be loaded: {exc}",
            id="django_daphne.E002",
        )]
    return []


@register()
def check_daphne_setting(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Every DAPHNE key is an option, every value valid, and every binding usable."""
    try:
        values = daphne_settings()
    except ConfigError as exc:
        return [Error(str(exc), id="django_daphne.E003")]
    errors: list[Any] = []
    valid: dict[str, Any] = {}
    known = {**SETTING_NAMES, **DJANGO_SETTING_NAMES}
    for key, raw in values.items():
        option = known.get(key) if isinstance(key, str) else None
        if option is None:
            errors.append(Error(
                f"{SETTING}[{key!r}] is not a setting of django-daphne."
                + suggest(str(key), known),
                hint="The keys are the daphne command's long options in upper case, e.g. "
                "PORT, BIND, PROXY_HEADERS, HTTP_TIMEOUT.",
                id="django_daphne.E004",
            ))
            continue
        try:
            valid[key] = option.clean(raw)
        except ValueError as exc:
            errors.append(Error(f"{setting_label(key)}: {exc}", id="django_daphne.E005"))
    if not valid.get("PROXY_HEADERS"):
        for name in ("proxy_headers_host", "proxy_headers_port", "proxy_headers_proto"):
            option = OPTIONS_BY_NAME[name]
            if valid.get(option.setting) is not None:
                errors.append(Error(
                    f"{SETTING}[{option.setting!r}] has no effect without "
                    f"{SETTING}['PROXY_HEADERS'] = True, and the server refuses to start.",
                    hint="Set PROXY_HEADERS to True (only behind a proxy that sets the "
                    "header), or remove the header name.",
                    id="django_daphne.E006",
                ))
                valid.pop(option.setting)
    if valid.get("LOOP") == "uvloop" and not _uvloop_installed():
        errors.append(Error(
            f"{SETTING}['LOOP']: 'uvloop' needs the uvloop package, which is not installed "
            "(auto and asyncio work without it).",
            hint="pip install uvloop, or set LOOP to 'auto'.",
            id="django_daphne.E005",
        ))
    valid = {key: value for key, value in valid.items() if key in SETTING_NAMES}
    try:
        config = Config.build(settings=valid)
    except ConfigError as exc:  # a combination the loop above did not foresee
        return [*errors, Error(str(exc), id="django_daphne.E005")]
    for description in config.endpoint_descriptions():
        for problem in check_description(description):
            errors.append(Error(problem, id="django_daphne.E007"))
    return errors


def _uvloop_installed() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _static_serving() -> str | None:
    """What serves static files in production, or None when nothing seems to."""
    if static_on_command_line:
        return "django-daphne (--static)"
    try:
        if build_config().static:
            return "django-daphne (DAPHNE['STATIC'])"
    except ConfigError:
        pass
    if any("whitenoise" in middleware.lower() for middleware in settings.MIDDLEWARE):
        return "WhiteNoise"
    url = settings.STATIC_URL or ""
    if "://" in url or url.startswith("//"):
        return "another host (STATIC_URL)"
    return None


@register()
def check_static_files(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Static files in production: something must serve them, and --static needs
    collectstatic's output."""
    if not apps.is_installed(STATICFILES):
        return []
    errors: list[Any] = []
    try:
        static = static_on_command_line or build_config().static
    except ConfigError:
        static = False  # check_daphne_setting reports it
    if static and not settings.STATIC_ROOT:
        errors.append(Error(
            f"{SETTING}['STATIC'] is on but STATIC_ROOT is not set, so there is nothing "
            "to serve.",
            hint="Set STATIC_ROOT to the directory collectstatic fills.",
            id="django_daphne.E008",
        ))
    elif static and not development_server and not os.path.isdir(settings.STATIC_ROOT):
        errors.append(Warning(
            f"{SETTING}['STATIC'] is on but STATIC_ROOT ({settings.STATIC_ROOT}) does not "
            "exist: every static file will be a 404.",
            hint="Run `manage.py collectstatic`.",
            id="django_daphne.W003",
        ))
    if not settings.DEBUG and _static_serving() is None:
        errors.append(Warning(
            "DEBUG is off and nothing serves static files: pages will load without their "
            "CSS and JavaScript.",
            hint=f"Set {SETTING}['STATIC'] = True (or run `manage.py daphne --static`) "
            "after `manage.py collectstatic`, or serve STATIC_ROOT from a proxy or CDN.",
            id="django_daphne.W002",
        ))
    return errors
