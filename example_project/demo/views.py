"""One view per kind of response django-daphne serves."""

import asyncio
import hashlib
import threading

import django
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static

import django_daphne

from .forms import UploadForm


def home(request: HttpRequest) -> HttpResponse:
    """Static CSS and JS, and what the lifespan handler stored at startup."""
    state = getattr(request, "scope", {}).get("state", {})
    return render(request, "demo/home.html", {
        "started_at": state.get("started_at"),
        "daphne_version": django_daphne.__version__,
        "django_version": django.get_version(),
    })


async def async_view(request: HttpRequest) -> JsonResponse:
    """Runs on the server's event loop, no thread involved."""
    await asyncio.sleep(0)
    return JsonResponse({
        "view": "async",
        "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "thread": threading.current_thread().name,
    })


def sync_view(request: HttpRequest) -> JsonResponse:
    """Runs in a worker thread (ASGI_THREADS sets their number)."""
    return JsonResponse({"view": "sync", "thread": threading.current_thread().name})


async def json_view(request: HttpRequest) -> JsonResponse:
    """The benchmark's request: a small JSON document."""
    return JsonResponse({"message": "Hello, World!"})


async def client_view(request: HttpRequest) -> JsonResponse:
    """Who the application thinks the client is: behind a proxy, with ``--proxy-headers``,
    the address and scheme the proxy reports (see docs/deploying.rst)."""
    return JsonResponse({
        "client": request.META.get("REMOTE_ADDR", ""),
        "scheme": request.scheme,
        "host": request.get_host(),
        "server": getattr(request, "scope", {}).get("server"),
        "root_path": getattr(request, "scope", {}).get("root_path"),
        "http_version": getattr(request, "scope", {}).get("http_version"),
    })


async def stream_view(request: HttpRequest) -> StreamingHttpResponse:
    """A response sent in parts as they are produced (chunked transfer encoding)."""
    try:
        count = max(1, min(100, int(request.GET.get("count", 5))))
        delay = max(0.0, min(2.0, float(request.GET.get("delay", 0.2))))
    except ValueError:
        count, delay = 5, 0.2

    async def lines():
        for number in range(1, count + 1):
            yield f"line {number} of {count}\n"
            if number < count:
                await asyncio.sleep(delay)

    return StreamingHttpResponse(lines(), content_type="text/plain; charset=utf-8")


def upload_view(request: HttpRequest) -> HttpResponse:
    """A file upload: the request body arrives in parts and Django spools big files."""
    result = None
    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            digest = hashlib.sha256()
            for chunk in upload.chunks():
                digest.update(chunk)
            result = {"name": upload.name, "size": upload.size, "sha256": digest.hexdigest()}
            if request.headers.get("Accept") == "application/json":
                return JsonResponse(result)
    else:
        form = UploadForm()
    return render(request, "demo/upload.html", {"form": form, "result": result})


def favicon(request: HttpRequest) -> HttpResponse:
    """Pages without an icon link (the admin's) make browsers ask for /favicon.ico."""
    return redirect(static("demo/favicon.svg"))
