"""The synthetic account of the reports benchmark (``reports_seed_synthetic``) is consistent, at a small size:
every deal's moves chain from where it was created to where it is, its stays are what the rebuild derives
from those moves, its stakeholders and gate decisions belong to it, and the ids the seed reserved do not
collide with the next rows written the ordinary way."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.gates.models import GateDecision
from apps.kommo.models import KommoAccount, Lead, LeadContact, StageChange
from apps.reports.synthetic import GATED, synthetic_account_seed
from apps.stakeholders.models import Stakeholder

pytestmark = pytest.mark.django_db

WON, LOST = 142, 143


@pytest.fixture
def seeded() -> KommoAccount:
    result = synthetic_account_seed(
        deals=300, stage_changes=3000, stakeholders=1200, seed=5, check_references=True
    )
    return result.account


def test_it_writes_the_sizes_asked_for(seeded: KommoAccount) -> None:
    assert Lead.objects.filter(account=seeded).count() == 300
    changes = StageChange.objects.filter(account=seeded).count()
    people = Stakeholder.objects.filter(account=seeded).count()
    assert 2400 <= changes <= 3600, changes
    assert 1000 <= people <= 1400, people
    statuses = set(Lead.objects.filter(account=seeded).values_list("status_kommo_id", flat=True))
    assert {WON, LOST} < statuses and len(statuses) > 6  # closed deals, and open ones in many stages


def test_every_deals_moves_chain_from_creation_to_its_current_stage(seeded: KommoAccount) -> None:
    now = timezone.now()
    moves = defaultdict(list)
    changes = StageChange.objects.filter(account=seeded).select_related("from_status")
    for change in changes.order_by("lead_id", "at", "id"):
        moves[change.lead_id].append(change)
    for lead in Lead.objects.filter(account=seeded).select_related("status"):
        chain = moves[lead.pk]
        assert chain, lead  # every synthetic deal moved at least once
        assert chain[-1].to_status_kommo_id == lead.status_kommo_id
        assert lead.status.kommo_id == lead.status_kommo_id and lead.pipeline_id == lead.status.pipeline_id
        for before, after in itertools.pairwise(chain):
            assert after.from_status_kommo_id == before.to_status_kommo_id
            assert after.at > before.at
        assert lead.created_at < chain[0].at <= now
        assert all(c.from_status_id and c.to_status_id for c in chain)
        assert all(c.from_status.pipeline_id == lead.pipeline_id for c in chain)
        if lead.status_kommo_id in (WON, LOST):
            assert lead.closed_at == chain[-1].at
        else:
            assert lead.closed_at is None
        assert all(c.to_status_kommo_id not in (WON, LOST) for c in chain[:-1])


def test_gate_decisions_are_the_moves_across_a_gated_stage(seeded: KommoAccount) -> None:
    decisions = list(GateDecision.objects.filter(account=seeded).select_related("rule", "stage_change"))
    moves = defaultdict(list)
    for change in StageChange.objects.filter(account=seeded).order_by("lead_id", "at", "id"):
        moves[change.lead_id].append(change)
    assert {d.outcome for d in decisions} == {"allowed", "blocked"}
    gated = {rule_name: index for index, (rule_name, _, _) in GATED.items()}
    for decision in decisions:
        change = decision.stage_change
        assert change.lead_id == decision.lead_id
        assert change.from_status_id == decision.rule.gated_stage_id
        assert decision.rule.name in gated
        later = [c for c in moves[change.lead_id] if c.at > change.at]
        following = later[0] if later else None
        moved_back = following is not None and following.source == "gate"
        assert moved_back == (decision.outcome == "blocked")
        if moved_back:
            assert following.to_status_id == decision.rule.gated_stage_id


def test_stakeholders_are_contacts_linked_to_their_deal(seeded: KommoAccount) -> None:
    links = set(LeadContact.objects.filter(lead__account=seeded).values_list("lead_id", "contact_id"))
    people = list(Stakeholder.objects.filter(account=seeded).select_related("role", "lead"))
    assert {(p.lead_id, p.contact_id) for p in people} == links
    assert all(p.role_id and p.lead.account_id == seeded.pk for p in people)
    with_decision_maker = {p.lead_id for p in people if p.role.is_decision_maker}
    share = len(with_decision_maker) / 300
    assert 0.6 < share < 0.98  # most deals have an identified decision maker, not all
    assert any(p.objection_weight for p in people)


def test_the_stays_are_what_the_rebuild_derives_from_the_moves(seeded: KommoAccount) -> None:
    from apps.kommo.models import StageStay

    fields = (
        "lead_id", "pipeline_id", "status_id", "status_kommo_id", "entered_at", "left_at", "next_status_id",
        "next_status_kommo_id", "left_how", "earlier_seconds",
    )  # fmt: skip
    seeded_stays = sorted(StageStay.objects.filter(account=seeded).values_list(*fields))
    assert len(seeded_stays) == StageChange.objects.filter(account=seeded).count() + 300
    call_command("kommo_stays_rebuild", account=seeded.pk, stdout=StringIO())
    assert sorted(StageStay.objects.filter(account=seeded).values_list(*fields)) == seeded_stays
    assert any(stay[-1] for stay in seeded_stays)  # deals sent back re-enter stages: earlier time counted


def test_rows_written_afterwards_get_new_ids(seeded: KommoAccount) -> None:
    lead = Lead.objects.filter(account=seeded).first()
    assert lead is not None
    change = StageChange.objects.create(
        account=seeded,
        lead=lead,
        to_status_kommo_id=lead.status_kommo_id,
        at=timezone.now() + dt.timedelta(seconds=1),
        source="webhook",
    )
    assert (
        change.pk > StageChange.objects.exclude(pk=change.pk).order_by("-pk").values_list("pk", flat=True)[0]
    )


def test_the_same_seed_gives_the_same_account() -> None:
    moment = timezone.now()
    first = synthetic_account_seed(deals=40, stage_changes=400, stakeholders=160, seed=9, now=moment)
    second = synthetic_account_seed(deals=40, stage_changes=400, stakeholders=160, seed=9, now=moment)

    def shape(account: KommoAccount) -> list[tuple[object, ...]]:
        return list(
            StageChange.objects.filter(account=account)
            .order_by("lead__kommo_id", "at")
            .values_list("lead__kommo_id", "from_status_kommo_id", "to_status_kommo_id", "at", "source")
        )

    assert shape(first.account) == shape(second.account)
    assert len(shape(first.account)) > 200


def test_the_command_prints_what_it_wrote() -> None:
    out = StringIO()
    call_command("reports_seed_synthetic", deals=30, stdout=out)
    assert "kommo_lead 30" in out.getvalue()
    assert Lead.objects.count() == 30


def test_the_deals_are_created_over_the_years_asked_for() -> None:
    moment = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    account = synthetic_account_seed(
        deals=60, stage_changes=600, stakeholders=240, seed=3, now=moment, years=10
    ).account

    created = list(Lead.objects.filter(account=account).values_list("created_at", flat=True))

    assert min(created) < moment - dt.timedelta(days=5 * 365)
    assert min(created) >= moment - dt.timedelta(days=10 * 365 + 1)
    assert max(created) <= moment


def test_the_deals_are_numbered_as_they_were_created(seeded: KommoAccount) -> None:
    # As in the mirror: Kommo numbers deals as they are created and the sync stores them in that order.
    by_kommo_id = list(
        Lead.objects.filter(account=seeded).order_by("kommo_id").values_list("pk", "created_at")
    )
    assert [pk for pk, _ in by_kommo_id] == sorted(pk for pk, _ in by_kommo_id)
    created = [at for _, at in by_kommo_id]
    assert created == sorted(created)
