"""A bare Django project in one module, for tests that need Django's own ASGI handler: its
one view waits far longer than any test's shutdown timeout."""

import asyncio

import django
from django.conf import settings

settings.configure(DEBUG=False, ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"], SECRET_KEY="test")
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402


async def slow(request):
    print("view: waiting", flush=True)
    await asyncio.sleep(3600)
    return HttpResponse("never")


urlpatterns = [path("slow/", slow)]
application = get_asgi_application()
