"""The store logic shared by SQLite and PostgreSQL (see ``campaign.store`` for the contract).

SQL here uses ``?`` placeholders; the PostgreSQL store rewrites them. Subclasses
provide the connection, the transaction, and the few statements that differ.

State changes: a message's status changes only through :meth:`Tx.move`, which checks the
move against ``campaign.transitions`` (the one table of allowed moves), checks that its
UPDATE matched exactly one row in the expected state, and appends the move's event in the
same transaction.

The lock order, in every write transaction on both backends (so two transactions can
never wait on each other in opposite orders):

1. ``chain_head`` (PostgreSQL: ``SELECT … FOR UPDATE`` as the transaction's first
   statement; SQLite: ``BEGIN IMMEDIATE`` takes the database's one write lock first);
2. ``pacing`` rows, then ``daily_counts`` rows (claims only);
3. ``messages`` rows (claims lock due rows with ``FOR UPDATE SKIP LOCKED`` in
   ``next_attempt_at, id`` order; other writes update rows one by one in the order given);
4. ``workers``.

Because every writer holds ``chain_head`` from its first statement, writers are
serialised and hold nothing else while they wait for it: no deadlock is possible between
claims, outcomes, receipts and recovery. Readers take no locks. Long writers
(``receipts import``) commit in small batches so they never hold ``chain_head`` long.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from campaign import chain, transitions
from campaign.errors import StoreConflictError, StoreError
from campaign.models import Status, to_rfc3339
from campaign.pacing import Bucket
from campaign.store.controls import ControlStore
from campaign.store.integrity import IntegrityMixin
from campaign.store.migrations import MIGRATIONS
from campaign.store.receipts import ReceiptsMixin

MESSAGE_COLUMNS = (
    "id, campaign, letter, recipient, email, lang, subject, message_id, envid, status, attempts, "
    "created_at, updated_at, next_attempt_at, wait_reason, sent_at, last_code, last_status, "
    "last_reply, remote_id, possible_duplicate, in_reply_to, content_sha256, first_attempt_at, "
    "wire_sha256, domain, contact_name, delivery_status, delivery_detail, reporting_mta, receipt_at, "
    "delayed_at, displayed_at, deleted_at, replied_at, auto_replied_at, cases"
)
PENDING = tuple(s.value for s in transitions.PENDING)
_PENDING_SQL = ", ".join(f"'{s}'" for s in PENDING)


@dataclass(frozen=True)
class Expr:
    """A column value computed in SQL (``COALESCE(?, remote_id)``), for :meth:`Tx.move`."""

    sql: str
    params: tuple[Any, ...] = ()


def _flag(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def iso(ms: int) -> str:
    """Epoch milliseconds → RFC 3339 with milliseconds."""
    from datetime import UTC, datetime

    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Tx:
    """One open transaction: a cursor plus the chain head, cached while it lasts."""

    def __init__(self, store: StoreBase, cursor: Any) -> None:
        self.store = store
        self.cursor = cursor
        self._head: tuple[int, str] | None = None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.cursor.execute(self.store.sql(sql), tuple(params))

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        self.execute(sql, params)
        return [self.store.row_dict(self.cursor, r) for r in self.cursor.fetchall()]

    def dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as plain dicts (for callers outside the store, who may change them)."""
        return [dict(row) for row in self.rows(sql, params)]

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def append(
        self,
        now_ms: int,
        kind: str,
        *,
        message: str | None = None,
        campaign: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> str:
        """Append one event to the chain (log format 2, see ``campaign.chain``); returns its hash."""
        if self._head is None:
            row = self.one(self.store.head_select)
            assert row is not None, "chain_head row missing"
            self._head = (int(row["seq"]), str(row["hash"]))
        seq, prev = self._head
        time = iso(now_ms)
        payload = {k: v for k, v in (data or {}).items() if v is not None}
        rec = chain.record(time, kind, message, campaign, payload)
        key = self.store.tagging_key(self)
        ctag, mtag = self.store.event_tags(key, campaign, message)
        digest = chain.link_v2(prev, ctag, mtag, chain.record_digest(rec))
        self.execute(
            "INSERT INTO events (seq, time, kind, message, campaign, data, prev_hash, hash, format, ctag, mtag) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq + 1,
                time,
                kind,
                message,
                campaign,
                chain.canonical_json(payload),
                prev,
                digest,
                chain.FORMAT_V2,
                None if ctag == chain.NO_TAG else ctag,
                None if mtag == chain.NO_TAG else mtag,
            ),
        )
        self._head = (seq + 1, digest)
        return digest

    def finish(self) -> None:
        if self._head is not None:
            self.execute("UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1", self._head)

    def move(
        self,
        row_id: int,
        event: str,
        *,
        sources: Sequence[Status],
        target: Status | None,
        now_ms: int,
        message: str,
        campaign: str | None,
        data: dict[str, Any] | None = None,
        sets: dict[str, Any] | None = None,
        owner: str | None = None,
        strict: bool = True,
    ) -> bool:
        """Move one message from one of ``sources`` to ``target`` (None: status unchanged)
        and append the move's event, all in this transaction.

        The move must be in ``campaign.transitions``' table (else IllegalMove: a bug). The
        UPDATE must match exactly one row in one of ``sources`` (and leased by ``owner``
        when given): otherwise StoreConflictError, or False with ``strict=False`` (nothing
        changed, no event).
        """
        transitions.check(event, sources, target)
        assignments: dict[str, Any] = {} if target is None else {"status": target.value}
        assignments.update(sets or {})
        columns: list[str] = []
        params: list[Any] = []
        for column, value in assignments.items():
            if isinstance(value, Expr):
                columns.append(f"{column} = {value.sql}")
                params.extend(value.params)
            else:
                columns.append(f"{column} = ?")
                params.append(value)
        where = f"id = ? AND status IN ({', '.join('?' for _ in sources)})"
        params += [row_id, *(s.value for s in sources)]
        if owner is not None:
            where += " AND lease_owner = ?"
            params.append(owner)
        if not columns:
            raise transitions.IllegalMove(f"{event}: a move changes at least one column")
        self.execute(f"UPDATE messages SET {', '.join(columns)} WHERE {where}", params)
        if self.cursor.rowcount != 1:
            if strict:
                states = "/".join(s.value for s in sources)
                raise StoreConflictError(f"message {row_id} is no longer {states}: {event} refused")
            return False
        kind = transitions.EVENT_OF_MOVE.get(event, event)
        self.append(now_ms, kind, message=message, campaign=campaign, data=data)
        return True


