"""Lead intake: store a submission first, then create it in Kommo without duplicating anyone.

Processing a submission (``intake_submission_run``, which the intake flow ``apps.flows.intake`` runs
with what follows its mirror writes), under a lock per identity of its people:

1. each person is looked up in the local mirror by normalised e-mail / E.164 phone, then — for the ones
   still unknown — in Kommo with one ``GET /contacts?query=`` per identity (stopping at the first hit);
2. new people other than the main one are created in one ``POST /contacts``;
3. the deal, the main contact (new, or an existing one by id) and the company go in one
   ``POST /leads/complex``, the deal carrying the submission's marker in its "Intake submission" field;
   Kommo's ``merged`` answer is recorded as it is;
4. empty fields of existing contacts (no e-mail, no phone, no role) are filled in one ``PATCH /contacts``;
5. roles go where the account's FieldMapping says: the contact's "Role in the purchase" field (part of
   the contact payloads above) and/or one "Stakeholders" catalog element per person (one POST);
6. the other contacts and the elements are linked to the deal in one ``POST /leads/{id}/link``;
7. what was created is upserted into the mirror from what was sent plus the ids Kommo answered
   (:mod:`apps.intake.echo`), without reading it back, so the next submission finds these people
   locally — before the locks are released; each write followed, in its transaction, by the caller's
   ``follow`` (the flow's: the stakeholders derived, recorded as intake's, a new move queued for the gates).

Every step commits what it got from Kommo at once, so a failure never loses a created id and a retry
resumes where the last attempt stopped. The marker is stored before ``/leads/complex`` is called: a retry
of a submission that has a marker and no deal id (the worker died between Kommo's answer and the commit,
or the answer never came) first looks for the deal by its marker and adopts it instead of creating another.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.core.broker import publish_or_log
from apps.intake import echo, tasks
from apps.intake.locks import identity_locks
from apps.intake.models import IntakeSource, IntakeSubmission
from apps.intake.selectors import (
    KEY_SCHEME,
    MARKER_FIELD_CODE,
    MARKER_FIELD_NAME,
    RoleTargets,
    key_hash,
    mirror_company_by_name,
    mirror_contact_field_ids,
    mirror_contacts,
    mirror_contacts_by_identity,
    mirror_kommo_ids,
    mirror_lead_elements,
    mirror_marker_field_id,
    role_targets_for_account,
)
from apps.kommo import types
from apps.kommo.client import KommoClient
from apps.kommo.exceptions import KommoError, KommoPayloadError, KommoValidationError
from apps.kommo.models import KommoAccount
from apps.kommo.models.mirror import Company, Contact, Lead
from apps.kommo.services import mirror
from apps.stakeholders.derivation import names_same_person

logger = logging.getLogger(__name__)

Status = IntakeSubmission.Status


class Outcome:
    """What happened to one person of a submission (``contact_outcomes[i]["outcome"]``)."""

    PENDING = "pending"  # not in Kommo yet: the submission is still being processed
    CREATED = "created"  # created in Kommo by this submission
    LINKED_EXISTING = "linked_existing"  # already in Kommo, linked to the deal
    NOT_CREATED = "not_created"  # the submission failed before this person was created


# A submission claimed this long ago whose worker never finished it (the worker died) may be claimed again.
STALE_CLAIM = dt.timedelta(minutes=10)
# A submission waiting this long has lost its task: longer than the task's longest retry countdown (600 s).
STALE_WAIT = dt.timedelta(minutes=15)
# A submission never attempted and waiting this long lost its first publish (the broker was down at the
# commit): the request publishes at once, so a short wait tells it apart from one waiting for a retry.
UNQUEUED_WAIT = dt.timedelta(seconds=10)
# The sweeper gives up on a submission that keeps losing its worker after this many attempts.
SWEEP_MAX_ATTEMPTS = 10
# Leads read when looking for a deal by its marker (the search is a substring search; one page is plenty).
MARKER_SEARCH_LIMIT = 50


class IntakeKeyReused(Exception):
    """The Idempotency-Key was already used by this source for a different body."""

    def __init__(self, submission: IntakeSubmission) -> None:
        super().__init__(f"Idempotency-Key already used by submission {submission.pk}")
        self.submission = submission


# -- sources and keys -------------------------------------------------------------------------------------


def intake_source_key_generate(*, source: IntakeSource) -> str:
    """Give the source a new API key (the old one stops working) and return it; only its hash is kept."""
    prefix = secrets.token_hex(6)
    key = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    source.key_prefix = prefix
    source.key_hash = key_hash(key)
    source.save()
    return key


# -- storing submissions --------------------------------------------------------------------------------


def payload_hash(normalized: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(normalized, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def intake_submission_reject(
    *, source: IntakeSource, raw_body: str, payload: Any, errors: dict[str, list[str]]
) -> IntakeSubmission:
    """Keep an invalid submission, with what is wrong with it. It holds no idempotency key, so the client
    can send the corrected body with the same key."""
    return IntakeSubmission.objects.create(
        source=source,
        raw_body=raw_body,
        payload=payload,
        status=Status.REJECTED,
        validation_errors=errors,
        finished_at=timezone.now(),
    )


def intake_submission_create(
    *,
    source: IntakeSource,
    raw_body: str,
    payload: Any,
    normalized: dict[str, Any],
    idempotency_key: str | None,
) -> tuple[IntakeSubmission, bool]:
    """Store a valid submission and queue it; or return the one already stored under the same key.

    The key is the client's Idempotency-Key, or ``payload:<hash>`` of the normalised payload, which holds
    for the source's window: after it, the old submission keeps a key of its own (``payload:<hash>:<id>``)
    and the new one takes the key. The unique constraint on (source, key) settles concurrent requests.
    Returns (submission, created). Raises IntakeKeyReused for a client key reused with another body."""
    digest = payload_hash(normalized)
    key = idempotency_key or f"payload:{digest}"
    for _ in range(3):
        try:
            with transaction.atomic():
                submission = IntakeSubmission.objects.create(
                    source=source,
                    idempotency_key=key,
                    key_from_header=idempotency_key is not None,
                    payload_hash=digest,
                    raw_body=raw_body,
                    payload=payload,
                    normalized=normalized,
                )
                transaction.on_commit(partial(_publish, submission.pk))
            return submission, True
        except IntegrityError:
            existing = IntakeSubmission.objects.filter(source=source, idempotency_key=key).first()
        if existing is None:
            continue  # its holder was just retired by a concurrent request: try again
        if idempotency_key is not None:
            if existing.payload_hash != digest:
                raise IntakeKeyReused(existing)
            return existing, False
        if existing.created >= timezone.now() - dt.timedelta(hours=source.payload_window_hours):
            return existing, False
        IntakeSubmission.objects.filter(pk=existing.pk, idempotency_key=key).update(
            idempotency_key=f"{key}:{existing.pk}"
        )
    raise IntegrityError(f"could not store the submission under key {key!r}")


def intake_submission_retry(*, submission_id: int) -> bool:
    """Queue a failed submission again (admin action). Returns whether it was failed and is now queued."""
    with transaction.atomic():
        queued = IntakeSubmission.objects.filter(pk=submission_id, status=Status.FAILED).update(
            status=Status.RECEIVED, modified=timezone.now()
        )
        if queued:
            transaction.on_commit(partial(_publish, submission_id))
    return bool(queued)


def _publish(submission_id: int) -> None:
    """Sends the processing task after the commit. A broker that is down is logged, never raised: the
    submission is stored, the client gets its answer, and the sweeper publishes for it later."""
    publish_or_log(
        partial(tasks.intake_submission_enqueue, submission_id),
        what=f"intake submission {submission_id}",
    )


def intake_submission_fail(*, submission_id: int, error: str) -> None:
    """Give up on a submission whose transient errors outlasted the task's retries."""
    IntakeSubmission.objects.filter(pk=submission_id).exclude(status=Status.DONE).update(
        status=Status.FAILED, error=error, finished_at=timezone.now(), modified=timezone.now()
    )


