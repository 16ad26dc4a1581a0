from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django import forms
from django.db.models import Q
from django.http import QueryDict
from django.utils import timezone

from apps.stakeholders.models import Approval, Role, Stakeholder


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
        that day in the portal's time zone (Kommo's date fields hold a day)."""
        day: dt.date | None = self.cleaned_data["last_touch"]
        if day is None:
            return None
        if current is not None and timezone.localdate(current) == day:
            return current
        return timezone.make_aware(dt.datetime.combine(day, dt.time.min))
