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
import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from campaign import chain, transitions
from campaign.errors import StoreConflictError, StoreError
from campaign.models import Event, Invalid, Message, Status, from_rfc3339, parse, to_rfc3339
from campaign.pacing import Bucket, Pacer
from campaign.store import (
    Claim,
    Claimed,
    Existing,
    Hold,
    MessageFilter,
    NewMessage,
    Outcome,
    bodies,
)
from campaign.store.controls import ControlStore
from campaign.store.integrity import INTEGRITY, IntegrityMixin
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

    def __init__(self, store: SqlStore, cursor: Any) -> None:
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


@dataclass
class EnqueueSession:
    """Queue many messages in one transaction (see :meth:`SqlStore.enqueue`)."""

    tx: Tx
    now_ms: int
    added: int = 0
    replaced: int = 0

    def lookup(self, campaign: str, letter: str, recipient: str, email_key: str, cases: str = "") -> Existing | None:
        row = self.tx.one(
            "SELECT id, message_id, envid, status, content_sha256, created_at, possible_duplicate FROM messages "
            "WHERE campaign = ? AND letter = ? AND recipient = ? AND email_key = ? AND cases = ?",
            (campaign, letter, recipient, email_key, cases),
        )
        if not row:
            return None
        found = dict(row)
        found["possible_duplicate"] = bool(found["possible_duplicate"])
        return Existing(**found)

    def add(self, msg: NewMessage) -> int:
        now = iso(self.now_ms)
        due = msg.not_before_ms if msg.not_before_ms is not None else self.now_ms
        self.tx.execute(
            "INSERT INTO messages (campaign, letter, recipient, email, email_key, domain, contact_name, "
            "lang, subject, message_id, envid, content_sha256, smtputf8, status, attempts, "
            "created_at, updated_at, next_attempt_at, wait_reason, in_reply_to, cases) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                msg.campaign,
                msg.letter,
                msg.recipient,
                msg.email,
                msg.email_key,
                msg.domain,
                msg.contact_name,
                msg.lang,
                msg.subject,
                msg.message_id,
                msg.envid,
                msg.content_sha256,
                int(msg.smtputf8),
                now,
                now,
                due,
                msg.wait_reason,
                msg.in_reply_to,
                msg.cases,
            ),
        )
        row = self.tx.cursor.fetchone()
        row_id = int(row[0] if not isinstance(row, dict) else row["id"])
        stored, encoding = bodies.encode(self.tx, msg.body, f"{msg.campaign}|{msg.letter}|{msg.lang}")
        self.tx.execute("INSERT INTO message_bodies (id, body, encoding) VALUES (?, ?, ?)", (row_id, stored, encoding))
        data: dict[str, Any] = {
            "letter": msg.letter,
            "recipient": msg.recipient,
            "email": msg.email,
            "lang": msg.lang,
            "subject": msg.subject,
            "content_sha256": msg.content_sha256,
            "body_sha256": chain.sha256_hex(msg.body),  # the exact stored bytes, checked before each send
            "envid": msg.envid,
        }
        if msg.not_before_ms is not None:
            data["not_before"] = iso(msg.not_before_ms)
        if msg.in_reply_to:
            data["in_reply_to"] = msg.in_reply_to
        if msg.cases:
            data["cases"] = msg.cases  # ids only: nothing about the people
        if msg.attachments:
            data["attachments"] = [dict(a) for a in msg.attachments]
        self.tx.append(self.now_ms, "queued", message=msg.message_id, campaign=msg.campaign, data=data)
        self.added += 1
        return self.added

    def reschedule(self, existing: Existing, campaign: str, at_ms: int, reason: str) -> None:
        """``queue --at`` on a letter already queued: a new earliest time."""
        from campaign.store.controls import reschedule

        reschedule(
            self.tx,
            existing.id,
            existing.status,
            existing.message_id,
            campaign,
            now_ms=self.now_ms,
            at_ms=at_ms,
            reason=reason,
        )

    def replace(self, existing: Existing, msg: NewMessage) -> None:
        """Replace the bytes of an unsent message, keeping its Message-ID and envelope id.

        The send prefix (Date, DKIM) fixed at an earlier attempt belongs to the old bytes: it
        is reset, so the next attempt makes a new one and logs the hash of what it sends. A
        letter flagged as a possible duplicate is refused: the old text may already be at the
        institution, and a different text under the same Message-ID would be a second letter.
        """
        status = Status(existing.status)
        if status not in transitions.UNSENT:
            raise StoreError(f"message {existing.id} is {existing.status}; only unsent messages can be updated")
        if existing.possible_duplicate:
            raise StoreError(
                f"message {existing.id} to {msg.recipient} may already have reached the institution "
                "(possible duplicate): --update would send a different text under the same Message-ID; "
                "nothing was queued",
                hint="leave it as it is, or queue the new text as a new campaign (--campaign NAME)",
            )
        self.tx.move(
            existing.id,
            "updated",
            sources=(status,),
            target=None,
            now_ms=self.now_ms,
            message=existing.message_id,
            campaign=msg.campaign,
            sets={
                "content_sha256": msg.content_sha256,
                "subject": msg.subject,
                "lang": msg.lang,
                "contact_name": msg.contact_name,
                "smtputf8": int(msg.smtputf8),
                "wire_prefix": None,
                "wire_sha256": None,
                "updated_at": iso(self.now_ms),
            },
            data={
                "previous_sha256": existing.content_sha256,
                "content_sha256": msg.content_sha256,
                "body_sha256": chain.sha256_hex(msg.body),
                "subject": msg.subject,
                "lang": msg.lang,
            },
        )
        stored, encoding = bodies.encode(self.tx, msg.body, f"{msg.campaign}|{msg.letter}|{msg.lang}")
        self.tx.execute(
            "UPDATE message_bodies SET body = ?, encoding = ? WHERE id = ?", (stored, encoding, existing.id)
        )
        self.replaced += 1


