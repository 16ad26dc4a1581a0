"""The stakeholder form's last touch: Kommo holds a day, the portal a moment."""

import datetime as dt

import pytest
from django.utils import timezone

from apps.stakeholders.forms import StakeholderForm
from apps.stakeholders.models import Approval, Role, Stakeholder

pytestmark = pytest.mark.django_db

TOUCHED = dt.datetime(2024, 6, 3, 14, 45, tzinfo=dt.UTC)


def chosen_moment(current: dt.datetime | None, day: str) -> dt.datetime | None:
    stakeholder = Stakeholder(pk=1, approval_status=Approval.UNKNOWN, last_touch=current)
    form = StakeholderForm(
        {"s1-role": "", "s1-approval_status": Approval.UNKNOWN, "s1-last_touch": day}, stakeholder=stakeholder
    )
    assert form.is_valid(), form.errors
    return form.last_touch_moment(current)


def test_an_unchanged_day_keeps_the_stakeholders_moment_so_nothing_is_written():
    assert chosen_moment(TOUCHED, "2024-06-03") == TOUCHED


def test_a_new_day_is_midnight_of_that_day_in_the_portals_time_zone():
    expected = timezone.make_aware(dt.datetime(2024, 6, 5))
    assert chosen_moment(TOUCHED, "2024-06-05") == expected
    assert chosen_moment(None, "2024-06-05") == expected


def test_an_emptied_day_clears_the_last_touch():
    assert chosen_moment(TOUCHED, "") is None


def offered(form: StakeholderForm) -> list[str]:
    """The codes of the roles the form's select offers, in order."""
    codes = dict(Role.objects.values_list("label", "code"))
    return [codes[str(label)] for value, label in form.fields["role"].choices if value != ""]


@pytest.mark.parametrize("given", [False, True], ids=["loaded-by-the-form", "given-by-the-page"])
def test_active_roles_are_offered_plus_the_stakeholders_own_inactive_one(given):
    Role.objects.filter(code__in=("lawyer", "blocker")).update(active=False)
    lawyer = Role.objects.get(code="lawyer")
    roles = list(Role.objects.all()) if given else None

    own = StakeholderForm(
        stakeholder=Stakeholder(pk=1, role=lawyer, approval_status=Approval.UNKNOWN), roles=roles
    )
    other = StakeholderForm(stakeholder=Stakeholder(pk=2, approval_status=Approval.UNKNOWN), roles=roles)

    assert offered(own) == ["decision_maker", "technical_evangelist", "user", "lawyer", "influencer"]
    assert offered(other) == ["decision_maker", "technical_evangelist", "user", "influencer"]
    assert f'<option value="{lawyer.pk}" selected>' in str(own["role"])


def test_an_inactive_role_cannot_be_chosen_for_another_stakeholder():
    Role.objects.filter(code="blocker").update(active=False)
    blocker = Role.objects.get(code="blocker")
    form = StakeholderForm(
        {"s1-role": blocker.pk, "s1-approval_status": Approval.UNKNOWN, "s1-last_touch": ""},
        stakeholder=Stakeholder(pk=1, approval_status=Approval.UNKNOWN),
        roles=list(Role.objects.all()),
    )

    assert not form.is_valid() and "role" in form.errors
