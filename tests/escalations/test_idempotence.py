"""Once per deal, stay and level, whatever happens: repeated beats, two checks at the same moment, a
worker that died after its check committed, a send whose outcome is unknown. And the tasks go out in
batches through the outbound queue, as the gates' do."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import time_machine

from apps.escalations import services
from apps.escalations.models import Escalation
from apps.escalations.services import escalations_check, escalations_enforce
from apps.kommo.models import OutboundChange
from apps.kommo.services.outbound import outbound_changes_drain
from tests.escalations.conftest import T0, deal, limit
from tests.support.fake_kommo import FakeKommo

State = OutboundChange.Status


def task_posts(kommo: FakeKommo) -> list[int]:
    """The size of each task POST sent."""
    return [len(body) for body in kommo.bodies("POST", "/api/v4/tasks")]


@pytest.mark.django_db
def test_the_tasks_of_many_deals_past_both_limits_go_out_in_one_request(board, head, kommo_client, kommo):
    deals = [deal(board, f"Deal {n}") for n in range(30)]
    limit(board, first="2", second="5")

    with time_machine.travel(T0 + dt.timedelta(days=6), tick=False):
        run = escalations_enforce(account_id=board.account.pk, client=kommo_client)
        again = escalations_enforce(account_id=board.account.pk, client=kommo_client)

    assert run.check.escalated == 60
    assert (again.check.escalated, again.check.already) == (0, 60)
    assert task_posts(kommo) == [60]
    assert len(kommo.tasks) == 60
    assert set(OutboundChange.objects.values_list("status", flat=True)) == {State.SENT}
    for lead in deals:
        assert sorted(lead.escalations.values_list("level", flat=True)) == [1, 2]


@pytest.mark.django_db
def test_a_task_whose_send_timed_out_is_found_by_its_marker_and_not_created_again(
    board, head, kommo_client, kommo
):
    lead = deal(board)
    limit(board, first="2", second=None)
    kommo.time_out_next("/api/v4/tasks", done=True)  # Kommo created it; its answer was lost
    with time_machine.travel(T0 + dt.timedelta(days=3), tick=False):
        escalations_enforce(account_id=board.account.pk, client=kommo_client)
    change = OutboundChange.objects.get()
    assert change.status == State.UNKNOWN  # Kommo may or may not have created it
    [created] = kommo.tasks.values()
    assert (created["entity_id"], created["text"]) == (lead.kommo_id, change.payload["text"])

    # The next beat escalates nothing new; the drain finds the task by its marker.
    OutboundChange.objects.filter(pk=change.pk).update(next_attempt_at=None)
    with time_machine.travel(T0 + dt.timedelta(days=3, hours=1), tick=False):
        assert escalations_check(account_id=board.account.pk).escalated == 0
        outbound_changes_drain(account_id=board.account.pk, client=kommo_client)

    change.refresh_from_db()
    assert (change.status, change.result_ids) == (State.SENT, [created["id"]])
    assert task_posts(kommo) == [1]  # the one that timed out: none after it
    assert kommo.calls_to("/api/v4/tasks", "GET") == [
        {"filter[entity_type]": ["leads"], "filter[entity_id][]": [str(lead.kommo_id)], "limit": ["250"]}
    ]
    assert len(kommo.tasks) == 1 and Escalation.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_checks_at_the_same_moment_escalate_each_stay_and_level_once(board, head, monkeypatch):
    """Two beats (two workers) read the same deals past their limits before either writes: the unique
    constraint on the escalation and the change's idempotency key let one of them write each pair."""
    from django.db import connections

    for n in range(5):
        deal(board, f"Deal {n}")
    limit(board, first="2", second="4")
    barrier = threading.Barrier(2, timeout=30)
    read = services._missing

    def missing_then_wait(*args, **kwargs):  # both checks have read the same due pairs here
        found = read(*args, **kwargs)
        barrier.wait()
        return found

    monkeypatch.setattr(services, "_missing", missing_then_wait)
    results: list[object] = []

    def check() -> None:
        try:
            results.append(escalations_check(account_id=board.account.pk, now=T0 + dt.timedelta(days=5)))
        except Exception as error:  # reported by the assertion below
            results.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=check) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert all(isinstance(result, services.CheckResult) for result in results), results
    assert sum(result.escalated for result in results) == 10  # type: ignore[union-attr]
    assert Escalation.objects.count() == 10
    assert OutboundChange.objects.filter(kind=OutboundChange.Kind.TASK_CREATE).count() == 10
