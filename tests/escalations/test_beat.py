"""The beat's entry: the check is scheduled, routed to the ``kommo`` queue, and fans out one check per
account with an active limit (none for an account without one, or whose circuit breaker is open)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.conf import settings
from django.utils import timezone

from apps.escalations.tasks import check_limits
from apps.kommo.models import KommoAccount
from config.celery import app
from tests.escalations.conftest import limit
from tests.factories import KommoAccountFactory

pytestmark = pytest.mark.django_db


def test_beat_checks_the_limits_on_the_kommo_queue_every_configured_minutes():
    entry = settings.CELERY_BEAT_SCHEDULE["escalations-check-limits"]
    assert entry["task"] == "apps.escalations.tasks.check_limits"
    assert entry["schedule"] == 60.0 * settings.ESCALATION_CHECK_MINUTES
    assert "apps.escalations.tasks.check_limits" in app.tasks
    route = app.amqp.router.route({}, "apps.escalations.tasks.check_account")
    assert route["queue"].name == "kommo"


def test_the_beat_fans_out_one_check_per_account_with_an_active_limit(board):
    KommoAccountFactory(name="No limits", base_url="https://other.kommo.com")
    limit(board)
    with mock.patch("apps.escalations.tasks.check_account.delay") as check:
        check_limits()
    check.assert_called_once_with(board.account.pk)

    KommoAccount.objects.filter(pk=board.account.pk).update(blocked_since=timezone.now())
    with mock.patch("apps.escalations.tasks.check_account.delay") as check:
        check_limits()
    check.assert_not_called()
