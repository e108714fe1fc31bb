"""The message state machine: every allowed move of a letter, and the event it writes.

Contract:
- :data:`TRANSITIONS` is the one table of moves. The store changes a message's status
  only through its guarded move (``Tx.move`` in ``campaign.store.sql``), which refuses a
  move that is not in this table and checks that its UPDATE matched exactly the row it
  meant to (a status that changed underneath is a conflict, never a silent no-op).
- A move is named by the event it writes into the chain, so "what happened" and "what
  the row says" cannot drift apart. A few events change no status (``updated``: new
  bytes for an unsent letter); they are listed with the same source and target.
- docs/ARCHITECTURE.md's table is :func:`markdown_table` verbatim
  (``test_the_architecture_document_shows_the_transition_table`` in
  tests/test_core_failure.py compares them).

Pure and cheap to import (no pydantic): the CLI uses :class:`Status` for its options
without loading the models. ``campaign.models`` re-exports it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Status(enum.StrEnum):
    """The state of one queued message (see docs/ARCHITECTURE.md)."""

    QUEUED = "queued"
    SENDING = "sending"
    DEFERRED = "deferred"
    SENT = "sent"
    FAILED = "failed"
    HELD = "held"
    DELIVERED = "delivered"
    RELAYED = "relayed"
    BOUNCED = "bounced"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL


Q, SENDING, D = Status.QUEUED, Status.SENDING, Status.DEFERRED
SENT, FAILED, HELD = Status.SENT, Status.FAILED, Status.HELD
RELAYED, DELIVERED, BOUNCED = Status.RELAYED, Status.DELIVERED, Status.BOUNCED
CANCELLED = Status.CANCELLED

PENDING: tuple[Status, ...] = (Q, D)
"""Letters that still wait to go (a claim takes them when due)."""
UNSENT: tuple[Status, ...] = (Q, D, HELD)
"""Letters never accepted by a server that a person may still change or cancel."""
DELIVERY: tuple[Status, ...] = (SENT, RELAYED, DELIVERED, BOUNCED)
"""Letters a server accepted; receipts move them forward only."""
FINAL = frozenset({SENT, FAILED, HELD, DELIVERED, RELAYED, BOUNCED, CANCELLED})
"""No send will move these (a person may: release, or a receipt moves a sent letter on)."""


@dataclass(frozen=True)
class Transition:
    event: str
    sources: tuple[Status | None, ...]  # None: the message does not exist yet
    target: Status | None  # None: the status does not change
    why: str


TRANSITIONS: tuple[Transition, ...] = (
    Transition("queued", (None,), Q, "`campaign queue` stores a rendered letter"),
    Transition("updated", UNSENT, None, "`queue --update`: new bytes, same Message-ID"),
    Transition("rescheduled", PENDING, None, "`queue --at` on a letter already queued: a new earliest time"),
    Transition("sending", PENDING, SENDING, "a claim, committed before any byte is sent"),
    Transition("not_sent", (SENDING,), None, "a claimed letter put back untouched: back to its previous status"),
    Transition("sent", (SENDING,), SENT, "the server answered the final dot with 2xx"),
    Transition("deferred", (SENDING,), D, "4xx, or the connection failed before the final dot left"),
    Transition("outcome_unknown", (SENDING,), D, "no reply after the final dot: retried as a possible duplicate"),
    Transition("outcome_unknown_final", (SENDING,), FAILED, "the same, once max_age has passed"),
    Transition("failed", (SENDING, D), FAILED, "5xx (not 5.7.x), or a deferral older than max_age"),
    Transition(
        "held",
        (SENDING, Q, D),
        HELD,
        "5.7.x: a person must look; or, before a claim, its institution or address left the registry",
    ),
    Transition("crash_recovered", (SENDING,), D, "found sending after a crash or an expired lease"),
    Transition("released", (HELD, FAILED), Q, "`campaign release`: a person checked it (fresh max_age)"),
    Transition("cancelled", UNSENT, CANCELLED, "`campaign cancel`: it will not be sent"),
    Transition(
        "receipt",
        (Q, SENDING, D, SENT, RELAYED),
        None,
        "a delivery report about an attempted letter: forward only, and a server took it, so no retry",
    ),
)
"""Every move (event, from, to). ``receipt`` targets vary; see :func:`receipt_target`."""

_BY_EVENT = {t.event: t for t in TRANSITIONS}
EVENT_OF_MOVE = {"outcome_unknown_final": "outcome_unknown"}
"""Moves whose chain event is written under another name."""


class IllegalMove(ValueError):
    """A move that the table does not allow (a bug in the caller, never user input)."""


def transition(event: str) -> Transition:
    try:
        return _BY_EVENT[event]
    except KeyError:
        raise IllegalMove(f"no such move: {event!r}") from None


def check(event: str, sources: Iterable[Status], target: Status | None) -> Transition:
    """The transition for ``event``; raises IllegalMove unless every source and the target
    are what the table allows for it."""
    move = transition(event)
    for source in sources:
        if source not in move.sources:
            raise IllegalMove(f"{event}: not allowed from {source}")
    if target != move.target and not (event == "receipt" and target in DELIVERY):
        if not (event == "not_sent" and target in PENDING):
            raise IllegalMove(f"{event}: not allowed to {target}")
    return move


def receipt_target(current: Status, outcome: Status) -> Status | None:
    """Where a delivery report moves a letter, or None: forward only (sent < relayed <
    delivered | bounced); a letter still pending or in flight moves to the outcome (a
    server took it). Whether the letter was attempted at all is the caller's check."""
    rank = {SENT: 0, RELAYED: 1, DELIVERED: 2, BOUNCED: 2}
    if outcome not in rank or outcome == SENT:
        return None
    if current in rank:
        return outcome if rank[outcome] > rank[current] else None
    return outcome if current in transition("receipt").sources else None


def markdown_table() -> str:
    """The table as it appears in docs/ARCHITECTURE.md."""
    lines = ["| event | from | to | when |", "|---|---|---|---|"]
    for t in TRANSITIONS:
        sources = ", ".join("(new)" if s is None else s.value for s in t.sources)
        target = "(unchanged)" if t.target is None else t.target.value
        if t.event == "not_sent":
            target = "(previous)"
        if t.event == "receipt":
            target = "relayed, delivered, bounced"
        lines.append(f"| {EVENT_OF_MOVE.get(t.event, t.event)} | {sources} | {target} | {t.why} |")
    return "\n".join(lines)
