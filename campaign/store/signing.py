"""Signing drives and signatures in the store (SQL only; the scheme is in ``campaign.signing``).

Contract:
- A drive's texts are frozen when it opens: later edits to letters/ do not change what
  supporters read or what their commitments refer to.
- Names, pseudonyms, sealed real names and signature images live only in ``signatures``.
  The append-only chain never sees them: it records ``drive_opened``, ``signatures_removed``
  (a count) and ``drive_closed`` (count and Merkle root). No event is written per
  signature, because an event's millisecond time is itself an identifier.
- :func:`add_signature` checks inside its transaction that the drive is open and its
  deadline has not passed, so a signature can never land in a closed drive.
- Deleting (withdrawal, an organiser's removal) overwrites the freed bytes: SQLite runs
  with ``secure_delete`` for every write here and checkpoints the WAL (TRUNCATE) after a
  deletion; PostgreSQL vacuums the table after a deletion. A checkpoint that another
  reader keeps from finishing is tried again for about a second; if it still cannot
  finish, the deletion stands and :class:`Deletion` says why the bytes may remain
  (``leftover``), for the caller to tell the organiser. :func:`scrub` tries again.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from campaign.errors import SelectionError, SigningError
from campaign.store.sql import SqlStore, Tx, iso


@dataclass(frozen=True)
class NewDrive:
    name: str
    token: str
    letter: str
    institutions: list[str]
    closes_at: str | None
    allow_pseudonyms: bool
    fields: list[str]
    passphrase_hash: str | None
    rate_per_minute: int
    names_public_key: str | None
    reference_recipient: str
    text_lang: str
    subject: str
    text: str
    body_html: str
    text_sha256: str
    date_text: str
    reference: str


@dataclass(frozen=True)
class DriveText:
    lang: str
    subject: str
    text: str
    body_html: str
    text_sha256: str


@dataclass(frozen=True)
class NewSignature:
    commitment: str
    name: str
    pseudonymous: bool
    sealed_name: bytes | None
    title: str | None
    city: str | None
    signature_png: bytes | None
    typed_signature: str | None
    ui_lang: str
    text_lang: str
    text_sha256: str
    translation_lang: str | None
    translation_sha256: str | None
    consented_to: list[str]


DRIVE_COLUMNS = (
    "id, name, token, letter, institutions, status, created_at, closes_at, closed_at, allow_pseudonyms, fields, "
    "passphrase_hash, rate_per_minute, names_public_key, reference_recipient, text_lang, subject, text, body_html, "
    "text_sha256, date_text, reference, signature_count, root, key_fingerprint"
)


def _drive(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    out = dict(row)
    out["institutions"] = json.loads(out["institutions"])
    out["fields"] = json.loads(out["fields"])
    out["allow_pseudonyms"] = bool(out["allow_pseudonyms"])
    return out


@contextlib.contextmanager
def _writing(store: SqlStore) -> Iterator[Tx]:
    if store.dialect == "sqlite":
        store.conn.execute("PRAGMA secure_delete=ON")  # type: ignore[attr-defined]
    with store.transaction() as tx:
        yield tx


SCRUB_WAITS = (0.05, 0.1, 0.2, 0.3)  # seconds between checkpoint attempts (with a 200 ms busy wait each)


@dataclass(frozen=True)
class Deletion:
    count: int
    leftover: str | None = None  # why deleted bytes may still be on disk; None when scrubbed


def scrub(store: SqlStore) -> str | None:
    """After a deletion: no copy of the deleted bytes stays in the WAL or dead tuples.
    Returns None when done, else why not (one line, no data)."""
    if store.dialect != "sqlite":
        import psycopg

        try:
            store.conn.execute("VACUUM signatures")  # type: ignore[attr-defined]
        except psycopg.Error as err:
            return f"VACUUM signatures failed ({type(err).__name__}), so deleted rows may remain in its dead tuples"
        return None
    import sqlite3

    conn: Any = store.conn  # type: ignore[attr-defined]
    try:
        previous = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
        # A short wait per attempt: a withdrawal must not hold the signing page for the
        # store's whole busy timeout while another program reads.
        conn.execute("PRAGMA busy_timeout=200")
        try:
            for wait in (*SCRUB_WAITS, None):
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                if not busy:
                    return None
                if wait is not None:
                    time.sleep(wait)
        finally:
            conn.execute(f"PRAGMA busy_timeout={previous}")
    except sqlite3.Error as err:
        return f"the write-ahead log could not be checkpointed ({err})"
    return (
        f"another program was reading {store.label}, so the write-ahead log could not be checkpointed and "
        "the deleted signature's bytes remain in the database files"
    )


def create_drive(store: SqlStore, drive: NewDrive, texts: Sequence[DriveText], now_ms: int) -> int:
    """Insert a drive and its translations; log ``drive_opened``. Returns its id."""
    now = iso(now_ms)
    with _writing(store) as tx:
        if tx.one("SELECT id FROM signing_drives WHERE name = ?", (drive.name,)):
            raise SigningError(f"a drive named {drive.name!r} exists already", hint="choose another --name")
        tx.execute(
            "INSERT INTO signing_drives (name, token, letter, institutions, status, created_at, closes_at, "
            "allow_pseudonyms, fields, passphrase_hash, rate_per_minute, names_public_key, reference_recipient, "
            "text_lang, subject, text, body_html, text_sha256, date_text, reference) "
            "VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                drive.name,
                drive.token,
                drive.letter,
                json.dumps(drive.institutions),
                now,
                drive.closes_at,
                int(drive.allow_pseudonyms),
                json.dumps(drive.fields),
                drive.passphrase_hash,
                drive.rate_per_minute,
                drive.names_public_key,
                drive.reference_recipient,
                drive.text_lang,
                drive.subject,
                drive.text,
                drive.body_html,
                drive.text_sha256,
                drive.date_text,
                drive.reference,
            ),
        )
        row = tx.cursor.fetchone()
        drive_id = int(row[0] if not isinstance(row, dict) else row["id"])
        for text in texts:
            tx.execute(
                "INSERT INTO signing_texts (drive, lang, subject, text, body_html, text_sha256) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (drive_id, text.lang, text.subject, text.text, text.body_html, text.text_sha256),
            )
        tx.append(
            now_ms,
            "drive_opened",
            campaign=drive.name,
            data={
                "drive": drive.name,
                "letter": drive.letter,
                "institutions": drive.institutions,
                "text_lang": drive.text_lang,
                "text_sha256": drive.text_sha256,
                "closes_at": drive.closes_at,
                "allow_pseudonyms": drive.allow_pseudonyms,
            },
        )
    return drive_id


def find_drive(store: SqlStore, *, name: str | None = None, token: str | None = None) -> dict[str, Any] | None:
    """A drive by name or by link token (None when unknown)."""
    column, value = ("name", name) if name is not None else ("token", token)
    with store.reading() as tx:
        return _drive(tx.one(f"SELECT {DRIVE_COLUMNS} FROM signing_drives WHERE {column} = ?", (value,)))


def get_drive(store: SqlStore, name: str) -> dict[str, Any]:
    """A drive by name. Raises SelectionError naming the known drives."""
    found = find_drive(store, name=name)
    if found is None:
        names = [d["name"] for d in list_drives(store)]
        known = f"; drives: {', '.join(names[:10])}" if names else "; there are no drives yet"
        raise SelectionError(f"no signing drive named {name!r}{known}", hint="see `campaign sign list`")
    return found


def list_drives(store: SqlStore) -> list[dict[str, Any]]:
    """Every drive with its current number of signatures."""
    with store.reading() as tx:
        rows = tx.rows(
            f"SELECT {DRIVE_COLUMNS}, (SELECT COUNT(*) FROM signatures s WHERE s.drive = d.id) AS signed "
            "FROM signing_drives d ORDER BY id"
        )
    return [d for d in (_drive(r) for r in rows) if d is not None]


def drive_texts(store: SqlStore, drive_id: int) -> list[DriveText]:
    with store.reading() as tx:
        rows = tx.rows(
            "SELECT lang, subject, text, body_html, text_sha256 FROM signing_texts WHERE drive = ? ORDER BY lang",
            (drive_id,),
        )
    return [DriveText(**dict(r)) for r in rows]


def add_signature(store: SqlStore, drive_id: int, sig: NewSignature, now_ms: int) -> int:
    """Store one signature if the drive is open and before its deadline; returns the count.

    Raises SigningError("closed") otherwise; nothing is stored then."""
    now = iso(now_ms)
    with _writing(store) as tx:
        drive = tx.one("SELECT status, closes_at FROM signing_drives WHERE id = ?" + store.lock_suffix, (drive_id,))
        if drive is None:
            raise SigningError("unknown drive")
        if drive["status"] != "open" or (drive["closes_at"] and drive["closes_at"] <= now):
            raise SigningError("closed")
        tx.execute(
            "INSERT INTO signatures (drive, commitment, name, pseudonymous, sealed_name, title, city, signature_png, "
            "typed_signature, ui_lang, text_lang, text_sha256, translation_lang, translation_sha256, consented_to, "
            "signed_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                drive_id,
                sig.commitment,
                sig.name,
                int(sig.pseudonymous),
                sig.sealed_name,
                sig.title,
                sig.city,
                sig.signature_png,
                sig.typed_signature,
                sig.ui_lang,
                sig.text_lang,
                sig.text_sha256,
                sig.translation_lang,
                sig.translation_sha256,
                json.dumps(sig.consented_to),
                now[:10],
            ),
        )
        row = tx.one("SELECT COUNT(*) AS n FROM signatures WHERE drive = ?", (drive_id,))
    return int(row["n"]) if row else 0


SIGNATURE_COLUMNS = (
    "id, commitment, name, pseudonymous, sealed_name, title, city, signature_png, typed_signature, ui_lang, "
    "text_lang, text_sha256, translation_lang, translation_sha256, consented_to, signed_on"
)


def signatures(store: SqlStore, drive_id: int) -> list[dict[str, Any]]:
    with store.reading() as tx:
        rows = tx.dicts(f"SELECT {SIGNATURE_COLUMNS} FROM signatures WHERE drive = ? ORDER BY id", (drive_id,))
    for row in rows:
        row["consented_to"] = json.loads(row["consented_to"])
        for key in ("sealed_name", "signature_png"):
            if isinstance(row[key], memoryview):
                row[key] = bytes(row[key])
    return rows


def commitments(store: SqlStore, drive_id: int) -> list[str]:
    with store.reading() as tx:
        return [r["commitment"] for r in tx.rows("SELECT commitment FROM signatures WHERE drive = ?", (drive_id,))]


def withdraw(store: SqlStore, drive_id: int, commitment: str, check: Callable[[dict[str, Any]], bool]) -> Deletion:
    """Delete the signature with ``commitment`` if the drive is open and ``check(row)``
    accepts it (the receipt's salt reproduces the commitment): count 1, else 0."""
    with _writing(store) as tx:
        drive = tx.one("SELECT status FROM signing_drives WHERE id = ?" + store.lock_suffix, (drive_id,))
        if drive is None or drive["status"] != "open":
            raise SigningError("closed")
        row = tx.one(
            "SELECT id, name, text_sha256 FROM signatures WHERE drive = ? AND commitment = ?", (drive_id, commitment)
        )
        if row is None or not check(dict(row)):
            return Deletion(0)
        tx.execute("DELETE FROM signatures WHERE id = ?", (row["id"],))
    return Deletion(1, scrub(store))


def remove_signatures(store: SqlStore, drive_id: int, ids: Sequence[int], now_ms: int) -> Deletion:
    """The organiser removes signatures from an open drive (fakes); logged as a count."""
    with _writing(store) as tx:
        drive = tx.one("SELECT name, status FROM signing_drives WHERE id = ?" + store.lock_suffix, (drive_id,))
        if drive is None or drive["status"] != "open":
            raise SigningError("this drive is closed: its signatures are frozen", hint="remove before `sign close`")
        found = tx.rows(
            f"SELECT id FROM signatures WHERE drive = ? AND id IN ({', '.join('?' for _ in ids)})", (drive_id, *ids)
        )
        missing = sorted(set(ids) - {int(r["id"]) for r in found})
        if missing:
            raise SelectionError(f"drive {drive['name']} has no signature #{missing[0]}", hint="see `sign review`")
        for sid in ids:
            tx.execute("DELETE FROM signatures WHERE id = ?", (sid,))
        left = tx.one("SELECT COUNT(*) AS n FROM signatures WHERE drive = ?", (drive_id,))
        tx.append(
            now_ms,
            "signatures_removed",
            campaign=drive["name"],
            data={"drive": drive["name"], "removed": len(ids), "count": int(left["n"]) if left else 0},
        )
    return Deletion(len(ids), scrub(store))


def close_drive(
    store: SqlStore,
    drive_id: int,
    now_ms: int,
    *,
    expected: Sequence[str],
    root: str,
    key_fingerprint: str,
    cover_pdf: bytes,
) -> None:
    """Freeze the drive with its count and root, if its commitments are still ``expected``
    (a signature that arrived meanwhile makes the caller compute again)."""
    with _writing(store) as tx:
        drive = tx.one("SELECT name, status FROM signing_drives WHERE id = ?" + store.lock_suffix, (drive_id,))
        if drive is None:
            raise SigningError("unknown drive")
        if drive["status"] != "open":
            raise SigningError(f"drive {drive['name']} is closed already")
        now_set = sorted(
            r["commitment"] for r in tx.rows("SELECT commitment FROM signatures WHERE drive = ?", (drive_id,))
        )
        if now_set != sorted(expected):
            raise SigningError("changed")
        tx.execute(
            "UPDATE signing_drives SET status = 'closed', closed_at = ?, signature_count = ?, root = ?, "
            "key_fingerprint = ?, cover_pdf = ? WHERE id = ?",
            (iso(now_ms), len(expected), root, key_fingerprint, cover_pdf, drive_id),
        )
        tx.append(
            now_ms,
            "drive_closed",
            campaign=drive["name"],
            data={"drive": drive["name"], "count": len(expected), "root": root, "key_fingerprint": key_fingerprint},
        )


def cover_pdf(store: SqlStore, drive_id: int) -> bytes | None:
    with store.reading() as tx:
        row = tx.one("SELECT cover_pdf FROM signing_drives WHERE id = ?", (drive_id,))
    if row is None or row["cover_pdf"] is None:
        return None
    return bytes(row["cover_pdf"])
