"""`campaign submit prepare`: a case and a letter as the submission a body asks for.

Writes, into ``.campaign/submissions/`` unless ``-o`` says otherwise (files 0600, never
overwritten without ``force``): the document in the body's format (Word, or the PDF,
signed with the organisation seal when its passphrase is set), the covering e-mail with
the body's subject pattern, or for web forms a field-by-field sheet; and returns a
checklist of what is still missing. With ``queue``, an e-mail submission is queued with the
document attached, through the general attachment path (the ``queued`` event's hash covers
the document's bytes).

Refuses (CaseError, nothing written) when consent does not cover the body, when the letter
exists in none of the languages the body accepts, or when the document is over the body's
page or word limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from campaign import cases as core
from campaign import registry as registry_mod
from campaign.api import _write_private_file
from campaign.api import cases as cases_api
from campaign.config import Workspace
from campaign.errors import CaseError, UsageError, WorkspaceError
from campaign.models import Recipient, SubmissionProfile, utcnow

Format = Literal["docx", "pdf", "email", "sheet"]
DEFAULT_LETTER = "case-submission"
DOCX_TYPE = "vnd.openxmlformats-officedocument.wordprocessingml.document"


@dataclass
class PrepareRequest:
    case: str
    to: str
    letter: str = DEFAULT_LETTER
    fmt: Format | None = None  # default: the body's format
    out: Path | None = None
    lang: str | None = None
    session: str | None = None  # the UPR session ("May 2027"), for subjects that name it
    queue: bool = False
    campaign: str | None = None
    update: bool = False  # with queue: replace a queued, unsent version whose text differs
    scan: Path | None = None  # the hand-signed scan to send instead of the generated PDF
    force: bool = False


@dataclass
class PrepareResult:
    files: list[Path]
    fmt: Format
    lang: str
    to: str  # "Name <address>" or the postal address / form
    subject: str
    checklist: list[str] = field(default_factory=list)
    estimate: str | None = None
    queued: Any = None  # outbox.QueueReport
    campaign: str | None = None  # the campaign it was queued in
    queue_error: CaseError | None = None  # with queue: why nothing waits in the queue (already sent, ...)


def _format_for(profile: SubmissionProfile) -> Format:
    if profile.channel == "web-form":
        return "sheet"
    return {"docx": "docx", "pdf": "pdf", "email-text": "email"}[profile.format]  # type: ignore[return-value]


def letter_language(recipient: Recipient, profile: SubmissionProfile, letter: Any, lang: str | None) -> str:
    """The language the covering letter goes in: ``lang``, else the first language the body
    takes that the letter exists in. Raises CaseError naming both lists."""
    accepted = recipient.languages
    if lang is not None:
        if lang not in accepted:
            raise CaseError(
                f"--lang {lang}: {profile.mandate} takes submissions in {', '.join(accepted)} only",
                hint=f"choose one of {', '.join(accepted)}",
            )
        if lang not in letter.templates:
            raise CaseError(
                f"letters/{letter.id}/ has no {lang}.md.j2 (it exists in {', '.join(letter.languages)})",
                hint=f"write letters/{letter.id}/{lang}.md.j2",
            )
        return str(lang)
    for candidate in accepted:
        if candidate in letter.templates:
            return str(candidate)
    raise CaseError(
        f"letters/{letter.id}/ is in {', '.join(letter.languages)} only; {profile.mandate} takes submissions "
        f"in {', '.join(accepted)}",
        hint=f"translate the letter: letters/{letter.id}/{accepted[0]}.md.j2",
    )


@dataclass
class Draft:
    """A case's submission to one body and its covering letter, rendered, nothing written:
    what `submit prepare` writes and what `cases check` measures."""

    cf: core.CaseFile
    recipient: Recipient
    profile: SubmissionProfile
    letter: Any
    lang: str
    fmt: Format
    sub: Any  # submission.Submission
    rendered: Any  # render.RenderedLetter
    context: dict[str, Any]
    subject: str
    withhold: bool
    today: date


def case_letter(ws: Workspace, letter_id: str) -> Any:
    """The letter that covers a submission. Raises SelectionError, CaseError (not a letter
    about a case)."""
    letter = registry_mod.get_letter(registry_mod.load_letters(ws.letters_dir), letter_id)
    if not letter.needs_case:
        raise CaseError(
            f"letters/{letter.id}/ is not a letter about a case (no `case: true` in its front matter)",
            hint=f"use --letter {DEFAULT_LETTER}, or mark the letter with `case: true`",
        )
    return letter


def draft(
    ws: Workspace,
    cf: core.CaseFile,
    recipient: Recipient,
    letter: Any,
    *,
    lang: str | None = None,
    fmt: Format | None = None,
    session: str | None = None,
) -> Draft:
    """Build the submission and render its covering letter. Raises CaseError when the letter
    exists in none of the languages the body takes (:func:`letter_language`), LetterError
    when it cannot be rendered with this case."""
    from campaign.render import Renderer
    from campaign.submission import build_submission

    profile = recipient.submission
    assert profile is not None
    chosen = letter_language(recipient, profile, letter, lang)
    fmt = fmt or _format_for(profile)
    today = utcnow().date()
    withhold = profile.published and not any(
        c.publish_name and c.withdrawn is None and (recipient.id in c.bodies or set(c.bodies) & set(recipient.tags))
        for c in cf.case.consent
    )
    sub = build_submission(cf, recipient, lang=chosen, sender=ws.settings.sender, today=today, withhold_name=withhold)
    stem = f"{cf.id}-{recipient.id}"
    document = {"filename": f"{stem}.{fmt}", "form": profile.form or "submission"} if fmt in ("docx", "pdf") else None
    context = core.template_context(
        [cf], sender=ws.settings.sender.name, today=today, document=document, withhold_name=withhold, session=session
    )
    contact = recipient.contacts[0] if recipient.contacts else None
    rendered = Renderer(ws.letters_dir).render(
        letter, recipient, contact, ws.settings.sender, lang=chosen, today=today, extra=context
    )
    subject = (
        core.subject_for(cf.case, cf.id, recipient, organisation=ws.settings.sender.name, today=today, session=session)
        or rendered.subject
    )
    return Draft(cf, recipient, profile, letter, chosen, fmt, sub, rendered, context, subject, withhold, today)


def draft_text(d: Draft, *, html: bool = False) -> str | None:
    """The text that is the submission in the e-mail and sheet formats (None for Word and PDF)."""
    if d.fmt == "email":
        return _email_text(d.recipient, d.subject, d.rendered.text)
    if d.fmt == "sheet":
        from campaign.submission import sheet_html, sheet_text

        return (sheet_html if html else sheet_text)(d.sub, letter_text=d.rendered.text)
    return None


@dataclass(frozen=True)
class Length:
    """How long a submission is, against the body's page and word limits."""

    estimate: str | None  # "3 pages of A4 (an estimate …)", or the PDF's page count
    problem: str | None  # "UPR takes at most 5 pages; this submission is …", or None


