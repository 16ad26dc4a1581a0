"""The stage history from the first sync: the backfill of past moves from the sandbox's events log (counts,
idempotence, resuming), the first stay of each deal derived from what Kommo's events give, and the sync no
longer reading a stage from ``lead_added``."""

import datetime as dt
import io
import urllib.parse
from unittest import mock

import pytest
from django.core.management import call_command
from django.test import override_settings

from apps.flows.sync import field_changes_follow, mirror_follow, touches_follow
from apps.kommo.models import Lead, StageChange, Status, SyncState
from apps.kommo.services.mirror import nothing_follows
from apps.kommo.services.sync import (
    events_reconcile,
    first_stays_record,
    history_backfill,
    history_needed,
    mirror_sync,
)
from tests.kommo.sandbox_support import account_for, api_requests, sandbox_admin, sandbox_api, sandbox_start

pytestmark = [pytest.mark.django_db, pytest.mark.sandbox]

DAY = 86400


@pytest.fixture(scope="module")
def small():
    """60 deals with a year of history (the large seed's): the demo's 1,400 moves cost minutes to record
    on a loaded machine, and one test reads those."""
    server = sandbox_start("large:60")
    yield server
    server.stop()


@pytest.fixture
def fresh_small(small):
    sandbox_admin(small, "POST", "/_sandbox/reset")
    return small


def kommo_account(server):
    return server.store.account(server.store.default_account_id)


def moves_in_sandbox(server, since):
    """The sandbox's ``lead_status_changed`` events of live deals since ``since`` (unix seconds)."""
    kommo = kommo_account(server)
    live = {lead.id for lead in kommo.leads.values() if not lead.is_deleted}
    return [
        event
        for event in kommo.events.values()
        if event.type == "lead_status_changed" and event.entity_id in live and event.created_at >= since
    ]


def test_the_backfill_records_every_past_move_and_each_deal_s_first_stay(fresh_demo):
    account = account_for(fresh_demo)
    mirror_sync(account=account, follow=mirror_follow)
    assert not StageChange.objects.exists()
    with mock.patch(
        "apps.kommo.services.mirror._follow", wraps=lambda follow, *args: follow(*args)
    ) as followed:
        result = history_backfill(account=account, days=365, field_changes_follow=field_changes_follow)
    heard = [call for call in followed.call_args_list if call.args[0] is not nothing_follows]

    expected = moves_in_sandbox(fresh_demo, int(result.start.timestamp()))
    assert len(expected) > 50
    moves = StageChange.objects.filter(account=account, from_status_kommo_id__isnull=False)
    assert moves.count() == result.recorded == len(expected) and result.known == 0
    assert set(moves.values_list("kommo_event_id", flat=True)) == {event.id for event in expected}
    assert set(moves.values_list("source", flat=True)) == {"events"}
    assert not moves.filter(at_is_exact=False).exists() and not moves.filter(moved_by__isnull=True).exists()
    created = Lead.objects.filter(account=account, created_at__gte=result.start)
    firsts = StageChange.objects.filter(account=account, from_status_kommo_id__isnull=True)
    assert firsts.count() == result.first_stays == created.count() > 0
    assert heard == []  # history is not news: the gates hear nothing of it
    state = SyncState.objects.get(account=account, resource="history")
    assert "backfill" not in state.cursor and state.last_full_at is not None
    assert not history_needed(account)

    again = history_backfill(account=account, days=365, field_changes_follow=field_changes_follow)

    assert (again.recorded, again.first_stays) == (0, 0)
    assert again.known == len(expected)
    assert StageChange.objects.filter(account=account).count() == moves.count() + firsts.count()


def test_each_first_stay_is_the_stage_the_earliest_move_left_or_the_current_one(fresh_small):
    account = account_for(fresh_small)
    mirror_sync(account=account, follow=mirror_follow)

    history_backfill(account=account, days=365, field_changes_follow=field_changes_follow)

    for deal in Lead.objects.filter(account=account, created_at__isnull=False):
        changes = list(StageChange.objects.filter(lead=deal).order_by("at", "pk"))
        first, moves = changes[0], changes[1:]
        assert first.from_status_kommo_id is None and first.at == deal.created_at
        assert first.to_status_kommo_id == (moves[0].from_status_kommo_id if moves else deal.status_kommo_id)
        if moves:  # the chain of stays is unbroken and ends where the deal is
            for before, after in zip(changes, moves, strict=False):
                assert before.to_status_kommo_id == after.from_status_kommo_id
            assert moves[-1].to_status_kommo_id == deal.status_kommo_id


