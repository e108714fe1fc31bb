"""The fast message builder against the stdlib path it replaces: the same bytes for
quoted-printable letters, the same meaning (headers and decoded parts) for every letter,
base64 exactly where it is shorter."""

from __future__ import annotations

import email
import email.policy
from datetime import date
from email.message import EmailMessage
from pathlib import Path

import pytest

from campaign.models import Contact, Recipient, Sender
from campaign.outbox import Target, build_one, deterministic_boundary
from campaign.registry import load_letters
from campaign.render import POLICY, Renderer, message_bytes, transfer_encoding

ROOT = Path(__file__).resolve().parent.parent
SENDER = Sender(name="Гражданская платформа", email="letters@campaign.example", reply_to="office@campaign.example")
NAMES = [
    "Office",
    "Секретариат Рабочей группы",
    "Муассисаи намоишӣ",
    "A. Long-Named Desk of the Ombudsperson " * 2,
    None,
]


def reference(rendered, *, to_name, to_address, message_id, headers):  # type: ignore[no-untyped-def]
    """The stdlib path as it was: set_content / add_alternative, with the new choice of
    transfer encoding (the builder's one deliberate change)."""
    from campaign.render import _address_header, check_header_value

    msg = EmailMessage(policy=POLICY)
    msg["From"] = _address_header(SENDER.name, SENDER.email)[0]
    msg["To"] = _address_header(to_name, to_address)[0]
    msg["Reply-To"] = _address_header(None, SENDER.reply_to)[0]
    msg["Subject"] = check_header_value("subject", rendered.subject)
    msg["Message-ID"] = message_id
    for name, value in headers.items():
        msg[name] = value
    msg.set_content(rendered.text, subtype="plain", charset="utf-8", cte=transfer_encoding(rendered.text))
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8", cte=transfer_encoding(rendered.html))
    msg["Content-Language"] = rendered.lang
    return msg


def cases() -> list[tuple[str, str, str | None]]:
    letters = load_letters(ROOT / "letters")
    out = []
    for letter_id, letter in sorted(letters.items()):
        if getattr(letter, "needs_case", False):
            continue
        for lang in sorted(letter.templates):
            for name in NAMES:
                out.append((letter_id, lang, name))
    return out


@pytest.mark.parametrize(("letter_id", "lang", "name"), cases())
def test_the_builder_gives_the_stdlib_bytes(letter_id: str, lang: str, name: str | None) -> None:
    letters = load_letters(ROOT / "letters")
    recipient = Recipient(
        id="inst", name="Институт", languages=[lang, "en"], contacts=[Contact(email="desk@inst.example", name=name)]
    )
    headers = {"Disposition-Notification-To": "receipts@campaign.example"}
    msg, rendered = build_one(
        Renderer(ROOT / "letters"),
        letters[letter_id],
        Target(recipient, recipient.contacts[0]),
        SENDER,
        message_id="<0123456789abcdef@campaign.example>",
        lang=lang,
        today=date(2026, 12, 7),
        headers=headers,
    )
    ours = message_bytes(msg)
    ref = reference(
        rendered,
        to_name=recipient.contacts[0].name or recipient.label,
        to_address="desk@inst.example",
        message_id="<0123456789abcdef@campaign.example>",
        headers=headers,
    )
    ref.set_boundary(deterministic_boundary("<0123456789abcdef@campaign.example>", rendered.text, rendered.html))
    assert ours == message_bytes(ref)
    parsed = email.message_from_bytes(ours, policy=email.policy.default)
    parts = {p.get_content_subtype(): p for p in parsed.walk() if p.get_content_maintype() == "text"}
    decoded = parts["plain"].get_content().replace("\r\n", "\n")
    assert decoded.rstrip("\n") == rendered.text.replace("\r\n", "\n").rstrip("\n")
    assert str(parsed["Subject"]) == rendered.subject
    expected = "base64" if lang in ("ru", "tg") else "quoted-printable"
    assert parts["plain"]["Content-Transfer-Encoding"] == expected


def test_base64_is_chosen_only_when_shorter() -> None:
    assert transfer_encoding("Dear Sir or Madam, " * 50) == "quoted-printable"
    assert transfer_encoding("Уважаемые дамы и господа! " * 50) == "base64"
    assert transfer_encoding("Mostly English with one word: ғ. " * 50) == "quoted-printable"
