"""Export keys: ``ek_<prefix>_<secret>``, one per :class:`~apps.reports.models.ExportClient`."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from django.utils import timezone

from apps.reports.models import ExportClient

KEY_SCHEME = "ek"
# last_used_at is written at most this often per client, not on every request.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def key_hash(key: str) -> str:
    """SHA-256 of the whole key: keys are 256-bit random strings, nothing a slow hash would protect."""
    return hashlib.sha256(key.encode()).hexdigest()


def export_client_key_generate(*, client: ExportClient) -> str:
    """Give the client a new key (the old one stops working), save it and return the key."""
    prefix = secrets.token_hex(6)
    key = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    client.key_prefix = prefix
    client.key_hash = key_hash(key)
    client.is_active = True
    client.revoked_at = None
    client.save()
    return key


def export_client_create(*, name: str) -> tuple[ExportClient, str]:
    client = ExportClient(name=name)
    return client, export_client_key_generate(client=client)


def export_client_revoke(*, client: ExportClient) -> None:
    client.is_active = False
    client.revoked_at = timezone.now()
    client.save(update_fields=["is_active", "revoked_at", "modified"])


def export_client_by_key(*, key: str) -> ExportClient | None:
    """The active client the key belongs to, or None; notes the time it was used."""
    scheme, _, rest = key.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != KEY_SCHEME or not prefix or not secret:
        return None
    client = ExportClient.objects.filter(key_prefix=prefix, is_active=True).first()
    if client is None or not hmac.compare_digest(client.key_hash, key_hash(key)):
        return None
    now = timezone.now()
    if client.last_used_at is None or now - client.last_used_at >= LAST_USED_RESOLUTION:
        ExportClient.objects.filter(pk=client.pk).update(last_used_at=now)
        client.last_used_at = now
    return client