class _StopAfterWindows:
    """A progress reporter that interrupts the backfill after ``windows`` windows."""

    def __init__(self, windows):
        self.windows = windows

    def start(self, resource, total):
        pass

    def advance(self, resource, count):
        if resource == "history" and count:
            self.windows -= 1
            if self.windows == 0:
                raise KeyboardInterrupt

    def finish(self, resource, result):
        pass


def _event_windows(entries):
    starts = []
    for entry in entries:
        if entry["path"].rstrip("/") == "/api/v4/events":
            query = urllib.parse.parse_qs(entry["query"])
            starts.append(int(query["filter[created_at][from]"][0]))
    return starts


def test_an_interrupted_backfill_continues_where_it_stopped(fresh_small):
    account = account_for(fresh_small)
    mirror_sync(account=account, follow=mirror_follow)
    with pytest.raises(KeyboardInterrupt):
        history_backfill(
            account=account,
            days=365,
            progress=_StopAfterWindows(3),
            field_changes_follow=field_changes_follow,
        )
    state = SyncState.objects.get(account=account, resource="history")
    position = state.cursor["backfill"]
    assert position["window"] == position["from"] + 3 * 30 * DAY and position["page"] == 0
    assert history_needed(account)  # the next sync continues it
    partial = StageChange.objects.count()
    mark = fresh_small.app.request_log.last_seq

    # the unfinished range wins over a new span
    result = history_backfill(account=account, days=7, field_changes_follow=field_changes_follow)

    windows = _event_windows(api_requests(fresh_small, mark))
    assert windows[0] == position["window"] and min(windows) == position["window"]
    assert result.resumed and result.days == 365
    expected = moves_in_sandbox(fresh_small, position["from"])
    moves = StageChange.objects.filter(account=account, from_status_kommo_id__isnull=False)
    assert moves.count() == len(expected) and partial < StageChange.objects.count()
    assert result.known == 0  # nothing read twice


def test_the_events_reconciliation_derives_a_new_deal_s_first_stage_from_its_first_move(fresh_small):
    """``lead_added`` names a note: a deal created and moved before the reconciliation ran entered the stage
    its move left, not the one it is in now."""
    account = account_for(fresh_small)
    mirror_sync(account=account, follow=mirror_follow)
    events_reconcile(account=account, follow=mirror_follow, touches_follow=touches_follow)
    first, second = Status.objects.filter(account=account, is_won=False, is_lost=False, type=0).order_by(
        "sort"
    )[:2]
    [created] = sandbox_api(
        fresh_small,
        "POST",
        "/api/v4/leads",
        [{"name": "Moved at once", "status_id": first.kommo_id, "pipeline_id": first.pipeline.kommo_id}],
    )["_embedded"]["leads"]
    sandbox_api(fresh_small, "PATCH", "/api/v4/leads", [{"id": created["id"], "status_id": second.kommo_id}])

    result = events_reconcile(account=account, follow=mirror_follow, touches_follow=touches_follow)

    deal = Lead.objects.get(account=account, kommo_id=created["id"])
    changes = StageChange.objects.filter(lead=deal)
    [entered] = changes.filter(from_status_kommo_id__isnull=True)
    [moved] = changes.filter(from_status_kommo_id__isnull=False)  # may share the creation's second
    assert (entered.from_status_kommo_id, entered.to_status_kommo_id) == (None, first.kommo_id)
    assert entered.at == deal.created_at and entered.kommo_event_id and entered.source == "events"
    assert (moved.from_status_kommo_id, moved.to_status_kommo_id) == (first.kommo_id, second.kommo_id)
    assert {change.pk for change in result.new_stage_changes} == {entered.pk, moved.pk}
    assert "added" not in SyncState.objects.get(account=account, resource="events").cursor


