"""One function per user action: the CLI's only door into the core.

Each function takes a resolved :class:`~campaign.config.Workspace` (or the arguments
to find one), wires settings, registry, renderer, store and transport together, and
returns plain results. Nothing here prints or exits; progress is reported through
callbacks and problems are raised as :class:`~campaign.errors.CampaignError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from campaign import registry as registry_mod
from campaign.config import Workspace, load_workspace
from campaign.errors import CampaignError, RenderError, SelectionError, WorkspaceError
from campaign.models import Contact, Letter, Recipient, Registry, utcnow
from campaign.render import Renderer, RenderedLetter, build_message, message_bytes, new_message_id

# ---------------------------------------------------------------------------
# Workspace


def open_workspace(
    directory: str | os.PathLike[str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> Workspace:
    """Find the workspace (-C, CAMPAIGN_WORKSPACE, or the current folder) and its settings."""
    return load_workspace(directory, overrides=overrides)


SCAFFOLD_FILES = ("campaign.toml", "recipients.yaml", "letters/example/en.md.j2", "letters/example/ru.md.j2", ".gitignore")


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


# ---------------------------------------------------------------------------
# Registry and letters


def load_registry(ws: Workspace) -> Registry:
    """recipients.yaml of the workspace, validated."""
    return registry_mod.load_registry(ws.registry_path)


def list_recipients(ws: Workspace, tags: Iterable[str] = ()) -> list[Recipient]:
    """Institutions, all or those with any of ``tags``."""
    reg = load_registry(ws)
    tags = list(tags)
    if not tags:
        return list(reg.recipients)
    return registry_mod.select_recipients(reg, tags=tags)


def check_recipients(ws: Workspace, today: date | None = None) -> list[registry_mod.Warning_]:
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


def check_letters(ws: Workspace, letter_ids: Iterable[str] = ()) -> LetterCheck:
    """Render every letter for every institution and language it would be sent in.

    Problems in one letter do not hide the others: all are collected.
    """
    reg = load_registry(ws)
    letters = registry_mod.load_letters(ws.letters_dir)
    chosen = [registry_mod.get_letter(letters, lid) for lid in letter_ids] or list(letters.values())
    if not letters:
        return LetterCheck(problems=["letters/: no letters found (letters/<id>/<lang>.md.j2)"])
    renderer = Renderer(ws.letters_dir)
    report = LetterCheck()
    for letter in chosen:
        for lang in letter.languages:
            if lang != "en" and "en" not in letter.templates:
                pass
        langs_needed: set[str] = set()
        for recipient in reg.recipients:
            try:
                lang, warning = renderer.choose_language(letter, recipient)
            except RenderError as err:
                report.problems.append(err.message)
                continue
            if warning:
                report.warnings.append(f"missing translation: {warning}")
            langs_needed.add(lang)
            contacts: list[Contact | None] = list(recipient.contacts) or [None]
            for contact in contacts:
                for medium in ("email", "pdf"):
                    try:
                        rendered = renderer.render(
                            letter, recipient, contact, ws.settings.sender, lang=lang, medium=medium
                        )
                        if contact is not None and medium == "email":
                            build_message(
                                rendered,
                                sender=ws.settings.sender,
                                to_name=contact.name or recipient.name,
                                to_address=contact.email,
                                message_id=new_message_id(ws.settings.sender.domain),
                            )
                    except CampaignError as err:
                        if err.message not in report.problems:
                            report.problems.append(err.message)
                        continue
                    report.rendered += 1
        # Languages nobody needs right now must still render (a later --lang may pick them).
        for lang in sorted(set(letter.languages) - langs_needed):
            recipient = reg.recipients[0]
            try:
                renderer.render(letter, recipient, recipient.contacts[0] if recipient.contacts else None,
                                ws.settings.sender, lang=lang)
                report.rendered += 1
            except CampaignError as err:
                if err.message not in report.problems:
                    report.problems.append(err.message)
    return report


PreviewFormat = Literal["text", "html", "eml", "markdown"]


def preview(
    ws: Workspace,
    letter_id: str,
    recipient_id: str,
    *,
    lang: str | None = None,
    fmt: PreviewFormat = "text",
    contact_email: str | None = None,
) -> tuple[str, RenderedLetter]:
    """What one institution would receive, as text, HTML, Markdown or the .eml bytes."""
    reg = load_registry(ws)
    letters = registry_mod.load_letters(ws.letters_dir)
    letter = registry_mod.get_letter(letters, letter_id)
    recipient = registry_mod.select_recipients(reg, ids=[recipient_id])[0]
    contact = pick_contact(recipient, contact_email)
    rendered = Renderer(ws.letters_dir).render(
        letter, recipient, contact, ws.settings.sender, lang=lang
    )
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
            to_name=contact.name or recipient.name,
            to_address=contact.email,
            message_id=new_message_id(ws.settings.sender.domain),
        )
        return message_bytes(msg).decode("utf-8", "surrogateescape"), rendered
    header = f"Subject: {rendered.subject}\nLanguage: {rendered.lang}\n"
    if contact is not None:
        header = f"To: {contact.name or recipient.name} <{contact.email}>\n" + header
    else:
        header = f"To: {recipient.name} (postal only)\n" + header
    return header + "\n" + rendered.text, rendered


def pick_contact(recipient: Recipient, email: str | None) -> Contact | None:
    """The contact with ``email``, else the first one (None for postal-only institutions)."""
    if email is None:
        return recipient.contacts[0] if recipient.contacts else None
    for contact in recipient.contacts:
        if contact.email.casefold() == email.casefold():
            return contact
    raise SelectionError(f"{recipient.id} has no contact {email}")


def now() -> datetime:
    """The current UTC time (one place to read the clock)."""
    return utcnow()