class DbPacingState:
    """PacingState over the ``pacing`` and ``daily_counts`` tables, inside one transaction."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx
        self._buckets: dict[str, Bucket] = {}
        self._dirty: set[str] = set()
        self._days: dict[tuple[str, str], int] = {}
        self._days_dirty: set[tuple[str, str]] = set()

    def bucket(self, key: str) -> Bucket:
        if key not in self._buckets:
            self.tx.store.ensure_pacing_row(self.tx, key)
            row = self.tx.one("SELECT tat, tail FROM pacing WHERE key = ?" + self.tx.store.lock_suffix, (key,))
            self._buckets[key] = Bucket(int(row["tat"]), int(row["tail"])) if row else Bucket()
        found = self._buckets[key]
        return Bucket(found.tat, found.tail)

    def set_bucket(self, key: str, bucket: Bucket) -> None:
        self._buckets[key] = bucket
        self._dirty.add(key)

    def day_count(self, recipient: str, day: str) -> int:
        if (recipient, day) not in self._days:
            self.tx.store.ensure_day_row(self.tx, recipient, day)
            row = self.tx.one(
                "SELECT count FROM daily_counts WHERE recipient = ? AND day = ?" + self.tx.store.lock_suffix,
                (recipient, day),
            )
            self._days[(recipient, day)] = int(row["count"]) if row else 0
        return self._days[(recipient, day)]

    def add_to_day(self, recipient: str, day: str) -> None:
        self._days[(recipient, day)] = self.day_count(recipient, day) + 1
        self._days_dirty.add((recipient, day))

    def flush(self) -> None:
        for key in self._dirty:
            b = self._buckets[key]
            self.tx.execute(
                "INSERT INTO pacing (key, tat, tail) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET tat = excluded.tat, tail = excluded.tail",
                (key, b.tat, b.tail),
            )
        for recipient, day in self._days_dirty:
            self.tx.execute(
                "INSERT INTO daily_counts (recipient, day, count) VALUES (?, ?, ?) "
                "ON CONFLICT (recipient, day) DO UPDATE SET count = excluded.count",
                (recipient, day, self._days[(recipient, day)]),
            )


PrefixFn = Callable[[dict[str, Any], bytes, int], bytes]
"""Builds the header lines prepended at the first attempt (Date, DKIM-Signature)."""

Gate = Callable[[dict[str, Any]], "tuple[str, str] | None"]
"""Sees a due letter's row before a claim: (hold kind, reason) holds it instead of sending."""

NOT_PAUSED = (
    "campaign NOT IN (SELECT campaign FROM campaign_controls WHERE paused_at IS NOT NULL) "
    "AND NOT EXISTS (SELECT 1 FROM campaign_controls WHERE campaign = '*' AND paused_at IS NOT NULL)"
)
"""Letters of a paused campaign (or of every campaign, ``*``) are not claimed."""


def scope(
    campaign: str | None = None, ids: Sequence[Any] = (), recipients: Sequence[str] = ()
) -> tuple[list[str], list[Any]]:
    """The conditions (joined with AND by the caller) and parameters that limit a query to
    a campaign, some message ids and some institutions: whatever is given must match."""
    clauses: list[str] = []
    params: list[Any] = []
    if campaign:
        clauses.append("campaign = ?")
        params.append(campaign)
    if ids:
        clauses.append(f"id IN ({', '.join('?' for _ in ids)})")
        params.extend(ids)
    if recipients:
        clauses.append(f"recipient IN ({', '.join('?' for _ in recipients)})")
        params.extend(recipients)
    return clauses, params


