"""Reading a campaign for review: the SQL behind the organisers' area and `campaign report`.

Contract: read-only functions taking the store (each in one read transaction: a
consistent snapshot that takes no lock). Every query is bounded by a campaign and runs
on an index (``messages_review_facts``, ``messages_by_campaign``, ``messages_by_recipient``,
``events_by_message``, ``receipts_by_message``, ``receipts_suspicious``,
``signatures_by_drive``): ``tests/test_review.py`` reads the query plans with EXPLAIN
QUERY PLAN on SQLite. Nothing here changes a row.

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
    ordering = f"ORDER BY {nulls}{column} {order}, id {order}"
    # The sort carries only the key and the id; the page's 50 wide rows are read afterwards.
    rows = (
        f"SELECT {ROW_COLUMNS} FROM messages WHERE id IN (SELECT id FROM messages WHERE {where} {ordering} "
        f"LIMIT {int(query.limit)} OFFSET {int(query.offset)}) {ordering}"
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


FACTS_SQL = (
    "SELECT status, substr(sent_at, 1, 10) AS sent, substr(receipt_at, 1, 10) AS receipt, "
    "substr(displayed_at, 1, 10) AS read, substr(replied_at, 1, 10) AS replied, "
    "CASE WHEN auto_replied_at IS NULL THEN 0 ELSE 1 END AS auto, possible_duplicate AS dup, "
    "CASE WHEN delayed_at IS NULL THEN 0 ELSE 1 END AS delayed, dsn_requested AS dsn, COUNT(*) AS n "
    "FROM messages WHERE campaign = ? GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9"
)
"""Everything the overview counts, in one pass over the campaign's rows: each group is a
combination of state, the days of sending, delivery report, read receipt and reply, and
the receipt flags (a few hundred groups for a campaign of any size). On SQLite the pass
walks ``messages_review_facts`` (migration 0013), whose key is this grouping expression
for expression, so nothing is sorted: change one, change both (a test reads the plan)."""

TIMELINE_KINDS = ("sent", "delivered", "bounced", "read", "replied")


@dataclass
class Facts:
    """What :func:`facts` adds up: totals, the receipt counts `status` shows, and per-day counts."""

    totals: dict[str, int]
    receipts: dict[str, int]
    timeline: list[tuple[str, str, int]]  # (kind, UTC day, letters)


def facts(store: SqlStore, campaign: str) -> Facts:
    """Totals (letters, accepted, delivered, bounced, read, replied, automatic replies,
    possible duplicates), the receipt counts of `campaign status` (awaiting, delayed,
    not requested: the same rules as ``SqlStore.receipt_counts``) and sends, deliveries,
    bounces, reads and replies per UTC day: one pass over the campaign's rows."""
    with store.reading() as tx:
        rows = tx.rows(FACTS_SQL, (campaign,))
    totals = dict.fromkeys(
        ("total", "accepted", "delivered", "bounced", "read", "replied", "auto_replied", "possible_duplicates"), 0
    )
    receipts = {"awaiting": 0, "delayed": 0, "not_requested": 0}
    days: dict[tuple[str, str], int] = {}

    def add(kind: str, day: str | None, n: int) -> None:
        if day:
            days[(kind, day)] = days.get((kind, day), 0) + n

    any_sent = False
    for r in rows:
        n, status = int(r["n"]), str(r["status"])
        totals["total"] += n
        if status in ACCEPTED:
            totals["accepted"] += n
        if status in ("delivered", "bounced"):
            totals[status] += n
            add(status, r["receipt"], n)
        totals["read"] += n if r["read"] else 0
        totals["replied"] += n if r["replied"] else 0
        totals["auto_replied"] += n if int(r["auto"]) else 0
        totals["possible_duplicates"] += n if int(r["dup"] or 0) else 0
        add("sent", r["sent"], n)
        add("read", r["read"], n)
        add("replied", r["replied"], n)
        if status == "sent":
            any_sent = True
            delayed, dsn = int(r["delayed"]), r["dsn"]
            if delayed:
                receipts["delayed"] += n
            elif dsn is None or int(dsn) == 1:
                receipts["awaiting"] += n
            else:
                receipts["not_requested"] += n
    timeline = sorted(((kind, day, n) for (kind, day), n in days.items()), key=lambda t: (t[1], t[0]))
    return Facts(totals, receipts if any_sent else {}, timeline)


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
