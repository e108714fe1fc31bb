"""The SQLite store: ``.campaign/state.db`` (WAL, synchronous=FULL, mode 0600).

One connection per store object; the dispatcher uses it from a single thread at a
time. Writes start with ``BEGIN IMMEDIATE`` so a claim never races another writer.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from campaign.errors import StoreError
from campaign.store.integrity import KEY_FILE
from campaign.store.sql import SqlStore


class SqliteStore(SqlStore):
    dialect = "sqlite"

    def __init__(self, path: Path | None, *, migrate: bool = True) -> None:
        """``path=None`` makes a private in-memory store (plans, simulations)."""
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
            self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA busy_timeout=30000")
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
    def _transaction(self, write: bool = True) -> Iterator[Any]:
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

    def _wrap(self, err: Exception) -> StoreError:
        text = str(err)
        if "not a database" in text or "malformed" in text or "file is encrypted" in text:
            return StoreError(
                f"{self.label}: not a campaign database, or it is corrupted ({text})",
                hint="move the file aside and restore it from a backup; nothing was changed",
            )
        if "locked" in text or "busy" in text:
            return StoreError(f"{self.label}: the database is busy ({text})", hint="try again in a moment")
        if "readonly" in text:
            return StoreError(f"{self.label}: the database is read-only ({text})")
        return StoreError(f"{self.label}: {text}")

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()
