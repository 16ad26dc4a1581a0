"""The sandbox's WSGI application: Kommo's API under ``/api/v4``, OAuth, the board and the admin API.

A request to ``/api/v4`` goes through, in order: the account (by Host subdomain, else the default one),
the 403 block, Bearer authentication, the rate limiter, fault injection (latency, timeouts, 5xx, 429),
then the route. Handlers run under the store's lock, so every request sees and leaves a consistent state.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from kommo_sandbox import board, control, oauth
from kommo_sandbox.api import account as account_api
from kommo_sandbox.api import activities as activities_api
from kommo_sandbox.api import catalogs as catalogs_api
from kommo_sandbox.api import crm as crm_api
from kommo_sandbox.api import setup as setup_api
from kommo_sandbox.api.base import Context
from kommo_sandbox.errors import ApiError
from kommo_sandbox.http import (
    HTML,
    Request,
    Response,
    Router,
    html_response,
    json_response,
    problem_response,
    redirect,
)
from kommo_sandbox.pages import gateway_page
from kommo_sandbox.ratelimit import RateLimiter
from kommo_sandbox.requestlog import RequestLog
from kommo_sandbox.store import Account, SandboxStore

logger = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def build_api_router() -> Router:
    router = Router()
    for module in (setup_api, catalogs_api, activities_api, crm_api, account_api):
        module.register(router)
    return router


def unauthorized() -> Response:
    return problem_response(ApiError(401, "Invalid user name or password"))


def internal_error() -> Response:
    """``samples/error-500.json``: no ``type``, a ``trace_id``."""
    body = {
        "title": "ErrInternalServer",
        "status": 500,
        "detail": "Our team are probably already working on the elimination of the problem",
        "trace_id": str(uuid.uuid4()),
    }
    return json_response(body, 500, "application/problem+json")


class SandboxApp:
    """The WSGI callable. ``reseed(account_id)`` restores an account to its seed (admin ``POST /reset``)."""

    def __init__(
        self,
        store: SandboxStore,
        admin_token: str,
        reseed: Callable[[int], None] | None = None,
        limiter: RateLimiter | None = None,
        request_log: RequestLog | None = None,
    ) -> None:
        self.store = store
        self.admin_token = admin_token
        self.reseed = reseed
        self.limiter = limiter or RateLimiter()
        self.request_log = request_log or RequestLog()
        self.stopping = threading.Event()  # set on shutdown: held requests (timeouts, latency) end at once
        # The webhook sender's delivery log, when the server runs one (``GET /_sandbox/webhook-deliveries``).
        self.webhook_deliveries: Callable[..., list[dict[str, Any]]] | None = None
        self.api_router = build_api_router()

    # --- WSGI ---------------------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        request_id = uuid.uuid4().hex
        request = Request.from_environ(environ)
        account = self.store.account_for_host(request.host)
        try:
            response = self.dispatch(request, account)
        except ApiError as error:
            response = problem_response(error)
        except Exception:
            logger.error("Unhandled error on %s %s\n%s", request.method, request.path, traceback.format_exc())
            response = internal_error()
        if not request.path.startswith("/_sandbox"):
            self.request_log.add(
                at=time.time(),
                account_id=account.id if account else None,
                method=request.method,
                path=request.path,
                query=request.query_string,
                status=response.status,
                duration_ms=round((time.monotonic() - started) * 1000, 2),
                request_id=request_id,
            )
        start_response(response.status_line, response.header_list(request_id))
        return [response.body]

    def dispatch(self, request: Request, account: Account | None) -> Response:
        path = request.path
        if path.startswith("/_sandbox"):
            return control.handle(self, request, account)
        if account is None:
            return problem_response(ApiError(404, "Account not found"))
        if path.startswith("/api/v4/") or path == "/api/v4":
            return self.api(request, account)
        if path.rstrip("/") == "/oauth2/access_token":
            if self.limiter.is_blocked(account.id):
                return html_response(gateway_page(403), 403)
            return oauth.token_endpoint(self.store, request)
        if path.rstrip("/") == "/oauth":
            return oauth.authorization_page(self.store, request, account)
        if path.startswith("/board"):
            return board.handle(self.store, request, account)
        if path.startswith("/leads/detail/"):  # the address of a deal in Kommo's own interface
            return board.handle(self.store, request, account)
        if path == "/":
            return redirect("/board", 302)
        return self.not_found(request)

    @staticmethod
    def not_found(request: Request) -> Response:
        return problem_response(ApiError(404, f"Cannot {request.method} {request.origin}{request.path}"))

    # --- /api/v4 --------------------------------------------------------------------------------------------

    def api(self, request: Request, account: Account) -> Response:
        if self.limiter.is_blocked(account.id):
            return html_response(gateway_page(403), 403)
        principal = self.store.auth.authenticate(request.bearer())
        if principal is None or principal.account_id != account.id or principal.user_id not in account.users:
            return unauthorized()
        decision = self.limiter.check(account.id, principal.token)
        if decision.verdict == "blocked":
            return html_response(gateway_page(403), 403)
        if decision.verdict == "limited":
            return self.too_many_requests(account, decision.retry_after)
        fault = self.inject_faults(account)
        if fault is not None:
            return fault
        resolved = self.api_router.resolve(request.method, request.path)
        if resolved == "404":
            return self.not_found(request)
        if resolved == "405":
            return problem_response(ApiError(405, "Method Not Allowed"))
        assert not isinstance(resolved, str)
        handler, kwargs = resolved
        with self.store.lock:
            return handler(Context(self.store, request, account, principal.user_id), **kwargs)

    def too_many_requests(self, account: Account, retry_after: int) -> Response:
        html = (
            self.limiter.config(account.id).html_429
            or self.store.faults.for_account(account.id).config.html_errors
        )
        if html:
            return Response(429, gateway_page(429).encode(), HTML)
        error = ApiError(
            429,
            "You have sent too many requests in a given amount of time. Please try again later.",
            retry_after=retry_after,
        )
        return problem_response(error)

    def inject_faults(self, account: Account) -> Response | None:
        faults = self.store.faults.for_account(account.id)
        config = faults.config
        if config.latency_ms:
            self.stopping.wait(config.latency_ms / 1000)
        decision = faults.decide()
        if decision is None:
            return None
        kind, status = decision
        if kind == "timeout":
            self.stopping.wait(config.timeout_seconds)
            return html_response(gateway_page(504), 504)
        if kind == "rate_limit":
            retry_after = self.limiter.config(account.id).retry_after
            return self.too_many_requests(account, 1 if retry_after is None else retry_after)
        if status == 500 and not config.html_errors:
            return internal_error()
        return html_response(gateway_page(status), status)
