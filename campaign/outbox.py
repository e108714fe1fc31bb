"""Queueing letters: render every one first, then store them in one transaction.

Contract:
- The queue key is (campaign, letter, institution, normalised contact address).
  Queueing again adds nothing; a message whose rendering changed since is reported,
  and with ``update`` its bytes are replaced (unsent messages only) while its
  Message-ID and envelope id stay.
- Rendering is deterministic for a given Message-ID and queue date (the MIME boundary
  derives from the content, ``today`` is the day it was first queued), so "changed"
  means the template or the registry changed.
- If any letter fails to render, the transaction is rolled back: nothing is queued.
- Stored bytes have no ``Date``: it is added at the first attempt (see ``dispatch``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import EmailMessage
from typing import Literal

from campaign.chain import sha256_hex
from campaign.errors import UsageError
from campaign.models import (
    Contact,
    Letter,
    OriginalLetter,
    Recipient,
    Sender,
    address_domain,
    address_key,
    ascii_address,
    check_campaign_id,
    from_rfc3339,
    resolve_zone,
)
from campaign.render import (
    RenderedLetter,
    Renderer,
    attach,
    build_message,
    message_bytes,
    new_envid,
    new_message_id,
)
from campaign.store import NewMessage
from campaign.store.sql import SqlStore

ContactMode = Literal["first", "all"]


@dataclass(frozen=True)
class QueueRow:
    """One line of the queue summary."""

    recipient: str
    email: str
    lang: str
    subject: str
    state: str  # new | unchanged | changed | updated | postal-only | no-role
    message_id: str | None = None


@dataclass
class QueueReport:
    rows: list[QueueRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(1 for row in self.rows if row.state == state)


@dataclass(frozen=True)
class Target:
    recipient: Recipient
    contact: Contact


def targets(
    recipients: list[Recipient], *, contacts: ContactMode, role: str | None
) -> tuple[list[Target], list[QueueRow]]:
    """Which contacts get a letter; the skipped institutions as summary rows."""
    chosen: list[Target] = []
    skipped: list[QueueRow] = []
    for recipient in recipients:
        if recipient.postal_only:
            skipped.append(QueueRow(recipient.id, "", "", "", "postal-only"))
            continue
        pool = [c for c in recipient.contacts if role is None or c.role == role]
        if not pool:
            skipped.append(QueueRow(recipient.id, "", "", "", "no-role"))
            continue
        for contact in pool if contacts == "all" else pool[:1]:
            chosen.append(Target(recipient, contact))
    return chosen, skipped


def deterministic_boundary(*parts: str) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:32]
    return f"=_campaign_{digest}"


def build_one(
    renderer: Renderer,
    letter: Letter,
    target: Target,
    sender: Sender,
    *,
    message_id: str,
    lang: str | None,
    today: date,
    headers: dict[str, str] | None = None,
    original: OriginalLetter | None = None,
) -> tuple[EmailMessage, RenderedLetter]:
    """The message for one contact, with a deterministic MIME boundary."""
    rendered = renderer.render(
        letter, target.recipient, target.contact, sender, lang=lang, today=today, original=original
    )
    msg = build_message(
        rendered,
        sender=sender,
        to_name=target.contact.name or target.recipient.name,
        to_address=target.contact.email,
        message_id=message_id,
        headers=headers,
    )
    msg.set_boundary(deterministic_boundary(message_id, rendered.text, rendered.html))
    return msg, rendered


def render_one(
    renderer: Renderer,
    letter: Letter,
    target: Target,
    sender: Sender,
    *,
    message_id: str,
    lang: str | None,
    today: date,
    headers: dict[str, str] | None = None,
    original: OriginalLetter | None = None,
) -> tuple[bytes, str, str, tuple[str, ...]]:
    """(bytes, language, subject, warnings) for one contact."""
    msg, rendered = build_one(
        renderer,
        letter,
        target,
        sender,
        message_id=message_id,
        lang=lang,
        today=today,
        headers=headers,
        original=original,
    )
    return message_bytes(msg), rendered.lang, rendered.subject, rendered.warnings


Attachment = Callable[[Target, RenderedLetter, date], tuple[bytes, str]]
"""Makes the file attached to a letter (the sealed PDF): (bytes, file name)."""


def queue_letter(
    store: SqlStore,
    renderer: Renderer,
    letter: Letter,
    chosen: list[Target],
    sender: Sender,
    *,
    campaign: str,
    now_ms: int,
    lang: str | None = None,
    update: bool = False,
    not_before_ms: int | None = None,
    wait_reason: str | None = None,
    extra_headers: Callable[[Target], dict[str, str]] | None = None,
    original_for: Callable[[Target], OriginalLetter | None] | None = None,
    attachment: Attachment | None = None,
) -> QueueReport:
    """Render and queue ``letter`` for every target, all or nothing.

    Raises UsageError for a campaign name that is not a valid id."""
    try:
        check_campaign_id(campaign)
    except ValueError as err:
        raise UsageError(str(err), hint="name it with --campaign NAME (queue) or --into NAME (followup)") from None
    report = QueueReport()
    today = datetime.fromtimestamp(now_ms / 1000, UTC).date()
    with store.enqueue(now_ms) as session:
        for target in chosen:
            email_key = address_key(target.contact.email)
            existing = session.lookup(campaign, letter.id, target.recipient.id, email_key)
            message_id = existing.message_id if existing else new_message_id(sender.domain)
            envid = existing.envid if existing else new_envid()
            day = from_rfc3339(existing.created_at).date() if existing else today
            headers = extra_headers(target) if extra_headers else {}
            original = original_for(target) if original_for else None
            msg, rendered = build_one(
                renderer,
                letter,
                target,
                sender,
                message_id=message_id,
                lang=lang,
                today=day,
                headers=headers,
                original=original,
            )
            used_lang, subject = rendered.lang, rendered.subject
            report.warnings.extend(w for w in rendered.warnings if w not in report.warnings)
            body = message_bytes(msg)
            # The identity of a letter is its text: an attachment re-made each time (a PDF
            # signature carries its signing time) must not make every letter look changed.
            content_sha = sha256_hex(body)
            unchanged = existing is not None and existing.content_sha256 == content_sha
            if attachment is not None and not unchanged:
                data, filename = attachment(target, rendered, day)
                attach(msg, data, filename=filename)
                msg.set_boundary(deterministic_boundary("mixed", message_id, content_sha))
                body = message_bytes(msg)
            new = NewMessage(
                campaign=campaign,
                letter=letter.id,
                recipient=target.recipient.id,
                email=target.contact.email,
                email_key=email_key,
                domain=address_domain(target.contact.email),
                contact_name=target.contact.name,
                lang=used_lang,
                subject=subject,
                message_id=message_id,
                envid=envid,
                body=body,
                content_sha256=content_sha,
                smtputf8=ascii_address(target.contact.email) is None,
                not_before_ms=not_before_ms,
                wait_reason=wait_reason,
                in_reply_to=headers.get("In-Reply-To"),
            )
            if existing is None:
                session.add(new)
                state = "new"
            elif unchanged:
                state = "unchanged"
            elif update and existing.status in ("queued", "deferred", "held"):
                session.replace(existing, new)
                state = "updated"
            else:
                state = "changed" if existing.status in ("queued", "deferred", "held") else f"changed-{existing.status}"
            report.rows.append(
                QueueRow(target.recipient.id, target.contact.email, used_lang, subject, state, message_id)
            )
    return report


_AT = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})[ T](\d{1,2}:\d{2}(?::\d{2})?)\s+([A-Za-z_]+(?:/[A-Za-z0-9_+-]+)+|UTC)\s*$")


def parse_at(text: str) -> datetime:
    """``"2026-12-10 09:00 Europe/Geneva"`` or ISO 8601 with an offset → aware UTC datetime.

    Raises UsageError naming the expected forms.
    """
    match = _AT.match(text)
    if match:
        day, clock, zone_name = match.groups()
        try:
            zone = resolve_zone(zone_name)
        except ValueError:
            raise UsageError(f"--at {text!r}: {zone_name!r} is not an IANA time zone (e.g. Europe/Zurich)") from None
        try:
            local = datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=zone)
        except ValueError as err:
            raise UsageError(f"--at {text!r}: {err}") from None
        return local.astimezone(UTC)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise UsageError(
            f'--at {text!r}: write a local time with its zone, e.g. "2026-12-10 09:00 Europe/Geneva", '
            "or ISO 8601 with an offset, e.g. 2026-12-10T09:00+01:00"
        )
    return moment.astimezone(UTC)


def check_selection(ids: list[str], tags: list[str], everyone: bool) -> None:
    """--to/--tag and --all exclude each other; one of them is needed. Raises UsageError."""
    if everyone and (ids or tags):
        raise UsageError("--all cannot be combined with --to or --tag")
    if not (everyone or ids or tags):
        raise UsageError("choose institutions with --to ID, --tag TAG or --all")
