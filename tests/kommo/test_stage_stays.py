"""Stage stays kept by the mirror as moves are recorded, on constructed histories with known answers."""

import random

import pytest
from django.core.management import call_command

from apps.flows.sync import mirror_follow
from apps.kommo.models import StageChange, StageStay
from apps.kommo.services.mirror import lead_upsert_from_kommo, leads_upsert_from_kommo, stage_change_record
from apps.kommo.services.stays import stays_earlier_fill, stays_rebuild
from tests.factories import PipelineFactory, StatusFactory
from tests.kommo.mirror_support import account_create, at, lead

pytestmark = pytest.mark.django_db

SOURCE = StageChange.Source
PIPELINE = 3104455  # the recorded lead's pipeline
OTHER_PIPELINE = 777
# DM qualification → Technical validation → Budget approval → Legal review → Signing → won / lost
DM, TECH, BUDGET, LEGAL, SIGNING, WON, LOST = 10, 20, 30, 40, 50, 142, 143


@pytest.fixture
def account():
    account = account_create()
    for kommo_id, stages in ((PIPELINE, (DM, TECH, BUDGET, LEGAL, SIGNING)), (OTHER_PIPELINE, (60,))):
        pipeline = PipelineFactory(account=account, kommo_id=kommo_id, name=f"pipeline {kommo_id}")
        for sort, status in enumerate((*stages, WON, LOST)):
            StatusFactory(
                account=account, pipeline=pipeline, kommo_id=status, name=f"stage {status}", sort=sort * 10
            )
    return account


@pytest.fixture
def deal(account):
    return lead_upsert_from_kommo(
        account=account,
        data=lead(status_id=DM, created_at=at(0), updated_at=at(0), closed_at=None),
        follow=mirror_follow,
    ).obj


def move(account, deal, from_status, to_status, seconds, source=SOURCE.WEBHOOK, **kwargs):
    stage_change_record(
        account=account,
        lead=deal,
        from_status_id=from_status,
        to_status_id=to_status,
        at=at(seconds),
        source=source,
        **kwargs,
        follow=mirror_follow,
    )


def stays(deal):
    """(stage, entered, left, next stage, how it left) with times in seconds from ``at(0)``."""
    origin = at(0)
    return [
        (
            stay.status_kommo_id,
            int((stay.entered_at - origin).total_seconds()),
            None if stay.left_at is None else int((stay.left_at - origin).total_seconds()),
            stay.next_status_kommo_id,
            stay.left_how,
        )
        for stay in StageStay.objects.filter(lead=deal).order_by("entered_at", "id")
    ]


def test_a_deal_that_never_moved_has_one_open_stay_in_its_stage_since_it_was_created(deal):
    assert stays(deal) == [(DM, 0, None, None, "")]
    stay = StageStay.objects.get(lead=deal)
    assert stay.status.name == "stage 10" and stay.pipeline.kommo_id == PIPELINE


def test_each_move_closes_the_stay_and_opens_the_next(account, deal):
    move(account, deal, DM, TECH, 100)
    move(account, deal, TECH, BUDGET, 300)

    assert stays(deal) == [
        (DM, 0, 100, TECH, "forward"),
        (TECH, 100, 300, BUDGET, "forward"),
        (BUDGET, 300, None, None, ""),
    ]


def test_the_first_stay_is_in_the_first_moves_from_stage_from_the_creation_of_the_deal(account, deal):
    # Kommo's creation event names no stage: the deal was created in the stage its first move left.
    move(account, deal, TECH, BUDGET, 500)

    assert stays(deal)[0] == (TECH, 0, 500, BUDGET, "forward")


def test_a_deal_that_re_enters_a_stage_has_several_stays_there(account, deal):
    move(account, deal, DM, TECH, 100)
    move(account, deal, TECH, DM, 200)
    move(account, deal, DM, TECH, 400)

    assert stays(deal) == [
        (DM, 0, 100, TECH, "forward"),
        (TECH, 100, 200, DM, "back"),
        (DM, 200, 400, TECH, "forward"),
        (TECH, 400, None, None, ""),
    ]
    assert StageStay.objects.filter(lead=deal, status_kommo_id=TECH).count() == 2


def test_moves_reported_out_of_order_give_the_stays_of_the_moves_in_order(account, deal):
    move(account, deal, BUDGET, LEGAL, 300)
    move(account, deal, DM, TECH, 100)
    move(account, deal, TECH, BUDGET, 200)

    assert stays(deal) == [
        (DM, 0, 100, TECH, "forward"),
        (TECH, 100, 200, BUDGET, "forward"),
        (BUDGET, 200, 300, LEGAL, "forward"),
        (LEGAL, 300, None, None, ""),
    ]