class SqlStore(ControlStore, IntegrityMixin, ReceiptsMixin):
    """The store; subclasses connect to SQLite or PostgreSQL. Capabilities live in mixins:
    ``campaign.store.controls`` (pause, resume, cancel), ``campaign.store.integrity`` (the
    chain key, bytes bound to the chain), ``campaign.store.receipts`` (reports and replies)."""

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

    def __enter__(self) -> SqlStore:
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

    @contextlib.contextmanager
    def enqueue(self, now_ms: int) -> Iterator[EnqueueSession]:
        """One transaction for a whole ``queue`` command: all messages or none."""
        with self.transaction() as tx:
            yield EnqueueSession(tx, now_ms)

    def queued_keys(self, campaign: str, letter: str) -> dict[tuple[str, str, str], Existing]:
        """What is queued already for one campaign and letter, by (institution, address key,
        cases): a read, no lock (``queue`` re-checks inside its short write transaction)."""
        with self.reading() as tx:
            rows = tx.rows(
                "SELECT id, message_id, envid, status, content_sha256, created_at, recipient, email_key, cases "
                "FROM messages WHERE campaign = ? AND letter = ?",
                (campaign, letter),
            )
            return {
                (r["recipient"], r["email_key"], r["cases"]): Existing(
                    id=r["id"],
                    message_id=r["message_id"],
                    envid=r["envid"],
                    status=r["status"],
                    content_sha256=r["content_sha256"],
                    created_at=r["created_at"],
                )
                for r in rows
            }

    def recover(self, now_ms: int, *, all_sending: bool) -> list[str]:
        """Make crashed ``sending`` messages due again, logged as possible duplicates.

        With ``all_sending`` (SQLite, under the send lock) every ``sending`` message is
        from a crash; otherwise only those whose lease has expired.
        """
        with self.transaction() as tx:
            sql = "SELECT id, message_id, campaign, attempts, lease_owner FROM messages WHERE status = 'sending'"
            params: tuple[Any, ...] = ()
            if not all_sending:
                sql += " AND lease_expires < ?"
                params = (now_ms,)
            rows = tx.rows(sql + " ORDER BY id" + self.skip_locked, params)
            recovered = []
            for row in rows:
                moved = tx.move(
                    row["id"],
                    "crash_recovered",
                    sources=(Status.SENDING,),
                    target=Status.DEFERRED,
                    now_ms=now_ms,
                    message=row["message_id"],
                    campaign=row["campaign"],
                    owner=row["lease_owner"] if row["lease_owner"] is not None else None,
                    strict=False,
                    sets={
                        "next_attempt_at": now_ms,
                        "possible_duplicate": 1,
                        "lease_owner": None,
                        "lease_expires": None,
                        "wait_reason": "resending after a crash: possible duplicate",
                        "updated_at": iso(now_ms),
                    },
                    data={
                        "attempt": int(row["attempts"]),
                        "possible_duplicate": True,
                        "worker": row["lease_owner"],
                        "note": "was being sent when a run stopped; it will be sent again with the same bytes "
                        "and may reach the institution twice",
                    },
                )
                if moved:
                    recovered.append(str(row["message_id"]))
            return recovered

    def renew_leases(self, worker: str, now_ms: int, lease_ms: int) -> int:
        """Extend every lease ``worker`` holds (letters claimed and not yet finished): a live
        worker keeps its letters however long a send takes. Returns how many."""
        with self.transaction() as tx:
            tx.execute(
                "UPDATE messages SET lease_expires = ? WHERE status = 'sending' AND lease_owner = ?",
                (now_ms + lease_ms, worker),
            )
            renewed = int(tx.cursor.rowcount)
            tx.execute("UPDATE workers SET heartbeat_at = ? WHERE id = ?", (iso(now_ms), worker))
        return renewed

    def claim(
        self,
        now_ms: int,
        *,
        worker: str,
        limit: int,
        pacer: Pacer,
        lease_ms: int,
        prefix: PrefixFn,
        campaign: str | None = None,
        ids: Sequence[int] = (),
        recipients: Sequence[str] = (),
        gate: Gate | None = None,
    ) -> Claim:
        """Mark up to ``limit`` due messages ``sending`` (committed before sending).

        Paused campaigns are skipped. ``gate`` sees each due letter first: a reason it
        returns holds the letter instead (``held``, with that reason, no attempt), e.g. an
        institution no longer in recipients.yaml.
        """
        # A few spare rows in case some are parked by a limit; parked rows leave the due
        # window, so the next claim sees fresh ones.
        scan = limit * 2 + 2
        where = f"status IN ({_PENDING_SQL}) AND next_attempt_at <= ? AND {NOT_PAUSED}"
        params: list[Any] = [now_ms]
        if campaign:
            where += " AND campaign = ?"
            params.append(campaign)
        if ids:
            where += f" AND id IN ({', '.join('?' for _ in ids)})"
            params.extend(ids)
        if recipients:
            where += f" AND recipient IN ({', '.join('?' for _ in recipients)})"
            params.extend(recipients)
        with self.transaction() as tx:
            state = DbPacingState(tx)
            first = pacer.check_global(now_ms, state)
            if not first.ok:
                return Claim([], first.until, first.reason)
            rows = tx.rows(
                "SELECT id, message_id, envid, campaign, letter, recipient, email, email_key, domain, status, cases, "
                "attempts, smtputf8, possible_duplicate, first_attempt_at, wire_prefix, wire_sha256 FROM messages "
                f"WHERE {where} ORDER BY next_attempt_at, id LIMIT ?" + self.skip_locked,
                (*params, scan),
            )
            items: list[Claimed] = []
            held: list[Hold] = []
            wait: tuple[int | None, str | None] = (None, None)
            for row in rows:
                if len(items) >= limit:
                    break
                hold = gate(row) if gate is not None else None
                if hold is not None:
                    self._hold(tx, row, hold, now_ms)
                    held.append(Hold(int(row["id"]), row["message_id"], row["campaign"], row["recipient"], *hold))
                    continue
                verdict = pacer.check_global(now_ms, state)
                if not verdict.ok:
                    wait = (verdict.until, verdict.reason)
                    break
                verdict = pacer.check(now_ms, row["recipient"], row["domain"], state)
                if not verdict.ok:
                    slot = pacer.park(now_ms, verdict, state)
                    tx.execute(
                        "UPDATE messages SET next_attempt_at = ?, wait_reason = ? WHERE id = ?",
                        (slot, verdict.reason, row["id"]),
                    )
                    continue
                claimed = self._mark_sending(tx, row, now_ms, worker, lease_ms, prefix)
                if claimed is None:
                    continue  # held: its bytes are not the bytes the log recorded
                pacer.consume(now_ms, row["recipient"], row["domain"], state)
                items.append(claimed)
            state.flush()
            return Claim(items, *wait, held=held)

    def _hold(self, tx: Tx, row: dict[str, Any], hold: tuple[str, str], now_ms: int) -> None:
        kind, reason = hold
        tx.move(
            int(row["id"]),
            "held",
            sources=(Status(row["status"]),),
            target=Status.HELD,
            now_ms=now_ms,
            message=row["message_id"],
            campaign=row["campaign"],
            sets={"hold_reason": kind, "wait_reason": reason, "next_attempt_at": None, "updated_at": iso(now_ms)},
            data={"reason": reason, "hold": kind, "attempt": int(row["attempts"])},
        )

    def _mark_sending(
        self, tx: Tx, row: dict[str, Any], now_ms: int, worker: str, lease_ms: int, prefix: PrefixFn
    ) -> Claimed | None:
        """Mark one letter ``sending``, or hold it (None) when its bytes are not the bytes the
        log recorded (see ``campaign.store.integrity``)."""
        body_row = tx.one("SELECT body, encoding FROM message_bodies WHERE id = ?", (row["id"],))
        problem, body, wire_prefix, details = self.seal_problem(
            tx, row, body_row["body"] if body_row else None, body_row["encoding"] if body_row else None
        )
        if problem is not None:
            self.hold_for_integrity(tx, row, now_ms, worker, problem, details)
            return None
        first_attempt_at = row["first_attempt_at"]
        if wire_prefix is None:
            wire_prefix = prefix(dict(row), body, now_ms)
            first_attempt_at = first_attempt_at or iso(now_ms)
        wire = wire_prefix + body
        wire_sha = chain.sha256_hex(wire)
        attempt = int(row["attempts"]) + 1
        duplicate = bool(row["possible_duplicate"])
        tx.move(
            int(row["id"]),
            "sending",
            sources=(Status(row["status"]),),
            target=Status.SENDING,
            now_ms=now_ms,
            message=row["message_id"],
            campaign=row["campaign"],
            sets={
                "attempts": attempt,
                "lease_owner": worker,
                "lease_expires": now_ms + lease_ms,
                "wait_reason": None,
                "updated_at": iso(now_ms),
                "wire_prefix": wire_prefix,
                "wire_sha256": wire_sha,
                "first_attempt_at": first_attempt_at,
            },
            data={
                "attempt": attempt,
                "sha256": wire_sha,
                "size": len(wire),
                "worker": worker,
                "possible_duplicate": True if duplicate else None,
            },
        )
        return Claimed(
            id=int(row["id"]),
            message_id=row["message_id"],
            envid=row["envid"],
            campaign=row["campaign"],
            recipient=row["recipient"],
            email=row["email"],
            domain=row["domain"],
            wire=wire,
            wire_sha256=wire_sha,
            attempt=attempt,
            smtputf8=bool(row["smtputf8"]),
            possible_duplicate=duplicate,
            first_attempt_at=str(first_attempt_at),
            previous_status=str(row["status"]),
            claimed_ms=now_ms,
        )

    def finish(self, outcomes: Iterable[Outcome], now_ms: int, *, worker: str) -> int:
        """Record outcomes of claimed messages; returns how many were applied.

        Idempotent: an outcome this worker already recorded for the same attempt (a retry
        after a connection lost during COMMIT, or a recovery file applied twice) changes
        nothing and logs nothing. A message whose lease another worker took over meanwhile
        is not overwritten; the outcome is still logged, as ``late_outcome``.
        """
        outcomes = list(outcomes)
        applied = 0
        tally = {"sent": 0, "deferred": 0, "failed": 0}
        with self.transaction() as tx:
            for o in sorted(outcomes, key=lambda o: o.id):  # the lock order: message rows by id
                key = f"{worker}:{o.attempt}"
                data: dict[str, Any] = {
                    "attempt": o.attempt,
                    "code": o.code,
                    "status": o.enhanced,
                    "reply": o.reply,
                    "remote_id": o.remote_id,
                    "next_attempt_at": iso(o.next_attempt_ms) if o.next_attempt_ms else None,
                    "possible_duplicate": True if o.possible_duplicate else None,
                    **o.data,
                }
                move = "outcome_unknown_final" if o.event == "outcome_unknown" and o.status == "failed" else o.event
                changed = tx.move(
                    o.id,
                    move,
                    sources=(Status.SENDING,),
                    target=Status(o.status),
                    now_ms=now_ms,
                    message=o.message_id,
                    campaign=o.campaign,
                    owner=worker,
                    strict=False,
                    sets={
                        "last_code": o.code,
                        "last_status": o.enhanced,
                        "last_reply": o.reply,
                        "remote_id": Expr("COALESCE(?, remote_id)", (o.remote_id,)),
                        "sent_at": Expr("COALESCE(?, sent_at)", (iso(now_ms) if o.status == "sent" else None,)),
                        "next_attempt_at": o.next_attempt_ms,
                        "wait_reason": None,
                        "possible_duplicate": int(o.possible_duplicate),
                        "lease_owner": None,
                        "lease_expires": None,
                        "dsn_requested": Expr("COALESCE(?, dsn_requested)", (_flag(o.data.get("dsn")),)),
                        "outcome_key": key,
                        "hold_reason": "policy" if o.status == "held" else None,
                        "updated_at": iso(now_ms),
                    },
                    data=data,
                )
                if not changed:
                    row = tx.one("SELECT outcome_key FROM messages WHERE id = ?", (o.id,))
                    if row is not None and row["outcome_key"] == key:
                        continue  # recorded before: the commit had gone through
                    tx.append(now_ms, "late_outcome", message=o.message_id, campaign=o.campaign, data=data)
                    continue
                applied += 1
                bucket = "failed" if o.status in ("failed", "held") else o.status
                if bucket in tally:
                    tally[bucket] += 1
            tx.execute(
                "UPDATE workers SET sent = sent + ?, deferred = deferred + ?, failed = failed + ?, heartbeat_at = ? "
                "WHERE id = ?",
                (tally["sent"], tally["deferred"], tally["failed"], iso(now_ms), worker),
            )
        return applied

    def worker_started(self, worker: str, now_ms: int, *, label: str, campaign: str | None, concurrency: int) -> None:
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO workers (id, label, campaign, concurrency, started_at, heartbeat_at) VALUES (?, "
                "?, ?, ?, ?, ?)",
                (worker, label, campaign, concurrency, iso(now_ms), iso(now_ms)),
            )

    def worker_beat(self, worker: str, now_ms: int, *, stopped: bool = False) -> None:
        with self.transaction() as tx:
            if stopped:
                tx.execute(
                    "UPDATE workers SET heartbeat_at = ?, stopped_at = ? WHERE id = ?",
                    (iso(now_ms), iso(now_ms), worker),
                )
            else:
                tx.execute("UPDATE workers SET heartbeat_at = ? WHERE id = ?", (iso(now_ms), worker))

    def workers(self, since_ms: int) -> list[dict[str, Any]]:
        """Workers seen since ``since_ms``, with their live leases."""
        with self.reading() as tx:
            rows = tx.dicts(
                "SELECT w.id, w.label, w.campaign, w.concurrency, w.started_at, w.heartbeat_at, w.stopped_at, w.sent, "
                "w.deferred, w.failed, COUNT(m.id) AS leases, MIN(m.lease_expires) AS lease_expires "
                "FROM workers w LEFT JOIN messages m ON m.lease_owner = w.id AND m.status = 'sending' "
                "WHERE w.heartbeat_at >= ? GROUP BY w.id, w.label, w.campaign, w.concurrency, w.started_at, "
                "w.heartbeat_at, w.stopped_at, w.sent, w.deferred, w.failed ORDER BY w.started_at",
                (iso(since_ms),),
            )
        return rows

    def unclaim(self, items: Iterable[Claimed], now_ms: int, *, worker: str, reason: str) -> int:
        """Put claimed messages back as they were: nothing was sent (the run stopped first).
        Returns how many were put back (a message another worker took over is left alone)."""
        done = 0
        with self.transaction() as tx:
            for item in sorted(items, key=lambda i: i.id):
                done += tx.move(
                    item.id,
                    "not_sent",
                    sources=(Status.SENDING,),
                    target=Status(item.previous_status),
                    now_ms=now_ms,
                    message=item.message_id,
                    campaign=item.campaign,
                    owner=worker,
                    strict=False,
                    sets={
                        "attempts": Expr("attempts - 1"),
                        "lease_owner": None,
                        "lease_expires": None,
                        "updated_at": iso(now_ms),
                    },
                    data={"attempt": item.attempt, "reason": reason},
                )
        return done

    def release(self, ids: Sequence[int], now_ms: int, *, note: str | None = None) -> list[str]:
        """Held or failed messages → queued again (a person checked them). A released letter
        gets a fresh ``max_age`` window: its age counts from the release."""
        released = []
        with self.transaction() as tx:
            for mid in ids:
                row = tx.one(
                    "SELECT id, message_id, campaign, status, hold_reason, wait_reason, last_status FROM messages "
                    "WHERE id = ?",
                    (mid,),
                )
                if row is None:
                    raise StoreError(f"no message with id {mid}", hint="see the ids with `campaign log`")
                if row["status"] not in ("held", "failed"):
                    raise StoreError(f"message {mid} is {row['status']}, not held or failed; nothing to release")
                if row["status"] == "held" and row["hold_reason"] == "registry":
                    raise StoreError(
                        f"message {mid} is held because {row['wait_reason']}; release would send the old letter",
                        hint="queue it again for the institution as it is now (`campaign queue LETTER --to ID`), "
                        "or `campaign cancel " + str(mid) + "`",
                    )
                data: dict[str, Any] = {"from": row["status"], "note": note}
                sets: dict[str, Any] = {
                    "next_attempt_at": now_ms,
                    "wait_reason": None,
                    "hold_reason": None,
                    # a fresh max_age window (a letter never attempted has none yet)
                    "first_attempt_at": Expr("CASE WHEN first_attempt_at IS NULL THEN NULL ELSE ? END", (iso(now_ms),)),
                    "updated_at": iso(now_ms),
                }
                if row["status"] == "held" and row["last_status"] == INTEGRITY:
                    # Held because its bytes did not match the log: a person checked them and
                    # accepts them as they are now. The release seals these bytes.
                    stored = tx.one("SELECT body, encoding FROM message_bodies WHERE id = ?", (mid,))
                    value = stored["body"] if stored is not None else None
                    if stored is None or not isinstance(value, bytes | memoryview):
                        raise StoreError(f"message {mid}: its stored bytes are missing or damaged; it cannot be sent")
                    try:
                        data["body_sha256"] = chain.sha256_hex(bodies.decode(tx, value, stored["encoding"]))
                    except (zlib.error, ValueError):
                        raise StoreError(f"message {mid}: its stored bytes are damaged; it cannot be sent") from None
                    data["accepted"] = "the stored bytes, as a person checked them"
                    sets.update(wire_prefix=None, wire_sha256=None, last_status=None)
                tx.move(
                    mid,
                    "released",
                    sources=(Status(row["status"]),),
                    target=Status.QUEUED,
                    now_ms=now_ms,
                    message=row["message_id"],
                    campaign=row["campaign"],
                    sets=sets,
                    data=data,
                )
                released.append(row["message_id"])
        return released

    def append_event(
        self,
        now_ms: int,
        kind: str,
        *,
        message: str | None = None,
        campaign: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> str:
        """Log an event that changes no message (run started, run stopped)."""
        with self.transaction() as tx:
            return tx.append(now_ms, kind, message=message, campaign=campaign, data=data)

    def fail_expired(self, now_ms: int, max_age_ms: int, campaign: str | None = None) -> list[str]:
        """Deferred messages whose first attempt is older than max_age → failed."""
        cutoff = iso(now_ms - max_age_ms)
        sql = (
            "SELECT id, message_id, campaign, attempts, last_reply FROM messages "
            "WHERE status = 'deferred' AND first_attempt_at < ?"
        )
        params: list[Any] = [cutoff]
        if campaign:
            sql += " AND campaign = ?"
            params.append(campaign)
        with self.transaction() as tx:
            rows = tx.rows(sql + " ORDER BY id", params)
            for row in rows:
                tx.move(
                    row["id"],
                    "failed",
                    sources=(Status.DEFERRED,),
                    target=Status.FAILED,
                    now_ms=now_ms,
                    message=row["message_id"],
                    campaign=row["campaign"],
                    sets={"next_attempt_at": None, "updated_at": iso(now_ms)},
                    data={
                        "attempt": int(row["attempts"]),
                        "reason": "max_age reached: gave up retrying",
                        "reply": row["last_reply"],
                    },
                )
            return [r["message_id"] for r in rows]

    # -- queries -----------------------------------------------------------------------

    def _filter_sql(self, f: MessageFilter) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if f.campaign:
            clauses.append("campaign = ?")
            params.append(f.campaign)
        if f.statuses:
            clauses.append(f"status IN ({', '.join('?' for _ in f.statuses)})")
            params.extend(f.statuses)
        if f.recipient:
            clauses.append("recipient = ?")
            params.append(f.recipient)
        if f.since_ms is not None:
            # Stored times all come from iso() (milliseconds, "Z"): formatted the same way, text
            # order is time order.
            clauses.append("updated_at >= ?")
            params.append(iso(f.since_ms))
        if f.ids:
            clauses.append(f"id IN ({', '.join('?' for _ in f.ids)})")
            params.extend(f.ids)
        if f.message_ids:
            clauses.append(f"message_id IN ({', '.join('?' for _ in f.message_ids)})")
            params.extend(f.message_ids)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def messages(self, f: MessageFilter | None = None) -> list[Message]:
        f = f or MessageFilter()
        where, params = self._filter_sql(f)
        with self.reading() as tx:
            rows = tx.rows(f"SELECT {self.message_columns()} FROM messages{where} ORDER BY id", params)
        return [self.to_message(r) for r in rows]

    def message_columns(self) -> str:
        return MESSAGE_COLUMNS

    def to_message(self, row: dict[str, Any]) -> Message:
        data = dict(row)
        for key in (
            "created_at",
            "updated_at",
            "sent_at",
            "first_attempt_at",
            "receipt_at",
            "delayed_at",
            "displayed_at",
            "deleted_at",
            "replied_at",
            "auto_replied_at",
        ):
            if data.get(key):
                data[key] = from_rfc3339(data[key])
        nxt = data.pop("next_attempt_at", None)
        data["next_attempt_at"] = from_rfc3339(iso(int(nxt))) if nxt is not None else None
        data["possible_duplicate"] = bool(data.get("possible_duplicate"))
        data["body_sha256"] = data.pop("content_sha256")
        data["cases"] = tuple(c for c in (data.get("cases") or "").split(",") if c)
        for key in ("first_attempt_at", "wire_sha256", "domain", "contact_name"):
            data.pop(key, None)
        try:
            return parse(Message, data)
        except (Invalid, ValueError, TypeError) as err:
            # A row no version of campaign wrote: say so in one line, never a traceback.
            field = ".".join(map(str, err.loc)) if isinstance(err, Invalid) else "a value"
            raise StoreError(
                f"{self.label}: message {data.get('id')}: {field} is not valid in the database ({err}): "
                "it was changed outside campaign",
                hint="restore the database from a backup; `campaign log verify` shows what the log recorded",
            ) from None

    def wire_bytes(self, message_row_id: int) -> tuple[bytes | None, bytes]:
        """(prefix added at the first attempt or None, stored body)."""
        with self.reading() as tx:
            row = tx.one(
                "SELECT m.wire_prefix, b.body, b.encoding FROM messages m JOIN message_bodies b ON b.id = m.id "
                "WHERE m.id = ?",
                (message_row_id,),
            )
            if row is None:
                raise StoreError(f"no message with id {message_row_id}")
            body = bodies.decode(tx, row["body"], row["encoding"])
        prefix = bytes(row["wire_prefix"]) if row["wire_prefix"] is not None else None
        return prefix, body

    def counts(self, campaign: str | None = None) -> dict[str, dict[str, int]]:
        """{campaign: {status: count}}."""
        sql = "SELECT campaign, status, COUNT(*) AS n FROM messages"
        params: list[Any] = []
        if campaign:
            sql += " WHERE campaign = ?"
            params.append(campaign)
        sql += " GROUP BY campaign, status ORDER BY campaign, status"
        out: dict[str, dict[str, int]] = {}
        with self.reading() as tx:
            for row in tx.rows(sql, params):
                out.setdefault(row["campaign"], {})[row["status"]] = int(row["n"])
        return out

    def next_due(
        self, campaign: str | None = None, ids: Sequence[int] = (), recipients: Sequence[str] = ()
    ) -> tuple[int, str | None] | None:
        """(epoch ms, reason) of the earliest pending message a claim with the same filters
        could take (so a run limited to some letters never waits for the others)."""
        sql = f"SELECT next_attempt_at, wait_reason FROM messages WHERE status IN ({_PENDING_SQL}) AND {NOT_PAUSED}"
        params: list[Any] = []
        if campaign:
            sql += " AND campaign = ?"
            params.append(campaign)
        if ids:
            sql += f" AND id IN ({', '.join('?' for _ in ids)})"
            params.extend(ids)
        if recipients:
            sql += f" AND recipient IN ({', '.join('?' for _ in recipients)})"
            params.extend(recipients)
        sql += " ORDER BY next_attempt_at, id LIMIT 1"
        with self.reading() as tx:
            row = tx.one(sql, params)
        return (int(row["next_attempt_at"]), row["wait_reason"]) if row else None

    def receipt_counts(self, campaign: str | None = None) -> dict[str, dict[str, int]]:
        """{campaign: {"awaiting": sent with a report requested and none yet, "delayed": with a
        delay report, "not_requested": sent through a server that offered no DSN (no report
        will come, so they are not "awaiting")}}."""
        sql = (
            "SELECT campaign, "
            "SUM(CASE WHEN delayed_at IS NULL AND COALESCE(dsn_requested, 1) = 1 THEN 1 ELSE 0 END) AS awaiting, "
            "SUM(CASE WHEN delayed_at IS NOT NULL THEN 1 ELSE 0 END) AS delayed, "
            "SUM(CASE WHEN delayed_at IS NULL AND dsn_requested = 0 THEN 1 ELSE 0 END) AS not_requested "
            "FROM messages WHERE status = 'sent'"
        )
        params: list[Any] = []
        if campaign:
            sql += " AND campaign = ?"
            params.append(campaign)
        sql += " GROUP BY campaign"
        with self.reading() as tx:
            return {
                r["campaign"]: {
                    "awaiting": int(r["awaiting"]),
                    "delayed": int(r["delayed"]),
                    "not_requested": int(r["not_requested"]),
                }
                for r in tx.rows(sql, params)
            }

    def waiting(self, campaign: str | None = None) -> list[tuple[str, int, int]]:
        """Why pending letters wait: (reason, how many, earliest next attempt in epoch ms).
        Letters with no reason recorded yet (never looked at by a send) are listed under
        ``ready``; ``status`` explains those with the registry's etiquette."""
        sql = (
            f"SELECT CASE WHEN NOT ({NOT_PAUSED}) THEN 'paused: `campaign resume` to send' "
            "ELSE COALESCE(wait_reason, CASE WHEN status = 'deferred' THEN 'retry after a temporary failure' "
            "ELSE 'ready' END) END AS reason, COUNT(*) AS n, MIN(next_attempt_at) AS first "
            f"FROM messages WHERE status IN ({_PENDING_SQL})"
        )
        params: list[Any] = []
        if campaign:
            sql += " AND campaign = ?"
            params.append(campaign)
        sql += " GROUP BY 1 ORDER BY 3"
        with self.reading() as tx:
            return [(r["reason"], int(r["n"]), int(r["first"] or 0)) for r in tx.rows(sql, params)]

    def ready_by_recipient(self, campaign: str | None = None) -> list[tuple[str, int, int]]:
        """Pending letters with no wait reason yet, per institution: (institution, how many,
        earliest). ``status`` asks the pacer why each would wait (office hours, caps)."""
        sql = (
            "SELECT recipient, COUNT(*) AS n, MIN(next_attempt_at) AS first FROM messages "
            f"WHERE status = 'queued' AND wait_reason IS NULL AND {NOT_PAUSED}"
        )
        params: list[Any] = []
        if campaign:
            sql += " AND campaign = ?"
            params.append(campaign)
        with self.reading() as tx:
            rows = tx.rows(sql + " GROUP BY recipient", params)
        return [(r["recipient"], int(r["n"]), int(r["first"] or 0)) for r in rows]

    def day_counts(self, day_by_recipient: dict[str, str]) -> dict[str, int]:
        """Letters counted against each institution's daily cap on the given local day."""
        found: dict[str, int] = {}
        with self.reading() as tx:
            for recipient, day in day_by_recipient.items():
                row = tx.one("SELECT count FROM daily_counts WHERE recipient = ? AND day = ?", (recipient, day))
                if row is not None:
                    found[recipient] = int(row["count"])
        return found

    def due_summary(
        self, now_ms: int, campaign: str | None = None, recipients: Sequence[str] = ()
    ) -> tuple[int, int, int, int]:
        """(letters due now, their institutions, letters waiting for later, letters of paused
        campaigns): what a send now would do, for its confirmation question. Letters left
        ``sending`` by a run that died are due (the send recovers them first): on SQLite
        every one (a sender holds the lock), on a shared store those whose lease expired."""
        crashed = "lease_expires IS NULL OR lease_expires < ?" if self.lock_path is None else "1 = 1"
        due = (
            f"(({NOT_PAUSED}) AND ((status IN ({_PENDING_SQL}) AND next_attempt_at <= ?) "
            f"OR (status = 'sending' AND ({crashed}))))"
        )
        clauses = [f"status IN ({_PENDING_SQL}, 'sending')"]
        params: list[Any] = []
        if campaign:
            clauses.append("campaign = ?")
            params.append(campaign)
        if recipients:
            clauses.append(f"recipient IN ({', '.join('?' for _ in recipients)})")
            params.extend(recipients)
        marks = [now_ms, now_ms] if self.lock_path is None else [now_ms]
        sql = (
            f"SELECT SUM(CASE WHEN {due} THEN 1 ELSE 0 END) AS due, "
            f"COUNT(DISTINCT CASE WHEN {due} THEN recipient END) AS r, "
            f"SUM(CASE WHEN ({NOT_PAUSED}) AND status IN ({_PENDING_SQL}) AND next_attempt_at > ? THEN 1 ELSE 0 END) "
            f"AS later, SUM(CASE WHEN ({NOT_PAUSED}) THEN 0 ELSE 1 END) AS paused "
            f"FROM messages WHERE {' AND '.join(clauses)}"
        )
        with self.reading() as tx:
            row = tx.one(sql, [*marks, *marks, now_ms, *params])
        assert row is not None
        return int(row["due"] or 0), int(row["r"] or 0), int(row["later"] or 0), int(row["paused"] or 0)

    def pending_summary(self, campaign: str | None = None) -> tuple[int, int]:
        """(messages, institutions) still to send (paused campaigns left out)."""
        sql = (
            "SELECT COUNT(*) AS n, COUNT(DISTINCT recipient) AS r FROM messages "
            f"WHERE status IN ({_PENDING_SQL}, 'sending') AND {NOT_PAUSED}"
        )
        params: list[Any] = []
        if campaign:
            sql += " AND campaign = ?"
            params.append(campaign)
        with self.reading() as tx:
            row = tx.one(sql, params)
        assert row is not None
        return int(row["n"]), int(row["r"])

    def campaigns(self) -> list[str]:
        with self.reading() as tx:
            return [r["campaign"] for r in tx.rows("SELECT DISTINCT campaign FROM messages ORDER BY campaign")]

    def events(
        self,
        *,
        message: str | None = None,
        campaign: str | None = None,
        since_ms: int | None = None,
        after_seq: int = 0,
        limit: int | None = None,
    ) -> list[Event]:
        clauses: list[str] = ["seq > ?"]
        params: list[Any] = [after_seq]
        if message:
            clauses.append("message = ?")
            params.append(message)
        if campaign:
            clauses.append("campaign = ?")
            params.append(campaign)
        if since_ms is not None:
            clauses.append("time >= ?")
            params.append(iso(since_ms))
        sql = "SELECT seq, time, kind, message, campaign, data, prev_hash, hash FROM events WHERE " + " AND ".join(
            clauses
        )
        sql += " ORDER BY seq"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self.reading() as tx:
            rows = tx.rows(sql, params)
        return [self.to_event(r) for r in rows]

    def iter_events(self, batch: int = 5000) -> Iterator[Event]:
        """Every event in chain order, in batches (for verify and export)."""
        last = 0
        while True:
            chunk = self.events(after_seq=last, limit=batch)
            if not chunk:
                return
            yield from chunk
            last = chunk[-1].seq

    @staticmethod
    def to_event(row: dict[str, Any]) -> Event:
        return Event(
            seq=int(row["seq"]),
            time=from_rfc3339(row["time"]),
            kind=row["kind"],
            message=row["message"],
            campaign=row["campaign"],
            data=json.loads(row["data"]),
            prev_hash=row["prev_hash"],
            hash=row["hash"],
        )

    def raw_events(self, after_seq: int = 0, limit: int = 5000) -> list[dict[str, Any]]:
        """Events exactly as stored (text columns), for verification."""
        with self.reading() as tx:
            return tx.dicts(
                "SELECT seq, time, kind, message, campaign, data, prev_hash, hash, format, ctag, mtag FROM events "
                f"WHERE seq > ? ORDER BY seq LIMIT {int(limit)}",
                (after_seq,),
            )

    def chain_head(self) -> tuple[int, str]:
        with self.reading() as tx:
            row = tx.one("SELECT seq, hash FROM chain_head WHERE id = 1")
        assert row is not None
        return int(row["seq"]), str(row["hash"])


# Tables a copy carries, in dependency order, with the column that orders them.
COPY_TABLES: list[tuple[str, str]] = [
    ("messages", "id"),
    ("body_dicts", "id"),
    ("message_bodies", "id"),
    ("events", "seq"),
    ("pacing", "key"),
    ("daily_counts", "recipient, day"),
    ("blobs", "sha256"),
    ("receipts", "id"),
    ("workers", "id"),
    ("mailbox_positions", "account, folder"),
    ("signing_drives", "id"),
    ("signing_texts", "drive, lang"),
    ("signatures", "id"),
    ("chain_meta", "id"),
]
SIGNING_TABLES = ("signing_drives", "signing_texts", "signatures")  # not copied into plans


def copy_state(
    source: SqlStore,
    target: SqlStore,
    *,
    bodies: bool = True,
    events: bool = True,
    batch: int = 2000,
    on_progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Copy every row of the state tables from ``source`` into an empty ``target``.

    Used by `campaign store migrate` (everything) and `campaign plan` (no bodies, no
    events). Returns rows copied per table. The chain head travels with the events.
    """
    copied: dict[str, int] = {}
    if not (bodies and events):
        target.plan_copy = True  # nothing to check the bytes against: it sends nothing real
    for table, order in COPY_TABLES:
        if (table == "events" and not events) or (table in ("message_bodies", "body_dicts") and not bodies):
            continue
        if table in SIGNING_TABLES and not bodies:
            continue
        count = 0
        last: Any = None
        keyset = "," not in order  # single-column keys page by value: OFFSET would rescan
        while True:
            with source.reading() as tx:
                if keyset:
                    where = f" WHERE {order} > ?" if last is not None else ""
                    sql = f"SELECT * FROM {table}{where} ORDER BY {order} LIMIT {int(batch)}"
                    rows = [dict(row) for row in tx.rows(sql, (last,) if last is not None else ())]
                else:
                    sql = f"SELECT * FROM {table} ORDER BY {order} LIMIT {int(batch)} OFFSET {int(count)}"
                    rows = [dict(row) for row in tx.rows(sql)]
            if not rows:
                break
            with target.transaction() as tx:
                for row in rows:
                    columns = ", ".join(row)
                    marks = ", ".join("?" for _ in row)
                    values = [bytes(v) if isinstance(v, memoryview) else v for v in row.values()]
                    tx.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", values)
            count += len(rows)
            last = rows[-1][order] if keyset else None
            if on_progress:
                on_progress(table, count)
        copied[table] = count
    if events:
        head = source.chain_head()
        with target.transaction() as tx:
            tx.execute("UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1", head)
        key = source.known_key()
        if key is not None and target.key_in_store:
            target.adopt_key(key)  # a shared log keeps the key its events were tagged with
    target.after_copy()
    return copied
