from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="chat-index"),
    path("<slug:room>/", views.room, name="chat-room"),
]