def measure(d: Draft, *, pdf_data: bytes | None = None, text: str | None = None) -> Length:
    """The submission against the body's limits: pages of the PDF when it was made, else
    an estimate (the Word file's text laid out by the PDF stack); words of ``text`` (the
    e-mail or sheet) or of the document and its letter."""
    profile = d.profile
    estimate: str | None = None
    if profile.max_pages is not None and d.fmt in ("docx", "pdf"):
        from campaign import pdf

        if pdf_data is not None:
            count = pdf.count_pages(pdf_data)
            estimate, pages, found = f"{count} pages of A4", count, f"this PDF has {count}"
        else:
            from campaign.submission import html_fragment

            laid_out = pdf.estimate_pages(html_fragment(d.sub), lang=d.lang)
            estimate, pages, found = str(laid_out), laid_out.pages, f"this submission is {laid_out}"
        if pages > profile.max_pages:
            return Length(estimate, f"{profile.mandate} takes at most {_pages(profile.max_pages)}; {found}")
    if profile.max_words is not None:
        words = len((text or " ".join(d.sub.text_values()) + " " + d.rendered.text).split())
        if words > profile.max_words:
            return Length(estimate, f"{profile.mandate} takes at most {profile.max_words} words; this has {words}")
    return Length(estimate, None)


