"""Workspace, registry and letters: init, recipients list/check, letters list/check, preview.

Re-exported by ``campaign.api``; see its docstring for the rules every function follows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from campaign import registry as registry_mod
from campaign.config import Workspace
from campaign.errors import (
    CampaignError,
    RenderError,
    SelectionError,
    WorkspaceError,
)
from campaign.models import Contact, Letter, Message, Recipient, utcnow
from campaign.render import RenderedLetter, Renderer, build_message, message_bytes, new_message_id
from campaign.store import MessageFilter

if TYPE_CHECKING:
    pass
from campaign.api import load_registry, open_store, pick_contact

SCAFFOLD_FILES = (
    "campaign.toml",
    "recipients.yaml",
    "letters/example/en.md.j2",
    "letters/example/ru.md.j2",
    ".gitignore",
)


def init_workspace(directory: Path) -> list[Path]:
    """Create a workspace with a commented campaign.toml, an example registry and letter.

    Refuses to overwrite anything: raises WorkspaceError listing the files that exist.
    """
    existing = [name for name in SCAFFOLD_FILES if (directory / name).exists()]
    if existing:
        raise WorkspaceError(
            f"{directory}: {', '.join(existing)} already exist; nothing was written",
            hint="choose an empty or new folder",
        )
    scaffold = resources.files("campaign") / "scaffold"
    written = []
    try:
        for name in SCAFFOLD_FILES:
            target = directory / name
            target.parent.mkdir(parents=True, exist_ok=True)
            source = scaffold / ("gitignore" if name == ".gitignore" else name)
            target.write_bytes(source.read_bytes())
            written.append(target)
    except OSError as err:
        raise WorkspaceError(f"{directory}: cannot write: {err.strerror}") from err
    return written


def list_recipients(ws: Workspace, tags: Iterable[str] = ()) -> list[Recipient]:
    """Institutions, all or those with any of ``tags``."""
    reg = load_registry(ws)
    tags = list(tags)
    if not tags:
        return list(reg.recipients)
    return registry_mod.select_recipients(reg, tags=tags)


def check_recipients(ws: Workspace, today: date | None = None) -> list[registry_mod.Finding]:
    """Validate recipients.yaml (raises on errors) and return warnings."""
    reg = load_registry(ws)
    return registry_mod.check_registry(reg, today=today or utcnow().date())


def list_letters(ws: Workspace) -> list[Letter]:
    """Letters found in letters/."""
    return list(registry_mod.load_letters(ws.letters_dir).values())


@dataclass
class LetterCheck:
    """What `letters check` found: hard problems and warnings, and how much it rendered."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rendered: int = 0


class _Collected:
    """Messages collected per institution, said once: the same message for several
    institutions ("… for un-wgeid", "un-wgad: …") becomes one naming them all."""

    def __init__(self) -> None:
        self._by_key: dict[str, list[str]] = {}

    def add(self, message: str, recipient_id: str | None = None) -> None:
        key = message
        if recipient_id is not None:
            key = re.sub(rf"\bfor {re.escape(recipient_id)}(?![\w-])", "for \0", key)
            key = re.sub(rf"^{re.escape(recipient_id)}: ", "\0: ", key)
        ids = self._by_key.setdefault(key, [])
        if recipient_id is not None and recipient_id not in ids:
            ids.append(recipient_id)

    def messages(self) -> list[str]:
        return [key.replace("\0", _named(ids)) for key, ids in self._by_key.items()]


def _named(ids: list[str]) -> str:
    if len(ids) <= 4:
        return ", ".join(ids)
    return f"{', '.join(ids[:3])} and {len(ids) - 3} more institutions"


def check_letters(
    ws: Workspace,
    letter_ids: Iterable[str] = (),
    *,
    context: Mapping[str, Any] | None = None,
    recipient_ids: Sequence[str] = (),
) -> LetterCheck:
    """Render every letter for every institution (or those of ``recipient_ids``) and
    language it would be sent in.

    Problems in one letter do not hide the others: all are collected, and a problem that
    several institutions share is reported once, naming them. ``context`` holds the cases
    (`letters check --case`); a letter about a case is otherwise checked with the
    fictional example case. Raises SelectionError for an unknown institution id.
    """
    reg = load_registry(ws)
    recipients = registry_mod.select_recipients(reg, ids=recipient_ids) if recipient_ids else reg.recipients
    letters = registry_mod.load_letters(ws.letters_dir)
    chosen = [registry_mod.get_letter(letters, lid) for lid in letter_ids] or list(letters.values())
    if not letters:
        return LetterCheck(problems=["letters/: no letters found (letters/<id>/<lang>.md.j2)"])
    renderer = Renderer(ws.letters_dir)
    report = LetterCheck()
    problems, warnings = _Collected(), _Collected()
    # The e-mail, a supporter's signed PDF, and (with attach_pdf) the organisation's sealed PDF.
    ways: list[tuple[Literal["email", "pdf"], Literal["organisation", "supporter"]]] = [
        ("email", "organisation"),
        ("pdf", "supporter"),
    ]
    if ws.settings.letters.attach_pdf:
        ways.append(("pdf", "organisation"))
    for letter in chosen:
        extra = context
        if extra is None and letter.needs_case:
            from campaign.api.cases import example_context

            extra = example_context(ws)
            warnings.add(
                f"letters/{letter.id}/ is about a case: checked with the fictional example case; "
                "check it with yours: `campaign letters check --case ID`"
            )
        langs_needed: set[str] = set()
        for recipient in recipients:
            try:
                lang, warning = renderer.choose_language(letter, recipient)
            except RenderError as err:
                problems.add(err.message, recipient.id)
                continue
            if warning:
                warnings.add(f"missing translation: {warning}", recipient.id)
            langs_needed.add(lang)
            contacts: list[Contact | None] = list(recipient.contacts) or [None]
            for contact in contacts:
                for medium, speaker in ways:
                    try:
                        rendered = renderer.render(
                            letter,
                            recipient,
                            contact,
                            ws.settings.sender,
                            lang=lang,
                            medium=medium,
                            speaker=speaker,
                            extra=extra,
                        )
                        if contact is not None and medium == "email":
                            build_message(
                                rendered,
                                sender=ws.settings.sender,
                                to_name=contact.name or recipient.name_in(rendered.lang),
                                to_address=contact.email,
                                message_id=new_message_id(ws.settings.sender.domain),
                            )
                    except CampaignError as err:
                        problems.add(err.message, recipient.id)
                        continue
                    report.rendered += 1
        # Languages nobody needs right now must still render (a later --lang may pick them).
        for lang in sorted(set(letter.languages) - langs_needed):
            recipient = recipients[0]
            try:
                renderer.render(
                    letter,
                    recipient,
                    recipient.contacts[0] if recipient.contacts else None,
                    ws.settings.sender,
                    lang=lang,
                    extra=extra,
                )
                report.rendered += 1
            except CampaignError as err:
                problems.add(err.message, recipient.id)
    report.problems, report.warnings = problems.messages(), warnings.messages()
    return report


