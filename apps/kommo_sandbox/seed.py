"""Seed data: ``empty``, ``demo`` (the B2B pipeline of the architecture document) and ``large:N``.

Seeds write records directly: they record a plausible event history for the demo deals but publish no
changes. Everything is deterministic for a given ``now`` (a fixed random seed).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from apps.kommo_sandbox.entities import (
    LOST_STATUS_ID,
    WON_STATUS_ID,
    Catalog,
    CatalogElement,
    Company,
    Contact,
    CustomField,
    Enum,
    Group,
    Lead,
    LossReason,
    Note,
    Pipeline,
    Role,
    Status,
    Task,
    TaskType,
    User,
)
from apps.kommo_sandbox.fields import EMAIL_ENUM_CODES, PHONE_ENUM_CODES
from apps.kommo_sandbox.services.setup import system_statuses
from apps.kommo_sandbox.store import Account, SandboxStore

DAY = 86400
RANDOM_SEED = 20240611
ROLES = ("Decision maker", "Technical evangelist", "User", "Lawyer", "Influencer", "Blocker")
APPROVALS = ("Pending", "Approved", "Rejected")
B2B_STAGES = (
    ("DM qualification", "#99ccff"),
    ("Technical validation", "#ffcc66"),
    ("Budget approval", "#ffff99"),
    ("Legal review", "#ff8f92"),
    ("Signing", "#deff81"),
)
# How many of the 45 demo deals sit in each stage: incoming, the five working stages, won, lost.
DEMO_DISTRIBUTION = (3, 8, 7, 6, 6, 5, 6, 4)

USERS = (
    ("Alex Morgan", "alex.morgan", True, None),
    ("Dana Whitfield", "dana.whitfield", False, "Head of sales"),
    ("Chris Novak", "chris.novak", False, "Manager"),
    ("Priya Raman", "priya.raman", False, "Manager"),
    ("Mateo Alvarez", "mateo.alvarez", False, "Manager"),
    ("Sofia Lindqvist", "sofia.lindqvist", False, "Manager"),
)
COMPANIES = (
    "Northwind Logistics",
    "Bluefin Analytics",
    "Cedar & Pine Health",
    "Helios Energy Systems",
    "Ironbridge Capital",
    "Lumen Retail Group",
    "Maple Grove Foods",
    "Nimbus Cloudworks",
    "Orion Aerospace",
    "Pioneer Biotech",
    "Quarry Lane Construction",
    "Redwood Insurance",
    "Silverline Telecom",
    "Summit Education",
    "Tidewater Shipping",
    "Umbra Security",
    "Vantage Media",
    "Willow Creek Hotels",
    "Zenith Manufacturing",
    "Atlas Legal Partners",
    "Beacon Pharmaceuticals",
    "Crescent Automotive",
    "Driftwood Apparel",
    "Evergreen Utilities",
    "Falcon Freight",
    "Granite Software",
    "Harbor Health Network",
    "Keystone Realty",
    "Lighthouse Robotics",
    "Meridian Banking",
)
PRODUCTS = (
    "Analytics platform",
    "Data warehouse migration",
    "SSO rollout",
    "Enterprise license",
    "Support upgrade",
    "Security audit",
    "Onboarding package",
    "API integration",
    "Workflow automation",
    "Reporting suite",
)
FIRST_NAMES = (
    "Maria",
    "James",
    "Aisha",
    "Daniel",
    "Elena",
    "Michael",
    "Grace",
    "Tomás",
    "Hannah",
    "Oliver",
    "Fatima",
    "Lucas",
    "Chloe",
    "Ethan",
    "Nora",
    "Samuel",
    "Yuki",
    "David",
    "Amara",
    "Leo",
    "Isabel",
    "Ryan",
    "Mei",
    "Jonas",
    "Priscilla",
    "Victor",
    "Zara",
    "Benjamin",
    "Lena",
    "Omar",
)
LAST_NAMES = (
    "Lopez",
    "Carter",
    "Okafor",
    "Schmidt",
    "Petrova",
    "Chen",
    "Walsh",
    "Ferreira",
    "Kowalski",
    "Bennett",
    "Haddad",
    "Moreau",
    "Nguyen",
    "Foster",
    "Lindgren",
    "Adeyemi",
    "Tanaka",
    "Goldberg",
    "Mensah",
    "Rossi",
    "Navarro",
    "O'Brien",
    "Zhang",
    "Becker",
    "Hughes",
    "Ivanova",
    "Patel",
    "Murphy",
    "Keller",
    "Rahman",
)
POSITIONS = {
    "Decision maker": ("VP of Operations", "Chief Financial Officer", "Chief Operating Officer"),
    "Technical evangelist": ("Head of Engineering", "Solutions Architect", "IT Director"),
    "User": ("Operations Analyst", "Team Lead", "Data Analyst"),
    "Lawyer": ("General Counsel", "Legal Counsel", "Contracts Manager"),
    "Influencer": ("Product Manager", "Procurement Manager", "Finance Manager"),
    "Blocker": ("Security Officer", "Compliance Manager", "Head of IT Security"),
}
AREA_CODES = ("212", "312", "415", "512", "617", "646", "206", "303")


@dataclass(frozen=True)
class SeedSpec:
    kind: str  # empty | demo | large
    count: int = 0


def parse_seed(text: str) -> SeedSpec:
    if text in ("empty", "demo"):
        return SeedSpec(text)
    match = re.fullmatch(r"large:(\d+)", text)
    if match:
        return SeedSpec("large", int(match[1]))
    raise ValueError(f"unknown seed {text!r}: use empty, demo or large:N")


class _Builder:
    """Writes one account's records straight into the store."""

    def __init__(self, store: SandboxStore, account: Account, now: int) -> None:
        self.store = store
        self.account = account
        self.now = now
        self.random = random.Random(RANDOM_SEED)  # noqa: S311 - reproducible demo data

    def id(self, kind: str) -> int:
        return self.store.next_id(kind)

    # --- account skeleton -----------------------------------------------------------------------------------

    def users(self) -> None:
        group = Group(self.id("group"), "Sales team")
        self.account.groups[group.id] = group
        roles: dict[str, Role] = {}
        domain = f"{self.account.subdomain}.example"
        for name, login, is_admin, role_name in USERS:
            role = None
            if role_name is not None:
                role = roles.get(role_name)
                if role is None:
                    role = roles[role_name] = Role(self.id("role"), role_name)
                    self.account.roles[role.id] = role
            user = User(
                id=self.id("user"),
                name=name,
                email=f"{login}@{domain}",
                is_admin=is_admin,
                group_id=None if is_admin else group.id,
                role_id=role.id if role else None,
                phone_number=f"+1415555{len(self.account.users):04d}",
            )
            self.account.users[user.id] = user

    def basics(self) -> None:
        for task_type in (TaskType(1, "Follow-up", "FOLLOW_UP"), TaskType(2, "Meeting", "MEETING")):
            self.account.task_types[task_type.id] = task_type
        for sort, name in enumerate(("Budget cut", "Chose a competitor", "No decision"), start=1):
            reason = LossReason(
                self.id("loss_reason"), name, sort * 100, self.now - 300 * DAY, self.now - 300 * DAY
            )
            self.account.loss_reasons[reason.id] = reason
        self.predefined_fields()

    def field(
        self, entity_type: str, name: str, type_: str, code: str | None = None, **extra: Any
    ) -> CustomField:
        enums = extra.pop("enums", None)
        field = CustomField(
            id=self.id("field"), name=name, type=type_, entity_type=entity_type, code=code, **extra
        )
        if enums is not None:
            field.enums = [
                Enum(self.id("enum"), value, (index + 1) * 2, code_)
                for index, (value, code_) in enumerate(enums)
            ]
        self.account.fields[field.id] = field
        return field

    def predefined_fields(self) -> None:
        for entity_type in ("contacts", "companies"):
            predefined = {"is_predefined": True, "is_deletable": False}
            self.field(
                entity_type,
                "Phone",
                "multitext",
                "PHONE",
                enums=[(c, None) for c in PHONE_ENUM_CODES],
                **predefined,
            )
            self.field(
                entity_type,
                "Email",
                "multitext",
                "EMAIL",
                enums=[(c, None) for c in EMAIL_ENUM_CODES],
                **predefined,
            )
            if entity_type == "contacts":
                self.field(entity_type, "Position", "text", "POSITION", **predefined)
            else:
                self.field(entity_type, "Web", "url", "WEB", **predefined)
                self.field(entity_type, "Address", "textarea", "ADDRESS", **predefined)

    def pipeline(self, name: str, stages: tuple[tuple[str, str], ...]) -> Pipeline:
        pipeline_id = self.id("pipeline")
        pipeline = Pipeline(
            pipeline_id, name, 1, is_main=True, statuses=system_statuses(pipeline_id, self.id("status"))
        )
        for index, (stage, color) in enumerate(stages):
            pipeline.statuses.append(Status(self.id("status"), stage, 20 + index * 10, pipeline_id, color))
        self.account.pipelines[pipeline.id] = pipeline
        return pipeline

    # --- people ---------------------------------------------------------------------------------------------

    def multitext(self, entity_type: str, code: str, value: str, enum_code: str) -> dict[str, Any]:
        field = self.account.field_codes_for(entity_type)[code]
        enum = field.enum_by_code(enum_code)
        assert enum is not None
        return {
            "field_id": field.id,
            "values": [{"value": value, "enum_id": enum.id, "enum_code": enum.value}],
        }

    def company(self, name: str, responsible: int, created_at: int) -> Company:
        slug = re.sub(r"[^a-z]+", "", name.lower().replace("&", "and"))
        company = Company(
            id=self.id("company"),
            name=name,
            responsible_user_id=responsible,
            created_by=responsible,
            updated_by=responsible,
            created_at=created_at,
            updated_at=created_at,
            custom_fields_values=[
                {
                    "field_id": self.account.field_codes_for("companies")["WEB"].id,
                    "values": [{"value": f"https://{slug}.example"}],
                },
                self.multitext("companies", "PHONE", self.phone(), "WORK"),
            ],
        )
        self.account.companies[company.id] = company
        return company

    def phone(self) -> str:
        return f"+1{self.random.choice(AREA_CODES)}5550{self.random.randint(100, 199)}"

    def contact(
        self,
        first: str,
        last: str,
        company: Company,
        responsible: int,
        created_at: int,
        extra: list[dict[str, Any]],
    ) -> Contact:
        domain = re.sub(r"[^a-z]+", "", company.name.lower().replace("&", "and"))
        email = f"{first.lower()}.{re.sub(r'[^a-z]', '', last.lower())}@{domain}.example"
        contact = Contact(
            id=self.id("contact"),
            name=f"{first} {last}",
            first_name=first,
            last_name=last,
            responsible_user_id=responsible,
            created_by=responsible,
            updated_by=responsible,
            created_at=created_at,
            updated_at=created_at,
            custom_fields_values=[
                self.multitext("contacts", "PHONE", self.phone(), "WORK"),
                self.multitext("contacts", "EMAIL", email, "WORK"),
                *extra,
            ],
        )
        self.account.contacts[contact.id] = contact
        self.account.links.link(("contacts", contact.id), ("companies", company.id), None)
        return contact

    def lead(
        self,
        name: str,
        price: int,
        pipeline: Pipeline,
        status_id: int,
        responsible: int,
        created_at: int,
        updated_at: int,
    ) -> Lead:
        closed = status_id in (WON_STATUS_ID, LOST_STATUS_ID)
        lead = Lead(
            id=self.id("lead"),
            name=name,
            price=price,
            responsible_user_id=responsible,
            status_id=status_id,
            pipeline_id=pipeline.id,
            created_by=responsible,
            updated_by=responsible,
            created_at=created_at,
            updated_at=updated_at,
            closed_at=updated_at if closed else None,
        )
        self.account.leads[lead.id] = lead
        return lead


