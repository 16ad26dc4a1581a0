"""The OAuth callback: Kommo sends the admin's browser here after access was granted (or declined)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from apps.kommo.exceptions import KommoError
from apps.kommo.services import accounts as account_services


@staff_member_required
def oauth_callback(request: HttpRequest) -> HttpResponse:
    code, state = request.GET.get("code", ""), request.GET.get("state", "")
    if request.GET.get("error") or not code or not state:
        messages.error(request, f"Kommo did not grant access ({request.GET.get('error') or 'no code'}).")
        return HttpResponseRedirect(reverse("admin:kommo_kommoaccount_changelist"))
    try:
        account = account_services.account_oauth_complete(state=state, code=code)
    except KommoError as exc:
        messages.error(request, f"Connecting to Kommo failed: {exc}")
        return HttpResponseRedirect(reverse("admin:kommo_kommoaccount_changelist"))
    messages.success(request, f"Connected to Kommo account {account.subdomain or account.kommo_id}.")
    return HttpResponseRedirect(reverse("admin:kommo_kommoaccount_change", args=[account.pk]))
