"""The reports framework: who sees what (the scope), the filter form, and what a report page is.

A report is a function registered with :func:`report_register` that takes a :class:`Scope` and returns
:class:`Table` objects — columns (each with the one line that says how it is computed), rows of plain
values, and a :class:`Chart` drawn from some of the columns. One view and one template render every report
(filters, chart, accessible table, definitions, CSV download); see docs/reports.md, "Adding a report".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.db.models import Q
from django.utils import timezone

from apps.kommo.models.mirror import KommoUser, Lead, Pipeline
from apps.users.models import User

# -- who sees what ---------------------------------------------------------------------------------------


def user_sees_every_deal_in_reports(user: User) -> bool:
    """The head of sales and sales ops (the permission ``reports.view_reports``) and superusers."""
    return user.is_superuser or user.has_perm("reports.view_reports")


def user_may_see_reports(user: User) -> bool:
    """Those who see every deal, and managers (their own deals)."""
    return user_sees_every_deal_in_reports(user) or user.in_group(User.Group.MANAGER)


@dataclass(frozen=True)
class Scope:
    """What one report request covers: the period ``[start, end)``, an optional pipeline and responsible
    manager, and — for a manager — only their own deals (``own_kommo_user_id``; a manager with no Kommo
    user sees no deal). ``now`` is the moment open stays are aged to."""

    start: dt.datetime
    end: dt.datetime
    now: dt.datetime
    pipeline: Pipeline | None = None
    manager: KommoUser | None = None
    restricted: bool = False
    own_kommo_user_id: int | None = None
    period_label: str = ""

    @property
    def until(self) -> dt.datetime:
        """The end of the period, or now when the period has not ended yet."""
        return min(self.end, self.now)

    def deals(self, prefix: str = "", *, join: bool = True) -> Q:
        """The deals in scope (not deleted, in the pipeline, of the manager), as a filter on the Lead model
        (``prefix=""``) or on a model that points at it (``prefix="lead__"``).

        ``join=False`` (with a prefix) leaves the deleted deals out by their list (``NOT IN``, a handful of
        rows read from their own index) rather than by each deal's flag, for a query that reads nothing
        else of the deals: joined for the flag alone, the deals table was read whole (every deal of the
        history) to filter the period's rows."""
        if prefix and not join:
            q = ~Q(**{f"{prefix}in": Lead.objects.filter(is_deleted=True).values("pk")})
        else:
            q = Q(**{f"{prefix}is_deleted": False})
        if self.pipeline is not None:
            q &= Q(**{f"{prefix}pipeline_kommo_id": self.pipeline.kommo_id}) & Q(
                **{f"{prefix}account_id": self.pipeline.account_id}
            )
        if self.manager is not None:
            q &= Q(**{f"{prefix}responsible_user_kommo_id": self.manager.kommo_id}) & Q(
                **{f"{prefix}account_id": self.manager.account_id}
            )
        if self.restricted:
            q &= Q(**{f"{prefix}responsible_user_kommo_id": self.own_kommo_user_id or -1})
        return q

    def stays(self, *, join: bool = True) -> Q:
        """Stage stays of the deals in scope, in the pipeline when one is chosen (``join``: as ``deals``)."""
        q = self.deals("lead__", join=join)
        if self.pipeline is not None:
            q &= Q(pipeline_id=self.pipeline.pk)
        return q


# -- periods and the filter form -----------------------------------------------------------------------


def _quarter_start(day: dt.date) -> dt.date:
    return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


PERIODS = {
    "this_quarter": "This quarter",
    "last_quarter": "Last quarter",
    "this_year": "This year",
    "last_12_months": "Last 12 months",
    "custom": "From … to …",
}


def period_bounds(
    period: str, today: dt.date, start: dt.date | None = None, end: dt.date | None = None
) -> tuple[dt.date, dt.date]:
    """The first day and the day after the last of a named period (``custom``: ``start``..``end``)."""
    if period == "last_quarter":
        this = _quarter_start(today)
        return _add_months(this, -3), this
    if period == "this_year":
        return dt.date(today.year, 1, 1), dt.date(today.year + 1, 1, 1)
    if period == "last_12_months":
        return _add_months(today.replace(day=1), -11), _add_months(today.replace(day=1), 1)
    if period == "custom" and start is not None:
        return start, (end or today) + dt.timedelta(days=1)
    first = _quarter_start(today)
    return first, _add_months(first, 3)