def _select_value(field: CustomField, label: str) -> dict[str, Any]:
    enum = field.enum_by_value(label)
    assert enum is not None
    return {
        "field_id": field.id,
        "values": [{"value": enum.value, "enum_id": enum.id, "enum_code": enum.code}],
    }


def new_account(store: SandboxStore, account_id: int | None, subdomain: str, name: str, now: int) -> Account:
    return Account(
        id=account_id or store.next_id("account"), name=name, subdomain=subdomain, created_at=now - 400 * DAY
    )


def seed_account(
    store: SandboxStore,
    spec: SeedSpec,
    subdomain: str = "sandbox",
    name: str = "Northbeam Software",
    account_id: int | None = None,
    now: int | None = None,
) -> Account:
    """Build an account for ``spec`` and add it to the store (the first one added becomes the default)."""
    now = store.now() if now is None else now
    with store.lock:
        account = new_account(store, account_id, subdomain, name, now)
        builder = _Builder(store, account, now)
        builder.users()
        builder.basics()
        if spec.kind == "empty":
            builder.pipeline(
                "Sales pipeline",
                (("Initial contact", "#99ccff"), ("Negotiation", "#ffcc66"), ("Decision making", "#ffff99")),
            )
        elif spec.kind == "demo":
            _demo(builder)
        else:
            _large(builder, spec.count)
        return store.add_account(account)


