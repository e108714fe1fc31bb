"""Reading and verifying the append-only, hash-chained event log, and the bytes it names.

Contract: :func:`verify` recomputes every event's hash from its stored fields (format 1
or 2, see ``campaign.chain``), checks that each names its predecessor's hash, that the
sequence has no gaps, that no format-1 event follows a format-2 one, and that the stored
chain head matches the last event (so a cut-off tail is noticed too). With the
workspace's chain key it also checks that each format-2 event's tags are those of its
campaign and letter. Then it checks every stored letter against the log the way
``campaign send`` does before sending (see ``campaign.store.integrity``): the body
against the ``body_sha256`` of its latest ``queued``/``updated`` event, and the bytes of
an attempted letter against its latest ``sending`` event. It reports the first broken
event by number and every letter whose bytes do not match; it never changes anything.
What the chain proves: that no recorded event was altered, removed or inserted after the
fact *relative to a head hash you kept elsewhere* (in an exported bundle, a note, a
message to a colleague).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from campaign import chain
from campaign.store.integrity import SealTracker, check_bytes
from campaign.store.sql import SqlStore


@dataclass(frozen=True)
class Verification:
    """The outcome of a chain check (and of the stored bytes against it)."""

    ok: bool
    count: int
    head: str
    broken_seq: int | None = None
    reason: str | None = None
    problems: list[str] = field(default_factory=list)  # letters whose bytes do not match the log
    caveats: list[str] = field(default_factory=list)  # what this log cannot prove (format 1)
    v2_from: int | None = None  # the first event in log format 2


def check_event(row: dict[str, Any], expected_seq: int, prev_hash: str, *, after_v2: bool = False) -> str | None:
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
    version = int(row.get("format") or chain.FORMAT_V1)
    try:
        if version == chain.FORMAT_V2:
            ctag, mtag = row.get("ctag") or chain.NO_TAG, row.get("mtag") or chain.NO_TAG
            digest = chain.link_v2(prev_hash, str(ctag), str(mtag), chain.record_digest(rec))
        elif version == chain.FORMAT_V1:
            if after_v2:
                return "it is in log format 1 after format-2 events (it was inserted or rewritten)"
            digest = chain.link(prev_hash, rec)
        else:
            return f"it is in an unknown log format ({version})"
    except (ValueError, UnicodeError) as err:
        return f"its data cannot be hashed: {err}"
    if digest != row["hash"]:
        return "its content does not match its hash (it was changed after it was written)"
    return None


def verify(store: SqlStore, *, batch: int = 5000) -> Verification:
    """Recompute the whole chain, then check every stored letter's bytes against it.

    Never raises for a broken chain or changed bytes: it reports them.
    """
    prev = chain.GENESIS
    count = 0
    last = 0
    v2_from: int | None = None
    key = store.known_key()
    tag_problems: list[str] = []
    seals: dict[str, SealTracker] = {}
    while True:
        rows = store.raw_events(after_seq=last, limit=batch)
        if not rows:
            break
        for row in rows:
            reason = check_event(row, count + 1, prev, after_v2=v2_from is not None)
            if reason is not None:
                return Verification(False, count, prev, int(row["seq"]), reason, v2_from=v2_from)
            if int(row.get("format") or 1) == chain.FORMAT_V2:
                if v2_from is None:
                    v2_from = int(row["seq"])
                if key is not None and len(tag_problems) < 20:
                    want = (chain.tag(key, "campaign", row["campaign"]), chain.tag(key, "message", row["message"]))
                    if want != (row.get("ctag") or chain.NO_TAG, row.get("mtag") or chain.NO_TAG):
                        tag_problems.append(
                            f"event {row['seq']}: its tags are not those of its campaign and letter under this "
                            "workspace's chain key (it was written with another key, or its campaign was changed)"
                        )
            if row["message"] and row["kind"] in ("queued", "updated", "released", "sending"):
                seals.setdefault(str(row["message"]), SealTracker()).feed(str(row["kind"]), json.loads(row["data"]))
            prev = row["hash"]
            count += 1
        last = int(rows[-1]["seq"])
    head_seq, head_hash = store.chain_head()
    if head_seq != count or head_hash != prev:
        return Verification(
            False,
            count,
            prev,
            count + 1 if head_seq > count else head_seq,
            f"the chain head says {head_seq} events ending in {head_hash[:12]}…, but the log has {count} "
            f"ending in {prev[:12]}… (events were removed)",
            v2_from=v2_from,
        )
    problems, caveats = _check_bodies(store, seals)
    problems = tag_problems + problems
    if v2_from != 1 and count:
        upto = (v2_from - 1) if v2_from else count
        caveats.insert(
            0,
            f"events 1–{upto} are in log format 1: an evidence bundle cannot prove that none of them about its "
            "letters was left out, and letters queued then are bound to the log by their text, not their exact bytes",
        )
    if v2_from is not None and key is None:
        caveats.append("the chain key (.campaign/chain.key) is missing: the events' tags were not checked")
    return Verification(not problems, count, prev, problems=problems, caveats=caveats, v2_from=v2_from)


def _check_bodies(store: SqlStore, seals: dict[str, SealTracker]) -> tuple[list[str], list[str]]:
    """Every stored letter against what the log says its bytes are."""
    problems: list[str] = []
    caveats: list[str] = []
    last = 0
    while True:
        rows = store.body_rows(after_id=last)
        if not rows:
            break
        for row in rows:
            last = int(row["id"])
            label = f"message {row['id']} {row['message_id']}"
            tracker = seals.get(str(row["message_id"]))
            body = row["body"]
            if body is None:
                problems.append(f"{label}: its stored bytes are missing")
                continue
            if not isinstance(body, bytes | memoryview):
                problems.append(f"{label}: its stored bytes are not bytes ({type(body).__name__})")
                continue
            if tracker is None:
                problems.append(f"{label}: the log has no event about it")
                continue
            prefix = bytes(row["wire_prefix"]) if row["wire_prefix"] is not None else None
            problem, legacy, _ = check_bytes(tracker.seal(), bytes(body), prefix)
            if problem is not None:
                (caveats if legacy else problems).append(f"{label}: {problem}")
    return problems, caveats
