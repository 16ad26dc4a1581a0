"""What follows the admin's writes of the mirror.

The account's "Sync now", "Backfill history" and the resync of selected deals, contacts and companies
write the mirror in the request, as the sync does. What follows those writes — the stakeholders derived
again, the new moves queued for the gates, the past field changes dating the stakeholders' history — is
done by the apps above the boundary, which the boundary cannot import: the data paths (``apps.flows``, the
top layer) give it to the admin when the apps are ready (:func:`admin_follow_give`), as the apps above add
their sections to the deal page (``lead_admin_section_add``). It is given once and required: an action
run without it (``apps.flows`` not installed) fails rather than write the mirror with nothing following.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

from apps.kommo.models import KommoAccount
from apps.kommo.services.mirror import BatchResult, MirrorFollow
from apps.kommo.services.sync import FieldChangesFollow
from apps.kommo.types import FieldChange


@dataclass(frozen=True)
class _Given:
    mirror: MirrorFollow
    field_changes: FieldChangesFollow


_given: list[_Given] = []


def admin_follow_give(follow: MirrorFollow, *, field_changes: FieldChangesFollow) -> None:
    """What follows each of the admin's writes of the mirror (``follow``) and the past field changes its
    history backfill reads (``field_changes``), inside their transactions (the flows' sync follow-up).
    Giving them again replaces them."""
    _given[:] = [_Given(mirror=follow, field_changes=field_changes)]


def _the_given() -> _Given:
    if not _given:
        raise ImproperlyConfigured(
            "Nothing follows the admin's writes of the mirror: apps.flows gives it when the apps are ready."
        )
    return _given[0]


def admin_follow(account: KommoAccount, result: BatchResult) -> None:
    """The ``follow`` the admin's actions give the writers: the one the data paths gave."""
    _the_given().mirror(account, result)


def admin_field_changes_follow(account: KommoAccount, changes: Sequence[FieldChange]) -> None:
    """The ``field_changes_follow`` the admin's "Backfill history" gives the backfill: the one the data
    paths gave."""
    _the_given().field_changes(account, changes)
