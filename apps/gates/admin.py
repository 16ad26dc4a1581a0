"""Admin of the gates: rules with their conditions and a dry run, the read-only decision log, and the
gate decisions of a deal as a section of the deal page (kommo's, which the stakeholders come before)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import ChoicesDropdownFilter, RangeDateFilter, RelatedDropdownFilter

from apps.gates.models import GateCondition, GateDecision, GateRule
from apps.gates.selectors import gate_rule_dry_run
from apps.kommo.admin.mirror import ReadOnlyAdmin, ReadOnlyInline, lead_admin_section_add

DRY_RUN_DEFAULT_DAYS = 30


def _pretty(value: Any) -> SafeString:
    """A stored JSON value, indented, its long lines wrapped so the page does not widen past the screen."""
    return format_html(
        '<pre class="break-words text-xs" style="white-space: pre-wrap">{}</pre>',
        json.dumps(value, indent=2, ensure_ascii=False),
    )


def _reasons(decision: GateDecision) -> SafeString:
    """The decision's reasons as the sentences they are, one a line (not a JSON list)."""
    reasons = [str(reason) for reason in (decision.reasons or [])]
    if not reasons:
        return format_html("{}", "—")
    return format_html_join(mark_safe("<br>"), "{}", ((reason,) for reason in reasons))


class GateConditionFormSet(BaseInlineFormSet):  # type: ignore[type-arg]
    """A rule without conditions would let every deal pass while looking like a gate: refused."""

    def clean(self) -> None:
        super().clean()
        kept = [
            form
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE") and form.cleaned_data.get("role")
        ]
        if not kept:
            raise ValidationError(
                "Add at least one condition: a rule without conditions lets every deal pass. "
                "To stop gating this stage, untick “is active” instead."
            )


class GateConditionInline(TabularInline):  # type: ignore[type-arg]
    model = GateCondition
    formset = GateConditionFormSet
    extra = 1
    hide_title = True  # the row says what the condition is; its str above it would say it again
    fields = ["role", "requirement", "n", "days", "min_weight"]


@admin.register(GateRule)
class GateRuleAdmin(ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "account", "pipeline", "gated_stage", "mode", "is_active", "version", "modified"]
    list_filter = ["account", "mode", "is_active", "pipeline"]
    list_select_related = ["account", "pipeline", "gated_stage", "gated_stage__pipeline"]
    search_fields = ["name", "gated_stage__name", "pipeline__name"]
    autocomplete_fields = ["exempt_users"]
    readonly_fields = ["version", "created", "modified"]
    inlines = [GateConditionInline]
    actions = ["dry_run"]
    # What the rule gates, then its other settings as tabs, so that its conditions (the inline below) are
    # on the first screen rather than past the task's text.
    fieldsets = [
        (None, {"fields": ["account", "name", "pipeline", "gated_stage", "mode", "is_active"]}),
        (
            "When it blocks",
            {"classes": ["tab"], "fields": ["move_back_stage", "task_template", "task_due_hours"]},
        ),
        ("Who passes anyway", {"classes": ["tab"], "fields": ["exempt_users", "override_tag"]}),
        ("History", {"classes": ["tab"], "fields": ["version", "created", "modified"]}),
    ]

    def save_model(self, request: HttpRequest, obj: GateRule, form: Any, change: bool) -> None:
        """Saving an unchanged rule would make a new version of nothing."""
        if not change or form.has_changed():
            super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """A change of the conditions alone is a new version of the rule too."""
        super().save_related(request, form, formsets, change)
        if change and not form.has_changed() and any(formset.has_changed() for formset in formsets):
            form.instance.save()

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:rule_id>/dry-run/",
                self.admin_site.admin_view(self.dry_run_view),
                name="gates_gaterule_dry_run",
            ),
            *super().get_urls(),
        ]

    @admin.action(description="Dry-run the selected rule over current deals and past moves")
    def dry_run(self, request: HttpRequest, queryset: QuerySet[GateRule]) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Select one rule to dry-run.", messages.WARNING)
            return None
        rule = queryset.get()
        return HttpResponseRedirect(reverse("admin:gates_gaterule_dry_run", args=[rule.pk]))

    def dry_run_view(self, request: HttpRequest, rule_id: int) -> HttpResponse:
        rule = get_object_or_404(
            GateRule.objects.select_related("account", "pipeline", "gated_stage__pipeline"), pk=rule_id
        )
        try:
            days = max(1, min(365, int(request.GET.get("days", DRY_RUN_DEFAULT_DAYS))))
        except ValueError:
            days = DRY_RUN_DEFAULT_DAYS
        until = timezone.now()
        result = gate_rule_dry_run(rule=rule, since=until - dt.timedelta(days=days), until=until)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Dry run: {rule}",
            "rule": rule,
            "result": result,
            "days": days,
        }
        return TemplateResponse(request, "admin/gates/gaterule/dry_run.html", context)


