"""The mirror in the admin: read-only (Kommo is the source of truth), with the last payload shown pretty
and a "resync from Kommo" action on deals, contacts and companies."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.options import InlineModelAdmin
from django.contrib.auth import get_permission_codename
from django.db.models import Model, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from unfold.admin import ModelAdmin, TabularInline
from unfold.contrib.filters.admin import RangeDateFilter, RangeNumericFilter, RelatedDropdownFilter

from apps.kommo.admin.follow import admin_follow
from apps.kommo.exceptions import KommoError
from apps.kommo.models import (
    Catalog,
    CatalogElement,
    Company,
    Contact,
    ContactChannel,
    CustomField,
    CustomFieldEnum,
    KommoAccount,
    KommoUser,
    Lead,
    LeadCatalogElement,
    LeadContact,
    Pipeline,
    StageChange,
    Status,
    SyncState,
)
from apps.kommo.services.mirror import BatchResult
from apps.kommo.services.people import manager_invite
from apps.kommo.services.sync import companies_refetch, contacts_refetch, leads_refetch
from apps.users.models import User

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


def may_operate(request: HttpRequest, opts: Any) -> bool:
    """Whether the user may run the actions of a model the admin shows read-only (resync, reprocess, retry):
    the model's change permission, which only sales ops have (docs/access.md)."""
    return bool(request.user.has_perm(f"{opts.app_label}.{get_permission_codename('change', opts)}"))


class ReadOnlyAdmin(ModelAdmin):  # type: ignore[type-arg]
    """Rows are written by the sync and webhooks only: nothing can be added, changed or deleted here. Their
    actions need the model's change permission all the same (``operate``)."""

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return may_operate(request, self.opts)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="last payload")
    def raw_pretty(self, obj: Any) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(obj.raw, indent=2, ensure_ascii=False, sort_keys=True))


class ReadOnlyInline(TabularInline):  # type: ignore[type-arg]
    extra = 0
    can_delete = False
    # The row's columns say what it is; the model's str ("29 ↔ contact 30000103") above each row does not.
    hide_title = True
    # The rows the inline shows by name: read with the inline's rows, not one query per row.
    related: list[str] = []

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        rows: QuerySet[Any] = super().get_queryset(request)
        return rows.select_related(*self.related) if self.related else rows

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _resync(
    refetch: Callable[..., BatchResult], label: str
) -> Callable[[admin.ModelAdmin, HttpRequest, QuerySet[Any]], None]:  # type: ignore[type-arg]
    """An admin action that fetches the selected rows again from Kommo (250 ids per call) and upserts them,
    followed as the sync's writes are (``admin_follow``)."""

    @admin.action(description=f"Resync selected {label} from Kommo", permissions=["operate"])
    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> None:  # type: ignore[type-arg]
        by_account: dict[int, list[int]] = defaultdict(list)
        for account_id, kommo_id in queryset.values_list("account_id", "kommo_id"):
            by_account[account_id].append(kommo_id)
        for account in KommoAccount.objects.filter(pk__in=by_account):
            try:
                result = refetch(account=account, kommo_ids=by_account[account.pk], follow=admin_follow)
            except KommoError as error:
                modeladmin.message_user(request, f"{account}: {error}", messages.ERROR)
                continue
            modeladmin.message_user(
                request,
                f"{account}: {result.updated} updated, {result.unchanged} unchanged, {result.stale} stale "
                f"of {len(by_account[account.pk])} selected",
                messages.SUCCESS,
            )

    return action


class StageListFilter(RelatedDropdownFilter):  # type: ignore[misc]
    """A filter by stage, as a dropdown: each choice names its pipeline (``Status.__str__``), so the stages
    are read with their pipelines in one query instead of one query per stage."""

    def field_choices(
        self, field: Any, request: HttpRequest, model_admin: Any
    ) -> list[tuple[str, StrOrPromise]]:
        stages = Status.objects.select_related("pipeline")
        ordering = self.field_admin_ordering(field, request, model_admin)
        if ordering:
            stages = stages.order_by(*ordering)
        return [(str(stage.pk), str(stage)) for stage in stages]


