"""The store logic shared by SQLite and PostgreSQL (see ``campaign.store`` for the contract).

SQL here uses ``?`` placeholders; the PostgreSQL store rewrites them. Subclasses
provide the connection, the transaction, and the few statements that differ.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from campaign import chain
from campaign.errors import StoreError
from campaign.models import Event, Message, from_rfc3339, to_rfc3339
from campaign.pacing import Bucket, Pacer
from campaign.store import (
    Claim,
    Claimed,
    Existing,
    MessageFilter,
    NewMessage,
    Outcome,
)
from campaign.store.integrity import INTEGRITY, IntegrityMixin
from campaign.store.migrations import MIGRATIONS
from campaign.store.receipts import ReceiptsMixin

MESSAGE_COLUMNS = (
    "id, campaign, letter, recipient, email, lang, subject, message_id, envid, status, attempts, "
    "created_at, updated_at, next_attempt_at, wait_reason, sent_at, last_code, last_status, "
    "last_reply, remote_id, possible_duplicate, in_reply_to, content_sha256, first_attempt_at, "
    "wire_sha256, domain, contact_name, delivery_status, delivery_detail, reporting_mta, receipt_at, "
    "delayed_at, displayed_at, deleted_at, replied_at, auto_replied_at"
)
PENDING = ("queued", "deferred")


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


@dataclass
class EnqueueSession:
    """Queue many messages in one transaction (see :meth:`SqlStore.enqueue`)."""

    tx: Tx
    now_ms: int
    added: int = 0
    replaced: int = 0

    def lookup(self, campaign: str, letter: str, recipient: str, email_key: str) -> Existing | None:
        row = self.tx.one(
            "SELECT id, message_id, envid, status, content_sha256, created_at, possible_duplicate FROM messages "
            "WHERE campaign = ? AND letter = ? AND recipient = ? AND email_key = ?",
            (campaign, letter, recipient, email_key),
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
            "created_at, updated_at, next_attempt_at, wait_reason, in_reply_to) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?, ?) RETURNING id",
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
            ),
        )
        row = self.tx.cursor.fetchone()
        row_id = int(row[0] if not isinstance(row, dict) else row["id"])
        self.tx.execute("INSERT INTO message_bodies (id, body) VALUES (?, ?)", (row_id, msg.body))
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
        self.tx.append(self.now_ms, "queued", message=msg.message_id, campaign=msg.campaign, data=data)
        self.added += 1
        return self.added

    def replace(self, existing: Existing, msg: NewMessage) -> None:
        """Replace the bytes of an unsent message, keeping its Message-ID and envelope id.

        The send prefix (Date, DKIM) fixed at an earlier attempt belongs to the old bytes: it
        is reset, so the next attempt makes a new one and logs the hash of what it sends. A
        letter flagged as a possible duplicate is refused: the old text may already be at the
        institution, and a different text under the same Message-ID would be a second letter.
        """
        if existing.status not in ("queued", "deferred", "held"):
            raise StoreError(f"message {existing.id} is {existing.status}; only unsent messages can be updated")
        if existing.possible_duplicate:
            raise StoreError(
                f"message {existing.id} to {msg.recipient} may already have reached the institution "
                "(possible duplicate): --update would send a different text under the same Message-ID; "
                "nothing was queued",
                hint="leave it as it is, or queue the new text as a new campaign (--campaign NAME)",
            )
        self.tx.execute(
            "UPDATE messages SET content_sha256 = ?, subject = ?, lang = ?, contact_name = ?, "
            "smtputf8 = ?, wire_prefix = NULL, wire_sha256 = NULL, updated_at = ? WHERE id = ?",
            (
                msg.content_sha256,
                msg.subject,
                msg.lang,
                msg.contact_name,
                int(msg.smtputf8),
                iso(self.now_ms),
                existing.id,
            ),
        )
        self.tx.execute("UPDATE message_bodies SET body = ? WHERE id = ?", (msg.body, existing.id))
        self.tx.append(
            self.now_ms,
            "updated",
            message=existing.message_id,
            campaign=msg.campaign,
            data={
                "previous_sha256": existing.content_sha256,
                "content_sha256": msg.content_sha256,
                "body_sha256": chain.sha256_hex(msg.body),
                "subject": msg.subject,
                "lang": msg.lang,
            },
        )
        self.replaced += 1


class SqlStore(IntegrityMixin, ReceiptsMixin):
    """The store; subclasses connect to SQLite or PostgreSQL."""

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
    def _transaction(self, write: bool = True) -> Iterator[Any]:
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
        with self._transaction() as cursor:
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
            with self._transaction() as cursor:
                tx = Tx(self, cursor)
                # Another process may have migrated meanwhile (PostgreSQL): check inside the lock.
                if tx.one("SELECT name FROM schema_migrations WHERE name = ?", (name,)):
                    continue
                for statement in migration(self.dialect):
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
            rows = tx.rows(sql + self.skip_locked, params)
            for row in rows:
                tx.execute(
                    "UPDATE messages SET status = 'deferred', next_attempt_at = ?, possible_duplicate = 1, "
                    "lease_owner = NULL, lease_expires = NULL, wait_reason = ?, updated_at = ? WHERE id = ?",
                    (now_ms, "resending after a crash: possible duplicate", iso(now_ms), row["id"]),
                )
                tx.append(
                    now_ms,
                    "crash_recovered",
                    message=row["message_id"],
                    campaign=row["campaign"],
                    data={
                        "attempt": int(row["attempts"]),
                        "possible_duplicate": True,
                        "worker": row["lease_owner"],
                        "note": "was being sent when a run stopped; it will be sent again with the same bytes "
                        "and may reach the institution twice",
                    },
                )
            return [r["message_id"] for r in rows]

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
    ) -> Claim:
        """Mark up to ``limit`` due messages ``sending`` (committed before sending)."""
        # A few spare rows in case some are parked by a limit; parked rows leave the due
        # window, so the next claim sees fresh ones.
        scan = limit * 2 + 2
        where = "status IN ('queued', 'deferred') AND next_attempt_at <= ?"
        params: list[Any] = [now_ms]
        if campaign:
            where += " AND campaign = ?"
            params.append(campaign)
        if ids:
            where += f" AND id IN ({', '.join('?' for _ in ids)})"
            params.extend(ids)
        with self.transaction() as tx:
            state = DbPacingState(tx)
            first = pacer.check_global(now_ms, state)
            if not first.ok:
                return Claim([], first.until, first.reason)
            rows = tx.rows(
                "SELECT id, message_id, envid, campaign, recipient, email, domain, status, attempts, "
                "smtputf8, possible_duplicate, first_attempt_at, wire_prefix, wire_sha256 FROM messages "
                f"WHERE {where} ORDER BY next_attempt_at, id LIMIT ?" + self.skip_locked,
                (*params, scan),
            )
            items: list[Claimed] = []
            wait: tuple[int | None, str | None] = (None, None)
            for row in rows:
                if len(items) >= limit:
                    break
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
            return Claim(items, *wait)

    def _mark_sending(
        self, tx: Tx, row: dict[str, Any], now_ms: int, worker: str, lease_ms: int, prefix: PrefixFn
    ) -> Claimed | None:
        """Mark one letter ``sending``, or hold it (None) when its bytes are not the bytes the
        log recorded (see ``campaign.store.integrity``)."""
        body_row = tx.one("SELECT body FROM message_bodies WHERE id = ?", (row["id"],))
        problem, body, wire_prefix, details = self.seal_problem(tx, row, body_row["body"] if body_row else None)
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
        tx.execute(
            "UPDATE messages SET status = 'sending', attempts = ?, lease_owner = ?, lease_expires = ?, "
            "wait_reason = NULL, updated_at = ?, wire_prefix = ?, wire_sha256 = ?, first_attempt_at = ? WHERE id = ?",
            (attempt, worker, now_ms + lease_ms, iso(now_ms), wire_prefix, wire_sha, first_attempt_at, row["id"]),
        )
        duplicate = bool(row["possible_duplicate"])
        tx.append(
            now_ms,
            "sending",
            message=row["message_id"],
            campaign=row["campaign"],
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

        A message whose lease another worker took over meanwhile is not overwritten
        (the outcome is still logged, as ``late_outcome``).
        """
        applied = 0
        with self.transaction() as tx:
            for o in outcomes:
                sent_at = iso(now_ms) if o.status == "sent" else None
                tx.execute(
                    "UPDATE messages SET status = ?, last_code = ?, last_status = ?, last_reply = ?, "
                    "remote_id = COALESCE(?, remote_id), sent_at = COALESCE(?, sent_at), next_attempt_at = ?, "
                    "wait_reason = NULL, possible_duplicate = ?, lease_owner = NULL, lease_expires = NULL, "
                    "dsn_requested = COALESCE(?, dsn_requested), updated_at = ? "
                    "WHERE id = ? AND status = 'sending' AND lease_owner = ?",
                    (
                        o.status,
                        o.code,
                        o.enhanced,
                        o.reply,
                        o.remote_id,
                        sent_at,
                        o.next_attempt_ms,
                        int(o.possible_duplicate),
                        _flag(o.data.get("dsn")),
                        iso(now_ms),
                        o.id,
                        worker,
                    ),
                )
                changed = tx.cursor.rowcount == 1
                applied += int(changed)
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
                tx.append(
                    now_ms, o.event if changed else "late_outcome", message=o.message_id, campaign=o.campaign, data=data
                )
            tally = {"sent": 0, "deferred": 0, "failed": 0}
            for o in outcomes:
                key = "failed" if o.status in ("failed", "held") else o.status
                if key in tally:
                    tally[key] += 1
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

    def workers(self, since: str) -> list[dict[str, Any]]:
        """Workers seen since ``since`` (RFC 3339), with their live leases."""
        with self.reading() as tx:
            rows = tx.dicts(
                "SELECT w.id, w.label, w.campaign, w.concurrency, w.started_at, w.heartbeat_at, w.stopped_at, w.sent, "
                "w.deferred, w.failed, COUNT(m.id) AS leases, MIN(m.lease_expires) AS lease_expires "
                "FROM workers w LEFT JOIN messages m ON m.lease_owner = w.id AND m.status = 'sending' "
                "WHERE w.heartbeat_at >= ? GROUP BY w.id, w.label, w.campaign, w.concurrency, w.started_at, "
                "w.heartbeat_at, w.stopped_at, w.sent, w.deferred, w.failed ORDER BY w.started_at",
                (since,),
            )
        return rows

    def unclaim(self, items: Iterable[Claimed], now_ms: int, *, worker: str, reason: str) -> None:
        """Put claimed messages back as they were: nothing was sent (the run stopped first)."""
        with self.transaction() as tx:
            for item in items:
                tx.execute(
                    "UPDATE messages SET status = ?, attempts = attempts - 1, lease_owner = NULL, "
                    "lease_expires = NULL, updated_at = ? WHERE id = ? AND status = 'sending' AND lease_owner = ?",
                    (item.previous_status, iso(now_ms), item.id, worker),
                )
                tx.append(
                    now_ms,
                    "not_sent",
                    message=item.message_id,
                    campaign=item.campaign,
                    data={"attempt": item.attempt, "reason": reason},
                )

    def release(self, ids: Sequence[int], now_ms: int, *, note: str | None = None) -> list[str]:
        """Held messages → queued again (a person checked them)."""
        released = []
        with self.transaction() as tx:
            for mid in ids:
                row = tx.one("SELECT id, message_id, campaign, status, last_status FROM messages WHERE id = ?", (mid,))
                if row is None:
                    raise StoreError(f"no message with id {mid}", hint="see the ids with `campaign log`")
                if row["status"] not in ("held", "failed"):
                    raise StoreError(f"message {mid} is {row['status']}, not held or failed; nothing to release")
                data: dict[str, Any] = {"from": row["status"], "note": note}
                reset = ""
                if row["status"] == "held" and row["last_status"] == INTEGRITY:
                    # Held because its bytes did not match the log: a person checked them and
                    # accepts them as they are now. The release seals these bytes.
                    body = tx.one("SELECT body FROM message_bodies WHERE id = ?", (mid,))
                    value = body["body"] if body is not None else None
                    if not isinstance(value, bytes | memoryview):
                        raise StoreError(f"message {mid}: its stored bytes are missing or damaged; it cannot be sent")
                    data["body_sha256"] = chain.sha256_hex(bytes(value))
                    data["accepted"] = "the stored bytes, as a person checked them"
                    reset = "wire_prefix = NULL, wire_sha256 = NULL, last_status = NULL, "
                tx.execute(
                    "UPDATE messages SET status = 'queued', next_attempt_at = ?, wait_reason = NULL, "
                    f"{reset}updated_at = ? WHERE id = ?",
                    (now_ms, iso(now_ms), mid),
                )
                tx.append(now_ms, "released", message=row["message_id"], campaign=row["campaign"], data=data)
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
            rows = tx.rows(sql, params)
            for row in rows:
                tx.execute(
                    "UPDATE messages SET status = 'failed', next_attempt_at = NULL, updated_at = ? WHERE id = ?",
                    (iso(now_ms), row["id"]),
                )
                tx.append(
                    now_ms,
                    "failed",
                    message=row["message_id"],
                    campaign=row["campaign"],
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
        if f.since:
            clauses.append("updated_at >= ?")
            params.append(f.since)
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
        for key in ("first_attempt_at", "wire_sha256", "domain", "contact_name"):
            data.pop(key, None)
        return Message.model_validate(data)

    def wire_bytes(self, message_row_id: int) -> tuple[bytes | None, bytes]:
        """(prefix added at the first attempt or None, stored body)."""
        with self.reading() as tx:
            row = tx.one(
                "SELECT m.wire_prefix, b.body FROM messages m JOIN message_bodies b ON b.id = m.id WHERE m.id = ?",
                (message_row_id,),
            )
        if row is None:
            raise StoreError(f"no message with id {message_row_id}")
        prefix = bytes(row["wire_prefix"]) if row["wire_prefix"] is not None else None
        return prefix, bytes(row["body"])

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

    def next_due(self, campaign: str | None = None) -> tuple[int, str | None] | None:
        """(epoch ms, reason) of the earliest pending message."""
        sql = "SELECT next_attempt_at, wait_reason FROM messages WHERE status IN ('queued', 'deferred')"
        params: list[Any] = []
        if campaign:
            sql += " AND campaign = ?"
            params.append(campaign)
        sql += " ORDER BY next_attempt_at, id LIMIT 1"
        with self.reading() as tx:
            row = tx.one(sql, params)
        return (int(row["next_attempt_at"]), row["wait_reason"]) if row else None

    def receipt_counts(self, campaign: str | None = None) -> dict[str, dict[str, int]]:
        """{campaign: {"awaiting": sent without any report, "delayed": with a delay report}}."""
        sql = (
            "SELECT campaign, SUM(CASE WHEN delayed_at IS NULL THEN 1 ELSE 0 END) AS awaiting, "
            "SUM(CASE WHEN delayed_at IS NOT NULL THEN 1 ELSE 0 END) AS delayed FROM messages WHERE status = 'sent'"
        )
        params: list[Any] = []
        if campaign:
            sql += " AND campaign = ?"
            params.append(campaign)
        sql += " GROUP BY campaign"
        with self.reading() as tx:
            return {
                r["campaign"]: {"awaiting": int(r["awaiting"]), "delayed": int(r["delayed"])}
                for r in tx.rows(sql, params)
            }

    def waiting(self, campaign: str | None = None) -> list[tuple[str, int, int]]:
        """Why pending letters wait: (reason, how many, earliest next attempt in epoch ms)."""
        sql = (
            "SELECT COALESCE(wait_reason, CASE WHEN status = 'deferred' THEN 'retry after a temporary failure' "
            "ELSE 'ready (see `campaign plan` for expected times)' END) AS reason, COUNT(*) AS n, "
            "MIN(next_attempt_at) AS first "
            "FROM messages WHERE status IN ('queued', 'deferred')"
        )
        params: list[Any] = []
        if campaign:
            sql += " AND campaign = ?"
            params.append(campaign)
        sql += " GROUP BY 1 ORDER BY 3"
        with self.reading() as tx:
            return [(r["reason"], int(r["n"]), int(r["first"] or 0)) for r in tx.rows(sql, params)]

    def pending_summary(self, campaign: str | None = None) -> tuple[int, int]:
        """(messages, institutions) still to send."""
        sql = (
            "SELECT COUNT(*) AS n, COUNT(DISTINCT recipient) AS r FROM messages "
            "WHERE status IN ('queued', 'deferred', 'sending')"
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
        since: str | None = None,
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
        if since:
            clauses.append("time >= ?")
            params.append(since)
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
    ("message_bodies", "id"),
    ("events", "seq"),
    ("pacing", "key"),
    ("daily_counts", "recipient, day"),
    ("blobs", "sha256"),
    ("receipts", "id"),
    ("workers", "id"),
    ("mailbox_positions", "account, folder"),
    ("chain_meta", "id"),
]


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
        if (table == "events" and not events) or (table == "message_bodies" and not bodies):
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
