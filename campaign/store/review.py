"""Reading a campaign for review: the SQL behind the organisers' area and `campaign report`.

Contract: read-only functions taking the store (each in one read transaction: a
consistent snapshot that takes no lock). Every query is bounded by a campaign and runs
on an index (``messages_by_campaign``, ``messages_by_recipient``, ``events_by_message``,
``receipts_by_message``, ``signatures_by_drive``): ``tests/test_review.py`` reads the
query plans with EXPLAIN QUERY PLAN on SQLite. Nothing here changes a row.

The per-letter table (:func:`letter_page`) sorts by one of :data:`SORTS` with the row id
as tie-breaker, so paging is stable; institutions chosen by tag arrive as a list of ids
(tags live in recipients.yaml, not in the store).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from campaign.store.sql import SqlStore

ACCEPTED = ("sent", "relayed", "delivered", "bounced")
"""Statuses of letters a receiving server took (a delivery report may follow)."""

SORTS = {
    "institution": "recipient",
    "status": "status",
    "sent": "sent_at",
    "changed": "updated_at",
    "id": "id",
}

NULLABLE = ("sent_at",)

ROW_COLUMNS = (
    "id, campaign, letter, recipient, email, lang, status, attempts, sent_at, updated_at, next_attempt_at, "
    "wait_reason, hold_reason, possible_duplicate, delivery_status, receipt_at, delayed_at, displayed_at, "
    "replied_at, auto_replied_at, cases"
)

TIMELINE_KINDS = ("sent", "delivered", "bounced", "read", "replied")


@dataclass(frozen=True)
class PageQuery:
    """One page of a campaign's letters: filters, order, window."""

    campaign: str
    statuses: tuple[str, ...] = ()
    recipients: tuple[str, ...] | None = None  # None: every institution; (): none matched the tag
    sort: str = "institution"
    descending: bool = False
    offset: int = 0
    limit: int = 50


def _where(query: PageQuery) -> tuple[str, list[Any]]:
    clauses = ["campaign = ?"]
    params: list[Any] = [query.campaign]
    if query.statuses:
        clauses.append(f"status IN ({', '.join('?' for _ in query.statuses)})")
        params.extend(query.statuses)
    if query.recipients is not None:
        clauses.append(f"recipient IN ({', '.join('?' for _ in query.recipients) or 'NULL'})")
        params.extend(query.recipients)
    return " AND ".join(clauses), params


def page_sql(query: PageQuery) -> tuple[str, str, list[Any]]:
    """(rows statement, count statement, parameters) for a page: also for EXPLAIN in tests."""
    where, params = _where(query)
    column = SORTS[query.sort]
    order = "DESC" if query.descending else "ASC"
    # Letters never sent come last either way, on both databases (they order NULLs differently).
    nulls = f"({column} IS NULL), " if column in NULLABLE else ""
    rows = (
        f"SELECT {ROW_COLUMNS} FROM messages WHERE {where} "
        f"ORDER BY {nulls}{column} {order}, id {order} LIMIT {int(query.limit)} OFFSET {int(query.offset)}"
    )
    count = f"SELECT COUNT(*) AS n FROM messages WHERE {where}"
    return rows, count, params


def letter_page(store: SqlStore, query: PageQuery) -> tuple[list[dict[str, Any]], int]:
    """(the page's rows, how many letters match the filters)."""
    rows_sql, count_sql, params = page_sql(query)
    with store.reading() as tx:
        rows = tx.dicts(rows_sql, params)
        found = tx.one(count_sql, params)
    return rows, int(found["n"]) if found else 0


FLAGS_SQL = (
    "SELECT COUNT(*) AS total, "
    f"SUM(CASE WHEN status IN ({', '.join(repr(s) for s in ACCEPTED)}) THEN 1 ELSE 0 END) AS accepted, "
    "SUM(CASE WHEN status = 'delivered' THEN 1 ELSE 0 END) AS delivered, "
    "SUM(CASE WHEN status = 'bounced' THEN 1 ELSE 0 END) AS bounced, "
    "SUM(CASE WHEN displayed_at IS NOT NULL THEN 1 ELSE 0 END) AS read, "
    "SUM(CASE WHEN replied_at IS NOT NULL THEN 1 ELSE 0 END) AS replied, "
    "SUM(CASE WHEN auto_replied_at IS NOT NULL THEN 1 ELSE 0 END) AS auto_replied, "
    "SUM(CASE WHEN possible_duplicate = 1 THEN 1 ELSE 0 END) AS possible_duplicates, "
    "COUNT(DISTINCT recipient) AS institutions "
    "FROM messages WHERE campaign = ?"
)

