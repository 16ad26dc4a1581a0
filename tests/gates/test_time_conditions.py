"""Gate conditions that know the time: an approval that expires, an approval within N days, no open
objection from a role, a touch within N days. Pure functions, fixed clocks."""

import datetime as dt
from decimal import Decimal

import pytest

from apps.gates import semantics
from apps.gates.semantics import Condition, StakeholderView

NOW = dt.datetime(2026, 3, 31, 12, 0, tzinfo=dt.UTC)
LAWYER = 4


def lawyer(**values) -> StakeholderView:
    return StakeholderView(name="Lena", role_id=LAWYER, role_label="Lawyer", **values)


def fails(requirement: str, people, *, n: int = 1, days=None, min_weight=None, now=NOW):
    condition = Condition(LAWYER, "Lawyer", requirement, n=n, days=days, min_weight=min_weight)
    return semantics.condition_failure(condition=condition, stakeholders=people, now=now)


def test_an_approval_holds_until_its_roles_days_have_passed():
    given = NOW - dt.timedelta(days=30)
    approved = lawyer(approval="approved", approval_decided_at=given, approval_valid_days=30)

    assert fails("approved_current", [approved], now=given + dt.timedelta(days=29, hours=23)) is None
    assert fails("approved_current", [approved], now=given + dt.timedelta(days=30)) == (
        f"the lawyer has no current approval (Lena: approval of {given.date()} expired)"
    )
    # The plain condition does not look at the time.
    assert fails("approved", [approved], now=given + dt.timedelta(days=300)) is None


def test_an_approval_without_an_expiry_or_a_day_does_not_expire():
    old = NOW - dt.timedelta(days=900)
    forever = lawyer(approval="approved", approval_decided_at=old, approval_valid_days=None)
    undated = lawyer(approval="approved", approval_decided_at=None, approval_valid_days=30)

    assert fails("approved_current", [forever]) is None
    assert fails("approved_current", [undated]) is None


@pytest.mark.parametrize(
    ("decided_days_ago", "holds"), [(0, True), (6.99, True), (7, False), (30, False), (None, False)]
)
def test_approved_within_n_days(decided_days_ago, holds):
    decided = None if decided_days_ago is None else NOW - dt.timedelta(days=decided_days_ago)
    person = lawyer(approval="approved", approval_decided_at=decided)

    failure = fails("approved_within", [person], days=7)

    assert (failure is None) is holds
    if not holds:
        assert failure.startswith("the lawyer has not approved within 7 days (Lena: approved ")


def test_a_pending_or_rejected_approval_is_never_recent_enough():
    assert fails("approved_within", [lawyer(approval="pending")], days=7) == (
        "the lawyer has not approved within 7 days (Lena: pending)"
    )
    assert fails("approved_current", [lawyer(approval="rejected")]) == (
        "the lawyer has no current approval (Lena: rejected)"
    )
    assert fails("approved_current", []) == "no lawyer is on the deal to approve"


def test_an_open_objection_at_or_above_the_weight_blocks():
    raised = NOW - dt.timedelta(days=12)
    heavy = lawyer(
        approval="pending",
        objection_open=True,
        objection="Liability cap too low",
        objection_weight=Decimal("0.7"),
        objection_raised_at=raised,
    )
    light = lawyer(approval="pending", objection_open=True, objection_weight=Decimal("0.3"))

    assert fails("no_objection", [heavy], min_weight=Decimal("0.5")) == (
        "the lawyer has an open objection (Lena: “Liability cap too low”, weight 0.7, open 12 days)"
    )
    assert fails("no_objection", [heavy], min_weight=Decimal("0.7")) is not None
    assert fails("no_objection", [light], min_weight=Decimal("0.5")) is None
    # No weight given in the rule: any open objection blocks.
    assert fails("no_objection", [light]) is not None


def test_a_resolved_objection_or_another_roles_does_not_block():
    resolved = lawyer(approval="approved", objection_open=False, objection_weight=Decimal("0.9"))
    other = StakeholderView(
        name="Bo", role_id=9, role_label="Blocker", approval="pending", objection_open=True
    )

    assert fails("no_objection", [resolved, other]) is None


def test_touched_within_n_days():
    recent = lawyer(approval="pending", last_touch=NOW - dt.timedelta(days=3))
    stale = lawyer(approval="pending", last_touch=NOW - dt.timedelta(days=15))
    never = lawyer(approval="pending")

    assert fails("touched_within", [recent], days=7) is None
    assert fails("touched_within", [stale], days=7) == (
        f"the lawyer was not touched within 7 days (last touch Lena: {(NOW - dt.timedelta(days=15)).date()})"
    )
    assert fails("touched_within", [never], days=7) == (
        "the lawyer was not touched within 7 days (last touch Lena: never)"
    )
    assert fails("touched_within", [stale, recent], n=2, days=7) is not None
    assert fails("touched_within", [], days=7) == "no lawyer is on the deal to touch"


def test_the_snapshot_keeps_the_days_and_the_open_objection():
    person = lawyer(
        approval="approved",
        approval_decided_at=NOW,
        last_touch=NOW,
        objection_open=True,
        objection="Cap",
        objection_weight=Decimal("0.50"),
        objection_raised_at=NOW,
    )

    assert person.as_dict() == {
        "name": "Lena",
        "role_id": LAWYER,
        "role": "Lawyer",
        "approval": "approved",
        "approval_decided_at": NOW.isoformat(),
        "last_touch": NOW.isoformat(),
        "objection": {"text": "Cap", "weight": "0.5", "raised_at": NOW.isoformat()},
    }
