"""One function per user action: the CLI's only door into the core.

Each function takes a resolved :class:`~campaign.config.Workspace` (or the arguments
to find one), wires settings, registry, renderer, store and transport together, and
returns plain results. Nothing here prints or exits; progress is reported through
callbacks and problems are raised as :class:`~campaign.errors.CampaignError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from campaign import registry as registry_mod
from campaign.config import Workspace, load_workspace
from campaign.errors import (
    CampaignError,
    ConfigError,
    LedgerError,
    RenderError,
    SelectionError,
    StoreError,
    UsageError,
    WorkspaceError,
)
from campaign.models import Contact, Event, Letter, Message, Recipient, Registry, utcnow
from campaign.render import RenderedLetter, Renderer, build_message, message_bytes, new_message_id
from campaign.store import MessageFilter

if TYPE_CHECKING:
    from campaign.dispatch import Progress, RunReport, SendOptions
    from campaign.imap import ImapConfig
    from campaign.ledger import Verification
    from campaign.outbox import QueueReport
    from campaign.pacing import PacingConfig
    from campaign.receipts import ImportResult
    from campaign.store.sql import PrefixFn, SqlStore
    from campaign.transport import Connection, SmtpConfig

# ---------------------------------------------------------------------------
# Workspace


def open_workspace(
    directory: str | os.PathLike[str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Workspace:
    """Find the workspace (-C, CAMPAIGN_WORKSPACE, or the current folder) and its settings."""
    return load_workspace(directory, overrides=overrides, labels=labels)


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


# ---------------------------------------------------------------------------
# Registry and letters


def load_registry(ws: Workspace) -> Registry:
    """recipients.yaml of the workspace, validated (cached in .campaign/cache/ when it exists)."""
    cache = ws.state_dir / "cache" if ws.state_dir.is_dir() else None
    return registry_mod.load_registry(ws.registry_path, cache_dir=cache)


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


def check_letters(
    ws: Workspace, letter_ids: Iterable[str] = (), *, context: Mapping[str, Any] | None = None
) -> LetterCheck:
    """Render every letter for every institution and language it would be sent in.

    Problems in one letter do not hide the others: all are collected. ``context`` holds
    the cases (`letters check --case`); a letter about a case is otherwise checked with
    the fictional example case.
    """
    reg = load_registry(ws)
    letters = registry_mod.load_letters(ws.letters_dir)
    chosen = [registry_mod.get_letter(letters, lid) for lid in letter_ids] or list(letters.values())
    if not letters:
        return LetterCheck(problems=["letters/: no letters found (letters/<id>/<lang>.md.j2)"])
    renderer = Renderer(ws.letters_dir)
    report = LetterCheck()
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
            report.warnings.append(
                f"letters/{letter.id}/ is about a case: checked with the fictional example case; "
                "check it with yours: `campaign letters check --case ID`"
            )
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
                        if err.message not in report.problems:
                            report.problems.append(err.message)
                        continue
                    report.rendered += 1
        # Languages nobody needs right now must still render (a later --lang may pick them).
        for lang in sorted(set(letter.languages) - langs_needed):
            recipient = reg.recipients[0]
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
                if err.message not in report.problems:
                    report.problems.append(err.message)
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
    store = open_store(ws, create=False)
    try:
        found = [
            m
            for m in store.messages(MessageFilter(campaign=campaign, recipient=recipient_id))
            if m.letter == letter_id and m.lang == lang and m.email.casefold() == email.casefold()
        ]
        if not found:
            return None
        message = found[-1]
        prefix, body = store.wire_bytes(message.id)
    finally:
        store.close()
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


def pick_contact(recipient: Recipient, email: str | None) -> Contact | None:
    """The contact with ``email``, else the first one (None for postal-only institutions)."""
    if email is None:
        return recipient.contacts[0] if recipient.contacts else None
    for contact in recipient.contacts:
        if contact.email.casefold() == email.casefold():
            return contact
    raise SelectionError(f"{recipient.id} has no contact {email}")


# ---------------------------------------------------------------------------
# Store, queue and send


def open_store(ws: Workspace, *, create: bool = True) -> SqlStore:
    """The workspace's store (SQLite in .campaign/ unless [store] url / --db says otherwise).

    With ``create=False`` (commands that only read), a workspace without state gets an
    empty in-memory store: reading never creates .campaign/.
    """
    from campaign.store import open_store as _open

    busy = ws.settings.store.busy_timeout.total_seconds()
    if ws.settings.store.url is None:
        if not create and not (ws.state_dir / "state.db").exists():
            from campaign.store.sqlite import SqliteStore

            return SqliteStore(None)
        ws.ensure_state_dir()
        store: SqlStore = _open(ws.store_url, busy_timeout=busy)
    else:
        store = _open(ws.store_url, password=_store_password(ws.store_url), busy_timeout=busy)
    store.key_path = ws.state_dir / "chain.key"  # the workspace's chain key (campaign.store.integrity)
    return store


def _store_password(url: str) -> str | None:
    """PostgreSQL: PGPASSWORD and ~/.pgpass are read by the driver; else the keyring."""
    from campaign.config import keyring_secret, store_account

    if os.environ.get("PGPASSWORD") or (Path.home() / ".pgpass").exists():
        return None
    return keyring_secret(store_account(url))


def _require_campaign(store: SqlStore, campaign: str | None) -> None:
    """A campaign named on the command line must exist (a typo must not look like "done")."""
    if campaign and not store.counts(campaign):
        raise SelectionError(f"no campaign named {campaign!r} in the queue", hint="see `campaign status`")


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
        from campaign.api import signing as signing_api

        ids, name, cover = signing_api.drive_for_queue(ws, request.drive, request.letter)
        request.ids = request.ids or ids
        request.campaign = request.campaign or name
        request.attachments = [*request.attachments, (cover, f"signatures-{name}.pdf")]
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


@contextlib.contextmanager
def _new_state_undone_on_error(ws: Workspace) -> Iterator[None]:
    """If a command creates the state (folder or database) and then fails, remove what it
    created: bad input leaves the workspace as it was."""
    import shutil

    folder_existed = ws.state_dir.exists()
    db = ws.state_dir / "state.db"
    db_existed = db.exists() or ws.settings.store.url is not None
    key = ws.state_dir / "chain.key"
    key_existed = key.exists()
    try:
        yield
    except BaseException:
        if not folder_existed:
            shutil.rmtree(ws.state_dir, ignore_errors=True)
        elif not db_existed:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            if not key_existed:
                key.unlink(missing_ok=True)  # it tagged nothing that was kept
        raise


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

    store = open_store(ws)
    try:
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
    finally:
        store.close()


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


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    import time

    return int(time.time() * 1000)


@dataclass
class SendSummary:
    """What a send would do: for the confirmation question."""

    letters: int  # due now
    institutions: int
    server: str
    later: int = 0  # queued for a later time (office hours, caps, --at, retries)
    paused: int = 0  # in paused campaigns
    paused_campaigns: list[str] = field(default_factory=list)  # "*": every campaign


def send_summary(ws: Workspace, campaign: str | None = None, recipients: tuple[str, ...] = ()) -> SendSummary:
    """What `campaign send` would do now: the letters due now (not those waiting for a
    later time, nor paused campaigns), for its confirmation question."""
    from campaign.pacing import READY, PacingConfig, explain_waits

    with open_store(ws, create=False) as store:
        _require_campaign(store, campaign)
        now = now_ms()
        due, institutions, later, paused = store.due_summary(now, campaign, recipients)
        paused_names = sorted(store.paused())
        # Letters no send has looked at yet may still wait (office hours, a daily cap).
        ready = [r for r in store.ready_by_recipient(campaign) if not recipients or r[0] in recipients]
        if ready and due:
            with contextlib.suppress(CampaignError):  # a broken registry: the send itself will say so
                config = PacingConfig.from_registry(load_registry(ws), rate=1.0, per_domain_rate=1.0)
                for recipient, n, first in ready:
                    if first > now:
                        continue
                    [(reason, _, _)] = explain_waits(config, [(recipient, n, first)], now, store.day_counts)
                    if reason != READY:
                        due, later, institutions = due - n, later + n, institutions - 1
    return SendSummary(
        due,
        institutions,
        f"{ws.settings.smtp.host}:{ws.settings.smtp.port}",
        later=later,
        paused=paused,
        paused_campaigns=paused_names,
    )


@dataclass
class SendRequest:
    """What `campaign send` was asked to do."""

    campaign: str | None = None
    dry_run: bool = False
    limit: int | None = None
    concurrency: int | None = None
    wait: bool = False
    rate: float | None = None
    ids: tuple[int, ...] = ()
    recipients: tuple[str, ...] = ()  # --to: only these institutions' letters
    etiquette: bool = True  # office hours and daily caps (the demo turns them off)


@dataclass
class SendOutcome:
    """How `campaign send` ended, and what is left."""

    report: RunReport | None
    remaining: list[Message] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)  # held: bytes not as logged

    @property
    def exit_code(self) -> int:
        if self.report is None:
            return 0
        if self.report.stopped is not None:
            return 1
        if self.report.aborted or self.report.interrupted:
            return 130
        p = self.report.progress
        return 3 if (p.failed or p.held or self.report.expired or self.refused) else 0


def smtp_config(ws: Workspace) -> SmtpConfig:
    """SMTP settings plus the password (from the environment or the keyring)."""
    from campaign.config import get_secret, smtp_account
    from campaign.transport import SmtpConfig

    s = ws.settings.smtp
    password = None
    if s.username:
        password = get_secret("CAMPAIGN_SMTP_PASSWORD", smtp_account(ws.settings))
    ca_file = str((ws.root / s.ca_file).resolve()) if s.ca_file else None
    return SmtpConfig(
        host=s.host,
        port=s.port,
        security=s.security,
        helo_name=ws.settings.helo_name,
        username=s.username,
        password=password,
        ca_file=ca_file,
        timeout=s.timeout.total_seconds(),
        data_timeout=s.data_timeout.total_seconds(),
    )


def send(
    ws: Workspace,
    request: SendRequest,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    on_interrupt: Callable[[int], None] | None = None,
) -> SendOutcome:
    """Send what is due (see ``campaign.dispatch``). Ctrl-C once: finish in-flight; twice: abort."""
    store = open_store(ws)
    try:
        if request.dry_run:
            return SendOutcome(None, written=write_outbox(ws, store, request.campaign))
        from campaign.config import SendLock

        setup = _prepare_send(ws, request)  # every check that can fail, before anything is touched
        # One sender per SQLite database, however it was named (-C, --db, CAMPAIGN_DB): the lock
        # sits beside the resolved database file. A shared PostgreSQL queue needs none: leases.
        with SendLock(store.lock_path, shown=ws.relative):
            return _run_send(ws, store, request, setup, on_progress=on_progress, on_interrupt=on_interrupt)
    finally:
        store.close()


@dataclass
class _SendSetup:
    """What a run needs, prepared (and checked) before the send lock is taken."""

    config: SmtpConfig | None
    pacing: PacingConfig
    gate: Any
    prefix: PrefixFn


def _prepare_send(
    ws: Workspace, request: SendRequest, *, connect: Callable[[], Connection] | None = None
) -> _SendSetup:
    from campaign.api.cases import consent_gate
    from campaign.outbox import registry_gate

    config = smtp_config(ws) if connect is None else None  # the password: missing → one line, nothing touched
    registry = load_registry(ws)
    prefix = wire_prefix_for(ws)  # reads the DKIM key now: a problem stops us before anything is logged
    # Each letter is checked as it is claimed (a `send --wait` may run for days): its
    # institution and address still in the registry, and, for a letter about a case, a
    # consent that still covers that institution.
    registry_check, consent_check = registry_gate(registry.recipients), consent_gate(ws, registry)

    def gate(row: dict[str, Any]) -> tuple[str, str] | None:
        return registry_check(row) or consent_check(row)

    return _SendSetup(config, _pacing(ws, request, registry), gate, prefix)


def _run_send(
    ws: Workspace,
    store: SqlStore,
    request: SendRequest,
    setup: _SendSetup,
    *,
    on_progress: Callable[[Progress], None] | None,
    on_interrupt: Callable[[int], None] | None,
    connect: Callable[[], Connection] | None = None,
) -> SendOutcome:
    import asyncio
    import secrets
    import signal

    from campaign.dispatch import Dispatcher, StopSignal
    from campaign.pacing import Pacer
    from campaign.transport import SmtpConnection

    config, pacing, gate, prefix = setup.config, setup.pacing, setup.gate, setup.prefix
    worker = secrets.token_hex(4)
    options = _send_options(ws, request, worker, store.dialect)

    def factory() -> Connection:
        assert config is not None
        return SmtpConnection(config)

    async def main() -> RunReport:
        stop = StopSignal()
        loop = asyncio.get_running_loop()
        presses = 0

        def interrupted() -> None:
            nonlocal presses
            presses += 1
            stop.request()
            if on_interrupt:
                on_interrupt(presses)

        installed = False
        try:
            loop.add_signal_handler(signal.SIGINT, interrupted)
            installed = True
        except (NotImplementedError, RuntimeError, ValueError):
            pass
        try:
            dispatcher = Dispatcher(
                store,
                connect or factory,
                Pacer(pacing),
                options,
                prefix=prefix,
                on_progress=on_progress,
                stop=stop,
                gate=gate,
            )
            return await dispatcher.run()
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGINT)

    from campaign.api.evidence import refused_by_integrity
    from campaign.store.sql import iso

    started = iso(now_ms())
    report = asyncio.run(main())
    remaining: list[Message] = []
    refused: list[Any] = []
    with contextlib.suppress(CampaignError):  # a store that stopped the run may refuse this too
        remaining = store.messages(MessageFilter(campaign=request.campaign, statuses=("queued", "deferred", "sending")))
        refused = refused_by_integrity(store, started)
    return SendOutcome(report, remaining=remaining, refused=refused)


def _pacing(ws: Workspace, request: SendRequest, registry: Registry | None = None) -> PacingConfig:
    """The limits of one run: [sending] rates (or --rate) and the registry's etiquette."""
    from campaign.pacing import PacingConfig

    sending = ws.settings.sending
    rate = request.rate or sending.rate
    if not request.etiquette:
        return PacingConfig(rate=rate, per_domain_rate=sending.per_domain_rate)
    registry = registry or load_registry(ws)
    return PacingConfig.from_registry(registry, rate=rate, per_domain_rate=sending.per_domain_rate)


