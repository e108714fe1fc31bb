"""One function per user action: the CLI's only door into the core.

Each function takes a resolved :class:`~campaign.config.Workspace` (or the arguments
to find one), wires settings, registry, renderer, store and transport together, and
returns plain results. Nothing here prints or exits; progress is reported through
callbacks and problems are raised as :class:`~campaign.errors.CampaignError`.
"""

from __future__ import annotations

import contextlib
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
    SendLockError,
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
                renderer.render(
                    letter,
                    recipient,
                    recipient.contacts[0] if recipient.contacts else None,
                    ws.settings.sender,
                    lang=lang,
                )
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


# ---------------------------------------------------------------------------
# Store, queue and send


def open_store(ws: Workspace, *, create: bool = True) -> SqlStore:
    """The workspace's store (SQLite in .campaign/ unless [store] url / --db says otherwise).

    With ``create=False`` (commands that only read), a workspace without state gets an
    empty in-memory store: reading never creates .campaign/.
    """
    from campaign.store import open_store as _open

    if ws.settings.store.url is None:
        if not create and not (ws.state_dir / "state.db").exists():
            from campaign.store.sqlite import SqliteStore

            return SqliteStore(None)
        ws.ensure_state_dir()
        store: SqlStore = _open(ws.store_url)
    else:
        store = _open(ws.store_url, password=_store_password(ws.store_url))
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


def queue(ws: Workspace, request: QueueRequest) -> QueueReport:
    """Render the letter for the chosen institutions and queue it (all or nothing)."""
    from campaign import outbox
    from campaign.pacing import dt_to_ms

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
    with _new_state_undone_on_error(ws):
        report = _queue_into_store(ws, request, letter, chosen, not_before, wait_reason)
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
            attachment=_sealed_pdf_attachment(ws, letter) if ws.settings.letters.attach_pdf else None,
        )
    finally:
        store.close()


def _sealed_pdf_attachment(ws: Workspace, letter: Letter) -> Callable[..., tuple[bytes, str]]:
    """[letters] attach_pdf: each letter gets its organisation-sealed PDF attached."""
    from campaign import pdf
    from campaign.errors import SecretError

    passphrase = passphrase_from_env("CAMPAIGN_KEY_PASSPHRASE")
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

    letters: int
    institutions: int
    server: str


def send_summary(ws: Workspace, campaign: str | None = None) -> SendSummary:
    store = open_store(ws, create=False)
    try:
        _require_campaign(store, campaign)
        letters, institutions = store.pending_summary(campaign)
    finally:
        store.close()
    return SendSummary(letters, institutions, f"{ws.settings.smtp.host}:{ws.settings.smtp.port}")


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
        with _send_lock(ws):
            return _run_send(ws, store, request, on_progress=on_progress, on_interrupt=on_interrupt)
    finally:
        store.close()


def _run_send(
    ws: Workspace,
    store: SqlStore,
    request: SendRequest,
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

    config = smtp_config(ws) if connect is None else None
    worker = secrets.token_hex(4)
    options = _send_options(ws, request, worker)
    pacing = _pacing(ws, request)
    prefix = wire_prefix_for(ws)  # reads the DKIM key now: a problem stops us before anything is logged

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
            )
            return await dispatcher.run()
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGINT)

    from campaign.api.evidence import refused_by_integrity
    from campaign.store.sql import iso

    started = iso(now_ms())
    store.append_event(
        now_ms(), "run_started", campaign=request.campaign, data={"worker": worker, "wait": request.wait}
    )
    store.worker_started(
        worker, now_ms(), label=f"pid {os.getpid()}", campaign=request.campaign, concurrency=options.concurrency
    )
    try:
        report = asyncio.run(main())
    finally:
        store.worker_beat(worker, now_ms(), stopped=True)
    p = report.progress
    store.append_event(
        now_ms(),
        "run_finished",
        campaign=request.campaign,
        data={
            "worker": worker,
            "sent": p.sent,
            "deferred": p.deferred,
            "failed": p.failed,
            "held": p.held,
            "outcome_unknown": p.unknown,
            "stopped": report.stopped.message if report.stopped else None,
            "interrupted": report.interrupted or None,
            "aborted": report.aborted or None,
        },
    )
    remaining = store.messages(MessageFilter(campaign=request.campaign, statuses=("queued", "deferred", "sending")))
    return SendOutcome(report, remaining=remaining, refused=refused_by_integrity(store, started))


def _pacing(ws: Workspace, request: SendRequest, registry: Registry | None = None) -> PacingConfig:
    """The limits of one run: [sending] rates (or --rate) and the registry's etiquette."""
    from campaign.pacing import PacingConfig

    sending = ws.settings.sending
    rate = request.rate or sending.rate
    if not request.etiquette:
        return PacingConfig(rate=rate, per_domain_rate=sending.per_domain_rate)
    registry = registry or load_registry(ws)
    return PacingConfig.from_registry(registry, rate=rate, per_domain_rate=sending.per_domain_rate)


