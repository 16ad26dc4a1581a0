from functools import partial
from typing import Any

from django import forms
from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from unfold.admin import ModelAdmin, TabularInline
from unfold.widgets import UnfoldAdminSelectWidget

from apps.kommo.admin.mirror import ReadOnlyInline, lead_admin_section_add
from apps.kommo.models import Catalog, CustomField, CustomFieldEnum
from apps.stakeholders.models import FieldMapping, FieldMappingValue, Role, Stakeholder, StakeholderEvent
from apps.stakeholders.tasks import stakeholders_derive_account


def _rederive_later(account_ids: set[int]) -> None:
    for account_id in account_ids:
        transaction.on_commit(partial(stakeholders_derive_account.delay, account_id))


@admin.register(Role)
class RoleAdmin(ModelAdmin):
    list_display = ("label", "code", "is_decision_maker", "weight", "approval_valid_days", "sort", "active")
    list_editable = ("weight", "approval_valid_days", "sort")
    list_filter = ("active", "is_decision_maker")
    search_fields = ("label", "code")
    ordering = ("sort", "id")


def _with_current(choices: list[tuple[str, str]], current: int | None, what: str) -> list[tuple[str, str]]:
    """Keeps a stored id the mirror does not hold (yet) selectable, named as such."""
    if current is not None and str(current) not in {value for value, _ in choices}:
        choices.append((str(current), f"{what} {current} (not in the mirror)"))
    return choices


def field_choices(current: int | None) -> list[tuple[str, str]]:
    """Contact, catalog and deal custom fields of the mirror, by name."""
    catalogs: dict[tuple[int, int | None], str] = {
        (c.account_id, c.kommo_id): c.name for c in Catalog.objects.all()
    }
    kinds = [CustomField.EntityType.CONTACTS, CustomField.EntityType.CATALOGS, CustomField.EntityType.LEADS]
    fields = CustomField.objects.filter(is_deleted=False, entity_type__in=kinds).order_by(
        "entity_type", "catalog_kommo_id", "sort", "kommo_id"
    )
    choices = [("", "---------")]
    for field in fields:
        where = (
            "Contacts"
            if field.entity_type == CustomField.EntityType.CONTACTS
            else "Deals"
            if field.entity_type == CustomField.EntityType.LEADS
            else f"Catalog “{catalogs.get((field.account_id, field.catalog_kommo_id), '?')}”"
        )
        choices.append((str(field.kommo_id), f"{where} · {field.name} ({field.type})"))
    return _with_current(choices, current, "field")


def catalog_choices(current: int | None) -> list[tuple[str, str]]:
    choices = [("", "— none (contact or deal field) —")]
    choices += [(str(c.kommo_id), c.name) for c in Catalog.objects.filter(is_deleted=False).order_by("name")]
    return _with_current(choices, current, "catalog")


def option_choices(mapping: FieldMapping | None, current: int | None = None) -> list[tuple[str, str]]:
    """The options of the mapping's field (all select options when the mapping is new)."""
    options = CustomFieldEnum.objects.select_related("field").order_by("field__name", "sort", "kommo_id")
    if mapping is not None and mapping.pk:
        options = options.filter(field__account_id=mapping.account_id, field__kommo_id=mapping.field_id)
        choices = [("", "---------")] + [(str(o.kommo_id), o.value) for o in options]
    else:
        choices = [("", "---------")] + [(str(o.kommo_id), f"{o.field.name}: {o.value}") for o in options]
    return _with_current(choices, current, "option")


class FieldMappingForm(forms.ModelForm):  # type: ignore[type-arg]
    field_id = forms.TypedChoiceField(
        label="Kommo field", coerce=int, widget=UnfoldAdminSelectWidget, help_text="From the mirror."
    )
    catalog_id = forms.TypedChoiceField(
        label="Kommo catalog",
        coerce=int,
        required=False,
        empty_value=None,
        widget=UnfoldAdminSelectWidget,
        help_text="Catalog fields only.",
    )

    class Meta:
        model = FieldMapping
        fields = ("account", "attribute", "source", "field_id", "catalog_id")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["field_id"].choices = field_choices(self.instance.field_id)  # type: ignore[attr-defined]
        self.fields["catalog_id"].choices = catalog_choices(self.instance.catalog_id)  # type: ignore[attr-defined]


