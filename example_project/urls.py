from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("example_project.demo.urls")),
    path("chat/", include("example_project.chat.urls")),
    path("admin/", admin.site.urls),
]