class ReportFilterForm(forms.Form):
    pipeline = forms.ModelChoiceField(
        queryset=Pipeline.objects.none(), required=False, empty_label="All pipelines"
    )
    manager = forms.ModelChoiceField(
        queryset=KommoUser.objects.none(), required=False, empty_label="All managers"
    )
    period = forms.ChoiceField(choices=list(PERIODS.items()), required=False, initial="this_quarter")
    start = forms.DateField(required=False, label="from", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, label="to", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, restricted: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pipelines = Pipeline.objects.filter(is_deleted=False, is_archive=False).order_by(
            "account", "sort", "pk"
        )
        self.fields["pipeline"].queryset = pipelines  # type: ignore[attr-defined]
        self.fields["manager"].queryset = KommoUser.objects.filter(is_deleted=False).order_by("name", "pk")  # type: ignore[attr-defined]
        if restricted:
            del self.fields["manager"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end and end < start:
            raise forms.ValidationError("The period ends before it starts.")
        return data


def scope_for(user: User, params: Any, *, now: dt.datetime | None = None) -> tuple[Scope, ReportFilterForm]:
    """The scope a signed-in person asked for with the query ``params`` (invalid filters are ignored)."""
    now = now or timezone.now()
    restricted = not user_sees_every_deal_in_reports(user)
    form = ReportFilterForm(params or None, restricted=restricted)
    data = form.cleaned_data if form.is_valid() else {}
    period = data.get("period") or "this_quarter"
    if period == "custom" and not data.get("start"):
        period = "this_quarter"
    today = timezone.localtime(now).date()
    first, after = period_bounds(period, today, data.get("start"), data.get("end"))
    label = PERIODS[period] if period != "custom" else ""
    shown_end = after - dt.timedelta(days=1)
    label = (
        f"{label} ({first:%d %b %Y} to {shown_end:%d %b %Y})".strip()
        if label
        else f"{first:%d %b %Y} to {shown_end:%d %b %Y}"
    )
    tz = timezone.get_current_timezone()
    scope = Scope(
        start=dt.datetime.combine(first, dt.time.min, tzinfo=tz),
        end=dt.datetime.combine(after, dt.time.min, tzinfo=tz),
        now=now,
        pipeline=data.get("pipeline"),
        manager=data.get("manager"),
        restricted=restricted,
        own_kommo_user_id=user.kommo_user_id,
        period_label=label,
    )
    return scope, form


# -- what a report returns -------------------------------------------------------------------------------


class Kind:
    """How a column's values are shown (and written to CSV)."""

    TEXT = "text"
    COUNT = "count"
    MONEY = "money"
    PERCENT = "percent"
    DAYS = "days"
    LINK = "link"  # an address: a link on the page, the address itself in the CSV


def cell_text(value: Any, kind: str) -> str:
    """A value as the table and the CSV show it: numbers plain (no thousands separators), percentages and
    days to one decimal, an absent value as an empty cell."""
    if value is None or value == "":
        return ""
    if kind in (Kind.COUNT, Kind.MONEY):
        return str(round(value))
    if kind in (Kind.PERCENT, Kind.DAYS):
        return f"{float(value):.1f}"
    return str(value)


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = Kind.TEXT
    definition: str = ""

    @property
    def numeric(self) -> bool:
        return self.kind not in (Kind.TEXT, Kind.LINK)


@dataclass(frozen=True)
class Chart:
    """A Chart.js chart of some columns of a table: ``labels`` names the column that labels the points,
    ``series`` the numeric columns drawn. ``kind``: bar, line or doughnut; ``horizontal`` bars."""

    labels: str
    series: Sequence[str]
    description: str
    kind: str = "bar"
    horizontal: bool = False
    stacked: bool = False


@dataclass
class Table:
    """One table of a report page. ``rows`` are dicts keyed by column key; a row may carry ``href``, a link
    for its first cell. ``notes`` are further one-line explanations shown under the table."""

    key: str
    title: str
    columns: Sequence[Column]
    rows: list[dict[str, Any]]
    chart: Chart | None = None
    notes: Sequence[str] = ()
    empty: str = "No deals match these filters."
    alert: str = ""  # a warning shown above the chart and table (figures stale or being computed)

    def text_rows(self) -> list[list[str]]:
        """The cells as the table and the CSV show them."""
        return [[cell_text(row.get(column.key), column.kind) for column in self.columns] for row in self.rows]

    def cells_and_rows(self) -> list[tuple[list[tuple[str, Column]], dict[str, Any]]]:
        """Each row's cells with their column (how to align and whether to link them), and the row."""
        return [
            (list(zip(cells, self.columns, strict=True)), row)
            for cells, row in zip(self.text_rows(), self.rows, strict=True)
        ]

    @property
    def chart_id(self) -> str:
        return f"chart-{self.key}"

    def chart_data(self) -> dict[str, Any] | None:
        if self.chart is None or not self.rows:
            return None
        by_key = {column.key: column for column in self.columns}
        return {
            "type": self.chart.kind,
            "horizontal": self.chart.horizontal,
            "stacked": self.chart.stacked,
            "labels": [str(row.get(self.chart.labels) or "—") for row in self.rows],
            "datasets": [
                {
                    "label": by_key[key].label,
                    "data": [None if row.get(key) is None else float(row[key]) for row in self.rows],
                }
                for key in self.chart.series
            ],
        }


@dataclass(frozen=True)
class Report:
    slug: str
    title: str
    summary: str
    build: Callable[[Scope], list[Table]]
    order: int = 100


REPORTS: dict[str, Report] = {}


def report_register(
    *, slug: str, title: str, summary: str, order: int = 100
) -> Callable[[Callable[[Scope], list[Table]]], Callable[[Scope], list[Table]]]:
    """Register a report page at ``/reports/<slug>/``: decorate its build function (scope → tables)."""

    def register(build: Callable[[Scope], list[Table]]) -> Callable[[Scope], list[Table]]:
        if slug in REPORTS and REPORTS[slug].build is not build:
            raise ValueError(f"a report is already registered as {slug!r}")
        REPORTS[slug] = Report(slug=slug, title=title, summary=summary, build=build, order=order)
        return build

    return register


def reports_listed() -> list[Report]:
    return sorted(REPORTS.values(), key=lambda report: (report.order, report.title))
