"""Settings of the ws-broadcast application (bench/broadcast.py): Channels and a channel layer,
nothing else.  The in-memory layer, or channels_redis on ``BENCH_REDIS_URL`` when it is set.

``django_daphne`` is not installed (see django_settings.py: every server runs the same
settings)."""

import os

SECRET_KEY = "benchmark-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
USE_TZ = True
LOGGING = {"version": 1, "disable_existing_loggers": False}
ASGI_APPLICATION = "bench.broadcast.application"

_REDIS = os.environ.get("BENCH_REDIS_URL")
if _REDIS:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                  "CONFIG": {"hosts": [_REDIS]}}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
