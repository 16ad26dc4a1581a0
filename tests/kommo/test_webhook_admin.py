"""Webhook events in the admin: filters, the body decoded and as sent, reprocess, problems on the index."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from apps.kommo.models import WebhookEvent
from apps.kommo.webhooks import processing
from tests.kommo.webhook_support import account_for, recording

pytestmark = pytest.mark.django_db
Status = WebhookEvent.Status


@pytest.fixture
def staff(admin_user) -> Client:
    web = Client()
    web.force_login(admin_user)
    return web


@pytest.fixture
def events():
    rec = recording("contacts-add.curl.txt")
    account = account_for(rec)
    return {
        status: WebhookEvent.objects.create(
            account=account, body=rec.body, status=status, events="contacts[add]"
        )
        for status in (Status.PROCESSED, Status.FAILED, Status.DEAD, Status.REJECTED)
    }


def test_the_admin_index_shows_failed_and_dead_counts(staff, events) -> None:
    WebhookEvent.objects.create(account=events[Status.DEAD].account, body=b"", status=Status.DEAD)

    page = staff.get(reverse("admin:index")).content.decode()

    assert "Kommo webhook events" in page
    assert "1 failed" in page and "2 dead" in page
    assert "?status__exact=dead" in page


def test_events_are_filtered_by_status_kind_and_account(staff, events) -> None:
    url = reverse("admin:kommo_webhookevent_changelist")
    account = events[Status.FAILED].account

    page = staff.get(
        url, {"status__exact": "failed", "kind__exact": "general", "account__id__exact": account.pk}
    )

    assert page.status_code == 200
    assert list(page.context["cl"].queryset) == [events[Status.FAILED]]


def test_an_event_shows_its_body_decoded_and_exactly_as_sent(staff, events) -> None:
    event = events[Status.FAILED]

    page = staff.get(reverse("admin:kommo_webhookevent_change", args=[event.pk])).content.decode()

    assert "contacts[add][0][name] = Абиба абибович" in page
    assert "contacts%5Badd%5D%5B0%5D%5Bname%5D=%D0%90%D0%B1%D0%B8%D0%B1%D0%B0+" in page
    assert "753 bytes" in page


def test_reprocess_puts_events_back_in_line_but_leaves_rejected_ones(
    staff, events, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    sent: list[int] = []
    monkeypatch.setattr(
        processing, "webhook_event_enqueue", lambda *, event_id, countdown=None: sent.append(event_id)
    )
    chosen = [events[Status.FAILED].pk, events[Status.DEAD].pk, events[Status.REJECTED].pk]

    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(
            reverse("admin:kommo_webhookevent_changelist"),
            {"action": "reprocess", "_selected_action": chosen},
            follow=True,
        )

    assert response.status_code == 200
    statuses = dict(WebhookEvent.objects.filter(pk__in=chosen).values_list("pk", "status"))
    assert statuses == {
        events[Status.FAILED].pk: Status.RECEIVED,
        events[Status.DEAD].pk: Status.RECEIVED,
        events[Status.REJECTED].pk: Status.REJECTED,
    }
    assert WebhookEvent.objects.get(pk=events[Status.DEAD].pk).attempts == 0
    assert sorted(sent) == sorted(chosen[:2])
    assert "2 events queued" in response.content.decode()
