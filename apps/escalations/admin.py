"""Admin of the stage time limits: the limits per stage (sales ops edit them), the head of sales of each
account, the read-only escalation log, and the escalations on the deal page."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html
from django.utils.safestring import SafeString
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RangeDateFilter, RelatedDropdownFilter

from apps.escalations.models import Escalation, HeadOfSales, StageLimit
from apps.escalations.selectors import task_state
from apps.escalations.services import days_text
from apps.kommo.admin.mirror import ReadOnlyAdmin, ReadOnlyInline, lead_admin_section_add
from apps.reports.selectors.stuck import stage_usual_times


@admin.register(StageLimit)
class StageLimitAdmin(ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "status",
        "pipeline",
        "usual",
        "limit_days",
        "second_limit_days",
        "task_due_hours",
        "is_active",
        "modified",
    ]
    list_filter = ["is_active", ("status__pipeline", RelatedDropdownFilter)]
    list_select_related = ["status__pipeline", "status__account"]
    search_fields = ["status__name", "status__pipeline__name"]
    autocomplete_fields = ["status"]
    ordering = ["status__pipeline__sort", "status__sort"]
    readonly_fields = ["measured_usual", "created", "modified"]
    fieldsets = [
        (None, {"fields": ["status", "is_active"]}),
        ("Times", {"fields": ["usual_days", "measured_usual", "limit_days", "second_limit_days"]}),
        ("Tasks", {"fields": ["task_due_hours"]}),
        ("History", {"fields": ["created", "modified"]}),
    ]

    @admin.display(description="pipeline", ordering="status__pipeline__name")
    def pipeline(self, obj: StageLimit) -> str:
        return obj.status.pipeline.name

    @admin.display(description="usual time")
    def usual(self, obj: StageLimit) -> str:
        """The usual time entered here, else the stage's: the median of its stays, or its default."""
        if obj.usual_days is not None:
            return days_text(obj.usual_days)
        usual = stage_usual_times(account=obj.status.account).get(obj.status_id)
        if usual is None:
            return "—"
        return f"{days_text(usual.days)} ({'median' if usual.measured else 'default'})"

    @admin.display(description="the stage's own usual time")
    def measured_usual(self, obj: StageLimit) -> str:
        if obj.pk is None:
            return "Shown once the stage is saved."
        usual = stage_usual_times(account=obj.status.account).get(obj.status_id)
        if usual is None:
            return "—"
        if usual.measured:
            return f"{days_text(usual.days)}: the median of the {usual.stays} stays completed in 180 days"
        return f"{days_text(usual.days)}: the default (only {usual.stays} stays completed in 180 days)"


@admin.register(HeadOfSales)
class HeadOfSalesAdmin(ModelAdmin):  # type: ignore[type-arg]
    list_display = ["account", "kommo_user", "modified"]
    list_select_related = ["account", "kommo_user"]
    autocomplete_fields = ["kommo_user"]


def _level_badge(escalation: Escalation) -> SafeString:
    classes = "bg-orange-100 text-orange-700" if escalation.level == 1 else "bg-red-100 text-red-700"
    words = "manager" if escalation.level == 1 else "head of sales"
    return format_html(
        '<span class="inline-block font-semibold leading-6 px-2 rounded-default text-[11px] uppercase '
        'whitespace-nowrap {}">{}</span>',
        classes,
        words,
    )


@admin.register(Escalation)
class EscalationAdmin(ReadOnlyAdmin):
    list_display = [
        "escalated_at",
        "lead",
        "status",
        "level_badge",
        "days_in_stage",
        "limit_days",
        "recipient",
        "task",
    ]
    list_filter = [
        ("level", ChoicesDropdownFilter),
        ("status", RelatedDropdownFilter),
        ("account", RelatedDropdownFilter),
        ("escalated_at", RangeDateFilter),
    ]
    list_filter_submit = True
    list_select_related = ["lead", "status", "recipient", "outbound_change"]
    search_fields = ["lead__name", "lead__kommo_id", "status__name", "recipient__name"]
    date_hierarchy = "escalated_at"

    @admin.display(description="level", ordering="level")
    def level_badge(self, obj: Escalation) -> SafeString:
        return _level_badge(obj)

    @admin.display(description="task")
    def task(self, obj: Escalation) -> str:
        return task_state(obj.outbound_change)


class EscalationInline(ReadOnlyInline):
    model = Escalation
    fk_name = "lead"
    verbose_name_plural = "escalations (stage time limits)"
    fields = readonly_fields = (
        "escalated_at",
        "status",
        "level_badge",
        "days_in_stage",
        "limit_days",
        "recipient",
        "missing_text",
        "task",
    )
    ordering = ["-escalated_at"]
    show_change_link = True
    related = ["status", "recipient", "outbound_change"]

    @admin.display(description="level")
    def level_badge(self, obj: Escalation) -> SafeString:
        return _level_badge(obj)

    @admin.display(description="what was missing")
    def missing_text(self, obj: Escalation) -> str:
        return "; ".join(obj.missing) or "—"

    @admin.display(description="task")
    def task(self, obj: Escalation) -> str:
        return task_state(obj.outbound_change)


lead_admin_section_add(EscalationInline, position=30)  # after the gate decisions
