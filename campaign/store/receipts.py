"""The receipt part of the store: reports as received, what they say, and what they may change.

Contract:
- Every report is stored once, content-addressed (``blobs``), and each entry of it once
  (``receipts``, unique on report and part): importing again changes nothing.
- **Receipts move only what was attempted.** A report changes a letter (``delivered``,
  ``relayed``, ``bounced``; a delay, a read receipt or a reply flag) only when the letter
  has at least one ``sending`` event in the log. Matching (``campaign.receipts``) names the
  letter; this module checks the attempt inside the recording transaction, so a report
  about a letter that was never handed to a server is kept, marked suspicious
  (``suspicious_row`` names the letter, ``message_row`` stays NULL), logged as
  ``receipt_suspicious``, listed by `campaign receipts unmatched`, and changes nothing.
- Delivery states never move backwards (sent → relayed → delivered | bounced).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from campaign import transitions
from campaign.store import ReceiptEntry, Report, Target
from campaign.transitions import Status

if TYPE_CHECKING:
    from campaign.store.sql import Tx

SUSPICIOUS = (
    "suspicious: it names letter {id} ({message_id}), which was never handed to a server; "
    "a real server cannot have reported on it. Kept; nothing was changed"
)


def _detail(entry: ReceiptEntry) -> str | None:
    parts = [p for p in (entry.status, entry.diagnostic) if p]
    return " ".join(parts) if parts else None


def _iso(ms: int) -> str:
    from campaign.store.sql import iso

    return iso(ms)


def suspicious(entry: ReceiptEntry, target: Target) -> ReceiptEntry:
    """The entry turned into a suspicious one: about ``target``, which was never attempted."""
    note = SUSPICIOUS.format(id=target.id, message_id=target.message_id)
    if entry.note:
        note = f"{note} ({entry.note})"
    return dataclasses.replace(entry, target=None, matched_by=entry.matched_by, suspicious=target, note=note)


class ReceiptsMixin:
    """Receipt storage and matching support (part of ``SqlStore``)."""

    if TYPE_CHECKING:

        def transaction(self) -> AbstractContextManager[Tx]: ...

        def reading(self) -> AbstractContextManager[Tx]: ...

    def targets(self, *, envids: Sequence[str] = (), message_ids: Sequence[str] = ()) -> dict[str, Target]:
        """Messages by envelope id and by Message-ID (one dict, both kinds of key), with
        whether each was ever attempted (has a ``sending`` event)."""
        found: dict[str, Target] = {}
        with self.reading() as tx:
            for column, keys in (
                ("envid", list(dict.fromkeys(envids))),
                ("message_id", list(dict.fromkeys(message_ids))),
            ):
                for start in range(0, len(keys), 500):
                    chunk = keys[start : start + 500]
                    rows = tx.rows(
                        "SELECT id, message_id, envid, campaign, email, status, EXISTS (SELECT 1 FROM events e "
                        "WHERE e.message = messages.message_id AND e.kind = 'sending') AS attempted FROM messages "
                        f"WHERE {column} IN ({', '.join('?' for _ in chunk)})",
                        chunk,
                    )
                    for row in rows:
                        values = dict(row)
                        values["attempted"] = bool(values["attempted"])
                        found[row[column]] = Target(**values)
        return found

    def known_reports(self, shas: Sequence[str]) -> set[str]:
        """Which reports (by SHA-256 of their bytes) were imported before."""
        known: set[str] = set()
        shas = list(dict.fromkeys(shas))
        with self.reading() as tx:
            for start in range(0, len(shas), 500):
                chunk = shas[start : start + 500]
                rows = tx.rows(
                    "SELECT DISTINCT report_sha256 FROM receipts WHERE report_sha256 IN "
                    f"({', '.join('?' for _ in chunk)})",
                    chunk,
                )
                known.update(r["report_sha256"] for r in rows)
        return known

    def record_reports(self, reports: Sequence[Report], now_ms: int) -> int:
        """Store reports (bytes content-addressed) and apply what they say; returns the
        number of entries recorded. Importing the same report again changes nothing."""
        recorded = 0
        now = _iso(now_ms)
        with self.transaction() as tx:
            for report in reports:
                tx.execute(
                    "INSERT INTO blobs (sha256, data, size, created_at) VALUES (?, ?, ?, ?) ON CONFLICT "
                    "(sha256) DO NOTHING",
                    (report.sha256, report.raw, len(report.raw), now),
                )
                for entry in report.entries:
                    if entry.target is not None and not self._attempted(tx, entry.target.message_id):
                        entry = suspicious(entry, entry.target)  # checked again here: the rule's home
                    target = entry.target
                    tx.execute(
                        "INSERT INTO receipts (report_sha256, part, kind, message_row, matched_by, outcome, action, "
                        "status, diagnostic, reporting_mta, remote_mta, original_recipient, final_recipient, envid, "
                        "original_message_id, arrival, source, note, received_at, suspicious_row) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (report_sha256, part) DO NOTHING",
                        (
                            report.sha256,
                            entry.part,
                            entry.kind,
                            target.id if target else None,
                            entry.matched_by,
                            entry.outcome,
                            entry.action,
                            entry.status,
                            entry.diagnostic,
                            entry.reporting_mta,
                            entry.remote_mta,
                            entry.original_recipient,
                            entry.final_recipient,
                            entry.envid,
                            entry.original_message_id,
                            entry.arrival,
                            report.source,
                            entry.note,
                            now,
                            entry.suspicious.id if entry.suspicious else None,
                        ),
                    )
                    if tx.cursor.rowcount != 1:
                        continue
                    recorded += 1
                    self._apply_receipt(tx, report, entry, now_ms)
        return recorded

    @staticmethod
    def _attempted(tx: Tx, message_id: str) -> bool:
        return (
            tx.one("SELECT 1 AS one FROM events WHERE message = ? AND kind = 'sending' LIMIT 1", (message_id,))
            is not None
        )

    def _apply_receipt(self, tx: Tx, report: Report, entry: ReceiptEntry, now_ms: int) -> None:
        now = _iso(now_ms)
        data: dict[str, Any] = {
            "kind": entry.kind,
            "outcome": entry.outcome,
            "action": entry.action,
            "status": entry.status,
            "diagnostic": entry.diagnostic,
            "reporting_mta": entry.reporting_mta,
            "remote_mta": entry.remote_mta,
            "final_recipient": entry.final_recipient,
            "arrival": entry.arrival,
            "matched_by": entry.matched_by,
            "report_sha256": report.sha256,
            "part": entry.part,
            "note": entry.note,
        }
        if entry.suspicious is not None:
            named = entry.suspicious
            tx.append(now_ms, "receipt_suspicious", message=named.message_id, campaign=named.campaign, data=data)
            return
        target = entry.target
        if target is None:
            tx.append(now_ms, "receipt_unmatched", data=data)
            return
        row = tx.one("SELECT status, delivery_status FROM messages WHERE id = ?", (target.id,))
        assert row is not None
        current = Status(row["status"])
        kind = {"dsn": "receipt", "mdn": "read_receipt", "reply": "reply", "auto-reply": "auto_reply"}[entry.kind]
        if entry.kind == "mdn":
            column = "displayed_at" if entry.outcome == "displayed" else "deleted_at"
            tx.execute(
                f"UPDATE messages SET {column} = COALESCE({column}, ?) WHERE id = ?", (entry.arrival or now, target.id)
            )
        elif entry.kind in ("reply", "auto-reply"):
            column = "replied_at" if entry.kind == "reply" else "auto_replied_at"
            tx.execute(
                f"UPDATE messages SET {column} = COALESCE({column}, ?) WHERE id = ?", (entry.arrival or now, target.id)
            )
        elif entry.outcome == "delayed":
            tx.execute(
                "UPDATE messages SET delayed_at = COALESCE(delayed_at, ?), delivery_detail = "
                "COALESCE(delivery_detail, ?) "
                "WHERE id = ?",
                (entry.arrival or now, _detail(entry), target.id),
            )
        elif entry.outcome in ("delivered", "relayed", "bounced"):
            moved = transitions.receipt_target(current, Status(entry.outcome))
            if moved is not None:
                if current in transitions.PENDING or current == Status.SENDING:
                    # It was attempted (checked above) and a server reports on it: the server had
                    # taken it although we did not hear so. Stop retrying (a retry would be a duplicate).
                    data["note"] = (
                        f"report for a letter that was {current.value} after an attempt: the server had accepted "
                        "it; no further attempt"
                    )
                tx.move(
                    target.id,
                    "receipt",
                    sources=(current,),
                    target=moved,
                    now_ms=now_ms,
                    message=target.message_id,
                    campaign=target.campaign,
                    data=data,
                    sets={
                        "delivery_status": moved.value,
                        "delivery_detail": _detail(entry),
                        "reporting_mta": entry.reporting_mta,
                        "receipt_at": entry.arrival or now,
                        "next_attempt_at": None,
                        "wait_reason": None,
                        "lease_owner": None,
                        "updated_at": now,
                    },
                )
                return
            if current in transitions.DELIVERY:
                data["unchanged"] = f"the letter is already {current.value}: delivery states never move backwards"
            else:
                data["unchanged"] = f"the letter is {current.value}"
        tx.append(now_ms, kind, message=target.message_id, campaign=target.campaign, data=data)

    def mailbox_position(self, account: str, folder: str) -> tuple[int, int] | None:
        """(UIDVALIDITY, last UID processed) for an IMAP folder."""
        with self.reading() as tx:
            row = tx.one(
                "SELECT uidvalidity, last_uid FROM mailbox_positions WHERE account = ? AND folder = ?",
                (account, folder),
            )
        return (int(row["uidvalidity"]), int(row["last_uid"])) if row else None

    def set_mailbox_position(self, account: str, folder: str, uidvalidity: int, last_uid: int, now_ms: int) -> None:
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO mailbox_positions (account, folder, uidvalidity, last_uid, updated_at) VALUES (?, "
                "?, ?, ?, ?) "
                "ON CONFLICT (account, folder) DO UPDATE SET uidvalidity = excluded.uidvalidity, "
                "last_uid = excluded.last_uid, updated_at = excluded.updated_at",
                (account, folder, uidvalidity, last_uid, _iso(now_ms)),
            )

    def replies(self, campaign: str | None = None) -> list[dict[str, Any]]:
        """Replies and automatic replies with their letter, oldest first."""
        sql = (
            "SELECT r.kind, r.report_sha256, r.arrival, r.received_at, r.note, m.id AS message_row, m.message_id, "
            "m.campaign, m.recipient, m.email, m.subject FROM receipts r JOIN messages m ON m.id = r.message_row "
            "WHERE r.kind IN ('reply', 'auto-reply')"
        )
        params: list[Any] = []
        if campaign:
            sql += " AND m.campaign = ?"
            params.append(campaign)
        with self.reading() as tx:
            return tx.dicts(sql + " ORDER BY COALESCE(r.arrival, r.received_at), r.id", params)

    def unmatched(self) -> list[dict[str, Any]]:
        """Report entries that changed no letter (unmatched or suspicious), oldest first."""
        with self.reading() as tx:
            return tx.dicts(
                "SELECT id, report_sha256, part, kind, outcome, status, diagnostic, reporting_mta, final_recipient, "
                "original_recipient, envid, original_message_id, source, note, received_at, suspicious_row "
                "FROM receipts WHERE message_row IS NULL ORDER BY received_at, id"
            )

    def receipts_for(self, row_id: int) -> list[dict[str, Any]]:
        """Every report entry about a letter, including suspicious ones that name it."""
        with self.reading() as tx:
            return tx.dicts(
                "SELECT * FROM receipts WHERE message_row = ? OR suspicious_row = ? ORDER BY id", (row_id, row_id)
            )

    def blob(self, sha: str) -> bytes | None:
        with self.reading() as tx:
            row = tx.one("SELECT data FROM blobs WHERE sha256 = ?", (sha,))
        return bytes(row["data"]) if row else None