def test_one_move_reported_by_several_sources_is_one_stay_change(account, deal):
    move(account, deal, DM, TECH, 100, source=SOURCE.WEBHOOK)
    move(account, deal, DM, TECH, 101, source=SOURCE.EVENTS, kommo_event_id="ev1", moved_by_kommo_user_id=7)
    leads_upsert_from_kommo(
        account=account,
        leads=[lead(status_id=TECH, created_at=at(0), updated_at=at(900), closed_at=None)],
        follow=mirror_follow,
    )

    assert stays(deal) == [(DM, 0, 100, TECH, "forward"), (TECH, 100, None, None, "")]


def test_a_move_seen_by_a_sync_is_dated_again_when_the_event_gives_its_exact_time(account, deal):
    leads_upsert_from_kommo(
        account=account,
        leads=[lead(status_id=TECH, created_at=at(0), updated_at=at(3600), closed_at=None)],
        follow=mirror_follow,
    )
    assert stays(deal) == [(DM, 0, 3600, TECH, "forward"), (TECH, 3600, None, None, "")]

    move(account, deal, DM, TECH, 100, source=SOURCE.EVENTS, kommo_event_id="ev1")

    assert stays(deal) == [(DM, 0, 100, TECH, "forward"), (TECH, 100, None, None, "")]


def test_a_deal_moved_back_by_a_gate_leaves_legal_review_forward_then_returns_to_it(account, deal):
    move(account, deal, DM, LEGAL, 100)
    move(account, deal, LEGAL, SIGNING, 500)
    move(account, deal, SIGNING, LEGAL, 502, source=SOURCE.GATE)

    assert stays(deal) == [
        (DM, 0, 100, LEGAL, "forward"),  # a skip over two stages is one forward move
        (LEGAL, 100, 500, SIGNING, "forward"),
        (SIGNING, 500, 502, LEGAL, "back"),
        (LEGAL, 502, None, None, ""),
    ]


def test_a_deal_lost_from_the_middle_leaves_its_stage_lost_and_stays_in_lost(account, deal):
    move(account, deal, DM, TECH, 100)
    move(account, deal, TECH, LOST, 250)

    assert stays(deal)[-2:] == [(TECH, 100, 250, LOST, "lost"), (LOST, 250, None, None, "")]


def test_a_won_deal_and_a_deal_moved_to_another_pipeline(account, deal):
    move(account, deal, DM, SIGNING, 100)
    move(account, deal, SIGNING, WON, 200)
    move(account, deal, WON, 60, 300, to_pipeline_id=OTHER_PIPELINE)

    assert stays(deal) == [
        (DM, 0, 100, SIGNING, "forward"),
        (SIGNING, 100, 200, WON, "won"),
        (WON, 200, 300, 60, "pipeline"),
        (60, 300, None, None, ""),
    ]
    assert StageStay.objects.get(lead=deal, left_at__isnull=True).pipeline.kommo_id == OTHER_PIPELINE


HISTORY = [
    (DM, TECH, 100, SOURCE.WEBHOOK),
    (TECH, BUDGET, 200, SOURCE.WEBHOOK),
    (BUDGET, TECH, 260, SOURCE.WEBHOOK),
    (TECH, BUDGET, 900, SOURCE.WEBHOOK),
    (BUDGET, LEGAL, 1500, SOURCE.WEBHOOK),
    (LEGAL, SIGNING, 2000, SOURCE.WEBHOOK),
    (SIGNING, LEGAL, 2001, SOURCE.GATE),
    (LEGAL, SIGNING, 9000, SOURCE.WEBHOOK),
    (SIGNING, LOST, 9500, SOURCE.WEBHOOK),
]


def history_reported_in_any_order_with_repeats(account, deal, seed: int) -> None:
    """The moves of HISTORY in an order shuffled by ``seed``, four of them twice, each reported again by
    the events API a second later."""
    reports = [(*item, index) for index, item in enumerate(HISTORY)]
    rng = random.Random(seed)  # noqa: S311 - a fixed shuffle, not a secret
    reports += rng.sample(reports, 4)  # the same moves again, from the events API
    rng.shuffle(reports)
    for from_status, to_status, seconds, source, index in reports:
        move(account, deal, from_status, to_status, seconds, source=source)
        again = {"source": SOURCE.EVENTS, "kommo_event_id": f"e{index}"}
        move(account, deal, from_status, to_status, seconds + 1, **again)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_any_order_of_reports_with_repeats_gives_the_stays_of_a_rebuild(account, deal, seed):
    history_reported_in_any_order_with_repeats(account, deal, seed)
    incremental = stays(deal)

    StageStay.objects.all().delete()
    stays_rebuild()

    assert stays(deal) == incremental
    assert len(incremental) == len(HISTORY) + 1
    assert [stay[0] for stay in incremental] == [DM, *[to for _, to, _, _ in HISTORY]]
    assert StageStay.objects.filter(lead=deal, left_at__isnull=True).count() == 1


