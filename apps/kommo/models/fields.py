"""A text field stored encrypted with Fernet (settings.KOMMO_TOKEN_ENCRYPTION_KEY).

Python code sees the plain text; the database column holds only the Fernet token. Several keys may be
given, comma-separated: the first encrypts, all decrypt (key rotation). An empty string stays empty so
that "no token" needs no key.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Expression


@cache
def _fernet(keys: str) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.strip()) for key in keys.split(",") if key.strip()])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured("KOMMO_TOKEN_ENCRYPTION_KEY is not a valid Fernet key") from exc


def encrypt(plain: str) -> str:
    return _fernet(settings.KOMMO_TOKEN_ENCRYPTION_KEY).encrypt(plain.encode()).decode()


def decrypt(cipher: str) -> str:
    try:
        return _fernet(settings.KOMMO_TOKEN_ENCRYPTION_KEY).decrypt(cipher.encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "a stored Kommo secret cannot be decrypted with KOMMO_TOKEN_ENCRYPTION_KEY (was the key changed?)"
        ) from exc


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """Plain text in Python, Fernet ciphertext in the column. Not searchable by value."""

    def from_db_value(
        self, value: str | None, expression: Expression, connection: BaseDatabaseWrapper
    ) -> str:
        return decrypt(value) if value else ""

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return encrypt(value) if value else ""
