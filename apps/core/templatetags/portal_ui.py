"""``{% admin_job_groups as groups %}``: the admin's sections by job, as the sidebar lists them, for the
admin's front page (``templates/admin/index.html``)."""

from __future__ import annotations

from typing import Any

from django import template

from apps.core.ui import admin_sidebar

register = template.Library()


@register.simple_tag(takes_context=True)
def admin_job_groups(context: template.Context) -> list[dict[str, Any]]:
    request = context.get("request")
    return admin_sidebar(request) if request is not None else []
