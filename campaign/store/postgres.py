"""The PostgreSQL store: one queue and one log shared by a team and by many senders.

Same schema, migrations and behaviour as SQLite (see ``campaign.store``), plus:
- claims take ``FOR UPDATE SKIP LOCKED`` on the due rows, so concurrent workers never
  claim the same letter, and each claimed row carries a lease (worker id, expiry); a
  crashed worker's ``sending`` rows are recovered by the others once the lease expires;
- the pacing rows (overall, per domain, per institution per day) are created if missing
  and then locked ``FOR UPDATE`` inside the claiming transaction, so adding workers never
  breaks a rate or a daily cap;
- every write transaction locks the single ``chain_head`` row FIRST (the lock order in
  ``campaign.store.sql``), so however many workers write, the log stays one chain and no
  two write transactions can wait on each other in opposite orders (no deadlocks);
- a lock wait longer than ``busy_timeout`` (``lock_timeout``), a serialization failure, a
  deadlock, or a lost connection raise :class:`StoreBusyError` (retryable); the next call
  reconnects. A connection lost during COMMIT leaves the outcome unknown: the store's
  writes are idempotent (``finish`` recognises an outcome it already recorded);
- migrations run under an advisory lock, so two processes starting together do not race.
The password never comes from campaign.toml: psycopg reads PGPASSWORD or ~/.pgpass, or
the keyring provides it (see ``campaign.config``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row

from campaign.errors import StoreBusyError, StoreError
from campaign.store.sql import SqlStore

# SQLSTATEs worth trying again: serialization_failure, deadlock_detected, lock_not_available,
# query_canceled (lock_timeout), admin/crash shutdown, cannot_connect_now; class 08 (connection).
_RETRYABLE = {"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03"}

_MIGRATION_LOCK = 0x63616D70  # "camp"


def redact(url: str) -> str:
    """The URL without any password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.split("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}" if user else netloc))


class PostgresStore(SqlStore):
    dialect = "postgres"
    lock_suffix = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    head_select = "SELECT seq, hash FROM chain_head WHERE id = 1 FOR UPDATE"
    key_in_store = True  # one log for a team: its chain key lives with it (campaign.store.integrity)

    def __init__(
        self, url: str, *, password: str | None = None, migrate: bool = True, busy_timeout: float = 30.0
    ) -> None:
        self.url = url
        parts = urlsplit(url)
        self.label = (
            f"postgresql://{parts.hostname or 'localhost'}{':' + str(parts.port) if parts.port else ''}{parts.path}"
        )
        self._kwargs: dict[str, Any] = {"autocommit": True, "row_factory": dict_row, "connect_timeout": 10}
        if password is not None:
            self._kwargs["password"] = password
        self.busy_timeout = busy_timeout
        try:
            self.conn = self._connect()
        except psycopg.Error as err:
            raise StoreError(
                f"{self.label}: cannot connect: {_first_line(err)}",
                hint="check the URL, that the server runs, and PGPASSWORD or ~/.pgpass",
            ) from None
        try:
            row = self.conn.execute(
                "SELECT current_database() AS db, inet_server_port() AS port, current_setting('search_path') AS path"
            ).fetchone()
        except psycopg.Error as err:
            self.close()
            raise self._wrap(err) from None
        assert row is not None
        self._identity = f"postgresql://{parts.hostname or 'localhost'}:{row['port']}/{row['db']}?{row['path']}"
        if migrate:
            try:
                self.conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
                try:
                    self._migrate()
                finally:
                    self.conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
            except psycopg.Error as err:
                self.close()
                raise self._wrap(err) from None

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.url.replace("postgres://", "postgresql://", 1), **self._kwargs)
        # A lock wait longer than busy_timeout fails (55P03) instead of hanging: the caller retries.
        conn.execute(f"SET lock_timeout = {max(1, int(self.busy_timeout * 1000))}")
        return conn

    @property
    def identity(self) -> str:
        """The database (and schema) this store writes: one queue, however it was named."""
        return self._identity

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def row_dict(self, cursor: Any, row: Any) -> dict[str, Any]:
        return dict(row)

    @contextlib.contextmanager
    def _transaction(self, write: bool = True, *, head: bool = True) -> Iterator[Any]:
        try:
            if self.conn.broken or self.conn.closed:
                self.conn = self._connect()
            with self.conn.transaction(), self.conn.cursor() as cursor:
                if write and head:
                    # The lock order: chain_head first, in every write transaction.
                    cursor.execute("SELECT seq FROM chain_head WHERE id = 1 FOR UPDATE")
                yield cursor
        except psycopg.Error as err:
            raise self._wrap(err) from None

    def _wrap(self, err: Exception) -> StoreError:
        state = getattr(err, "sqlstate", None) or ""
        lost = isinstance(err, psycopg.OperationalError) and (self.conn.broken or self.conn.closed)
        if state in _RETRYABLE or state.startswith("08") or lost:
            what = "the connection was lost" if lost or state.startswith(("08", "57P")) else "busy"
            return StoreBusyError(
                f"{self.label}: {what} ({_first_line(err)})", hint="try again in a moment; nothing was changed"
            )
        return StoreError(f"{self.label}: {_first_line(err)}")

    def ensure_pacing_row(self, tx: Any, key: str) -> None:
        # FOR UPDATE cannot lock a row that does not exist yet: create it first. A concurrent
        # insert of the same key waits on the unique index, then does nothing.
        tx.execute("INSERT INTO pacing (key, tat, tail) VALUES (?, 0, 0) ON CONFLICT (key) DO NOTHING", (key,))

    def ensure_day_row(self, tx: Any, recipient: str, day: str) -> None:
        tx.execute(
            "INSERT INTO daily_counts (recipient, day, count) VALUES (?, ?, 0) ON CONFLICT (recipient, day) DO NOTHING",
            (recipient, day),
        )

    def after_copy(self) -> None:
        with self.transaction() as tx:
            for table in ("messages", "receipts", "signing_drives", "signatures", "body_dicts"):
                tx.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST(COALESCE(MAX(id), 0), 1)) "
                    f"FROM {table}"
                )

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.conn.close()


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
