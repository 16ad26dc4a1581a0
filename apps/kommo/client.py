"""The only code that speaks HTTP to Kommo.

``KommoClient(account)`` has one method per resource call, named after the resource. Every call:
waits for a slot of the account's shared rate limit, carries a fresh token (refreshed ahead of expiry,
and once more on a 401), has a connect and a read timeout, is logged without any secret, and turns an
error answer into a typed :mod:`apps.kommo.exceptions` error. Transient failures are retried a bounded
number of times: 429 after ``retry_after`` (or exponential backoff when Kommo sent HTML), 5xx, timeouts
and connection errors with exponential backoff and full jitter. A write whose outcome is unknown (a POST
that timed out) is not repeated here. A batch write that gets 504 is split in halves. The HTML 403 block
page opens the circuit breaker: no further call leaves until an admin resets it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from django.conf import settings

from apps.core.timeouts import database_budget, off_the_database_clock
from apps.kommo import auth
from apps.kommo.exceptions import (
    KommoAuthError,
    KommoBlocked,
    KommoConnectionError,
    KommoError,
    KommoForbidden,
    KommoGatewayTimeout,
    KommoNotFound,
    KommoPayloadError,
    KommoPaymentRequired,
    KommoRateLimited,
    KommoServerError,
    KommoTimeout,
    KommoUnprocessable,
    KommoValidationError,
    ValidationIssue,
)
from apps.kommo.models.account import KommoAccount
from apps.kommo.ratelimit import RateLimiter, rate_limiter
from apps.kommo.types import (
    JSON,
    Account,
    Catalog,
    CatalogElement,
    CatalogElementWrite,
    CatalogWrite,
    Company,
    ComplexLeadResult,
    ComplexLeadWrite,
    Contact,
    ContactWrite,
    CustomField,
    CustomFieldWrite,
    Event,
    KommoUser,
    Lead,
    LeadWrite,
    Link,
    LinkWrite,
    Note,
    NoteWrite,
    Pipeline,
    Task,
    TaskWrite,
    TokenPair,
    WebhookSubscription,
    WriteResult,
    to_timestamp,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

PAGE_LIMIT = 250
# A deal re-read by id, wherever the mirror re-fetches deals (the sync, webhook processing): with its
# contacts and catalog elements, whose links the mirror replaces from the payload; IDS_PER_CALL ids per
# ``filter[id][]`` call (one page).
LEAD_WITH = ("contacts", "catalog_elements")
IDS_PER_CALL = PAGE_LIMIT
EVENTS_PAGE_LIMIT = 100
CUSTOM_FIELDS_PAGE_LIMIT = 50
# Writes: Kommo takes at most 250 entities per add or update request and recommends 50 per request (a
# request that answers 504 is split; a smaller batch seldom gets there). Batch writes default to 50; a
# caller that adds many light entities at once (tasks, notes) may pass up to MAX_BATCH_SIZE.
BATCH_SIZE = 50
MAX_BATCH_SIZE = 250

_random = secrets.SystemRandom()


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one call tries. ``max_attempts`` counts every try of the same request (the one retry
    after a token refresh is not counted). A ``retry_after`` longer than ``max_retry_after`` is raised
    to the caller instead of slept through (a worker should reschedule, not hang)."""

    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_retry_after: float = 60.0
    rate_limit_max_wait: float = 30.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]."""
        return _random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))


# -- errors ---------------------------------------------------------------------------------------------


def _problem(response: requests.Response) -> JSON | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _text_of_html(body: str) -> str:
    text = re.sub(r"<[^>]+>", " ", body)
    return " ".join(text.split())[:200]


def _validation_issues(problem: JSON) -> dict[str, list[ValidationIssue]]:
    issues: dict[str, list[ValidationIssue]] = {}
    for entry in problem.get("validation-errors") or []:
        if not isinstance(entry, Mapping):
            continue
        key = str(entry.get("request_id", ""))
        for error in entry.get("errors") or []:
            if isinstance(error, Mapping):
                issues.setdefault(key, []).append(
                    ValidationIssue(
                        code=str(error.get("code", "")),
                        path=str(error.get("path", "")),
                        detail=str(error.get("detail", "")),
                    )
                )
    return issues


def error_from_response(response: requests.Response) -> KommoError:
    """A typed error for an error answer, decided by status and by whether the body is problem+json."""
    status = response.status_code
    request_id = response.headers.get("X-Request-Id")
    problem = _problem(response)
    if problem is not None:
        detail = str(problem.get("detail") or problem.get("title") or "")
        hint = problem.get("hint")  # the OAuth endpoint's problems say what is wrong here
        if hint and hint != detail:
            detail = f"{detail} ({hint})" if detail else str(hint)
    else:
        detail = _text_of_html(response.text)
    context: dict[str, Any] = {"status": status, "request_id": request_id, "problem": problem}
    if status == 400:
        return KommoValidationError(detail, errors=_validation_issues(problem or {}), **context)
    if status == 401:
        return KommoAuthError(detail, **context)
    if status == 402:
        return KommoPaymentRequired(detail, **context)
    if status == 403:
        # Kommo's block is an nginx HTML page; a problem+json 403 is a missing scope or right.
        return KommoBlocked(detail, **context) if problem is None else KommoForbidden(detail, **context)
    if status == 404:
        return KommoNotFound(detail, **context)
    if status == 429:
        retry_after = problem.get("retry_after") if problem else None
        seconds = float(retry_after) if isinstance(retry_after, int | float) else None
        return KommoRateLimited(detail, retry_after=seconds, **context)
    if status == 504:
        return KommoGatewayTimeout(detail, **context)
    if status >= 500:
        return KommoServerError(detail, **context)
    return KommoUnprocessable(detail, **context)


# -- query strings ------------------------------------------------------------------------------------


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if hasattr(value, "timestamp") and hasattr(value, "tzinfo"):
        return str(to_timestamp(value))
    return str(value)


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}[{key}]", item, out)
    elif isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if all(not isinstance(item, Mapping | list | tuple) for item in items):
            out.extend((f"{prefix}[]", _scalar(item)) for item in items)
        else:
            for index, item in enumerate(items):
                _flatten(f"{prefix}[{index}]", item, out)
    elif value is not None:
        out.append((prefix, _scalar(value)))


def query_params(
    *,
    filters: Mapping[str, Any] | None = None,
    with_: Iterable[str] = (),
    query: str | None = None,
    order: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """Kommo's PHP-style query string: ``filter[id][]=1``, ``filter[updated_at][from]=ts``,
    ``filter[statuses][0][pipeline_id]=…``, ``with=a,b``, ``query=…``, ``order[updated_at]=asc``.
    Datetimes become unix seconds."""
    params: list[tuple[str, str]] = []
    for key, value in (filters or {}).items():
        _flatten(f"filter[{key}]", value, params)
    for key, direction in (order or {}).items():
        params.append((f"order[{key}]", direction))
    names = list(with_)
    if names:
        params.append(("with", ",".join(names)))
    if query:
        params.append(("query", query))
    return params


def _embedded_items(data: Any, key: str) -> list[JSON]:
    if not isinstance(data, Mapping):
        raise KommoPayloadError(f"expected a HAL object with _embedded.{key}")
    embedded = data.get("_embedded")
    items = embedded.get(key) if isinstance(embedded, Mapping) else None
    if items is None:
        return []
    if not isinstance(items, list):
        raise KommoPayloadError(f"_embedded.{key} is not a list")
    return [item for item in items if isinstance(item, dict)]


def _safe_key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


# -- the client ---------------------------------------------------------------------------------------


class KommoClient:
    """Calls to one Kommo account. Not thread-safe (one ``requests.Session``): one client per thread."""

    def __init__(
        self,
        account: KommoAccount,
        *,
        session: requests.Session | None = None,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.account = account
        self.session = session or requests.Session()
        self.session.headers.update({"Accept": "application/json", "User-Agent": "kommo-b2b-portal/1"})
        self.limiter = limiter or rate_limiter()
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.timeout = (float(settings.KOMMO_CONNECT_TIMEOUT), float(settings.KOMMO_READ_TIMEOUT))
        self._behind_others = False

    @staticmethod
    def _page_time_left() -> float | None:
        """Seconds left of the time a page may wait for Kommo (``KOMMO_PAGE_BUDGET_MS`` from when its request
        reached the application), or None outside a page (a task, a command, a webhook or intake request,
        which never calls Kommo). A person waits for the page, and gunicorn restarts a worker that has not
        answered within ``GUNICORN_TIMEOUT``: without this, five tries of up to ``KOMMO_READ_TIMEOUT`` each
        would outlast it and the person would get no answer at all."""
        budget = database_budget()
        allowance = int(settings.KOMMO_PAGE_BUDGET_MS)
        if budget is None or not budget.page or not allowance:
            return None
        return budget.started + allowance / 1000 - time.monotonic()

    @staticmethod
    def _page_time_spent() -> KommoConnectionError:
        """The request is not sent: the page's time for Kommo is spent (so its outcome is known)."""
        return KommoConnectionError(
            f"not sent: the page's {int(settings.KOMMO_PAGE_BUDGET_MS) / 1000:g} s for Kommo are spent"
        )

    # -- plumbing ---------------------------------------------------------------------------------------

    @property
    def limiter_key(self) -> str:
        return _safe_key(urlsplit(self.account.api_root).netloc or self.account.api_root)

    @contextlib.contextmanager
    def behind_others(self) -> Iterator[None]:
        """The calls made inside the block can wait: each takes a slot of the rate limit only when one is
        free at once, so the calls of other clients that reserve theirs (moves back, re-fetches) go first."""
        before, self._behind_others = self._behind_others, True
        try:
            yield
        finally:
            self._behind_others = before

    def wait_for_free_slot(self) -> float:
        """Waits until the account's rate limit would let a request go at once (reserving nothing), so
        that a caller gathering work into one request gathers what arrives meanwhile. Returns the wait."""
        with off_the_database_clock():
            return self.limiter.wait_for_free_slot(
                self.limiter_key, self.account.rate_limit_per_second, max_wait=self.retry.rate_limit_max_wait
            )

    def _url(self, path: str) -> str:
        """An absolute URL under the account's base URL. Links Kommo sends back (``_links.next``) keep
        their path and query but are re-rooted on the base URL, so a call never leaves the account."""
        if path.startswith(("http://", "https://")):
            parts = urlsplit(path)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.account.api_root + path

    def _ensure_not_blocked(self) -> None:
        account = self.account
        if account.pk is not None:
            state = (
                KommoAccount.objects.filter(pk=account.pk)
                .values_list("blocked_since", "blocked_reason")
                .first()
            )
            if state is not None:
                account.blocked_since, account.blocked_reason = state
        if account.blocked_since is not None:
            raise KommoBlocked(
                f"calls to Kommo are stopped since {account.blocked_since:%Y-%m-%d %H:%M} UTC "
                f"({account.blocked_reason or 'blocked'}); an admin must reset the circuit breaker",
                status=403,
            )

    def _retryable(self, error: KommoError, *, idempotent: bool, unsent: bool, batch: int) -> bool:
        if error.permanent:
            return False
        if isinstance(error, KommoGatewayTimeout) and batch > 1:
            return False  # the caller splits the batch instead
        if idempotent:
            return True
        # A write that may have reached Kommo is not repeated blindly: only when it surely did not.
        return isinstance(error, KommoRateLimited) or unsent

    def _delay(self, error: KommoError, attempt: int) -> float | None:
        if isinstance(error, KommoRateLimited) and error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.retry.max_retry_after else None
        return self.retry.backoff(attempt)

    def _log(self, method: str, url: str, outcome: str, started: float, request_id: str | None) -> None:
        logger.info(
            "kommo %s %s -> %s in %.0f ms (request id %s)",
            method,
            urlsplit(url).path,
            outcome,
            (time.monotonic() - started) * 1000,
            request_id or "-",
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        body: Any = None,
        idempotent: bool | None = None,
        authenticate: bool = True,
        batch: int = 1,
    ) -> requests.Response:
        """One call with the rate limit, auth, retries and error mapping. Returns a 2xx response."""
        if idempotent is None:
            idempotent = method.upper() != "POST"
        url = self._url(path)
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            self._ensure_not_blocked()
            max_wait, timeout = self.retry.rate_limit_max_wait, self.timeout
            left = self._page_time_left()
            if left is not None:
                if left <= 0:
                    raise self._page_time_spent()
                max_wait = min(max_wait, left)
            with off_the_database_clock():  # a page's database deadline does not run while Kommo is waited on
                self.limiter.acquire(
                    self.limiter_key,
                    self.account.rate_limit_per_second,
                    max_wait=max_wait,
                    behind_others=self._behind_others,
                )
            left = self._page_time_left()
            if left is not None:
                if left <= 0:
                    raise self._page_time_spent()
                timeout = (min(timeout[0], left), min(timeout[1], left))
            headers: dict[str, str] = {}
            token = ""
            if authenticate:
                token = auth.access_token(self.account, exchange=_token_exchange)
                headers["Authorization"] = f"Bearer {token}"
            started = time.monotonic()
            unsent = False
            try:
                with off_the_database_clock():
                    response = self.session.request(
                        method, url, params=params, json=body, headers=headers, timeout=timeout
                    )
            except requests.ConnectTimeout:
                error: KommoError = KommoConnectionError(f"connecting to {urlsplit(url).netloc} timed out")
                unsent = True
            except requests.Timeout:
                error = KommoTimeout(f"no answer within {timeout[1]:.0f}s")
            except requests.ConnectionError as exc:
                error = KommoConnectionError(f"cannot reach {urlsplit(url).netloc}: {type(exc).__name__}")
                unsent = isinstance(exc, requests.exceptions.ProxyError | requests.exceptions.SSLError)
            else:
                self._log(
                    method, url, str(response.status_code), started, response.headers.get("X-Request-Id")
                )
                if response.status_code < 400:
                    if authenticate and self.account.auth_error:
                        auth.auth_error_clear(self.account)
                    return response
                error = error_from_response(response)
            if error.status is None:
                self._log(method, url, type(error).__name__, started, None)

            if isinstance(error, KommoAuthError) and authenticate:
                if not refreshed and self.account.auth_kind == KommoAccount.AuthKind.OAUTH:
                    refreshed = True
                    attempt -= 1
                    auth.token_refresh(self.account, stale_access_token=token, exchange=_token_exchange)
                    continue
                message = str(error)
                if self.account.auth_kind == KommoAccount.AuthKind.LONG_LIVED:
                    message = f"{auth.LONG_LIVED_REFUSED} ({error})"
                auth.auth_error_record(self.account, message)
                raise error
            if isinstance(error, KommoBlocked):
                auth.block(self.account, str(error))
                raise error
            if attempt >= self.retry.max_attempts or not self._retryable(
                error, idempotent=idempotent, unsent=unsent, batch=batch
            ):
                raise error
            delay = self._delay(error, attempt)
            left = self._page_time_left()
            if delay is None or (left is not None and delay >= left):
                raise error
            logger.info(
                "kommo %s %s: %s, retry %d in %.1fs",
                method,
                urlsplit(url).path,
                type(error).__name__,
                attempt,
                delay,
            )
            with off_the_database_clock():
                self.sleep(delay)

    def _json(self, response: requests.Response) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise KommoPayloadError(
                f"expected JSON, got {response.headers.get('Content-Type', 'no content type')}",
                status=response.status_code,
                request_id=response.headers.get("X-Request-Id"),
            ) from exc

    def _get_one(
        self, path: str, parse: Callable[[JSON], T], params: Sequence[tuple[str, str]] = ()
    ) -> T | None:
        """A single object; None when Kommo says it is not there (204 or 404)."""
        try:
            data = self._json(self.request("GET", path, params=list(params)))
        except KommoNotFound:
            return None
        if data is None:
            return None
        if not isinstance(data, dict):
            raise KommoPayloadError(f"GET {path}: expected an object")
        return parse(data)

    def _paginate(
        self,
        path: str,
        key: str,
        parse: Callable[[JSON], T],
        *,
        params: Sequence[tuple[str, str]] = (),
        limit: int = PAGE_LIMIT,
    ) -> Iterator[T]:
        """Every item of a list, page by page along ``_links.next``; 204 means no (more) items."""
        url = path
        query: list[tuple[str, str]] | None = [*params, ("limit", str(limit))]
        seen: set[str] = set()
        while True:
            data = self._json(self.request("GET", url, params=query))
            if data is None:
                return
            for item in _embedded_items(data, key):
                yield parse(item)
            links = data.get("_links") if isinstance(data, Mapping) else None
            following = links.get("next") if isinstance(links, Mapping) else None
            href = following.get("href") if isinstance(following, Mapping) else None
            if not isinstance(href, str) or href in seen:
                return
            seen.add(href)
            url, query = href, None

    def _write(
        self,
        method: str,
        path: str,
        items: Sequence[JSON],
        parse: Callable[[Any], list[T]],
        *,
        idempotent: bool,
        batch_size: int = BATCH_SIZE,
    ) -> list[T]:
        """A batch write in chunks of ``batch_size``; a chunk answered 504 is halved and retried."""
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, not {batch_size}")
        results: list[T] = []
        for start in range(0, len(items), batch_size):
            results.extend(
                self._write_chunk(method, path, items, start, start + batch_size, parse, idempotent)
            )
        return results

    def _write_chunk(
        self,
        method: str,
        path: str,
        items: Sequence[JSON],
        start: int,
        stop: int,
        parse: Callable[[Any], list[T]],
        idempotent: bool,
    ) -> list[T]:
        chunk = list(items[start:stop])
        try:
            response = self.request(method, path, body=chunk, idempotent=idempotent, batch=len(chunk))
        except KommoGatewayTimeout:
            if len(chunk) == 1:
                raise
            middle = start + len(chunk) // 2
            return self._write_chunk(
                method, path, items, start, middle, parse, idempotent
            ) + self._write_chunk(method, path, items, middle, start + len(chunk), parse, idempotent)
        except KommoValidationError as error:
            raise _renumbered(error, chunk, start) from None
        return parse(self._json(response))

    def _embedded_parser(self, key: str, parse: Callable[[JSON], T]) -> Callable[[Any], list[T]]:
        return lambda data: [parse(item) for item in _embedded_items(data, key)]

    # -- account, users, pipelines, custom fields -------------------------------------------------------

    def account_get(self, with_: Sequence[str] = ()) -> Account:
        account = self._get_one("/api/v4/account", Account.from_api, query_params(with_=with_))
        if account is None:
            raise KommoPayloadError("GET /api/v4/account answered no content")
        return account

    def users_list(self, with_: Sequence[str] = ()) -> Iterator[KommoUser]:
        return self._paginate("/api/v4/users", "users", KommoUser.from_api, params=query_params(with_=with_))

    def pipelines_list(self) -> list[Pipeline]:
        return list(self._paginate("/api/v4/leads/pipelines", "pipelines", Pipeline.from_api))

    def custom_fields_list(self, entity: str) -> Iterator[CustomField]:
        """``entity``: leads, contacts, companies, or ``catalogs/{id}``."""
        return self._paginate(
            f"/api/v4/{entity}/custom_fields",
            "custom_fields",
            CustomField.from_api,
            limit=CUSTOM_FIELDS_PAGE_LIMIT,
        )

    def custom_fields_create(self, entity: str, fields: Sequence[CustomFieldWrite]) -> list[CustomField]:
        def parse(data: Any) -> list[CustomField]:
            if isinstance(data, dict) and "_embedded" not in data:  # the bare object of some examples
                return [CustomField.from_api(data)]
            return [CustomField.from_api(item) for item in _embedded_items(data, "custom_fields")]

        body = [field.to_api() for field in fields]
        return self._write("POST", f"/api/v4/{entity}/custom_fields", body, parse, idempotent=False)

    # -- leads ------------------------------------------------------------------------------------------

    def leads_list(
        self,
        filters: Mapping[str, Any] | None = None,
        with_: Sequence[str] = (),
        *,
        query: str | None = None,
        order: Mapping[str, str] | None = None,
    ) -> Iterator[Lead]:
        params = query_params(filters=filters, with_=with_, query=query, order=order)
        return self._paginate("/api/v4/leads", "leads", Lead.from_api, params=params)

    def leads_get(self, lead_id: int, with_: Sequence[str] = ()) -> Lead | None:
        return self._get_one(f"/api/v4/leads/{int(lead_id)}", Lead.from_api, query_params(with_=with_))

    def leads_create(self, leads: Sequence[LeadWrite]) -> list[WriteResult]:
        body = [lead.to_api() for lead in leads]
        parse = self._embedded_parser("leads", WriteResult.from_api)
        return self._write("POST", "/api/v4/leads", body, parse, idempotent=False)

    def leads_update(self, leads: Sequence[LeadWrite], *, batch_size: int = BATCH_SIZE) -> list[WriteResult]:
        """``PATCH /api/v4/leads``, ``batch_size`` leads per request (50, Kommo's recommendation; at most
        250)."""
        _require_ids(leads)
        body = [lead.to_api() for lead in leads]
        parse = self._embedded_parser("leads", WriteResult.from_api)
        return self._write("PATCH", "/api/v4/leads", body, parse, idempotent=True, batch_size=batch_size)

    def leads_complex_create(self, items: Sequence[ComplexLeadWrite]) -> list[ComplexLeadResult]:
        def parse(data: Any) -> list[ComplexLeadResult]:
            if not isinstance(data, list):
                raise KommoPayloadError("POST /api/v4/leads/complex: expected a bare array")
            return [ComplexLeadResult.from_api(item) for item in data]

        body = [item.to_api() for item in items]
        return self._write("POST", "/api/v4/leads/complex", body, parse, idempotent=False)

    # -- contacts and companies ---------------------------------------------------------------------------

    def contacts_list(
        self,
        filters: Mapping[str, Any] | None = None,
        with_: Sequence[str] = (),
        *,
        query: str | None = None,
        order: Mapping[str, str] | None = None,
    ) -> Iterator[Contact]:
        params = query_params(filters=filters, with_=with_, query=query, order=order)
        return self._paginate("/api/v4/contacts", "contacts", Contact.from_api, params=params)

    def contacts_get(self, contact_id: int, with_: Sequence[str] = ()) -> Contact | None:
        return self._get_one(
            f"/api/v4/contacts/{int(contact_id)}", Contact.from_api, query_params(with_=with_)
        )

    def contacts_search(self, query: str, with_: Sequence[str] = ()) -> list[Contact]:
        """Contacts whose filled fields (phones and e-mails included) match ``query``."""
        return list(self.contacts_list(with_=with_, query=query))

    def contacts_create(self, contacts: Sequence[ContactWrite]) -> list[WriteResult]:
        body = [contact.to_api() for contact in contacts]
        parse = self._embedded_parser("contacts", WriteResult.from_api)
        return self._write("POST", "/api/v4/contacts", body, parse, idempotent=False)

    def contacts_update(self, contacts: Sequence[ContactWrite]) -> list[WriteResult]:
        _require_ids(contacts)
        body = [contact.to_api() for contact in contacts]
        parse = self._embedded_parser("contacts", WriteResult.from_api)
        return self._write("PATCH", "/api/v4/contacts", body, parse, idempotent=True)

    def companies_list(
        self,
        filters: Mapping[str, Any] | None = None,
        with_: Sequence[str] = (),
        *,
        query: str | None = None,
        order: Mapping[str, str] | None = None,
    ) -> Iterator[Company]:
        params = query_params(filters=filters, with_=with_, query=query, order=order)
        return self._paginate("/api/v4/companies", "companies", Company.from_api, params=params)

    # -- catalogs and links -----------------------------------------------------------------------------

    def catalogs_list(self) -> Iterator[Catalog]:
        return self._paginate("/api/v4/catalogs", "catalogs", Catalog.from_api)

    def catalog_create(self, catalog: CatalogWrite) -> Catalog:
        parse = self._embedded_parser("catalogs", Catalog.from_api)
        created = self._write("POST", "/api/v4/catalogs", [catalog.to_api()], parse, idempotent=False)
        if len(created) != 1:
            raise KommoPayloadError("POST /api/v4/catalogs: expected one catalog back")
        return created[0]

    def catalog_elements_list(
        self, catalog_id: int, filters: Mapping[str, Any] | None = None, *, query: str | None = None
    ) -> Iterator[CatalogElement]:
        return self._paginate(
            f"/api/v4/catalogs/{int(catalog_id)}/elements",
            "elements",
            lambda item: CatalogElement.from_api(item, catalog_id=catalog_id),
            params=query_params(filters=filters, query=query),
        )

    def catalog_elements_create(
        self, catalog_id: int, elements: Sequence[CatalogElementWrite]
    ) -> list[CatalogElement]:
        parse = self._embedded_parser(
            "elements", lambda item: CatalogElement.from_api(item, catalog_id=catalog_id)
        )
        body = [element.to_api() for element in elements]
        return self._write(
            "POST", f"/api/v4/catalogs/{int(catalog_id)}/elements", body, parse, idempotent=False
        )

    def catalog_elements_update(
        self, catalog_id: int, elements: Sequence[CatalogElementWrite]
    ) -> list[CatalogElement]:
        _require_ids(elements)
        parse = self._embedded_parser(
            "elements", lambda item: CatalogElement.from_api(item, catalog_id=catalog_id)
        )
        body = [element.to_api() for element in elements]
        return self._write(
            "PATCH", f"/api/v4/catalogs/{int(catalog_id)}/elements", body, parse, idempotent=True
        )

    def links_create(self, entity: str, entity_id: int, links: Sequence[LinkWrite]) -> list[Link]:
        """Link ``entity`` (leads, contacts, companies) ``entity_id`` to contacts, companies or catalog
        elements. Linking what is already linked changes nothing, so this is safe to repeat."""
        parse = self._embedded_parser("links", Link.from_api)
        body = [link.to_api() for link in links]
        return self._write("POST", f"/api/v4/{entity}/{int(entity_id)}/link", body, parse, idempotent=True)

    def links_list(
        self, entity: str, entity_id: int, filters: Mapping[str, Any] | None = None
    ) -> Iterator[Link]:
        return self._paginate(
            f"/api/v4/{entity}/{int(entity_id)}/links",
            "links",
            Link.from_api,
            params=query_params(filters=filters),
        )

    # -- tasks, notes, events ---------------------------------------------------------------------------

    def tasks_list(
        self, filters: Mapping[str, Any] | None = None, *, order: Mapping[str, str] | None = None
    ) -> Iterator[Task]:
        return self._paginate(
            "/api/v4/tasks", "tasks", Task.from_api, params=query_params(filters=filters, order=order)
        )

    def tasks_create(self, tasks: Sequence[TaskWrite], *, batch_size: int = BATCH_SIZE) -> list[WriteResult]:
        """``POST /api/v4/tasks``, ``batch_size`` tasks per request (default 50; Kommo accepts up to 250
        per add request, :data:`MAX_BATCH_SIZE`). Each item's ``request_id`` comes back in its result.
        Not repeated when the outcome is unknown (a timeout): the caller checks before creating again."""
        body = [task.to_api() for task in tasks]
        parse = self._embedded_parser("tasks", WriteResult.from_api)
        return self._write("POST", "/api/v4/tasks", body, parse, idempotent=False, batch_size=batch_size)

    def tasks_update(self, tasks: Sequence[TaskWrite]) -> list[WriteResult]:
        _require_ids(tasks)
        body = [task.to_api() for task in tasks]
        parse = self._embedded_parser("tasks", WriteResult.from_api)
        return self._write("PATCH", "/api/v4/tasks", body, parse, idempotent=True)

    def notes_create(
        self, entity: str, notes: Sequence[NoteWrite], *, batch_size: int = BATCH_SIZE
    ) -> list[WriteResult]:
        """``POST /api/v4/{entity}/notes`` (entity: leads, contacts, companies), ``batch_size`` notes per
        request (default 50; up to 250, :data:`MAX_BATCH_SIZE`). Not repeated when the outcome is unknown."""
        body = [note.to_api() for note in notes]
        parse = self._embedded_parser("notes", WriteResult.from_api)
        return self._write(
            "POST", f"/api/v4/{entity}/notes", body, parse, idempotent=False, batch_size=batch_size
        )

    def notes_list(
        self, entity: str, filters: Mapping[str, Any] | None = None, *, order: Mapping[str, str] | None = None
    ) -> Iterator[Note]:
        """The notes of every ``entity`` (leads, contacts, companies), e.g. ``filters={"entity_id": ids}``
        for the notes of some deals; 250 per page."""
        return self._paginate(
            f"/api/v4/{entity}/notes",
            "notes",
            Note.from_api,
            params=query_params(filters=filters, order=order),
        )

    def events_list(
        self, filters: Mapping[str, Any] | None = None, with_: Sequence[str] = ()
    ) -> Iterator[Event]:
        return self._paginate(
            "/api/v4/events",
            "events",
            Event.from_api,
            params=query_params(filters=filters, with_=with_),
            limit=EVENTS_PAGE_LIMIT,
        )

    # -- webhooks ---------------------------------------------------------------------------------------

    def webhooks_list(self, destination: str | None = None) -> list[WebhookSubscription]:
        params = query_params(filters={"destination": destination} if destination else None)
        return list(
            self._paginate("/api/v4/webhooks", "webhooks", WebhookSubscription.from_api, params=params)
        )

    def webhooks_subscribe(
        self, destination: str, settings: Sequence[str], sort: int | None = None
    ) -> WebhookSubscription:
        body: JSON = {"destination": destination, "settings": list(settings)}
        if sort is not None:
            body["sort"] = sort
        data = self._json(self.request("POST", "/api/v4/webhooks", body=body, idempotent=True))
        if not isinstance(data, dict):
            raise KommoPayloadError("POST /api/v4/webhooks: expected the webhook object")
        return WebhookSubscription.from_api(data)

    def webhooks_unsubscribe(self, destination: str) -> None:
        self.request("DELETE", "/api/v4/webhooks", body={"destination": destination})

    # -- OAuth ------------------------------------------------------------------------------------------

    def oauth_token(self, body: Mapping[str, str]) -> TokenPair:
        """``POST /oauth2/access_token`` (outside /api/v4, no bearer token): an authorization code or a
        refresh token for a new token pair. Not repeated when the outcome is unknown: a refresh token
        works once."""
        response = self.request("POST", "/oauth2/access_token", body=dict(body), authenticate=False)
        data = self._json(response)
        if not isinstance(data, dict):
            raise KommoPayloadError("POST /oauth2/access_token: expected a token object")
        return TokenPair.from_api(data)


def _require_ids(
    items: Sequence[LeadWrite | ContactWrite | TaskWrite | CatalogElementWrite],
) -> None:
    if any(item.id is None for item in items):
        raise ValueError("every item of a batch update needs its id")


def _renumbered(error: KommoValidationError, chunk: Sequence[JSON], offset: int) -> KommoValidationError:
    """Kommo numbers the items of the failed chunk from 0 when they carry no request_id of their own;
    renumber those so that they point into the whole batch the caller passed."""
    errors: dict[str, list[ValidationIssue]] = {}
    for key, issues in error.errors.items():
        if key.isdigit() and int(key) < len(chunk) and "request_id" not in chunk[int(key)]:
            key = str(offset + int(key))
        errors.setdefault(key, []).extend(issues)
    return KommoValidationError(
        error.detail, errors=errors, status=error.status, request_id=error.request_id, problem=error.problem
    )


def _token_exchange(account: KommoAccount, body: Mapping[str, str]) -> TokenPair:
    """Kommo's token endpoint for :mod:`apps.kommo.auth` (a refresh, with a client of its own)."""
    return KommoClient(account).oauth_token(body)
