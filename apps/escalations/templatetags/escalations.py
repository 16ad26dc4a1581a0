"""``days_text``: a number of days as a person says it ("3 days", "12 hours")."""

from __future__ import annotations

from decimal import Decimal

from django import template

from apps.escalations.services import days_text as _days_text

register = template.Library()


@register.filter
def days_text(value: float | Decimal | None) -> str:
    return "—" if value is None else _days_text(value)
