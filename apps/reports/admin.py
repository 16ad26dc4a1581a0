"""Admin: export clients with their keys (shown once, revocable, last used time)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.reports.export.keys import export_client_key_generate, export_client_revoke
from apps.reports.models import ExportClient


def _show_key(request: HttpRequest, client: ExportClient, key: str) -> None:
    messages.warning(request, f"Export key of “{client}”: {key} — copy it now, it is not shown again.")


@admin.register(ExportClient)
class ExportClientAdmin(admin.ModelAdmin):
    list_display = ("name", "key_prefix", "is_active", "last_used_at", "revoked_at", "created")
    list_filter = ("is_active",)
    search_fields = ("name", "key_prefix")
    readonly_fields = ("key_prefix", "last_used_at", "revoked_at", "created", "modified")
    actions = ("generate_key", "revoke")

    def save_model(self, request: HttpRequest, obj: ExportClient, form: object, change: bool) -> None:
        if change:
            if not obj.is_active and obj.revoked_at is None:
                export_client_revoke(client=obj)
                return
            super().save_model(request, obj, form, change)
            return
        _show_key(request, obj, export_client_key_generate(client=obj))

    @admin.action(description="Generate a new key (the current one stops working)")
    def generate_key(self, request: HttpRequest, queryset: QuerySet[ExportClient]) -> None:
        for client in queryset:
            _show_key(request, client, export_client_key_generate(client=client))

    @admin.action(description="Revoke the key")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ExportClient]) -> None:
        for client in queryset.filter(is_active=True):
            export_client_revoke(client=client)
        self.message_user(request, "Revoked.")
