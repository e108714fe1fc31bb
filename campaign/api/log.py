"""Review from the command line: `campaign status`, `log`, `log verify`, `workers`, `store migrate`.

Re-exported by ``campaign.api``; see its docstring for the rules every function follows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from campaign.config import Workspace
from campaign.errors import (
    CampaignError,
    LedgerError,
    SelectionError,
    StoreError,
    UsageError,
)
from campaign.models import Event, Message
from campaign.store import MessageFilter

if TYPE_CHECKING:
    from campaign.ledger import Verification
    from campaign.store.sql import SqlStore
from campaign.api import _store_password, load_registry, now_ms, open_store


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


def _message_filter(query: LogQuery) -> MessageFilter:
    """The store's filter for ``query`` (raises UsageError for a bad --since)."""
    return MessageFilter(
        campaign=query.campaign, statuses=query.statuses, recipient=query.recipient, since_ms=_since(query.since)
    )


def log(ws: Workspace, query: LogQuery) -> list[Message]:
    """One row per message."""
    wanted = _message_filter(query)
    with open_store(ws, create=False) as store:
        return store.messages(wanted)


def log_stream(ws: Workspace, query: LogQuery) -> Iterator[Message]:
    """:func:`log`, one letter at a time (read a page at a time): for printing many. The
    query is checked and the store opened before it returns; the store closes at the end."""
    wanted = _message_filter(query)
    store = open_store(ws, create=False)

    def rows() -> Iterator[Message]:
        with store:
            yield from store.iter_messages(wanted)

    return rows()


def log_events(ws: Workspace, query: LogQuery) -> list[Event]:
    """The event history (optionally for one campaign / institution / time)."""
    with open_store(ws, create=False) as store:
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

    with open_store(ws, create=False) as store:
        return verify(store)


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
    from campaign.store.copy import copy_state

    try:
        check_store_url(to_url)
    except ValueError as err:
        raise UsageError(f"--to: {err}") from None
    with open_store(ws, create=False) as source, _open(to_url, password=_store_password(to_url)) as target:
        if target.messages() or target.chain_head()[0]:
            raise StoreError(
                f"{target.label}: already holds letters or events; nothing was copied",
                hint="migrate into an empty database",
            )
        copied = copy_state(source, target, on_progress=on_progress)  # the chain key goes along
        check = verify(target)
        label = target.label
    if not check.ok:
        raise LedgerError(f"{label}: the copied chain does not verify at event {check.broken_seq}: {check.reason}")
    return MigrationResult(label, copied, check)


SILENT_AFTER_BEATS = 10  # a worker is "silent" once this many heartbeats were missed


def workers(ws: Workspace, *, within: timedelta = timedelta(hours=24)) -> list[dict[str, Any]]:
    """Send processes seen recently, their leases, what they sent, their rate per minute,
    and their state: ``stopped``, ``active`` (a heartbeat within ten ``[sending] heartbeat``
    intervals; an idle ``send --wait`` beats too) or ``silent``."""
    now = now_ms()
    with open_store(ws, create=False) as store:
        rows = store.workers(now - int(within.total_seconds() * 1000))
    silent_ms = SILENT_AFTER_BEATS * ws.settings.sending.heartbeat.total_seconds() * 1000
    for row in rows:
        started = _ms(row["started_at"])
        minutes = max((_ms(row["stopped_at"] or row["heartbeat_at"]) - started) / 60_000, 1 / 60)
        row["rate_per_minute"] = round(row["sent"] / minutes, 1)
        if row["stopped_at"]:
            row["state"] = "stopped"
        else:
            row["state"] = "active" if now - _ms(row["heartbeat_at"]) < silent_ms else "silent"
    return rows


def _ms(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
