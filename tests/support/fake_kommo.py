"""One Kommo account at the HTTP boundary for unit tests, built on ``responses``: the fake Kommo of the suite
(the sandbox, over real HTTP, is the other one).

It answers the REST API v4 calls the portal makes in Kommo's shapes (/work/shared/kommo/API.md): the lists
of leads, contacts and companies by ``filter[id][]`` or by ``query`` (204 when nothing is found), one lead,
contacts created and updated, /leads/complex, links, the deals' custom fields, and catalog elements listed,
created and updated. It keeps what it holds and what it was asked in plain dicts (``leads``, ``contacts``,
``companies``, ``elements[catalog_id]``, ``lead_fields``) for tests to arrange and inspect, and lists every
call (``calls``: ``"METHOD /path?query"`` without ``limit``; ``calls_to``: the queries of the calls to a
path; ``body``: a call's JSON body).

Faults: ``failure`` answers every call with one status and body while it is set; ``answer_next`` replaces
the next answer to one route; ``merge_into`` makes /leads/complex report a merge into an existing deal;
a subclass may override :meth:`FakeKommo.intercept` to answer some calls itself.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import responses

BASE_URL = "https://example.kommo.com"
EMAIL_FIELD_ID, PHONE_FIELD_ID = 178380, 178382
MARKER_FIELD_ID = 178500  # the deals' "Intake submission" field (see tests/intake/conftest.py)

Answer = tuple[int, dict[str, str], str]
Query = dict[str, list[str]]


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
        self.leads: dict[int, dict[str, Any]] = {}
        self.contacts: dict[int, dict[str, Any]] = {}
        self.companies: dict[int, dict[str, Any]] = {}
        self.elements: dict[int, dict[int, dict[str, Any]]] = {}
        self.lead_fields: list[dict[str, Any]] = []
        # The type of a catalog field an element update writes for the first time (else "select").
        self.field_types: dict[int, str] = {}
        self.failure: tuple[int, dict[str, Any]] | None = None
        self.merge_into: tuple[int, int] | None = None
        self.next_id = 5000
        self.overrides: dict[str, list[tuple[int, Any]]] = {}
        self.requests: list[Any] = []  # every request answered, kept after the mock is closed
        routes: list[tuple[str, str, Callable[[str, Query, Any], tuple[int, Any]]]] = [
            ("GET", r"/api/v4/contacts", self.contacts_get),
            ("POST", r"/api/v4/contacts", self.contacts_post),
            ("PATCH", r"/api/v4/contacts", self.contacts_patch),
            ("GET", r"/api/v4/companies", self.companies_get),
            ("POST", r"/api/v4/leads/complex", self.complex_post),
            ("GET", r"/api/v4/leads/custom_fields", self.lead_fields_get),
            ("POST", r"/api/v4/leads/custom_fields", self.lead_fields_post),
            ("GET", r"/api/v4/leads", self.leads_get),
            ("POST", r"/api/v4/leads/\d+/link", self.link_post),
            ("GET", r"/api/v4/leads/\d+", self.lead_get),
            ("GET", r"/api/v4/catalogs/\d+/elements", self.elements_get),
            ("POST", r"/api/v4/catalogs/\d+/elements", self.elements_post),
            ("PATCH", r"/api/v4/catalogs/\d+/elements", self.elements_patch),
        ]
        for method, path, handler in routes:
            mock.add_callback(
                method,
                re.compile(re.escape(base_url) + path + r"(\?.*)?$"),
                callback=self._route(path, handler),
            )

    # -- arranging --------------------------------------------------------------------------------------

    def lead(
        self, lead_id: int, status_id: int, pipeline_id: int, updated_at: int = 1_615_985_846
    ) -> dict[str, Any]:
        """A deal Kommo holds, as ``GET /api/v4/leads`` lists it."""
        self.leads[lead_id] = {
            "id": lead_id,
            "name": f"Deal {lead_id}",
            "price": 1000,
            "responsible_user_id": 1764433,
            "group_id": 0,
            "status_id": status_id,
            "pipeline_id": pipeline_id,
            "created_by": 1764433,
            "updated_by": 1760815,
            "created_at": 1_615_894_221,
            "updated_at": updated_at,
            "account_id": 16503244,
            "_embedded": {"tags": [], "contacts": [], "companies": [], "catalog_elements": []},
        }
        return self.leads[lead_id]

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

    def calls_to(self, path_end: str) -> list[Query]:
        """The queries of the calls whose path ends with ``path_end``, in order."""
        found = []
        for request in self.requests:
            parts = urlsplit(request.url)
            if parts.path.endswith(path_end):
                found.append(parse_qs(parts.query))
        return found

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

    def _route(self, route: str, handler):  # type: ignore[no-untyped-def]
        def callback(request: Any) -> Answer:
            self.requests.append(request)
            own = self.intercept(request)
            if own is not None:
                return own
            if self.failure is not None:
                status, problem = self.failure
                return status, {"Content-Type": "application/problem+json"}, json.dumps(problem)
            pending = self.overrides.get(route)
            if pending:
                status, problem = pending.pop(0)
                return status, {"Content-Type": "application/problem+json"}, json.dumps(problem)
            parts = urlsplit(request.url)
            body = json.loads(request.body) if request.body else None
            status, answer = handler(parts.path, parse_qs(parts.query), body)
            return (
                status,
                {"Content-Type": "application/hal+json"},
                "" if answer is None else json.dumps(answer),
            )

        return callback

    @staticmethod
    def _page(section: str, found: list[dict[str, Any]]) -> tuple[int, Any]:
        if not found:
            return 204, None
        return 200, {"_page": 1, "_links": {}, "_embedded": {section: found}}

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
            return self._page("contacts", self._by_id(self.contacts, query))
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
        return self._page("contacts", found)

    def companies_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        return self._page("companies", self._by_id(self.companies, query))

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
        links = [{"entity_id": lead_id, "entity_type": "leads", **link} for link in body]
        return 200, {"_total_items": len(links), "_embedded": {"links": links}}

    def leads_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        if "filter[id][]" in query:
            return self._page("leads", self._by_id(self.leads, query))
        needle = query.get("query", [""])[0].lower()
        found = [
            lead
            for lead in self.leads.values()
            if needle in lead["name"].lower() or any(needle in text.lower() for text in self._texts(lead))
        ]
        return self._page("leads", found)

    def lead_fields_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        return self._page("custom_fields", self.lead_fields)

    def lead_fields_post(self, path: str, query: Query, body: list[dict[str, Any]]) -> tuple[int, Any]:
        created = [{"id": self._id(), **item} for item in body]
        self.lead_fields.extend(created)
        return 200, {"_total_items": len(created), "_embedded": {"custom_fields": created}}

    def lead_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        lead = self.leads.get(int(path.rsplit("/", 1)[1]))
        return (200, lead) if lead else (204, None)

    def elements_get(self, path: str, query: Query, body: Any) -> tuple[int, Any]:
        return self._page("elements", self._by_id(self.elements.get(int(path.split("/")[4]), {}), query))

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
        """Each element's written fields replace its own (an empty list of values clears one)."""
        pool = self.elements.get(int(path.split("/")[4]), {})
        answered = []
        for item in body:
            element = pool[item["id"]]
            fields = {f["field_id"]: f for f in element.get("custom_fields_values") or []}
            for written in item.get("custom_fields_values") or []:
                field_id = written["field_id"]
                if written["values"]:
                    fields[field_id] = {
                        "field_id": field_id,
                        "field_type": self.field_types.get(field_id, "select"),
                        "values": written["values"],
                    }
                else:
                    fields.pop(field_id, None)
            element["custom_fields_values"] = list(fields.values())
            element["updated_at"] = int(dt.datetime.now(dt.UTC).timestamp())
            answered.append(element)
        return 200, {"_embedded": {"elements": answered}}