# -- processing -----------------------------------------------------------------------------------------


def intake_submission_run(*, submission_id: int, follow: mirror.MirrorFollow) -> bool:
    """Create the submission in Kommo (see the module docstring), ``follow`` following each of its
    writes of the mirror. Returns False when another worker has it or it is not waiting. A permanent
    Kommo error fails the submission; a transient one puts it back to ``received`` with the error noted
    and is raised for the task to retry."""
    now = timezone.now()
    claimed = (
        IntakeSubmission.objects.filter(pk=submission_id)
        .filter(Q(status=Status.RECEIVED) | Q(status=Status.PROCESSING, modified__lt=now - STALE_CLAIM))
        .update(status=Status.PROCESSING, attempts=F("attempts") + 1, started_at=now, modified=now)
    )
    if not claimed:
        return False
    submission = IntakeSubmission.objects.select_related("source__account").get(pk=submission_id)
    account = submission.source.account
    identities = [
        identity
        for contact in (submission.normalized or {}).get("contacts", [])
        for identity in _identities(contact)
    ]
    try:
        with identity_locks(account_id=account.pk, identities=identities):
            # What a worker that held these locks before us committed (a claim taken over from a worker
            # thought dead) is read only now, under the locks.
            submission.refresh_from_db()
            _Run(submission=submission, account=account, client=KommoClient(account), follow=follow).execute()
    except KommoError as error:
        transient = not error.permanent
        submission.status = Status.RECEIVED if transient else Status.FAILED
        submission.error = str(error)
        if isinstance(error, KommoValidationError):
            submission.kommo_errors = [
                {"request_id": request_id, "code": issue.code, "path": issue.path, "detail": issue.detail}
                for request_id, issues in error.errors.items()
                for issue in issues
            ]
        submission.finished_at = None if transient else timezone.now()
        if not transient:
            for outcome in submission.contact_outcomes or []:
                if outcome["kommo_id"] is None and outcome["outcome"] == Outcome.PENDING:
                    outcome["outcome"] = Outcome.NOT_CREATED
        submission.save(
            update_fields=["status", "error", "kommo_errors", "finished_at", "contact_outcomes", "modified"]
        )
        if transient:
            raise
        return True
    submission.status = Status.DONE
    submission.error = ""
    submission.finished_at = timezone.now()
    submission.save(update_fields=["status", "error", "finished_at", "modified"])
    return True


