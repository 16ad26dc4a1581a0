"""Seed data: ``empty``, ``demo`` (the B2B pipeline of the architecture document) and ``large:N``.

Seeds write records directly: they record a plausible event history for the demo deals but publish no
changes. Everything is deterministic for a given ``now`` (a fixed random seed).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from kommo_sandbox.entities import (
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
from kommo_sandbox.fields import EMAIL_ENUM_CODES, PHONE_ENUM_CODES, event_values
from kommo_sandbox.services.setup import system_statuses
from kommo_sandbox.store import Account, SandboxStore

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
# The usual days a deal spends in each stage (incoming, then the five working stages): the mean of a
# log-normal spread. Legal review is the slowest.
STAGE_DAYS = (2, 9, 15, 11, 26, 6)
STAY_SPREAD = 0.45
# The demo's past: deals closed over the last twelve months, and older open deals, some stalled.
HISTORY_DAYS = 365
PAST_CLOSED = 290
PAST_OPEN = 10
WIN_SHARE = 0.38
# Where lost deals were lost (incoming, then the five working stages), and why.
LOSS_STAGE_WEIGHTS = (8, 30, 25, 20, 12, 5)
LOSS_REASONS_BY_STAGE = (
    ("No decision",),
    ("No decision", "No decision", "Chose a competitor"),
    ("Chose a competitor", "Chose a competitor", "No decision"),
    ("Budget cut", "Budget cut", "Chose a competitor"),
    ("Budget cut", "Chose a competitor", "No decision"),
    ("Chose a competitor", "Budget cut"),
)

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
        # Stage durations, objections and the past deals draw from their own sequence.
        self.timing = random.Random(RANDOM_SEED + 1)  # noqa: S311 - reproducible demo data
        # The stakeholders' past (when roles, approvals and objections changed) from a third one, so that
        # the rest of the demo stays what it was.
        self.history = random.Random(RANDOM_SEED + 2)  # noqa: S311 - reproducible demo data

    def stay(self, stage_index: int) -> int:
        """Seconds a deal spends in the stage at ``stage_index`` of the B2B path (incoming first)."""
        days = STAGE_DAYS[stage_index] * self.timing.lognormvariate(0, STAY_SPREAD)
        return max(3600, int(days * DAY) + self.timing.randint(0, 3600))

    def timeline(self, stage_indexes: list[int], *, last_entry: int) -> list[int]:
        """When a deal entered each stage of its path: the last entry at ``last_entry``, each earlier one a
        usual stay (:data:`STAGE_DAYS`) before the next. The first is the deal's creation."""
        times = [last_entry]
        for index in reversed(stage_indexes[:-1]):
            times.insert(0, times[0] - self.stay(index))
        return times

    def path_events(
        self, lead: Lead, path: list[Status], times: list[int], user_id: int, pipeline_id: int
    ) -> None:
        """The deal's events as Kommo logs them: ``lead_added`` (naming a note, not a stage) at its
        creation, then one ``lead_status_changed`` per move, at the past times."""
        self.store.record_event(
            self.account,
            "lead_added",
            "lead",
            lead.id,
            user_id,
            after=self.store.creation_note(),
            at=times[0],
        )
        for previous, current, at in zip(path, path[1:], times[1:], strict=False):
            self.store.record_event(
                self.account,
                "lead_status_changed",
                "lead",
                lead.id,
                user_id,
                before=[{"lead_status": {"id": previous.id, "pipeline_id": pipeline_id}}],
                after=[{"lead_status": {"id": current.id, "pipeline_id": pipeline_id}}],
                at=at,
            )

    def id(self, kind: str) -> int:
        return self.store.next_id(kind)

    def element_history(
        self,
        element: CatalogElement,
        user_id: int,
        changes: list[tuple[int, CustomField, str | float | None]],
    ) -> None:
        """The element's past field changes as Kommo logs them (``custom_field_value_changed`` on entity
        ``catalog_{id}``): ``changes`` are (when, field, new value: a select's label, a number, or None for
        cleared), each field starting empty. Times are kept between the element's creation and its last
        change, the way Kommo's own log would have them."""
        current: dict[int, list[dict[str, Any]]] = {}
        for at, field, value in sorted(changes, key=lambda change: change[0]):
            if value is None:
                after: list[dict[str, Any]] = []
            elif field.type == "select":
                after = _select_value(field, str(value))["values"]
            else:
                after = [{"value": str(value)}]
            before = current.get(field.id, [])
            if before == after:
                continue
            current[field.id] = after
            self.store.record_event(
                self.account,
                "custom_field_value_changed",
                f"catalog_{element.catalog_id}",
                element.id,
                user_id,
                before=event_values(field, before),
                after=event_values(field, after),
                at=max(element.created_at + 60, min(element.updated_at, at)),
            )

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
    cat_objection = b.field("catalogs", "Objection weight", "numeric", catalog_id=catalog.id)

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
            ago = rng.randint(20, 175) * DAY
            if target.id == WON_STATUS_ID:
                reached, path = len(stage_order) - 1, [*stage_order, target]
            elif target.id == LOST_STATUS_ID:
                reached = rng.randint(1, len(stage_order) - 1)
                path = [*stage_order[: reached + 1], target]
            else:
                reached, path = target_index, stage_order[: target_index + 1]
            if target.id in closed:  # closed a while ago, after the usual stays
                times = b.timeline([*range(reached + 1), -1], last_entry=b.now - ago // 4)
            else:  # in its stage for part of a usual stay; every seventh open deal stalled far past it
                stalled = deal_index % 7 == 3
                age = (
                    b.stay(reached)
                    * b.timing.uniform(0.1, 0.9)
                    * (b.timing.uniform(2.5, 4) if stalled else 1)
                )
                times = b.timeline(list(range(reached + 1)), last_entry=b.now - int(age))
            lead = b.lead(
                f"{company.name} — {product}", price, pipeline, target.id, responsible, times[0], times[-1]
            )
            lead.custom_fields_values = [
                _select_value(segment, ("SMB", "Mid-market", "Enterprise")[deal_index % 3]),
                {"field_id": expected_close.id, "values": [{"value": b.now + rng.randint(10, 90) * DAY}]},
            ]
            if target.id == LOST_STATUS_ID:
                lead.loss_reason_id = list(account.loss_reasons)[deal_index % len(account.loss_reasons)]
            account.links.link(("leads", lead.id), ("companies", company.id), None)
            b.path_events(lead, path, times, responsible, pipeline.id)
            in_legal = target.name == "Legal review"
            if in_legal:
                legal_review_seen += 1
            _stakeholders(
                b,
                lead,
                company,
                reached,
                target,
                times,
                in_legal and legal_review_seen % 2 == 1,
                names,
                role_field,
                catalog,
                cat_role,
                cat_approval,
                cat_touch,
                cat_objection,
            )
            _activities(b, lead, target, responsible)
            deal_index += 1
    fields = _StakeholderFields(role_field, catalog, cat_role, cat_approval, cat_touch, cat_objection)
    _past(b, pipeline, stage_order, companies, managers, fields, segment)


def _stakeholders(
    b: _Builder,
    lead: Lead,
    company: Company,
    reached: int,
    target: Status,
    times: list[int],
    lawyer_pending: bool,
    names: list[tuple[str, str]],
    role_field: CustomField,
    catalog: Catalog,
    cat_role: CustomField,
    cat_approval: CustomField,
    cat_touch: CustomField,
    cat_objection: CustomField,
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
        objection = _objection(b, role, open_deal=target.id not in (WON_STATUS_ID, LOST_STATUS_ID))
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
                *_number_value(cat_objection, objection),
            ],
        )
        b.account.elements[element.id] = element
        metadata = {"quantity": 1, "catalog_id": catalog.id}
        b.account.links.link(("leads", lead.id), ("catalog_elements", element.id), metadata)
        b.account.links.link(("contacts", contact.id), ("catalog_elements", element.id), dict(metadata))
        needed = NEEDED_BY.get(role, 1)
        if approval == "Approved" and needed + 1 < len(times):  # given before the deal left that stage
            decided: int | None = max(times[needed], times[needed + 1] - b.history.randint(0, 72) * 3600)
        else:
            decided = touch if approval != "Pending" else None
        _stakeholder_past(
            b,
            element,
            lead,
            role,
            approval,
            objection,
            times,
            _StakeholderFields(role_field, catalog, cat_role, cat_approval, cat_touch, cat_objection),
            won=target.id == WON_STATUS_ID,
            lost=target.id == LOST_STATUS_ID,
            decided=decided,
        )