def test_a_lead_added_event_is_not_read_as_a_stage():
    """Real Kommo's ``lead_added``: a note in ``value_after``, nothing before."""
    from apps.kommo.types import Event

    event = Event.from_api(
        {
            "id": "01abc",
            "type": "lead_added",
            "entity_id": 1,
            "entity_type": "lead",
            "created_by": 2,
            "created_at": 1700000000,
            "value_after": [{"note": {"id": 77}}],
            "value_before": [],
        }
    )

    assert event.lead_status_after is None and event.lead_status_before is None


def test_first_stays_are_left_alone_when_a_deal_has_one(fresh_small):
    account = account_for(fresh_small)
    mirror_sync(account=account, follow=mirror_follow)
    history_backfill(account=account, days=365, field_changes_follow=field_changes_follow)
    deals = list(Lead.objects.filter(account=account))

    assert first_stays_record(account=account, leads=deals, follow=mirror_follow) == []


def test_the_first_sync_backfills_and_a_later_one_does_not(fresh_small):
    account = account_for(fresh_small)
    out = io.StringIO()

    call_command("kommo_sync", "--account", str(account.pk), stdout=out)

    lines = out.getvalue().splitlines()
    history = next(line for line in lines if line.startswith("history "))
    assert "365/365 days" in history and "moves recorded" in history
    assert StageChange.objects.filter(account=account).exists()
    out = io.StringIO()
    call_command("kommo_sync", "--account", str(account.pk), stdout=out)
    assert not any(line.startswith("history ") for line in out.getvalue().splitlines())

    out = io.StringIO()
    call_command(
        "kommo_sync", "--account", str(account.pk), "--resource", "pipelines", "--history", "30", stdout=out
    )
    history = next(line for line in out.getvalue().splitlines() if line.startswith("history "))
    assert "30/30 days" in history and " 0 moves recorded" in history


@override_settings(KOMMO_HISTORY_DAYS=0)
def test_no_backfill_when_the_setting_is_zero(fresh_small):
    account = account_for(fresh_small)

    call_command("kommo_sync", "--account", str(account.pk), "--resource", "leads", stdout=io.StringIO())

    assert not history_needed(account)
    assert not SyncState.objects.filter(account=account, resource="history").exists()


def test_the_history_range_ends_when_the_backfill_starts(fresh_small):
    account = account_for(fresh_small)
    mirror_sync(account=account, follow=mirror_follow)
    before = dt.datetime.now(tz=dt.UTC).replace(microsecond=0)

    result = history_backfill(account=account, days=10, field_changes_follow=field_changes_follow)

    assert before <= result.end <= dt.datetime.now(tz=dt.UTC)
    assert result.end - result.start == dt.timedelta(days=10)


def test_the_admin_action_backfills_an_account_and_shows_what_it_did(fresh_small, admin_client):
    from django.urls import reverse

    account = account_for(fresh_small)
    mirror_sync(account=account, follow=mirror_follow)
    changelist = reverse("admin:kommo_kommoaccount_changelist")

    answer = admin_client.post(
        changelist, {"action": "backfill_history", "_selected_action": [account.pk]}, follow=True
    )

    [message] = [str(m) for m in answer.context["messages"]]
    recorded = StageChange.objects.filter(account=account, from_status_kommo_id__isnull=False).count()
    assert recorded > 0
    assert message.startswith(f"{account}: history backfilled: 365 days,")
    assert f"{recorded:,} moves recorded" in message
    assert not history_needed(account)


def test_the_account_page_button_backfills_and_shows_what_it_did(fresh_small, admin_client):
    from django.urls import reverse

    account = account_for(fresh_small)
    mirror_sync(account=account, follow=mirror_follow)
    page = reverse("admin:kommo_kommoaccount_change", args=[account.pk])
    assert "Backfill history" in admin_client.get(page).content.decode()

    answer = admin_client.get(
        reverse("admin:kommo_kommoaccount_backfill_history_detail", args=[account.pk]), follow=True
    )

    assert answer.redirect_chain[-1][0] == page
    [message] = [str(m) for m in answer.context["messages"]]
    assert message.startswith(f"{account}: history backfilled: 365 days,")
    assert not history_needed(account)