def letter_findings(ws: Workspace, cf: core.CaseFile, targets: list[Recipient], letter: Any) -> list[core.Finding]:
    """For `cases check`: what `submit prepare` would refuse about the covering letter and the
    document (:func:`letter_language`, :func:`measure`), as warnings per body: a language the
    body does not take, a submission over its page or word limit, a letter that does not render."""
    from campaign.errors import LetterError, PdfError

    out: list[core.Finding] = []
    for recipient in targets:
        if recipient.submission is None:
            continue
        try:
            d = draft(ws, cf, recipient, letter)
            length = measure(d, text=draft_text(d))
        except CaseError as err:  # a language the body does not take
            out.append(core.Finding(cf.id, recipient.id, "warning", cf.where("to"), err.message))
            continue
        except (LetterError, PdfError) as err:
            message = f"{err.message}; see `campaign letters check {letter.id} --case {cf.id}`"
            out.append(core.Finding(cf.id, recipient.id, "warning", cf.where("to"), message))
            continue
        if length.problem:
            message = f"{length.problem}: shorten the circumstances, or attach the detailed report separately"
            out.append(core.Finding(cf.id, recipient.id, "warning", cf.where("event", "circumstances"), message))
    return out


def prepare(ws: Workspace, request: PrepareRequest) -> PrepareResult:
    """Prepare (and with ``queue``, queue) one case's submission to one body."""
    from campaign.api import load_registry

    reg = load_registry(ws)
    recipient = registry_mod.select_recipients(reg, ids=[request.to])[0]
    profile = recipient.submission
    if profile is None:
        raise CaseError(
            f"recipients.yaml: {recipient.id} has no submission profile",
            hint="add a `submission:` block (see the README, Cases and submissions)",
        )
    cf = core.load_case(cases_api.cases_folder(ws), request.case)
    problem = core.consent_problem(cf, recipient)
    if problem:
        raise CaseError(
            f"case {cf.id}: {problem}; nothing was written: record consent covering {recipient.id} "
            f"at {cf.where('consent')} (consent:)"
        )
    letter = case_letter(ws, request.letter)
    letter_language(recipient, profile, letter, request.lang)  # before asking for the session
    if profile.subject and "{session}" in profile.subject and not request.session:
        raise UsageError(
            f"{profile.mandate}'s subject line names the session: add --session, e.g. --session 'May 2027'"
        )
    d = draft(ws, cf, recipient, letter, lang=request.lang, fmt=request.fmt, session=request.session)
    lang, fmt, sub, rendered, context, subject, today = d.lang, d.fmt, d.sub, d.rendered, d.context, d.subject, d.today
    withhold = d.withhold
    folder = cases_api.cases_folder(ws).parent / "submissions"
    ext = {"docx": ".docx", "pdf": ".pdf", "email": ".email.txt", "sheet": ".sheet.txt"}[fmt]
    out = request.out or folder / f"{cf.id}-{recipient.id}{ext}"

    checklist = [f"missing {m.element}: {m.meaning} ({m.where})" for m in core.missing_elements(cf, profile)]
    data: bytes | None = None
    if fmt == "docx":
        from campaign.submission import docx_bytes

        data = docx_bytes(sub)
    elif fmt == "pdf":
        data, signed = _pdf(ws, sub, recipient, today)
        if not signed:
            checklist.append(
                "the PDF is not digitally sealed: run `campaign keys init` and set CAMPAIGN_KEY_PASSPHRASE to seal it"
            )
    text_out = draft_text(d, html=out.suffix == ".html")
    length = measure(d, pdf_data=data if fmt == "pdf" else None, text=text_out)
    estimate = length.estimate
    if length.problem:
        raise CaseError(
            f"{length.problem}; nothing was written",
            hint="shorten the case's circumstances, or attach the detailed report separately",
        )

    checklist.extend(_procedure_notes(cf, recipient, profile, fmt, withhold, ws.root))
    files: list[Path] = []
    targets = [out]
    email_file = None
    if fmt in ("docx", "pdf"):
        email_file = out.with_name(f"{out.stem}.email.txt")
        targets.append(email_file)
    _refuse_existing(targets, request.force)
    if request.out is None:
        from campaign.config import ensure_private_dir

        ws.ensure_state_dir()
        ensure_private_dir(folder)
    _write_private_file(out, data if data is not None else (text_out or "").encode("utf-8"), replace=True)
    files.append(out)
    if email_file is not None:
        _write_private_file(email_file, _email_text(recipient, subject, rendered.text).encode("utf-8"), replace=True)
        files.append(email_file)

    result = PrepareResult(files, fmt, lang, _to_line(recipient, profile), subject, checklist, estimate)
    if request.queue:
        result.campaign = request.campaign or letter.id
        result.queued = _queue(ws, request, cf, recipient, profile, letter, lang, fmt, data, context)
        result.queue_error = _not_queued(result.queued, recipient, result.campaign)
    return result