@admin.register(GateDecision)
class GateDecisionAdmin(ReadOnlyAdmin):
    list_display = ["decided_at", "rule", "rule_version", "outcome_badge", "lead", "transition", "latency_ms"]
    list_filter = [
        ("outcome", ChoicesDropdownFilter),
        ("rule", RelatedDropdownFilter),
        ("account", RelatedDropdownFilter),
        "mode",
        ("decided_at", RangeDateFilter),
    ]
    list_filter_submit = True
    list_select_related = ["rule", "lead"]
    search_fields = ["lead__name", "lead__kommo_id", "rule__name"]
    date_hierarchy = "decided_at"
    readonly_fields = [
        "outcome_badge",
        "reasons_text",
        "stakeholders_pretty",
        "fresh_state_pretty",
        "actions_pretty",
    ]
    # What was decided and why first, by name; what the rule read and did next; the stage ids folded.
    fieldsets = [
        (
            None,
            {
                "fields": [
                    ("outcome_badge", "decided_at"),
                    "lead",
                    "transition",
                    ("rule", "rule_version", "mode"),
                    "reasons_text",
                    ("received_at", "latency_ms"),
                    "account",
                ]
            },
        ),
        (
            "What the rule read and did",
            {"fields": ["stakeholders_pretty", "fresh_state_pretty", "actions_pretty"]},
        ),
        (
            "Kommo ids",
            {
                "classes": ["collapse"],
                "fields": ["stage_change", "from_status_kommo_id", "to_status_kommo_id"],
            },
        ),
    ]

    @admin.display(description="outcome", ordering="outcome")
    def outcome_badge(self, obj: GateDecision) -> SafeString:
        return outcome_label(obj)

    @admin.display(description="reasons")
    def reasons_text(self, obj: GateDecision) -> SafeString:
        return _reasons(obj)

    @admin.display(description="stakeholders")
    def stakeholders_pretty(self, obj: GateDecision) -> SafeString:
        return _pretty(obj.stakeholders)

    @admin.display(description="fresh state")
    def fresh_state_pretty(self, obj: GateDecision) -> SafeString:
        return _pretty(obj.fresh_state)

    @admin.display(description="actions")
    def actions_pretty(self, obj: GateDecision) -> SafeString:
        return _pretty(obj.actions)


class GateDecisionInline(ReadOnlyInline):
    model = GateDecision
    fk_name = "lead"
    verbose_name_plural = "gate decisions"
    fields = readonly_fields = (
        "decided_at",
        "rule",
        "rule_version",
        "outcome_badge",
        "transition",
        "reasons_text",
    )
    ordering = ["-decided_at"]
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[GateDecision]:
        return super().get_queryset(request).select_related("rule")

    @admin.display(description="outcome")
    def outcome_badge(self, decision: GateDecision) -> SafeString:
        return outcome_label(decision)

    @admin.display(description="reasons")
    def reasons_text(self, decision: GateDecision) -> SafeString:
        return _reasons(decision)


# Badge classes per outcome (only classes unfold's stylesheet contains, docs/ui.md).
OUTCOME_CLASSES: dict[str, str] = {
    GateDecision.Outcome.ALLOWED: "bg-green-100 text-green-700",
    GateDecision.Outcome.BLOCKED: "bg-red-100 text-red-700",
    GateDecision.Outcome.WOULD_BLOCK: "bg-orange-100 text-orange-700",
    GateDecision.Outcome.EXEMPT: "bg-blue-100 text-blue-700",
    GateDecision.Outcome.ERROR: "bg-red-100 text-red-700",
}


def outcome_label(decision: GateDecision) -> SafeString:
    """The decision's outcome as a coloured badge."""
    return format_html(
        '<span class="inline-block font-semibold leading-6 px-2 rounded-default text-[11px] uppercase '
        'whitespace-nowrap {}">{}</span>',
        OUTCOME_CLASSES.get(decision.outcome, "bg-base-100 text-base-700"),
        decision.get_outcome_display(),
    )


lead_admin_section_add(GateDecisionInline, position=20)
