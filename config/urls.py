from django.contrib import admin
from django.urls import include, path

from apps.core.views import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("kommo/", include("apps.kommo.urls")),
    path("webhooks/kommo/", include("apps.kommo.webhooks.urls")),
]
