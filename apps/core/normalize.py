"""E-mail and phone normalisation: the keys the portal looks contacts up by (mirror, intake dedupe).

Both return ``None`` for a value that cannot be a usable key, so callers never store or match on junk.
"""

from __future__ import annotations

import phonenumbers


def email_normalize(value: str | None) -> str | None:
    """Trimmed and lower-cased; ``None`` when empty or without an ``@`` between two non-empty parts."""
    if value is None:
        return None
    text = value.strip().lower()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or any(char.isspace() for char in text):
        return None
    return text


def phone_normalize(value: str | None, default_region: str | None) -> str | None:
    """E.164 (``+14155550123``). ``default_region`` (ISO 3166 alpha-2, e.g. "US") reads numbers written
    without a country code; a number with ``+`` or ``00`` needs none. ``None`` when it is not a possible
    phone number."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    region = default_region.upper() if default_region else None
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
