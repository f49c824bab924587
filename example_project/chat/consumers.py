"""The chat room: every message a client sends is stored and broadcast to the room's group
through the channel layer (in memory, or Redis across server processes)."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .models import Message

MAX_TEXT = 2000


class ChatConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.group = f"chat_{self.room}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        text = str(content.get("text", "")).strip()[:MAX_TEXT]
        author = str(content.get("author", "")).strip()[:50] or "anonymous"
        if not text:
            await self.send_json({"error": "empty message"})
            return
        await self.save(author, text)
        await self.channel_layer.group_send(
            self.group, {"type": "chat.message", "author": author, "text": text}
        )

    async def chat_message(self, event):
        await self.send_json({"author": event["author"], "text": event["text"]})

    @database_sync_to_async
    def save(self, author, text):
        Message.objects.create(room=self.room, author=author, text=text)
