"""Shortcuts in the address helpers agree with email_validator, which they stand in for."""

from __future__ import annotations

from pathlib import Path

import pytest
from email_validator import validate_email

from campaign import registry
from campaign.models import Contact, address_key, ascii_address, normalize_address

ROOT = Path(__file__).resolve().parent.parent
ADDRESSES = [
    "office@member1.example",
    "Office.Of+Tag@Sub.Example.ORG",
    "a.b-c_d{x}@example.co.uk",
    "x@xn--80ak6aa92e.com",
    "почта@пример.рф",
    "info@пример.рф",
    "user@bücher.example",
    "o'brien@example.ie",
    *(c.email for r in registry.load_registry(ROOT / "recipients.yaml").recipients for c in r.contacts),
]


@pytest.mark.parametrize("raw", ADDRESSES)
def test_the_ascii_form_of_a_normalised_address_is_the_librarys(raw: str) -> None:
    address = normalize_address(raw)
    expected = validate_email(address, check_deliverability=False, allow_smtputf8=True).ascii_email
    assert ascii_address(address) == expected


@pytest.mark.parametrize("raw", ADDRESSES)
def test_a_contacts_key_is_its_address_key(raw: str) -> None:
    assert Contact(email=raw).key == address_key(raw)
