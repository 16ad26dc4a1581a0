from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from apps.core.views import healthz
from apps.intake.views import api_docs

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("kommo/", include("apps.kommo.urls")),
    path("webhooks/kommo/", include("apps.kommo.webhooks.urls")),
    path("api/v1/intake/", include("apps.intake.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", api_docs, name="api-docs"),
]
