"""The SQLite store: ``.campaign/state.db`` (WAL, synchronous=FULL, mode 0600).

One connection per store object; the dispatcher uses it from a single thread at a
time. Writes start with ``BEGIN IMMEDIATE``: SQLite's one write lock is taken first, so
it plays the part of PostgreSQL's ``chain_head`` row in the lock order and a claim never
races another writer. A lock held by another process longer than ``busy_timeout`` raises
:class:`StoreBusyError` (retryable), classified by ``sqlite_errorname``, never by the text.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from campaign.errors import StoreBusyError, StoreError
from campaign.store.integrity import KEY_FILE
from campaign.store.sql import SqlStore

_BUSY = ("SQLITE_BUSY", "SQLITE_LOCKED")
_BROKEN = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


class SqliteStore(SqlStore):
    dialect = "sqlite"

    def __init__(self, path: Path | None, *, migrate: bool = True, busy_timeout: float = 30.0) -> None:
        """``path=None`` makes a private in-memory store (plans, simulations); a write waits
        up to ``busy_timeout`` seconds for another process's lock."""
        self.path = path
        if path is None:
            self.label = "in-memory store"
            self.conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            self.conn.row_factory = sqlite3.Row
            self._migrate()
            return
        self.label = path.name if path.parent.name != ".campaign" else f".campaign/{path.name}"
        self.key_path = path.parent / KEY_FILE  # the chain key lives beside the database by default
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # Create the file ourselves so it is 0600 from the first byte.
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
            os.close(fd)
        elif path.stat().st_mode & 0o077:
            path.chmod(0o600)
        old_umask = os.umask(0o077)  # the -wal and -shm files inherit it
        try:
            self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            if migrate:
                self._migrate()
        except sqlite3.DatabaseError as err:
            with contextlib.suppress(Exception):
                self.conn.close()
            raise self._wrap(err) from None
        finally:
            os.umask(old_umask)

    def row_dict(self, cursor: Any, row: Any) -> dict[str, Any]:
        # sqlite3.Row reads by name like a dict, without building one per row.
        result: dict[str, Any] = row
        return result

    @contextlib.contextmanager
    def _transaction(self, write: bool = True, *, head: bool = True) -> Iterator[Any]:
        cursor = self.conn.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.DatabaseError as err:
            raise self._wrap(err) from None
        try:
            yield cursor
        except sqlite3.DatabaseError as err:
            with contextlib.suppress(sqlite3.Error):
                cursor.execute("ROLLBACK")
            raise self._wrap(err) from None
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                cursor.execute("ROLLBACK")
            raise
        try:
            cursor.execute("COMMIT")
        except sqlite3.DatabaseError as err:
            with contextlib.suppress(sqlite3.Error):
                cursor.execute("ROLLBACK")
            raise self._wrap(err) from None

    @property
    def lock_path(self) -> Path | None:
        if self.path is None:
            return None
        real = self.path.resolve()
        return real.with_name(real.name + ".send-lock")

    @property
    def identity(self) -> str:
        """The resolved database file: one queue, however it was named."""
        return f"sqlite:{self.path.resolve()}" if self.path is not None else f"sqlite:memory:{id(self)}"

    def _wrap(self, err: Exception) -> StoreError:
        text = str(err)
        name = getattr(err, "sqlite_errorname", "") or ""
        if name.startswith(_BUSY):
            return StoreBusyError(
                f"{self.label}: the database is locked by another process ({text})",
                hint="try again in a moment; nothing was changed",
            )
        if name.startswith(_BROKEN):
            return StoreError(
                f"{self.label}: not a campaign database, or it is corrupted ({text})",
                hint="move the file aside and restore it from a backup; nothing was changed",
            )
        if name.startswith("SQLITE_READONLY"):
            return StoreError(f"{self.label}: the database is read-only ({text})")
        if name.startswith("SQLITE_FULL"):
            return StoreError(f"{self.label}: the disk is full ({text})", hint="free some space; nothing was changed")
        return StoreError(f"{self.label}: {text}")

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()
