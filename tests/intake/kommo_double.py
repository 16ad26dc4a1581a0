"""A Kommo account at the HTTP boundary for intake tests, built on ``responses``.

It answers the calls intake makes (contact search and reads, contact create/update, /leads/complex,
lead search and read, the deals' custom fields, catalog elements, links) in Kommo's shapes, keeps what
was created, and lists every call so tests can assert the exact sequence. ``answer_next`` replaces the
next answer to one route."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import responses

BASE_URL = "https://example.kommo.com"
EMAIL_FIELD_ID, PHONE_FIELD_ID = 178380, 178382
MARKER_FIELD_ID = 178500  # the deals' "Intake submission" field (see the ``account`` fixture)


def contact_payload(
    contact_id: int, name: str, *, emails: tuple[str, ...] = (), phones: tuple[str, ...] = (), extra=()
) -> dict[str, Any]:
    fields = []
    if emails:
        values = [{"value": value, "enum_code": "WORK"} for value in emails]
        fields.append(
            {
                "field_id": EMAIL_FIELD_ID,
                "field_name": "Email",
                "field_code": "EMAIL",
                "field_type": "multitext",
                "values": values,
            }
        )
    if phones:
        values = [{"value": value, "enum_code": "WORK"} for value in phones]
        fields.append(
            {
                "field_id": PHONE_FIELD_ID,
                "field_name": "Phone",
                "field_code": "PHONE",
                "field_type": "multitext",
                "values": values,
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


class KommoDouble:
    def __init__(self, mock: responses.RequestsMock) -> None:
        self.mock = mock
        self.contacts: dict[int, dict[str, Any]] = {}
        self.leads: dict[int, dict[str, Any]] = {}
        self.next_id = 5000
        self.overrides: dict[str, list[tuple[int, Any]]] = {}
        self.merge_into: tuple[int, int] | None = None
        self.lead_fields: list[dict[str, Any]] = []
        routes = [
            ("GET", r"/api/v4/contacts", self.contacts_get),
            ("POST", r"/api/v4/contacts", self.contacts_post),
            ("PATCH", r"/api/v4/contacts", self.contacts_patch),
            ("POST", r"/api/v4/leads/complex", self.complex_post),
            ("GET", r"/api/v4/leads/custom_fields", self.lead_fields_get),
            ("POST", r"/api/v4/leads/custom_fields", self.lead_fields_post),
            ("GET", r"/api/v4/leads", self.leads_get),
            ("POST", r"/api/v4/leads/\d+/link", self.link_post),
            ("GET", r"/api/v4/leads/\d+", self.lead_get),
            ("POST", r"/api/v4/catalogs/\d+/elements", self.elements_post),
        ]
        for method, path, handler in routes:
            mock.add_callback(
                method,
                re.compile(re.escape(BASE_URL) + path + r"(\?.*)?$"),
                callback=self._route(path, handler),
            )

    # -- test helpers ---------------------------------------------------------------------------------

    def add_contact(self, name: str, **kwargs: Any) -> dict[str, Any]:
        contact = contact_payload(self._id(), name, **kwargs)
        self.contacts[contact["id"]] = contact
        return contact

    def answer_next(self, route: str, status: int, body: Any) -> None:
        self.overrides.setdefault(route, []).append((status, body))

    @property
    def calls(self) -> list[str]:
        out = []
        for call in self.mock.calls:
            parts = urlsplit(call.request.url)
            query = {k: v for k, v in parse_qs(parts.query).items() if k != "limit"}
            suffix = "?" + "&".join(f"{k}={','.join(v)}" for k, v in sorted(query.items())) if query else ""
            out.append(f"{call.request.method} {parts.path}{suffix}")
        return out

    def body(self, index: int) -> Any:
        return json.loads(self.mock.calls[index].request.body)

    def add_marker_field(self) -> dict[str, Any]:
        field = {"id": MARKER_FIELD_ID, "name": "Intake submission", "type": "text", "code": "PORTAL_INTAKE"}
        self.lead_fields.append(field)
        return field

    def contacts_created(self) -> list[dict[str, Any]]:
        return list(self.contacts.values())

    # -- plumbing -------------------------------------------------------------------------------------

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _route(self, route: str, handler):  # type: ignore[no-untyped-def]
        def callback(request):  # type: ignore[no-untyped-def]
            pending = self.overrides.get(route)
            if pending:
                status, body = pending.pop(0)
                return status, {"Content-Type": "application/problem+json"}, json.dumps(body)
            parts = urlsplit(request.url)
            body = json.loads(request.body) if request.body else None
            status, answer = handler(parts.path, parse_qs(parts.query), body)
            return (
                status,
                {"Content-Type": "application/hal+json"},
                "" if answer is None else json.dumps(answer),
            )

        return callback

    def _texts(self, contact: dict[str, Any]) -> Iterator[str]:
        for field in contact.get("custom_fields_values") or []:
            for value in field["values"]:
                yield str(value.get("value", ""))

    def contacts_get(self, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if "query" in query:
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
        else:
            ids = {int(value) for value in query.get("filter[id][]", [])}
            found = [c for c in self.contacts.values() if c["id"] in ids]
        return (200, {"_page": 1, "_links": {}, "_embedded": {"contacts": found}}) if found else (204, None)

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

    def contacts_post(self, path: str, query: Any, body: list[dict[str, Any]]) -> tuple[int, Any]:
        created = [
            {"id": self._store(item), "request_id": item.get("request_id", str(i))}
            for i, item in enumerate(body)
        ]
        return 200, {"_embedded": {"contacts": created}}

    def contacts_patch(self, path: str, query: Any, body: list[dict[str, Any]]) -> tuple[int, Any]:
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

    def complex_post(self, path: str, query: Any, body: list[dict[str, Any]]) -> tuple[int, Any]:
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

    def link_post(self, path: str, query: Any, body: list[dict[str, Any]]) -> tuple[int, Any]:
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

    def leads_get(self, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        needle = query.get("query", [""])[0].lower()
        found = [
            lead
            for lead in self.leads.values()
            if needle in lead["name"].lower()
            or any(
                needle in str(value.get("value", "")).lower()
                for field in lead.get("custom_fields_values") or []
                for value in field["values"]
            )
        ]
        return (200, {"_page": 1, "_links": {}, "_embedded": {"leads": found}}) if found else (204, None)

    def lead_fields_get(self, path: str, query: Any, body: Any) -> tuple[int, Any]:
        if not self.lead_fields:
            return 204, None
        return 200, {"_page": 1, "_links": {}, "_embedded": {"custom_fields": self.lead_fields}}

    def lead_fields_post(self, path: str, query: Any, body: list[dict[str, Any]]) -> tuple[int, Any]:
        created = [{"id": self._id(), **item} for item in body]
        self.lead_fields.extend(created)
        return 200, {"_total_items": len(created), "_embedded": {"custom_fields": created}}

    def lead_get(self, path: str, query: Any, body: Any) -> tuple[int, Any]:
        lead = self.leads.get(int(path.rsplit("/", 1)[1]))
        return (200, lead) if lead else (204, None)

    def elements_post(self, path: str, query: Any, body: list[dict[str, Any]]) -> tuple[int, Any]:
        catalog_id = int(path.split("/")[4])
        elements = [
            {
                "id": self._id(),
                "name": item["name"],
                "catalog_id": catalog_id,
                "custom_fields_values": [],
                "request_id": item.get("request_id"),
                "updated_at": 1700000000,
            }
            for item in body
        ]
        return 200, {"_embedded": {"elements": elements}}
