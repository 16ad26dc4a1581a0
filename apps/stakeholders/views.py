"""The managers' pages: their deals with a stakeholder summary, and one deal's stakeholders."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from apps.kommo.models.mirror import Lead
from apps.kommo.provenance import MirrorSource, Provenance
from apps.stakeholders.filters import DealFilterSet
from apps.stakeholders.forms import AddStakeholderForm, ObjectionForm, StakeholderForm
from apps.stakeholders.models import Approval, Role, Stakeholder
from apps.stakeholders.panels import deal_list_filter_notes, deal_list_flags_for, deal_panels_for
from apps.stakeholders.selectors import (
    StakeholderSummary,
    TimelineEntry,
    contacts_without_stakeholder,
    deals_for_user,
    deals_with_stage_entry,
    kommo_deal_url,
    stage_history_for_lead,
    stakeholder_timelines,
    stakeholders_for_lead,
    stakeholders_for_leads,
    stakeholders_summary,
    timeline_entry,
)
from apps.stakeholders.services import (
    NewStakeholder,
    StakeholderChange,
    StakeholderNeedsElement,
    StakeholderWriteError,
    stakeholder_add_in_kommo,
    stakeholder_update_in_kommo,
)
from apps.stakeholders.wording import role_in_sentence

DEALS_PER_PAGE = 50


@dataclass(frozen=True)
class DealPerson:
    """One stakeholder on a deal's page: the forms, the approval as it stands today, the timeline."""

    form: StakeholderForm
    objection_form: ObjectionForm
    approval: str
    expires_at: dt.datetime | None
    timeline: list[TimelineEntry]

    @property
    def stakeholder(self) -> Stakeholder:
        return self.form.stakeholder


def _deal_for(request: HttpRequest, deal_id: int) -> Lead:
    """The deal, if this person may see it (stage, pipeline and responsible user loaded): 404 when it does
    not exist, 403 when it is someone else's."""
    deal = deals_for_user(user=request.user).filter(pk=deal_id).first()  # type: ignore[arg-type]
    if deal is not None:
        return deal
    if Lead.objects.filter(is_deleted=False, pk=deal_id).exists():
        raise PermissionDenied("This deal belongs to another manager.")
    raise Http404("No such deal.")


def _by_manager(request: HttpRequest) -> Provenance:
    """Who the history records for a change made on these pages: the signed-in manager."""
    return Provenance(MirrorSource.MANAGER, user_id=request.user.pk)


@dataclass(frozen=True)
class DealRow:
    deal: Lead
    summary: StakeholderSummary
    days_in_stage: int | None
    kommo_url: str
    flags: list[str]


@login_required
@require_GET
def deal_list(request: HttpRequest) -> HttpResponse:
    deals = deals_with_stage_entry(deals_for_user(user=request.user))  # type: ignore[arg-type]
    filterset = DealFilterSet(request.GET or None, queryset=deals)
    for name, note in deal_list_filter_notes(deals).items():  # e.g. how old the stuck states are
        filterset.form.fields[name].help_text = note
    page = Paginator(filterset.qs, DEALS_PER_PAGE).get_page(request.GET.get("page"))
    listed = list(page)
    stakeholders = stakeholders_for_leads(lead_ids=[deal.pk for deal in listed])
    flags = deal_list_flags_for(listed)
    today = timezone.now()
    rows = [
        DealRow(
            deal=deal,
            summary=stakeholders_summary(stakeholders[deal.pk]),
            days_in_stage=(today - deal.stage_entered_at).days if deal.stage_entered_at else None,
            kommo_url=kommo_deal_url(deal),
            flags=flags.get(deal.pk, []),
        )
        for deal in listed
    ]
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "stakeholders/deal_list.html",
        {
            "page": page,
            "rows": rows,
            "filter": filterset,
            "filtered": any(value for key, value in query.items() if key != "sort"),
            "query": query.urlencode(),
        },
    )


