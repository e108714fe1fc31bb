"""Sending (`campaign send`, `plan`, `release`, `smtp`): the run's setup and wiring; the loop is campaign.dispatch.

Re-exported by ``campaign.api``; see its docstring for the rules every function follows.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaign.config import Workspace
from campaign.errors import (
    CampaignError,
    ConfigError,
    SelectionError,
    UsageError,
)
from campaign.models import Message, Registry
from campaign.store import MessageFilter
from campaign.transitions import PENDING, SENDING

if TYPE_CHECKING:
    from campaign.dispatch import Progress, RunReport, SendOptions
    from campaign.pacing import PacingConfig
    from campaign.store.sql import PrefixFn, SqlStore
    from campaign.transport import Connection, SmtpConfig
from campaign.api import _require_campaign, _write_private_file, load_registry, now_ms, open_store

_DUE = tuple(s.value for s in PENDING)  # waiting to go
_NOT_DONE = (*_DUE, SENDING.value)  # waiting to go, or in flight


@dataclass
class SendSummary:
    """What a send would do: for the confirmation question."""

    letters: int  # due now
    institutions: int
    server: str
    later: int = 0  # queued for a later time (office hours, caps, --at, retries)
    paused: int = 0  # in paused campaigns
    paused_campaigns: list[str] = field(default_factory=list)  # "*": every campaign
    paused_letters: dict[str, int] = field(default_factory=dict)  # {campaign: letters its pause holds back}


def send_summary(ws: Workspace, campaign: str | None = None, recipients: tuple[str, ...] = ()) -> SendSummary:
    """What `campaign send` would do now: the letters due now (not those waiting for a
    later time, nor paused campaigns), for its confirmation question."""
    from campaign.pacing import READY, PacingConfig, explain_waits

    with open_store(ws, create=False) as store:
        _require_campaign(store, campaign)
        now = now_ms()
        due, institutions, later, paused = store.due_summary(now, campaign, recipients)
        paused_names = sorted(store.paused())
        paused_letters = store.paused_pending(campaign, recipients)
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
        paused_letters=paused_letters,
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
    paused: dict[str, int] = field(default_factory=dict)  # {campaign: letters a pause holds back}
    every_paused: bool = False  # the pause of every campaign

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
    with open_store(ws) as store:
        if request.dry_run:
            return SendOutcome(None, written=write_outbox(ws, store, request.campaign))
        from campaign.config import SendLock

        setup = _prepare_send(ws, request)  # every check that can fail, before anything is touched
        # One sender per SQLite database, however it was named (-C, --db, CAMPAIGN_DB): the lock
        # sits beside the resolved database file. A shared PostgreSQL queue needs none: leases.
        with SendLock(store.lock_path, shown=ws.relative):
            return _run_send(ws, store, request, setup, on_progress=on_progress, on_interrupt=on_interrupt)


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
    from campaign.store.controls import ALL
    from campaign.store.sql import iso

    started = iso(now_ms())
    report = asyncio.run(main())
    outcome = SendOutcome(report)
    with contextlib.suppress(CampaignError):  # a store that stopped the run may refuse this too
        outcome.paused = store.paused_pending(request.campaign, request.recipients)
        outcome.every_paused = ALL in store.paused()
        # A pause made while the run went holds the rest of its campaign back: not "still to send".
        outcome.remaining = [
            m
            for m in store.messages(MessageFilter(campaign=request.campaign, statuses=_NOT_DONE))
            if m.campaign not in outcome.paused or m.status == SENDING
        ]
        outcome.refused = refused_by_integrity(store, started)
    return outcome


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
        heartbeat=settings.sending.heartbeat,
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
    for msg in store.messages(MessageFilter(campaign=campaign, statuses=_DUE)):
        prefix, body = store.wire_bytes(msg.id)
        if prefix is None:
            prefix = prefix_fn({}, body, now_ms())
        path = outdir / f"{msg.id:06d}-{msg.recipient}.eml"
        _write_private_file(path, prefix + body, replace=True)
        written.append(path)
    return written


def release(ws: Workspace, ids: list[int], note: str | None = None) -> list[str]:
    """Held (or failed) messages → queued again. Refused for a letter whose institution or
    address is no longer in recipients.yaml: it would go to the old address."""
    from campaign.models import address_key

    with open_store(ws, create=False) as store:
        letters = store.messages(MessageFilter(ids=tuple(ids)))
        if letters:
            registry = load_registry(ws)
            contacts = {r.id: {c.key for c in r.contacts} for r in registry.recipients}
            for m in letters:
                if m.recipient not in contacts:
                    raise SelectionError(
                        f"message {m.id}: {m.recipient} is no longer in recipients.yaml; "
                        "release would send the letter to an institution you removed",
                        hint=f"`campaign cancel {m.id}`, or put {m.recipient} back in recipients.yaml",
                    )
                if address_key(m.email) not in contacts[m.recipient]:
                    into = "" if m.campaign == m.letter else f" --campaign {m.campaign}"
                    raise SelectionError(
                        f"message {m.id}: {m.email} is no longer an address of {m.recipient} in recipients.yaml; "
                        "release would send the letter to the old address",
                        hint=f"`campaign queue {m.letter} --to {m.recipient}{into}` makes a new letter to the new "
                        f"address; then `campaign cancel {m.id}`",
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


@dataclass(frozen=True)
class PlanRow:
    """When one queued letter is expected to go."""

    id: int
    campaign: str
    recipient: str
    email: str
    at_ms: int
    outcome: str  # sent | failed (expired before its turn) | paused (its campaign is paused)
    waiting: str | None  # why it waits now, if it does (None: due now)
    zone: str


@dataclass
class PlanResult:
    start_ms: int
    rows: list[PlanRow]


def plan(ws: Workspace, campaign: str | None = None, *, start_ms: int | None = None) -> PlanResult:
    """A dry schedule: run the send loop on a copy of the queue, on a simulated clock,
    against a server that accepts everything. Nothing is sent and nothing changes."""

    from campaign.dispatch import simulate
    from campaign.pacing import Pacer
    from campaign.store.controls import ALL
    from campaign.store.copy import copy_state
    from campaign.store.sqlite import SqliteStore

    start = start_ms if start_ms is not None else now_ms()
    request = SendRequest(campaign=campaign, wait=True)
    reg = load_registry(ws)
    zones = {r.id: (r.timezone or "UTC") for r in reg.recipients}
    pacing = _pacing(ws, request, reg)
    with open_store(ws, create=False) as store:
        snapshot = SqliteStore(None)
        _require_campaign(store, campaign)
        copy_state(store, snapshot, bodies=False, events=False)
    pending = {
        m.id: (m.campaign, m.recipient, m.email, m.message_id, m.wait_reason)
        for m in snapshot.messages(MessageFilter(campaign=campaign, statuses=_NOT_DONE))
    }
    # Letters no send has looked at yet carry no reason: ask the registry's etiquette, as
    # `status` does, so the plan says why from the moment they are queued (before the
    # simulation moves the daily counts).
    from campaign.pacing import READY, explain_waits

    reasons: dict[str, str | None] = {}
    for recipient in sorted({r for _, r, _, _, waiting in pending.values() if waiting is None}):
        [(reason, _, _)] = explain_waits(pacing, [(recipient, 1, start)], start, snapshot.day_counts)
        reasons[recipient] = None if reason == READY else reason  # READY points at the plan itself
    paused = snapshot.paused_pending(campaign)  # copied with the queue: the simulation skips them too
    every = ALL in snapshot.paused()
    options = _send_options(ws, request, "plan", "sqlite")
    with snapshot:
        times, expired = simulate(snapshot, Pacer(pacing), options, start)
    rows = []
    for mid, (camp, recipient, email, message_id, waiting) in pending.items():
        at, outcome = times.get(mid, (start, "failed" if message_id in expired else "unscheduled"))
        if camp in paused and mid not in times:
            outcome = "paused"
            waiting = f"`campaign resume{'' if every else f' --campaign {camp}'}`"
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
    rows.sort(key=lambda r: (r.outcome == "paused", r.at_ms, r.id))
    return PlanResult(start_ms=start, rows=rows)