class StatusInline(ReadOnlyInline):
    model = Status
    fields = ["kommo_id", "name", "sort", "type", "is_won", "is_lost", "is_deleted"]


class PipelineAdmin(ReadOnlyAdmin):
    list_display = ["name", "kommo_id", "account", "sort", "is_main", "is_archive", "is_deleted"]
    list_filter = ["account", "is_main", "is_archive", "is_deleted"]
    search_fields = ["name", "kommo_id"]
    list_select_related = ["account"]
    inlines = [StatusInline]
    readonly_fields = ["raw_pretty"]
    exclude = ["raw"]


class StatusAdmin(ReadOnlyAdmin):
    list_display = ["name", "kommo_id", "pipeline", "sort", "type", "is_won", "is_lost", "is_deleted"]
    list_filter = ["account", "pipeline", "type", "is_won", "is_lost", "is_deleted"]
    search_fields = ["name", "kommo_id"]
    list_select_related = ["pipeline"]
    readonly_fields = ["raw_pretty"]
    exclude = ["raw"]


class KommoUserAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "email",
        "portal_user",
        "kommo_id",
        "account",
        "is_admin",
        "is_active",
        "is_deleted",
    ]
    list_filter = ["account", "is_admin", "is_active", "is_deleted"]
    search_fields = ["name", "email", "kommo_id"]
    list_select_related = ["account"]
    readonly_fields = ["raw_pretty"]
    exclude = ["raw"]
    actions = ["invite_manager"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        rows: QuerySet[Any] = super().get_queryset(request)
        portal_users = User.objects.filter(kommo_user_id=OuterRef("kommo_id")).order_by("pk")
        annotated: QuerySet[Any] = rows.annotate(
            portal_username=Subquery(portal_users.values("username")[:1])
        )
        return annotated

    @admin.display(description="portal user", ordering="portal_username")
    def portal_user(self, obj: Any) -> str:
        return str(getattr(obj, "portal_username", None) or "—")

    def has_invite_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("users.add_user"))

    @admin.action(
        description="Invite as manager (portal user, linked, one-time password link)", permissions=["invite"]
    )
    def invite_manager(self, request: HttpRequest, queryset: QuerySet[KommoUser]) -> None:
        for kommo_user in queryset:
            invitation = manager_invite(kommo_user=kommo_user)
            link = request.build_absolute_uri(invitation.password_set_path)
            if invitation.created:
                text = (
                    f"{kommo_user}: portal user “{invitation.user.username}” created in the Manager group. "
                    f"Send them this one-time link to set a password: {link}"
                )
            else:
                text = (
                    f"{kommo_user} already has the portal user “{invitation.user.username}”. "
                    f"A new one-time link to set a password: {link}"
                )
            self.message_user(request, text, messages.SUCCESS)


class CustomFieldEnumInline(ReadOnlyInline):
    model = CustomFieldEnum
    fields = ["kommo_id", "value", "sort", "code"]


class CustomFieldAdmin(ReadOnlyAdmin):
    list_display = ["name", "kommo_id", "entity_type", "type", "code", "account", "is_deleted"]
    list_filter = ["account", "entity_type", "type", "is_deleted"]
    search_fields = ["name", "code", "kommo_id"]
    list_select_related = ["account"]
    inlines = [CustomFieldEnumInline]
    readonly_fields = ["raw_pretty"]
    exclude = ["raw"]


class CatalogAdmin(ReadOnlyAdmin):
    list_display = ["name", "kommo_id", "type", "account", "updated_at", "is_deleted"]
    list_filter = ["account", "type", "is_deleted"]
    search_fields = ["name", "kommo_id"]
    list_select_related = ["account"]
    readonly_fields = ["raw_pretty"]
    exclude = ["raw"]


class CatalogElementAdmin(ReadOnlyAdmin):
    list_display = ["name", "kommo_id", "catalog", "account", "updated_at", "is_deleted"]
    list_filter = ["account", "catalog", "is_deleted"]
    search_fields = ["name", "kommo_id"]
    list_select_related = ["account", "catalog"]
    readonly_fields = ["raw_pretty"]
    exclude = ["raw"]