def _send_options(ws: Workspace, request: SendRequest, worker: str, store_dialect: str) -> SendOptions:
    from campaign.dispatch import SendOptions

    settings = ws.settings
    return SendOptions(
        worker=worker,
        return_path=settings.return_path,
        verp=settings.receipts.verp,
        campaign=request.campaign,
        ids=request.ids,
        recipients=request.recipients,
        limit=request.limit,
        concurrency=request.concurrency or settings.smtp.concurrency,
        wait=request.wait,
        max_age=settings.sending.max_age,
        retry_min=settings.sending.retry_min,
        retry_max=settings.sending.retry_max,
        lease=settings.sending.lease,
        all_sending_crashed=store_dialect == "sqlite",
        store_retry=settings.store.retry_for,
        journal_dir=ws.state_dir / "recovery",
        label=f"pid {os.getpid()}",
    )


def wire_prefix_for(ws: Workspace) -> PrefixFn:
    """The header lines added at the first attempt: Date (UTC), and a DKIM signature over
    the exact bytes when [dkim] is set. Raises ConfigError for a key file others can read."""
    from campaign.pacing import ms_to_dt
    from campaign.render import date_header

    dkim = ws.settings.dkim
    key = _dkim_key(ws) if dkim is not None else None

    def prefix(row: dict[str, Any], body: bytes, at_ms: int) -> bytes:
        date = date_header(ms_to_dt(at_ms))
        if dkim is None or key is None:
            return date
        from campaign.transport import dkim_signature

        return dkim_signature(date + body, selector=dkim.selector, domain=dkim.domain, private_key=key) + date

    return prefix


