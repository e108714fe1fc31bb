"""The store's reads: letters, counts, wait reasons, due times, events (a part of SqlStore).

Reads take no locks (SQLite: a snapshot; PostgreSQL: plain SELECTs).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from campaign.errors import StoreError
from campaign.models import Event, Invalid, Message, from_rfc3339, parse
from campaign.store import (
    MessageFilter,
    bodies,
)
from campaign.store.sql import _PENDING_SQL, MESSAGE_COLUMNS, NOT_PAUSED, StoreBase, iso, scope


class QueryOps(StoreBase):
    """Letters, counts, wait reasons, due times and events, as the commands show them."""

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

    def iter_messages(self, f: MessageFilter | None = None, *, batch: int = 2000) -> Iterator[Message]:
        """:meth:`messages`, a page of ``batch`` rows at a time (by id, each page its own
        read): `campaign log` of 100,000 letters holds one page, not every letter."""
        f = f or MessageFilter()
        where, params = self._filter_sql(f)
        after = 0
        while True:
            page_where = f"{where} AND id > ?" if where else " WHERE id > ?"
            sql = f"SELECT {self.message_columns()} FROM messages{page_where} ORDER BY id LIMIT {int(batch)}"
            with self.reading() as tx:
                rows = tx.rows(sql, [*params, after])
            for row in rows:
                yield self.to_message(row)
            if len(rows) < batch:
                return
            after = int(rows[-1]["id"])

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
        limits, params = scope(campaign, ids, recipients)
        where = " AND ".join([f"status IN ({_PENDING_SQL}) AND {NOT_PAUSED}", *limits])
        sql = f"SELECT next_attempt_at, wait_reason FROM messages WHERE {where} ORDER BY next_attempt_at, id LIMIT 1"
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
        limits, params = scope(campaign, recipients=recipients)
        clauses = [f"status IN ({_PENDING_SQL}, 'sending')", *limits]
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
