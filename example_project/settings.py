"""Settings of the example project.

Runs with nothing but SQLite and the in-memory channel layer; set ``REDIS_URL`` (for
example ``redis://127.0.0.1:6379/0``) to broadcast chat messages through Redis instead, so
that several server processes share the chat rooms.
"""

import os
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-project-not-secret-do-not-deploy")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")

INSTALLED_APPS = [
    "django_daphne",  # first: installs the asyncio reactor, and its runserver wins
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "example_project.demo",
    "example_project.chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# What django-daphne serves, and how: `manage.py daphne` and `manage.py runserver` read it.
ASGI_APPLICATION = "example_project.asgi.application"
WSGI_APPLICATION = "example_project.wsgi.application"

# The `daphne` command's long options in upper case; flags given on the command line win.
DAPHNE = {
    "BIND": "127.0.0.1",
    "PORT": 8000,
    "SHUTDOWN_TIMEOUT": 10,
    "APPLICATION_CLOSE_TIMEOUT": 10,
    # serve STATIC_ROOT (run `manage.py collectstatic` first) at STATIC_URL
    "STATIC": True,
}

if os.environ.get("REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # no read timeout: the layer waits for messages 5 s at a time, which redis-py
            # 8's default timeout (5 s) would cut short, closing idle consumers with 1011
            "CONFIG": {"hosts": [{"address": os.environ["REDIS_URL"], "socket_timeout": None}]},
        },
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB", BASE_DIR / "db.sqlite3"),
        # a file, not memory, so that a live server in another process sees the test data
        "TEST": {"NAME": os.environ.get("EXAMPLE_TEST_DB", BASE_DIR / "test-db.sqlite3")},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = os.environ.get("EXAMPLE_STATIC_ROOT", BASE_DIR / "staticfiles")
# content-hashed names (cached for a year by `manage.py daphne --static`) with .gz and .br
# siblings written by collectstatic.  `manage.py test` runs with DEBUG off (the live server
# too), where hashed names need collectstatic's manifest: the tests use the plain storage.
TESTING = sys.argv[1:2] == ["test"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": (
        "django.contrib.staticfiles.storage.StaticFilesStorage" if TESTING
        else "django_daphne.staticfiles.storage.CompressedManifestStaticFilesStorage"
    )},
}

# Django's default logging, plus the example's own lines (lifespan startup and shutdown).
# django-daphne's logger ("django_daphne") is left out, so `manage.py daphne` prints its
# lines at the level -v asks for; configure it here to send them elsewhere.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # propagate off: under the daphne command the root logger also prints in its format
    "loggers": {"example_project": {"handlers": ["console"], "level": "INFO",
                                    "propagate": False}},
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Largest upload kept in memory; bigger files go to a temporary file while they arrive.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
