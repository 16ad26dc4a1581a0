"""Admin: intake sources with their API keys (shown once), and submissions with retry."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from unfold.admin import ModelAdmin

from apps.intake import services
from apps.intake.models import IntakeSource, IntakeSubmission
from apps.intake.selectors import mirror_lead
from apps.kommo.models.mirror import Lead


def _show_key(request: HttpRequest, source: IntakeSource, key: str) -> None:
    messages.warning(request, f"API key of “{source}”: {key} — copy it now, it is not shown again.")


@admin.register(IntakeSource)
class IntakeSourceAdmin(ModelAdmin):
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
