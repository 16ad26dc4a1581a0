"""Recorded webhook bodies (tests/fixtures/kommo/webhooks/) and the accounts they belong to."""

from __future__ import annotations

from pathlib import Path

from apps.kommo.models import KommoAccount
from apps.kommo.webhooks.parser import route
from apps.kommo.webhooks.recordings import Recording, recording_load
from tests.factories import KommoAccountFactory

FOLDER = Path(__file__).resolve().parents[1] / "fixtures" / "kommo" / "webhooks"


def body_names() -> list[str]:
    """Every recorded delivery: raw bodies and curl captures (the .doc.json renderings have a
    .doc.form.txt twin that is the body itself)."""
    return sorted(p.name for p in FOLDER.iterdir() if p.name.endswith((".form.txt", ".curl.txt")))


def recording(name: str) -> Recording:
    return recording_load(FOLDER / name)


def account_for(rec: Recording, **fields: object) -> KommoAccount:
    """A connected account matching the account block of ``rec``."""
    routing = route(rec.body, rec.content_type)
    kommo_id = int(routing.account_id) if routing.account_id else None
    subdomain = (routing.subdomain or "acme").strip()
    defaults: dict[str, object] = {
        "name": subdomain,
        "subdomain": subdomain,
        "kommo_id": kommo_id,
        "base_url": f"https://{subdomain}.kommo.com",
        "auth_kind": KommoAccount.AuthKind.LONG_LIVED,
        "access_token": "test-long-lived-token",
        "rate_limit_per_second": 1000,
    }
    return KommoAccountFactory(**(defaults | fields))
