"""Queueing letters (`campaign queue`, `campaign followup`): select, render, queue all or nothing.

Re-exported by ``campaign.api``; see its docstring for the rules every function follows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

from campaign import registry as registry_mod
from campaign.config import Workspace
from campaign.errors import (
    SelectionError,
    UsageError,
)
from campaign.models import Contact, Letter, Message
from campaign.render import RenderedLetter, Renderer
from campaign.store import MessageFilter

if TYPE_CHECKING:
    from campaign.outbox import QueueReport
from campaign.api import _new_state_undone_on_error, keys_folder, load_registry, now_ms, open_store, passphrase_from_env
from campaign.api.pdf import _letterhead, _pdf_content, reference_for


@dataclass
class QueueRequest:
    """What `campaign queue` was asked to do."""

    letter: str
    ids: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    everyone: bool = False
    campaign: str | None = None
    lang: str | None = None
    contacts: Literal["first", "all"] = "first"
    role: str | None = None
    update: bool = False
    at: str | None = None
    cases: list[str] = field(default_factory=list)  # --case: the letter is about these cases
    key_passphrase: str | None = None  # [letters] attach_pdf: the seal's passphrase (else CAMPAIGN_KEY_PASSPHRASE)
    drive: str | None = None  # a closed signing drive: its institutions, with its sealed cover page attached
    attachments: list[tuple[bytes, str]] = field(default_factory=list)


def queue(ws: Workspace, request: QueueRequest) -> QueueReport:
    """Render the letter for the chosen institutions and queue it (all or nothing)."""
    from campaign import outbox
    from campaign.pacing import dt_to_ms

    if request.drive:
        from campaign.api.drive_texts import drive_for_queue

        drive = drive_for_queue(ws, request.drive, request.letter)
        if request.tags or request.everyone:
            raise UsageError("--drive sends to the drive's institutions: give --to ID to send to some of them only")
        outside = [i for i in request.ids if i not in drive.institutions]
        if outside:
            raise SelectionError(
                f"--to {outside[0]}: the supporters of drive {drive.campaign} consented to "
                f"{', '.join(drive.institutions)} only",
                hint="open a drive for the other institutions",
            )
        if request.lang and request.lang != drive.lang:
            raise UsageError(
                f"--lang {request.lang}: supporters of drive {drive.campaign} signed the {drive.lang} text"
            )
        request.ids = request.ids or drive.institutions
        request.lang = drive.lang
        request.campaign = request.campaign or drive.campaign
        request.attachments = [*request.attachments, (drive.cover, f"signatures-{drive.campaign}.pdf")]
    outbox.check_selection(request.ids, request.tags, request.everyone)
    not_before = wait_reason = None
    if request.at:
        moment = outbox.parse_at(request.at)
        not_before = dt_to_ms(moment)
        wait_reason = f"scheduled: {request.at}"
    reg = load_registry(ws)
    letters = registry_mod.load_letters(ws.letters_dir)
    letter = registry_mod.get_letter(letters, request.letter)
    recipients = registry_mod.select_recipients(reg, ids=request.ids, tags=request.tags, everyone=request.everyone)
    chosen, skipped = outbox.targets(recipients, contacts=request.contacts, role=request.role)
    from campaign.api import cases as cases_api

    context_for = None
    if request.cases:  # consent must cover every institution, or nothing is queued
        chosen, context_for = cases_api.prepare_queue(ws, request.cases, letter, chosen)
    else:
        cases_api.refuse_case_letter_without_case(letter)
    with _new_state_undone_on_error(ws):
        report = _queue_into_store(ws, request, letter, chosen, not_before, wait_reason, context_for)
    registry_mod.remember_registry(reg, ws.registry_path, ws.state_dir / "cache")
    report.rows.extend(skipped)
    return report


def _queue_into_store(
    ws: Workspace,
    request: QueueRequest,
    letter: Letter,
    chosen: list[Any],
    not_before: int | None,
    wait_reason: str | None,
    context_for: Callable[..., Mapping[str, Any]] | None = None,
) -> QueueReport:
    from campaign import outbox

    with open_store(ws) as store:
        return outbox.queue_letter(
            store,
            Renderer(ws.letters_dir),
            letter,
            chosen,
            ws.settings.sender,
            campaign=request.campaign or letter.id,
            now_ms=now_ms(),
            lang=request.lang,
            update=request.update,
            not_before_ms=not_before,
            wait_reason=wait_reason,
            extra_headers=lambda t: _letter_headers(ws),
            attachment=_sealed_pdf_attachment(ws, letter, request.key_passphrase)
            if ws.settings.letters.attach_pdf
            else None,
            context_for=context_for,
            fixed_attachments=request.attachments,
        )


def _sealed_pdf_attachment(
    ws: Workspace, letter: Letter, passphrase: str | None = None
) -> Callable[..., tuple[bytes, str]]:
    """[letters] attach_pdf: each letter gets its organisation-sealed PDF attached."""
    from campaign import pdf
    from campaign.errors import SecretError

    passphrase = passphrase or passphrase_from_env("CAMPAIGN_KEY_PASSPHRASE")
    if passphrase is None:
        raise SecretError(
            "[letters] attach_pdf needs the organisation seal: CAMPAIGN_KEY_PASSPHRASE is not set",
            hint="set it for this command, or set attach_pdf = false",
        )
    key = pdf.load_seal(keys_folder(ws), passphrase)
    renderer = pdf.PdfRenderer()
    pages = Renderer(ws.letters_dir)
    sender = ws.settings.sender
    signer = pdf.Signer(sender.signatory or sender.name, sender.signatory_title, ws.settings.pdf.city)

    def make(target: Any, rendered: RenderedLetter, day: date) -> tuple[bytes, str]:
        content = _pdf_content(
            ws,
            pages,
            letter,
            target.recipient,
            lang=rendered.lang,
            today=day,
            reference=reference_for(letter.id, target.recipient.id, day),
            speaker="organisation",  # the seal attached to the organisation's e-mail: the same voice
        )
        data = pdf.render_signed(
            renderer, _letterhead(ws), content, signer, key, timestamp_url=ws.settings.pdf.timestamp_url
        )
        return data, f"{letter.id}-{target.recipient.id}.pdf"

    return make


def _letter_headers(ws: Workspace) -> dict[str, str]:
    headers: dict[str, str] = {}
    if ws.settings.receipts.read_receipts:
        headers["Disposition-Notification-To"] = ws.settings.return_path
    return headers


def followup(
    ws: Workspace,
    letter_id: str,
    *,
    campaign: str,
    after: str,
    into: str | None = None,
    lang: str | None = None,
) -> QueueReport:
    """Queue a follow-up letter to every institution that was sent `campaign` at least
    `after` ago and has not replied (automatic replies do not count), threaded with
    In-Reply-To / References to the original."""
    from campaign import outbox
    from campaign.models import OriginalLetter, parse_duration
    from campaign.render import format_date

    try:
        wait = parse_duration(after)
    except ValueError as err:
        raise UsageError(f"--after: {err}") from None
    reg = load_registry(ws)
    letters = registry_mod.load_letters(ws.letters_dir)
    letter = registry_mod.get_letter(letters, letter_id)
    with open_store(ws, create=False) as store:
        originals = store.messages(MessageFilter(campaign=campaign, statuses=("sent", "relayed", "delivered")))
        if not store.counts(campaign):
            raise SelectionError(f"no campaign named {campaign!r} in the queue", hint="see `campaign status`")
        cutoff = datetime.now(UTC) - wait
        due = [m for m in originals if m.replied_at is None and m.sent_at is not None and m.sent_at <= cutoff]
        targets: list[outbox.Target] = []
        by_key: dict[tuple[str, str, tuple[str, ...]], Message] = {}
        from campaign.api.cases import FollowupCases

        cases = FollowupCases(ws)
        refused: list[outbox.QueueRow] = []
        for message in due:
            recipient = reg.get(message.recipient)
            if recipient is None:
                continue  # the institution left the registry
            problem = cases.problem(message.cases, recipient) if message.cases else None
            if problem:  # consent checked again: a follow-up about a case needs it as much
                refused.append(outbox.QueueRow(recipient.id, message.email, "", "", f"not queued: {problem}"))
                continue
            contact = next((c for c in recipient.contacts if c.email.casefold() == message.email.casefold()), None)
            targets.append(outbox.Target(recipient, contact or Contact(email=message.email), message.cases))
            by_key[(recipient.id, message.email.casefold(), message.cases)] = message

        def original(target: outbox.Target) -> OriginalLetter:
            m = by_key[(target.recipient.id, target.contact.email.casefold(), target.cases)]
            assert m.sent_at is not None
            return OriginalLetter(subject=m.subject, sent_on=format_date(m.sent_at, m.lang), message_id=m.message_id)

        def headers(target: outbox.Target) -> dict[str, str]:
            mid = by_key[(target.recipient.id, target.contact.email.casefold(), target.cases)].message_id
            return {**_letter_headers(ws), "In-Reply-To": mid, "References": mid}

        report = outbox.queue_letter(
            store,
            Renderer(ws.letters_dir),
            letter,
            targets,
            ws.settings.sender,
            campaign=into or f"{campaign}-followup",
            now_ms=now_ms(),
            lang=lang,
            extra_headers=headers,
            original_for=original,
            context_for=cases.context_for if any(t.cases for t in targets) else None,
        )
        report.rows.extend(refused)
        case_ids = sorted({c for m in due for c in m.cases})
    if case_ids:
        from campaign.api.cases import deadlines

        rows, _ = deadlines(ws, case_ids)
        report.notes.extend(f"case {r.case}: {r.text}" for r in rows)
    return report
