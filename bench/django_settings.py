"""The example project's settings as a production deployment would run them, for the
django-json workload: DEBUG off (no query log, no debug pages), no request logging.

``django_daphne`` is left out of INSTALLED_APPS: listing it installs django-daphne's reactor
when Django sets up, which a server that runs its own loop (Daphne, Uvicorn, ...) must not
get.  No server needs it to serve the ASGI application, so every server runs the same
settings.
"""

from example_project.settings import *  # noqa: F403
from example_project.settings import INSTALLED_APPS

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "django_daphne"]
LOGGING = {"version": 1, "disable_existing_loggers": False}
