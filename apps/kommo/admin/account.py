"""KommoAccount in the admin: connection state at a glance, connect buttons, health actions. Tokens and
the client secret are never shown."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from unfold.admin import ModelAdmin
from unfold.decorators import action

from apps.kommo.admin.follow import admin_field_changes_follow, admin_follow
from apps.kommo.exceptions import KommoError
from apps.kommo.models.account import KommoAccount
from apps.kommo.services import accounts as account_services
from apps.kommo.services import sync as sync_services
from apps.kommo.services.sync import mirror_sync


def https_url_formfield(db_field: models.Field[Any, Any], **kwargs: Any) -> forms.Field | None:
    """Kommo only speaks HTTPS: a host typed without a scheme means https://."""
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return db_field.formfield(**kwargs)


class KommoAccountForm(forms.ModelForm):  # type: ignore[type-arg]
    client_secret = forms.CharField(
        label="OAuth client secret",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave empty to keep the stored secret.",
    )

    class Meta:
        model = KommoAccount
        # For this class, built at import; the admin builds its form through formfield_overrides below.
        # Without it, Django warns (RemovedInDjango60Warning) that the default scheme will change.
        formfield_callback = https_url_formfield
        fields = (
            "name",
            "base_url",
            "authorization_url",
            "client_id",
            "client_secret",
            "redirect_uri",
            "rate_limit_per_second",
        )

    def clean_client_secret(self) -> str:
        value: str = self.cleaned_data.get("client_secret") or ""
        return value or (self.instance.client_secret if self.instance.pk else "")


class LongLivedTokenForm(forms.Form):
    token = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        strip=True,
        help_text="Kommo → Settings → Integrations → your private integration → Keys and scopes.",
    )