def _dkim_key(ws: Workspace) -> bytes:
    from campaign.errors import ConfigError

    assert ws.settings.dkim is not None
    path = (ws.root / ws.settings.dkim.key_file).resolve()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(
            f"[dkim] key_file {ws.settings.dkim.key_file}: no such file",
            hint="create one with `campaign smtp dkim-keygen --selector NAME`",
        ) from None
    if mode & 0o077:
        raise ConfigError(
            f"[dkim] key_file {ws.settings.dkim.key_file}: readable by others (mode {oct(mode & 0o777)}); refused",
            hint=f"chmod 600 {ws.settings.dkim.key_file}",
        )
    return path.read_bytes()


@dataclass
class DkimKey:
    key_file: Path
    record_name: str
    record: str


def dkim_keygen(ws: Workspace, selector: str, domain: str | None = None) -> DkimKey:
    """Write a DKIM key pair under .campaign/dkim/ and return the DNS TXT record to publish."""
    import re

    from campaign.config import ensure_private_dir
    from campaign.transport import dkim_keygen as make_key

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}", selector):
        raise UsageError(f"--selector {selector!r}: use letters, digits and hyphens (e.g. campaign2026)")
    domain = domain or ws.settings.sender.domain
    folder = ensure_private_dir(ws.ensure_state_dir() / "dkim")
    private, public = make_key()
    path = folder / f"{selector}.key"
    _write_private_file(path, private)
    _write_private_file(folder / f"{selector}.txt", f"v=DKIM1; k=rsa; p={public}\n".encode())
    return DkimKey(path, f"{selector}._domainkey.{domain}", f"v=DKIM1; k=rsa; p={public}")


