"""Admin: intake sources with their API keys (shown once), and submissions with retry."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from unfold.admin import ModelAdmin
from unfold.contrib.forms.widgets import ArrayWidget
from unfold.widgets import UnfoldAdminSelectWidget

from apps.intake import services
from apps.intake.models import IntakeSource, IntakeSubmission
from apps.intake.selectors import mirror_lead
from apps.kommo.models.mirror import KommoUser, Lead, Pipeline, Status


def _show_key(request: HttpRequest, source: IntakeSource, key: str) -> None:
    messages.warning(request, f"API key of “{source}”: {key} — copy it now, it is not shown again.")


class TagsField(forms.Field):
    """Tag names, one input each (unfold's array widget); stored as a JSON list of distinct names."""

    widget = ArrayWidget

    def to_python(self, value: Any) -> list[str]:
        names = value if isinstance(value, list) else ([] if value in (None, "") else [value])
        tags: list[str] = []
        for name in (str(item).strip() for item in names):
            if name and name not in tags:
                tags.append(name)
        return tags


def _choices(rows: list[tuple[int, str]], current: int | None, what: str) -> list[tuple[str, str]]:
    choices = [("", "---------")] + [(str(kommo_id), label) for kommo_id, label in rows]
    if current is not None and str(current) not in {value for value, _ in choices}:
        choices.append((str(current), f"{what} {current} (not in the mirror)"))
    return choices


class IntakeSourceForm(forms.ModelForm):  # type: ignore[type-arg]
    """Pipeline, stage and responsible user picked from the mirror by name; tags one per input."""

    pipeline_kommo_id = forms.TypedChoiceField(
        label="default pipeline", coerce=int, required=False, empty_value=None, widget=UnfoldAdminSelectWidget
    )
    status_kommo_id = forms.TypedChoiceField(
        label="default stage", coerce=int, required=False, empty_value=None, widget=UnfoldAdminSelectWidget
    )
    responsible_user_kommo_id = forms.TypedChoiceField(
        label="responsible user", coerce=int, required=False, empty_value=None, widget=UnfoldAdminSelectWidget
    )
    tags = TagsField(required=False, help_text="Added to every deal this source creates.")

    class Meta:
        model = IntakeSource
        fields = (
            "name",
            "account",
            "pipeline_kommo_id",
            "status_kommo_id",
            "responsible_user_kommo_id",
            "tags",
            "default_phone_region",
            "payload_window_hours",
            "is_active",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        source = self.instance
        pipelines = Pipeline.objects.filter(is_deleted=False).order_by("account", "sort")
        stages = (
            Status.objects.filter(is_deleted=False).select_related("pipeline").order_by("pipeline", "sort")
        )
        users = KommoUser.objects.filter(is_deleted=False).order_by("name")
        fields: dict[str, Any] = self.fields
        fields["pipeline_kommo_id"].choices = _choices(
            [(p.kommo_id, p.name) for p in pipelines], source.pipeline_kommo_id, "pipeline"
        )
        fields["status_kommo_id"].choices = _choices(
            [(s.kommo_id, f"{s.pipeline.name} / {s.name}") for s in stages], source.status_kommo_id, "stage"
        )
        fields["responsible_user_kommo_id"].choices = _choices(
            [(u.kommo_id, f"{u.name} <{u.email}>" if u.email else u.name) for u in users],
            source.responsible_user_kommo_id,
            "user",
        )


@admin.register(IntakeSource)
class IntakeSourceAdmin(ModelAdmin):
    form = IntakeSourceForm
    list_display = (
        "name",
        "account",
        "key_prefix",
        "default_phone_region",
        "payload_window_hours",
        "is_active",
    )
    list_filter = ("is_active", "account")
    search_fields = ("name", "key_prefix")
    list_select_related = ("account",)
    autocomplete_fields = ("account",)
    readonly_fields = ("key_prefix", "created", "modified")
    actions = ("generate_key",)

    def save_model(self, request: HttpRequest, obj: IntakeSource, form: object, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        _show_key(request, obj, services.intake_source_key_generate(source=obj))

    @admin.action(
        description="Generate a new API key (the current one stops working)", permissions=["change"]
    )
    def generate_key(self, request: HttpRequest, queryset: QuerySet[IntakeSource]) -> None:
        for source in queryset:
            _show_key(request, source, services.intake_source_key_generate(source=source))


@admin.register(IntakeSubmission)
class IntakeSubmissionAdmin(ModelAdmin):
    list_display = (
        "id",
        "source",
        "status",
        "deal_name",
        "kommo_lead_id",
        "lead_merged",
        "attempts",
        "created",
    )
    list_filter = ("status", "source", "lead_merged")
    search_fields = ("=id", "idempotency_key", "=kommo_lead_id")
    list_select_related = ("source",)
    date_hierarchy = "created"
    actions = ("retry",)
    fields = (
        "source",
        "status",
        "deal",
        "contacts",
        "error",
        "kommo_errors_display",
        "validation_errors_display",
        "idempotency_key",
        "key_from_header",
        "attempts",
        "created",
        "started_at",
        "finished_at",
        "normalized_display",
        "raw_body",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: IntakeSubmission | None = None) -> bool:
        return False

    @admin.display(description="deal name")
    def deal_name(self, submission: IntakeSubmission) -> str:
        return ((submission.normalized or {}).get("deal") or {}).get("name", "")

    @admin.display(description="deal")
    def deal(self, submission: IntakeSubmission) -> str:
        lead_id = submission.kommo_lead_id
        if lead_id is None:
            return "—"
        account = submission.source.account
        kommo = format_html('<a href="{}/leads/detail/{}">in Kommo</a>', account.api_root, lead_id)
        lead = mirror_lead(account=account, kommo_id=lead_id)
        if lead is None:
            return format_html("{} ({}; not mirrored yet)", lead_id, kommo)
        if not admin.site.is_registered(Lead):
            return format_html("{} ({})", lead, kommo)
        local = reverse("admin:kommo_lead_change", args=[lead.pk])
        return format_html('<a href="{}">{}</a> ({})', local, lead, kommo)

    @admin.display(description="contacts")
    def contacts(self, submission: IntakeSubmission) -> str:
        if not submission.contact_outcomes:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    outcome["name"] + (" (main)" if outcome["is_main"] else ""),
                    outcome["role"] or "—",
                    outcome["kommo_id"] or "—",
                    outcome["outcome"] + (f" via {outcome['found_by']}" if outcome["found_by"] else ""),
                    ", ".join(outcome["filled"]) or "—",
                    ", ".join(outcome["role_recorded"]) or "—",
                )
                for outcome in submission.contact_outcomes
            ),
        )
        return format_html(
            "<table><tr><th>name</th><th>role</th><th>Kommo id</th><th>outcome</th><th>filled</th>"
            "<th>role recorded in</th></tr>{}</table>",
            rows,
        )

    @admin.display(description="Kommo validation errors")
    def kommo_errors_display(self, submission: IntakeSubmission) -> str:
        return _pretty(submission.kommo_errors)

    @admin.display(description="validation errors")
    def validation_errors_display(self, submission: IntakeSubmission) -> str:
        return _pretty(submission.validation_errors)

    @admin.display(description="normalised payload")
    def normalized_display(self, submission: IntakeSubmission) -> str:
        return _pretty(submission.normalized)

    @admin.action(description="Retry the failed submissions", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[IntakeSubmission]) -> None:
        queued = sum(
            services.intake_submission_retry(submission_id=pk) for pk in queryset.values_list("pk", flat=True)
        )
        skipped = queryset.count() - queued
        self.message_user(
            request, f"{queued} queued again; {skipped} skipped (only failed ones are retried)."
        )


def _pretty(value: object) -> str:
    if not value:
        return "—"
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))
