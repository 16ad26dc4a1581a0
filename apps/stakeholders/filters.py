"""The deal list's search, filters and sort (django-filter), with the filters the apps above contribute
(:mod:`apps.stakeholders.panels`)."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import Exists, OuterRef, Q, QuerySet

from apps.kommo.models.mirror import Lead, LeadContact, Status
from apps.stakeholders.models import Stakeholder
from apps.stakeholders.panels import DealListFilter, deal_list_filters

# unfold's input look (docs/ui.md)
INPUT_CLASS = "border border-base-200 bg-white px-3 py-2 rounded-default"

SORTS = {
    "": ("Latest change", ("-updated_at", "-id")),
    "-value": ("Value: highest first", ("-price", "-id")),
    "value": ("Value: lowest first", ("price", "id")),
    "-days": ("Days in stage: most first", ("stage_entered_at", "id")),
    "days": ("Days in stage: fewest first", ("-stage_entered_at", "-id")),
}


def _stages(request: object) -> QuerySet[Status]:
    return (
        Status.objects.filter(is_deleted=False, pipeline__is_deleted=False)
        .select_related("pipeline")
        .order_by("pipeline__sort", "pipeline_id", "sort", "id")
    )


class StageChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Status) -> str:
        return f"{obj.name} · {obj.pipeline.name}"


class StageFilter(django_filters.ModelChoiceFilter):
    field_class = StageChoiceField


class DealFilterSet(django_filters.FilterSet):
    """``q`` searches the deal's name, its company and its contacts' names; ``stage``; ``no_decision_maker``;
    ``sort``; then one checkbox per filter registered by the apps above (``blocked``, ``stuck``, …)."""

    q = django_filters.CharFilter(method="search", label="Search")
    stage = StageFilter(field_name="status", queryset=_stages, label="Stage", empty_label="Any stage")
    no_decision_maker = django_filters.BooleanFilter(
        method="without_decision_maker", label="Without a decision maker", widget=forms.CheckboxInput
    )
    sort = django_filters.ChoiceFilter(
        method="sort_by",
        label="Sort",
        choices=[(key, label) for key, (label, _) in SORTS.items() if key],
        empty_label=SORTS[""][0],
    )

    class Meta:
        model = Lead
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for contributed in deal_list_filters():
            extra = django_filters.BooleanFilter(
                method=_narrowing(contributed), label=contributed.label, widget=forms.CheckboxInput
            )
            extra.parent = self
            self.filters[contributed.name] = extra
        for name, filter_ in self.filters.items():
            widget = filter_.extra.get("widget")
            if widget is not forms.CheckboxInput:
                filter_.extra["widget"] = filter_.field_class.widget(attrs={"class": INPUT_CLASS})
            if name == "q":
                filter_.extra["widget"] = forms.TextInput(
                    attrs={"class": INPUT_CLASS, "placeholder": "Deal, company or contact", "type": "search"}
                )

    def search(self, queryset: QuerySet[Lead], name: str, value: str) -> QuerySet[Lead]:
        words = value.split()
        for word in words:
            contact = LeadContact.objects.filter(
                lead=OuterRef("pk"), contact__name__icontains=word, contact__is_deleted=False
            )
            queryset = queryset.filter(
                Q(name__icontains=word) | Q(company__name__icontains=word) | Exists(contact)
            )
        return queryset

    def without_decision_maker(self, queryset: QuerySet[Lead], name: str, value: bool) -> QuerySet[Lead]:
        if not value:
            return queryset
        decision_maker = Stakeholder.objects.filter(lead=OuterRef("pk"), role__is_decision_maker=True)
        return queryset.filter(~Exists(decision_maker))

    def sort_by(self, queryset: QuerySet[Lead], name: str, value: str) -> QuerySet[Lead]:
        return queryset.order_by(*SORTS.get(value, SORTS[""])[1])


def _narrowing(contributed: DealListFilter) -> Any:
    def narrow(queryset: QuerySet[Lead], name: str, value: bool) -> QuerySet[Lead]:
        return contributed.narrow(queryset) if value else queryset

    return narrow