class CompanyAdmin(ReadOnlyAdmin):
    list_display = ["name", "kommo_id", "responsible_user", "account", "updated_at", "is_deleted"]
    list_filter = ["account", "is_deleted"]
    search_fields = ["name", "kommo_id"]
    list_select_related = ["account", "responsible_user"]
    actions = [_resync(companies_refetch, "companies")]
    readonly_fields = ["raw_pretty"]
    exclude = ["raw"]


class ContactChannelInline(ReadOnlyInline):
    model = ContactChannel
    fields = ["kind", "value"]


class ContactAdmin(ReadOnlyAdmin):
    list_display = ["name", "kommo_id", "emails", "phones", "company", "account", "updated_at", "is_deleted"]
    list_filter = ["account", "is_deleted"]
    search_fields = ["name", "kommo_id", "channels__value"]
    list_select_related = ["account", "company"]
    inlines = [ContactChannelInline]
    actions = [_resync(contacts_refetch, "contacts")]
    readonly_fields = ["raw_pretty"]
    exclude = ["raw"]


class LeadContactInline(ReadOnlyInline):
    model = LeadContact
    verbose_name_plural = "contacts on the deal"
    # Who first; the Kommo id last, for looking a contact up in Kommo.
    fields = ["contact", "is_main", "contact_kommo_id"]
    related = ["contact"]


@admin.display(description="catalog")
def lead_element_catalog(link: LeadCatalogElement) -> str:
    """The catalog by its name, when the mirror holds it."""
    catalog = link.element.catalog if link.element is not None else None
    return catalog.name if catalog is not None else f"catalog {link.catalog_kommo_id or '—'}"


class LeadCatalogElementInline(ReadOnlyInline):
    model = LeadCatalogElement
    verbose_name_plural = "catalog elements on the deal"
    fields = ["element", lead_element_catalog, "quantity", "element_kommo_id"]
    readonly_fields = [lead_element_catalog]
    related = ["element__catalog"]


@admin.display(description="moved by")
def stage_change_mover(change: StageChange) -> str:
    """Who moved the deal: the portal for its own moves back (reported by the gates), whatever Kommo user's
    token it wrote with, else the Kommo user Kommo names."""
    if change.source == StageChange.Source.GATE or StageChange.Source.GATE in (change.sources or []):
        return "The portal (gate)"
    return str(change.moved_by) if change.moved_by is not None else "—"


@admin.display(description="reported by")
def stage_change_reporters(change: StageChange) -> str:
    """Every source that reported the move, in words ("Webhook, Events"), not the stored list."""
    labels = dict(StageChange.Source.choices)
    return ", ".join(str(labels.get(source, source)) for source in (change.sources or [change.source]))


class StageChangeInline(ReadOnlyInline):
    model = StageChange
    verbose_name_plural = "stage history"
    fk_name = "lead"
    fields = ["at", "from_status", "to_status", stage_change_mover, stage_change_reporters, "kommo_event_id"]
    readonly_fields = [stage_change_mover, stage_change_reporters]
    related = ["from_status__pipeline", "to_status__pipeline", "moved_by"]


# Sections the apps above the boundary add to the deal page (what they know of a deal: its stakeholders,
# gate decisions, escalations), each an inline with its place among the page's own: the page is kommo's,
# they add to it rather than replace it (``lead_admin_section_add``).
_LEAD_SECTIONS: list[tuple[int, type[InlineModelAdmin]]] = [  # type: ignore[type-arg]
    (100, StageChangeInline),
    (110, LeadContactInline),
    (120, LeadCatalogElementInline),
]


def lead_admin_section_add(inline: type[InlineModelAdmin], *, position: int) -> None:  # type: ignore[type-arg]
    """Add ``inline`` to the deal page at ``position``: sections are shown by position, the page's own
    ones at 100 (stage history), 110 (contacts) and 120 (catalog elements). Adding it again is a no-op."""
    if all(added is not inline for _, added in _LEAD_SECTIONS):
        _LEAD_SECTIONS.append((position, inline))
        _LEAD_SECTIONS.sort(key=lambda section: section[0])


