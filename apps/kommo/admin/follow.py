"""What follows the admin's writes of the mirror.

The account's "Sync now" and the resync of selected deals, contacts and companies write the mirror in the
request, as the sync does. What follows those writes — the stakeholders derived again, the new moves
queued for the gates — is done by the apps above the boundary, which the boundary cannot import: the
data paths (``apps.flows``, the top layer) give it to the admin when the apps are ready
(:func:`admin_follow_give`), as the apps above add their sections to the deal page
(``lead_admin_section_add``). It is one function, given once and required: an action run without it
(``apps.flows`` not installed) fails rather than write the mirror with nothing following.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from apps.kommo.models import KommoAccount
from apps.kommo.services.mirror import BatchResult, MirrorFollow

_given: list[MirrorFollow] = []


def admin_follow_give(follow: MirrorFollow) -> None:
    """What follows each of the admin's writes of the mirror, inside its transaction (the flows' sync
    follow-up). Giving it again replaces it."""
    _given[:] = [follow]


def admin_follow(account: KommoAccount, result: BatchResult) -> None:
    """The ``follow`` the admin's actions give the writers: the one the data paths gave."""
    if not _given:
        raise ImproperlyConfigured(
            "Nothing follows the admin's writes of the mirror: apps.flows gives it when the apps are ready."
        )
    _given[0](account, result)
