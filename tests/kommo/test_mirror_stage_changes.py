import datetime as dt

import pytest

from apps.flows.sync import mirror_follow
from apps.kommo.models import StageChange
from apps.kommo.services.mirror import lead_upsert_from_kommo, leads_upsert_from_kommo, stage_change_record
from tests.kommo.mirror_support import account_create, at, lead

pytestmark = pytest.mark.django_db

SOURCE = StageChange.Source


@pytest.fixture
def account():
    return account_create()


@pytest.fixture
def deal(account):
    return lead_upsert_from_kommo(
        account=account, data=lead(status_id=20, closed_at=None), follow=mirror_follow
    ).obj


def record(account, deal, **kwargs):
    values = {"from_status_id": 20, "to_status_id": 30, "at": at(100), "source": SOURCE.WEBHOOK, **kwargs}
    return stage_change_record(account=account, lead=deal, **values, follow=mirror_follow)


def test_the_webhook_and_the_events_api_reporting_one_move_make_one_row_with_the_mover(account, deal):
    first, created = record(account, deal, at=at(100))
    again, created_again = record(
        account, deal, at=at(101), source=SOURCE.EVENTS, moved_by_kommo_user_id=7, kommo_event_id="ev1"
    )

    assert created and not created_again and again.pk == first.pk
    row = StageChange.objects.get()
    assert (row.source, row.moved_by_kommo_user_id, row.kommo_event_id) == ("webhook", 7, "ev1")
    assert row.sources == ["webhook", "events"] and row.at == at(100)


def test_the_same_event_twice_is_one_row(account, deal):
    record(account, deal, source=SOURCE.EVENTS, kommo_event_id="ev1")
    _, created = record(account, deal, at=at(5000), source=SOURCE.EVENTS, kommo_event_id="ev1")

    assert not created and StageChange.objects.count() == 1


def test_a_move_seen_by_a_sync_takes_the_exact_time_and_source_of_the_event_that_reports_it(account, deal):
    inferred, _ = record(account, deal, at=at(3600), source=SOURCE.SYNC, at_is_exact=False)

    exact, created = record(account, deal, at=at(100), source=SOURCE.EVENTS, moved_by_kommo_user_id=7)

    assert not created and exact.pk == inferred.pk
    row = StageChange.objects.get()
    assert (row.at, row.at_is_exact, row.source, row.moved_by_kommo_user_id) == (at(100), True, "events", 7)


def test_an_upsert_after_the_webhook_does_not_record_the_move_twice(account, deal):
    record(account, deal, from_status_id=20, to_status_id=143, at=at(100))

    result = leads_upsert_from_kommo(
        account=account, leads=[lead(status_id=143, updated_at=at(900))], follow=mirror_follow
    )

    assert result.new_stage_changes == [] and StageChange.objects.count() == 1


def test_the_same_move_made_again_later_is_a_second_row(account, deal):
    record(account, deal, at=at(100))
    record(account, deal, from_status_id=30, to_status_id=20, at=at(200))

    _, created = record(account, deal, at=at(100 + 3600))

    assert created and StageChange.objects.count() == 3


def test_a_different_move_within_the_window_is_its_own_row(account, deal):
    record(account, deal, at=at(100))

    _, created = record(account, deal, from_status_id=30, to_status_id=40, at=at(110))

    assert created and StageChange.objects.count() == 2


def test_the_gate_recording_its_own_move_back_keeps_the_gate_source_when_the_webhook_echoes_it(account, deal):
    record(account, deal, from_status_id=30, to_status_id=20, at=at(100), source=SOURCE.GATE)

    row, created = record(account, deal, from_status_id=30, to_status_id=20, at=at(102))

    assert not created and row.source == "gate" and row.sources == ["gate", "webhook"]


