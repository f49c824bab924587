from django.db import models


class Message(models.Model):
    """A chat message, kept so that a newcomer sees the room's recent history."""

    room = models.SlugField(max_length=50, db_index=True)
    author = models.CharField(max_length=50)
    text = models.TextField(max_length=2000)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created", "id"]

    def __str__(self) -> str:
        return f"{self.room}: {self.author}: {self.text[:40]}"
