"""The ws-broadcast workload's application: Channels' own use case, the same code on every
server.

Listeners connect to ``/ws/broadcast/``: each joins one group and says ``joined``.  A
publisher connects to ``/ws/publish/``; each text message it sends goes to the group with
``group_send``, and every listener's consumer sends it on.  The channel layer is the
in-memory one, or channels_redis on the Redis at ``BENCH_REDIS_URL`` when that is set (see
broadcast_settings.py).  ``/`` answers plain HTTP, for the benchmark's readiness check.
"""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.broadcast_settings")
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

GROUP = "bench"


class Listener(AsyncWebsocketConsumer):
    """One member of the group: sends on every broadcast."""

    async def connect(self) -> None:
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()
        await self.send(text_data="joined")

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def broadcast(self, event: dict) -> None:
        await self.send(text_data=event["text"])


class Publisher(AsyncWebsocketConsumer):
    """What it is sent goes to the group."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None
                      ) -> None:
        await self.channel_layer.group_send(GROUP, {"type": "broadcast", "text": text_data})


async def ready(scope: dict, receive, send) -> None:
    """Plain HTTP: 200 "ready" (the benchmark polls it until the server is up)."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ready"})


application = ProtocolTypeRouter({
    "http": ready,
    "websocket": URLRouter([
        path("ws/broadcast/", Listener.as_asgi()),
        path("ws/publish/", Publisher.as_asgi()),
    ]),
})