def _render_deal(
    request: HttpRequest,
    deal: Lead,
    *,
    bound: StakeholderForm | None = None,
    needs_element: int | None = None,
    add_form: AddStakeholderForm | None = None,
    objection_form: ObjectionForm | None = None,
    status: int = 200,
) -> HttpResponse:
    stakeholders = stakeholders_for_lead(lead=deal)
    roles = list(Role.objects.all())
    now = timezone.now()
    timelines = stakeholder_timelines(lead=deal)
    role_labels = {role.pk: role.label for role in roles}
    forms = [
        bound
        if bound is not None and bound.stakeholder.pk == row.pk
        else StakeholderForm(stakeholder=row, roles=roles)
        for row in stakeholders
    ]
    if add_form is None:
        add_form = AddStakeholderForm(contacts=contacts_without_stakeholder(lead=deal))
    people = [
        DealPerson(
            form=form,
            objection_form=objection_form
            if objection_form is not None and objection_form.stakeholder.pk == form.stakeholder.pk
            else ObjectionForm(stakeholder=form.stakeholder),
            approval=form.stakeholder.approval_state(now),
            expires_at=form.stakeholder.approval_expires_at(),
            timeline=[timeline_entry(event, role_labels) for event in timelines.get(form.stakeholder.pk, [])],
        )
        for form in forms
    ]
    return render(
        request,
        "stakeholders/deal_detail.html",
        {
            "deal": deal,
            "forms": forms,
            "people": people,
            "add_form": add_form,
            "needs_element": needs_element,
            "summary": stakeholders_summary(stakeholders),
            "history": stage_history_for_lead(lead=deal),
            "panels": deal_panels_for(deal=deal, stakeholders=stakeholders),
            "kommo_url": kommo_deal_url(deal),
            "deals_url": reverse("stakeholders:deal_list"),
        },
        status=status,
    )


@login_required
@require_GET
def deal_detail(request: HttpRequest, deal_id: int) -> HttpResponse:
    return _render_deal(request, _deal_for(request, deal_id))


@login_required
@require_POST
def stakeholder_update(request: HttpRequest, deal_id: int, stakeholder_id: int) -> HttpResponse:
    deal = _deal_for(request, deal_id)
    stakeholder = get_object_or_404(
        Stakeholder.objects.select_related("account", "contact", "catalog_element", "role", "lead__account"),
        pk=stakeholder_id,
        lead=deal,
    )
    form = StakeholderForm(request.POST, stakeholder=stakeholder)
    if not form.is_valid():
        messages.error(request, f"{stakeholder.name}: not saved. {form.errors.as_text()}")
        return _render_deal(request, deal, bound=form, status=400)
    change = StakeholderChange.of(
        stakeholder,
        role=form.cleaned_data["role"],
        approval_status=form.cleaned_data["approval_status"],
        last_touch=form.last_touch_moment(stakeholder.last_touch),
    )
    try:
        written = stakeholder_update_in_kommo(
            stakeholder=stakeholder,
            change=change,
            provenance=_by_manager(request),
            create_element=request.POST.get("create_element") == "1",
        )
    except StakeholderNeedsElement as error:
        messages.error(request, f"{stakeholder.name}: not saved. {error}")
        return _render_deal(request, deal, bound=form, needs_element=stakeholder.pk)
    except StakeholderWriteError as error:
        retry = "" if error.permanent else " Try again in a moment."
        messages.error(request, f"{stakeholder.name}: not saved. {error}{retry}")
        return _render_deal(request, deal, bound=form)
    messages.success(
        request,
        f"{stakeholder.name}: saved in Kommo." if written else f"{stakeholder.name}: nothing changed.",
    )
    return redirect("stakeholders:deal_detail", deal_id=deal.pk)


