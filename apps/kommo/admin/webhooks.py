"""Webhook events in the admin: read-only rows, filterable by status, kind and account, with the body shown
decoded and exactly as sent, and a "reprocess" action."""

from __future__ import annotations

from urllib.parse import unquote_plus

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from unfold.admin import ModelAdmin

from apps.kommo.admin.mirror import may_operate
from apps.kommo.models import WebhookEvent
from apps.kommo.webhooks.processing import webhook_events_reprocess


def _decoded_lines(body: bytes) -> str:
    """One ``key = value`` line per pair, URL-decoded, in the order sent (undecodable bytes shown escaped)."""
    text = body.decode("utf-8", errors="backslashreplace")
    lines = []
    for pair in text.split("&"):
        key, _, value = pair.partition("=")
        lines.append(f"{unquote_plus(key)} = {unquote_plus(value)}")
    return "\n".join(lines)


@admin.register(WebhookEvent)
class WebhookEventAdmin(ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "received_at", "account", "kind", "events", "status", "attempts", "short_error")
    list_filter = ("status", "kind", "account")
    list_select_related = ("account",)
    search_fields = ("events", "request_id", "error")
    date_hierarchy = "received_at"
    actions = ("reprocess",)
    fields = (
        "account",
        "status",
        "kind",
        "events",
        "attempts",
        "received_at",
        "claimed_at",
        "retry_at",
        "processed_at",
        "request_id",
        "remote_addr",
        "content_type",
        "headers",
        "decoded_body",
        "raw_body",
        "error",
        "traceback",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WebhookEvent | None = None) -> bool:
        return False

    @admin.display(description="error")
    def short_error(self, obj: WebhookEvent) -> str:
        return obj.error[:80]

    @admin.display(description="body, decoded")
    def decoded_body(self, obj: WebhookEvent) -> SafeString:
        return format_html("<pre style='white-space: pre-wrap'>{}</pre>", _decoded_lines(bytes(obj.body)))

    @admin.display(description="body, as sent")
    def raw_body(self, obj: WebhookEvent) -> SafeString:
        body = bytes(obj.body)
        text = body.decode("utf-8", errors="backslashreplace")
        return format_html(
            "<pre style='white-space: pre-wrap; word-break: break-all'>{}</pre><p>{} bytes</p>",
            text,
            len(body),
        )

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return may_operate(request, self.opts)

    @admin.action(description="Reprocess the selected events", permissions=["operate"])
    def reprocess(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        count = webhook_events_reprocess(event_ids=queryset.values_list("pk", flat=True))
        skipped = queryset.count() - count
        self.message_user(request, f"{count} events queued for processing.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"{skipped} rejected or in-progress events were left alone.", messages.WARNING
            )