# The stage (index on a deal's path: incoming first) whose end needs each role's approval, as the gates ask.
NEEDED_BY = {"Decision maker": 3, "Technical evangelist": 2, "Lawyer": 4}


def _stakeholder_past(
    b: _Builder,
    element: CatalogElement,
    lead: Lead,
    role: str,
    approval: str,
    objection: float | None,
    times: list[int],
    fields: _StakeholderFields,
    *,
    won: bool,
    lost: bool,
    decided: int | None,
) -> None:
    """How one person's role, approval and objection came to be what they are, as events of their catalog
    element: the role given when the deal was created or, for some decision makers, only once the deal had
    moved on (more often on deals later lost); the approval requested when the deal reached the stage that
    needs it, and given or refused at ``decided``; an objection raised part-way. Only the element's events
    are written: its values are the ones it already holds."""
    h = b.history
    created, last = element.created_at, element.updated_at
    hour = 3600
    changes: list[tuple[int, CustomField, str | float | None]] = []
    role_at = created + h.randint(1, 20) * hour
    late_share = 0.55 if lost else 0.15 if won else 0.35
    if role == "Decision maker" and len(times) > 2 and h.random() < late_share:
        # identified only once the deal was past qualification: somewhere in its last stay
        start, end = times[-2], times[-1]
        role_at = start + int(h.uniform(0.2, 0.9) * max(hour, end - start))
    changes.append((role_at, fields.cat_role, role))
    stage = NEEDED_BY.get(role, 1)
    requested = times[min(stage, len(times) - 1)] + h.randint(1, 30) * hour
    if decided is not None:
        requested = min(requested, decided - hour)
    requested = max(role_at + hour, requested)
    changes.append((requested, fields.cat_approval, "Pending"))
    if approval != "Pending" and decided is not None:
        changes.append((max(decided, requested + hour), fields.cat_approval, approval))
    if objection is not None:
        raised = created + int(h.uniform(0.1, 0.7) * max(hour, last - created))
        changes.append((raised, fields.cat_objection, objection))
    b.element_history(element, lead.responsible_user_id, changes)