def intake_submissions_sweep(*, now: dt.datetime | None = None) -> list[int]:
    """Queue again the submissions nobody is working on (beat, every 30 s): ``received`` and never attempted
    for longer than ``UNQUEUED_WAIT`` (the publish at the commit was lost: the broker was down), ``received``
    after an attempt for longer than any retry countdown (the retry's task was lost: a purged queue), or
    ``processing`` for longer than a claim lasts (the worker died). Those are put back to ``received`` and
    get a task each; one that already had ``SWEEP_MAX_ATTEMPTS`` attempts is failed instead, for the admin
    to look at. A task that turns out to be a second one for the same submission (a queue backlog longer
    than ``UNQUEUED_WAIT``) finds it claimed or done and returns. Returns the ids queued again."""
    now = now or timezone.now()
    stuck = (
        Q(status=Status.RECEIVED, attempts=0, modified__lt=now - UNQUEUED_WAIT)
        | Q(status=Status.RECEIVED, modified__lt=now - STALE_WAIT)
        | Q(status=Status.PROCESSING, modified__lt=now - STALE_CLAIM)
    )
    with transaction.atomic():
        IntakeSubmission.objects.filter(stuck, attempts__gte=SWEEP_MAX_ATTEMPTS).update(
            status=Status.FAILED,
            error=f"Gave up after {SWEEP_MAX_ATTEMPTS} attempts whose worker never finished.",
            finished_at=now,
            modified=now,
        )
        ids = list(
            IntakeSubmission.objects.filter(stuck).order_by("modified").values_list("pk", flat=True)[:1000]
        )
        # modified=now: the next sweep leaves them alone while they wait in the queue.
        IntakeSubmission.objects.filter(stuck, pk__in=ids).update(status=Status.RECEIVED, modified=now)
        for submission_id in ids:
            transaction.on_commit(partial(_publish, submission_id))
    if ids:
        logger.warning("intake: %d submission(s) without a live task queued again: %s", len(ids), ids)
    return ids


def _identities(contact: Mapping[str, Any]) -> list[str]:
    return [f"email:{value}" for value in contact["emails"]] + [
        f"phone:{value}" for value in contact["phones"]
    ]


