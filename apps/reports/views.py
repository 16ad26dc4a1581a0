"""Report pages: the overview and one view for every registered report (HTML, or its table as CSV)."""

from __future__ import annotations

import csv
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.reports.framework import (
    REPORTS,
    reports_listed,
    scope_for,
    user_may_see_reports,
    user_sees_every_deal_in_reports,
)
from apps.reports.sql import report_queries
from apps.users.models import User


def _user(request: HttpRequest) -> User:
    user: User = request.user  # type: ignore[assignment]
    if not user_may_see_reports(user):
        raise PermissionDenied("The reports are for the head of sales, sales ops and managers.")
    return user


@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    return render(
        request,
        "reports/index.html",
        {"reports": reports_listed(), "own_deals_only": not user_sees_every_deal_in_reports(user)},
    )


@login_required
@require_GET
def report(request: HttpRequest, slug: str) -> HttpResponse:
    user = _user(request)
    page = REPORTS.get(slug)
    if page is None:
        raise Http404("No such report.")
    params = request.GET.copy()
    wanted = params.pop("format", ["html"])[-1]
    table_key = params.pop("table", [""])[-1]
    scope, form = scope_for(user, params)
    with report_queries():
        tables = page.build(scope)
    if wanted == "csv":
        table = next((t for t in tables if t.key == table_key), tables[0] if tables else None)
        if table is None:
            raise Http404("No such table.")
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{page.slug}-{table.key}.csv"'
        writer = csv.writer(response)
        writer.writerow([column.label for column in table.columns])
        writer.writerows(table.text_rows())
        return response
    query = params.urlencode()
    context: dict[str, Any] = {
        "page": page,
        "reports": reports_listed(),
        "form": form,
        "scope": scope,
        "tables": tables,
        "query": query,
        "own_deals_only": scope.restricted,
    }
    return render(request, "reports/report.html", context)
