"""A portal user is linked to the Kommo user with the same e-mail when created and when signing in."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import post_save
from django.dispatch import receiver

from apps.kommo.services.people import user_link_by_email
from apps.users.models import User


@receiver(post_save, sender=User, dispatch_uid="kommo_link_new_user_by_email")
def link_new_user(
    sender: type[User], instance: User, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    if created and not raw:
        user_link_by_email(user=instance)


@receiver(user_logged_in, dispatch_uid="kommo_link_user_on_sign_in")
def link_on_sign_in(sender: Any, user: Any, **kwargs: Any) -> None:
    if isinstance(user, User):
        user_link_by_email(user=user)
