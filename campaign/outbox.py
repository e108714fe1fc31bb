"""Queueing letters: render every one first, then store them in one transaction.

Contract:
- The queue key is (campaign, letter, institution, normalised contact address).
  Queueing again adds nothing; a message whose rendering changed since is reported,
  and with ``update`` its bytes are replaced (unsent messages only) while its
  Message-ID and envelope id stay.
- Rendering is deterministic for a given Message-ID and queue date (the MIME boundary
  derives from the content, ``today`` is the day it was first queued), so "changed"
  means the template or the registry changed.
- Every letter is rendered (and its attachment made) before the one short write
  transaction begins, with no lock held: if any letter fails to render, nothing is
  queued. The transaction re-checks each key for a letter queued meanwhile.
- Stored bytes have no ``Date``: it is added at the first attempt (see ``dispatch``).
- A letter about cases (``Target.cases``) has the case ids in its key, and its stored
  subject is a neutral label: the real subject may name the person and stays in the bytes.
- Files from ``files_for`` (a submission document) are attached before the content hash is
  taken, so the ``queued`` event's ``content_sha256`` covers their bytes (unlike the sealed
  PDF of ``attachment``, which is re-signed each time).
"""

from __future__ import annotations

import hashlib
import pickle
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import EmailMessage
from typing import Any, Literal, get_args

from campaign.chain import sha256_hex
from campaign.errors import UsageError
from campaign.models import (
    Contact,
    Letter,
    OriginalLetter,
    Recipient,
    Sender,
    address_domain,
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
from campaign.store import Existing, NewMessage
from campaign.store.sql import EnqueueSession, SqlStore
from campaign.transitions import DELIVERY, PENDING, UNSENT

ContactMode = Literal["first", "all"]


@dataclass(frozen=True)
class QueueRow:
    """One line of the queue summary."""

    recipient: str
    email: str
    lang: str
    subject: str
    state: str  # new | unchanged | rescheduled | changed | changed-<status> | updated | postal-only | no-role
    message_id: str | None = None
    status: str | None = None  # the status of the letter already in the queue under this key

    @property
    def outcome(self) -> Outcome:
        """What queueing did, in the words every queue summary uses (:data:`OUTCOMES`)."""
        if self.state in ("new", "updated", "rescheduled"):
            return self.state  # type: ignore[return-value]
        if self.state in ("postal-only", "no-role"):
            return "skipped"
        status = self.state.removeprefix("changed-") if self.state.startswith("changed-") else self.status
        if status in DELIVERY_STATES or status == "sending":
            return "already sent"
        if status in ("failed", "cancelled"):
            return f"already {status}"  # type: ignore[return-value]
        return "already queued" if self.state == "unchanged" else "changed (not updated)"


Outcome = Literal[
    "new",
    "already queued",
    "changed (not updated)",
    "updated",
    "rescheduled",
    "already sent",
    "already failed",
    "already cancelled",
    "skipped",
]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
"""The outcomes of queueing one letter, in the order summaries list them. "already
queued" is a letter waiting to go with this very text; "changed (not updated)" one waiting
with another text (``--update`` replaces it); "already sent", "already failed" and
"already cancelled" were queued under the same key before and will not go again."""
WAITING: tuple[Outcome, ...] = ("new", "already queued", "updated", "rescheduled")
"""Outcomes after which the letter, as rendered now, waits in the queue."""


@dataclass
class QueueReport:
    rows: list[QueueRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. the deadlines of the cases followed up

    def count(self, state: str) -> int:
        return sum(1 for row in self.rows if row.state == state)

    def outcomes(self) -> dict[Outcome, int]:
        """How many letters had each outcome, in :data:`OUTCOMES` order (zeros included)."""
        counts = dict.fromkeys(OUTCOMES, 0)
        for row in self.rows:
            counts[row.outcome] += 1
        return counts


@dataclass(frozen=True)
class Target:
    recipient: Recipient
    contact: Contact
    cases: tuple[str, ...] = ()  # the cases the letter is about (ids)

    @property
    def cases_key(self) -> str:
        return ",".join(sorted(set(self.cases)))


@dataclass(frozen=True)
class AttachedFile:
    """A file that goes with a letter and is part of its identity (hashed with it)."""

    data: bytes
    filename: str
    subtype: str  # application/<subtype>


def case_subject(letter_id: str, cases: tuple[str, ...]) -> str:
    """What the queue and the log show as the subject of a letter about cases."""
    return f"{letter_id} [case {', '.join(sorted(set(cases)))}]"


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
    extra: Mapping[str, Any] | None = None,
) -> tuple[EmailMessage, RenderedLetter]:
    """The message for one contact, with a deterministic MIME boundary."""
    rendered = renderer.render(
        letter, target.recipient, target.contact, sender, lang=lang, today=today, original=original, extra=extra
    )
    msg = build_message(
        rendered,
        sender=sender,
        to_name=target.contact.name or target.recipient.name_in(rendered.lang),
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
    context_for: Callable[[Target], Mapping[str, Any]] | None = None,
    files_for: Callable[[Target, RenderedLetter], list[AttachedFile]] | None = None,
    fixed_attachments: Sequence[tuple[bytes, str]] = (),
) -> QueueReport:
    """Render and queue ``letter`` for every target, all or nothing. ``fixed_attachments``
    (e.g. a signing drive's sealed cover page) go with every letter, after ``attachment``.

    Three steps, so the store's write lock is held only for the commit: read what is
    queued already (no lock), render every letter and make its attachment (no lock: a
    PDF signature may even ask a timestamp server), then one short write transaction that
    re-checks each key (another process may have queued it meanwhile) and stores the rest.
    Rendered letters wait in a private temporary file, not in memory.

    Raises UsageError for a campaign name that is not a valid id.
    """
    try:
        check_campaign_id(campaign)
    except ValueError as err:
        raise UsageError(str(err), hint="name it with --campaign NAME (queue) or --into NAME (followup)") from None
    report = QueueReport()
    today = datetime.fromtimestamp(now_ms / 1000, UTC).date()
    known = store.queued_keys(campaign, letter.id)
    with _Spool() as spool:
        for target in chosen:
            email_key = target.contact.key
            existing = known.get((target.recipient.id, email_key, target.cases_key))
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
                extra=context_for(target) if context_for else None,
            )
            used_lang, subject = rendered.lang, rendered.subject
            if target.cases:
                subject = case_subject(letter.id, target.cases)
            report.warnings.extend(w for w in rendered.warnings if w not in report.warnings)
            files = files_for(target, rendered) if files_for else []
            for file in files:
                attach(msg, file.data, filename=file.filename, subtype=file.subtype)
            if files:
                msg.set_boundary(deterministic_boundary("files", message_id, *(sha256_hex(f.data) for f in files)))
            body = message_bytes(msg)
            # The identity of a letter is its text: an attachment re-made each time (a PDF
            # signature carries its signing time) must not make every letter look changed.
            content_sha = sha256_hex(body)
            unchanged = existing is not None and existing.content_sha256 == content_sha
            if attachment is not None and not unchanged and (existing is None or update):
                data, filename = attachment(target, rendered, day)
                attach(msg, data, filename=filename)
                msg.set_boundary(deterministic_boundary("mixed", message_id, content_sha))
                body = message_bytes(msg)
            if fixed_attachments and not unchanged:
                for data, filename in fixed_attachments:
                    if msg.get_content_type() == "multipart/mixed":
                        msg.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
                    else:
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
                cases=target.cases_key,
                attachments=tuple(
                    {"filename": f.filename, "sha256": sha256_hex(f.data), "size": len(f.data)} for f in files
                ),
            )
            spool.put((new, existing, unchanged))
        with store.enqueue(now_ms) as session:
            for new, existing, unchanged in spool:
                now = session.lookup(campaign, letter.id, new.recipient, new.email_key, new.cases)
                state = _commit_one(session, new, existing, now, unchanged=unchanged, update=update)
                shown = new.message_id if now is None else now.message_id
                status = None if now is None else str(now.status)
                report.rows.append(QueueRow(new.recipient, new.email, new.lang, new.subject, state, shown, status))
    return report


