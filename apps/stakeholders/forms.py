from __future__ import annotations

import datetime as dt

from django import forms
from django.http import QueryDict
from django.utils import timezone

from apps.stakeholders.models import Approval, Role, Stakeholder


class StakeholderForm(forms.Form):
    """A manager's change to one stakeholder: role, approval and the day of the last touch."""

    role = forms.ModelChoiceField(queryset=Role.objects.none(), required=False, empty_label="— no role —")
    approval_status = forms.ChoiceField(label="Approval", choices=Approval.choices)
    last_touch = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, data: QueryDict | None = None, *, stakeholder: Stakeholder) -> None:
        initial = {
            "role": stakeholder.role_id,
            "approval_status": stakeholder.approval_status,
            "last_touch": timezone.localdate(stakeholder.last_touch) if stakeholder.last_touch else None,
        }
        super().__init__(data, initial=initial, prefix=f"s{stakeholder.pk}")
        roles = Role.objects.filter(active=True)
        if stakeholder.role_id is not None:
            roles = roles | Role.objects.filter(pk=stakeholder.role_id)
        self.fields["role"].queryset = roles.order_by("sort", "id")  # type: ignore[attr-defined]
        self.stakeholder = stakeholder

    def last_touch_moment(self, current: dt.datetime | None) -> dt.datetime | None:
        """The chosen day as a moment: the current moment when the day did not change, else midnight of
        that day in the portal's time zone (Kommo's date fields hold a day)."""
        day: dt.date | None = self.cleaned_data["last_touch"]
        if day is None:
            return None
        if current is not None and timezone.localdate(current) == day:
            return current
        return timezone.make_aware(dt.datetime.combine(day, dt.time.min))
