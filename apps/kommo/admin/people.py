"""The user form in the admin picks the Kommo user a person works as from the mirror, instead of a typed
Kommo id. It lives here, above apps.users, because the choices come from the Kommo mirror."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Exists, OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from unfold.forms import UserChangeForm
from unfold.widgets import UnfoldAdminSelectWidget

from apps.kommo.models import KommoUser
from apps.users.admin import UserAdmin
from apps.users.models import User


def kommo_user_choices(current: int | None) -> list[tuple[str, str]]:
    """The mirrored Kommo users, labelled by name, e-mail and account; a linked id the mirror does not hold
    (yet) stays selectable, named as such."""
    choices: list[tuple[str, str]] = [("", "— not linked —")]
    seen: set[int] = set()
    rows = KommoUser.objects.filter(is_deleted=False).select_related("account").order_by("name", "kommo_id")
    for kommo_user in rows:
        if kommo_user.kommo_id in seen:
            continue
        seen.add(kommo_user.kommo_id)
        email = f" <{kommo_user.email}>" if kommo_user.email else ""
        inactive = "" if kommo_user.is_active else " (inactive)"
        label = f"{kommo_user.name}{email} · {kommo_user.account}{inactive}"
        choices.append((str(kommo_user.kommo_id), label))
    if current is not None and current not in seen:
        choices.append((str(current), f"Kommo user {current} (not in the mirror)"))
    return choices


class PortalUserChangeForm(UserChangeForm):
    kommo_user_id = forms.TypedChoiceField(
        label="Kommo user",
        required=False,
        coerce=int,
        empty_value=None,
        widget=UnfoldAdminSelectWidget,
        help_text="Whose deals are this person's. Filled from the e-mail when a Kommo user has the same one.",
    )

    class Meta(UserChangeForm.Meta):  # type: ignore[name-defined,misc]
        model = User
        fields = "__all__"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = self.instance.kommo_user_id if self.instance.pk else None
        self.fields["kommo_user_id"].choices = kommo_user_choices(current)  # type: ignore[attr-defined]


class PortalUserAdmin(UserAdmin):
    form = PortalUserChangeForm
    list_display = ("username", "email", "first_name", "last_name", "job", "kommo_user", "is_staff")

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        """Each person's Kommo user read with the page's users (its name, and whether the mirror has it),
        not one query per row."""
        users: QuerySet[User] = super().get_queryset(request)
        mirrored = KommoUser.objects.filter(kommo_id=OuterRef("kommo_user_id")).order_by("pk")
        return users.annotate(
            kommo_user_known=Exists(mirrored), kommo_user_name=Subquery(mirrored.values("name")[:1])
        )

    @admin.display(description="Kommo user", ordering="kommo_user_id")
    def kommo_user(self, user: User) -> str:
        if user.kommo_user_id is None:
            return self.get_empty_value_display()
        if not getattr(user, "kommo_user_known", False):
            return f"Kommo user {user.kommo_user_id}"
        return getattr(user, "kommo_user_name", "") or f"user {user.kommo_user_id}"  # as KommoUser's str


admin.site.unregister(User)
admin.site.register(User, PortalUserAdmin)
