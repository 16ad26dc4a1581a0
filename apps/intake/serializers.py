"""The intake API's bodies. Validation normalises as it goes: e-mails lower-cased, phones to E.164 with
the source's default region, tags de-duplicated, the source's defaults applied. ``validated_data`` is the
normalised payload the submission stores and hashes."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from rest_framework import serializers

from apps.core.normalize import email_normalize, phone_normalize
from apps.intake.models import IntakeSource, IntakeSubmission
from apps.intake.selectors import active_role_codes

MAX_CONTACTS = 20
MAX_CHANNELS = 10


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


class IntakeDealSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    price = serializers.IntegerField(min_value=0, required=False, default=0)
    pipeline_id = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None)
    status_id = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None)
    tags = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, default=list, max_length=20
    )


class IntakeCompanySerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)


class IntakeContactSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    emails = serializers.ListField(
        child=serializers.CharField(max_length=254), required=False, default=list, max_length=MAX_CHANNELS
    )
    phones = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, default=list, max_length=MAX_CHANNELS
    )
    role = serializers.SlugField(
        max_length=40, required=False, allow_null=True, default=None, help_text="A Role code, e.g. lawyer."
    )

    def validate_emails(self, value: list[str]) -> list[str]:
        normalised = [email_normalize(item) for item in value]
        bad = {
            str(index): "Enter a valid e-mail address."
            for index, item in enumerate(normalised)
            if item is None
        }
        if bad:
            raise serializers.ValidationError(bad)
        return _unique([item for item in normalised if item])

    def validate_phones(self, value: list[str]) -> list[str]:
        source: IntakeSource = self.context["source"]
        region = source.default_phone_region or None
        normalised = [phone_normalize(item, region) for item in value]
        message = (
            "Enter a phone number with its country code." if region is None else "Enter a valid phone number."
        )
        bad = {str(index): message for index, item in enumerate(normalised) if item is None}
        if bad:
            raise serializers.ValidationError(bad)
        return _unique([item for item in normalised if item])

    def validate_role(self, value: str | None) -> str | None:
        if value is None:
            return None
        if value not in active_role_codes():
            raise serializers.ValidationError(f"Unknown role {value!r}.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs["emails"] and not attrs["phones"]:
            raise serializers.ValidationError("A contact needs at least one e-mail or phone.")
        return attrs


class IntakeLeadSerializer(serializers.Serializer):
    """A deal with its company and the people taking part; the first contact is the deal's main one."""

    deal = IntakeDealSerializer()
    company = IntakeCompanySerializer(required=False, allow_null=True, default=None)
    # many=True hands min_length/max_length to the ListSerializer; the stubs do not know them.
    contacts = IntakeContactSerializer(many=True, min_length=1, max_length=MAX_CONTACTS)  # type: ignore[call-arg]

    def validate_contacts(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        owner: dict[str, int] = {}
        errors: dict[int, dict[str, list[str]]] = {}
        for index, contact in enumerate(value):
            for kind in ("emails", "phones"):
                for item in contact[kind]:
                    first = owner.setdefault(f"{kind}:{item}", index)
                    if first != index:
                        errors.setdefault(index, {}).setdefault(kind, []).append(
                            f"{item} is also given for contact {first}; one person is one contact."
                        )
        if errors:
            raise serializers.ValidationError([errors.get(index, {}) for index in range(len(value))])
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        source: IntakeSource = self.context["source"]
        deal = dict(attrs["deal"])
        if deal["pipeline_id"] is None:
            deal["pipeline_id"] = source.pipeline_kommo_id
            if deal["status_id"] is None:
                deal["status_id"] = source.status_kommo_id
        deal["responsible_user_id"] = source.responsible_user_kommo_id
        tags = [str(tag).strip() for tag in [*source.tags, *deal["tags"]] if str(tag).strip()]
        deal["tags"] = sorted({tag.casefold(): tag for tag in tags}.values(), key=str.casefold)
        return {
            "deal": deal,
            "company": dict(attrs["company"]) if attrs["company"] else None,
            "contacts": [dict(contact) for contact in attrs["contacts"]],
        }


class IntakeContactOutcomeSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the contact in the submission.")
    name = serializers.CharField()
    role = serializers.CharField(allow_null=True)
    is_main = serializers.BooleanField()
    kommo_id = serializers.IntegerField(allow_null=True)
    outcome = serializers.ChoiceField(
        choices=["pending", "created", "linked_existing", "not_created"],
        help_text="pending: not in Kommo yet; created: created by this submission; linked_existing: already "
        "in Kommo; not_created: the submission failed before this person was created.",
    )
    found_by = serializers.CharField(
        allow_null=True, help_text="mirror or kommo_search, for an existing one."
    )
    matched = serializers.CharField(allow_null=True, help_text="The e-mail or phone that matched.")
    filled = serializers.ListField(child=serializers.CharField(), help_text="Empty fields that were filled.")
    role_recorded = serializers.ListField(child=serializers.CharField())


OUTCOME_FIELDS = tuple(IntakeContactOutcomeSerializer._declared_fields)


class IntakeSubmissionSerializer(serializers.ModelSerializer):
    status_url = serializers.SerializerMethodField()
    contacts = IntakeContactOutcomeSerializer(source="contact_outcomes", many=True, read_only=True)

    class Meta:
        model = IntakeSubmission
        fields = [
            "id",
            "status",
            "status_url",
            "created",
            "finished_at",
            "attempts",
            "kommo_lead_id",
            "kommo_company_id",
            "kommo_contact_ids",
            "lead_merged",
            "contacts",
            "kommo_errors",
            "error",
        ]
        read_only_fields = fields

    def get_status_url(self, submission: IntakeSubmission) -> str:
        path = reverse("intake:submission-detail", kwargs={"submission_id": submission.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    def to_representation(self, instance: IntakeSubmission) -> dict[str, Any]:
        """The declared fields, written out: building a ModelSerializer's fields costs more than the rest
        of an accepted submission's answer (the schema still comes from the declarations; a test keeps
        both in step)."""
        return {
            "id": instance.pk,
            "status": instance.status,
            "status_url": self.get_status_url(instance),
            "created": _datetime(instance.created),
            "finished_at": _datetime(instance.finished_at),
            "attempts": instance.attempts,
            "kommo_lead_id": instance.kommo_lead_id,
            "kommo_company_id": instance.kommo_company_id,
            "kommo_contact_ids": instance.kommo_contact_ids,
            "lead_merged": instance.lead_merged,
            "contacts": [
                {name: outcome.get(name) for name in OUTCOME_FIELDS} for outcome in instance.contact_outcomes
            ],
            "kommo_errors": instance.kommo_errors,
            "error": instance.error,
        }


_DATETIME = serializers.DateTimeField()


def _datetime(value: Any) -> str | None:
    return None if value is None else _DATETIME.to_representation(value)