# --- demo ---------------------------------------------------------------------------------------------------


def _demo(b: _Builder) -> None:
    account = b.account
    pipeline = b.pipeline("B2B sales", B2B_STAGES)
    incoming = next(s for s in pipeline.statuses if s.type == 1)
    working = [
        s for s in pipeline.ordered_statuses() if s.type == 0 and s.id not in (WON_STATUS_ID, LOST_STATUS_ID)
    ]
    stage_order = [incoming, *working]
    closed = {s.id: s for s in pipeline.statuses if s.id in (WON_STATUS_ID, LOST_STATUS_ID)}
    targets = [incoming, *working, closed[WON_STATUS_ID], closed[LOST_STATUS_ID]]

    role_field = b.field(
        "contacts", "Role in the purchase", "select", enums=[(r, None) for r in ROLES], sort=510
    )
    segment = b.field(
        "leads", "Segment", "select", enums=[(s, None) for s in ("SMB", "Mid-market", "Enterprise")]
    )
    expected_close = b.field("leads", "Expected close date", "date", sort=520)
    catalog = Catalog(
        b.id("catalog"),
        "Stakeholders",
        "regular",
        10,
        account.admin_user.id,
        account.admin_user.id,
        b.now - 200 * DAY,
        b.now - 200 * DAY,
    )
    account.catalogs[catalog.id] = catalog
    cat_role = b.field("catalogs", "Role", "select", enums=[(r, None) for r in ROLES], catalog_id=catalog.id)
    cat_approval = b.field(
        "catalogs", "Approval status", "select", enums=[(a, None) for a in APPROVALS], catalog_id=catalog.id
    )
    cat_touch = b.field("catalogs", "Last touch", "date", catalog_id=catalog.id)

    users = list(account.users.values())
    managers = [u.id for u in users if not u.is_admin]
    rng = b.random
    names = [(f, l) for f in FIRST_NAMES for l in LAST_NAMES]  # noqa: E741
    rng.shuffle(names)
    companies = []
    for index, company_name in enumerate(COMPANIES):
        created = b.now - rng.randint(150, 220) * DAY
        company = b.company(company_name, managers[index % len(managers)], created)
        companies.append(company)

    legal_review_seen = 0
    deal_index = 0
    for target_index, count in enumerate(DEMO_DISTRIBUTION):
        target = targets[target_index]
        for _ in range(count):
            company = companies[deal_index % len(companies)]
            product = PRODUCTS[(deal_index * 7) % len(PRODUCTS)]
            responsible = managers[(deal_index * 3 + 1) % len(managers)]
            price = max(8000, int(round(rng.gauss(35000, 9000) / 500) * 500))
            created = b.now - rng.randint(20, 175) * DAY
            if target.id == WON_STATUS_ID:
                reached, path = len(stage_order) - 1, [*stage_order, target]
            elif target.id == LOST_STATUS_ID:
                reached = rng.randint(1, len(stage_order) - 1)
                path = [*stage_order[: reached + 1], target]
            else:
                reached, path = target_index, stage_order[: target_index + 1]
            step = max(1, (b.now - DAY - created) // (len(path) + 1))
            times = [created + i * step + rng.randint(0, step // 3) for i in range(len(path))]
            lead = b.lead(
                f"{company.name} — {product}", price, pipeline, target.id, responsible, created, times[-1]
            )
            lead.custom_fields_values = [
                _select_value(segment, ("SMB", "Mid-market", "Enterprise")[deal_index % 3]),
                {"field_id": expected_close.id, "values": [{"value": b.now + rng.randint(10, 90) * DAY}]},
            ]
            if target.id == LOST_STATUS_ID:
                lead.loss_reason_id = list(account.loss_reasons)[deal_index % len(account.loss_reasons)]
            account.links.link(("leads", lead.id), ("companies", company.id), None)
            b.store.record_event(
                account,
                "lead_added",
                "lead",
                lead.id,
                responsible,
                after=[{"lead_status": {"id": path[0].id, "pipeline_id": pipeline.id}}],
                at=times[0],
            )
            for previous, current, at in zip(path, path[1:], times[1:], strict=False):
                b.store.record_event(
                    account,
                    "lead_status_changed",
                    "lead",
                    lead.id,
                    responsible,
                    before=[{"lead_status": {"id": previous.id, "pipeline_id": pipeline.id}}],
                    after=[{"lead_status": {"id": current.id, "pipeline_id": pipeline.id}}],
                    at=at,
                )
            in_legal = target.name == "Legal review"
            if in_legal:
                legal_review_seen += 1
            _stakeholders(
                b,
                lead,
                company,
                reached,
                target,
                in_legal and legal_review_seen % 2 == 1,
                names,
                role_field,
                catalog,
                cat_role,
                cat_approval,
                cat_touch,
            )
            _activities(b, lead, target, responsible)
            deal_index += 1


def _stakeholders(
    b: _Builder,
    lead: Lead,
    company: Company,
    reached: int,
    target: Status,
    lawyer_pending: bool,
    names: list[tuple[str, str]],
    role_field: CustomField,
    catalog: Catalog,
    cat_role: CustomField,
    cat_approval: CustomField,
    cat_touch: CustomField,
) -> None:
    rng = b.random
    count = rng.randint(2, 5)
    roles = ["Decision maker", "Technical evangelist"]
    if reached >= 4 or count >= 4:  # from legal review on, every deal has a lawyer
        roles.append("Lawyer")
    extra = ["User", "Influencer", "Blocker", "User", "Influencer"]
    while len(roles) < count:
        roles.append(extra[len(roles) % len(extra)])
    for index, role in enumerate(roles):
        first, last = names.pop()
        position = rng.choice(POSITIONS[role])
        position_field = b.account.field_codes_for("contacts")["POSITION"]
        contact = b.contact(
            first,
            last,
            company,
            lead.responsible_user_id,
            lead.created_at,
            [
                _select_value(role_field, role),
                {"field_id": position_field.id, "values": [{"value": position}]},
            ],
        )
        b.account.links.link(("leads", lead.id), ("contacts", contact.id), {"main_contact": index == 0})
        if target.id == WON_STATUS_ID:
            approval = "Approved"
        elif target.id == LOST_STATUS_ID:
            approval = "Rejected" if role in ("Decision maker", "Blocker") else "Pending"
        elif role == "Lawyer":
            approval = "Pending" if lawyer_pending or reached < 4 else "Approved"
        else:
            approval = "Approved" if reached >= 2 + index % 3 and role != "Blocker" else "Pending"
        touch = min(b.now, lead.updated_at + rng.randint(0, 5) * DAY)
        element = CatalogElement(
            id=b.id("element"),
            catalog_id=catalog.id,
            name=f"{contact.name} — {company.name}",
            created_by=lead.responsible_user_id,
            updated_by=lead.responsible_user_id,
            created_at=lead.created_at,
            updated_at=touch,
            custom_fields_values=[
                _select_value(cat_role, role),
                _select_value(cat_approval, approval),
                {"field_id": cat_touch.id, "values": [{"value": touch}]},
            ],
        )
        b.account.elements[element.id] = element
        metadata = {"quantity": 1, "catalog_id": catalog.id}
        b.account.links.link(("leads", lead.id), ("catalog_elements", element.id), metadata)
        b.account.links.link(("contacts", contact.id), ("catalog_elements", element.id), dict(metadata))


def _activities(b: _Builder, lead: Lead, target: Status, responsible: int) -> None:
    rng = b.random
    note = Note(
        id=b.id("note"),
        entity_type="leads",
        entity_id=lead.id,
        note_type="common",
        params={"text": "Discovery call held; {} is evaluating {}.".format(*lead.name.split(" — ", 1))},
        responsible_user_id=responsible,
        created_by=responsible,
        updated_by=responsible,
        created_at=lead.created_at + DAY,
        updated_at=lead.created_at + DAY,
    )
    b.account.notes[note.id] = note
    b.store.record_event(
        b.account,
        "common_note_added",
        "lead",
        lead.id,
        responsible,
        after=[{"note": {"id": note.id}}],
        at=note.created_at,
    )
    done = Task(
        id=b.id("task"),
        text="Send the discovery summary",
        complete_till=lead.created_at + 3 * DAY,
        responsible_user_id=responsible,
        created_by=responsible,
        updated_by=responsible,
        created_at=lead.created_at + DAY,
        updated_at=lead.created_at + 2 * DAY,
        entity_id=lead.id,
        entity_type="leads",
        is_completed=True,
        result={"text": "Sent"},
    )
    b.account.tasks[done.id] = done
    if target.id in (WON_STATUS_ID, LOST_STATUS_ID):
        return
    follow_up = Task(
        id=b.id("task"),
        text=f"Follow up on {target.name.lower()}",
        complete_till=b.now + rng.randint(1, 14) * DAY,
        responsible_user_id=responsible,
        created_by=responsible,
        updated_by=responsible,
        created_at=lead.updated_at,
        updated_at=lead.updated_at,
        entity_id=lead.id,
        entity_type="leads",
        task_type_id=rng.choice((1, 2)),
    )
    b.account.tasks[follow_up.id] = follow_up
    lead.closest_task_at = follow_up.complete_till


# --- large --------------------------------------------------------------------------------------------------


def _large(b: _Builder, count: int) -> None:
    """``count`` deals spread over the stages, one contact each and a company per four deals; no history."""
    account = b.account
    pipeline = b.pipeline("B2B sales", B2B_STAGES)
    statuses = pipeline.ordered_statuses()
    managers = [u.id for u in account.users.values() if not u.is_admin]
    rng = b.random
    phone_field = account.field_codes_for("contacts")["PHONE"]
    email_field = account.field_codes_for("contacts")["EMAIL"]
    phone_enum, email_enum = phone_field.enum_by_code("WORK"), email_field.enum_by_code("WORK")
    assert phone_enum is not None and email_enum is not None
    links = account.links
    company: Company | None = None
    for index in range(count):
        responsible = managers[index % len(managers)]
        created = b.now - rng.randint(1, 365) * DAY
        if index % 4 == 0:
            company = Company(
                b.id("company"),
                f"{COMPANIES[index % len(COMPANIES)]} #{index // 4 + 1}",
                responsible,
                responsible,
                responsible,
                created,
                created,
            )
            account.companies[company.id] = company
        assert company is not None
        status = statuses[index % len(statuses)]
        first, last = (
            FIRST_NAMES[index % len(FIRST_NAMES)],
            LAST_NAMES[(index // len(FIRST_NAMES)) % len(LAST_NAMES)],
        )
        contact = Contact(
            id=b.id("contact"),
            name=f"{first} {last}",
            first_name=first,
            last_name=last,
            responsible_user_id=responsible,
            created_by=responsible,
            updated_by=responsible,
            created_at=created,
            updated_at=created,
            custom_fields_values=[
                {
                    "field_id": phone_field.id,
                    "values": [{"value": f"+1212{index:07d}", "enum_id": phone_enum.id, "enum_code": "WORK"}],
                },
                {
                    "field_id": email_field.id,
                    "values": [
                        {
                            "value": f"contact{index}@large.example",
                            "enum_id": email_enum.id,
                            "enum_code": "WORK",
                        }
                    ],
                },
            ],
        )
        account.contacts[contact.id] = contact
        lead = b.lead(
            f"Deal #{index + 1}",
            5000 + (index * 7919) % 60000,
            pipeline,
            status.id,
            responsible,
            created,
            created + rng.randint(0, 30) * DAY,
        )
        links.link(("leads", lead.id), ("contacts", contact.id), {"main_contact": True})
        links.link(("leads", lead.id), ("companies", company.id), None)
        links.link(("contacts", contact.id), ("companies", company.id), None)