def test_the_rebuild_command_repairs_stays_of_moves_loaded_in_bulk(account, deal):
    StageChange.objects.bulk_create(
        [
            StageChange(
                account=account,
                lead=deal,
                from_status_kommo_id=DM,
                from_pipeline_kommo_id=PIPELINE,
                to_status_kommo_id=TECH,
                to_pipeline_kommo_id=PIPELINE,
                at=at(100),
                source=SOURCE.EVENTS,
            )
        ]
    )
    assert stays(deal) == [(DM, 0, None, None, "")]

    call_command("kommo_stays_rebuild", "--account", str(account.pk))

    assert stays(deal) == [(DM, 0, 100, TECH, "forward"), (TECH, 100, None, None, "")]


def test_a_deal_created_by_a_sync_gets_its_first_stay(account):
    leads_upsert_from_kommo(
        account=account,
        leads=[lead(id=55, status_id=BUDGET, created_at=at(-50), updated_at=at(0), closed_at=None)],
        follow=mirror_follow,
    )

    stay = StageStay.objects.get(lead__kommo_id=55)
    assert (stay.status_kommo_id, stay.entered_at, stay.left_at) == (BUDGET, at(-50), None)


# -- the earlier time in the stage written with each stay ------------------------------------------------


def earlier_live(deal):
    """Per stay (in order): the deal's completed stays in the same pipeline and stage that ended before it
    began, their lengths summed from the stays themselves — what the column must hold."""
    rows = list(StageStay.objects.filter(lead=deal).order_by("entered_at", "id"))
    return [
        sum(
            (other.left_at - other.entered_at).total_seconds()
            for other in rows
            if (other.pipeline_kommo_id, other.status_kommo_id)
            == (stay.pipeline_kommo_id, stay.status_kommo_id)
            and other.left_at is not None
            and other.left_at <= stay.entered_at
        )
        for stay in rows
    ]


def earlier_stored(deal):
    return list(
        StageStay.objects.filter(lead=deal)
        .order_by("entered_at", "id")
        .values_list("earlier_seconds", flat=True)
    )


def test_each_stay_carries_the_deals_earlier_time_in_its_stage(account, deal):
    move(account, deal, DM, TECH, 100)
    move(account, deal, TECH, DM, 250)
    move(account, deal, DM, TECH, 400)
    move(account, deal, TECH, DM, 1000)

    # DM 0-100, TECH 100-250, DM 250-400, TECH 400-1000, DM 1000-: the second DM stay follows 100 s in DM,
    # the third 100 + 150; the second TECH stay follows 150 s in TECH.
    assert earlier_stored(deal) == [0.0, 0.0, 100.0, 150.0, 250.0]
    assert earlier_stored(deal) == earlier_live(deal)


def test_a_late_move_reported_before_others_rewrites_the_earlier_time_of_the_stays_after_it(account, deal):
    move(account, deal, DM, TECH, 1000)
    move(account, deal, TECH, DM, 5000)
    move(account, deal, DM, TECH, 7000)
    assert earlier_stored(deal) == [0.0, 0.0, 1000.0, 4000.0]

    # Reported late: the deal had gone back to DM at 3000 and returned to TECH at 4000 in between.
    move(account, deal, TECH, DM, 3000)
    move(account, deal, DM, TECH, 4000)

    # DM 0-1000, TECH 1000-3000, DM 3000-4000, TECH 4000-5000, DM 5000-7000, TECH 7000-
    assert earlier_stored(deal) == [0.0, 0.0, 1000.0, 2000.0, 2000.0, 3000.0]
    assert earlier_stored(deal) == earlier_live(deal)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_earlier_time_of_moves_reported_in_any_order_with_repeats_is_the_live_sum_and_the_rebuilds(
    account, deal, seed
):
    history_reported_in_any_order_with_repeats(account, deal, seed)
    incremental = earlier_stored(deal)
    pks = list(StageStay.objects.filter(lead=deal).order_by("entered_at").values_list("pk", flat=True))

    assert incremental == earlier_live(deal)
    assert any(seconds > 0 for seconds in incremental)  # legal review re-entered after the gate's move back
    assert stays_rebuild() == (1, 0)  # already what the moves give: nothing written
    StageStay.objects.update(earlier_seconds=0.0)  # as before the column existed
    assert stays_earlier_fill() == sum(1 for seconds in incremental if seconds)
    assert earlier_stored(deal) == incremental
    assert (
        list(StageStay.objects.filter(lead=deal).order_by("entered_at").values_list("pk", flat=True)) == pks
    )
    StageStay.objects.all().delete()
    stays_rebuild()
    assert earlier_stored(deal) == incremental