def _not_queued(report: Any, recipient: Recipient, campaign: str) -> CaseError | None:
    """Why nothing waits in the queue after `--queue`, in one line with what to do; None
    when the submission, as prepared now, waits to be sent (new, already queued, updated)."""
    from campaign.outbox import WAITING

    counts = report.outcomes()
    if any(counts[outcome] for outcome in WAITING):
        return None
    where = f"nothing was queued: the submission to {recipient.id} in campaign {campaign}"
    if counts["changed (not updated)"]:
        return CaseError(
            f"{where} waits to be sent with a different text: add --update to replace it, "
            "or --campaign NEW to queue this one beside it"
        )
    if counts["already sent"]:
        return CaseError(
            f"{where} was already sent: for a follow-up submission add --campaign NEW (e.g. --campaign {campaign}-2)"
        )
    status = "failed" if counts["already failed"] else "cancelled"
    return CaseError(
        f"{where} {status} earlier (see `campaign log --campaign {campaign}`): add --campaign NEW to queue it again"
    )


def _pages(count: int) -> str:
    return "1 page" if count == 1 else f"{count} pages"


def _to_line(recipient: Recipient, profile: SubmissionProfile) -> str:
    name = recipient.label
    if profile.channel == "email" and recipient.contacts:
        c = recipient.contacts[0]
        return f"{c.name or name} <{c.email}>"
    address = recipient.address_in("en")
    if profile.channel == "post" and address:
        return " / ".join(address.strip().splitlines())
    return f"{name} ({profile.channel})"


def _email_text(recipient: Recipient, subject: str, text: str) -> str:
    to = ""
    if recipient.contacts:
        c = recipient.contacts[0]
        to = f"To: {c.name or recipient.label} <{c.email}>\n"
    return f"{to}Subject: {subject}\n\n{text.strip()}\n"


def _procedure_notes(
    cf: core.CaseFile, recipient: Recipient, profile: SubmissionProfile, fmt: Format, withhold: bool, root: Path
) -> list[str]:
    notes: list[str] = []
    if cf.case.fictional:
        notes.append("a fictional example: send it only to a local test server")
    if profile.signature:
        notes.append("sign it by hand: print the document, sign it, scan it, and send the scan (queue it with --scan)")
    if withhold:
        notes.append(
            f"{profile.mandate} publishes submissions and consent does not allow the name: the document withholds it; "
            "check that the free text does not name the person"
        )
    if profile.one_country:
        notes.append("one country per e-mail and per submission")
    for attachment in cf.case.attachments:
        problem = core.attachment_problem(root, attachment.path)
        notes.append(f"attach {attachment.path}" + (f" ({problem})" if problem else ""))
    if profile.channel == "web-form":
        notes.append(f"copy each field into the body's online form ({recipient.website or profile.source})")
    elif profile.channel == "post":
        notes.append("send it by post to the address in recipients.yaml")
    if profile.urgent_within_days and cf.case.event.date:
        start = core._first_day(cf.case.event.date)
        if start is not None and (utcnow().date() - start).days <= profile.urgent_within_days:
            notes.append(f"urgent procedure: the events are less than {profile.urgent_within_days} days old; send now")
    return notes