@admin.register(KommoAccount)
class KommoAccountAdmin(ModelAdmin):  # type: ignore[type-arg]
    form = KommoAccountForm
    # Kommo only speaks HTTPS: a host typed without a scheme means https://.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = (
        "name",
        "subdomain",
        "kommo_id",
        "auth_kind",
        "connection_state",
        "token_expires_at",
        "short_auth_error",
        "blocked_since",
        "last_verified_at",
    )
    list_filter = ("auth_kind", ("blocked_since", admin.EmptyFieldListFilter))
    search_fields = ("name", "subdomain", "base_url")
    readonly_fields = (
        "kommo_id",
        "subdomain",
        "auth_kind",
        "connection_state",
        "token_expires_at",
        "webhook_url",
        "auth_error",
        "auth_error_at",
        "blocked_since",
        "blocked_reason",
        "last_verified_at",
    )
    fieldsets = (
        ("Account", {"classes": ["tab"], "fields": ("name", "base_url", "rate_limit_per_second")}),
        (
            "OAuth integration",
            {
                "classes": ["tab"],
                "fields": ("client_id", "client_secret", "redirect_uri", "authorization_url"),
            },
        ),
        (
            "Connection",
            {
                "classes": ["tab"],
                "fields": (
                    "auth_kind",
                    "connection_state",
                    "kommo_id",
                    "subdomain",
                    "token_expires_at",
                    "last_verified_at",
                    "webhook_url",
                ),
            },
        ),
        (
            "Health",
            {
                "classes": ["tab"],
                "fields": ("auth_error", "auth_error_at", "blocked_since", "blocked_reason"),
            },
        ),
    )
    actions = (
        "sync_now",
        "verify_connection",
        "reset_circuit_breaker",
        "regenerate_webhook_token",
        "backfill_history",
    )
    # The two ways to connect share one menu: as five buttons beside unfold's History they left the header
    # no room for the breadcrumb, which lost the account's name at 1280 px and was cut at 1440 px.
    actions_detail = (
        {"title": "Connect", "icon": "link", "items": ("connect_oauth_detail", "long_lived_token_detail")},
        "sync_now_detail",
        "backfill_history_detail",
    )

    @admin.display(description="state")
    def connection_state(self, account: KommoAccount) -> str:
        if account.is_blocked:
            return "blocked by Kommo (calls stopped)"
        if not account.is_connected:
            return "not connected"
        if account.auth_error:
            return "auth error"
        return "connected"

    @admin.display(description="auth error")
    def short_auth_error(self, account: KommoAccount) -> str:
        text = str(account.auth_error)
        return text if len(text) <= 80 else text[:79] + "…"

    @admin.display(description="webhook URL")
    def webhook_url(self, account: KommoAccount) -> str:
        return account.webhook_url if account.pk else "-"

    # -- actions ----------------------------------------------------------------------------------------

    def _sync(self, request: HttpRequest, account: KommoAccount) -> None:
        """An incremental sync of every resource, in the request; its result as one message."""
        if not account.is_connected:
            self.message_user(request, f"{account}: not connected, nothing synced.", messages.WARNING)
            return
        try:
            results = mirror_sync(account=account, follow=admin_follow)
        except KommoError as exc:
            self.message_user(request, f"{account}: sync stopped — {exc}", messages.ERROR)
            return
        lines = "; ".join(
            f"{resource} {result.created:,} created, {result.updated:,} updated, "
            f"{result.unchanged:,} unchanged"
            for resource, result in results.items()
        )
        self.message_user(request, f"{account} synced: {lines}.", messages.SUCCESS)

    @admin.action(description="Sync now (what changed in Kommo since the last sync)", permissions=["change"])
    def sync_now(self, request: HttpRequest, queryset: QuerySet[KommoAccount]) -> None:
        for account in queryset:
            self._sync(request, account)

    @action(
        description="Connect with OAuth", url_path="connect-oauth-button", permissions=["change"], icon="link"
    )
    def connect_oauth_detail(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The account page's button to Kommo's consent screen (the view below does the work)."""
        return self.connect_oauth_view(request, int(object_id))

    @action(
        description="Use a long-lived token",
        url_path="long-lived-token-button",
        permissions=["change"],
        icon="key",
    )
    def long_lived_token_detail(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The account page's button to the long-lived token form."""
        return HttpResponseRedirect(
            reverse("admin:kommo_kommoaccount_long_lived_token", args=[int(object_id)])
        )

    @action(description="Sync now", url_path="sync-now", permissions=["change"], icon="sync")
    def sync_now_detail(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The button on the account's page (unfold's detail actions are links)."""
        account = get_object_or_404(KommoAccount, pk=object_id)
        self._sync(request, account)
        return HttpResponseRedirect(self._change_url(account))

    @action(
        description="Backfill history",
        url_path="backfill-history",
        permissions=["change"],
        icon="manage_history",
    )
    def backfill_history_detail(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The button on the account's page for the action below, its result shown on the page."""
        account = get_object_or_404(KommoAccount, pk=object_id)
        self.backfill_history(request, KommoAccount.objects.filter(pk=account.pk))
        return HttpResponseRedirect(self._change_url(account))

    @admin.action(description="Verify connection (GET /api/v4/account)", permissions=["change"])
    def verify_connection(self, request: HttpRequest, queryset: QuerySet[KommoAccount]) -> None:
        for account in queryset:
            try:
                info = account_services.account_verify(account=account)
            except KommoError as exc:
                self.message_user(request, f"{account}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{account}: connected to {info.subdomain} (id {info.id}).")

    @admin.action(description="Reset circuit breaker (resume calls to Kommo)", permissions=["change"])
    def reset_circuit_breaker(self, request: HttpRequest, queryset: QuerySet[KommoAccount]) -> None:
        reset = sum(account_services.account_unblock(account=account) for account in queryset)
        self.message_user(request, f"Circuit breaker reset on {reset} account(s).")

    @admin.action(
        description="Regenerate webhook token (update the URL in Kommo afterwards)", permissions=["change"]
    )
    def regenerate_webhook_token(self, request: HttpRequest, queryset: QuerySet[KommoAccount]) -> None:
        for account in queryset:
            account_services.account_webhook_token_regenerate(account=account)
            self.message_user(request, f"{account}: new webhook URL {account.webhook_url}", messages.WARNING)

    @admin.action(description="Backfill history (past stage moves)", permissions=["change"])
    def backfill_history(self, request: HttpRequest, queryset: QuerySet[KommoAccount]) -> None:
        """Runs the backfill in the request (an interrupted one continues where it stopped); for long
        histories ``kommo_sync --history DAYS`` shows a progress bar instead."""
        for account in queryset:
            if not account.is_connected:
                self.message_user(request, f"{account}: not connected", messages.ERROR)
                continue
            try:
                result = sync_services.history_backfill(
                    account=account, field_changes_follow=admin_field_changes_follow
                )
            except KommoError as exc:
                self.message_user(
                    request, f"{account}: {exc} — run the action again to continue", messages.ERROR
                )
            else:
                resumed = " (continued an interrupted backfill)" if result.resumed else ""
                self.message_user(request, f"{account}: history backfilled{resumed}: {result.summary()}.")

    # -- connect views ----------------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<int:pk>/connect-oauth/",
                self.admin_site.admin_view(self.connect_oauth_view),
                name="kommo_kommoaccount_connect_oauth",
            ),
            path(
                "<int:pk>/long-lived-token/",
                self.admin_site.admin_view(self.long_lived_token_view),
                name="kommo_kommoaccount_long_lived_token",
            ),
        ]
        inherited: list[URLPattern] = super().get_urls()
        return own + inherited

    def _change_url(self, account: KommoAccount) -> str:
        return reverse("admin:kommo_kommoaccount_change", args=[account.pk])

    def connect_oauth_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        account = get_object_or_404(KommoAccount, pk=pk)
        if not self.has_change_permission(request, account):
            return HttpResponseRedirect(self._change_url(account))
        try:
            url = account_services.account_oauth_authorization_url(account=account)
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(self._change_url(account))
        return HttpResponseRedirect(url)

    def long_lived_token_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        account = get_object_or_404(KommoAccount, pk=pk)
        if not self.has_change_permission(request, account):
            return HttpResponseRedirect(self._change_url(account))
        form = LongLivedTokenForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                info = account_services.account_long_lived_token_set(
                    account=account, token=form.cleaned_data["token"]
                )
            except KommoError as exc:
                form.add_error("token", f"Kommo refused the token: {exc}")
            else:
                self.message_user(
                    request, f"Connected to {info.subdomain} (id {info.id}) with a long-lived token."
                )
                return HttpResponseRedirect(self._change_url(account))
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": f"Long-lived token for {account}",
            "form": form,
            "account": account,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/kommo/kommoaccount/long_lived_token.html", context)
