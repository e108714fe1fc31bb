"""The store: the only place with SQL. Messages, the hash-chained event log, pacing state.

Contract (SQLite in ``.campaign/state.db`` by default, PostgreSQL for teams; same
schema, same behaviour):
- Migrations are named functions recorded in ``schema_migrations`` and applied when
  the store opens; a database from a newer version is refused, never altered.
- Every state change and its event commit in one transaction. Events are
  append-only (triggers refuse UPDATE and DELETE) and each carries the SHA-256 of the
  previous one (see ``campaign.chain``); appends are serialised through the single
  ``chain_head`` row, so several workers still write one chain.
- Queueing is idempotent on (campaign, letter, institution, normalised address).
- A claim marks a message ``sending`` (with attempt, lease and the SHA-256 of the exact
  bytes) and commits *before* any byte goes to the server. A message found
  ``sending`` with no live lease is from a crash: it is made due again and logged as
  a possible duplicate. That is the only way a letter can reach an institution twice.
- SQLite runs in WAL mode with ``synchronous=FULL``; writes use ``BEGIN IMMEDIATE``;
  the file is created with mode 0600. PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``.

Times: event and row times are UTC RFC 3339 text; scheduling times
(``next_attempt_at``, leases) are integer epoch milliseconds;
rate buckets (the ``pacing`` table) are integer epoch microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaign.errors import StoreError

if TYPE_CHECKING:
    from campaign.store.sql import SqlStore


@dataclass(frozen=True)
class NewMessage:
    """A rendered letter ready to queue."""

    campaign: str
    letter: str
    recipient: str
    email: str
    email_key: str
    domain: str
    contact_name: str | None
    lang: str
    subject: str
    message_id: str
    envid: str
    body: bytes
    content_sha256: str
    smtputf8: bool = False
    not_before_ms: int | None = None
    wait_reason: str | None = None
    in_reply_to: str | None = None
    cases: str = ""  # the cases it is about: sorted ids, comma-separated (part of the key)
    attachments: tuple[dict[str, Any], ...] = ()  # {filename, sha256, size} of files covered by content_sha256


@dataclass(frozen=True)
class Existing:
    """What the store already holds under a queue key."""

    id: int
    message_id: str
    envid: str
    status: str
    content_sha256: str
    created_at: str
    possible_duplicate: bool = False


@dataclass(frozen=True)
class Claimed:
    """A message marked ``sending`` for one attempt, with the exact bytes to send."""

    id: int
    message_id: str
    envid: str
    campaign: str
    recipient: str
    email: str
    domain: str
    wire: bytes
    wire_sha256: str
    attempt: int
    smtputf8: bool
    possible_duplicate: bool
    first_attempt_at: str
    previous_status: str
    claimed_ms: int = 0  # when it was handed to a connection (the "sending" event's time)


@dataclass(frozen=True)
class Unsent:
    """A claimed letter a run never started to send: what ``unclaim`` needs to put it back
    (kept in the recovery journal when the store could not take it at the time)."""

    id: int
    message_id: str
    campaign: str
    attempt: int
    previous_status: str

    @classmethod
    def of(cls, item: Claimed) -> Unsent:
        return cls(item.id, item.message_id, item.campaign, item.attempt, item.previous_status)


@dataclass(frozen=True)
class Hold:
    """A due letter a claim held instead of sending (see ``SqlStore.claim``'s ``gate``)."""

    id: int
    message_id: str
    campaign: str
    recipient: str
    kind: str  # registry | consent | ...
    reason: str


@dataclass(frozen=True)
class Claim:
    """The result of one claim: messages to send now, or when to look again and why."""

    items: list[Claimed]
    wait_until_ms: int | None = None
    wait_reason: str | None = None
    held: list[Hold] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed message."""

    id: int
    message_id: str
    campaign: str
    status: str  # sent | deferred | failed | held
    event: str  # sent | deferred | failed | held | outcome_unknown
    attempt: int
    code: int | None = None
    enhanced: str | None = None
    reply: str | None = None
    remote_id: str | None = None
    next_attempt_ms: int | None = None
    possible_duplicate: bool = False
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """A queued message a report may be about (for matching)."""

    id: int
    message_id: str
    envid: str
    campaign: str
    email: str
    status: str
    attempted: bool = True  # has at least one ``sending`` event: only then may a report change it


@dataclass(frozen=True)
class ReceiptEntry:
    """One thing a report says, ready to record: a DSN recipient block, an MDN, a reply.

    ``kind``: dsn | mdn | reply | auto-reply. ``outcome`` for a DSN: delivered, relayed,
    bounced or delayed; for an MDN: displayed or deleted. ``target`` is None when the
    entry matches no letter (it is kept and listed, never dropped). ``suspicious`` is the
    letter an entry names when that letter was never attempted: kept, listed, changes nothing.
    """

    part: int
    kind: str
    target: Target | None = None
    matched_by: str | None = None
    outcome: str | None = None
    action: str | None = None
    status: str | None = None
    diagnostic: str | None = None
    reporting_mta: str | None = None
    remote_mta: str | None = None
    original_recipient: str | None = None
    final_recipient: str | None = None
    envid: str | None = None
    original_message_id: str | None = None
    arrival: str | None = None
    note: str | None = None
    suspicious: Target | None = None


@dataclass(frozen=True)
class Report:
    """A report or reply as imported: its exact bytes, where it came from, its entries."""

    raw: bytes
    sha256: str
    source: str
    entries: list[ReceiptEntry]


@dataclass(frozen=True)
class MessageFilter:
    """Which messages a query returns."""

    campaign: str | None = None
    statuses: tuple[str, ...] = ()
    recipient: str | None = None
    since_ms: int | None = None  # epoch ms: changed at or after this moment
    ids: tuple[int, ...] = ()
    message_ids: tuple[str, ...] = ()


def open_store(url: str, *, password: str | None = None, busy_timeout: float = 30.0) -> SqlStore:
    """Open (and migrate) the store at ``url``: ``sqlite:///path`` or ``postgresql://...``
    (``password`` only when neither PGPASSWORD nor ~/.pgpass provides one). A statement
    waits up to ``busy_timeout`` seconds for another process's lock. The store is a
    context manager: ``with open_store(url) as store: ...`` closes it.

    Raises StoreError.
    """
    if url.startswith("sqlite:///"):
        from campaign.store.sqlite import SqliteStore

        return SqliteStore(Path(url[len("sqlite:///") :]), busy_timeout=busy_timeout)
    if url.startswith(("postgresql://", "postgres://")):
        from campaign.store.postgres import PostgresStore

        return PostgresStore(url, password=password, busy_timeout=busy_timeout)
    raise StoreError(f"{url}: unknown store; use sqlite:///path or postgresql://user@host/db")


__all__ = [
    "Hold",
    "ReceiptEntry",
    "Report",
    "Target",
    "Claim",
    "Claimed",
    "Unsent",
    "Existing",
    "MessageFilter",
    "NewMessage",
    "Outcome",
    "open_store",
]
