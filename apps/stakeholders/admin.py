from functools import partial
from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from unfold.admin import ModelAdmin, TabularInline

from apps.stakeholders.models import FieldMapping, FieldMappingValue, Role, Stakeholder
from apps.stakeholders.tasks import stakeholders_derive_account


def _rederive_later(account_ids: set[int]) -> None:
    for account_id in account_ids:
        transaction.on_commit(partial(stakeholders_derive_account.delay, account_id))


@admin.register(Role)
class RoleAdmin(ModelAdmin):
    list_display = ("label", "code", "is_decision_maker", "weight", "sort", "active")
    list_editable = ("weight", "sort")
    list_filter = ("active", "is_decision_maker")
    search_fields = ("label", "code")
    ordering = ("sort", "id")


class FieldMappingValueInline(TabularInline):
    model = FieldMappingValue
    extra = 0
    fields = ("enum_id", "role", "approval")
    autocomplete_fields = ("role",)


@admin.register(FieldMapping)
class FieldMappingAdmin(ModelAdmin):
    list_display = ("account", "attribute", "source", "field_id", "catalog_id", "modified")
    list_filter = ("account", "attribute", "source")
    list_select_related = ("account",)
    search_fields = ("field_id", "catalog_id")
    inlines = (FieldMappingValueInline,)

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