def test_stage_names_are_linked_when_the_pipeline_is_known(account, deal):
    from apps.kommo import types
    from apps.kommo.services.mirror import pipelines_upsert_from_kommo
    from tests.kommo.payloads import payload

    pipeline = payload("pipelines.json")["_embedded"]["pipelines"][0]
    pipelines_upsert_from_kommo(account=account, pipelines=[types.Pipeline.from_api(pipeline)])
    deal.pipeline_kommo_id = pipeline["id"]

    row, _ = record(account, deal, from_status_id=32392159, to_status_id=142, at=dt.datetime.now(tz=dt.UTC))

    assert row.from_status.name == "Первичный контакт" and row.to_status.is_won


def test_a_move_made_again_after_being_moved_back_is_a_new_row_even_within_the_window(account, deal):
    first, _ = record(account, deal, at=at(100))  # the manager: Legal review → Signing
    record(account, deal, from_status_id=30, to_status_id=20, at=at(100), source=SOURCE.GATE)  # moved back

    again, created = record(account, deal, at=at(160))  # the manager makes the same move a minute later

    assert created and again.pk != first.pk
    assert StageChange.objects.filter(from_status_kommo_id=20, to_status_kommo_id=30).count() == 2


def test_a_late_report_of_a_move_still_matches_it_when_the_move_back_came_after_it(account, deal):
    first, _ = record(account, deal, at=at(100))
    record(account, deal, from_status_id=30, to_status_id=20, at=at(100), source=SOURCE.GATE)

    same, created = record(account, deal, at=at(100), source=SOURCE.EVENTS, kommo_event_id="ev1")

    assert not created and same.pk == first.pk and same.kommo_event_id == "ev1"


def test_a_late_report_of_an_earlier_move_is_not_merged_into_a_later_repetition(account, deal):
    record(account, deal, from_status_id=30, to_status_id=20, at=at(150))  # the only earlier move we saw
    later, _ = record(account, deal, at=at(200))  # the move again; its first time was never reported

    earlier, created = record(account, deal, at=at(100), source=SOURCE.EVENTS, kommo_event_id="ev0")

    assert created and earlier.pk != later.pk and earlier.at == at(100)


def test_a_refetch_after_two_reported_moves_infers_no_third_move(account, deal):
    record(account, deal, from_status_id=20, to_status_id=30, at=at(100))
    record(account, deal, from_status_id=30, to_status_id=40, at=at(110))

    result = leads_upsert_from_kommo(
        account=account,
        leads=[lead(status_id=40, updated_at=at(110))],
        source=SOURCE.WEBHOOK,
        follow=mirror_follow,
    )

    assert result.new_stage_changes == []
    assert list(
        StageChange.objects.order_by("at").values_list("from_status_kommo_id", "to_status_kommo_id")
    ) == [
        (20, 30),
        (30, 40),
    ]


def test_a_move_nobody_reported_since_the_last_read_is_still_inferred(account, deal):
    record(account, deal, from_status_id=20, to_status_id=30, at=at(-500))  # history from before the deal
    # was last read, at stage 20, at time 0: the same move after that is a new one

    result = leads_upsert_from_kommo(
        account=account, leads=[lead(status_id=30, updated_at=at(900))], follow=mirror_follow
    )

    assert [(c.from_status_kommo_id, c.to_status_kommo_id) for c in result.new_stage_changes] == [(20, 30)]


def test_a_move_made_again_within_the_same_second_as_the_move_back_is_inferred_as_a_new_move(account, deal):
    # The manager moves 20 → 30 and the portal moves the deal back within the same second; the mirror
    # saw the deal back at 20 as of that second.
    first, _ = record(account, deal, at=at(100))
    record(account, deal, from_status_id=30, to_status_id=20, at=at(100), source=SOURCE.GATE)
    leads_upsert_from_kommo(
        account=account, leads=[lead(status_id=20, updated_at=at(100))], follow=mirror_follow
    )

    # The manager moves it to 30 again, still within that second: the re-fetch sees 30.
    result = leads_upsert_from_kommo(
        account=account,
        leads=[lead(status_id=30, updated_at=at(100))],
        source=SOURCE.WEBHOOK,
        follow=mirror_follow,
    )
    webhook, created = record(account, deal, at=at(100), moved_by_kommo_user_id=7)

    [again] = result.new_stage_changes
    assert again.pk != first.pk and (again.from_status_kommo_id, again.to_status_kommo_id) == (20, 30)
    assert not created and webhook.pk == again.pk and webhook.moved_by_kommo_user_id == 7
    assert StageChange.objects.filter(from_status_kommo_id=20, to_status_kommo_id=30).count() == 2


