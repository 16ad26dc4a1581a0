"""The demo's default rules."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.gates.models import GateRule
from tests.factories import KommoAccountFactory


def test_it_installs_the_two_default_rules_once(board):
    out = StringIO()
    call_command("gates_install_defaults", "--account", str(board.account.pk), stdout=out)
    call_command("gates_install_defaults", stdout=out)

    rules = {rule.name: rule for rule in GateRule.objects.all()}
    assert set(rules) == {
        "An identified decision maker to leave DM qualification",
        "The lawyer approved to leave Legal review",
    }
    dm = rules["An identified decision maker to leave DM qualification"]
    assert dm.gated_stage == board.stage("DM qualification") and dm.mode == GateRule.Mode.ENFORCE
    assert [(c.role.code, c.requirement) for c in dm.conditions.all()] == [("decision_maker", "present")]
    lawyer = rules["The lawyer approved to leave Legal review"]
    assert [(c.role.code, c.requirement) for c in lawyer.conditions.all()] == [("lawyer", "approved")]
    assert out.getvalue().count("installed:") == 2
    assert out.getvalue().count("already there:") == 2


def test_it_says_when_the_pipeline_is_not_there(db):

    KommoAccountFactory(name="Empty", base_url="https://empty.kommo.com")
    with pytest.raises(CommandError, match="sync the pipelines first"):
        call_command("gates_install_defaults")
