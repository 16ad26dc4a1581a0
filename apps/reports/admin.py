"""Admin: export clients with their keys (shown once, revocable, last used time); the stages' usual times
(the stuck-deals report's per-stage defaults); the read-only coverage snapshots; the stages' forecast
categories and the read-only forecast snapshots (the expected close date field is a field mapping)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from unfold.admin import ModelAdmin, TabularInline

from apps.reports.export.keys import export_client_key_generate, export_client_revoke
from apps.reports.models import (
    CoverageSnapshot,
    ExportClient,
    ForecastCategory,
    ForecastSnapshot,
    ForecastSnapshotDeal,
    StageNorm,
)


def _show_key(request: HttpRequest, client: ExportClient, key: str) -> None:
    messages.warning(request, f"Export key of “{client}”: {key} — copy it now, it is not shown again.")


@admin.register(ExportClient)
class ExportClientAdmin(ModelAdmin):  # type: ignore[type-arg]
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


class PerStageAdmin(ModelAdmin):  # type: ignore[type-arg]
    """A setting kept per stage (one row per Status): listed and searched by stage and pipeline, in
    pipeline order. Subclasses add their own columns to ``list_display`` and ``list_filter``."""

    list_display: list[str] = ["status", "pipeline", "modified"]
    list_filter: list[str] = ["status__pipeline"]
    list_select_related = ["status__pipeline"]
    search_fields = ["status__name", "status__pipeline__name"]
    autocomplete_fields = ["status"]
    ordering = ["status__pipeline__sort", "status__sort"]

    @admin.display(description="pipeline", ordering="status__pipeline__name")
    def pipeline(self, obj: StageNorm | ForecastCategory) -> str:
        return obj.status.pipeline.name


@admin.register(StageNorm)
class StageNormAdmin(PerStageAdmin):
    list_display = ["status", "pipeline", "usual_days", "modified"]


@admin.register(CoverageSnapshot)
class CoverageSnapshotAdmin(ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "week",
        "account",
        "status",
        "responsible_user_kommo_id",
        "deals",
        "value",
        "without_dm",
        "dm_approved",
        "backfilled",
    ]
    list_filter = ["account", "backfilled", "week"]
    list_select_related = ["account", "status__pipeline"]
    date_hierarchy = "week"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ForecastCategory)
class ForecastCategoryAdmin(PerStageAdmin):
    list_display = ["status", "pipeline", "category", "modified"]
    list_filter = ["category", "status__pipeline"]


class ForecastSnapshotDealInline(TabularInline):  # type: ignore[type-arg]
    model = ForecastSnapshotDeal
    fields = [
        "lead_kommo_id",
        "stage",
        "value",
        "p",
        "p_committee",
        "dm_identified",
        "approvals_present",
        "expected_close",
        "period",
        "category",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ForecastSnapshot)
class ForecastSnapshotAdmin(ModelAdmin):  # type: ignore[type-arg]
    """Read-only: a snapshot is written once and never changed."""

    list_display = [
        "week",
        "account",
        "pipeline",
        "taken_at",
        "backtested",
        "current_weighted",
        "current_committee",
        "current_commit",
        "next_weighted",
    ]
    list_filter = ["account", "backtested", "week"]
    list_select_related = ["account", "pipeline"]
    date_hierarchy = "week"
    inlines = [ForecastSnapshotDealInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
