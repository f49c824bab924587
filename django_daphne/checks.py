"""System checks for django-daphne: one id per problem.

They are registered with the ``daphne`` tag (``manage.py check --tag daphne`` runs only
ours), and with Django's ``staticfiles`` tag where they are about static files; those that
matter only for a production server are ``deploy=True`` (``manage.py check --deploy``).
Before it serves, ``manage.py daphne`` also runs :func:`serving_checks` on the
configuration it was actually given, its command line included; ``manage.py runserver``
(development) runs the registered ones.  The registered checks judge what settings.py and
the ``DJANGO_DAPHNE_*`` environment variables of the process that runs them give together
(the environment replacing settings' values and bindings, as when serving).

Every check is described in :data:`CHECKS`, which the documentation's reference is
written from (docs/reference/checks.rst); a test holds it to the ids used here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Info, Tags, Warning, register

from .conf import SETTING, DjangoConfig, application_path, daphne_settings, setting_label
from .core.config import ConfigError
from .core.options import ENVIRONMENT
from .server.endpoints import beyond_loopback, check_description
from .server.reactor import wants_uvloop

TAG = "daphne"
APP = "django_daphne"
STATICFILES = "django.contrib.staticfiles"
DAPHNE_APP = "daphne"  # Daphne's own Django app
IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"

# id: (when it runs, if not always; what it means), in reStructuredText for the reference
CHECKS: dict[str, tuple[str, str]] = {
    "django_daphne.E001": ("", "``django_daphne`` is listed after ``django.contrib.staticfiles``, "
                           "whose ``runserver`` would then win. List ``django_daphne`` first."),
    "django_daphne.E009": ("", "Another app listed before ``django_daphne`` has a ``runserver`` "
                           "of its own (Daphne's ``daphne``, ``whitenoise.runserver_nostatic``, "
                           "...), which would win; the app is named."),
    "django_daphne.W004": ("", "Daphne's own app, ``daphne``, is in ``INSTALLED_APPS`` too: it "
                           "is not needed (remove it). Both packages install a ``daphne`` "
                           "command; ``pip uninstall daphne`` deletes it whichever wrote it "
                           "last. ``django-daphne`` is the same command under a name of its "
                           "own and stays; ``pip install --force-reinstall --no-deps "
                           "django-daphne`` brings ``daphne`` back."),
    "django_daphne.W005": ("deploy", "``PROXY_HEADERS`` believed from every peer "
                           "(``FORWARDED_ALLOW_IPS`` contains ``*``) while a binding can be "
                           "reached from other machines (``0.0.0.0``, an address that is not "
                           "loopback, an endpoint without ``interface=``): any client there "
                           "sets its own address and scheme. List the proxies instead, or bind "
                           "to loopback or a UNIX socket."),
    "django_daphne.E002": ("", "``ASGI_APPLICATION`` cannot be imported (the module, the error, "
                           "its file and line are named), or is not a string."),
    "django_daphne.I001": ("", "(a note) ``ASGI_APPLICATION`` is not set: Django's own ASGI "
                           "handler is served."),
    "django_daphne.E003": ("", "``DAPHNE`` is not a dict."),
    "django_daphne.E004": ("", "An unknown ``DAPHNE`` key, with a \"did you mean\" suggestion."),
    "django_daphne.E005": ("", "A ``DAPHNE`` value of the wrong type or out of range, saying "
                           "what is valid."),
    "django_daphne.E006": ("", "Settings that contradict each other: a proxy header name "
                           "(``PROXY_HEADERS_HOST``, ``PROXY_HEADERS_PORT``, "
                           "``PROXY_HEADERS_PROTO``) without ``PROXY_HEADERS = True``; "
                           "``SSL_CERT_REQS`` without ``SSL_CA_CERTS``; ``SSL_ALPN`` offering "
                           "``h2`` alone with ``HTTP2`` off. Judged with the "
                           "``DJANGO_DAPHNE_*`` environment variables over ``DAPHNE``, as "
                           "the server reads them: the message names a variable that set a "
                           "value."),
    "django_daphne.E007": ("", "A binding that cannot work: an ``ssl:`` endpoint whose key or "
                           "certificate file does not exist, a UNIX socket whose directory "
                           "does not exist, an endpoint string that cannot be parsed."),
    "django_daphne.E008": ("", "Static files are to be served (``STATIC``, or ``--static``) "
                           "but ``STATIC_ROOT`` is not set."),
    "django_daphne.E010": ("", "``LOOP`` is ``\"uvloop\"`` and uvloop is not installed."),
    "django_daphne.E011": ("deploy, and ``manage.py daphne``", "More than one worker "
                           "(``WORKERS``, or ``--workers``) with Channels' in-memory channel "
                           "layer: each worker process has its own, so a group message reaches "
                           "only the clients of the worker that sent it. Use a layer every "
                           "process shares (``channels_redis``). ``runserver``, ``manage.py "
                           "test`` and the live-server test case run one process whatever "
                           "``WORKERS`` says, so one ``settings.py`` serves development and "
                           "production."),
    "django_daphne.E012": ("", "A ``DJANGO_DAPHNE_*`` environment variable that is not a "
                           "setting (a misspelt name would otherwise be ignored), with a "
                           "\"did you mean\" suggestion (see "
                           ":doc:`/howto/environment-and-limits`)."),
    "django_daphne.E013": ("", "A ``DJANGO_DAPHNE_*`` environment variable whose value is not "
                           "valid for its setting, saying what is valid."),
    "django_daphne.W002": ("deploy", "``DEBUG`` is off and nothing serves static files: "
                           "neither ``STATIC``, nor WhiteNoise's or ServeStatic's middleware, "
                           "nor a ``STATIC_URL`` on another host. Silence it where a proxy or "
                           "a CDN serves them."),
    "django_daphne.W003": ("deploy", "Static files are to be served but ``STATIC_ROOT`` does "
                           "not exist yet (run ``collectstatic``)."),
}


@register(TAG)
def check_app_order(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """django_daphne must come before staticfiles, or staticfiles' runserver wins."""
    positions = {name: i for i, name in enumerate(settings.INSTALLED_APPS)}
    ours = next((i for name, i in positions.items() if name.split(".apps.")[0] == APP), None)
    theirs = next(
        (i for name, i in positions.items() if name.split(".apps.")[0] == STATICFILES), None
    )
    if ours is not None and theirs is not None and ours > theirs:
        from django.core.management import get_commands

        winner = get_commands().get("runserver", "django.core")
        which = {STATICFILES: "staticfiles' WSGI server", DAPHNE_APP: "Daphne's",
                 "django.core": "Django's WSGI server"}.get(winner, f"{winner}'s")
        return [Error(
            f"{APP} is listed after {STATICFILES} in INSTALLED_APPS, so `manage.py runserver` "
            f"is {which}, not django-daphne's.",
            hint=f"Move '{APP}' before '{STATICFILES}' (first in INSTALLED_APPS is best: it "
            "installs the asyncio reactor before other apps can import Twisted).",
            id="django_daphne.E001",
        )]
    return []