def test_a_move_reported_as_the_latest_is_not_merged_into_one_the_deal_was_moved_back_from(account, deal):
    # 20 → 30, moved back, 20 → 30 again, all in one second; the webhook of the second was the last of its
    # batch and the re-fetch found the deal at 30: it is a new move, and its redelivery is that move.
    first, _ = record(account, deal, at=at(100))
    record(account, deal, from_status_id=30, to_status_id=20, at=at(100), source=SOURCE.GATE)
    seen = dt.datetime.now(tz=dt.UTC)

    again, created = record(account, deal, at=at(100), latest_as_of=seen)
    redelivered, created_again = record(account, deal, at=at(100), latest_as_of=dt.datetime.now(tz=dt.UTC))
    late, created_late = record(account, deal, at=at(100), source=SOURCE.EVENTS, kommo_event_id="ev1")

    assert created and again.pk != first.pk
    assert not created_again and redelivered.pk == again.pk
    assert not created_late and late.pk in {first.pk, again.pk}
    assert StageChange.objects.filter(from_status_kommo_id=20, to_status_kommo_id=30).count() == 2


def test_a_move_back_recorded_after_the_read_does_not_split_a_report_from_its_move(account, deal):
    first, _ = record(account, deal, at=at(100))
    seen = dt.datetime.now(tz=dt.UTC)  # the re-fetch left before the move back was recorded
    record(account, deal, from_status_id=30, to_status_id=20, at=at(100), source=SOURCE.GATE)

    same, created = record(account, deal, at=at(100), latest_as_of=seen)

    assert not created and same.pk == first.pk


def test_past_moves_recorded_together_match_what_is_already_there_and_give_the_deal_its_stays(account, deal):
    from apps.kommo.models import StageStay
    from apps.kommo.services.mirror import PastMove, stage_changes_record_past

    webhook_row, _ = record(account, deal, from_status_id=20, to_status_id=30, at=at(100))
    record(
        account,
        deal,
        from_status_id=30,
        to_status_id=40,
        at=at(200),
        source=SOURCE.EVENTS,
        kommo_event_id="e2",
    )

    def past(from_status, to_status, seconds, event_id):
        return PastMove(deal, from_status, None, to_status, None, at(seconds), 7, event_id)

    moves = [
        past(None, 20, 10, None),  # the first stay
        past(20, 30, 101, "e1"),  # what the webhook reported: the same move, now with its event id
        past(30, 40, 200, "e2"),  # already recorded from its event
        past(40, 50, 300, "e3"),  # new
    ]
    created, known = stage_changes_record_past(account=account, moves=moves)

    assert sorted((row.from_status_kommo_id or 0, row.to_status_kommo_id) for row in created) == [
        (0, 20),
        (40, 50),
    ]
    assert known == 2  # e2, and the webhook's move enriched
    webhook_row.refresh_from_db()
    assert webhook_row.kommo_event_id == "e1" and webhook_row.sources == ["webhook", "events"]
    assert StageChange.objects.filter(lead=deal).count() == 4
    stays = list(
        StageStay.objects.filter(lead=deal).order_by("entered_at").values_list("status__kommo_id", flat=True)
    )
    assert len(stays) == 4 and StageStay.objects.filter(lead=deal, left_at__isnull=True).count() == 1

    again, known_again = stage_changes_record_past(account=account, moves=moves)

    assert again == [] and known_again == 4
