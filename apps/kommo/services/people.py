"""Portal users and the Kommo users they work as: matched by e-mail, or invited from a Kommo user.

``User.kommo_user_id`` is the Kommo id of the user whose deals are theirs; these services fill it so
nobody types a number."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.db import transaction
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.text import slugify

from apps.kommo.models import KommoUser
from apps.users.models import User


def kommo_user_for_email(email: str) -> KommoUser | None:
    """The one active mirrored Kommo user with this e-mail (case-insensitive), or None when there is none
    or more than one (an ambiguous match links nobody)."""
    if not email.strip():
        return None
    found = list(
        KommoUser.objects.filter(email__iexact=email.strip(), is_active=True, is_deleted=False).order_by(
            "pk"
        )[:2]
    )
    return found[0] if len(found) == 1 else None


def user_link_by_email(*, user: User) -> bool:
    """Links an unlinked portal user to the Kommo user with the same e-mail. Returns whether it linked."""
    if user.kommo_user_id is not None or not user.pk:
        return False
    kommo_user = kommo_user_for_email(user.email)
    if kommo_user is None:
        return False
    user.kommo_user_id = kommo_user.kommo_id
    User.objects.filter(pk=user.pk, kommo_user_id__isnull=True).update(kommo_user_id=kommo_user.kommo_id)
    return True


@dataclass(frozen=True)
class Invitation:
    user: User
    created: bool
    password_set_path: str  # relative: the admin builds the absolute URL from its request


def _free_username(kommo_user: KommoUser) -> str:
    local_part = kommo_user.email.split("@")[0].lower() if kommo_user.email else slugify(kommo_user.name)
    base = (local_part or "manager")[:140]
    candidate, n = base, 1
    while User.objects.filter(username=candidate).exists():
        n += 1
        candidate = f"{base}{n}"
    return candidate


def password_set_path(user: User) -> str:
    """A one-time link to set a password (Django's reset link: it stops working once used)."""
    from django.urls import reverse

    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse("password_reset_confirm", args=[uid, default_token_generator.make_token(user)])


@transaction.atomic
def manager_invite(*, kommo_user: KommoUser) -> Invitation:
    """Creates the portal user of a Kommo user, in the Manager group and linked to it, with no usable
    password and a one-time link to set one. A portal user already linked to it is returned as is."""
    existing = User.objects.filter(kommo_user_id=kommo_user.kommo_id).order_by("pk").first()
    if existing is not None:
        return Invitation(existing, False, password_set_path(existing))
    name_parts: list[Any] = (kommo_user.name or "").split(" ", 1)
    user = User(
        username=_free_username(kommo_user),
        email=kommo_user.email,
        first_name=name_parts[0][:150],
        last_name=(name_parts[1] if len(name_parts) > 1 else "")[:150],
        kommo_user_id=kommo_user.kommo_id,
    )
    user.set_unusable_password()
    user.save()
    user.groups.add(Group.objects.get(name=User.Group.MANAGER.value))
    return Invitation(user, True, password_set_path(user))
