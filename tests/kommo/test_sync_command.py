import datetime as dt
import io
from unittest import mock

import pytest
from django.core.management import CommandError, call_command

from apps.flows.management.commands.kommo_sync import Command as SyncCommand
from apps.kommo.models import Lead, SyncState
from tests.kommo.sandbox_support import account_for, sandbox_start

pytestmark = [pytest.mark.django_db, pytest.mark.sandbox]


@pytest.fixture(scope="module")
def sandbox():
    server = sandbox_start("large:600")
    yield server
    server.stop()


def test_the_command_syncs_an_account_and_prints_a_line_per_resource(sandbox):
    account = account_for(sandbox)
    out = io.StringIO()

    call_command("kommo_sync", "--account", str(account.pk), stdout=out)

    text = out.getvalue()
    assert Lead.objects.filter(account=account).count() == 600
    leads_line = next(line for line in text.splitlines() if line.startswith("leads "))
    assert "600" in leads_line and "600 created, 0 updated, 0 unchanged" in leads_line and "/s" in leads_line
    assert any(line.startswith("events ") for line in text.splitlines())
    assert SyncState.objects.filter(account=account, resource="events").exists()


def test_the_command_runs_one_resource_incrementally_since_a_date(sandbox):
    account = account_for(sandbox)
    call_command("kommo_sync", "--account", str(account.pk), "--resource", "leads", stdout=io.StringIO())
    out = io.StringIO()

    call_command(
        "kommo_sync", "--account", str(account.pk), "--resource", "leads", "--since", "2000-01-01", stdout=out
    )

    assert "600 unchanged" in out.getvalue()
    assert [line.split()[0] for line in out.getvalue().splitlines()[1:]] == ["leads"]


def test_the_command_s_writes_are_followed_by_the_stakeholders(sandbox):
    account = account_for(sandbox)

    with mock.patch("apps.stakeholders.services.stakeholders_derive_for_mirror_changes") as derive:
        call_command("kommo_sync", "--account", str(account.pk), "--resource", "leads", stdout=io.StringIO())

    derived = {pk for call in derive.call_args_list for pk in call.kwargs["lead_ids"]}
    assert derived == set(Lead.objects.filter(account=account).values_list("pk", flat=True))
    assert len(derived) == 600


def test_an_unknown_account_is_an_error():
    with pytest.raises(CommandError, match="no Kommo account"):
        call_command("kommo_sync", "--account", "999999", stdout=io.StringIO())


def test_since_reads_a_date_or_a_datetime_and_refuses_anything_else():
    since = SyncCommand()._since

    assert since("2024-01-01") == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert since("2024-01-01T10:30+02:00") == dt.datetime(2024, 1, 1, 8, 30, tzinfo=dt.UTC)
    for bad in ("yesterday", "2024-02-30", "2024-02-30T00:00:00"):
        with pytest.raises(CommandError, match="not an ISO date"):
            since(bad)


def test_a_sync_cursor_is_taken_from_aware_times_only():
    from apps.kommo.services import sync

    aware = dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    assert sync._ts(aware) == 1704056400
    with pytest.raises(ValueError, match="naive"):
        sync._ts(dt.datetime(2024, 1, 1))  # the server's local time would shift the cursor


def test_a_summary_line_writes_every_count_as_its_bar_does(db):
    """'1,110' on the bar, '1,110 created' after it: not '1110 created' beside '1,110'."""
    from apps.flows.management.commands.kommo_sync import TerminalProgress
    from apps.kommo.services.mirror import BatchResult

    out = io.StringIO()
    progress = TerminalProgress(out, tty=False)
    progress.start("catalogs", None)
    progress.advance("catalogs", 1110)
    progress.finish("catalogs", BatchResult(created=1110, updated=2048, unchanged=1001, stale=1500))

    summary = out.getvalue().splitlines()[-1]
    assert summary.startswith("catalogs       1,110 ")
    assert summary.endswith("— 1,110 created, 2,048 updated, 1,001 unchanged, 1,500 stale")
