"""The queue's writes: queueing, claims, outcomes, recovery, release, expiry (a part of SqlStore).

Every status change goes through :meth:`Tx.move` (``campaign.store.sql``) and the table of
``campaign.transitions``; every write transaction takes the locks in the store's order
(the chain head first).
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from campaign import chain, transitions
from campaign.errors import StoreError
from campaign.models import Status
from campaign.pacing import Pacer
from campaign.store import (
    Claim,
    Claimed,
    Existing,
    Hold,
    NewMessage,
    Outcome,
    Unsent,
    bodies,
)
from campaign.store.integrity import INTEGRITY
from campaign.store.sql import (
    _PENDING_SQL,
    NOT_PAUSED,
    DbPacingState,
    Expr,
    Gate,
    PrefixFn,
    StoreBase,
    Tx,
    _flag,
    iso,
    scope,
)


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


class QueueOps(StoreBase):
    """Queueing, claiming, finishing, recovering: the writes of a send."""

    if TYPE_CHECKING:  # provided by campaign.store.integrity's mixin, next to this one in SqlStore

        def seal_problem(
            self, tx: Tx, row: dict[str, Any], body_value: Any, encoding: str | None = None
        ) -> tuple[str | None, bytes, bytes | None, dict[str, Any]]: ...

        @staticmethod
        def hold_for_integrity(
            tx: Tx, row: dict[str, Any], now_ms: int, worker: str, reason: str, details: dict[str, Any]
        ) -> None: ...

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
        limits, limit_params = scope(campaign, ids, recipients)
        where = " AND ".join([f"status IN ({_PENDING_SQL}) AND next_attempt_at <= ? AND {NOT_PAUSED}", *limits])
        params: list[Any] = [now_ms, *limit_params]
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

    def unclaim(self, items: Iterable[Claimed | Unsent], now_ms: int, *, worker: str, reason: str) -> int:
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