class StoreBase:
    """The connection, transactions and migrations; subclasses connect to SQLite or
    PostgreSQL. The store's operations live in mixins (see :class:`SqlStore`)."""

    if TYPE_CHECKING:  # provided by campaign.store.integrity's mixin: every event is tagged

        def tagging_key(self, tx: Tx) -> bytes: ...

        def event_tags(self, key: bytes, campaign: str | None, message: str | None) -> tuple[str, str]: ...

    dialect = "sqlite"
    lock_suffix = ""  # " FOR UPDATE" on PostgreSQL
    skip_locked = ""  # " FOR UPDATE SKIP LOCKED" on PostgreSQL
    head_select = "SELECT seq, hash FROM chain_head WHERE id = 1"
    label = "store"

    # -- to be provided by subclasses -------------------------------------------------

    def sql(self, statement: str) -> str:
        return statement

    def row_dict(self, cursor: Any, row: Any) -> dict[str, Any]:
        raise NotImplementedError

    @contextlib.contextmanager
    def _transaction(self, write: bool = True, *, head: bool = True) -> Iterator[Any]:
        raise NotImplementedError
        yield

    def close(self) -> None:
        raise NotImplementedError

    def after_copy(self) -> None:
        """Fix what a bulk copy with explicit ids leaves behind (PostgreSQL sequences)."""

    def ensure_pacing_row(self, tx: Tx, key: str) -> None:
        """Create a pacing row before locking it (PostgreSQL); SQLite's BEGIN IMMEDIATE needs none."""

    def ensure_day_row(self, tx: Tx, recipient: str, day: str) -> None:
        """Create a daily-count row before locking it (PostgreSQL)."""

    def _wrap(self, err: Exception) -> StoreError:
        return StoreError(f"{self.label}: {err}")

    @property
    def identity(self) -> str:
        """What this store is, however it was named (the resolved file, the database): two
        senders on the same identity share one queue."""
        return self.label

    @property
    def lock_path(self) -> Path | None:
        """Where `campaign send` takes its one-sender lock (SQLite: beside the database
        file), or None for a store shared by many senders (PostgreSQL: leases instead)."""
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A write transaction; the chain head is written back on commit."""
        with self._transaction() as cursor:
            tx = Tx(self, cursor)
            yield tx
            tx.finish()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Tx]:
        """A read-only transaction (a consistent snapshot; takes no write lock)."""
        with self._transaction(write=False) as cursor:
            yield Tx(self, cursor)

    def _migrate(self) -> None:
        with self._transaction(head=False) as cursor:
            tx = Tx(self, cursor)
            tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
            applied = {r["name"] for r in tx.rows("SELECT name FROM schema_migrations")}
        known = [name for name, _ in MIGRATIONS]
        unknown = applied - set(known)
        if unknown:
            raise StoreError(
                f"{self.label}: created by a newer version of campaign (migrations {', '.join(sorted(unknown))})",
                hint="upgrade campaign; this version will not change that database",
            )
        for name, migration in MIGRATIONS:
            if name in applied:
                continue
            with self._transaction(head=False) as cursor:
                tx = Tx(self, cursor)
                # Another process may have migrated meanwhile (PostgreSQL): check inside the lock.
                if tx.one("SELECT name FROM schema_migrations WHERE name = ?", (name,)):
                    continue
                for statement in migration(self.dialect):
                    if callable(statement):
                        statement(tx)
                    else:
                        tx.execute(statement)
                from campaign.models import utcnow

                tx.execute(
                    "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", (name, to_rfc3339(utcnow()))
                )

    def migrations(self) -> list[str]:
        with self.reading() as tx:
            return [r["name"] for r in tx.rows("SELECT name FROM schema_migrations ORDER BY name")]

    # -- queue -------------------------------------------------------------------------

    # -- queries -----------------------------------------------------------------------


# Tables a copy carries, in dependency order, with the column that orders them.


# The operations, by capability (each module imports the plumbing above from here).
from campaign.store.queries import QueryOps  # noqa: E402
from campaign.store.queue import EnqueueSession, QueueOps  # noqa: E402


class SqlStore(QueueOps, QueryOps, ControlStore, IntegrityMixin, ReceiptsMixin):
    """The store: the plumbing of :class:`StoreBase` and every operation, by capability:
    ``queue`` (queueing, claims, outcomes, recovery, release), ``queries`` (reads),
    ``controls`` (pause, resume, cancel), ``integrity`` (the chain key, bytes bound to the
    chain), ``receipts`` (reports and replies). SQLite and PostgreSQL subclass it."""


__all__ = ["EnqueueSession", "Expr", "Gate", "PrefixFn", "SqlStore", "StoreBase", "Tx", "iso"]
