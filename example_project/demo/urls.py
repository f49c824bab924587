from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("async/", views.async_view, name="async"),
    path("sync/", views.sync_view, name="sync"),
    path("json/", views.json_view, name="json"),
    path("client/", views.client_view, name="client"),
    path("stream/", views.stream_view, name="stream"),
    path("upload/", views.upload_view, name="upload"),
]