PreviewFormat = Literal["text", "html", "eml", "markdown"]


@dataclass(frozen=True)
class Preview:
    """What `campaign preview` shows, and what it is: a queued letter or a rendering."""

    text: str
    rendered: RenderedLetter
    note: str | None = None  # where the bytes come from (eml only)


def preview(
    ws: Workspace,
    letter_id: str,
    recipient_id: str,
    *,
    lang: str | None = None,
    fmt: PreviewFormat = "text",
    contact_email: str | None = None,
    campaign: str | None = None,
) -> Preview:
    """What one institution would receive, as text, HTML or Markdown; with eml, the exact
    bytes of the queued letter when there is one (else a fresh rendering, said to be one)."""
    text, rendered = _render_preview(ws, letter_id, recipient_id, lang=lang, fmt=fmt, contact_email=contact_email)
    if fmt != "eml":
        return Preview(text, rendered)
    queued = _queued_bytes(
        ws, letter_id, recipient_id, rendered.lang, _contact_email(ws, recipient_id, contact_email), campaign
    )
    if queued is None:
        return Preview(
            text,
            rendered,
            "a preview: nothing is queued for this letter and contact yet; the queued letter gets its own "
            "Message-ID and MIME boundary, and Date when it is first sent",
        )
    message, data, has_date = queued
    return Preview(
        data.decode("utf-8", "surrogateescape"),
        rendered,
        f"the bytes of queued message {message.id} (campaign {message.campaign}, {message.status.value})"
        + ("" if has_date else "; Date is added when it is first sent"),
    )


def _contact_email(ws: Workspace, recipient_id: str, contact_email: str | None) -> str | None:
    recipient = registry_mod.select_recipients(load_registry(ws), ids=[recipient_id])[0]
    contact = pick_contact(recipient, contact_email)
    return contact.email if contact is not None else None


def _queued_bytes(
    ws: Workspace, letter_id: str, recipient_id: str, lang: str, email: str | None, campaign: str | None
) -> tuple[Message, bytes, bool] | None:
    """The newest queued letter for this letter, institution, contact and language, with
    the bytes it was (or will be) sent as; None when there is none."""
    if email is None:
        return None
    with open_store(ws, create=False) as store:
        found = [
            m
            for m in store.messages(MessageFilter(campaign=campaign, recipient=recipient_id))
            if m.letter == letter_id and m.lang == lang and m.email.casefold() == email.casefold()
        ]
        if not found:
            return None
        message = found[-1]
        prefix, body = store.wire_bytes(message.id)
    return message, (prefix or b"") + body, prefix is not None


def _render_preview(
    ws: Workspace,
    letter_id: str,
    recipient_id: str,
    *,
    lang: str | None = None,
    fmt: PreviewFormat = "text",
    contact_email: str | None = None,
) -> tuple[str, RenderedLetter]:
    """A fresh rendering of one letter for one institution."""
    reg = load_registry(ws)
    letters = registry_mod.load_letters(ws.letters_dir)
    letter = registry_mod.get_letter(letters, letter_id)
    recipient = registry_mod.select_recipients(reg, ids=[recipient_id])[0]
    contact = pick_contact(recipient, contact_email)
    rendered = Renderer(ws.letters_dir).render(letter, recipient, contact, ws.settings.sender, lang=lang)
    if fmt == "html":
        return rendered.html, rendered
    if fmt == "markdown":
        return rendered.markdown, rendered
    if fmt == "eml":
        if contact is None:
            raise SelectionError(
                f"{recipient.id} is postal only: there is no e-mail to preview",
                hint="use --format text or html, or `campaign pdf export`",
            )
        msg = build_message(
            rendered,
            sender=ws.settings.sender,
            to_name=contact.name or recipient.name_in(rendered.lang),
            to_address=contact.email,
            message_id=new_message_id(ws.settings.sender.domain),
        )
        return message_bytes(msg).decode("utf-8", "surrogateescape"), rendered
    header = f"Subject: {rendered.subject}\nLanguage: {rendered.lang}\n"
    if contact is not None:
        header = f"To: {contact.name or recipient.name_in(rendered.lang)} <{contact.email}>\n" + header
    else:
        header = f"To: {recipient.name_in(rendered.lang)} (postal only)\n" + header
    return header + "\n" + rendered.text, rendered
