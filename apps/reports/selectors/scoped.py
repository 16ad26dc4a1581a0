"""What the coverage, stuck-deals and gates pages need of a scope: its deals as a queryset, and the
accounts they belong to (those selectors work per account)."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet

from apps.kommo.models import KommoAccount, Lead
from apps.reports.framework import Scope


def scope_leads(scope: Scope) -> QuerySet[Lead]:
    return Lead.objects.filter(scope.deals())


def scope_accounts(scope: Scope) -> list[KommoAccount]:
    """The accounts that have deals in scope (one EXISTS per account)."""
    return list(
        KommoAccount.objects.filter(Exists(scope_leads(scope).filter(account=OuterRef("pk")))).order_by("pk")
    )


def scope_account(scope: Scope) -> KommoAccount | None:
    """The one account the filters name (by their pipeline or manager), or None for every account."""
    if scope.pipeline is not None:
        return scope.pipeline.account
    if scope.manager is not None:
        return scope.manager.account
    return None
