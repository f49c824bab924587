from django.contrib import admin
from django.urls import include, path

from example_project.demo.views import favicon

urlpatterns = [
    path("", include("example_project.demo.urls")),
    path("chat/", include("example_project.chat.urls")),
    path("admin/", admin.site.urls),
    path("favicon.ico", favicon),
]