class FieldMappingValueInline(TabularInline):
    model = FieldMappingValue
    extra = 0
    hide_title = True  # each row's option select already names it; the title would repeat its Kommo id
    fields = ("enum_id", "role", "approval")
    autocomplete_fields = ("role",)

    def get_formset(self, request: HttpRequest, obj: FieldMapping | None = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        stored = (
            set(FieldMappingValue.objects.filter(mapping=obj).values_list("enum_id", flat=True))
            if obj
            else set()
        )
        choices = option_choices(obj)
        for enum_id in stored:
            choices = _with_current(choices, enum_id, "option")
        formset.form.base_fields["enum_id"] = forms.TypedChoiceField(
            label="Kommo option", coerce=int, choices=choices, widget=UnfoldAdminSelectWidget
        )
        return formset


@admin.register(FieldMapping)
class FieldMappingAdmin(ModelAdmin):
    form = FieldMappingForm
    list_display = ("account", "attribute", "source", "kommo_field", "kommo_catalog", "modified")
    list_filter = ("account", "attribute", "source")
    list_select_related = ("account",)
    search_fields = ("field_id", "catalog_id")
    inlines = (FieldMappingValueInline,)

    @admin.display(description="Kommo field", ordering="field_id")
    def kommo_field(self, mapping: FieldMapping) -> str:
        field = CustomField.objects.filter(account_id=mapping.account_id, kommo_id=mapping.field_id).first()
        return f"{field.name} ({mapping.field_id})" if field else f"field {mapping.field_id}"

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        """The mapping with its Kommo field's name from the mirror, so that the page's title and
        breadcrumb name the field rather than give its id."""
        mapping = super().get_object(request, object_id, from_field)
        if mapping is not None:
            mapping.kommo_field_name = (
                CustomField.objects.filter(account_id=mapping.account_id, kommo_id=mapping.field_id)
                .values_list("name", flat=True)
                .first()
            )
        return mapping

    @admin.display(description="Kommo catalog", ordering="catalog_id")
    def kommo_catalog(self, mapping: FieldMapping) -> str:
        if mapping.catalog_id is None:
            return "—"
        catalog = Catalog.objects.filter(account_id=mapping.account_id, kommo_id=mapping.catalog_id).first()
        return catalog.name if catalog else f"catalog {mapping.catalog_id}"

    # A changed mapping changes what every deal of its account derives to.

    def save_related(self, request: HttpRequest, form: ModelForm, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        _rederive_later({form.instance.account_id})

    def delete_model(self, request: HttpRequest, obj: FieldMapping) -> None:
        super().delete_model(request, obj)
        _rederive_later({obj.account_id})

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[FieldMapping]) -> None:
        account_ids = set(queryset.values_list("account_id", flat=True))
        super().delete_queryset(request, queryset)
        _rederive_later(account_ids)


@admin.register(Stakeholder)
class StakeholderAdmin(ModelAdmin):
    """Derived from the mirror: read-only here; managers change stakeholders on their deal pages."""

    list_display = ("name", "lead", "role", "approval_status", "last_touch", "source", "account", "updated")
    list_filter = ("role", "approval_status", "source", "account")
    list_select_related = ("lead", "role", "account")
    search_fields = ("name", "lead__name", "lead__kommo_id", "contact__kommo_id", "catalog_element__kommo_id")
    readonly_fields = (
        "account",
        "lead",
        "contact",
        "catalog_element",
        "role",
        "approval_status",
        "last_touch",
        "objection_weight",
        "approval_requested_at",
        "approval_decided_at",
        "objection",
        "objection_raised_at",
        "objection_resolved_at",
        "name",
        "source",
        "notes",
        "updated",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Stakeholder | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Stakeholder | None = None) -> bool:
        return False


@admin.register(StakeholderEvent)
class StakeholderEventAdmin(ModelAdmin):
    """The stakeholders' history: read-only, written by derivation alone."""

    list_display = ("at", "name", "lead", "field", "old", "new", "source", "user")
    list_filter = ("field", "source", "account")
    list_select_related = ("lead", "user")
    search_fields = ("name", "lead__name", "lead__kommo_id")
    date_hierarchy = "at"
    readonly_fields = (
        "account",
        "lead",
        "stakeholder_id",
        "name",
        "field",
        "old",
        "new",
        "at",
        "recorded_at",
        "source",
        "user",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: StakeholderEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: StakeholderEvent | None = None) -> bool:
        return False


class StakeholderInline(ReadOnlyInline):
    model = Stakeholder
    verbose_name_plural = "stakeholders"
    fields = ["name", "role", "approval_status", "last_touch", "source"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Stakeholder]:
        return super().get_queryset(request).select_related("role")


lead_admin_section_add(StakeholderInline, position=10)  # who is involved: first on the deal page
