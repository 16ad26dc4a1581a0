"""One Kommo account at the HTTP boundary for unit tests, built on ``responses``: the fake Kommo of the suite
(the sandbox, over real HTTP, is the other one).

It answers the REST API v4 calls the portal makes in Kommo's shapes (/work/shared/kommo/API.md and the
recordings in tests/fixtures/kommo/api/): the account, the pipelines, the lists of leads, contacts and
companies by ``filter[id][]`` or by ``query`` (204 when nothing is found), one lead, leads created and
updated, contacts created and updated, /leads/complex, a lead's links created and listed, the deals' custom
fields, catalog elements listed, created and updated, tasks created and listed (by id or by their deal), notes
created and listed (by type, deal and time), events, and webhook subscriptions. It keeps what it holds and
what it was asked in plain dicts and lists (``account``, ``pipelines``, ``leads``, ``contacts``,
``companies``, ``links[lead_id]``, ``elements[catalog_id]``, ``lead_fields``, ``tasks``, ``notes[entity]``,
``events``, ``webhooks``) for tests to arrange and inspect, and lists every call (``calls``: ``"METHOD
/path?query"`` without ``limit``; ``requests``: the requests themselves; ``calls_to``: the queries of the
calls to a path; ``body``/``bodies``: their JSON bodies; ``unrouted``: the calls no route of the fake answers,
which ``responses`` refused). :meth:`FakeKommo.load_recordings` fills it with the recorded payloads;
:meth:`FakeKommo.lead` and :func:`lead_payload` build a deal in Kommo's shape.

Like Kommo: with ``token`` set, a call without that bearer token is answered 401; with ``page_size`` set, a
list answers in pages of that many items, with ``_links.next`` while a page is full, and 204 past the end.

Faults: ``failure`` answers every call with one status and body while it is set, ``failures[route]`` every
call to one route; ``answer_next`` replaces the next answer to one route; ``time_out_next`` makes the next
call to one route (of one method, if given) time out, after doing what it asked (Kommo did it, the answer
was lost) or before; ``merge_into`` makes /leads/complex report a merge into an existing deal; a subclass
may override :meth:`FakeKommo.intercept` to answer some calls itself.

The HTTP-level behaviour of the client itself (retries, 401 refresh, 429 and the rate limit, 504 halving,
timeouts, the circuit breaker) is tested with raw ``responses`` answers on purpose, in the client's and the
outbound queue's tests: there the exact sequence of statuses is the subject, not Kommo's data.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
import responses

from tests.kommo.payloads import payload

BASE_URL = "https://example.kommo.com"
EMAIL_FIELD_ID, PHONE_FIELD_ID = 178380, 178382
MARKER_FIELD_ID = 178500  # the deals' "Intake submission" field (see tests/intake/conftest.py)

Answer = tuple[int, dict[str, str], str]
Query = dict[str, list[str]]
UNAUTHORIZED = {
    "title": "Unauthorized",
    "type": "https://httpstatus.es/401",
    "status": 401,
    "detail": "Invalid user name or password",
}


def lead_payload(
    lead_id: int,
    status_id: int,
    pipeline_id: int,
    *,
    name: str | None = None,
    updated_at: int = 1_615_985_846,
    responsible_user_id: int = 1764433,
    updated_by: int = 1760815,
    tags: tuple[str, ...] | list[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    """A deal as ``GET /api/v4/leads`` lists it (leads-list-response.json's fields); ``extra`` overrides."""
    data: dict[str, Any] = {
        "id": lead_id,
        "name": f"Deal {lead_id}" if name is None else name,
        "price": 1000,
        "responsible_user_id": responsible_user_id,
        "group_id": 0,
        "status_id": status_id,
        "pipeline_id": pipeline_id,
        "loss_reason_id": None,
        "created_by": responsible_user_id,
        "updated_by": updated_by,
        "created_at": 1_615_894_221,
        "updated_at": updated_at,
        "closed_at": None,
        "closest_task_at": None,
        "is_deleted": False,
        "custom_fields_values": None,
        "score": None,
        "account_id": 16503244,
        "_embedded": {
            "tags": [{"id": index, "name": tag} for index, tag in enumerate(tags, start=1)],
            "contacts": [],
            "companies": [],
            "catalog_elements": [],
        },
    }
    data.update(extra)
    return data


def contact_payload(
    contact_id: int,
    name: str,
    *,
    emails: tuple[str, ...] = (),
    phones: tuple[str, ...] = (),
    extra: Any = (),
) -> dict[str, Any]:
    """A contact as ``GET /api/v4/contacts`` lists it, with its e-mail and phone fields."""
    fields = []
    for values, field_id, code, label in (
        (emails, EMAIL_FIELD_ID, "EMAIL", "Email"),
        (phones, PHONE_FIELD_ID, "PHONE", "Phone"),
    ):
        if values:
            fields.append(
                {
                    "field_id": field_id,
                    "field_name": label,
                    "field_code": code,
                    "field_type": "multitext",
                    "values": [{"value": value, "enum_code": "WORK"} for value in values],
                }
            )
    fields.extend(extra)
    return {
        "id": contact_id,
        "name": name,
        "first_name": "",
        "last_name": "",
        "responsible_user_id": 1,
        "created_at": 1700000000,
        "updated_at": 1700000000,
        "is_deleted": False,
        "custom_fields_values": fields or None,
        "account_id": 31361463,
        "_embedded": {"tags": [], "companies": []},
    }


class FakeKommo:
    def __init__(self, mock: responses.RequestsMock, base_url: str = BASE_URL) -> None:
        self.mock = mock
        self.base_url = base_url
        self.account: dict[str, Any] = {
            "id": 16503244,
            "name": "Example",
            "subdomain": (urlsplit(base_url).hostname or "").split(".")[0],
            "created_at": 1_615_894_221,
            "current_user_id": 1764433,
            "country": "NL",
            "currency": "EUR",
        }
        self.pipelines: list[dict[str, Any]] = []
        self.leads: dict[int, dict[str, Any]] = {}
        self.contacts: dict[int, dict[str, Any]] = {}
        self.companies: dict[int, dict[str, Any]] = {}
        self.links: dict[int, list[dict[str, Any]]] = {}  # a lead's links, as GET .../links lists them
        self.elements: dict[int, dict[int, dict[str, Any]]] = {}
        self.lead_fields: list[dict[str, Any]] = []
        self.tasks: dict[int, dict[str, Any]] = {}
        self.notes: dict[str, list[dict[str, Any]]] = {"leads": [], "contacts": [], "companies": []}
        self.events: list[dict[str, Any]] = []
        self.webhooks: list[dict[str, Any]] = []
        # The type of a catalog field an element update writes for the first time (else "select").
        self.field_types: dict[int, str] = {}
        self.token: str | None = None
        self.page_size: int | None = None
        self.failure: tuple[int, dict[str, Any]] | None = None
        self.failures: dict[str, tuple[int, Any]] = {}  # route → the answer to every call while set
        self.merge_into: tuple[int, int] | None = None
        self.next_id = 5000
        self.overrides: dict[str, list[tuple[int, Any]]] = {}
        self.timeouts: dict[str, list[tuple[str | None, bool]]] = {}  # route → (method or any, done)
        self.requests: list[Any] = []  # every request answered, kept after the mock is closed
        routes: list[tuple[str, str, Callable[[str, Query, Any], tuple[int, Any]]]] = [
            ("GET", r"/api/v4/account", self.account_get),
            ("GET", r"/api/v4/contacts", self.contacts_get),
            ("GET", r"/api/v4/contacts/\d+", self.contact_get),
            ("POST", r"/api/v4/contacts", self.contacts_post),
            ("PATCH", r"/api/v4/contacts", self.contacts_patch),
            ("GET", r"/api/v4/companies", self.companies_get),
            ("GET", r"/api/v4/leads/pipelines", self.pipelines_get),
            ("POST", r"/api/v4/leads/complex", self.complex_post),
            ("GET", r"/api/v4/leads/custom_fields", self.lead_fields_get),
            ("POST", r"/api/v4/leads/custom_fields", self.lead_fields_post),
            ("GET", r"/api/v4/leads", self.leads_get),
            ("POST", r"/api/v4/leads", self.leads_post),
            ("PATCH", r"/api/v4/leads", self.leads_patch),
            ("POST", r"/api/v4/leads/\d+/link", self.link_post),
            ("GET", r"/api/v4/leads/\d+/links", self.links_get),
            ("GET", r"/api/v4/leads/\d+", self.lead_get),
            ("GET", r"/api/v4/catalogs/\d+/elements", self.elements_get),
            ("POST", r"/api/v4/catalogs/\d+/elements", self.elements_post),
            ("PATCH", r"/api/v4/catalogs/\d+/elements", self.elements_patch),
            ("GET", r"/api/v4/tasks", self.tasks_get),
            ("POST", r"/api/v4/tasks", self.tasks_post),
            ("GET", r"/api/v4/events", self.events_get),
            *[
                ("GET", f"/api/v4/{entity}/notes", self.notes_get)
                for entity in ("leads", "contacts", "companies")
            ],
            *[
                ("POST", f"/api/v4/{entity}/notes", self.notes_post)
                for entity in ("leads", "contacts", "companies")
            ],
            ("GET", r"/api/v4/webhooks", self.webhooks_get),
            ("POST", r"/api/v4/webhooks", self.webhooks_post),
            ("DELETE", r"/api/v4/webhooks", self.webhooks_delete),
        ]
        for method, path, handler in routes:
            mock.add_callback(
                method,
                re.compile(re.escape(base_url) + path + r"(\?.*)?$"),
                callback=self._route(path, handler),
            )

    # -- arranging --------------------------------------------------------------------------------------

    def lead(self, lead_id: int, status_id: int, pipeline_id: int, **fields: Any) -> dict[str, Any]:
        """A deal Kommo holds, as ``GET /api/v4/leads`` lists it (see :func:`lead_payload`)."""
        self.leads[lead_id] = lead_payload(lead_id, status_id, pipeline_id, **fields)
        return self.leads[lead_id]

    def load_recordings(self) -> FakeKommo:
        """Holds what the recorded payloads of tests/fixtures/kommo/api/ show: the account, its pipelines,
        the listed lead and contact, the deals' custom fields, the events, and lead 7593303's links."""
        self.account = {k: v for k, v in payload("account.json").items() if k != "_links"}
        self.pipelines = payload("pipelines.json")["_embedded"]["pipelines"]
        for lead in payload("leads-list-response.json")["_embedded"]["leads"]:
            self.leads[lead["id"]] = lead
        for contact in payload("contacts-list.json")["_embedded"]["contacts"]:
            self.contacts[contact["id"]] = contact
        self.lead_fields = payload("custom-fields-leads-list.json")["_embedded"]["custom_fields"]
        self.events = payload("events.json")["_embedded"]["events"]
        self.links[7593303] = payload("links-get.json")["_embedded"]["links"]
        return self

    def add_contact(self, name: str, **kwargs: Any) -> dict[str, Any]:
        contact = contact_payload(self._id(), name, **kwargs)
        self.contacts[contact["id"]] = contact
        return contact

    def add_marker_field(self) -> dict[str, Any]:
        field = {"id": MARKER_FIELD_ID, "name": "Intake submission", "type": "text", "code": "PORTAL_INTAKE"}
        self.lead_fields.append(field)
        return field

    def answer_next(self, route: str, status: int, body: Any) -> None:
        """The next call to ``route`` (a path pattern of the table above) gets this answer instead."""
        self.overrides.setdefault(route, []).append((status, body))

    def time_out_next(self, route: str, *, done: bool, method: str | None = None) -> None:
        """The next call to ``route`` (of ``method``, when given: one path serves GET, POST and PATCH)
        times out (``requests.ReadTimeout``): after the fake did what it asked when ``done`` (Kommo did it,
        the answer was lost on the way back), before otherwise."""
        self.timeouts.setdefault(route, []).append((method, done))

    def intercept(self, request: Any) -> Answer | None:
        """An answer of a subclass's own to ``request`` (before any other), or None to go on."""
        return None

    # -- inspecting -------------------------------------------------------------------------------------

    @property
    def calls(self) -> list[str]:
        out = []
        for request in self.requests:
            parts = urlsplit(request.url)
            query = {k: v for k, v in parse_qs(parts.query).items() if k != "limit"}
            suffix = "?" + "&".join(f"{k}={','.join(v)}" for k, v in sorted(query.items())) if query else ""
            out.append(f"{request.method} {parts.path}{suffix}")
        return out

    def calls_to(self, path_end: str, method: str | None = None) -> list[Query]:
        """The queries of the calls (of ``method``, if given) whose path ends with ``path_end``, in order."""
        found = []
        for request in self.requests:
            parts = urlsplit(request.url)
            if parts.path.endswith(path_end) and method in (None, request.method):
                found.append(parse_qs(parts.query))
        return found

    @property
    def unrouted(self) -> list[str]:
        """The calls no route of the fake answers (``responses`` refused them), while the mock is open."""
        answered = {id(request) for request in self.requests}
        return [
            f"{call.request.method} {urlsplit(call.request.url).path}"
            for call in self.mock.calls
            if id(call.request) not in answered
        ]

    def body(self, index: int) -> Any:
        return json.loads(self.requests[index].body)

    def bodies(self, method: str, path: str) -> list[Any]:
        """The JSON bodies of the ``method`` calls to ``path``, in order."""
        return [
            json.loads(request.body)
            for request in self.requests
            if request.method == method and urlsplit(request.url).path == path
        ]

    def contacts_created(self) -> list[dict[str, Any]]:
        return list(self.contacts.values())

    # -- plumbing -------------------------------------------------------------------------------------

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    @staticmethod
    def _now() -> int:
        return int(dt.datetime.now(dt.UTC).timestamp())

    def _self(self, section: str, entity_id: int) -> dict[str, Any]:
        return {"self": {"href": f"{self.base_url}/api/v4/{section}/{entity_id}"}}

    def _route(self, route: str, handler):  # type: ignore[no-untyped-def]
        def callback(request: Any) -> Answer:
            self.requests.append(request)
            own = self.intercept(request)
            if own is not None:
                return own
            if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
                return 401, {"Content-Type": "application/problem+json"}, json.dumps(UNAUTHORIZED)
            if self.failure is not None or route in self.failures:
                status, problem = self.failure or self.failures[route]
                return status, {"Content-Type": "application/problem+json"}, json.dumps(problem)
            pending = self.overrides.get(route)
            if pending:
                status, problem = pending.pop(0)
                return status, {"Content-Type": "application/problem+json"}, json.dumps(problem)
            timeouts = self.timeouts.get(route, [])
            due = [i for i, (method, _) in enumerate(timeouts) if method in (None, request.method)]
            done = timeouts.pop(due[0])[1] if due else None
            if done is False:
                raise requests.ReadTimeout("the fake Kommo did not answer")
            parts = urlsplit(request.url)
            body = json.loads(request.body) if request.body else None
            status, answer = handler(parts.path, parse_qs(parts.query), body)
            if done:
                raise requests.ReadTimeout("the fake Kommo did it and did not answer")
            return (
                status,
                {"Content-Type": "application/hal+json"},
                "" if answer is None else json.dumps(answer),
            )

        return callback

    def _page(
        self, section: str, found: list[dict[str, Any]], path: str = "", query: Query | None = None
    ) -> tuple[int, Any]:
        """One page of a list: all of it, or ``page_size`` items with ``_links.next`` while it is full."""
        number = int((query or {}).get("page", ["1"])[0])
        if self.page_size is not None:
            found = found[(number - 1) * self.page_size : number * self.page_size]
        if not found:
            return 204, None
        links: dict[str, Any] = {}
        if self.page_size is not None and len(found) == self.page_size:
            kept = [(k, v) for k, values in (query or {}).items() if k != "page" for v in values]
            following = urlencode([*kept, ("page", str(number + 1))])
            links["next"] = {"href": f"{self.base_url}{path}?{following}"}
        return 200, {"_page": number, "_links": links, "_embedded": {section: found}}

    @staticmethod
    def _by_id(pool: dict[int, dict[str, Any]], query: Query) -> list[dict[str, Any]]:
        ids = {int(value) for value in query.get("filter[id][]", [])}
        return [item for key, item in sorted(pool.items()) if key in ids]

    def _texts(self, entity: dict[str, Any]) -> Iterator[str]:
        for field in entity.get("custom_fields_values") or []:
            for value in field["values"]:
                yield str(value.get("value", ""))

    def contacts_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        if "query" not in query:
            return self._page("contacts", self._by_id(self.contacts, query), path, query)
        needle = query["query"][0].lower()
        digits = re.sub(r"\D", "", needle)
        found = [
            c
            for c in self.contacts.values()
            if any(
                needle in text.lower() or (len(digits) > 5 and digits in re.sub(r"\D", "", text))
                for text in self._texts(c)
            )
        ]
        return self._page("contacts", found, path, query)

    def contact_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        contact = self.contacts.get(int(path.rsplit("/", 1)[1]))
        return (200, contact) if contact else (204, None)

    def companies_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        return self._page("companies", self._by_id(self.companies, query), path, query)

    def _store(self, item: dict[str, Any], contact_id: int | None = None) -> int:
        contact_id = contact_id or self._id()
        stored = contact_payload(contact_id, item.get("name", ""))
        fields = []
        for field in item.get("custom_fields_values") or []:
            code = field.get("field_code")
            fields.append(
                {
                    "field_id": {"EMAIL": EMAIL_FIELD_ID, "PHONE": PHONE_FIELD_ID}.get(
                        code, field.get("field_id")
                    ),
                    "field_name": code or "",
                    "field_code": code,
                    "field_type": "multitext" if code else "select",
                    "values": field["values"],
                }
            )
        stored["custom_fields_values"] = fields or None
        self.contacts[contact_id] = stored
        return contact_id

    def contacts_post(self, path: str, query: Query, body: list[dict[str, Any]]) -> tuple[int, Any]:
        created = [
            {"id": self._store(item), "request_id": item.get("request_id", str(i))}
            for i, item in enumerate(body)
        ]
        return 200, {"_embedded": {"contacts": created}}

    def contacts_patch(self, path: str, query: Query, body: list[dict[str, Any]]) -> tuple[int, Any]:
        for item in body:
            contact = self.contacts[item["id"]]
            kept = {f["field_id"]: f for f in contact.get("custom_fields_values") or []}
            for field in item.get("custom_fields_values") or []:
                code = field.get("field_code")
                field_id = {"EMAIL": EMAIL_FIELD_ID, "PHONE": PHONE_FIELD_ID}.get(code, field.get("field_id"))
                kept[field_id] = {
                    "field_id": field_id,
                    "field_code": code,
                    "field_type": "multitext" if code else "select",
                    "values": field["values"],
                }
            contact["custom_fields_values"] = list(kept.values())
            contact["updated_at"] += 1
        return 200, {"_embedded": {"contacts": [{"id": item["id"]} for item in body]}}

    def complex_post(self, path: str, query: Query, body: list[dict[str, Any]]) -> tuple[int, Any]:
        item = body[0]
        if self.merge_into is not None:
            lead_id, contact_id = self.merge_into
            return 200, [
                {
                    "id": lead_id,
                    "contact_id": contact_id,
                    "company_id": None,
                    "request_id": [item["request_id"]],
                    "merged": True,
                }
            ]
        contact = item["_embedded"]["contacts"][0]
        contact_id = contact["id"] if set(contact) == {"id"} else self._store(contact)
        company_id = self._id() if item["_embedded"].get("companies") else None
        lead_id = self._id()
        self.leads[lead_id] = {
            "id": lead_id,
            "custom_fields_values": [
                {
                    "field_id": field["field_id"],
                    "field_name": "",
                    "field_type": "text",
                    "values": field["values"],
                }
                for field in item.get("custom_fields_values") or []
            ],
            "name": item["name"],
            "price": item.get("price", 0),
            "status_id": item.get("status_id", 1),
            "pipeline_id": item.get("pipeline_id", 1),
            "updated_at": 1700000000,
            "created_at": 1700000000,
            "_embedded": {
                "contacts": [{"id": contact_id, "is_main": True}],
                "catalog_elements": [],
                "tags": [],
                "companies": [],
            },
        }
        return 200, [
            {
                "id": lead_id,
                "contact_id": contact_id,
                "company_id": company_id,
                "request_id": [item["request_id"]],
                "merged": False,
            }
        ]

    def link_post(self, path: str, query: Query, body: list[dict[str, Any]]) -> tuple[int, Any]:
        lead_id = int(path.split("/")[4])
        lead = self.leads.get(lead_id)
        for link in body:
            if lead is not None and link["to_entity_type"] == "contacts":
                lead["_embedded"]["contacts"].append({"id": link["to_entity_id"], "is_main": False})
            elif lead is not None:
                lead["_embedded"]["catalog_elements"].append(
                    {"id": link["to_entity_id"], "metadata": link["metadata"]}
                )
        self.links.setdefault(lead_id, []).extend(
            {
                "to_entity_id": link["to_entity_id"],
                "to_entity_type": link["to_entity_type"],
                "metadata": link.get("metadata") or {"main_contact": False},
            }
            for link in body
        )
        links = [{"entity_id": lead_id, "entity_type": "leads", **link} for link in body]
        return 200, {"_total_items": len(links), "_embedded": {"links": links}}

    def links_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        return self._page("links", self.links.get(int(path.split("/")[4]), []), path, query)

    def leads_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        if "filter[id][]" in query:
            return self._page("leads", self._by_id(self.leads, query), path, query)
        needle = query.get("query", [""])[0].lower()
        found = [
            lead
            for lead in self.leads.values()
            if needle in lead["name"].lower() or any(needle in text.lower() for text in self._texts(lead))
        ]
        return self._page("leads", found, path, query)

    def leads_post(self, path: str, query: Query, body: list[dict[str, Any]]) -> tuple[int, Any]:
        created = []
        for index, item in enumerate(body):
            skipped = ("request_id", "_embedded", "status_id", "pipeline_id")
            fields = {k: v for k, v in item.items() if k not in skipped}
            lead = self.lead(self._id(), item.get("status_id", 1), item.get("pipeline_id", 1), **fields)
            lead["created_at"] = lead["updated_at"] = self._now()
            request_id = item.get("request_id", str(index))
            created.append(
                {"id": lead["id"], "request_id": request_id, "_links": self._self("leads", lead["id"])}
            )
        return 200, {"_links": {"self": {"href": self.base_url + path}}, "_embedded": {"leads": created}}

    def leads_patch(self, path: str, query: Query, body: list[dict[str, Any]]) -> tuple[int, Any]:
        """Each deal named takes the fields written; an unknown one is refused as Kommo does (400)."""
        unknown = [str(index) for index, item in enumerate(body) if item.get("id") not in self.leads]
        if unknown:
            return 400, {
                "title": "Bad Request",
                "status": 400,
                "validation-errors": [
                    {"request_id": index, "errors": [{"code": "NotFound", "path": "id"}]} for index in unknown
                ],
            }
        updated = []
        for item in body:
            lead = self.leads[item["id"]]
            lead.update({k: v for k, v in item.items() if k not in ("id", "request_id", "_embedded")})
            lead["updated_at"] = max(lead["updated_at"] + 1, self._now())
            updated.append(
                {
                    "id": lead["id"],
                    "updated_at": lead["updated_at"],
                    "_links": self._self("leads", lead["id"]),
                }
            )
        return 200, {"_links": {"self": {"href": self.base_url + path}}, "_embedded": {"leads": updated}}

    def lead_fields_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        return self._page("custom_fields", self.lead_fields, path, query)

    def lead_fields_post(self, path: str, query: Query, body: list[dict[str, Any]]) -> tuple[int, Any]:
        created = [{"id": self._id(), **item} for item in body]
        self.lead_fields.extend(created)
        return 200, {"_total_items": len(created), "_embedded": {"custom_fields": created}}

    def lead_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        lead = self.leads.get(int(path.rsplit("/", 1)[1]))
        return (200, lead) if lead else (204, None)

    def account_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        return 200, {**self.account, "_links": {"self": {"href": self.base_url + path}}}

    def pipelines_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        return 200, {"_total_items": len(self.pipelines), "_embedded": {"pipelines": self.pipelines}}

    def tasks_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        """The tasks, by ``filter[id][]``, ``filter[entity_type]`` and ``filter[entity_id][]`` when given."""
        ids = {int(value) for value in query.get("filter[id][]", [])}
        kinds = set(query.get("filter[entity_type]", []))
        entities = {int(value) for value in query.get("filter[entity_id][]", [])}
        found = [
            task
            for task_id, task in sorted(self.tasks.items())
            if (not ids or task_id in ids)
            and (not kinds or task["entity_type"] in kinds)
            and (not entities or task["entity_id"] in entities)
        ]
        return self._page("tasks", found, path, query)

    def notes_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        """An entity's notes, by ``filter[note_type]``, ``filter[entity_id][]`` and
        ``filter[updated_at][from]`` (updated at or after it) when given."""
        kinds = set(query.get("filter[note_type]", []) + query.get("filter[note_type][]", []))
        entities = {int(value) for value in query.get("filter[entity_id][]", [])}
        since = int(query.get("filter[updated_at][from]", ["0"])[0])
        found = [
            note
            for note in self.notes[path.split("/")[3]]
            if (not kinds or note["note_type"] in kinds)
            and (not entities or note["entity_id"] in entities)
            and note["updated_at"] >= since
        ]
        return self._page("notes", found, path, query)

    def notes_post(self, path: str, query: Query, body: list[dict[str, Any]]) -> tuple[int, Any]:
        entity = path.split("/")[3]
        created = []
        for index, item in enumerate(body):
            note = {
                "id": self._id(),
                "entity_id": item.get("entity_id"),
                "created_by": 0,
                "updated_by": 0,
                "created_at": self._now(),
                "updated_at": self._now(),
                "responsible_user_id": 1764433,
                "group_id": 0,
                "note_type": item.get("note_type", "common"),
                "params": item.get("params", {}),
                "account_id": self.account["id"],
            }
            self.notes[entity].append(note)
            request_id = item.get("request_id", str(index))
            created.append({"id": note["id"], "entity_id": note["entity_id"], "request_id": request_id})
        return 200, {"_links": {"self": {"href": self.base_url + path}}, "_embedded": {"notes": created}}

    def tasks_post(self, path: str, query: Query, body: list[dict[str, Any]]) -> tuple[int, Any]:
        created = []
        for index, item in enumerate(body):
            task = {
                "id": self._id(),
                "created_by": 1764433,
                "updated_by": 1764433,
                "created_at": self._now(),
                "updated_at": self._now(),
                "responsible_user_id": item.get("responsible_user_id", 1764433),
                "group_id": 0,
                "entity_id": item.get("entity_id"),
                "entity_type": item.get("entity_type"),
                "is_completed": item.get("is_completed", False),
                "task_type_id": item.get("task_type_id", 1),
                "text": item.get("text", ""),
                "duration": item.get("duration", 0),
                "complete_till": item.get("complete_till"),
                "result": [],
                "account_id": self.account["id"],
            }
            self.tasks[task["id"]] = task
            request_id = item.get("request_id", str(index))
            created.append(
                {"id": task["id"], "request_id": request_id, "_links": self._self("tasks", task["id"])}
            )
        return 200, {"_links": {"self": {"href": self.base_url + path}}, "_embedded": {"tasks": created}}

    def events_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        """The events, by ``filter[type]`` and ``filter[entity]`` (comma-separated lists, as the client
        sends them) and ``filter[created_at][from]`` and ``[to]`` (both inclusive) when given."""

        def listed(key: str) -> set[str]:
            return {item for value in query.get(key, []) for item in value.split(",") if item}

        kinds, entities = listed("filter[type]") | listed("filter[type][]"), listed("filter[entity]")
        since = int(query.get("filter[created_at][from]", ["0"])[0])
        until = int(query["filter[created_at][to]"][0]) if "filter[created_at][to]" in query else None
        found = [
            event
            for event in self.events
            if (not kinds or event["type"] in kinds)
            and (not entities or event["entity_type"] in entities)
            and event["created_at"] >= since
            and (until is None or event["created_at"] <= until)
        ]
        return self._page("events", found, path, query)

    def webhooks_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        wanted = query.get("filter[destination]")
        found = [hook for hook in self.webhooks if not wanted or hook["destination"] in wanted]
        return self._page("webhooks", found, path, query)

    def webhooks_post(self, path: str, query: Query, body: dict[str, Any]) -> tuple[int, Any]:
        """Subscribes ``destination`` (again: its settings replaced), as webhook-subscribe-response.json."""
        self.webhooks = [hook for hook in self.webhooks if hook["destination"] != body["destination"]]
        hook = {
            "id": self._id(),
            "destination": body["destination"],
            "created_at": self._now(),
            "updated_at": self._now(),
            "account_id": self.account["id"],
            "created_by": self.account.get("current_user_id", 0),
            "sort": body.get("sort", 1),
            "disabled": False,
            "settings": body["settings"],
        }
        self.webhooks.append(hook)
        return 200, hook

    def webhooks_delete(self, path: str, query: Query, body: dict[str, Any]) -> tuple[int, Any]:
        self.webhooks = [hook for hook in self.webhooks if hook["destination"] != body["destination"]]
        return 204, None

    def elements_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        return self._page(
            "elements", self._by_id(self.elements.get(int(path.split("/")[4]), {}), query), path, query
        )

    def elements_post(self, path: str, query: Query, body: list[dict[str, Any]]) -> tuple[int, Any]:
        catalog_id = int(path.split("/")[4])
        created = []
        for item in body:
            element = {
                "id": self._id(),
                "name": item["name"],
                "catalog_id": catalog_id,
                "custom_fields_values": [],
                "request_id": item.get("request_id"),
                "updated_at": 1700000000,
            }
            self.elements.setdefault(catalog_id, {})[element["id"]] = element
            created.append(element)
        return 200, {"_embedded": {"elements": created}}

    def elements_patch(self, path: str, query: Query, body: list[dict[str, Any]]) -> tuple[int, Any]:
        """Each element's written fields replace its own (an empty list of values clears one), of the type
        the field had, or ``field_types`` gives for one written for the first time (else "select")."""
        pool = self.elements.get(int(path.split("/")[4]), {})
        answered = []
        for item in body:
            element = pool[item["id"]]
            fields = {f["field_id"]: f for f in element.get("custom_fields_values") or []}
            for written in item.get("custom_fields_values") or []:
                field_id = written["field_id"]
                if written["values"]:
                    kept = fields.get(field_id)
                    fields[field_id] = {
                        "field_id": field_id,
                        "field_type": kept["field_type"]
                        if kept
                        else self.field_types.get(field_id, "select"),
                        "values": written["values"],
                    }
                else:
                    fields.pop(field_id, None)
            element["custom_fields_values"] = list(fields.values())
            element["updated_at"] = int(dt.datetime.now(dt.UTC).timestamp())
            answered.append(element)
        return 200, {"_embedded": {"elements": answered}}
