"""The options the commands that fill past weeks share (apps/reports/management/weekly.py)."""

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db

COMMANDS = ["reports_coverage_backfill", "reports_forecast_backtest"]


@pytest.mark.parametrize("command", COMMANDS)
def test_fewer_than_one_week_is_refused(command):
    with pytest.raises(CommandError, match="--weeks must be at least 1"):
        call_command(command, "--weeks", "0")


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_account_is_refused(command):
    with pytest.raises(CommandError, match="no account with id 424242"):
        call_command(command, "--account", "424242")
