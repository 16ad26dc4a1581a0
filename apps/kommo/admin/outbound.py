"""The outbound change queue in the admin: read-only rows (what the portal asked Kommo to do, and how it
went), with a retry for failed changes."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from apps.kommo.admin.mirror import ReadOnlyAdmin
from apps.kommo.models import OutboundChange
from apps.kommo.services.outbound import outbound_change_retry
from apps.kommo.tasks import outbound_drain


@admin.register(OutboundChange)
class OutboundChangeAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "kind",
        "entity_kommo_id",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "account",
        "created",
    ]
    list_filter = ["status", "kind", "account"]
    list_select_related = ["account"]
    search_fields = ["idempotency_key", "entity_kommo_id", "kommo_request_id"]
    date_hierarchy = "created"
    actions = ["retry"]
    exclude = ["payload"]
    readonly_fields = ["payload_pretty"]

    @admin.display(description="payload")
    def payload_pretty(self, obj: OutboundChange) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, ensure_ascii=False))

    @admin.action(description="Retry the selected failed changes", permissions=["operate"])
    def retry(self, request: HttpRequest, queryset: QuerySet[OutboundChange]) -> None:
        retried = [
            change
            for change in queryset.filter(status=OutboundChange.Status.FAILED)
            if outbound_change_retry(change=change)
        ]
        for account_id in {change.account_id for change in retried}:
            outbound_drain.delay(account_id)
        self.message_user(request, f"{len(retried)} failed change(s) queued again.", messages.SUCCESS)