def _filled(raw: Mapping[str, Any]) -> tuple[set[str], set[int]]:
    """Codes and ids of the custom fields holding a value in a Kommo contact payload."""
    codes: set[str] = set()
    ids: set[int] = set()
    for item in raw.get("custom_fields_values") or []:
        if isinstance(item, Mapping) and any(
            isinstance(value, Mapping) and (value.get("value") not in (None, "") or value.get("enum_id"))
            for value in item.get("values") or []
        ):
            codes.add(str(item.get("field_code") or "").upper())
            if isinstance(item.get("field_id"), int):
                ids.add(item["field_id"])
    return codes, ids


@dataclass
class _Existing:
    kommo_id: int
    raw: Mapping[str, Any]
    found_by: str
    matched: str


class _Run:
    """One attempt at one submission; ``submission.contact_outcomes`` is its resumable state."""

    def __init__(
        self,
        *,
        submission: IntakeSubmission,
        account: KommoAccount,
        client: KommoClient,
        follow: mirror.MirrorFollow,
    ) -> None:
        self.submission = submission
        self.account = account
        self.client = client
        self.follow = follow
        self.payload: dict[str, Any] = submission.normalized or {}
        self.contacts: list[dict[str, Any]] = self.payload.get("contacts", [])
        self.roles: RoleTargets = role_targets_for_account(account=account)
        self.region = submission.source.default_phone_region or None
        self.elements: list[types.CatalogElement] = []
        self.adopted: types.Lead | None = None
        self.patched_at: dict[int, dt.datetime | None] = {}
        if not submission.contact_outcomes:
            submission.contact_outcomes = [
                {
                    "index": index,
                    "name": contact["name"],
                    "role": contact["role"],
                    "is_main": index == 0,
                    "kommo_id": None,
                    "outcome": Outcome.PENDING,
                    "found_by": None,
                    "matched": None,
                    "filled": [],
                    "fill_pending": False,
                    "role_recorded": [],
                }
                for index, contact in enumerate(self.contacts)
            ]
        self.outcomes: list[dict[str, Any]] = submission.contact_outcomes

    def save(self, *fields: str) -> None:
        self.submission.save(update_fields=[*fields, "modified"])

    def execute(self) -> None:
        if self.submission.kommo_lead_id is None and self.submission.kommo_marker:
            self.adopt()
        if self.submission.kommo_lead_id is None:
            self.resolve()
            self.create_others()
            self.create_lead()
        self.fill_empty_fields()
        self.create_elements()
        self.link()
        self.mirror()

    # 1. who is already there
    def resolve(self) -> None:
        pending = [index for index, outcome in enumerate(self.outcomes) if outcome["kommo_id"] is None]
        local = mirror_contacts_by_identity(
            account=self.account,
            identities=[identity for index in pending for identity in _identities(self.contacts[index])],
        )
        for index in pending:
            for identity in _identities(self.contacts[index]):
                row = local.get(identity)
                if row is not None:
                    self.found(index, _Existing(row.kommo_id, row.raw, "mirror", identity))
                    break
            else:
                self.search(index)
        self.save("contact_outcomes")

    def search(self, index: int) -> None:
        for identity in _identities(self.contacts[index]):
            kind, _, value = identity.partition(":")
            matches = [
                contact
                for contact in self.client.contacts_search(value)
                if not contact.is_deleted and self.has_identity(contact, kind, value)
            ]
            if matches:
                mirror.contacts_upsert_from_kommo(account=self.account, contacts=matches, follow=self.follow)
                oldest = min(matches, key=lambda contact: contact.id)
                self.found(index, _Existing(oldest.id, oldest.raw, "kommo_search", identity))
                return

    def has_identity(self, contact: types.Contact, kind: str, value: str) -> bool:
        emails, phones = mirror.contact_channels(contact, default_region=self.region)
        return value in (emails if kind == "email" else phones)

    def found(self, index: int, existing: _Existing) -> None:
        """Link an existing contact, filling its empty e-mail, phone and role fields from the submission."""
        contact = self.contacts[index]
        codes, field_ids = _filled(existing.raw)
        filled = [
            name
            for name, code in (("emails", "EMAIL"), ("phones", "PHONE"))
            if contact[name] and code not in codes
        ]
        enum_id = self.contact_role_enum(contact)
        if enum_id is not None and self.roles.contact_field is not None:
            if self.roles.contact_field.field_id not in field_ids:
                filled.append("role")
        self.outcomes[index].update(
            kommo_id=existing.kommo_id,
            kommo_name=existing.raw.get("name") or None,
            outcome=Outcome.LINKED_EXISTING,
            found_by=existing.found_by,
            matched=existing.matched,
            filled=filled,
            fill_pending=bool(filled),
            role_recorded=["contact_field"] if "role" in filled else [],
        )

    def contact_role_enum(self, contact: Mapping[str, Any]) -> int | None:
        target = self.roles.contact_field
        return None if target is None or contact["role"] is None else target.enums.get(contact["role"])

    def new_contact(self, index: int) -> types.ContactWrite:
        contact = self.contacts[index]
        enum_id = self.contact_role_enum(contact)
        role_field = self.roles.contact_field
        if enum_id is not None and role_field is not None:
            self.outcomes[index]["role_recorded"] = ["contact_field"]
        return types.ContactWrite(
            name=contact["name"],
            emails=tuple(contact["emails"]) or None,
            phones=tuple(contact["phones"]) or None,
            responsible_user_id=self.payload["deal"]["responsible_user_id"],
            custom_fields_values=None
            if enum_id is None or role_field is None
            else (types.FieldValueWrite.enums(role_field.field_id, enum_id),),
            request_id=str(index),
        )

    # 3a. the deal a previous attempt created without recording it
    def marker_field_id(self) -> int:
        """The deal field that carries the marker: from the mirror; the first time for an account, from
        Kommo's field list (one read), created there when missing (one write), and mirrored."""
        field_id = mirror_marker_field_id(account=self.account)
        if field_id is not None:
            return field_id
        with identity_locks(account_id=self.account.pk, identities=[f"field:{MARKER_FIELD_CODE}"]):
            field_id = mirror_marker_field_id(account=self.account)
            if field_id is not None:
                return field_id
            fields = [
                field
                for field in self.client.custom_fields_list("leads")
                if (field.code or "").upper() == MARKER_FIELD_CODE
            ]
            if not fields:
                fields = self.client.custom_fields_create(
                    "leads",
                    [types.CustomFieldWrite(name=MARKER_FIELD_NAME, type="text", code=MARKER_FIELD_CODE)],
                )
            if not fields:
                raise KommoPayloadError("POST /leads/custom_fields answered no field")
            mirror.custom_fields_upsert_from_kommo(account=self.account, entity_type="leads", fields=fields)
            return min(field.id for field in fields)

    def adopt(self) -> None:
        """A previous attempt sent /leads/complex and no deal id was recorded: the deal carrying this
        submission's marker, if Kommo has one, is the outcome (one search); otherwise it is created."""
        marker = self.submission.kommo_marker
        field_id = self.marker_field_id()
        found = [
            lead
            for lead in itertools.islice(
                self.client.leads_list(query=marker, with_=("contacts",)), MARKER_SEARCH_LIMIT
            )
            if not lead.is_deleted and (value := lead.field(field_id)) is not None and marker in value.texts
        ]
        if not found:
            return
        lead = min(found, key=lambda item: item.id)
        main = self.outcomes[0]
        if main["kommo_id"] is None:
            if lead.main_contact_id is None:
                raise KommoPayloadError(f"deal {lead.id} found by its marker has no main contact")
            main["kommo_id"] = lead.main_contact_id
            main["outcome"] = Outcome.CREATED  # by the attempt that created the deal
        logger.info("intake: submission %s adopts deal %s found by its marker", self.submission.pk, lead.id)
        self.adopted = lead
        self.submission.kommo_lead_id = lead.id
        self.submission.kommo_company_id = lead.company_ids[0] if lead.company_ids else None
        self.submission.kommo_contact_ids = [outcome["kommo_id"] for outcome in self.outcomes]
        self.save("contact_outcomes", "kommo_lead_id", "kommo_company_id", "kommo_contact_ids")

    # 2. the other new people
    def create_others(self) -> None:
        indexes = [i for i, outcome in enumerate(self.outcomes) if i > 0 and outcome["kommo_id"] is None]
        if not indexes:
            return
        results = self.client.contacts_create([self.new_contact(index) for index in indexes])
        by_request = {result.request_id: result.id for result in results}
        for position, index in enumerate(indexes):
            kommo_id = by_request.get(str(index))
            if kommo_id is None and len(results) == len(indexes):
                kommo_id = results[position].id
            if kommo_id is None:
                raise KommoPayloadError(f"POST /contacts returned no id for contact {index}")
            self.outcomes[index].update(kommo_id=kommo_id, outcome=Outcome.CREATED)
        self.save("contact_outcomes")

    # 3. the deal with its main contact and company
    def create_lead(self) -> None:
        deal = self.payload["deal"]
        main = self.outcomes[0]
        contact = (
            types.ContactWrite(id=main["kommo_id"]) if main["kommo_id"] is not None else self.new_contact(0)
        )
        company = None
        if self.payload.get("company"):
            name = self.payload["company"]["name"]
            known = mirror_company_by_name(account=self.account, name=name)
            company = (
                types.CompanyWrite(id=known.kommo_id) if known is not None else types.CompanyWrite(name=name)
            )
        field_id = self.marker_field_id()
        if not self.submission.kommo_marker:
            # Stored before the call: from here on, a retry looks for the deal before creating one.
            self.submission.kommo_marker = f"intake{self.submission.pk}t{secrets.token_hex(8)}"
            self.save("kommo_marker")
        item = types.ComplexLeadWrite(
            lead=types.LeadWrite(
                name=deal["name"],
                price=deal["price"],
                pipeline_id=deal["pipeline_id"],
                status_id=deal["status_id"],
                responsible_user_id=deal["responsible_user_id"],
                custom_fields_values=(types.FieldValueWrite.of(field_id, self.submission.kommo_marker),),
                tags=tuple(deal["tags"]) or None,
                request_id=str(self.submission.pk),
            ),
            contact=contact,
            company=company,
        )
        results = self.client.leads_complex_create([item])
        if len(results) != 1:
            raise KommoPayloadError(f"POST /leads/complex answered {len(results)} leads for one")
        result = results[0]
        if result.contact_id is None:
            raise KommoPayloadError("POST /leads/complex answered without the contact id")
        if result.merged and result.contact_id != main["kommo_id"]:
            # Kommo's duplicate control matched an existing contact and deal: they are the outcome.
            main.update(
                kommo_id=result.contact_id,
                outcome=Outcome.LINKED_EXISTING,
                found_by="kommo_duplicate_control",
                role_recorded=[],
            )
        elif main["kommo_id"] is None:
            main["outcome"] = Outcome.CREATED
        main["kommo_id"] = result.contact_id
        self.submission.kommo_lead_id = result.id
        self.submission.kommo_company_id = result.company_id
        self.submission.lead_merged = result.merged
        self.submission.kommo_contact_ids = [outcome["kommo_id"] for outcome in self.outcomes]
        self.save("contact_outcomes", "kommo_lead_id", "kommo_company_id", "lead_merged", "kommo_contact_ids")

    # 4. empty fields of existing people
    def fill_empty_fields(self) -> None:
        indexes = [i for i, outcome in enumerate(self.outcomes) if outcome["fill_pending"]]
        if not indexes:
            return
        updates = []
        for index in indexes:
            contact, filled = self.contacts[index], self.outcomes[index]["filled"]
            enum_id = self.contact_role_enum(contact)
            role_field = self.roles.contact_field
            updates.append(
                types.ContactWrite(
                    id=self.outcomes[index]["kommo_id"],
                    emails=tuple(contact["emails"]) if "emails" in filled else None,
                    phones=tuple(contact["phones"]) if "phones" in filled else None,
                    custom_fields_values=(types.FieldValueWrite.enums(role_field.field_id, enum_id),)
                    if "role" in filled and role_field is not None and enum_id is not None
                    else None,
                )
            )
        results = self.client.contacts_update(updates)
        self.patched_at = {result.id: result.updated_at for result in results}
        for index in indexes:
            self.outcomes[index]["fill_pending"] = False
        self.save("contact_outcomes")

    # 5. one "Stakeholders" element per person with a role
    def create_elements(self) -> None:
        target = self.roles.catalog
        if target is None or target.catalog_id is None:
            return
        wanted = [
            index
            for index, contact in enumerate(self.contacts)
            if contact["role"] in target.enums
            and not any(item.startswith("catalog_element:") for item in self.outcomes[index]["role_recorded"])
        ]
        # A person the deal already has an element for (Kommo merged this submission into an existing
        # deal) keeps that one: a second element would be a second stakeholder for the same person.
        on_deal = mirror_lead_elements(
            account=self.account, lead_kommo_id=self.submission.kommo_lead_id, catalog_id=target.catalog_id
        )
        for index in list(wanted):
            element_id = next(
                (kommo_id for kommo_id, name in on_deal if names_same_person(self.person_name(index), name)),
                None,
            )
            if element_id is not None:
                self.outcomes[index]["role_recorded"].append(f"catalog_element:{element_id}")
                wanted.remove(index)
        if not wanted:
            self.save("contact_outcomes")
            return
        elements = self.client.catalog_elements_create(
            target.catalog_id,
            [
                types.CatalogElementWrite(
                    name=self.person_name(index),
                    custom_fields_values=(
                        types.FieldValueWrite.enums(
                            target.field_id, target.enums[self.contacts[index]["role"]]
                        ),
                    ),
                    request_id=str(index),
                )
                for index in wanted
            ],
        )
        if len(elements) != len(wanted):
            raise KommoPayloadError(
                f"POST /catalogs/{target.catalog_id}/elements answered {len(elements)} elements"
            )
        for index, element in zip(wanted, elements, strict=True):
            self.outcomes[index]["role_recorded"].append(f"catalog_element:{element.id}")
        self.elements = elements
        self.save("contact_outcomes")

    def person_name(self, index: int) -> str:
        """The person's name in Kommo: an existing contact's own name, whatever name the form sent ("Ann B."
        for "Ann Buyer"), so that the stakeholders app matches the element to the contact by name."""
        return self.outcomes[index].get("kommo_name") or self.contacts[index]["name"]

    # 6. everyone else onto the deal, in one call
    def link(self) -> None:
        lead_id = self.submission.kommo_lead_id
        assert lead_id is not None
        main_id = self.outcomes[0]["kommo_id"]
        # Two people of the form may be one contact in Kommo (found by either's e-mail): linked once.
        others = dict.fromkeys(outcome["kommo_id"] for outcome in self.outcomes[1:])
        links = [
            types.LinkWrite(to_entity_id=contact_id, to_entity_type="contacts", is_main=False)
            for contact_id in others
            if contact_id != main_id
        ]
        target = self.roles.catalog
        if target is not None:
            links += [
                types.LinkWrite(
                    to_entity_id=element_id,
                    to_entity_type="catalog_elements",
                    catalog_id=target.catalog_id,
                    quantity=1,
                )
                for element_id in dict.fromkeys(self.element_ids())
            ]
        if links:
            self.client.links_create("leads", lead_id, links)

    def element_ids(self) -> list[int]:
        """Kommo ids of the "Stakeholders" elements recorded for the people, in their order."""
        return [
            int(item.partition(":")[2])
            for outcome in self.outcomes
            for item in outcome["role_recorded"]
            if item.startswith("catalog_element:")
        ]

    # 7. the mirror, so the next submission finds these people locally
    def mirror(self) -> None:
        """Upsert what this submission created (and the fields it filled) from what was sent plus the ids
        Kommo answered; rows the mirror already has from Kommo are left to Kommo's version."""
        submission, deal = self.submission, self.payload["deal"]
        lead_id = submission.kommo_lead_id
        assert lead_id is not None
        company = self.payload.get("company")
        company_id = submission.kommo_company_id
        if company and company_id and not submission.lead_merged:
            if not mirror_kommo_ids(model=Company, account=self.account, kommo_ids=[company_id]):
                mirror.companies_upsert_from_kommo(
                    account=self.account,
                    companies=[
                        echo.company_echo(
                            kommo_id=company_id,
                            name=company["name"],
                            contact_id=self.outcomes[0]["kommo_id"],
                            submission_id=submission.pk,
                        )
                    ],
                )
        contacts = self.created_contacts(company_id) + self.filled_contacts()
        if contacts:
            mirror.contacts_upsert_from_kommo(account=self.account, contacts=contacts, follow=self.follow)
        if self.elements:
            mirror.catalog_elements_upsert_from_kommo(
                account=self.account, elements=self.elements, follow=self.follow
            )
        if self.adopted is not None:
            mirror.lead_upsert_from_kommo(account=self.account, data=self.adopted, follow=self.follow)
        elif (
            not submission.lead_merged
            and deal["pipeline_id"] is not None
            and deal["status_id"] is not None
            and not mirror_kommo_ids(model=Lead, account=self.account, kommo_ids=[lead_id])
        ):
            mirror.lead_upsert_from_kommo(account=self.account, data=self.lead_echo(), follow=self.follow)

    def created_contacts(self, company_id: int | None) -> list[types.Contact]:
        created = {
            index: outcome["kommo_id"]
            for index, outcome in enumerate(self.outcomes)
            if outcome["outcome"] == Outcome.CREATED and outcome["kommo_id"] is not None
        }
        known = mirror_kommo_ids(model=Contact, account=self.account, kommo_ids=created.values())
        wanted = {index: kommo_id for index, kommo_id in created.items() if kommo_id not in known}
        if not wanted:
            return []
        field_ids = mirror_contact_field_ids(account=self.account)
        role_field = self.roles.contact_field
        contacts = []
        for index, kommo_id in wanted.items():
            contact = self.contacts[index]
            enum_id = self.contact_role_enum(contact)
            contacts.append(
                echo.contact_echo(
                    kommo_id=kommo_id,
                    name=contact["name"],
                    emails=contact["emails"],
                    phones=contact["phones"],
                    responsible_user_id=self.payload["deal"]["responsible_user_id"],
                    role=None if enum_id is None or role_field is None else (role_field.field_id, enum_id),
                    company_id=company_id if index == 0 else None,
                    field_ids=field_ids,
                    submission_id=self.submission.pk,
                )
            )
        return contacts

    def filled_contacts(self) -> list[types.Contact]:
        filled = {
            outcome["kommo_id"]: index
            for index, outcome in enumerate(self.outcomes)
            if outcome["outcome"] == Outcome.LINKED_EXISTING
            and outcome["filled"]
            and not outcome["fill_pending"]
        }
        if not filled:
            return []
        rows = mirror_contacts(account=self.account, kommo_ids=filled)
        field_ids = mirror_contact_field_ids(account=self.account)
        role_field = self.roles.contact_field
        contacts = []
        for kommo_id, index in filled.items():
            row = rows.get(kommo_id)
            if row is None:
                continue  # not mirrored: the next sync brings it
            contact, names = self.contacts[index], self.outcomes[index]["filled"]
            added = [
                echo.multitext_value(kind, contact[kind], field_ids)
                for kind in ("emails", "phones")
                if kind in names
            ]
            enum_id = self.contact_role_enum(contact)
            if "role" in names and role_field is not None and enum_id is not None:
                added.append(echo.select_value(role_field.field_id, enum_id))
            contacts.append(
                echo.contact_filled_echo(
                    raw=row.raw,
                    added=added,
                    updated_at=self.patched_at.get(kommo_id),
                    submission_id=self.submission.pk,
                )
            )
        return contacts

    def lead_echo(self) -> types.Lead:
        submission = self.submission
        assert submission.kommo_lead_id is not None
        main_id = self.outcomes[0]["kommo_id"]
        others = [outcome["kommo_id"] for outcome in self.outcomes[1:] if outcome["kommo_id"] != main_id]
        target = self.roles.catalog
        elements = (
            [(element_id, target.catalog_id) for element_id in self.element_ids()]
            if target is not None and target.catalog_id is not None
            else []
        )
        field_id = mirror_marker_field_id(account=self.account)
        return echo.lead_echo(
            kommo_id=submission.kommo_lead_id,
            deal=self.payload["deal"],
            contacts=[(main_id, True), *((contact_id, False) for contact_id in dict.fromkeys(others))],
            company_id=submission.kommo_company_id,
            elements=elements,
            marker=(field_id, submission.kommo_marker)
            if field_id is not None and submission.kommo_marker
            else None,
            submission_id=submission.pk,
        )