@register(TAG)
def check_runserver_command(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``manage.py runserver`` must be ours: an app listed before django_daphne that has a
    runserver of its own (Daphne's ``daphne``, ``whitenoise.runserver_nostatic``, channels
    3, ...) takes it over, as staticfiles would (E001)."""
    from django.core.management import get_commands

    owner = get_commands().get("runserver")
    messages: list[CheckMessage] = []
    if owner not in (None, APP, STATICFILES, "django.core"):
        messages.append(Error(
            f"`manage.py runserver` is the command of {owner!r}, listed before {APP} in "
            "INSTALLED_APPS, so it does not serve with django-daphne.",
            hint=f"Move '{APP}' before '{owner}' (first in INSTALLED_APPS is best)"
            + (", or remove 'daphne': django_daphne replaces Daphne's app."
               if owner == DAPHNE_APP else "."),
            id="django_daphne.E009",
        ))
    if owner != DAPHNE_APP and apps.is_installed(DAPHNE_APP):
        messages.append(Warning(
            f"Daphne's own app {DAPHNE_APP!r} is in INSTALLED_APPS beside {APP}: it is not "
            "needed, and imports Daphne's server at every start.",
            hint=f"Remove '{DAPHNE_APP}' from INSTALLED_APPS. To uninstall Daphne too: both "
            "packages install a `daphne` command, and `pip uninstall daphne` deletes it "
            "whichever wrote it last; `django-daphne` (the same command) stays, and "
            "`pip install --force-reinstall --no-deps django-daphne` brings `daphne` back.",
            id="django_daphne.W004",
        ))
    return messages


@register(TAG)
def check_asgi_application(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """ASGI_APPLICATION must name an application that imports."""
    from .server.loading import AppImportError, import_application

    try:
        path = application_path()
    except ConfigError as exc:
        return [Error(str(exc), id="django_daphne.E002")]
    if path is None:
        return [Info(
            "ASGI_APPLICATION is not set: django-daphne serves Django's own ASGI handler "
            "(HTTP only, no Channels consumers).",
            hint="Set ASGI_APPLICATION = 'mysite.asgi.application' to serve your ASGI "
            "application (a Channels ProtocolTypeRouter, say).",
            id="django_daphne.I001",
        )]
    try:
        import_application(path)
    except AppImportError as exc:
        # under runserver, its autoreloader watches the file that failed: the fix restarts
        from .management.serving import watch_failed_import

        watch_failed_import(exc)
        return [Error(
            f"ASGI_APPLICATION {settings.ASGI_APPLICATION!r} cannot be loaded: {exc}",
            id="django_daphne.E002",
        )]
    return []


@register(TAG)
def check_daphne_setting(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every DAPHNE key is an option, every value valid, the values agree with each other,
    and every binding is usable."""
    try:
        values = daphne_settings()
    except ConfigError as exc:
        return [Error(str(exc), id="django_daphne.E003")]
    messages: list[CheckMessage] = []
    problems = DjangoConfig.setting_problems(values, settings_name=SETTING)
    if all(problem.kind == "combination" for problem in problems):
        # whether the values agree is judged with the environment's over them (unless a
        # variable is wrong: E012, E013), as the server would have them
        environ = _environ()
        if not DjangoConfig.environment_problems(environ):
            problems = DjangoConfig.setting_problems(values, settings_name=SETTING,
                                                     environ=environ)
    for problem in problems:
        if problem.kind == "unknown":
            messages.append(Error(
                str(problem), id="django_daphne.E004",
                hint="The keys are the daphne command's long options in upper case, e.g. "
                "PORT, BIND, PROXY_HEADERS, HTTP_TIMEOUT.",
            ))
        elif problem.kind == "invalid":
            label = setting_label(problem.key)
            messages.append(Error(f"{label}: {problem.reason}", id="django_daphne.E005"))
        elif problem.source == ENVIRONMENT:
            messages.append(Error(
                str(problem), id="django_daphne.E006",
                hint="Set DJANGO_DAPHNE_PROXY_HEADERS=1 (only behind a proxy that sets the "
                "header), or unset the variable.",
            ))
        else:
            messages.append(Error(
                str(problem), id="django_daphne.E006",
                hint="Set PROXY_HEADERS to True (only behind a proxy that sets the header), "
                "or remove the header name.",
            ))
    if messages:
        return messages
    config = _static_config()  # (with the environment's values: E012, E013 check those)
    if config is None:
        return []
    return [*_loop_problems(config), *_binding_problems(config)]


def _environ() -> Mapping[str, str]:
    """The environment the checks judge with settings.py: this process's."""
    return os.environ


@register(TAG)
def check_environment(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every ``DJANGO_DAPHNE_*`` variable names a setting and has a valid value (whether
    the values agree with the settings' is E006's, in check_daphne_setting)."""
    messages: list[CheckMessage] = []
    for problem in DjangoConfig.environment_problems(_environ()):
        if problem.kind == "unknown":
            messages.append(Error(
                str(problem), id="django_daphne.E012",
                hint="The variables are DJANGO_DAPHNE_ and a DAPHNE settings key, e.g. "
                "DJANGO_DAPHNE_PORT, DJANGO_DAPHNE_WORKERS, DJANGO_DAPHNE_PROXY_HEADERS.",
            ))
        else:
            messages.append(Error(str(problem), id="django_daphne.E013"))
    return messages


def _loop_problems(config: DjangoConfig) -> list[CheckMessage]:
    if config.loop == "uvloop" and not wants_uvloop("auto"):
        return [Error(
            f"{config.given_as('loop', SETTING)}: 'uvloop' needs the uvloop package, which "
            "is not installed (auto and asyncio work without it).",
            hint="pip install uvloop, or set LOOP to 'auto'.",
            id="django_daphne.E010",
        )]
    return []


def _binding_problems(config: DjangoConfig) -> list[CheckMessage]:
    return [Error(problem, id="django_daphne.E007")
            for description in config.endpoint_descriptions()
            for problem in check_description(description)]


def channel_layer_problems(config: DjangoConfig) -> list[CheckMessage]:
    """Several workers with the in-memory channel layer: a group message reaches only the
    clients of the worker that sent it (each process has a layer of its own)."""
    if config.workers <= 1:
        return []
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    backend = (layers.get("default") or {}).get("BACKEND") if isinstance(layers, dict) else None
    if backend != IN_MEMORY_LAYER:
        return []
    source = config.given_as("workers", SETTING)
    return [Error(
        f"{source} is {config.workers} with CHANNEL_LAYERS' in-memory layer: each worker "
        "process has its own, so a group message reaches only the clients of one worker.",
        hint="Use a channel layer every process shares, such as channels_redis "
        "(CHANNEL_LAYERS = {'default': {'BACKEND': "
        "'channels_redis.core.RedisChannelLayer', ...}}), or a single worker.",
        id="django_daphne.E011",
    )]


@register(TAG, deploy=True)
def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E011, where several processes would run: ``check --deploy`` and ``manage.py daphne``
    (which checks its flags too). runserver, ``manage.py test`` and the live-server test
    case run one process whatever WORKERS says, so they are not refused."""
    config = _static_config()
    return channel_layer_problems(config) if config is not None else []


@register(TAG, deploy=True)
def check_proxy_trust(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W005, from settings.py alone (``manage.py daphne`` checks its flags too)."""
    config = _static_config()
    return proxy_trust_problems(config) if config is not None else []


def _everyone(entries: list[str]) -> bool:
    """``*``, or a network that holds every address (0.0.0.0/0, ::/0)."""
    import ipaddress

    return any(entry == "*" or (entry != "unix" and
                                ipaddress.ip_network(entry, strict=False).prefixlen == 0)
               for entry in entries)


def proxy_trust_problems(config: DjangoConfig) -> list[CheckMessage]:
    """Proxy headers believed from every peer on a binding other machines reach: any client
    there chooses the address and scheme the application sees."""
    if not config.proxy_headers or not _everyone(config.forwarded_allow_ips):
        return []
    public = [d for d in config.endpoint_descriptions() if beyond_loopback(d)]
    if not public:
        return []
    return [Warning(
        f"Proxy headers are believed from every peer (FORWARDED_ALLOW_IPS contains '*' or a "
        f"network of every address), and "
        f"{', '.join(public)} can be reached from other machines: a client that connects "
        "directly sets its own address and scheme (request.is_secure()).",
        hint="List the proxies' addresses in FORWARDED_ALLOW_IPS (--forwarded-allow-ips), "
        "e.g. ['127.0.0.1', '10.0.0.0/8'], or bind to 127.0.0.1 or a UNIX socket behind the "
        "proxy.",
        id="django_daphne.W005",
    )]


# -- static files


def _static_source(config: DjangoConfig) -> str:
    """How the configuration came to serve static files, as the user spelt it."""
    return config.given_as("static", SETTING)


def _static_config() -> DjangoConfig | None:
    """The configuration settings.py and the environment give, or None when it is invalid
    (E003-E006, E012 and E013 say why)."""
    try:
        return DjangoConfig.build(settings=daphne_settings(), environ=_environ())
    except ConfigError:
        return None


@register(TAG, Tags.staticfiles)
def check_static_root(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """DAPHNE['STATIC'] needs a STATIC_ROOT."""
    config = _static_config()
    return static_root_problems(config, deploy=False) if config is not None else []


@register(TAG, Tags.staticfiles, deploy=True)
def check_static_in_production(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """In production, something must serve static files, from a STATIC_ROOT collected."""
    config = _static_config()
    if config is None:
        return []
    return [*static_root_problems(config, deploy=True), *static_served_problems(config)]


def static_root_problems(config: DjangoConfig, deploy: bool) -> list[CheckMessage]:
    """E008 (and, with ``deploy``, W003) for a configuration that serves static files."""
    if not config.static or not apps.is_installed(STATICFILES):
        return []
    source = _static_source(config)
    if not settings.STATIC_ROOT:
        return [Error(
            f"{source} is on but STATIC_ROOT is not set, so there is nothing to serve.",
            hint="Set STATIC_ROOT to the directory collectstatic fills.",
            id="django_daphne.E008",
        )] if not deploy else []
    if deploy and not os.path.isdir(settings.STATIC_ROOT):
        return [Warning(
            f"{source} is on but STATIC_ROOT ({settings.STATIC_ROOT}) does not exist: "
            "every static file will be a 404.",
            hint="Run `manage.py collectstatic`.",
            id="django_daphne.W003",
        )]
    return []


def static_served_problems(config: DjangoConfig) -> list[CheckMessage]:
    """W002: DEBUG is off and nothing serves static files."""
    if settings.DEBUG or not apps.is_installed(STATICFILES) or _static_server(config):
        return []
    return [Warning(
        "DEBUG is off and nothing serves static files: pages will load without their CSS "
        "and JavaScript.",
        hint=f"Set {SETTING}['STATIC'] = True (or run `manage.py daphne --static`) after "
        "`manage.py collectstatic`, or serve STATIC_ROOT from a proxy or CDN (then add "
        "'django_daphne.W002' to SILENCED_SYSTEM_CHECKS).",
        id="django_daphne.W002",
    )]


def _static_server(config: DjangoConfig) -> str | None:
    """What serves static files in production, or None when nothing seems to."""
    if config.static:
        return f"django-daphne ({_static_source(config)})"
    for middleware in settings.MIDDLEWARE:
        name = middleware.lower()
        if "whitenoise" in name:
            return "WhiteNoise"
        if "servestatic" in name:
            return "ServeStatic"
    url = settings.STATIC_URL or ""
    if "://" in url or url.startswith("//"):
        return "another host (STATIC_URL)"
    return None


def serving_checks(config: DjangoConfig) -> list[CheckMessage]:
    """What ``manage.py daphne`` checks in the configuration it serves, its command line
    included, beyond the registered checks (which know only settings.py): the production
    static files checks and the channel layer against --workers."""
    return [*static_root_problems(config, deploy=False),
            *static_root_problems(config, deploy=True),
            *static_served_problems(config), *channel_layer_problems(config),
            *proxy_trust_problems(config)]