def write_outbox(ws: Workspace, store: SqlStore, campaign: str | None) -> list[Path]:
    """--dry-run: the exact bytes each due message would carry, as .eml files; no state changes."""
    from campaign.config import ensure_private_dir

    outdir = ensure_private_dir(ws.outbox_dir)
    prefix_fn = wire_prefix_for(ws)
    written = []
    for msg in store.messages(MessageFilter(campaign=campaign, statuses=("queued", "deferred"))):
        prefix, body = store.wire_bytes(msg.id)
        if prefix is None:
            prefix = prefix_fn({}, body, now_ms())
        path = outdir / f"{msg.id:06d}-{msg.recipient}.eml"
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # an older file may have been looser
            handle.write(prefix + body)
        written.append(path)
    return written


@dataclass
class StatusReport:
    counts: dict[str, dict[str, int]]
    waiting: list[tuple[str, int, int]]  # (why, how many, earliest epoch ms)
    receipts: dict[str, dict[str, int]] = field(default_factory=dict)  # awaiting / delayed per campaign
    deadlines: list[Any] = field(default_factory=list)  # follow-ups of cases (api.cases.DeadlineRow)
    case_errors: list[str] = field(default_factory=list)


def status(ws: Workspace, campaign: str | None = None) -> StatusReport:
    """Counts per state per campaign, and why pending letters wait: also right after
    `queue`, before any send looked at them (office hours and daily caps are asked of the
    registry's etiquette now, with the same wording as a send would record)."""
    with open_store(ws, create=False) as store:
        counts = store.counts(campaign)
        waiting = store.waiting(campaign)
        receipts = store.receipt_counts(campaign)
        ready = store.ready_by_recipient(campaign) if any(r == "ready" for r, _, _ in waiting) else []
        if ready:
            waiting = _explain_ready(ws, store, waiting, ready)
        case_ids: list[str] | None = None
        if campaign:
            from campaign.store.cases import campaign_cases

            case_ids = campaign_cases(store, campaign)
    if campaign and not counts:
        raise SelectionError(f"no campaign named {campaign!r} in the queue", hint="see `campaign status`")
    from campaign.api.cases import deadlines

    due, broken = deadlines(ws, case_ids)
    return StatusReport(counts, waiting, receipts, due, broken)


def _explain_ready(
    ws: Workspace, store: SqlStore, waiting: list[tuple[str, int, int]], ready: list[tuple[str, int, int]]
) -> list[tuple[str, int, int]]:
    from campaign.pacing import PacingConfig, explain_waits

    try:
        registry = load_registry(ws)
    except CampaignError:
        return waiting  # status still answers with a broken registry; `recipients check` explains it
    config = PacingConfig.from_registry(registry, rate=ws.settings.sending.rate, per_domain_rate=1.0)
    explained = explain_waits(config, ready, now_ms(), store.day_counts)
    merged = [w for w in waiting if w[0] != "ready"] + explained
    return sorted(merged, key=lambda w: w[2])


@dataclass
class LogQuery:
    campaign: str | None = None
    statuses: tuple[str, ...] = ()
    recipient: str | None = None
    since: str | None = None


def log(ws: Workspace, query: LogQuery) -> list[Message]:
    """One row per message."""
    store = open_store(ws, create=False)
    try:
        return store.messages(
            MessageFilter(
                campaign=query.campaign,
                statuses=query.statuses,
                recipient=query.recipient,
                since_ms=_since(query.since),
            )
        )
    finally:
        store.close()


def log_events(ws: Workspace, query: LogQuery) -> list[Event]:
    """The event history (optionally for one campaign / institution / time)."""
    store = open_store(ws, create=False)
    try:
        events = store.events(campaign=query.campaign, since_ms=_since(query.since))
        if query.recipient or query.statuses:
            keep = {
                m.message_id
                for m in store.messages(
                    MessageFilter(campaign=query.campaign, statuses=query.statuses, recipient=query.recipient)
                )
            }
            events = [e for e in events if e.message in keep]
        return events
    finally:
        store.close()