class LeadAdmin(ReadOnlyAdmin):
    """The deal page: the sections other apps add first (who is involved, what the gates decided), then
    the stage history and the mirror's links; the last payload from Kommo collapsed at the bottom."""

    list_display = [
        "name",
        "kommo_id",
        "status",
        "value",
        "responsible_user",
        "account",
        "updated_at",
        "closed_at",
        "is_deleted",
    ]
    list_filter = [
        ("account", RelatedDropdownFilter),
        ("pipeline", RelatedDropdownFilter),
        ("status", StageListFilter),
        ("price", RangeNumericFilter),
        ("updated_at", RangeDateFilter),
        "is_deleted",
    ]
    list_filter_submit = True
    search_fields = [
        "name",
        "kommo_id",
        "contact_links__contact__name",
        "contact_links__contact__channels__value",
    ]
    list_select_related = ["account", "status", "status__pipeline", "responsible_user"]
    date_hierarchy = "updated_at"
    actions = [_resync(leads_refetch, "deals")]
    exclude = ["raw"]
    # The deal in a few rows, then the sections (stakeholders, gate decisions, stage history, …); the Kommo
    # ids folded at the very bottom with the last payload (the template places the "bottom" fieldsets
    # after the sections).
    change_form_template = "admin/kommo/lead/change_form.html"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    ("value", "status"),
                    ("responsible_user", "company", "account"),
                    ("created_at", "updated_at", "closed_at"),
                ]
            },
        ),
        (
            "Kommo ids and sync",
            {
                "classes": ["collapse", "bottom"],
                "fields": [
                    "fetched_at",
                    "kommo_id",
                    "pipeline",
                    "pipeline_kommo_id",
                    "status_kommo_id",
                    "responsible_user_kommo_id",
                    "company_kommo_id",
                    "loss_reason_kommo_id",
                    "is_deleted",
                    "deleted_at",
                ],
            },
        ),
    ]
    change_form_after_template = "admin/kommo/lead/raw_payload.html"

    @admin.display(description="price", ordering="price")
    def value(self, lead: Lead) -> str:
        """Kommo's price with the thousands separator, as the managers' pages show it ("80,000")."""
        return f"{lead.price:,}"

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> list[type[InlineModelAdmin]]:  # type: ignore[type-arg]
        return [inline for _, inline in _LEAD_SECTIONS]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        lead = Lead.objects.filter(pk=object_id).only("raw").first()
        raw = json.dumps(lead.raw, indent=2, ensure_ascii=False, sort_keys=True) if lead else ""
        response: HttpResponse = super().change_view(
            request, object_id, form_url, {**(extra_context or {}), "raw_payload": raw}
        )
        return response


class StageChangeAdmin(ReadOnlyAdmin):
    list_display = [
        "lead",
        "from_status",
        "to_status",
        "at",
        "at_is_exact",
        "source",
        stage_change_mover,
        "kommo_event_id",
    ]
    list_filter = ["account", "source", "at_is_exact"]
    search_fields = ["lead__name", "lead__kommo_id", "kommo_event_id"]
    list_select_related = ["lead", "from_status__pipeline", "to_status__pipeline", "moved_by"]
    date_hierarchy = "at"


class SyncStateAdmin(ReadOnlyAdmin):
    list_display = [
        "resource",
        "account",
        "started_at",
        "finished_at",
        "last_full_at",
        "seen",
        "calls",
        "modified",
    ]
    list_filter = ["account", "resource"]
    search_fields = ["resource"]
    list_select_related = ["account"]


MIRROR_ADMINS: Iterable[tuple[type[Model], type[admin.ModelAdmin]]] = (  # type: ignore[type-arg]
    (Pipeline, PipelineAdmin),
    (Status, StatusAdmin),
    (KommoUser, KommoUserAdmin),
    (CustomField, CustomFieldAdmin),
    (Catalog, CatalogAdmin),
    (CatalogElement, CatalogElementAdmin),
    (Company, CompanyAdmin),
    (Contact, ContactAdmin),
    (Lead, LeadAdmin),
    (StageChange, StageChangeAdmin),
    (SyncState, SyncStateAdmin),
)
for _model, _options in MIRROR_ADMINS:
    admin.site.register(_model, _options)