def _objection(b: _Builder, role: str, *, open_deal: bool, lost: bool = False) -> float | None:
    """An objection's weight (0 to 1) on some stakeholders: most blockers, some technical evangelists — more
    often on deals that are still open or were lost."""
    chance = {"Blocker": 0.7, "Technical evangelist": 0.15, "Influencer": 0.1}.get(role, 0.0)
    if open_deal or lost:
        chance *= 1.4
    if b.timing.random() >= chance:
        return None
    return round(b.timing.uniform(0.2, 0.9), 1)


def _number_value(field: CustomField, value: float | None) -> list[dict[str, Any]]:
    return [] if value is None else [{"field_id": field.id, "values": [{"value": str(value)}]}]


@dataclass(frozen=True)
class _StakeholderFields:
    role: CustomField  # the contacts' "Role in the purchase"
    catalog: Catalog
    cat_role: CustomField
    cat_approval: CustomField
    cat_touch: CustomField
    cat_objection: CustomField


def _past(
    b: _Builder,
    pipeline: Pipeline,
    stage_order: list[Status],
    companies: list[Company],
    managers: list[int],
    fields: _StakeholderFields,
    segment: CustomField,
) -> None:
    """Twelve months of history beside the current deals: :data:`PAST_CLOSED` deals won or lost (lost at
    every stage, with a reason that fits it), and :data:`PAST_OPEN` older open deals — stalled far past
    the usual stay, some without a decision maker, few with a task. Stays follow :data:`STAGE_DAYS`."""
    t = b.timing
    account = b.account
    won, lost = pipeline.status(WON_STATUS_ID), pipeline.status(LOST_STATUS_ID)
    assert won is not None and lost is not None
    reasons = {reason.name: reason.id for reason in account.loss_reasons.values()}
    earliest = b.now - (HISTORY_DAYS - 5) * DAY
    for index in range(PAST_CLOSED + PAST_OPEN):
        company = t.choice(companies)
        responsible = managers[index % len(managers)]
        price = max(6000, int(round(t.lognormvariate(10.35, 0.5) / 500) * 500))
        if index < PAST_CLOSED:
            if t.random() < WIN_SHARE:
                reached, target = len(stage_order) - 1, won
            else:
                reached = t.choices(range(len(stage_order)), weights=LOSS_STAGE_WEIGHTS)[0]
                target = lost
            path = [*stage_order[: reached + 1], target]
            times = b.timeline([*range(reached + 1), -1], last_entry=b.now - t.randint(2, 330) * DAY)
        else:  # open for months: stalled in a working stage
            reached = t.randint(1, len(stage_order) - 1)
            target = stage_order[reached]
            path = stage_order[: reached + 1]
            age = b.stay(reached) * t.uniform(2.5, 5)
            times = b.timeline(list(range(reached + 1)), last_entry=b.now - int(age))
        if times[0] < earliest:  # keep the whole deal inside the year the history covers
            times = [at + earliest - times[0] for at in times]
        lead = b.lead(
            f"{company.name} — {t.choice(PRODUCTS)}",
            price,
            pipeline,
            target.id,
            responsible,
            times[0],
            min(b.now - 3600, times[-1]),
        )
        lead.custom_fields_values = [_select_value(segment, t.choice(("SMB", "Mid-market", "Enterprise")))]
        if target is lost:
            lead.loss_reason_id = reasons.get(t.choice(LOSS_REASONS_BY_STAGE[reached]))
        account.links.link(("leads", lead.id), ("companies", company.id), None)
        b.path_events(lead, path, times, responsible, pipeline.id)
        without_decision_maker = target not in (won, lost) and index % 2 == 0
        _past_stakeholders(b, lead, company, reached, target, times, fields, without_decision_maker)
        if target not in (won, lost) and index % 3 == 0:  # most stalled deals have no open task
            task = Task(
                id=b.id("task"),
                text=f"Chase {target.name.lower()}",
                complete_till=b.now + t.randint(1, 10) * DAY,
                responsible_user_id=responsible,
                created_by=responsible,
                updated_by=responsible,
                created_at=times[-1],
                updated_at=times[-1],
                entity_id=lead.id,
                entity_type="leads",
                task_type_id=1,
            )
            account.tasks[task.id] = task
            lead.closest_task_at = task.complete_till


