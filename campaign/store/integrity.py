"""Bytes bound to the chain, and the key that tags the chain (log format 2).

Contract:
- The ``queued`` and ``updated`` events record ``body_sha256``, the SHA-256 of the exact
  bytes stored for the letter (after any attachment). A claim (:meth:`IntegrityMixin.seal_problem`,
  called from ``SqlStore._mark_sending``) recomputes it from the stored bytes before a single
  byte is handed to a server; on a mismatch the letter is ``held`` with one plain reason and
  is not sent. Once a letter has a send prefix (``Date``, DKIM) the prefix plus body must
  also hash to the ``sha256`` of its latest ``sending`` event.
- A letter queued before format 2 has only ``content_sha256`` (of its text, before any
  attachment) in its ``queued`` event: it is checked against that, and a mismatch is held
  with a reason that says the log cannot tell an attachment from a change.
- ``campaign release`` of a letter held for this reason re-seals it (its ``released``
  event records the bytes a person accepted) and resets its send prefix.
- The chain key tags every format-2 event with its campaign and letter (see
  ``campaign.chain``): 32 random bytes, created on first use. A workspace's own store
  (SQLite) keeps it in ``.campaign/chain.key`` (mode 0600 whatever the umask) and
  ``chain_meta`` keeps its fingerprint: a process holding another key is refused before it
  appends, since its tags would not match the log's. A shared store (PostgreSQL, a team
  with one log and many workspaces) keeps the key itself in ``chain_meta.secret``, so every
  member tags alike without copying a file; a log moved there from a workspace
  (`store migrate`) takes that workspace's key. A store opened without a key (an in-memory
  plan, a test) uses a throwaway key and neither records nor checks it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import zlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaign import chain
from campaign.errors import StoreError
from campaign.files import write_private
from campaign.store import bodies

if TYPE_CHECKING:
    from campaign.store.sql import Tx

KEY_FILE = "chain.key"
KEY_BYTES = 32
INTEGRITY = "integrity"  # messages.last_status of a letter held because its bytes do not match
SEAL_KINDS = ("queued", "updated", "released", "sending")
_TAGS_KEPT = 4096  # event tags a store keeps (see event_tags)


def load_key(path: Path, *, create: bool = True) -> bytes:
    """The chain key in ``path``, created (0600, whatever the umask) when missing.

    Raises StoreError for a damaged or unreadable key file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        if not create:
            raise StoreError(f"{path}: no chain key") from None
        return _create_key(path)
    except OSError as err:
        raise StoreError(f"{path}: cannot read the chain key: {err.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if os.fstat(handle.fileno()).st_mode & 0o077:
            os.fchmod(handle.fileno(), 0o600)
        data = handle.read(KEY_BYTES + 1)
    if len(data) != KEY_BYTES:
        raise StoreError(
            f"{path}: the chain key is damaged ({len(data)} bytes, expected {KEY_BYTES})",
            hint="restore it from the backup of this workspace's .campaign/ folder",
        )
    return data


def _create_key(path: Path) -> bytes:
    key = secrets.token_bytes(KEY_BYTES)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(path, key, replace=False)  # never replaces a key another process created meanwhile
    except FileExistsError:
        return load_key(path, create=False)
    except OSError as err:
        raise StoreError(f"{path}: cannot create the chain key: {err.strerror}") from None
    return key


def key_fingerprint(key: bytes) -> str:
    return hmac.new(key, b"campaign chain key fingerprint", hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class Seal:
    """What the log says a letter's bytes are."""

    body_sha256: str | None  # the latest sealed hash of the stored body
    legacy: bool  # taken from a format-1 ``content_sha256`` (the text, before any attachment)
    last_sending: str | None  # sha256 of the latest ``sending`` event (prefix + body)
    updated_after: bool  # the body was replaced after the latest attempt


class SealTracker:
    """Follows one letter's events, oldest first, to what the log says its bytes are."""

    def __init__(self) -> None:
        self.body: str | None = None
        self.legacy = False
        self.last_sending: str | None = None
        self.updated_after = False

    def feed(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "sending":
            sha = data.get("sha256")
            self.last_sending = sha if isinstance(sha, str) and sha else None
            self.updated_after = False
            return
        if kind not in ("queued", "updated", "released"):
            return
        sealed = data.get("body_sha256")
        if isinstance(sealed, str) and sealed:
            self.body, self.legacy = sealed, False
        elif kind in ("queued", "updated") and isinstance(data.get("content_sha256"), str):
            self.body, self.legacy = str(data["content_sha256"]), True  # format 1: the text's hash
        else:
            return  # a release that sealed nothing
        self.updated_after = kind == "updated"

    def seal(self) -> Seal:
        return Seal(self.body, self.legacy, self.last_sending, self.updated_after)


def seal_from_events(rows: list[tuple[str, dict[str, Any]]]) -> Seal:
    """The seal from a letter's events, newest first: (kind, data) pairs."""
    tracker = SealTracker()
    for kind, data in reversed(rows):
        tracker.feed(kind, data)
    return tracker.seal()


def check_bytes(seal: Seal, body: bytes, prefix: bytes | None) -> tuple[str | None, bool, dict[str, Any]]:
    """(problem or None, whether the problem is only what format 1 cannot tell, details)."""
    found = chain.sha256_hex(body)
    details: dict[str, Any] = {"expected_sha256": seal.body_sha256, "found_sha256": found}
    if seal.body_sha256 is None:
        return "the log has no record of its bytes (no queued event)", False, details
    if found != seal.body_sha256:
        if seal.legacy:
            return (
                "it was queued before the log recorded exact bytes (log format 1), and its bytes differ from "
                "the text its queued event recorded: an attached PDF, or a change made outside campaign",
                True,
                details,
            )
        return (
            f"its stored bytes (sha256 {found[:12]}…) are not the bytes the log recorded when it was queued "
            f"({seal.body_sha256[:12]}…): they were changed outside campaign",
            False,
            details,
        )
    if prefix is None or seal.updated_after:
        return None, False, details
    if seal.last_sending is None:
        return "it has a send prefix but the log records no attempt", False, details
    wire = chain.sha256_hex(prefix + body)
    if wire != seal.last_sending:
        return (
            f"its bytes with their Date/DKIM lines (sha256 {wire[:12]}…) are not the bytes of its last attempt "
            f"({seal.last_sending[:12]}…): the database was changed outside campaign",
            False,
            {"expected_sha256": seal.last_sending, "found_sha256": wire},
        )
    return None, False, details


class IntegrityMixin:
    """The chain key and the claim-time check of a letter's bytes (part of ``SqlStore``)."""

    chain_key: bytes | None = None
    key_path: Path | None = None  # the workspace's key file (a shared store only adopts it)
    key_in_store = False  # a shared store keeps its key in chain_meta (PostgreSQL)
    plan_copy = False  # a copy without bodies or events (``campaign plan``): nothing to check
    _ephemeral_key: bytes | None = None
    _shared: bytes | None = None
    _key_checked = False
    _tags: dict[tuple[str, str], str]

    label = "store"

    if TYPE_CHECKING:

        def reading(self) -> AbstractContextManager[Tx]: ...

        def transaction(self) -> AbstractContextManager[Tx]: ...

    # -- the chain key -----------------------------------------------------------------

    def tagging_key(self, tx: Tx) -> bytes:
        """The key that tags events appended in ``tx``; refuses a key the log does not know."""
        if self.key_in_store or self._shared is not None:
            return self._shared_key(tx)
        if not self._key_checked:
            row = tx.one("SELECT secret FROM chain_meta WHERE id = 1")
            if row is not None and row["secret"] is not None:
                return self._shared_key(tx)  # a log that carries its key (copied from a shared store)
        if self.chain_key is None and self.key_path is not None:
            self.chain_key = load_key(self.key_path)
        if self.chain_key is None:
            if self._ephemeral_key is None:
                self._ephemeral_key = secrets.token_bytes(KEY_BYTES)
            return self._ephemeral_key
        if not self._key_checked:
            fingerprint = key_fingerprint(self.chain_key)
            row = tx.one("SELECT key_id FROM chain_meta WHERE id = 1")
            if row is None:
                from campaign.models import to_rfc3339, utcnow

                tx.execute(
                    "INSERT INTO chain_meta (id, key_id, created_at) VALUES (1, ?, ?)",
                    (fingerprint, to_rfc3339(utcnow())),
                )
            elif row["key_id"] != fingerprint:
                where = str(self.key_path) if self.key_path else "the chain key"
                raise StoreError(
                    f"{where} is not the key this log's events are tagged with; nothing was changed",
                    hint="use the .campaign/chain.key of the workspace that started this log (copy it "
                    "from a teammate or a backup)",
                )
            self._key_checked = True
        return self.chain_key

    def _candidate_key(self) -> bytes | None:
        if self.chain_key is not None:
            return self.chain_key
        if self.key_path is not None and self.key_path.exists():
            return load_key(self.key_path, create=False)
        return None

    def _shared_key(self, tx: Tx) -> bytes:
        """A shared log's key, from ``chain_meta`` (created, or adopted from the workspace
        whose log was moved here, on first use). Appends hold the chain head's lock, so two
        processes never create two keys."""
        if self._shared is not None:
            return self._shared
        from campaign.models import to_rfc3339, utcnow

        row = tx.one("SELECT key_id, secret FROM chain_meta WHERE id = 1")
        if row is not None and row["secret"] is not None:
            key = bytes(row["secret"])
            if key_fingerprint(key) != row["key_id"]:
                raise StoreError(f"{self.label}: the log's chain key is damaged (its fingerprint does not match)")
        else:
            candidate = self._candidate_key()
            if row is None:
                key = candidate or secrets.token_bytes(KEY_BYTES)
                tx.execute(
                    "INSERT INTO chain_meta (id, key_id, created_at, secret) VALUES (1, ?, ?, ?)",
                    (key_fingerprint(key), to_rfc3339(utcnow()), key),
                )
            elif candidate is not None and key_fingerprint(candidate) == row["key_id"]:
                key = candidate
                tx.execute("UPDATE chain_meta SET secret = ? WHERE id = 1", (key,))
            else:
                raise StoreError(
                    f"{self.label}: this log was moved here from a workspace whose chain key this one does not hold",
                    hint="run any command once from that workspace (its .campaign/chain.key), or copy the file here",
                )
        if self.chain_key is not None and self.chain_key != key:
            raise StoreError(
                f"{self.label}: the chain key given is not the key this log's events are tagged with; nothing "
                "was changed"
            )
        self._shared = key  # cached: a shared log's key never changes
        return key

    def adopt_key(self, key: bytes) -> None:
        """Keep ``key`` in this shared store: the key of the log copied into it."""
        from campaign.models import to_rfc3339, utcnow

        with self.transaction() as tx:
            row = tx.one("SELECT key_id, secret FROM chain_meta WHERE id = 1")
            if row is None:
                tx.execute(
                    "INSERT INTO chain_meta (id, key_id, created_at, secret) VALUES (1, ?, ?, ?)",
                    (key_fingerprint(key), to_rfc3339(utcnow()), key),
                )
            elif row["key_id"] != key_fingerprint(key):
                raise StoreError(f"{self.label}: its log is tagged with another chain key; nothing was changed")
            elif row["secret"] is None:
                tx.execute("UPDATE chain_meta SET secret = ? WHERE id = 1", (key,))

    def known_key(self) -> bytes | None:
        """The key that tagged this log, if this process can know it (never creates one)."""
        with self.reading() as tx:
            row = tx.one("SELECT secret FROM chain_meta WHERE id = 1")
        if row is not None and row["secret"] is not None:
            return bytes(row["secret"])
        if self.key_in_store:
            return None
        try:
            return self._candidate_key()
        except StoreError:
            return None

    def event_tags(self, key: bytes, campaign: str | None, message: str | None) -> tuple[str, str]:
        """(campaign tag, message tag) of an event, cached per store."""
        cache = self.__dict__.setdefault("_tags", {})
        out = []
        for kind, value in (("campaign", campaign), ("message", message)):
            if not value:
                out.append(chain.NO_TAG)
                continue
            found = cache.get((kind, value))
            if found is None:
                # A letter's events come close together (claimed, then sent): a few
                # thousand tags are enough, and a send of 100,000 letters does not keep
                # every one (they took 37 MB).
                if len(cache) >= _TAGS_KEPT:
                    cache.clear()
                found = cache[(kind, value)] = chain.tag(key, kind, value)
            out.append(found)
        return out[0], out[1]

    # -- the bytes of a letter -----------------------------------------------------------

    @staticmethod
    def seal_of(tx: Tx, message_id: str) -> Seal:
        """What the log says about a letter's bytes (read inside ``tx``)."""
        marks = ", ".join("?" for _ in SEAL_KINDS)
        rows = tx.rows(
            f"SELECT kind, data FROM events WHERE message = ? AND kind IN ({marks}) ORDER BY seq DESC",
            (message_id, *SEAL_KINDS),
        )
        pairs: list[tuple[str, dict[str, Any]]] = []
        for row in rows:
            try:
                data = json.loads(row["data"])
            except (TypeError, ValueError):
                data = {}
            pairs.append((str(row["kind"]), data if isinstance(data, dict) else {}))
        return seal_from_events(pairs)

    def seal_problem(
        self, tx: Tx, row: dict[str, Any], body_value: Any, encoding: str | None = None
    ) -> tuple[str | None, bytes, bytes | None, dict[str, Any]]:
        """Check a letter's stored bytes against the log before it is sent (``encoding``:
        how the store compressed them, see ``campaign.store.bodies``).

        Returns (problem or None, body, the send prefix to reuse or None, details for the event).
        """
        stored_prefix = bytes(row["wire_prefix"]) if row["wire_prefix"] is not None else None
        if self.plan_copy:
            body = bytes(body_value) if isinstance(body_value, bytes | memoryview) else b""
            return None, body, stored_prefix, {}
        if encoding is not None and isinstance(body_value, bytes | memoryview):
            try:
                body_value = bodies.decode(tx, body_value, encoding)
            except (zlib.error, ValueError):
                return "its stored bytes are damaged (they do not decompress)", b"", None, {}
        if body_value is None:
            return "its stored bytes are missing from the database", b"", None, {}
        if not isinstance(body_value, bytes | memoryview):
            kind = type(body_value).__name__
            return (
                f"its stored bytes are not bytes but {kind}: the database was changed outside campaign",
                b"",
                None,
                {},
            )
        body = bytes(body_value)
        seal = self.seal_of(tx, str(row["message_id"]))
        problem, legacy, details = check_bytes(seal, body, stored_prefix)
        if problem is not None:
            if legacy:
                problem += f"; check it, then `campaign release {row['id']}` accepts these bytes"
            return problem, body, None, details
        if stored_prefix is not None and seal.updated_after:
            stored_prefix = None  # replaced after the last attempt: the next attempt gets a new Date/DKIM prefix
        return None, body, stored_prefix, details

    @staticmethod
    def hold_for_integrity(
        tx: Tx, row: dict[str, Any], now_ms: int, worker: str, reason: str, details: dict[str, Any]
    ) -> None:
        """Hold a letter whose bytes do not match the log: it is not sent, and says why."""
        from campaign.store.sql import iso
        from campaign.transitions import Status

        tx.move(
            int(row["id"]),
            "held",
            sources=(Status(row["status"]),),
            target=Status.HELD,
            now_ms=now_ms,
            message=str(row["message_id"]),
            campaign=str(row["campaign"]),
            sets={
                "last_code": None,
                "last_status": INTEGRITY,
                "last_reply": f"not sent: {reason}",
                "hold_reason": INTEGRITY,
                "next_attempt_at": None,
                "wait_reason": None,
                "lease_owner": None,
                "lease_expires": None,
                "updated_at": iso(now_ms),
            },
            data={
                "attempt": int(row["attempts"]),
                "reason": f"not sent: {reason}",
                "integrity": True,
                "worker": worker,
                **details,
            },
        )

    def body_rows(self, after_id: int = 0, limit: int = 500) -> list[dict[str, Any]]:
        """Letters with their stored bytes and send prefix, by id (for ``log verify``)."""
        with self.reading() as tx:
            rows = tx.dicts(
                "SELECT m.id, m.message_id, m.wire_prefix, b.body, b.encoding FROM messages m "
                f"LEFT JOIN message_bodies b ON b.id = m.id WHERE m.id > ? ORDER BY m.id LIMIT {int(limit)}",
                (after_id,),
            )
            for row in rows:  # the exact bytes, as every reader sees them
                if row["encoding"] is not None and isinstance(row["body"], bytes | memoryview):
                    try:
                        row["body"] = bodies.decode(tx, row["body"], row["encoding"])
                    except (zlib.error, ValueError):
                        row["body"] = None  # damaged: verification names it
            return rows

    def stored_bytes(self, message_id: str) -> tuple[int, bytes | None, bytes]:
        """(row id, send prefix or None, stored body) of a letter, by Message-ID."""
        with self.reading() as tx:
            row = tx.one(
                "SELECT m.id, m.wire_prefix, b.body, b.encoding FROM messages m LEFT JOIN message_bodies b "
                "ON b.id = m.id WHERE m.message_id = ?",
                (message_id,),
            )
            if row is None:
                raise StoreError(f"no message {message_id}")
            body = row["body"]
            if row["encoding"] is not None and isinstance(body, bytes | memoryview):
                try:
                    body = bodies.decode(tx, body, row["encoding"])
                except (zlib.error, ValueError):
                    body = None
        prefix = bytes(row["wire_prefix"]) if row["wire_prefix"] is not None else None
        return int(row["id"]), prefix, bytes(body) if isinstance(body, bytes | memoryview) else b""

    def integrity_holds(self, since: str) -> list[dict[str, Any]]:
        """Letters held since ``since`` (RFC 3339) because their bytes did not match the log."""
        with self.reading() as tx:
            rows: list[dict[str, Any]] = tx.dicts(
                "SELECT id, message_id, campaign, recipient, email, last_reply FROM messages "
                "WHERE status = 'held' AND last_status = ? AND updated_at >= ? ORDER BY id",
                (INTEGRITY, since),
            )
        return rows
