from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from django import forms
from django.db.models import Q
from django.http import QueryDict
from django.utils import timezone

from apps.kommo.models.mirror import Contact
from apps.stakeholders.models import Approval, Role, Stakeholder
from apps.stakeholders.wording import name_key


class StakeholderForm(forms.Form):
    """A manager's change to one stakeholder: role, approval and the day of the last touch.

    The roles offered are the active ones, plus the stakeholder's own when it is no longer active. A page
    showing many forms passes ``roles`` (every role, in order) so that their options cost one query, not
    one per form; a submitted form is still checked against the database."""

    role = forms.ModelChoiceField(queryset=Role.objects.none(), required=False, empty_label="— no role —")
    approval_status = forms.ChoiceField(label="Approval", choices=Approval.choices)
    last_touch = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(
        self,
        data: QueryDict | None = None,
        *,
        stakeholder: Stakeholder,
        roles: Sequence[Role] | None = None,
    ) -> None:
        initial = {
            "role": stakeholder.role_id,
            "approval_status": stakeholder.approval_status,
            "last_touch": timezone.localdate(stakeholder.last_touch) if stakeholder.last_touch else None,
        }
        super().__init__(data, initial=initial, prefix=f"s{stakeholder.pk}")
        field: forms.ModelChoiceField = self.fields["role"]  # type: ignore[assignment]
        field.queryset = Role.objects.filter(Q(active=True) | Q(pk=stakeholder.role_id)).order_by(
            "sort", "id"
        )
        if roles is not None:
            field.choices = [
                ("", field.empty_label),
                *((role.pk, str(role)) for role in roles if role.active or role.pk == stakeholder.role_id),
            ]
        self.stakeholder = stakeholder

    def last_touch_moment(self, current: dt.datetime | None) -> dt.datetime | None:
        """The chosen day as a moment: the current moment when the day did not change, else midnight of
        that day in the portal's time zone (Kommo's date fields hold a day). A new approval is a touch: when
        the approval changed and the day was left as it was, it is now."""
        day: dt.date | None = self.cleaned_data["last_touch"]
        unchanged_day = day == (timezone.localdate(current) if current is not None else None)
        if self.cleaned_data["approval_status"] != self.stakeholder.approval_status and unchanged_day:
            return timezone.now()
        if day is None:
            return None
        if current is not None and timezone.localdate(current) == day:
            return current
        return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


class ObjectionForm(forms.Form):
    """A manager raises or edits a stakeholder's objection: what it is and how much it weighs."""

    objection = forms.CharField(
        label="Objection",
        required=False,
        max_length=2000,
        widget=forms.TextInput(attrs={"class": "objection-text", "placeholder": "What they object to"}),
    )
    objection_weight = forms.DecimalField(
        label="Weight",
        required=False,
        min_value=0,
        max_digits=10,
        decimal_places=2,
        widget=forms.NumberInput(attrs={"step": "0.1", "class": "weight"}),
    )

    def __init__(self, data: QueryDict | None = None, *, stakeholder: Stakeholder) -> None:
        initial = {"objection": stakeholder.objection, "objection_weight": stakeholder.objection_weight}
        super().__init__(data, initial=initial, prefix=f"o{stakeholder.pk}")
        self.stakeholder = stakeholder

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not (data.get("objection") or "").strip() and data.get("objection_weight") is None:
            raise forms.ValidationError("Say what the objection is, or how much it weighs.")
        return data


class AddStakeholderForm(forms.Form):
    """A manager adds a person to a deal: one of its contacts not yet a stakeholder, or a new person kept as
    a Kommo contact or as a "Stakeholders" element."""

    NEW_CONTACT = "new_contact"
    NEW_ELEMENT = "new_element"

    person = forms.ChoiceField(label="Who")
    name = forms.CharField(label="Name of a new person", max_length=255, required=False)
    role = forms.ModelChoiceField(queryset=Role.objects.filter(active=True).order_by("sort", "id"))
    approval_status = forms.ChoiceField(label="Approval", choices=Approval.choices, initial=Approval.PENDING)

    def __init__(
        self, data: QueryDict | None = None, *, contacts: Sequence[Contact], taken_names: Iterable[str] = ()
    ) -> None:
        super().__init__(data, prefix="add")
        self.contacts = {str(contact.pk): contact for contact in contacts}
        # The deal's stakeholders by name: a new person of the same name is the same person added again (a
        # second click, a colleague's add), and would be a second stakeholder for one person.
        self.taken_names = {name_key(name) for name in taken_names if name}
        field: forms.ChoiceField = self.fields["person"]  # type: ignore[assignment]
        field.choices = [
            *(
                (
                    f"contact:{pk}",
                    f"{contact.name or 'Contact ' + str(contact.kommo_id)} (contact on this deal)",
                )
                for pk, contact in self.contacts.items()
            ),
            (self.NEW_CONTACT, "A new person, as a Kommo contact"),
            (self.NEW_ELEMENT, "A new person, as a Stakeholders element only"),
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        person = data.get("person", "")
        name = (data.get("name") or "").strip()
        if person in (self.NEW_CONTACT, self.NEW_ELEMENT):
            if not name:
                self.add_error("name", "Give the new person's name.")
            elif name_key(name) in self.taken_names:
                self.add_error(
                    "name",
                    f"{name} is already a stakeholder of this deal: change their role or approval above "
                    "instead.",
                )
        return data

    @property
    def contact(self) -> Contact | None:
        person: str = self.cleaned_data["person"]
        return self.contacts.get(person.removeprefix("contact:")) if person.startswith("contact:") else None