@login_required
@require_POST
def stakeholder_add(request: HttpRequest, deal_id: int) -> HttpResponse:
    deal = _deal_for(request, deal_id)
    form = AddStakeholderForm(
        request.POST,
        contacts=contacts_without_stakeholder(lead=deal),
        taken_names=Stakeholder.objects.filter(lead=deal).values_list("name", flat=True),
    )
    if not form.is_valid():
        messages.error(request, f"Stakeholder not added. {form.errors.as_text()}")
        return _render_deal(request, deal, add_form=form, status=400)
    new = NewStakeholder(
        change=StakeholderChange(
            role=form.cleaned_data["role"],
            approval_status=form.cleaned_data["approval_status"],
            last_touch=timezone.now(),
        ),
        contact=form.contact,
        name=form.cleaned_data["name"],
        as_contact=form.cleaned_data["person"] == AddStakeholderForm.NEW_CONTACT,
    )
    name = form.contact.name if form.contact is not None else form.cleaned_data["name"].strip()
    try:
        stakeholder_add_in_kommo(lead=deal, new=new, provenance=_by_manager(request))
    except StakeholderWriteError as error:
        retry = "" if error.permanent else " Try again in a moment."
        messages.error(request, f"{name}: not added. {error}{retry}")
        return _render_deal(request, deal, add_form=form)
    messages.success(request, f"{name}: added in Kommo as {role_in_sentence(str(new.change.role))}.")
    return redirect("stakeholders:deal_detail", deal_id=deal.pk)


def _stakeholder_for(deal: Lead, stakeholder_id: int) -> Stakeholder:
    return get_object_or_404(
        Stakeholder.objects.select_related("account", "contact", "catalog_element", "role", "lead__account"),
        pk=stakeholder_id,
        lead=deal,
    )


def _write(
    request: HttpRequest, deal: Lead, stakeholder: Stakeholder, change: StakeholderChange, done: str
) -> HttpResponse:
    """Write a change made on the page to Kommo as the signed-in manager's, and say how it went."""
    try:
        stakeholder_update_in_kommo(
            stakeholder=stakeholder,
            change=change,
            provenance=_by_manager(request),
            create_element=request.POST.get("create_element") == "1",
        )
    except StakeholderNeedsElement as error:
        messages.error(request, f"{stakeholder.name}: not saved. {error}")
        return _render_deal(request, deal, needs_element=stakeholder.pk)
    except StakeholderWriteError as error:
        retry = "" if error.permanent else " Try again in a moment."
        messages.error(request, f"{stakeholder.name}: not saved. {error}{retry}")
        return _render_deal(request, deal)
    messages.success(request, f"{stakeholder.name}: {done}")
    return redirect("stakeholders:deal_detail", deal_id=deal.pk)


@login_required
@require_POST
def approval_request(request: HttpRequest, deal_id: int, stakeholder_id: int) -> HttpResponse:
    """Ask the person for their approval (again): pending, requested now, in Kommo."""
    deal = _deal_for(request, deal_id)
    stakeholder = _stakeholder_for(deal, stakeholder_id)
    change = StakeholderChange.of(
        stakeholder, approval_status=Approval.PENDING, approval_requested_at=timezone.now()
    )
    return _write(request, deal, stakeholder, change, "approval requested in Kommo.")


@login_required
@require_POST
def objection_save(request: HttpRequest, deal_id: int, stakeholder_id: int) -> HttpResponse:
    """Raise or edit the person's objection, or resolve it (``action=resolve``), in Kommo."""
    deal = _deal_for(request, deal_id)
    stakeholder = _stakeholder_for(deal, stakeholder_id)
    now = timezone.now()
    if request.POST.get("action") == "resolve":
        if not stakeholder.objection_open:
            messages.error(request, f"{stakeholder.name}: there is no open objection to resolve.")
            return redirect("stakeholders:deal_detail", deal_id=deal.pk)
        change = StakeholderChange.of(stakeholder, objection_resolved_at=now)
        return _write(request, deal, stakeholder, change, "objection resolved in Kommo.")
    form = ObjectionForm(request.POST, stakeholder=stakeholder)
    if not form.is_valid():
        why = " ".join(str(error) for error in form.non_field_errors()) or form.errors.as_text()
        messages.error(request, f"{stakeholder.name}: objection not saved. {why}")
        return _render_deal(request, deal, objection_form=form, status=400)
    change = StakeholderChange.of(
        stakeholder,
        objection=form.cleaned_data["objection"].strip(),
        objection_weight=form.cleaned_data["objection_weight"],
    )
    done = "objection saved in Kommo." if stakeholder.objection_open else "objection raised in Kommo."
    return _write(request, deal, stakeholder, change, done)
