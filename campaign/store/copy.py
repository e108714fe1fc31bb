"""Copying a whole store into another (`campaign store migrate`, `campaign plan`'s snapshot)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from campaign.store.sql import SqlStore

COPY_TABLES: list[tuple[str, str]] = [
    ("messages", "id"),
    ("body_dicts", "id"),
    ("message_bodies", "id"),
    ("events", "seq"),
    ("pacing", "key"),
    ("daily_counts", "recipient, day"),
    ("blobs", "sha256"),
    ("receipts", "id"),
    ("workers", "id"),
    ("mailbox_positions", "account, folder"),
    ("signing_drives", "id"),
    ("signing_texts", "drive, lang"),
    ("signatures", "id"),
    ("chain_meta", "id"),
    ("campaign_controls", "campaign"),  # pauses: a migrated store and a plan honour them
]
SIGNING_TABLES = ("signing_drives", "signing_texts", "signatures")  # not copied into plans


def copy_state(
    source: SqlStore,
    target: SqlStore,
    *,
    bodies: bool = True,
    events: bool = True,
    batch: int = 2000,
    on_progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Copy every row of the state tables from ``source`` into an empty ``target``.

    Used by `campaign store migrate` (everything) and `campaign plan` (no bodies, no
    events). Returns rows copied per table. The chain head travels with the events.
    """
    copied: dict[str, int] = {}
    if not (bodies and events):
        target.plan_copy = True  # nothing to check the bytes against: it sends nothing real
    for table, order in COPY_TABLES:
        if (table == "events" and not events) or (table in ("message_bodies", "body_dicts") and not bodies):
            continue
        if table in SIGNING_TABLES and not bodies:
            continue
        count = 0
        last: Any = None
        keyset = "," not in order  # single-column keys page by value: OFFSET would rescan
        while True:
            with source.reading() as tx:
                if keyset:
                    where = f" WHERE {order} > ?" if last is not None else ""
                    sql = f"SELECT * FROM {table}{where} ORDER BY {order} LIMIT {int(batch)}"
                    rows = [dict(row) for row in tx.rows(sql, (last,) if last is not None else ())]
                else:
                    sql = f"SELECT * FROM {table} ORDER BY {order} LIMIT {int(batch)} OFFSET {int(count)}"
                    rows = [dict(row) for row in tx.rows(sql)]
            if not rows:
                break
            with target.transaction() as tx:
                for row in rows:
                    columns = ", ".join(row)
                    marks = ", ".join("?" for _ in row)
                    values = [bytes(v) if isinstance(v, memoryview) else v for v in row.values()]
                    tx.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", values)
            count += len(rows)
            last = rows[-1][order] if keyset else None
            if on_progress:
                on_progress(table, count)
        copied[table] = count
    if events:
        head = source.chain_head()
        with target.transaction() as tx:
            tx.execute("UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1", head)
        key = source.known_key()
        if key is not None and target.key_in_store:
            target.adopt_key(key)  # a shared log keeps the key its events were tagged with
    target.after_copy()
    return copied
