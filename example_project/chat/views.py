from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.text import slugify

from .models import Message


def index(request: HttpRequest) -> HttpResponse:
    room = slugify(request.GET.get("room", ""))
    if room:
        return redirect("chat-room", room=room)
    return render(request, "chat/index.html")


def room(request: HttpRequest, room: str) -> HttpResponse:
    history = list(Message.objects.filter(room=room).order_by("-created", "-id")[:50])
    history.reverse()
    return render(request, "chat/room.html", {"room": room, "history": history})
