"""OAuth 2.0 endpoints: ``POST /oauth2/access_token`` and the authorization page ``/oauth`` (API.md §1)."""

from __future__ import annotations

import json
from html import escape
from urllib.parse import urlencode

from kommo_sandbox.auth import OAuthError
from kommo_sandbox.errors import ApiError
from kommo_sandbox.http import (
    Request,
    Response,
    html_response,
    json_response,
    problem_response,
    redirect,
)
from kommo_sandbox.pages import layout
from kommo_sandbox.store import Account, SandboxStore


def token_endpoint(store: SandboxStore, request: Request) -> Response:
    """Exchange an authorization code or a refresh token (JSON body) for a token pair."""
    if request.method != "POST":
        return problem_response(ApiError(405, "Method Not Allowed"))
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return problem_response(ApiError(400, "Request data can not be empty"))
    try:
        return json_response(store.auth.exchange(data), 200, "application/json")
    except OAuthError as error:
        return json_response(error.body(), error.status, "application/problem+json")


def _redirect_to_client(redirect_uri: str, params: dict[str, str]) -> Response:
    separator = "&" if "?" in redirect_uri else "?"
    return redirect(f"{redirect_uri}{separator}{urlencode(params)}", 302)


def authorization_page(store: SandboxStore, request: Request, account: Account) -> Response:
    """``GET /oauth?client_id=…&state=…`` shows the grant form; its POST redirects to the redirect URI.

    Approving redirects with ``code``, ``state``, ``referer`` (the host the client should call) and
    ``client_id``; declining with ``error=access_denied``.
    """
    params = request.form() if request.method == "POST" else {k: str(v) for k, v in request.query.items()}
    client_id = params.get("client_id", "")
    integration = store.auth.integrations.get(client_id)
    if integration is None:
        return html_response(layout("Unknown integration", "<p>Unknown integration (client_id).</p>"), 400)
    state = params.get("state", "")
    with store.lock:
        if request.method == "POST":
            if params.get("decision") != "allow":
                return _redirect_to_client(
                    integration.redirect_uri,
                    {"error": "access_denied", "client_id": client_id, "state": state},
                )
            chosen = store.find_account(params.get("account_id", "")) or account
            user_id = int(params.get("user_id") or chosen.admin_user.id)
            if user_id not in chosen.users:
                return html_response(layout("Unknown user", "<p>Unknown user.</p>"), 400)
            code = store.auth.issue_code(client_id, chosen.id, user_id)
            return _redirect_to_client(
                integration.redirect_uri,
                {"code": code, "state": state, "referer": request.host, "client_id": client_id},
            )
        accounts = "".join(
            f"<option value='{a.id}'{' selected' if a.id == account.id else ''}>{escape(a.name)} "
            f"({escape(a.subdomain)})</option>"
            for a in store.accounts.values()
        )
        users = "".join(
            f"<option value='{u.id}'>{escape(u.name)}{' (admin)' if u.is_admin else ''}</option>"
            for u in sorted(account.users.values(), key=lambda u: (not u.is_admin, u.id))
        )
    body = f"""
<div class="box">
  <h1>Grant access</h1>
  <p><strong>{escape(integration.name)}</strong> asks for access to your Kommo account.</p>
  <form method="post" action="/oauth">
    <input type="hidden" name="client_id" value="{escape(client_id)}">
    <input type="hidden" name="state" value="{escape(state)}">
    <p><label>Account <select name="account_id">{accounts}</select></label></p>
    <p><label>Act as <select name="user_id">{users}</select></label></p>
    <button name="decision" value="allow">Allow</button>
    <button name="decision" value="deny">Decline</button>
  </form>
</div>"""
    return html_response(layout("Grant access", body))
