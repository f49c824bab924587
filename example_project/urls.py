from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", include("example_project.demo.urls")),
    path("chat/", include("example_project.chat.urls")),
    path("admin/", admin.site.urls),
    # pages without an icon link (the admin's) make browsers ask for /favicon.ico
    path("favicon.ico", RedirectView.as_view(url=static("demo/favicon.svg"), permanent=True)),
]
