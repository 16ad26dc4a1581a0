"""The suite's one set of factories (factory_boy) for the records every area's tests build: a Kommo
account, its pipeline and stages, its users and deals, the mirror's contacts and a deal's stakeholders. A
test names only what it asserts on; the rest is a plain, valid default.
``KommoAccountFactory(connected=True)`` is an account reachable with a long-lived token and no practical
rate limit; without it, an account as the admin creates it (OAuth, no token)."""

from __future__ import annotations

import factory
from factory.django import DjangoModelFactory

from apps.kommo.models import Contact, KommoAccount, KommoUser, Lead, Pipeline, Status
from apps.stakeholders.models import Role, Stakeholder

LONG_LIVED_TOKEN = "long-lived-token-0123456789abcdef"


class KommoAccountFactory(DjangoModelFactory[KommoAccount]):
    class Meta:
        model = KommoAccount

    class Params:
        connected = factory.Trait(
            auth_kind=KommoAccount.AuthKind.LONG_LIVED,
            access_token=LONG_LIVED_TOKEN,
            rate_limit_per_second=1000,
        )

    name = "Acme"
    base_url = factory.LazyAttribute(
        lambda account: f"https://{account.name.lower().replace(' ', '-')}.kommo.com"
    )


class PipelineFactory(DjangoModelFactory[Pipeline]):
    class Meta:
        model = Pipeline

    account = factory.SubFactory(KommoAccountFactory)
    kommo_id = factory.Sequence(lambda n: 7_000_000 + n)
    name = "B2B sales"


class StatusFactory(DjangoModelFactory[Status]):
    class Meta:
        model = Status

    pipeline = factory.SubFactory(PipelineFactory)
    account = factory.SelfAttribute("pipeline.account")
    kommo_id = factory.Sequence(lambda n: 80_000_000 + n)
    name = factory.Sequence(lambda n: f"Stage {n}")


class KommoUserFactory(DjangoModelFactory[KommoUser]):
    class Meta:
        model = KommoUser

    account = factory.SubFactory(KommoAccountFactory)
    kommo_id = factory.Sequence(lambda n: 10_500_000 + n)
    name = factory.Sequence(lambda n: f"Manager {n}")


class LeadFactory(DjangoModelFactory[Lead]):
    """A deal in ``status`` (a new stage of a new pipeline unless given), its ids copied from it."""

    class Meta:
        model = Lead

    status = factory.SubFactory(StatusFactory)
    account = factory.SelfAttribute("status.account")
    pipeline = factory.SelfAttribute("status.pipeline")
    pipeline_kommo_id = factory.SelfAttribute("pipeline.kommo_id")
    status_kommo_id = factory.SelfAttribute("status.kommo_id")
    kommo_id = factory.Sequence(lambda n: 20_000_000 + n)
    name = factory.Sequence(lambda n: f"Deal {n}")


class ContactFactory(DjangoModelFactory[Contact]):
    class Meta:
        model = Contact

    account = factory.SubFactory(KommoAccountFactory)
    kommo_id = factory.Sequence(lambda n: 30_000_000 + n)
    name = factory.Sequence(lambda n: f"Contact {n}")


class StakeholderFactory(DjangoModelFactory[Stakeholder]):
    """A stakeholder of ``lead`` through a new contact of the deal's account, named as the contact;
    ``role_code`` picks one of the roles the migrations create (none unless given)."""

    class Meta:
        model = Stakeholder

    class Params:
        role_code: str | None = None

    lead = factory.SubFactory(LeadFactory)
    account = factory.SelfAttribute("lead.account")
    contact = factory.SubFactory(ContactFactory, account=factory.SelfAttribute("..account"))
    role = factory.LazyAttribute(lambda s: Role.objects.get(code=s.role_code) if s.role_code else None)
    name = factory.SelfAttribute("contact.name")
    source = Stakeholder.Source.CONTACT_FIELD