def _pdf(ws: Workspace, sub: Any, recipient: Recipient, today: Any) -> tuple[bytes, bool]:
    """The submission as a PDF: sealed when the organisation's key and passphrase are there."""
    from campaign import pdf
    from campaign.api import _letterhead, keys_folder, passphrase_from_env
    from campaign.render import format_date
    from campaign.submission import html_fragment

    content = pdf.LetterContent(
        lang=sub.lang,
        subject=sub.title,
        body_html=html_fragment(sub, title=False),
        date_text=format_date(today, sub.lang),
        reference=f"{sub.case}/{today:%Y%m%d}",
        recipient_name=recipient.submission.mandate if recipient.submission else recipient.name_in(sub.lang),
        postal_address=recipient.address_in(sub.lang),
    )
    sender = ws.settings.sender
    signer = pdf.Signer(sender.signatory or sender.name, sender.signatory_title, ws.settings.pdf.city)
    passphrase = passphrase_from_env("CAMPAIGN_KEY_PASSPHRASE")
    renderer = pdf.PdfRenderer()
    if passphrase and keys_folder(ws).is_dir():
        key = pdf.load_seal(keys_folder(ws), passphrase)
        return pdf.render_signed(renderer, _letterhead(ws), content, signer, key), True
    return renderer.render(_letterhead(ws), content, signer), False


def _refuse_existing(paths: list[Path], force: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise WorkspaceError(f"{existing[0]}: already exists; nothing was written", hint="add --force to overwrite")


def _queue(
    ws: Workspace,
    request: PrepareRequest,
    cf: core.CaseFile,
    recipient: Recipient,
    profile: SubmissionProfile,
    letter: Any,
    lang: str,
    fmt: Format,
    data: bytes | None,
    context: dict[str, Any],
) -> Any:
    """Queue the covering e-mail with the document attached (covered by the event's hash)."""
    from campaign import outbox
    from campaign.api import _letter_headers, _new_state_undone_on_error, now_ms, open_store
    from campaign.render import Renderer

    if profile.channel != "email" or not recipient.contacts:
        raise CaseError(
            f"{recipient.id} takes submissions by {profile.channel}, not e-mail: nothing was queued",
            hint="use the prepared file as the checklist says",
        )
    missing = core.missing_elements(cf, profile)
    if missing:
        raise CaseError(
            f"case {cf.id} lacks {', '.join(m.element for m in missing)} for {profile.mandate}: nothing was queued",
            hint=f"complete {cf.label}, then run `campaign cases check {cf.id}`",
        )
    cases_api.check_fictional(ws, [cf])
    files: list[outbox.AttachedFile] = []
    if profile.signature:
        if request.scan is None:
            raise CaseError(
                f"{profile.mandate} needs the complaint signed by hand: nothing was queued",
                hint="print the PDF, sign it, scan it, and queue the scan with --scan FILE",
            )
        try:
            scan = request.scan.read_bytes()
        except OSError as err:
            raise CaseError(f"{request.scan}: cannot read: {err.strerror}") from None
        files.append(outbox.AttachedFile(scan, f"{cf.id}-{recipient.id}-signed.pdf", "pdf"))
    elif data is not None:
        subtype = DOCX_TYPE if fmt == "docx" else "pdf"
        files.append(outbox.AttachedFile(data, f"{cf.id}-{recipient.id}.{fmt}", subtype))
    contact = recipient.contacts[0]
    target = outbox.Target(recipient, contact, (cf.id,))
    with _new_state_undone_on_error(ws):
        store = open_store(ws)
        try:
            return outbox.queue_letter(
                store,
                Renderer(ws.letters_dir),
                letter,
                [target],
                ws.settings.sender,
                campaign=request.campaign or letter.id,
                now_ms=now_ms(),
                lang=lang,
                update=request.update,
                extra_headers=lambda t: _letter_headers(ws),
                context_for=lambda t: context,
                files_for=lambda t, rendered: files,
            )
        finally:
            store.close()
