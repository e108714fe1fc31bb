"""The store's side of cases: the letters about a case.

Contract:
- ``messages.cases`` holds the sorted case ids of a letter, comma-separated ('' for a
  letter about no case); it is part of the letter's key (migration ``0010_cases``).
- Letters whose consent lapsed are held by the claim's gate (``api.cases.consent_gate``),
  through the state machine's ``held`` move with ``hold_reason = 'consent'``; the reason
  names the case id and the institution, never a person. ``campaign release`` queues them
  again, and the next claim checks consent again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from campaign.models import Message
from campaign.store.sql import _PENDING_SQL, SqlStore


@dataclass(frozen=True)
class PendingCaseLetter:
    """A queued or deferred letter about one or more cases."""

    id: int
    message_id: str
    campaign: str
    recipient: str
    cases: tuple[str, ...]


def _has_case(column: str = "cases") -> str:
    return f"(',' || {column} || ',') LIKE ?"


def pending_case_letters(store: SqlStore, campaign: str | None = None) -> list[PendingCaseLetter]:
    """Letters about cases that `send` would claim (queued or deferred)."""
    sql = (
        "SELECT id, message_id, campaign, recipient, cases FROM messages "
        f"WHERE status IN ({_PENDING_SQL}) AND cases != ''"
    )
    params: list[Any] = []
    if campaign:
        sql += " AND campaign = ?"
        params.append(campaign)
    with store.reading() as tx:
        rows = tx.rows(sql + " ORDER BY id", params)
    return [
        PendingCaseLetter(
            int(r["id"]), r["message_id"], r["campaign"], r["recipient"], tuple(str(r["cases"]).split(","))
        )
        for r in rows
    ]


def case_letters(store: SqlStore, case_id: str) -> list[Message]:
    """Every letter about ``case_id``, in every campaign, oldest first."""
    with store.reading() as tx:
        rows = tx.rows(
            f"SELECT {store.message_columns()} FROM messages WHERE {_has_case()} ORDER BY id", (f"%,{case_id},%",)
        )
    return [store.to_message(r) for r in rows]


def campaign_cases(store: SqlStore, campaign: str | None = None) -> list[str]:
    """The case ids letters of a campaign (or of all campaigns) are about."""
    sql = "SELECT DISTINCT cases FROM messages WHERE cases != ''"
    params: list[Any] = []
    if campaign:
        sql += " AND campaign = ?"
        params.append(campaign)
    with store.reading() as tx:
        rows = tx.rows(sql, params)
    return sorted({c for r in rows for c in str(r["cases"]).split(",") if c})
