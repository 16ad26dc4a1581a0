import pytest
from django.conf import settings

from apps.kommo.models import KommoAccount, Lead, StageChange, SyncState
from apps.kommo.tasks import sync_account, sync_events_account
from tests.factories import KommoAccountFactory
from tests.kommo.sandbox_support import account_for, sandbox_start

pytestmark = pytest.mark.django_db


def test_the_beat_runs_the_incremental_sync_and_the_events_reconciliation():
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"apps.kommo.tasks.sync_incremental", "apps.kommo.tasks.sync_events"} <= tasks


@pytest.mark.sandbox
def test_the_account_tasks_sync_the_mirror_and_reconcile_events():
    server = sandbox_start("large:300")
    try:
        account = account_for(server)

        sync_account(account.pk)
        sync_events_account(account.pk)

        assert Lead.objects.filter(account=account).count() == 300
        assert SyncState.objects.get(account=account, resource="events").finished_at is not None
        # The first sync backfilled the history: every deal's first stay, at least.
        assert SyncState.objects.get(account=account, resource="history").last_full_at is not None
        assert StageChange.objects.filter(account=account, from_status_kommo_id__isnull=True).count() == 300
    finally:
        server.stop()


def test_an_account_without_a_token_is_not_synced_by_the_beat():
    from apps.kommo.services.sync import account_ids_syncable

    connected = KommoAccountFactory(
        name="On",
        base_url="https://on.kommo.com",
        auth_kind=KommoAccount.AuthKind.LONG_LIVED,
        access_token="t",
    )
    KommoAccountFactory(name="Off", base_url="https://off.kommo.com")

    assert account_ids_syncable() == [connected.pk]
