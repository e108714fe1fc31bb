"""Managing a live campaign in the store: pause and resume, cancel, reschedule.

Contract:
- A pause is a row in ``campaign_controls`` (``*`` pauses every campaign) with a
  ``paused`` event; every sender sharing the store stops claiming that campaign's letters
  at its next claim (``NOT_PAUSED`` in ``campaign.store.sql``) and finishes those in
  flight. ``resume`` removes it, with a ``resumed`` event (``*``: every pause).
- ``cancel`` moves queued, deferred and held letters to the final state ``cancelled`` (the
  ``cancelled`` move of ``campaign.transitions``), with the reason in the event and in the
  row's ``wait_reason`` (what `log` shows for it). Letters in
  flight (``sending``) are never touched: they are reported back to the caller.
- ``reschedule`` gives a queued or deferred letter a new earliest time (``queue --at``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from campaign.errors import SelectionError
from campaign.transitions import UNSENT, Status

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from campaign.store.sql import Tx

ALL = "*"


@dataclass
class CancelResult:
    cancelled: list[dict[str, Any]] = field(default_factory=list)  # id, message_id, campaign, recipient, status
    in_flight: list[dict[str, Any]] = field(default_factory=list)  # sending now: not touched
    final: list[dict[str, Any]] = field(default_factory=list)  # already sent, failed, cancelled, …


class ControlStore:
    """Mixed into ``SqlStore``."""

    if TYPE_CHECKING:

        def transaction(self) -> AbstractContextManager[Tx]: ...

        def reading(self) -> AbstractContextManager[Tx]: ...

    def pause(self, campaign: str, now_ms: int, *, reason: str | None = None) -> bool:
        """Pause ``campaign`` (``*``: all). Returns False when it was paused already."""
        from campaign.store.sql import iso

        with self.transaction() as tx:
            row = tx.one("SELECT paused_at FROM campaign_controls WHERE campaign = ?", (campaign,))
            if row is not None and row["paused_at"] is not None:
                return False
            tx.execute(
                "INSERT INTO campaign_controls (campaign, paused_at, reason) VALUES (?, ?, ?) "
                "ON CONFLICT (campaign) DO UPDATE SET paused_at = excluded.paused_at, reason = excluded.reason",
                (campaign, iso(now_ms), reason),
            )
            tx.append(
                now_ms,
                "paused",
                campaign=None if campaign == ALL else campaign,
                data={"reason": reason, "all": True if campaign == ALL else None},
            )
        return True

    def resume(self, campaign: str, now_ms: int) -> list[str]:
        """Resume ``campaign``; ``*`` lifts every pause (that of all campaigns and each
        campaign's own). Returns the pauses lifted (campaign names, ``*``): empty when
        nothing was paused. One ``resumed`` event each."""
        with self.transaction() as tx:
            where = "paused_at IS NOT NULL" + ("" if campaign == ALL else " AND campaign = ?")
            rows = tx.rows(
                f"SELECT campaign FROM campaign_controls WHERE {where} ORDER BY campaign",
                () if campaign == ALL else (campaign,),
            )
            lifted = [r["campaign"] for r in rows]
            for name in lifted:
                tx.execute("DELETE FROM campaign_controls WHERE campaign = ?", (name,))
                tx.append(
                    now_ms,
                    "resumed",
                    campaign=None if name == ALL else name,
                    data={"all": True if name == ALL else None},
                )
        return lifted

    def paused(self) -> dict[str, tuple[str, str | None]]:
        """{campaign or ``*``: (paused at, reason)}."""
        with self.reading() as tx:
            rows = tx.rows("SELECT campaign, paused_at, reason FROM campaign_controls WHERE paused_at IS NOT NULL")
        return {r["campaign"]: (r["paused_at"], r["reason"]) for r in rows}

    def paused_pending(self, campaign: str | None = None, recipients: Sequence[str] = ()) -> dict[str, int]:
        """{campaign: letters not sent yet that its pause (or the pause of all) holds back},
        for `send` and `plan` to say what waits and why."""
        from campaign.store.sql import _PENDING_SQL, NOT_PAUSED, scope

        limits, params = scope(campaign, recipients=recipients)
        where = " AND ".join([f"status IN ({_PENDING_SQL}) AND NOT ({NOT_PAUSED})", *limits])
        sql = f"SELECT campaign, COUNT(*) AS n FROM messages WHERE {where} GROUP BY campaign ORDER BY campaign"
        with self.reading() as tx:
            return {r["campaign"]: int(r["n"]) for r in tx.rows(sql, params)}

    def cancel(
        self,
        now_ms: int,
        *,
        ids: Sequence[int] = (),
        recipients: Sequence[str] = (),
        campaign: str | None = None,
        reason: str | None = None,
    ) -> CancelResult:
        """Cancel the letters chosen by ids, institutions and/or campaign (all that is given
        must match). Raises SelectionError for an id that does not exist."""
        from campaign.store.sql import iso, scope

        clauses, params = scope(campaign, ids, recipients)
        where = " AND ".join(clauses) or "1 = 1"
        result = CancelResult()
        with self.transaction() as tx:
            rows = tx.rows(
                f"SELECT id, message_id, campaign, recipient, email, status FROM messages WHERE {where} ORDER BY id",
                params,
            )
            missing = sorted(set(ids) - {int(r["id"]) for r in rows})
            if missing:
                raise SelectionError(
                    f"no letter with id {', '.join(map(str, missing))}", hint="see the ids with `campaign log`"
                )
            for row in rows:
                status = Status(row["status"])
                entry = dict(row)
                if status == Status.SENDING:
                    result.in_flight.append(entry)
                    continue
                if status not in UNSENT:
                    result.final.append(entry)
                    continue
                tx.move(
                    int(row["id"]),
                    "cancelled",
                    sources=(status,),
                    target=Status.CANCELLED,
                    now_ms=now_ms,
                    message=row["message_id"],
                    campaign=row["campaign"],
                    # The reason stays on the row too, where `log` shows a held letter's reason.
                    sets={"next_attempt_at": None, "wait_reason": reason, "updated_at": iso(now_ms)},
                    data={"from": status.value, "reason": reason},
                )
                result.cancelled.append(entry)
        return result


def reschedule(
    tx: Tx, row_id: int, status: str, message_id: str, campaign: str, *, now_ms: int, at_ms: int, reason: str
) -> None:
    """``queue --at`` on a letter already queued: a new earliest time (inside the queue's
    write transaction)."""
    from campaign.store.sql import iso

    tx.move(
        row_id,
        "rescheduled",
        sources=(Status(status),),
        target=None,
        now_ms=now_ms,
        message=message_id,
        campaign=campaign,
        sets={"next_attempt_at": at_ms, "wait_reason": reason, "updated_at": iso(now_ms)},
        data={"not_before": iso(at_ms)},
    )
