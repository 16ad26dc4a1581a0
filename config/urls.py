from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from apps.core.views import healthz
from apps.intake.views import api_docs
from apps.users.forms import PortalSetPasswordForm
from apps.users.views import LoginView, admin_login, home

urlpatterns = [
    path("", home, name="home"),
    path("healthz", healthz, name="healthz"),
    # Browsers ask every site for /favicon.ico; the pages also name it (UNFOLD["SITE_FAVICONS"]).
    path("favicon.ico", RedirectView.as_view(url=static("core/favicon.svg"), permanent=True)),
    # Before the admin's own: a manager sent to the admin's sign-in page goes to their deals instead.
    path("admin/login/", admin_login),
    path("admin/", admin.site.urls),
    path("kommo/", include("apps.kommo.urls")),
    path("webhooks/kommo/", include("apps.kommo.webhooks.urls")),
    path("api/v1/intake/", include("apps.intake.urls")),
    path("api/v1/export/", include("apps.reports.export.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", api_docs, name="api-docs"),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    # The one-time link of an invitation (apps/kommo/services/people.py): set a password, then sign in.
    path(
        "accounts/password/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(form_class=PortalSetPasswordForm),
        name="password_reset_confirm",
    ),
    path(
        "accounts/password/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("deals/", include("apps.stakeholders.urls")),
    path("reports/", include("apps.reports.urls")),
]
