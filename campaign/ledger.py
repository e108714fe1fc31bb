"""Reading and verifying the append-only, hash-chained event log.

Contract: :func:`verify` recomputes every event's hash from its stored fields (see
``campaign.chain``), checks that each names its predecessor's hash and that the
sequence has no gaps, and that the stored chain head matches the last event (so a
cut-off tail is noticed too). It reports the first broken event by number; it never
changes anything. What the chain proves: that no recorded event was altered,
removed or inserted after the fact *relative to a head hash you kept elsewhere*
(in an exported bundle, a note, a message to a colleague).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from campaign import chain
from campaign.store.sql import SqlStore


@dataclass(frozen=True)
class Verification:
    """The outcome of a chain check."""

    ok: bool
    count: int
    head: str
    broken_seq: int | None = None
    reason: str | None = None


def check_event(row: dict[str, Any], expected_seq: int, prev_hash: str) -> str | None:
    """Why the stored event ``row`` does not continue the chain, or None if it does."""
    if int(row["seq"]) != expected_seq:
        return f"expected event {expected_seq}, found {row['seq']} (an event is missing)"
    if row["prev_hash"] != prev_hash:
        return "its previous-hash does not match the event before it"
    try:
        data = json.loads(row["data"])
    except (TypeError, ValueError):
        return "its data is not valid JSON"
    rec = chain.record(row["time"], row["kind"], row["message"], row["campaign"], data)
    try:
        digest = chain.link(prev_hash, rec)
    except ValueError as err:
        return f"its data cannot be hashed: {err}"
    if digest != row["hash"]:
        return "its content does not match its hash (it was changed after it was written)"
    return None


def verify(store: SqlStore, *, batch: int = 5000) -> Verification:
    """Recompute the whole chain. Never raises for a broken chain: it reports it."""
    prev = chain.GENESIS
    count = 0
    last = 0
    while True:
        rows = store.raw_events(after_seq=last, limit=batch)
        if not rows:
            break
        for row in rows:
            reason = check_event(row, count + 1, prev)
            if reason is not None:
                return Verification(False, count, prev, int(row["seq"]), reason)
            prev = row["hash"]
            count += 1
        last = int(rows[-1]["seq"])
    head_seq, head_hash = store.chain_head()
    if head_seq != count or head_hash != prev:
        return Verification(
            False, count, prev, count + 1 if head_seq > count else head_seq,
            f"the chain head says {head_seq} events ending in {head_hash[:12]}…, but the log has {count} "
            f"ending in {prev[:12]}… (events were removed)",
        )
    return Verification(True, count, prev)
