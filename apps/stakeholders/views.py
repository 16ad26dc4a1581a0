"""The managers' pages: their deals with a stakeholder summary, and one deal's stakeholders."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from apps.kommo.models.mirror import Lead
from apps.stakeholders.forms import StakeholderForm
from apps.stakeholders.models import Role, Stakeholder
from apps.stakeholders.panels import deal_panels_for
from apps.stakeholders.selectors import (
    deals_for_user,
    stage_history_for_lead,
    stakeholders_for_lead,
    stakeholders_for_leads,
    stakeholders_summary,
)
from apps.stakeholders.services import StakeholderChange, StakeholderWriteError, stakeholder_update_in_kommo

DEALS_PER_PAGE = 50


def _deal_for(request: HttpRequest, deal_id: int) -> Lead:
    """The deal, if this person may see it (stage, pipeline and responsible user loaded): 404 when it does
    not exist, 403 when it is someone else's."""
    deal = deals_for_user(user=request.user).filter(pk=deal_id).first()  # type: ignore[arg-type]
    if deal is not None:
        return deal
    if Lead.objects.filter(is_deleted=False, pk=deal_id).exists():
        raise PermissionDenied("This deal belongs to another manager.")
    raise Http404("No such deal.")


@login_required
@require_GET
def deal_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(deals_for_user(user=request.user), DEALS_PER_PAGE).get_page(request.GET.get("page"))  # type: ignore[arg-type]
    stakeholders = stakeholders_for_leads(lead_ids=[deal.pk for deal in page])
    rows = [(deal, stakeholders_summary(stakeholders[deal.pk])) for deal in page]
    return render(request, "stakeholders/deal_list.html", {"page": page, "rows": rows})


@login_required
@require_GET
def deal_detail(request: HttpRequest, deal_id: int) -> HttpResponse:
    deal = _deal_for(request, deal_id)
    stakeholders = stakeholders_for_lead(lead=deal)
    roles = list(Role.objects.all())
    forms = [StakeholderForm(stakeholder=row, roles=roles) for row in stakeholders]
    return render(
        request,
        "stakeholders/deal_detail.html",
        {
            "deal": deal,
            "forms": forms,
            "summary": stakeholders_summary(stakeholders),
            "history": stage_history_for_lead(lead=deal),
            "panels": deal_panels_for(deal=deal, stakeholders=stakeholders),
        },
    )


@login_required
@require_POST
def stakeholder_update(request: HttpRequest, deal_id: int, stakeholder_id: int) -> HttpResponse:
    deal = _deal_for(request, deal_id)
    stakeholder = get_object_or_404(
        Stakeholder.objects.select_related("account", "contact", "catalog_element", "role"),
        pk=stakeholder_id,
        lead=deal,
    )
    form = StakeholderForm(request.POST, stakeholder=stakeholder)
    if not form.is_valid():
        messages.error(request, f"{stakeholder.name}: {form.errors.as_text()}")
        return redirect("stakeholders:deal_detail", deal_id=deal.pk)
    change = StakeholderChange(
        role=form.cleaned_data["role"],
        approval_status=form.cleaned_data["approval_status"],
        last_touch=form.last_touch_moment(stakeholder.last_touch),
    )
    try:
        written = stakeholder_update_in_kommo(stakeholder=stakeholder, change=change)
    except StakeholderWriteError as error:
        messages.error(request, f"{stakeholder.name}: not saved. {error}")
    else:
        messages.success(
            request,
            f"{stakeholder.name}: saved in Kommo." if written else f"{stakeholder.name}: nothing changed.",
        )
    return redirect("stakeholders:deal_detail", deal_id=deal.pk)