def _past_stakeholders(
    b: _Builder,
    lead: Lead,
    company: Company,
    reached: int,
    target: Status,
    times: list[int],
    fields: _StakeholderFields,
    without_decision_maker: bool,
) -> None:
    """Two to four stakeholders per past deal. Approvals are dated near the stage that needs them (the
    decision maker's by budget approval, the lawyer's by the end of legal review); one in four came late,
    after the deal had moved on."""
    t = b.timing
    closed_won = target.id == WON_STATUS_ID
    closed_lost = target.id == LOST_STATUS_ID
    roles = ["Technical evangelist"] if without_decision_maker else ["Decision maker", "Technical evangelist"]
    if reached >= 4:
        roles.append("Lawyer")
    while len(roles) < t.randint(2, 4):
        roles.append(t.choice(("User", "Influencer", "Blocker")))
    needed_by = NEEDED_BY
    for position, role in enumerate(roles):
        first, last = t.choice(FIRST_NAMES), t.choice(LAST_NAMES)
        contact = b.contact(
            first,
            last,
            company,
            lead.responsible_user_id,
            lead.created_at,
            [
                _select_value(fields.role, role),
                {
                    "field_id": b.account.field_codes_for("contacts")["POSITION"].id,
                    "values": [{"value": t.choice(POSITIONS[role])}],
                },
            ],
        )
        b.account.links.link(("leads", lead.id), ("contacts", contact.id), {"main_contact": position == 0})
        stage = needed_by.get(role, 1)
        if closed_won or (not closed_lost and reached > stage and role != "Blocker"):
            approval = "Approved"
        elif closed_lost and role in ("Decision maker", "Blocker"):
            approval = "Rejected"
        else:
            approval = "Pending"
        if approval == "Approved" and stage + 1 < len(times):
            late = t.random() < 0.25
            touch = (
                times[stage + 1] + t.randint(1, 6) * DAY if late else times[stage + 1] - t.randint(0, 3) * DAY
            )
        else:
            touch = times[-1] - t.randint(0, 4) * DAY
        touch = max(lead.created_at, min(b.now - 3600, touch))
        objection = _objection(b, role, open_deal=not (closed_won or closed_lost), lost=closed_lost)
        element = CatalogElement(
            id=b.id("element"),
            catalog_id=fields.catalog.id,
            name=f"{contact.name} — {company.name}",
            created_by=lead.responsible_user_id,
            updated_by=lead.responsible_user_id,
            created_at=lead.created_at,
            updated_at=touch,
            custom_fields_values=[
                _select_value(fields.cat_role, role),
                _select_value(fields.cat_approval, approval),
                {"field_id": fields.cat_touch.id, "values": [{"value": touch}]},
                *_number_value(fields.cat_objection, objection),
            ],
        )
        b.account.elements[element.id] = element
        metadata = {"quantity": 1, "catalog_id": fields.catalog.id}
        b.account.links.link(("leads", lead.id), ("catalog_elements", element.id), metadata)
        b.account.links.link(("contacts", contact.id), ("catalog_elements", element.id), dict(metadata))
        _stakeholder_past(
            b,
            element,
            lead,
            role,
            approval,
            objection,
            times,
            fields,
            won=closed_won,
            lost=closed_lost,
            decided=touch if approval != "Pending" else None,
        )


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
        created_at=min(b.now - 60, lead.created_at + DAY),
        updated_at=min(b.now - 60, lead.created_at + DAY),
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
    """``count`` deals spread over the stages, one contact each and a company per four deals, each with
    its history (created, then moved stage by stage with the demo's usual stays; the closed ones won from
    signing or lost from any stage) in its events."""
    account = b.account
    pipeline = b.pipeline("B2B sales", B2B_STAGES)
    statuses = pipeline.ordered_statuses()
    stage_order = [s for s in statuses if s.id not in (WON_STATUS_ID, LOST_STATUS_ID)]
    earliest = b.now - (HISTORY_DAYS - 5) * DAY
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
        status = statuses[index % len(statuses)]
        if status.id == WON_STATUS_ID:
            reached, path = len(stage_order) - 1, [*stage_order, status]
        elif status.id == LOST_STATUS_ID:
            reached = (index // len(statuses)) % len(stage_order)
            path = [*stage_order[: reached + 1], status]
        else:
            reached = stage_order.index(status)
            path = stage_order[: reached + 1]
        if len(path) > reached + 1:
            times = b.timeline([*range(reached + 1), -1], last_entry=b.now - rng.randint(1, 300) * DAY)
        else:
            times = b.timeline(
                list(range(reached + 1)), last_entry=b.now - int(b.stay(reached) * rng.random())
            )
        if times[0] < earliest:
            times = [at + earliest - times[0] for at in times]
        created = times[0]
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
            min(b.now - 60, times[-1]),
        )
        b.path_events(lead, path, times, responsible, pipeline.id)
        links.link(("leads", lead.id), ("contacts", contact.id), {"main_contact": True})
        links.link(("leads", lead.id), ("companies", company.id), None)
        links.link(("contacts", contact.id), ("companies", company.id), None)
