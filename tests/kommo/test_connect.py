"""Connecting accounts: the admin's OAuth flow and long-lived token form, kommo_connect, admin actions."""

import io
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from apps.kommo.models import KommoAccount
from tests.kommo.conftest import RECORDED_BASE_URL
from tests.kommo.payloads import payload

URL = RECORDED_BASE_URL


@pytest.fixture
def staff(admin_client):
    return admin_client


def test_connect_with_oauth_redirects_to_the_authorization_page_with_a_signed_state(staff, make_account):
    sandbox_like = make_account(base_url="http://127.0.0.1:8100", client_id="cid", access_token="")
    real = make_account(base_url="https://acme.kommo.com", client_id="cid", access_token="")

    answer = staff.get(reverse("admin:kommo_kommoaccount_connect_oauth", args=[sandbox_like.pk]))
    real_answer = staff.get(reverse("admin:kommo_kommoaccount_connect_oauth", args=[real.pk]))

    target = urlsplit(answer["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == "http://127.0.0.1:8100/oauth"
    query = parse_qs(target.query)
    assert query["client_id"] == ["cid"] and query["mode"] == ["post_message"] and query["state"][0]
    assert real_answer["Location"].startswith("https://www.kommo.com/oauth?")


def test_the_oauth_callback_exchanges_the_code_and_reads_the_account(staff, make_account, api, settings):
    settings.KOMMO_PUBLIC_URL = "https://portal.example.com"
    account = make_account(
        auth_kind=KommoAccount.AuthKind.OAUTH, client_id="cid", client_secret="csecret", access_token=""
    )
    state = parse_qs(
        urlsplit(
            staff.get(reverse("admin:kommo_kommoaccount_connect_oauth", args=[account.pk]))["Location"]
        ).query
    )["state"][0]
    api.post(f"{URL}/oauth2/access_token", json=payload("token-response.json"))
    api.get(f"{URL}/api/v4/account", json=payload("account.json"))

    answer = staff.get(
        reverse("kommo:oauth-callback"), {"code": "the-code", "state": state, "referer": "x.kommo.com"}
    )

    assert answer.status_code == 302
    assert json.loads(api.calls[0].request.body) == {
        "client_id": "cid",
        "client_secret": "csecret",
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": "https://portal.example.com/kommo/oauth/callback/",
    }
    stored = KommoAccount.objects.get(pk=account.pk)
    assert stored.access_token == payload("token-response.json")["access_token"]
    assert (stored.kommo_id, stored.subdomain) == (123123123, "yourdomain")


def test_connecting_a_long_lived_account_with_oauth_makes_it_an_oauth_account(staff, make_account, api):
    account = make_account(client_id="cid", client_secret="csecret")
    state = parse_qs(
        urlsplit(
            staff.get(reverse("admin:kommo_kommoaccount_connect_oauth", args=[account.pk]))["Location"]
        ).query
    )["state"][0]
    api.post(f"{URL}/oauth2/access_token", json=payload("token-response.json"))
    api.get(f"{URL}/api/v4/account", json=payload("account.json"))

    staff.get(reverse("kommo:oauth-callback"), {"code": "the-code", "state": state})

    stored = KommoAccount.objects.get(pk=account.pk)
    assert stored.auth_kind == KommoAccount.AuthKind.OAUTH
    assert stored.refresh_token == payload("token-response.json")["refresh_token"]


def test_a_refused_code_exchange_is_reported_and_recorded_on_the_account(staff, make_account, api):
    account = make_account(
        auth_kind=KommoAccount.AuthKind.OAUTH, client_id="cid", client_secret="csecret", access_token=""
    )
    state = parse_qs(
        urlsplit(
            staff.get(reverse("admin:kommo_kommoaccount_connect_oauth", args=[account.pk]))["Location"]
        ).query
    )["state"][0]
    api.post(f"{URL}/oauth2/access_token", status=401, json=payload("error-oauth-token-revoked.json"))

    answer = staff.get(reverse("kommo:oauth-callback"), {"code": "used-code", "state": state}, follow=True)

    assert "Connecting to Kommo failed" in answer.content.decode()
    assert answer.redirect_chain[-1][0] == reverse("admin:kommo_kommoaccount_changelist")
    stored = KommoAccount.objects.get(pk=account.pk)
    assert (
        stored.auth_error.startswith("authorization code exchange failed") and "revoked" in stored.auth_error
    )
    assert stored.access_token == "" and len(api.calls) == 1


def test_the_oauth_callback_refuses_a_forged_state(staff, account, api):
    answer = staff.get(reverse("kommo:oauth-callback"), {"code": "c", "state": "forged"}, follow=True)

    assert "state is invalid" in answer.content.decode()
    assert len(api.calls) == 0
    assert KommoAccount.objects.get(pk=account.pk).access_token == account.access_token


def test_a_long_lived_token_is_checked_before_it_is_stored(staff, make_account, api):
    account = make_account(auth_kind=KommoAccount.AuthKind.OAUTH, access_token="")
    url = reverse("admin:kommo_kommoaccount_long_lived_token", args=[account.pk])
    api.get(f"{URL}/api/v4/account", status=401, json=payload("error-401.json"))
    api.get(f"{URL}/api/v4/account", json=payload("account.json"))

    refused = staff.post(url, {"token": "bad-token"})
    accepted = staff.post(url, {"token": "good-token"})

    assert refused.status_code == 200 and "Kommo refused the token" in refused.content.decode()
    assert accepted.status_code == 302
    stored = KommoAccount.objects.get(pk=account.pk)
    assert stored.auth_kind == KommoAccount.AuthKind.LONG_LIVED and stored.access_token == "good-token"
    assert stored.kommo_id == 123123123
    assert (stored.subdomain, stored.auth_error) == ("yourdomain", "") and stored.last_verified_at
    assert len(api.calls) == 2  # each token is checked once; the answer is the verification


def test_kommo_connect_creates_the_account_once_and_prints_its_webhook_url(db, api, settings):
    settings.KOMMO_PUBLIC_URL = "https://portal.example.com"
    api.get(f"{URL}/api/v4/account", json=payload("account.json"))
    out = io.StringIO()

    call_command("kommo_connect", "--base-url", f"{URL}/", "--token", "tok-1", stdout=out)
    call_command("kommo_connect", "--base-url", URL, "--token", "tok-2", "--name", "Acme", stdout=out)

    [account] = KommoAccount.objects.all()
    assert (account.base_url, account.kommo_id, account.name) == (URL, 123123123, "Acme")
    assert account.access_token == "tok-2" and account.auth_kind == KommoAccount.AuthKind.LONG_LIVED
    assert f"https://portal.example.com/webhooks/kommo/{account.webhook_token}/" in out.getvalue()
    assert "tok-" not in out.getvalue()


def test_kommo_connect_fails_on_a_refused_token(db, api):
    api.get(f"{URL}/api/v4/account", status=401, json=payload("error-401.json"))

    with pytest.raises(CommandError):
        call_command("kommo_connect", "--base-url", URL, "--token", "bad", stdout=io.StringIO())

    assert not KommoAccount.objects.exists()


def test_the_admin_shows_health_and_never_a_token(staff, oauth_account):
    KommoAccount.objects.filter(pk=oauth_account.pk).update(auth_error="token refresh failed: revoked")

    listing = staff.get(reverse("admin:kommo_kommoaccount_changelist")).content.decode()
    page = staff.get(reverse("admin:kommo_kommoaccount_change", args=[oauth_account.pk])).content.decode()

    assert "token refresh failed: revoked" in listing and "auth error" in listing
    assert "Connect with OAuth" in page and "Use a long-lived token" in page
    for secret in ("old-access-token-aaaaaaaa", "old-refresh-token-bbbbbbbb", "client-secret-value"):
        assert secret not in listing and secret not in page


def test_saving_the_admin_form_without_a_secret_keeps_the_stored_one(staff, oauth_account):
    url = reverse("admin:kommo_kommoaccount_change", args=[oauth_account.pk])
    staff.post(
        url,
        {
            "name": "Renamed",
            "base_url": oauth_account.base_url,
            "client_id": "client-id",
            "client_secret": "",
            "redirect_uri": oauth_account.redirect_uri,
            "authorization_url": "",
            "rate_limit_per_second": "7",
        },
    )

    stored = KommoAccount.objects.get(pk=oauth_account.pk)
    assert stored.name == "Renamed" and stored.client_secret == "client-secret-value"


def test_admin_actions_reset_the_circuit_breaker_and_regenerate_the_webhook_token(staff, account):
    from django.utils import timezone

    KommoAccount.objects.filter(pk=account.pk).update(
        blocked_since=timezone.now(), blocked_reason="403 Forbidden"
    )
    changelist = reverse("admin:kommo_kommoaccount_changelist")

    staff.post(changelist, {"action": "reset_circuit_breaker", "_selected_action": [account.pk]})
    staff.post(changelist, {"action": "regenerate_webhook_token", "_selected_action": [account.pk]})

    stored = KommoAccount.objects.get(pk=account.pk)
    assert stored.blocked_since is None and stored.blocked_reason == ""
    assert stored.webhook_token != account.webhook_token and len(stored.webhook_token) >= 40


def test_a_base_url_typed_without_a_scheme_is_saved_as_https(staff, account):
    url = reverse("admin:kommo_kommoaccount_change", args=[account.pk])

    staff.post(
        url,
        {
            "name": account.name,
            "base_url": "acme.kommo.com",
            "client_id": "",
            "client_secret": "",
            "redirect_uri": "",
            "authorization_url": "",
            "rate_limit_per_second": "7",
        },
    )

    assert KommoAccount.objects.get(pk=account.pk).base_url == "https://acme.kommo.com"


def test_a_declined_authorization_is_reported_and_calls_nothing(staff, account, api):
    answer = staff.get(reverse("kommo:oauth-callback"), {"error": "access_denied"}, follow=True)

    assert "Kommo did not grant access (access_denied)" in answer.content.decode()
    assert len(api.calls) == 0


def test_the_account_form_is_built_without_the_url_scheme_deprecation_warning():
    import warnings

    from django import forms

    from apps.kommo.admin.account import KommoAccountForm
    from apps.kommo.models import KommoAccount

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        form_class = forms.modelform_factory(KommoAccount, form=KommoAccountForm, fields=["base_url"])

    assert form_class.base_fields["base_url"].assume_scheme == "https"


def test_the_account_page_buttons_lead_to_the_long_lived_token_form_and_to_kommo_s_consent(
    staff, oauth_account
):
    form = staff.get(reverse("admin:kommo_kommoaccount_long_lived_token_detail", args=[oauth_account.pk]))
    consent = staff.get(reverse("admin:kommo_kommoaccount_connect_oauth_detail", args=[oauth_account.pk]))

    assert form.status_code == 302
    assert form["Location"] == reverse("admin:kommo_kommoaccount_long_lived_token", args=[oauth_account.pk])
    assert consent.status_code == 302 and "/oauth" in consent["Location"]