UNSENT_STATES = tuple(s.value for s in UNSENT)
DELIVERY_STATES = tuple(s.value for s in DELIVERY)
PENDING_STATES = tuple(s.value for s in PENDING)


def _commit_one(
    session: EnqueueSession,
    new: NewMessage,
    rendered_against: Existing | None,
    now: Existing | None,
    *,
    unchanged: bool,
    update: bool,
) -> str:
    """Store one rendered letter inside the write transaction; returns its summary state.
    ``rendered_against`` is what was queued when we rendered, ``now`` what is queued now.
    ``--at`` on a letter already queued (and not yet sent) moves its time: ``rescheduled``."""
    if now is None:
        session.add(new)
        return "new"
    if rendered_against is None:
        return "unchanged"  # another process queued it while we rendered: it is queued
    changed = "changed" if now.status in UNSENT_STATES else f"changed-{now.status}"
    if now.content_sha256 != rendered_against.content_sha256:
        return changed  # updated meanwhile by another process: our rendering is not the newer one
    state = changed
    if unchanged:
        state = "unchanged"
    elif update and now.status in UNSENT_STATES:
        session.replace(now, new)
        state = "updated"
    if new.not_before_ms is not None and now.status in PENDING_STATES:
        session.reschedule(now, new.campaign, new.not_before_ms, new.wait_reason or "scheduled")
        return "rescheduled" if state == "unchanged" else state
    return state


class _Spool:
    """Rendered letters between rendering and the commit: a private temporary file (mode
    0600, unlinked at once), so a queue of 100,000 letters does not sit in memory."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()
        self._count = 0

    def __enter__(self) -> _Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def put(self, item: tuple[NewMessage, Existing | None, bool]) -> None:
        pickle.dump(item, self._file, protocol=pickle.HIGHEST_PROTOCOL)
        self._count += 1

    def __iter__(self) -> Iterator[tuple[NewMessage, Existing | None, bool]]:
        self._file.seek(0)
        for _ in range(self._count):
            yield pickle.load(self._file)  # noqa: S301 - our own file, written just above


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


def registry_gate(recipients: list[Recipient]) -> Callable[[dict[str, object]], tuple[str, str] | None]:
    """A claim gate (``SqlStore.claim``): hold a letter whose institution left
    recipients.yaml, or whose address is no longer one of its contacts, instead of sending
    it to whoever it was queued for. ``release`` refuses such a letter: requeue or cancel."""
    contacts = {r.id: {c.key for c in r.contacts} for r in recipients}

    def gate(row: dict[str, object]) -> tuple[str, str] | None:
        institution = str(row["recipient"])
        known = contacts.get(institution)
        if known is None:
            return "registry", f"{institution} is no longer in recipients.yaml: requeue or cancel"
        if str(row["email_key"]) not in known:
            return "registry", f"the address of {institution} changed in recipients.yaml: requeue or cancel"
        return None

    return gate
