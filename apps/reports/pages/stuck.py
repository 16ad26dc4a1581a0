from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from apps.reports.framework import Chart, Column, Kind, Scope, Table, report_register
from apps.reports.selectors.scoped import scope_accounts
from apps.reports.selectors.stuck import REASON_LABELS, Reason
from apps.reports.selectors.stuck_states import (
    StuckFreshness,
    StuckListed,
    stuck_reason_totals,
    stuck_states_as_of,
    stuck_states_listed,
)

SHOWN = 50  # stuck deals listed (page and CSV), highest value first; the reasons table counts every one

DEAL_COLUMNS = [
    Column("deal", "Deal"),
    Column("stage", "Stage"),
    Column("manager", "Manager"),
    Column("value", "Value", Kind.MONEY, "The deal's budget (Kommo's price); highest first."),
    Column(
        "days_in_stage",
        "Days in stage",
        Kind.DAYS,
        "Every stay of the deal in its current stage added up, so a move back does not restart the clock.",
    ),
    Column(
        "usual_days",
        "Usual days",
        Kind.DAYS,
        "Median of the stage's completed stays of the last 180 days (at least 20), else the stage's default.",
    ),
    Column("why", "Why", Kind.TEXT, "Every reason that holds, in words; its code in the CSV's last column."),
    Column("codes", "Codes"),
    Column("kommo", "Kommo", Kind.LINK, "The deal in Kommo."),
]


def _when(code: Reason) -> str:
    return {
        Reason.STAGE_OVERDUE: "In the stage longer than 1.5 times its usual time.",
        Reason.STALE_TOUCH: f"No stakeholder touched in the last {settings.REPORTS_STALE_TOUCH_DAYS} days.",
        Reason.NO_OPEN_TASK: "No open task on the deal in Kommo.",
        Reason.GATE_MISSING: "The gate at its stage would block its move on: a role absent, an approval "
        "pending or rejected.",
        Reason.OBJECTION_OPEN: f"An objection weighs at least {settings.REPORTS_OBJECTION_WEIGHT}.",
    }[code]


def _deal_row(deal: StuckListed, kommo: str) -> dict[str, Any]:
    return {
        "deal": deal.name or f"deal {deal.kommo_id}",
        "href": reverse("stakeholders:deal_detail", args=[deal.lead_id]),
        "stage": deal.stage,
        "manager": deal.manager,
        "value": deal.value,
        "days_in_stage": deal.days_in_stage,
        "usual_days": deal.usual_days,
        "why": deal.text,
        "codes": " ".join(deal.codes),
        "kommo": f"{kommo}/leads/detail/{deal.kommo_id}",
    }


def _freshness_note(freshness: StuckFreshness) -> str:
    """What the page says about the age of its figures, and the refresh it queued."""
    every = f"{settings.REPORTS_EXPORT_STUCK_MINUTES:g} minutes"
    as_of = (
        f"As of {timezone.localtime(freshness.as_of):%d %b %Y %H:%M}" if freshness.as_of is not None else ""
    )
    if not freshness.stale and not freshness.missing:
        return f"{as_of}: the stuck states are refreshed every {every}." if as_of else ""
    queued = (
        "a refresh is queued; reload the page in a minute"
        if freshness.queued
        else "a refresh could not be queued (the task queue did not answer); the next viewer tries again"
    )
    if freshness.missing and not as_of:
        return f"Being computed: the stuck states have never been computed; {queued}."
    late = 2 * settings.REPORTS_EXPORT_STUCK_MINUTES
    stale = (
        f"{as_of}: these figures are stale (refreshed every {every}, the last refresh is over {late:g} "
        "minutes old)"
    )
    if freshness.missing:
        stale = f"{as_of} for some accounts; the others' stuck states have never been computed"
    return f"{stale}; {queued}."


@report_register(
    slug="stuck",
    title="Stuck deals and why",
    summary="Open deals that are stuck now, highest value first, each with every reason in plain words.",
    order=60,
)
def stuck(scope: Scope) -> list[Table]:
    accounts = scope_accounts(scope)
    roots = {account.pk: account.api_root for account in accounts}
    freshness = stuck_states_as_of(scope, accounts)
    stuck_count, totals = stuck_reason_totals(scope)
    listed = stuck_states_listed(scope, SHOWN)
    fresh = _freshness_note(freshness)
    computing = freshness.missing and freshness.as_of is None  # nothing to show yet, not "none stuck"
    late = freshness.stale or freshness.missing  # said above the figures, not among the definitions
    return [
        Table(
            key="reasons",
            title="Why deals are stuck",
            columns=[
                Column("reason", "Reason"),
                Column("code", "Code"),
                Column(
                    "deals",
                    "Stuck deals",
                    Kind.COUNT,
                    "Stuck deals for which the reason holds (a deal may have several).",
                ),
                Column("value", "Value", Kind.MONEY, "Their budget summed."),
                Column("when", "When it holds"),
            ],
            rows=[
                {
                    "reason": REASON_LABELS[total.code],
                    "code": total.code.value,
                    "deals": total.deals,
                    "value": total.value,
                    "when": _when(total.code),
                }
                for total in totals
            ]
            if not computing
            else [],
            chart=Chart(
                labels="reason", series=["deals"], description="Stuck deals by reason", horizontal=True
            ),
            notes=[
                note
                for note in ("Today's open deals: the period does not apply.", "" if late else fresh)
                if note
            ],
            empty="Being computed.",
            alert=fresh if late else "",
        ),
        Table(
            key="deals",
            title="Stuck deals",
            columns=DEAL_COLUMNS,
            rows=[_deal_row(deal, roots[deal.account_id]) for deal in listed],
            notes=[
                f"The {SHOWN} of highest value of {stuck_count} are listed; the table above counts them all. "
                "Every one: the deal list's Stuck filter (/deals/?stuck=on) or the BI export's stuck column."
            ]
            if stuck_count > SHOWN
            else [],
            empty="Being computed." if computing else "No open deal is stuck.",
        ),
    ]
