"""What supporters sign: a drive's frozen texts, and the check that the letter queued with
their signatures is still that text.

Contract:
- :func:`freeze` renders the letter for the drive's first institution in its language
  (medium ``pdf``): the *canonical text* supporters read and sign (``subject``, a blank
  line, the body text; NFC, LF), and translations into the signing page's other
  languages beside it, for reading. Supporters sign one text, whose SHA-256 the consent
  record, every commitment and the cover page carry; so every institution of a drive
  must read the letter in that one language. A selection whose institutions read it in
  different languages raises :class:`~campaign.errors.SigningError` (open one drive per
  language): otherwise supporters would never see, nor sign the hash of, what the other
  institutions receive.
- :func:`check_unchanged` renders that text again from today's ``letters/``, registry
  and sender, for the same institution and day, and raises SigningError when its SHA-256
  is no longer the one supporters signed. ``queue --drive`` calls it before anything is
  queued, and queues every institution's letter in the drive's language.

What differs between the institutions' letters of one drive is only what the template
fills in for each (its name, the salutation), as for any letter queued to several
institutions; the page shows the first institution's.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from campaign import registry as registry_mod
from campaign import signing
from campaign.config import Workspace
from campaign.errors import SelectionError, SigningError
from campaign.models import Letter, Recipient
from campaign.render import Renderer, choose_language, format_date

if TYPE_CHECKING:
    from campaign.store.signing import DriveText

UI_LANGS = ("en", "ru", "tg")


def canonical(subject: str, text: str) -> str:
    """The canonical text: subject, blank line, body text (NFC, LF line ends)."""
    body = unicodedata.normalize("NFC", text).replace("\r\n", "\n").strip("\n")
    return unicodedata.normalize("NFC", subject).strip() + "\n\n" + body + "\n"


@dataclass(frozen=True)
class Frozen:
    """The texts a drive freezes when it opens."""

    reference: Recipient
    lang: str
    subject: str
    text: str
    body_html: str
    text_sha256: str
    date_text: str
    translations: list[DriveText]


def letter_language(letter: Letter, recipient: Recipient) -> str:
    """The language ``recipient`` gets ``letter`` in (as `queue` chooses it). Raises RenderError."""
    return choose_language(letter, recipient)[0]


def freeze(ws: Workspace, letter: Letter, recipients: list[Recipient], today: date) -> Frozen:
    """The canonical text for ``recipients[0]`` and its translations. Raises SigningError
    when the institutions read the letter in different languages, RenderError."""
    from campaign.store.signing import DriveText

    renderer = Renderer(ws.letters_dir)
    by_lang: dict[str, list[str]] = {}
    for recipient in recipients:
        by_lang.setdefault(letter_language(letter, recipient), []).append(recipient.id)
    if len(by_lang) > 1:
        langs = "; ".join(
            f"{lang}: {', '.join(ids[:3])}{' …' if len(ids) > 3 else ''}" for lang, ids in by_lang.items()
        )
        first_lang, first_ids = next(iter(by_lang.items()))
        raise SigningError(
            f"these institutions read letter {letter.id} in {len(by_lang)} languages ({langs}); supporters sign one "
            "text, so open one drive per language",
            hint=f"e.g. campaign sign open {letter.id} {' '.join('--to ' + i for i in first_ids[:3])}"
            f"  (the {first_lang} drive), then one for the others",
        )
    reference = recipients[0]
    contact = reference.contacts[0] if reference.contacts else None
    main = renderer.render(letter, reference, contact, ws.settings.sender, medium="pdf", today=today)
    text = canonical(main.subject, main.text)
    translations = []
    for lang in sorted(set(UI_LANGS) & set(letter.languages) - {main.lang}):
        other = renderer.render(letter, reference, contact, ws.settings.sender, lang=lang, medium="pdf", today=today)
        other_text = canonical(other.subject, other.text)
        translations.append(
            DriveText(lang, other.subject, other_text, other.body_html, signing.sha256_text(other_text))
        )
    return Frozen(
        reference=reference,
        lang=main.lang,
        subject=main.subject,
        text=text,
        body_html=main.body_html,
        text_sha256=signing.sha256_text(text),
        date_text=format_date(today, main.lang),
        translations=translations,
    )


def check_unchanged(ws: Workspace, drive: dict[str, Any], letter: Letter, recipients: dict[str, Recipient]) -> None:
    """Raise SigningError unless ``letter`` still renders, for the drive's first
    institution on the day the drive opened, as the text its supporters signed."""
    name = drive["name"]
    reference = recipients.get(drive["reference_recipient"])
    if reference is None:
        raise SigningError(
            f"drive {name}: institution {drive['reference_recipient']} is no longer in recipients.yaml, so the "
            "letter cannot be checked against the text supporters signed; nothing was queued",
            hint="restore its entry in recipients.yaml",
        )
    opened = date.fromisoformat(drive["created_at"][:10])
    contact = reference.contacts[0] if reference.contacts else None
    now = Renderer(ws.letters_dir).render(
        letter, reference, contact, ws.settings.sender, lang=drive["text_lang"], medium="pdf", today=opened
    )
    if signing.sha256_text(canonical(now.subject, now.text)) != drive["text_sha256"]:
        raise SigningError(
            f"drive {name}: letter {letter.id} has changed since the drive opened (its text is no longer the one "
            f"supporters signed, SHA-256 {drive['text_sha256'][:16]}…); nothing was queued",
            hint=f"restore letters/{letter.id}/{drive['text_lang']}.md.j2 (and the institution's entry and "
            "[sender]) as they were, or open a new drive for the changed letter",
        )


@dataclass(frozen=True)
class DriveForQueue:
    institutions: list[str]
    campaign: str
    lang: str  # every institution gets the letter in the language supporters signed
    cover: bytes


def drive_for_queue(ws: Workspace, drive_name: str, letter_id: str) -> DriveForQueue:
    """A closed drive for ``letter_id`` with its sealed cover page, checked: the letter
    still renders as the text its supporters signed. Raises SelectionError, SigningError."""
    from campaign.api import load_registry, open_store
    from campaign.store import signing as sstore

    store = open_store(ws, create=False)
    try:
        drive = sstore.get_drive(store, drive_name)
        cover = sstore.cover_pdf(store, drive["id"])
    finally:
        store.close()
    if cover is None:
        raise SigningError(
            f"drive {drive_name} is still open: it has no cover page yet",
            hint=f"close it first: campaign sign close {drive_name}",
        )
    if drive["letter"] != letter_id:
        raise SelectionError(f"drive {drive_name} collected signatures for {drive['letter']}, not {letter_id}")
    letter = registry_mod.get_letter(registry_mod.load_letters(ws.letters_dir), letter_id)
    check_unchanged(ws, drive, letter, {r.id: r for r in load_registry(ws).recipients})
    return DriveForQueue(list(drive["institutions"]), drive_name, drive["text_lang"], cover)
