"""Intake API keys: ``Authorization: Bearer ik_<prefix>_<secret>``, one key per IntakeSource."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.intake.models import IntakeSource
from apps.intake.selectors import intake_source_by_key


class IntakeKeyAuthentication(authentication.BaseAuthentication):
    """``request.auth`` becomes the IntakeSource; there is no user."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[AnonymousUser, IntakeSource] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, key = header.partition(" ")
        if scheme != self.keyword or not key.strip():
            return None
        source = intake_source_by_key(key=key.strip())
        if source is None:
            raise exceptions.AuthenticationFailed("Unknown or inactive intake API key.")
        return AnonymousUser(), source

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="intake"'


class IsIntakeSource(permissions.BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.auth, IntakeSource)


class IntakeKeyScheme(OpenApiAuthenticationExtension):
    """Describes the key in the OpenAPI schema."""

    target_class = "apps.intake.authentication.IntakeKeyAuthentication"
    name = "IntakeApiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The intake source's API key, shown once when it is generated in the admin.",
        }
