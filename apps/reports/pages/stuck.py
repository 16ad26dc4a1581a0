from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse

from apps.reports.framework import Chart, Column, Kind, Scope, Table, report_register
from apps.reports.selectors.scoped import scope_accounts, scope_leads
from apps.reports.selectors.stuck import REASON_LABELS, Reason, StuckDeal, reason_counts, stuck_deals

SHOWN = 300  # stuck deals listed (page and CSV); the reasons table counts every one

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


def _deal_row(deal: StuckDeal, kommo: str) -> dict[str, Any]:
    lead = deal.lead
    return {
        "deal": lead.name or f"deal {lead.kommo_id}",
        "href": reverse("stakeholders:deal_detail", args=[lead.pk]),
        "stage": lead.status.name if lead.status is not None else "",
        "manager": lead.responsible_user.name if lead.responsible_user is not None else "",
        "value": lead.price,
        "days_in_stage": deal.days_in_stage,
        "usual_days": deal.usual.days if deal.usual is not None else None,
        "why": deal.text,
        "codes": " ".join(deal.codes),
        "kommo": f"{kommo}/leads/detail/{lead.kommo_id}",
    }


@report_register(
    slug="stuck",
    title="Stuck deals and why",
    summary="Open deals that are stuck now, highest value first, each with every reason in plain words.",
    order=60,
)
def stuck(scope: Scope) -> list[Table]:
    leads = scope_leads(scope)
    deals: list[StuckDeal] = []
    roots: dict[int, str] = {}
    for account in scope_accounts(scope):
        roots[account.pk] = account.api_root
        deals += stuck_deals(account=account, leads_qs=leads, now=scope.now)
    deals.sort(key=lambda deal: (-deal.lead.price, deal.lead.pk))
    counts = reason_counts(deals)
    values = dict.fromkeys(Reason, 0)
    for deal in deals:
        for code in set(deal.codes):
            values[Reason(code)] += deal.lead.price
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
                    "reason": REASON_LABELS[code],
                    "code": code.value,
                    "deals": counts[code],
                    "value": values[code],
                    "when": _when(code),
                }
                for code in Reason
            ],
            chart=Chart(
                labels="reason", series=["deals"], description="Stuck deals by reason", horizontal=True
            ),
            notes=["Today's open deals: the period does not apply."],
        ),
        Table(
            key="deals",
            title="Stuck deals",
            columns=DEAL_COLUMNS,
            rows=[_deal_row(deal, roots[deal.lead.account_id]) for deal in deals[:SHOWN]],
            notes=[
                f"The {SHOWN} of highest value of {len(deals)} are listed; the table above counts them all."
            ]
            if len(deals) > SHOWN
            else [],
            empty="No open deal is stuck.",
        ),
    ]
