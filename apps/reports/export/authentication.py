"""Who may read the export: an export client's key, or a signed-in user allowed to see every deal's reports
(the groups Head of sales and Sales ops, and superusers). Anything else is 401 or 403, never data."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.reports.export.keys import export_client_by_key
from apps.reports.models import ExportClient

REPORTS_PERMISSION = "reports.view_reports"


class ExportKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer ek_…``: ``request.auth`` becomes the ExportClient; there is no user."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[AnonymousUser, ExportClient] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, key = header.partition(" ")
        if scheme != self.keyword:
            return None
        client = export_client_by_key(key=key.strip())
        if client is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked export key.")
        return AnonymousUser(), client

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="export"'


class CanExport(permissions.BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        if isinstance(request.auth, ExportClient):
            return True
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(REPORTS_PERMISSION))


class ExportKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apps.reports.export.authentication.ExportKeyAuthentication"
    name = "ExportKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An export client's key, shown once when made (admin or reports_export_key).",
        }
