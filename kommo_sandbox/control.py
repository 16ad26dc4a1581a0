"""The sandbox admin API under ``/_sandbox/`` (``Authorization: Bearer <admin_token>``), JSON in and out.

It acts on the request's account (Host subdomain, else the default), or on ``?account=<id|subdomain>``.
Not part of Kommo: it is how tests and people configure faults and inspect the sandbox.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kommo_sandbox import faults as fault_config
from kommo_sandbox import ratelimit
from kommo_sandbox.errors import ApiError
from kommo_sandbox.http import Request, Response, as_int, json_response, no_content, problem_response
from kommo_sandbox.services.activities import mail_receive, note_repr
from kommo_sandbox.services.leads import set_deleted
from kommo_sandbox.store import DP_TRIGGERS, Account, dp_key

if TYPE_CHECKING:
    from kommo_sandbox.app import SandboxApp

JSON = "application/json"
AdminHandler = Callable[["SandboxApp", Request, Account, dict[str, Any]], Response]


def _body(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        raise ApiError(400, "Invalid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "Expected a JSON object")
    return data


def _ok(data: Any, status: int = 200) -> Response:
    return json_response(data, status, JSON)


def get_faults(app: SandboxApp, request: Request, account: Account, _: dict[str, Any]) -> Response:
    return _ok(app.store.faults.for_account(account.id).config.as_dict())


def put_faults(app: SandboxApp, request: Request, account: Account, _: dict[str, Any]) -> Response:
    faults = app.store.faults.for_account(account.id)
    try:
        config = fault_config.validate_update(faults.config, _body(request))
    except (ValueError, TypeError) as error:
        raise ApiError(400, str(error)) from None
    faults.configure(config)
    return _ok(config.as_dict())


def get_rate_limit(app: SandboxApp, request: Request, account: Account, _: dict[str, Any]) -> Response:
    return _ok({**app.limiter.config(account.id).as_dict(), "blocked": app.limiter.is_blocked(account.id)})


def put_rate_limit(app: SandboxApp, request: Request, account: Account, _: dict[str, Any]) -> Response:
    try:
        config = ratelimit.validate_update(app.limiter.config(account.id), _body(request))
    except (ValueError, TypeError) as error:
        raise ApiError(400, str(error)) from None
    app.limiter.configure(account.id, config)
    return _ok({**config.as_dict(), "blocked": app.limiter.is_blocked(account.id)})


def unblock(app: SandboxApp, request: Request, account: Account, _: dict[str, Any]) -> Response:
    app.limiter.unblock(account.id)
    return _ok({"blocked": False})


def reset(app: SandboxApp, request: Request, account: Account, _: dict[str, Any]) -> Response:
    if app.reseed is None:
        raise ApiError(400, "This sandbox has no seed to reset to")
    app.reseed(account.id)
    app.limiter.unblock(account.id)
    return _ok({"reset": True, "account_id": account.id})


def get_dp_webhooks(app: SandboxApp, request: Request, account: Account, _: dict[str, Any]) -> Response:
    with app.store.lock:
        rows = []
        for key, urls in account.dp_destinations.items():
            pipeline, status, *trigger = key.split(":")
            rows.append(
                {
                    "pipeline_id": int(pipeline),
                    "status_id": int(status),
                    "event": trigger[0] if trigger else "status",
                    "urls": list(urls),
                }
            )
    return _ok({"dp_webhooks": rows})


def put_dp_webhook(app: SandboxApp, request: Request, account: Account, _: dict[str, Any]) -> Response:
    """``{"pipeline_id", "status_id", "url"}`` adds one URL; ``"urls": [...]`` replaces the stage's list.
    ``"event"``: what the hook listens for, ``status`` (the default: moves into the stage and leads created
    there) or ``mail_in`` (incoming e-mails on the stage's leads)."""
    data = _body(request)
    pipeline_id, status_id = data.get("pipeline_id"), data.get("status_id")
    trigger = data.get("event", "status")
    with app.store.lock:
        if not isinstance(pipeline_id, int) or not isinstance(status_id, int):
            raise ApiError(400, "pipeline_id and status_id are required")
        if account.find_status(pipeline_id, status_id) is None:
            raise ApiError(400, "Unknown stage")
        if trigger not in DP_TRIGGERS:
            raise ApiError(400, f"event must be one of {', '.join(DP_TRIGGERS)}")
        key = dp_key(pipeline_id, status_id, trigger)
        if "urls" in data:
            urls = data["urls"]
            if not isinstance(urls, list) or not all(
                isinstance(u, str) and u.startswith("http") for u in urls
            ):
                raise ApiError(400, "urls must be a list of http(s) URLs")
        else:
            url = data.get("url")
            if not isinstance(url, str) or not url.startswith("http"):
                raise ApiError(400, "url must be an http(s) URL")
            urls = [*account.dp_destinations.get(key, []), url]
        if urls:
            account.dp_destinations[key] = list(dict.fromkeys(urls))
        else:
            account.dp_destinations.pop(key, None)
        app.store.touch()
        return _ok(
            {
                "pipeline_id": pipeline_id,
                "status_id": status_id,
                "event": trigger,
                "urls": account.dp_destinations.get(key, []),
            }
        )


def put_duplicate_control(app: SandboxApp, request: Request, account: Account, _: dict[str, Any]) -> Response:
    enabled = _body(request).get("enabled")
    if not isinstance(enabled, bool):
        raise ApiError(400, "enabled must be true or false")
    with app.store.lock:
        account.duplicate_control = enabled
        app.store.touch()
    return _ok({"enabled": enabled})


def get_requests(app: SandboxApp, request: Request, account: Account, _: dict[str, Any]) -> Response:
    since = as_int(request.query.get("since"), 0) or 0
    prefix = str(request.query.get("path_prefix", ""))
    entries = app.request_log.entries(account.id, since, prefix)
    return _ok({"requests": entries, "last_seq": app.request_log.last_seq})


def clear_requests(app: SandboxApp, request: Request, account: Account, _: dict[str, Any]) -> Response:
    app.request_log.clear()
    return no_content()


def webhook_deliveries(app: SandboxApp, request: Request, account: Account, _: dict[str, Any]) -> Response:
    """The webhook sender's recent attempts for the account, oldest first (``?limit=``, default 100)."""
    if app.webhook_deliveries is None:
        raise ApiError(400, "This sandbox runs without its webhook sender")
    limit = as_int(request.query.get("limit"), 100) or 100
    return _ok({"deliveries": app.webhook_deliveries(account_id=account.id, limit=limit)})


def issue_token(app: SandboxApp, request: Request, account: Account, _: dict[str, Any]) -> Response:
    """A long-lived token acting as any user of the account (``{"user_id": ...}``, default the admin)."""
    data = _body(request)
    with app.store.lock:
        user_id = data.get("user_id", account.admin_user.id)
        if user_id not in account.users:
            raise ApiError(400, "Unknown user")
    token = app.store.auth.add_long_lived(account.id, user_id)
    return _ok({"access_token": token, "account_id": account.id, "user_id": user_id})


def revoke_integration(app: SandboxApp, request: Request, account: Account, _: dict[str, Any]) -> Response:
    """The integration is disabled in the account: its OAuth tokens stop working (long-lived ones too)."""
    app.store.auth.revoke_account(account.id)
    return _ok({"revoked": True})


def lead_deleted(app: SandboxApp, request: Request, account: Account, params: dict[str, Any]) -> Response:
    data = _body(request)
    with app.store.lock:
        lead = account.leads.get(params["lead_id"])
        if lead is None:
            raise ApiError(404, "Lead not found")
        user_id = data.get("user_id", account.admin_user.id)
        if user_id not in account.users:
            raise ApiError(400, "Unknown user")
        set_deleted(app.store, account, lead, params["action"] == "delete", user_id)
        return _ok({"id": lead.id, "is_deleted": lead.is_deleted})


def mail(app: SandboxApp, request: Request, account: Account, _: dict[str, Any]) -> Response:
    """An e-mail on a deal or a contact, as Kommo's mail integration records it: ``{"lead_id"}`` or
    ``{"contact_id"}``, optional ``"income"`` (default true: received; false: sent), ``"subject"``,
    ``"from"`` / ``"to"`` (``{"email", "name"}``) and ``"created_at"`` (unix seconds, default now).
    Answers the mail note (201)."""
    data = _body(request)
    lead_id, contact_id = data.get("lead_id"), data.get("contact_id")
    if (lead_id is None) == (contact_id is None):
        raise ApiError(400, "Give exactly one of lead_id and contact_id")
    entity_type, entity_id = ("leads", lead_id) if lead_id is not None else ("contacts", contact_id)
    income = data.get("income", True)
    created_at = data.get("created_at")
    if not isinstance(income, bool):
        raise ApiError(400, "income must be true or false")
    if created_at is not None and (not isinstance(created_at, int) or isinstance(created_at, bool)):
        raise ApiError(400, "created_at must be unix seconds")
    addresses = {key: data.get(key) for key in ("from", "to")}
    for key, value in addresses.items():
        if value is not None and not (
            isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        ):
            raise ApiError(400, f"{key} must be an object of strings (email, name)")
    subject = data.get("subject", "")
    if not isinstance(subject, str):
        raise ApiError(400, "subject must be a string")
    with app.store.lock:
        if not isinstance(entity_id, int) or entity_id not in getattr(account, entity_type):
            raise ApiError(404, "Lead or contact not found")
        note = mail_receive(
            app.store,
            account,
            entity_type=entity_type,
            entity_id=entity_id,
            income=income,
            subject=subject,
            sender=addresses["from"],
            recipient=addresses["to"],
            created_at=created_at,
        )
        return _ok(note_repr(app.store, account, note), 201)


def accounts(app: SandboxApp, request: Request, account: Account, _: dict[str, Any]) -> Response:
    with app.store.lock:
        rows = [
            {
                "id": a.id,
                "name": a.name,
                "subdomain": a.subdomain,
                "default": a.id == app.store.default_account_id,
            }
            for a in app.store.accounts.values()
        ]
    return _ok({"accounts": rows})


ROUTES: list[tuple[str, re.Pattern[str], AdminHandler]] = [
    ("GET", re.compile(r"^/_sandbox/accounts/?$"), accounts),
    ("GET", re.compile(r"^/_sandbox/faults/?$"), get_faults),
    ("PUT", re.compile(r"^/_sandbox/faults/?$"), put_faults),
    ("GET", re.compile(r"^/_sandbox/rate-limit/?$"), get_rate_limit),
    ("PUT", re.compile(r"^/_sandbox/rate-limit/?$"), put_rate_limit),
    ("POST", re.compile(r"^/_sandbox/unblock/?$"), unblock),
    ("POST", re.compile(r"^/_sandbox/reset/?$"), reset),
    ("GET", re.compile(r"^/_sandbox/dp-webhooks/?$"), get_dp_webhooks),
    ("PUT", re.compile(r"^/_sandbox/dp-webhooks/?$"), put_dp_webhook),
    ("PUT", re.compile(r"^/_sandbox/duplicate-control/?$"), put_duplicate_control),
    ("POST", re.compile(r"^/_sandbox/mail/?$"), mail),
    ("GET", re.compile(r"^/_sandbox/requests/?$"), get_requests),
    ("GET", re.compile(r"^/_sandbox/webhook-deliveries/?$"), webhook_deliveries),
    ("DELETE", re.compile(r"^/_sandbox/requests/?$"), clear_requests),
    ("POST", re.compile(r"^/_sandbox/tokens/?$"), issue_token),
    ("POST", re.compile(r"^/_sandbox/revoke/?$"), revoke_integration),
    ("POST", re.compile(r"^/_sandbox/leads/(?P<lead_id>\d+)/(?P<action>delete|restore)/?$"), lead_deleted),
]


def handle(app: SandboxApp, request: Request, host_account: Account | None) -> Response:
    token = request.bearer() or ""
    if not hmac.compare_digest(token.encode(), app.admin_token.encode()):
        return problem_response(ApiError(401, "Invalid user name or password"))
    account = host_account
    if "account" in request.query:
        account = app.store.find_account(str(request.query["account"]))
    if account is None:
        raise ApiError(404, "Account not found")
    method_mismatch = False
    for method, pattern, handler in ROUTES:
        match = pattern.match(request.path)
        if not match:
            continue
        if method != request.method:
            method_mismatch = True
            continue
        params = {k: int(v) if v.isdigit() else v for k, v in match.groupdict().items()}
        return handler(app, request, account, params)
    if method_mismatch:
        return problem_response(ApiError(405, "Method Not Allowed"))
    return problem_response(ApiError(404, f"Cannot {request.method} {request.path}"))
