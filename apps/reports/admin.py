"""Admin of the reports: the stages' usual times (the stuck-deals report's per-stage defaults) and the
read-only coverage snapshots."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from unfold.admin import ModelAdmin

from apps.reports.models import CoverageSnapshot, StageNorm


@admin.register(StageNorm)
class StageNormAdmin(ModelAdmin):  # type: ignore[type-arg]
    list_display = ["status", "pipeline", "usual_days", "modified"]
    list_filter = ["status__pipeline"]
    list_select_related = ["status__pipeline"]
    search_fields = ["status__name", "status__pipeline__name"]
    autocomplete_fields = ["status"]
    ordering = ["status__pipeline__sort", "status__sort"]

    @admin.display(description="pipeline", ordering="status__pipeline__name")
    def pipeline(self, obj: StageNorm) -> str:
        return obj.status.pipeline.name


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