def _send_options(ws: Workspace, request: SendRequest, worker: str) -> SendOptions:
    from campaign.dispatch import SendOptions

    settings = ws.settings
    return SendOptions(
        worker=worker,
        return_path=settings.return_path,
        verp=settings.receipts.verp,
        campaign=request.campaign,
        ids=request.ids,
        limit=request.limit,
        concurrency=request.concurrency or settings.smtp.concurrency,
        wait=request.wait,
        max_age=settings.sending.max_age,
        retry_min=settings.sending.retry_min,
        retry_max=settings.sending.retry_max,
        lease=settings.sending.lease,
        all_sending_crashed=settings.store.url is None,
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


class _send_lock:
    """One `campaign send` per workspace (SQLite store): a lock file in .campaign/."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.handle: Any = None

    def __enter__(self) -> _send_lock:
        import fcntl

        if self.ws.settings.store.url is not None:
            return self  # a shared PostgreSQL queue is safe for many senders
        path = self.ws.ensure_state_dir() / "send.lock"
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        self.handle = os.fdopen(fd, "r+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise SendLockError(
                f"{self.ws.relative(path)}: another `campaign send` is running in this workspace",
                hint="wait for it to finish (or stop it with Ctrl-C); two senders would race",
            ) from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"{os.getpid()}\n")
        self.handle.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            import fcntl

            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


@dataclass
class StatusReport:
    counts: dict[str, dict[str, int]]
    waiting: list[tuple[str, int, int]]  # (why, how many, earliest epoch ms)
    receipts: dict[str, dict[str, int]] = field(default_factory=dict)  # awaiting / delayed per campaign


def status(ws: Workspace, campaign: str | None = None) -> StatusReport:
    """Counts per state per campaign, and why pending letters wait."""
    store = open_store(ws, create=False)
    try:
        counts = store.counts(campaign)
        waiting = store.waiting(campaign)
        receipts = store.receipt_counts(campaign)
    finally:
        store.close()
    if campaign and not counts:
        raise SelectionError(f"no campaign named {campaign!r} in the queue", hint="see `campaign status`")
    return StatusReport(counts, waiting, receipts)


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
                campaign=query.campaign, statuses=query.statuses, recipient=query.recipient, since=_since(query.since)
            )
        )
    finally:
        store.close()


def log_events(ws: Workspace, query: LogQuery) -> list[Event]:
    """The event history (optionally for one campaign / institution / time)."""
    store = open_store(ws, create=False)
    try:
        events = store.events(campaign=query.campaign, since=_since(query.since))
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


def _since(text: str | None) -> str | None:
    if not text:
        return None
    from campaign.models import to_rfc3339

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {text!r}: write a date (2026-11-28) or an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_rfc3339(moment)


def verify_log(ws: Workspace) -> Verification:
    """Recompute the hash chain."""
    from campaign.ledger import verify

    store = open_store(ws, create=False)
    try:
        return verify(store)
    finally:
        store.close()


def release(ws: Workspace, ids: list[int], note: str | None = None) -> list[str]:
    """Held (or failed) messages → queued again."""
    store = open_store(ws, create=False)
    try:
        return store.release(ids, now_ms(), note=note)
    finally:
        store.close()


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
# The demo


DEMO_LETTER = "peace-agreement"


@dataclass
class DemoResult:
    workspace: Path
    mailbox: Path
    reports: Path
    queued: int
    postal_only: int
    outcome: SendOutcome
    messages: list[Message]
    verification: Verification
    receipts: int = 0


def demo(
    directory: str | os.PathLike[str] | None = None,
    *,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> DemoResult:
    """Queue and send the shipped letter to an SMTP server inside this program.

    Works in ``.campaign/demo/`` (recreated each time) so the real state is untouched.
    """
    import shutil

    from campaign.config import ensure_private_dir, resolve_root
    from campaign.localserver import LocalServer, MailboxHandler

    root = resolve_root(directory, os.environ)
    for needed in ("recipients.yaml", "letters"):
        if not (root / needed).exists():
            raise WorkspaceError(
                f"{root}: no {needed} here to build the demo from",
                hint="run `campaign demo` in the repository root or a workspace made by `campaign init`",
            )
    source = load_workspace(root) if (root / "campaign.toml").exists() else None
    demo_dir = root / ".campaign" / "demo"
    if demo_dir.exists():
        shutil.rmtree(demo_dir)
    ensure_private_dir(demo_dir)
    shutil.copy2(root / "recipients.yaml", demo_dir / "recipients.yaml")
    shutil.copytree(root / "letters", demo_dir / "letters")
    mailbox, reports = demo_dir / "mailbox", demo_dir / "reports"
    handler = MailboxHandler(mailbox=mailbox, reports=reports)
    with LocalServer(handler) as server:
        sender = source.settings.sender if source else None
        (demo_dir / "campaign.toml").write_text(_demo_config(sender, server.port), encoding="utf-8")
        ws = load_workspace(demo_dir, env={})
        letters = registry_mod.load_letters(ws.letters_dir)
        letter_id = DEMO_LETTER if DEMO_LETTER in letters else sorted(letters)[0]
        report = queue(ws, QueueRequest(letter=letter_id, everyone=True))
        queued = report.count("new")
        if on_start:
            on_start(queued)
        store = open_store(ws)
        try:
            with _send_lock(ws):
                outcome = _run_send(ws, store, SendRequest(etiquette=False), on_progress=on_progress, on_interrupt=None)
        finally:
            store.close()
    receipts = _import_demo_reports(ws, reports)
    return DemoResult(
        workspace=demo_dir,
        mailbox=mailbox,
        reports=reports,
        queued=queued,
        postal_only=report.count("postal-only"),
        outcome=outcome,
        messages=log(ws, LogQuery()),
        verification=verify_log(ws),
        receipts=receipts,
    )


def _import_demo_reports(ws: Workspace, reports: Path) -> int:
    """Import the demo server's simulated delivery reports (clearly labelled as simulated)."""
    files = sorted(reports.glob("*.eml")) if reports.is_dir() else []
    if not files:
        return 0
    return import_receipts(ws, files).recorded


def _demo_config(sender: Any, port: int) -> str:
    name = sender.name if sender else "Demo Organisation"
    email = sender.email if sender else "letters@campaign.example"
    return f'''# Written by `campaign demo`: a throwaway workspace; the server runs inside the program.
[sender]
name = "{name.replace('"', "'")}"
email = "{email}"

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
timeout = "10s"
data_timeout = "30s"

[sending]
rate = 50
per_domain_rate = 20

[receipts]
return_path = "receipts@{email.rpartition("@")[2]}"
'''


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

    def record(outcome: Any, at: int) -> None:
        times[outcome.id] = (at, outcome.status)

    options = _send_options(ws, request, "plan")
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
                waiting=waiting,
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
    from campaign.models import to_rfc3339

    store = open_store(ws, create=False)
    try:
        return store.workers(to_rfc3339(utcnow() - within))
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
    """Create the organisation's root certificate and seal key; return the root fingerprint."""
    from campaign import pdf

    with _new_state_undone_on_error(ws):
        ws.ensure_state_dir()
        return pdf.init_keys(keys_folder(ws), passphrase, organisation=ws.settings.sender.name)


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
) -> Any:
    from campaign import pdf
    from campaign.render import format_date

    contact = recipient.contacts[0] if recipient.contacts else None
    rendered = renderer.render(letter, recipient, contact, ws.settings.sender, lang=lang, medium="pdf", today=today)
    address = recipient.postal_address
    if address:
        lines = address.strip().splitlines()
        # Registries often repeat the institution's name as the first address line.
        if lines and " ".join(lines[0].split()).casefold() == " ".join(recipient.name.split()).casefold():
            address = "\n".join(lines[1:]) or None
    return pdf.LetterContent(
        lang=rendered.lang,
        subject=rendered.subject,
        body_html=rendered.body_html,
        date_text=format_date(today, rendered.lang),
        reference=reference,
        recipient_name=recipient.name,
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
    person = pdf.Signer(signer.name, signer.title, signer.city, signer.signature_image)
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
    results = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise SelectionError(f"{path}: cannot read: {err.strerror}") from None
        names = [str(p) for p in trust] if trust else ["the workspace's root certificate"]
        results.append(pdf.verify_pdf(data, trust_roots=roots, name=str(path), trust_names=names))
    return results


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

    check_selection(ids, tags, False)
    if images is not None and not images.is_dir():
        raise SelectionError(f"--images {images}: no such folder")
    supporters = read_supporters(supporters_csv, images)
    reg = load_registry(ws)
    letters = registry_mod.load_letters(ws.letters_dir)
    letter = registry_mod.get_letter(letters, letter_id)
    recipients = registry_mod.select_recipients(reg, ids=ids, tags=tags)
    pdf.load_seal(keys_folder(ws), passphrase)  # a wrong passphrase fails here, once, before any work
    today = utcnow().date()
    renderer = Renderer(ws.letters_dir)
    head = _letterhead(ws)
    jobs, names = [], []
    for n, supporter in enumerate(supporters, start=1):
        person = pdf.Signer(supporter.name, supporter.title, supporter.city, supporter.signature_image)
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
        by_key: dict[tuple[str, str], Message] = {}
        for message in due:
            recipient = reg.get(message.recipient)
            if recipient is None:
                continue  # the institution left the registry
            contact = next((c for c in recipient.contacts if c.email.casefold() == message.email.casefold()), None)
            targets.append(outbox.Target(recipient, contact or Contact(email=message.email)))
            by_key[(recipient.id, message.email.casefold())] = message

        def original(target: outbox.Target) -> OriginalLetter:
            m = by_key[(target.recipient.id, target.contact.email.casefold())]
            assert m.sent_at is not None
            return OriginalLetter(subject=m.subject, sent_on=format_date(m.sent_at, m.lang), message_id=m.message_id)

        def headers(target: outbox.Target) -> dict[str, str]:
            mid = by_key[(target.recipient.id, target.contact.email.casefold())].message_id
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
        )
    finally:
        store.close()
    return report
