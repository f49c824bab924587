from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/chat/<slug:room>/", consumers.ChatConsumer.as_asgi()),
]
