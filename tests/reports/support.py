"""Constructed histories for the report tests: one B2B pipeline, two managers, deals with known moves."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import Group

from apps.flows.sync import mirror_follow
from apps.kommo.models import KommoAccount, KommoUser, Lead, Pipeline, StageChange, Status
from apps.kommo.services.mirror import stage_change_record
from apps.kommo.services.stays import leads_stays_refresh
from apps.users.models import User
from tests.factories import KommoAccountFactory, KommoUserFactory, PipelineFactory, StatusFactory

PIPELINE = 5000
DM, TECH, BUDGET, LEGAL, SIGNING, WON, LOST = 10, 20, 30, 40, 50, 142, 143
STAGES = {
    DM: "DM qualification",
    TECH: "Technical validation",
    BUDGET: "Budget approval",
    LEGAL: "Legal review",
    SIGNING: "Signing",
    WON: "Won",
    LOST: "Lost",
}
ANN, BOB = 501, 502
# "Now" in the report tests: the middle of the second quarter of 2026.
NOW = dt.datetime(2026, 5, 15, 12, 0, tzinfo=dt.UTC)


def day(month: int, day_: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, month, day_, hour, 0, tzinfo=dt.UTC)


@dataclass
class World:
    account: KommoAccount
    pipeline: Pipeline
    stages: dict[int, Status]
    ann: KommoUser
    bob: KommoUser


def world_create() -> World:
    account = KommoAccountFactory(name="Acme", base_url="https://acme.kommo.com")
    pipeline = PipelineFactory(account=account, kommo_id=PIPELINE, name="B2B", sort=1)
    stages = {
        kommo_id: StatusFactory(
            account=account,
            pipeline=pipeline,
            kommo_id=kommo_id,
            name=name,
            sort=10000 if kommo_id == WON else 11000 if kommo_id == LOST else kommo_id,
            is_won=kommo_id == WON,
            is_lost=kommo_id == LOST,
        )
        for kommo_id, name in STAGES.items()
    }
    ann = KommoUserFactory(account=account, kommo_id=ANN, name="Ann Lee")
    bob = KommoUserFactory(account=account, kommo_id=BOB, name="Bob Stone")
    return World(account, pipeline, stages, ann, bob)


_next_id = [1000]


def deal_create(
    world: World,
    *,
    price: int,
    created: dt.datetime,
    moves: Sequence[tuple[int, int, dt.datetime]] = (),
    start: int = DM,
    manager: int = ANN,
    name: str = "",
    loss_reason: int | None = None,
) -> Lead:
    """A deal created at ``created`` in ``start`` that then made ``moves`` (from, to, at), recorded as
    webhooks would: the stays follow from them."""
    _next_id[0] += 1
    status = moves[-1][1] if moves else start
    lead = Lead.objects.create(
        account=world.account,
        kommo_id=_next_id[0],
        name=name or f"Deal {_next_id[0]}",
        price=price,
        pipeline=world.pipeline,
        pipeline_kommo_id=PIPELINE,
        status=world.stages[status],
        status_kommo_id=status,
        responsible_user=world.ann if manager == ANN else world.bob,
        responsible_user_kommo_id=manager,
        created_at=created,
        updated_at=moves[-1][2] if moves else created,
        closed_at=moves[-1][2] if status in (WON, LOST) else None,
        loss_reason_kommo_id=loss_reason,
    )
    for from_status, to_status, at in moves:
        stage_change_record(
            account=world.account,
            lead=lead,
            from_status_id=from_status,
            to_status_id=to_status,
            at=at,
            source=StageChange.Source.WEBHOOK,
            follow=mirror_follow,
        )
    leads_stays_refresh(lead_ids=[lead.pk])
    return lead


def person(username: str, group: str | None = None, kommo_user_id: int | None = None) -> User:
    user = User.objects.create_user(username=username, password="pw", kommo_user_id=kommo_user_id)
    if group:
        user.groups.add(_group(group))
    return user


def _group(name: str) -> Group:
    """The group as the data migrations made it. Made again when missing: a transactional test that ran
    before in the same process may have emptied the tables (and with them the migrations' rows)."""
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    from apps.reports.models import ReportAccess

    group, created = Group.objects.get_or_create(name=name)
    if created and name in ("Head of sales", "Sales ops"):
        permission, _ = Permission.objects.get_or_create(
            content_type=ContentType.objects.get_for_model(ReportAccess, for_concrete_model=False),
            codename="view_reports",
            defaults={"name": "Can see the reports on every deal"},
        )
        group.permissions.add(permission)
    return group


def html_table(html: str, key: str) -> list[list[str]]:
    """The rows of the report table ``key`` (header first) as the page shows them, cell texts stripped."""
    from html.parser import HTMLParser

    class Parser(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.inside = False
            self.rows: list[list[str]] = []
            self.cell: list[str] | None = None

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "table" and ("id", f"table-{key}") in attrs:
                self.inside = True
            elif self.inside and tag == "tr":
                self.rows.append([])
            elif self.inside and tag in ("td", "th"):
                self.cell = []

        def handle_endtag(self, tag: str) -> None:
            if tag == "table":
                self.inside = False
            elif self.inside and tag in ("td", "th") and self.cell is not None:
                self.rows[-1].append(" ".join("".join(self.cell).split()))
                self.cell = None

        def handle_data(self, data: str) -> None:
            if self.cell is not None:
                self.cell.append(data)

    parser = Parser()
    parser.feed(html)
    return parser.rows