def _since(text: str | None) -> int | None:
    """--since (a date or an ISO 8601 time; UTC unless it says otherwise) → epoch ms."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {text!r}: write a date (2026-11-28) or an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def verify_log(ws: Workspace) -> Verification:
    """Recompute the hash chain."""
    from campaign.ledger import verify

    store = open_store(ws, create=False)
    try:
        return verify(store)
    finally:
        store.close()


def release(ws: Workspace, ids: list[int], note: str | None = None) -> list[str]:
    """Held (or failed) messages → queued again. Refused for a letter whose institution or
    address is no longer in recipients.yaml: it would go to the old address."""
    from campaign.models import address_key

    with open_store(ws, create=False) as store:
        letters = store.messages(MessageFilter(ids=tuple(ids)))
        if letters:
            registry = load_registry(ws)
            contacts = {r.id: {address_key(c.email) for c in r.contacts} for r in registry.recipients}
            for m in letters:
                if address_key(m.email) not in contacts.get(m.recipient, set()):
                    raise SelectionError(
                        f"message {m.id}: {m.email} is no longer an address of {m.recipient} in recipients.yaml; "
                        "release would send the letter to the old address",
                        hint=f"queue a new letter with `campaign queue {m.letter} --to {m.recipient}` "
                        f"(after fixing the address), or `campaign cancel {m.id}`",
                    )
        return store.release(ids, now_ms(), note=note)


def smtp_login_account(ws: Workspace) -> str:
    """The account `smtp login` stores a password for. Raises UsageError without a username."""
    if not ws.settings.smtp.username:
        raise UsageError(
            "[smtp] username is not set in campaign.toml: no password is needed",
            hint="add username under [smtp] if your server asks for a login",
        )
    return f"{ws.settings.smtp.username} at {ws.settings.smtp.host}:{ws.settings.smtp.port}"


def smtp_login(ws: Workspace, password: str) -> str:
    """Store the SMTP password in the system keyring; returns the backend name."""
    from campaign.config import smtp_account, store_secret

    smtp_login_account(ws)
    return store_secret(smtp_account(ws.settings), password)


# ---------------------------------------------------------------------------
# The demo: campaign/api/demo.py


# ---------------------------------------------------------------------------
# Plans


@dataclass(frozen=True)
class PlanRow:
    """When one queued letter is expected to go."""

    id: int
    campaign: str
    recipient: str
    email: str
    at_ms: int
    outcome: str  # sent | failed (expired before its turn)
    waiting: str | None  # why it waits now, if it does
    zone: str


@dataclass
class PlanResult:
    start_ms: int
    rows: list[PlanRow]


def plan(ws: Workspace, campaign: str | None = None, *, start_ms: int | None = None) -> PlanResult:
    """A dry schedule: run the send loop on a copy of the queue, on a simulated clock,
    against a server that accepts everything. Nothing is sent and nothing changes."""
    import asyncio

    from campaign.dispatch import Dispatcher, VirtualClock
    from campaign.pacing import Pacer
    from campaign.store.sql import copy_state
    from campaign.store.sqlite import SqliteStore
    from campaign.transport import NullConnection

    start = start_ms if start_ms is not None else now_ms()
    request = SendRequest(campaign=campaign, wait=True)
    reg = load_registry(ws)
    zones = {r.id: (r.timezone or "UTC") for r in reg.recipients}
    pacing = _pacing(ws, request, reg)
    store = open_store(ws, create=False)
    snapshot = SqliteStore(None)
    try:
        _require_campaign(store, campaign)
        copy_state(store, snapshot, bodies=False, events=False)
    finally:
        store.close()
    pending = {
        m.id: (m.campaign, m.recipient, m.email, m.message_id, m.wait_reason)
        for m in snapshot.messages(MessageFilter(campaign=campaign, statuses=("queued", "deferred", "sending")))
    }
    times: dict[int, tuple[int, str]] = {}
    # Letters no send has looked at yet carry no reason: ask the registry's etiquette, as
    # `status` does, so the plan says why from the moment they are queued (before the
    # simulation moves the daily counts).
    from campaign.pacing import explain_waits

    reasons: dict[str, str] = {}
    for recipient in sorted({r for _, r, _, _, waiting in pending.values() if waiting is None}):
        [(reason, _, _)] = explain_waits(pacing, [(recipient, 1, start)], start, snapshot.day_counts)
        reasons[recipient] = reason

    def record(outcome: Any, at: int) -> None:
        times[outcome.id] = (at, outcome.status)

    # The plan's store is a private copy on a virtual clock: no journal, no heartbeat, and
    # every letter left "sending" counts as a crash (as the next real run would treat it).
    options = dataclasses.replace(
        _send_options(ws, request, "plan", "sqlite"), heartbeat=None, label=None, journal_dir=None
    )
    dispatcher = Dispatcher(
        snapshot,
        NullConnection,
        Pacer(pacing),
        options,
        prefix=lambda row, body, at: b"",
        clock=VirtualClock(start),
        on_outcome=record,
    )
    gc.freeze()  # the plan's many long-lived objects need no cycle collection (it grew quadratic)
    try:
        report = asyncio.run(dispatcher.run())
    finally:
        gc.unfreeze()
        snapshot.close()
    expired = set(report.expired)
    rows = []
    for mid, (camp, recipient, email, message_id, waiting) in pending.items():
        at, outcome = times.get(mid, (start, "failed" if message_id in expired else "unscheduled"))
        rows.append(
            PlanRow(
                id=mid,
                campaign=camp,
                recipient=recipient,
                email=email,
                at_ms=at,
                outcome=outcome,
                waiting=waiting or reasons.get(recipient),
                zone=zones.get(recipient, "UTC"),
            )
        )
    rows.sort(key=lambda r: (r.at_ms, r.id))
    return PlanResult(start_ms=start, rows=rows)


# ---------------------------------------------------------------------------
# Receipts and evidence


def import_receipts(ws: Workspace, paths: list[Path]) -> ImportResult:
    """Import delivery reports, read receipts and replies from files, mbox files, Maildirs."""
    from campaign.receipts import import_items, read_sources

    items = list(read_sources(paths))  # read (and refuse non-mail) before changing anything
    store = open_store(ws)
    try:
        return import_items(store, items, now_ms=now_ms, return_local=_return_local(ws))
    finally:
        store.close()


def _return_local(ws: Workspace) -> str:
    return ws.settings.return_path.rpartition("@")[0]


def unmatched_receipts(ws: Workspace) -> list[dict[str, Any]]:
    """Report entries that matched no letter (kept, never dropped)."""
    store = open_store(ws, create=False)
    try:
        return store.unmatched()
    finally:
        store.close()


# ---------------------------------------------------------------------------
# Teams: a shared store


@dataclass
class MigrationResult:
    target: str
    copied: dict[str, int]
    verification: Verification


def migrate_store(
    ws: Workspace, to_url: str, *, on_progress: Callable[[str, int], None] | None = None
) -> MigrationResult:
    """Copy this workspace's state (messages, the event chain, receipts) into another store
    (normally PostgreSQL) and verify the chain on arrival. The target must be empty."""
    from campaign.config import check_store_url
    from campaign.ledger import verify
    from campaign.store import open_store as _open
    from campaign.store.sql import copy_state

    try:
        check_store_url(to_url)
    except ValueError as err:
        raise UsageError(f"--to: {err}") from None
    source = open_store(ws, create=False)
    try:
        target = _open(to_url, password=_store_password(to_url))
        try:
            if target.messages() or target.chain_head()[0]:
                raise StoreError(
                    f"{target.label}: already holds letters or events; nothing was copied",
                    hint="migrate into an empty database",
                )
            copied = copy_state(source, target, on_progress=on_progress)  # the chain key goes along
            check = verify(target)
            label = target.label
        finally:
            target.close()
    finally:
        source.close()
    if not check.ok:
        raise LedgerError(f"{label}: the copied chain does not verify at event {check.broken_seq}: {check.reason}")
    return MigrationResult(label, copied, check)


def workers(ws: Workspace, *, within: timedelta = timedelta(hours=24)) -> list[dict[str, Any]]:
    """Send processes seen recently, their leases and what they sent."""
    store = open_store(ws, create=False)
    try:
        return store.workers(now_ms() - int(within.total_seconds() * 1000))
    finally:
        store.close()


# ---------------------------------------------------------------------------
# Signed PDF letters


def passphrase_from_env(var: str) -> str | None:
    """A passphrase from the environment (CAMPAIGN_KEY_PASSPHRASE, CAMPAIGN_P12_PASSPHRASE)."""
    return os.environ.get(var) or None


def keys_folder(ws: Workspace) -> Path:
    return ws.state_dir / "keys"


def keys_init(ws: Workspace, passphrase: str) -> str:
    """Create the organisation's root certificate and seal key, and the public copy of the
    root certificate (organisation-root.pem); return the root fingerprint."""
    from campaign import pdf
    from campaign.api import keys

    keys.check_public_root_free(ws)
    with _new_state_undone_on_error(ws):
        ws.ensure_state_dir()
        fingerprint = pdf.init_keys(keys_folder(ws), passphrase, organisation=ws.settings.sender.name)
    keys.export_root(ws)
    return fingerprint


def keys_issue(ws: Workspace, passphrase: str, *, name: str, email: str | None, p12_passphrase: str, out: Path) -> Path:
    """Issue a supporter certificate (PKCS#12, mode 0600) signed by the organisation's root."""
    from campaign import pdf

    data = pdf.issue_supporter(keys_folder(ws), passphrase, name=name, email=email, p12_passphrase=p12_passphrase)
    _write_private_file(out, data)
    return out


def _write_private_file(path: Path, data: bytes) -> None:
    try:
        if path.exists():
            raise WorkspaceError(f"{path}: already exists; not overwritten", hint="choose another -o")
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except OSError as err:
        raise WorkspaceError(f"{path}: cannot write: {err.strerror}") from err


@dataclass(frozen=True)
class SignerInput:
    """A supporter as the CLI or a CSV row gives them."""

    name: str
    title: str | None = None
    city: str | None = None
    signature_image: Path | None = None


def _pdf_content(
    ws: Workspace,
    renderer: Renderer,
    letter: Letter,
    recipient: Recipient,
    *,
    lang: str | None,
    today: date,
    reference: str,
    speaker: Literal["organisation", "supporter"] = "supporter",
) -> Any:
    from campaign import pdf
    from campaign.render import format_date

    contact = recipient.contacts[0] if recipient.contacts else None
    rendered = renderer.render(
        letter, recipient, contact, ws.settings.sender, lang=lang, medium="pdf", today=today, speaker=speaker
    )
    name = recipient.name_in(rendered.lang)
    address = recipient.address_in(rendered.lang)
    if address:
        lines = address.strip().splitlines()
        # Registries often repeat the institution's name as the first address line.
        if lines and " ".join(lines[0].split()).casefold() == " ".join(name.split()).casefold():
            address = "\n".join(lines[1:]) or None
    return pdf.LetterContent(
        lang=rendered.lang,
        subject=rendered.subject,
        body_html=rendered.body_html,
        date_text=format_date(today, rendered.lang),
        reference=reference,
        recipient_name=name,
        postal_address=address,
    )


def _letterhead(ws: Workspace) -> Any:
    from campaign import pdf

    sender = ws.settings.sender
    return pdf.Letterhead(name=sender.name, address=sender.address, email=sender.reply_to or sender.email)


def reference_for(letter_id: str, recipient_id: str, today: date, supporter: int | None = None) -> str:
    """A readable reference number: letter, institution, date (and supporter in a batch)."""
    ref = f"{letter_id}/{recipient_id}/{today:%Y%m%d}"
    return f"{ref}/{supporter}" if supporter is not None else ref


def pdf_export(
    ws: Workspace,
    letter_id: str,
    recipient_id: str,
    signer: SignerInput,
    out: Path,
    *,
    key_file: Path | None,
    passphrase: str,
    lang: str | None = None,
) -> Path:
    """Render one letter to one institution as a signed PDF (the supporter's key or the seal)."""
    from campaign import pdf

    reg = load_registry(ws)
    letters = registry_mod.load_letters(ws.letters_dir)
    letter = registry_mod.get_letter(letters, letter_id)
    recipient = registry_mod.select_recipients(reg, ids=[recipient_id])[0]
    key = pdf.load_p12(key_file, passphrase) if key_file else pdf.load_seal(keys_folder(ws), passphrase)
    today = utcnow().date()
    renderer = Renderer(ws.letters_dir)
    content = _pdf_content(
        ws, renderer, letter, recipient, lang=lang, today=today, reference=reference_for(letter.id, recipient.id, today)
    )
    person = pdf.Signer(signer.name, signer.title, signer.city or ws.settings.pdf.city, signer.signature_image)
    data = pdf.render_signed(
        pdf.PdfRenderer(), _letterhead(ws), content, person, key, timestamp_url=ws.settings.pdf.timestamp_url
    )
    _write_private_file(out, data)
    return out


def pdf_verify(ws: Workspace | None, paths: list[Path], trust: list[Path]) -> list[Any]:
    """Verify signed letters against the given roots (default: this workspace's root)."""
    from campaign import pdf

    roots: list[bytes] = []
    for path in trust:
        try:
            roots.append(path.read_bytes())
        except OSError as err:
            raise SelectionError(f"{path}: cannot read the trust root: {err.strerror}") from None
    if not trust:
        if ws is None or not keys_folder(ws).is_dir():
            raise SelectionError(
                "no trust root: this workspace has no keys",
                hint="pass --trust ROOT.pem (the organisation's published root), or run `campaign keys init`",
            )
        roots.append(pdf.root_certificate_pem(keys_folder(ws)))
    names = [str(p) for p in trust] if trust else ["the workspace's root certificate"]
    pdf.check_trust_roots(roots, names)  # a bad root is one error for the whole run
    results: list[Any] = []
    for path in paths:
        # Every file is checked and reported, whatever happened to the one before it.
        try:
            data = path.read_bytes()
            results.append(pdf.verify_pdf(data, trust_roots=roots, name=str(path), trust_names=names))
        except OSError as err:
            results.append(UnreadableFile(str(path), f"{path}: cannot read: {err.strerror or err}"))
        except CampaignError as err:
            results.append(UnreadableFile(str(path), err.message, err.hint))
    return results


@dataclass(frozen=True)
class UnreadableFile:
    """A file `pdf verify` could not check at all (missing, not a PDF, truncated)."""

    file: str
    message: str
    hint: str | None = None


@dataclass
class BatchResult:
    files: list[Path]
    zip_file: Path | None = None
    print_file: Path | None = None


def read_supporters(path: Path, images: Path | None = None) -> list[SignerInput]:
    """supporters.csv: columns name (required), title, city, signature_image (a PNG path,
    relative to the CSV's folder, or to ``images`` when given, and never outside it: a CSV
    from someone else must not make us read and stamp any file we can read).
    Raises SelectionError naming the line."""
    import csv

    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SelectionError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise SelectionError(f"{path}: not UTF-8 text", hint="save the CSV as UTF-8") from None
    reader = csv.DictReader(text.splitlines())
    allowed = {"name", "title", "city", "signature_image"}
    header = reader.fieldnames or []
    if "name" not in header:
        raise SelectionError(
            f"{path}:1: the header must have a `name` column (and optionally title, city, signature_image)"
        )
    unknown = [c for c in header if c not in allowed]
    if unknown:
        raise SelectionError(
            f"{path}:1: unknown column {unknown[0]!r}; the columns are name, title, city, signature_image"
        )
    supporters = []
    for row in reader:
        line = reader.line_num
        name = (row.get("name") or "").strip()
        if not name:
            raise SelectionError(f"{path}:{line}: name is empty")
        if any("\n" in (v or "") or "\r" in (v or "") for v in row.values()):
            raise SelectionError(f"{path}:{line}: a value spans several lines")
        image = (row.get("signature_image") or "").strip()
        base = images if images is not None else path.parent
        image_path = (base / image) if image else None
        if image_path is not None and not image_path.resolve().is_relative_to(base.resolve()):
            where = f"--images {images}" if images is not None else "the CSV's folder"
            raise SelectionError(
                f"{path}:{line}: signature_image {image!r} is outside {where}; refused",
                hint="put the signature images in the CSV's folder, or name their folder with --images DIR",
            )
        if image_path is not None and not image_path.is_file():
            raise SelectionError(f"{path}:{line}: signature_image {image!r} not found")
        supporters.append(
            SignerInput(
                name, (row.get("title") or "").strip() or None, (row.get("city") or "").strip() or None, image_path
            )
        )
    if not supporters:
        raise SelectionError(f"{path}: no supporters (only a header)")
    return supporters


_WORKER: dict[str, Any] = {}


def _batch_init(keys: str, passphrase: str, timestamp_url: str | None) -> None:
    from campaign import pdf

    _WORKER["renderer"] = pdf.PdfRenderer()
    _WORKER["key"] = pdf.load_seal(Path(keys), passphrase)
    _WORKER["timestamp_url"] = timestamp_url


def _batch_one(job: tuple[Any, Any, Any, bool]) -> tuple[bytes, bytes | None]:
    from campaign import pdf

    head, content, person, want_unsigned = job
    unsigned = _WORKER["renderer"].render(head, content, person)
    signed = pdf.sign_pdf(unsigned, _WORKER["key"], signer=person, timestamp_url=_WORKER["timestamp_url"])
    return signed, (unsigned if want_unsigned else None)


def pdf_batch(
    ws: Workspace,
    letter_id: str,
    supporters_csv: Path,
    out_dir: Path,
    *,
    ids: list[str],
    tags: list[str],
    passphrase: str,
    everyone: bool = False,
    zip_output: bool = False,
    print_file: Path | None = None,
    processes: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    images: Path | None = None,
) -> BatchResult:
    """One organisation-sealed PDF per supporter and institution, in worker processes."""
    import zipfile
    from concurrent.futures import ProcessPoolExecutor

    from campaign import pdf
    from campaign.outbox import check_selection

    check_selection(ids, tags, everyone)
    if images is not None and not images.is_dir():
        raise SelectionError(f"--images {images}: no such folder")
    supporters = read_supporters(supporters_csv, images)
    reg = load_registry(ws)
    letters = registry_mod.load_letters(ws.letters_dir)
    letter = registry_mod.get_letter(letters, letter_id)
    recipients = registry_mod.select_recipients(reg, ids=ids, tags=tags, everyone=everyone)
    pdf.load_seal(keys_folder(ws), passphrase)  # a wrong passphrase fails here, once, before any work
    today = utcnow().date()
    renderer = Renderer(ws.letters_dir)
    head = _letterhead(ws)
    jobs, names = [], []
    for n, supporter in enumerate(supporters, start=1):
        person = pdf.Signer(
            supporter.name, supporter.title, supporter.city or ws.settings.pdf.city, supporter.signature_image
        )
        for recipient in recipients:
            content = _pdf_content(
                ws,
                renderer,
                letter,
                recipient,
                lang=None,
                today=today,
                reference=reference_for(letter.id, recipient.id, today, n),
            )
            jobs.append((head, content, person, print_file is not None))
            names.append(f"{n:04d}-{_slug(supporter.name)}-{recipient.id}.pdf")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WorkspaceError(f"{out_dir}: cannot create: {err.strerror}") from err
    existing = [name for name in names if (out_dir / name).exists()]
    if existing:
        raise WorkspaceError(
            f"{out_dir}: {existing[0]} already exists; nothing was written", hint="choose an empty --out-dir"
        )
    files: list[Path] = []
    unsigned: list[bytes] = []
    workers = max(1, processes or os.cpu_count() or 1)
    with ProcessPoolExecutor(
        max_workers=workers,
        initializer=_batch_init,
        initargs=(str(keys_folder(ws)), passphrase, ws.settings.pdf.timestamp_url),
    ) as pool:
        for done, (name, (signed, plain_pdf)) in enumerate(
            zip(names, pool.map(_batch_one, jobs), strict=True), start=1
        ):
            _write_private_file(out_dir / name, signed)
            files.append(out_dir / name)
            if plain_pdf is not None:
                unsigned.append(plain_pdf)
            if on_progress:
                on_progress(done, len(jobs))
    result = BatchResult(files)
    if zip_output:
        result.zip_file = out_dir / f"{letter.id}-signed-letters.zip"
        fd = os.open(result.zip_file, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # private from the first byte, whatever the umask
            with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as bundle:
                for path in files:
                    bundle.write(path, path.name)  # each letter signed on its own: never one merged signed file
    if print_file is not None:
        _write_private_file(print_file, pdf.merge_unsigned(unsigned))
        result.print_file = print_file
    return result


def _slug(text: str) -> str:
    import re
    import unicodedata

    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:40] or "supporter"


def imap_config(ws: Workspace) -> ImapConfig:
    """[receipts.imap] plus the password (CAMPAIGN_IMAP_PASSWORD or the keyring)."""
    from campaign.config import get_secret, imap_account
    from campaign.imap import ImapConfig

    imap = ws.settings.receipts.imap
    if imap is None:
        raise ConfigError(
            "campaign.toml has no [receipts.imap] section",
            hint="add host, port, username and folder under [receipts.imap]; see `campaign init`",
        )
    password = get_secret("CAMPAIGN_IMAP_PASSWORD", imap_account(imap))
    ca_file = str((ws.root / imap.ca_file).resolve()) if imap.ca_file else None
    return ImapConfig(
        host=imap.host,
        port=imap.port,
        username=imap.username,
        password=password,
        folder=imap.folder,
        security=imap.security,
        ca_file=ca_file,
        timeout=imap.timeout.total_seconds(),
    )


@dataclass
class FetchResult:
    fetched: int
    imported: ImportResult
    moved: int = 0


def fetch_receipts(ws: Workspace, *, move_to: str | None = None) -> FetchResult:
    """Fetch new messages from the IMAP folder and import them like `receipts import`."""

    config = imap_config(ws)
    account = f"{config.username}@{config.host}:{config.port}"
    with _new_state_undone_on_error(ws):
        return _fetch_into(ws, config, account, move_to)


def _fetch_into(ws: Workspace, config: ImapConfig, account: str, move_to: str | None) -> FetchResult:
    from campaign import imap
    from campaign.receipts import Item, import_items

    store = open_store(ws)
    try:
        with imap.session(config, readonly=move_to is None) as (client, uidvalidity):
            position = store.mailbox_position(account, config.folder)
            after = position[1] if position and position[0] == uidvalidity else 0
            batch = imap.fetch_new(client, uidvalidity, after)
            items = [Item(f"imap:{config.folder}/{uid}", raw) for uid, raw in batch.messages]
            result = import_items(store, items, now_ms=now_ms, return_local=_return_local(ws))
            if batch.messages:
                store.set_mailbox_position(account, config.folder, uidvalidity, batch.messages[-1][0], now_ms())
            moved = 0
            if move_to:
                handled = set(result.handled)
                uids = [uid for uid, _ in batch.messages if f"imap:{config.folder}/{uid}" in handled]
                imap.move(client, uids, move_to)
                moved = len(uids)
    finally:
        store.close()
    return FetchResult(len(batch.messages), result, moved)


@dataclass(frozen=True)
class ReplyRow:
    kind: str
    campaign: str
    recipient: str
    email: str
    message_row: int
    subject: str
    received: str
    sender: str
    reply_subject: str
    automatic: str | None
    sha256: str


def replies(ws: Workspace, campaign: str | None = None) -> list[ReplyRow]:
    """Replies (and automatic replies) to our letters, with who answered and when."""
    from campaign.receipts import describe

    store = open_store(ws, create=False)
    try:
        rows = []
        for r in store.replies(campaign):
            raw = store.blob(r["report_sha256"]) or b""
            sender, subject = describe(raw)
            if r.get("cases"):  # "Re: <subject>" may name the person the letter is about
                subject = "(a reply to a letter about a case: subject not shown)"
            rows.append(
                ReplyRow(
                    kind=r["kind"],
                    campaign=r["campaign"],
                    recipient=r["recipient"],
                    email=r["email"],
                    message_row=int(r["message_row"]),
                    subject=r["subject"],
                    received=r["arrival"] or r["received_at"],
                    sender=sender,
                    reply_subject=subject,
                    automatic=r["note"],
                    sha256=r["report_sha256"],
                )
            )
        return rows
    finally:
        store.close()


# ---------------------------------------------------------------------------
# Follow-ups


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
    from campaign.models import Contact, OriginalLetter, parse_duration
    from campaign.render import format_date

    try:
        wait = parse_duration(after)
    except ValueError as err:
        raise UsageError(f"--after: {err}") from None
    reg = load_registry(ws)
    letters = registry_mod.load_letters(ws.letters_dir)
    letter = registry_mod.get_letter(letters, letter_id)
    store = open_store(ws, create=False)
    try:
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
    finally:
        store.close()
    if case_ids:
        from campaign.api.cases import deadlines

        rows, _ = deadlines(ws, case_ids)
        report.notes.extend(f"case {r.case}: {r.text}" for r in rows)
    return report
