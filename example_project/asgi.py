"""The ASGI application: Django for HTTP, Channels' consumers for WebSocket, and a lifespan
handler that shows the server's startup and shutdown events."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
# Set Django up before importing code that uses models (the chat consumers).
django_application = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from example_project.chat.routing import websocket_urlpatterns  # noqa: E402
from example_project.lifespan import lifespan  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_application,
    "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    "lifespan": lifespan,
})
