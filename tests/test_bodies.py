"""Bodies are stored compressed (a zlib dictionary per campaign, letter and language) and
every reader gets the exact bytes back; a migration compresses what was stored before."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from campaign.store import NewMessage, open_store
from campaign.store.bodies import decode


def letter(i: int, campaign: str = "c") -> NewMessage:
    text = "Уважаемые дамы и господа! Мы пишем по поводу соглашения 1997 года. " * 60
    body = f"To: office{i}@inst.example\r\nSubject: x\r\n\r\n{text}\r\nПолучатель {i}\r\n".encode()
    return NewMessage(
        campaign=campaign,
        letter="l",
        recipient=f"r{i}",
        email=f"office{i}@inst.example",
        email_key=f"office{i}@inst.example",
        domain="inst.example",
        contact_name=None,
        lang="ru",
        subject="x",
        message_id=f"<{campaign}.{i}@campaign.example>",
        envid=f"{i:032x}",
        body=body,
        content_sha256="0" * 64,
    )


def test_bodies_read_back_exactly_and_similar_letters_share_a_dictionary(store_url: str) -> None:
    with open_store(store_url) as store, store.enqueue(1_000) as session:
        for i in range(20):
            session.add(letter(i))
    with open_store(store_url) as store:
        for m in store.messages():
            _, body = store.wire_bytes(m.id)
            assert body == letter(int(m.recipient[1:])).body
        with store.reading() as tx:
            rows = tx.rows("SELECT id, body, encoding FROM message_bodies ORDER BY id")
            sizes = [len(bytes(r["body"])) for r in rows]
            assert all(r["encoding"].startswith("zdict:") for r in rows)
            assert max(sizes[1:]) < len(letter(1).body) // 20, sizes  # a few hundred bytes each
            assert decode(tx, rows[3]["body"], rows[3]["encoding"]) == letter(3).body


def test_the_migration_compresses_bodies_stored_before(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with open_store(f"sqlite:///{db}") as store, store.enqueue(1_000) as session:
        session.add(letter(1))
    raw = letter(1).body
    with sqlite3.connect(db) as conn:  # as an older version left it: raw bytes, no encoding
        conn.execute("UPDATE message_bodies SET body = ?, encoding = NULL", (raw,))
        conn.execute("DELETE FROM schema_migrations WHERE name = '0012_compact_bodies'")
        conn.execute("DROP TABLE body_dicts")
        conn.execute("ALTER TABLE message_bodies DROP COLUMN encoding")
    with open_store(f"sqlite:///{db}") as store:
        [m] = store.messages()
        assert store.wire_bytes(m.id)[1] == raw
        with store.reading() as tx:
            row = tx.one("SELECT body, encoding FROM message_bodies")
        assert row is not None and row["encoding"] == "zlib" and len(bytes(row["body"])) < len(raw) // 3
