import pytest

from apps.core.normalize import email_normalize, phone_normalize


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("  Anna.Smith@Example.COM ", "anna.smith@example.com"),
        ("a@b", "a@b"),
        ("", None),
        ("   ", None),
        (None, None),
        ("no-at-sign.example.com", None),
        ("@example.com", None),
        ("anna@", None),
        ("anna smith@example.com", None),
    ],
)
def test_email_normalize_trims_lowercases_and_rejects_what_is_not_an_address(value, expected):
    assert email_normalize(value) == expected


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("(415) 555-0123", "US", "+14155550123"),
        ("+1 415 555 0123", None, "+14155550123"),
        ("0014155550123", "DE", "+14155550123"),
        ("8 (912) 345-67-89", "RU", "+79123456789"),
        ("+7 912 345-67-89", "US", "+79123456789"),
        ("030 1234567", "de", "+49301234567"),
        ("19651796212", None, None),  # no country code and no region: cannot be read
        ("12", "US", None),
        ("not a phone", "US", None),
        ("", "US", None),
        (None, "US", None),
    ],
)
def test_phone_normalize_gives_e164_or_none(value, region, expected):
    assert phone_normalize(value, region) == expected


def test_the_same_number_written_two_ways_gives_one_key():
    assert phone_normalize("+1-415-555-0123", "US") == phone_normalize("415.555.0123", "US")
