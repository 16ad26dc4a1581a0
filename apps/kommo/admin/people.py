"""The user form in the admin picks the Kommo user a person works as from the mirror, instead of a typed
Kommo id. It lives here, above apps.users, because the choices come from the Kommo mirror."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
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

    @admin.display(description="Kommo user", ordering="kommo_user_id")
    def kommo_user(self, user: User) -> str:
        if user.kommo_user_id is None:
            return self.get_empty_value_display()
        found = KommoUser.objects.filter(kommo_id=user.kommo_user_id).order_by("pk").first()
        return str(found) if found else f"Kommo user {user.kommo_user_id}"


admin.site.unregister(User)
admin.site.register(User, PortalUserAdmin)
