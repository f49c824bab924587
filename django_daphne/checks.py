"""System checks for django-daphne (``manage.py check``; run before ``daphne`` and
``runserver`` serve).

Each problem that would stop the server, or quietly make it serve the wrong thing, is
reported here with an id, before a deployment finds it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register

from .conf import SETTING, application_path, daphne_settings
from .config import OPTIONS_BY_NAME, SETTING_NAMES, Config, ConfigError, suggest
from .endpoints import check_description

APP = "django_daphne"
STATICFILES = "django.contrib.staticfiles"


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
def check_asgi_application(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """ASGI_APPLICATION must name an application that imports."""
    from .loading import AppImportError, import_application

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
    for key, raw in values.items():
        option = SETTING_NAMES.get(key) if isinstance(key, str) else None
        if option is None:
            errors.append(Error(
                f"{SETTING}[{key!r}] is not a setting of django-daphne."
                + suggest(str(key), SETTING_NAMES),
                hint="The keys are the daphne command's long options in upper case, e.g. "
                "PORT, BIND, PROXY_HEADERS, HTTP_TIMEOUT.",
                id="django_daphne.E004",
            ))
            continue
        try:
            valid[key] = option.clean(raw)
        except ValueError as exc:
            errors.append(Error(f"{SETTING}[{key!r}]: {exc}", id="django_daphne.E005"))
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
    try:
        config = Config.build(settings=valid)
    except ConfigError as exc:  # a combination the loop above did not foresee
        return [*errors, Error(str(exc), id="django_daphne.E005")]
    for description in config.endpoint_descriptions():
        for problem in check_description(description):
            errors.append(Error(problem, id="django_daphne.E007"))
    return errors
