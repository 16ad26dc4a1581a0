"""``{% kommo_webhook_problems as problems %}``: failed and dead webhook events, for the admin index."""

from __future__ import annotations

from django import template
from django.db.models import Count, Q

from apps.kommo.models import WebhookEvent

register = template.Library()


@register.simple_tag
def kommo_webhook_problems() -> dict[str, int]:
    counts = WebhookEvent.objects.aggregate(
        failed=Count("id", filter=Q(status=WebhookEvent.Status.FAILED)),
        dead=Count("id", filter=Q(status=WebhookEvent.Status.DEAD)),
    )
    return {"failed": int(counts["failed"]), "dead": int(counts["dead"])}