TIMELINE_SQL = " UNION ALL ".join(
    f"SELECT '{kind}' AS kind, substr({column}, 1, 10) AS day, COUNT(*) AS n FROM messages "
    f"WHERE campaign = ? AND {column} IS NOT NULL{extra} GROUP BY substr({column}, 1, 10)"
    for kind, column, extra in (
        ("sent", "sent_at", ""),
        ("delivered", "receipt_at", " AND status = 'delivered'"),
        ("bounced", "receipt_at", " AND status = 'bounced'"),
        ("read", "displayed_at", ""),
        ("replied", "replied_at", ""),
    )
)


def flags(store: SqlStore, campaign: str) -> dict[str, int]:
    """Totals of one campaign: letters, accepted, delivered, bounced, read, replied, …"""
    with store.reading() as tx:
        row = tx.one(FLAGS_SQL, (campaign,))
    return {key: int(value or 0) for key, value in dict(row or {}).items()}


def timeline(store: SqlStore, campaign: str) -> list[tuple[str, str, int]]:
    """(kind, UTC day, letters) for sends, deliveries, bounces, reads and replies per day."""
    with store.reading() as tx:
        rows = tx.rows(TIMELINE_SQL, [campaign] * len(TIMELINE_KINDS))
    return [(r["kind"], r["day"], int(r["n"])) for r in rows]


def letter_row(store: SqlStore, row_id: int) -> dict[str, Any] | None:
    """Everything about one letter but its bytes."""
    with store.reading() as tx:
        row = tx.one(
            f"SELECT {ROW_COLUMNS}, subject, message_id, envid, content_sha256, wire_sha256, created_at, "
            "first_attempt_at, last_code, last_status, last_reply, remote_id, delivery_detail, reporting_mta, "
            "deleted_at, contact_name, in_reply_to, dsn_requested FROM messages WHERE id = ?",
            (row_id,),
        )
    return dict(row) if row is not None else None


def unanswered(store: SqlStore, campaign: str) -> list[dict[str, Any]]:
    """Institutions of a campaign whose accepted letters got no reply (automatic replies do
    not count): the earliest delivery report (or, without one, the send) per institution."""
    accepted = ", ".join(repr(s) for s in ACCEPTED if s != "bounced")
    with store.reading() as tx:
        return tx.dicts(
            "SELECT recipient, COUNT(*) AS letters, MIN(CASE WHEN status = 'delivered' THEN receipt_at END) "
            "AS delivered_at, MIN(sent_at) AS sent_at, MAX(CASE WHEN auto_replied_at IS NOT NULL THEN 1 ELSE 0 END) "
            f"AS auto_replied FROM messages WHERE campaign = ? AND status IN ({accepted}) GROUP BY recipient "
            "HAVING MAX(CASE WHEN replied_at IS NOT NULL THEN 1 ELSE 0 END) = 0 ORDER BY MIN(COALESCE("
            "CASE WHEN status = 'delivered' THEN receipt_at END, sent_at)), recipient",
            (campaign,),
        )


def signature_days(store: SqlStore, drive_id: int) -> list[tuple[str, int]]:
    """(day signed, signatures) of one drive: days only, never times or names."""
    with store.reading() as tx:
        rows = tx.rows(
            "SELECT signed_on, COUNT(*) AS n FROM signatures WHERE drive = ? GROUP BY signed_on ORDER BY signed_on",
            (drive_id,),
        )
    return [(str(r["signed_on"]), int(r["n"])) for r in rows]


def signatory_names(store: SqlStore, drive_id: int) -> list[str]:
    """The names printed under the letter (pseudonyms for pseudonymous signers), for a
    report made with ``--with-signatories``; never the sealed real names."""
    with store.reading() as tx:
        rows = tx.rows("SELECT name FROM signatures WHERE drive = ? ORDER BY id", (drive_id,))
    return [str(r["name"]) for r in rows]


def explain(store: SqlStore, statement: str, params: list[Any] | tuple[Any, ...]) -> list[str]:
    """SQLite's query plan for a statement (the ``detail`` column), for the index test."""
    with store.reading() as tx:
        return [str(r["detail"]) for r in tx.rows("EXPLAIN QUERY PLAN " + statement, params)]
