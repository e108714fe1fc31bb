"""The PostgreSQL store: one queue and one log shared by a team and by many senders.

Same schema, migrations and behaviour as SQLite (see ``campaign.store``), plus:
- claims take ``FOR UPDATE SKIP LOCKED`` on the due rows, so concurrent workers never
  claim the same letter, and each claimed row carries a lease (worker id, expiry); a
  crashed worker's ``sending`` rows are recovered by the others once the lease expires;
- the pacing rows (overall, per domain, per institution per day) are created if missing
  and then locked ``FOR UPDATE`` inside the claiming transaction, so adding workers never
  breaks a rate or a daily cap;
- appends to the event chain lock the single ``chain_head`` row, so however many workers
  write, the log stays one chain;
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

from campaign.errors import StoreError
from campaign.store.sql import SqlStore

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

    def __init__(self, url: str, *, password: str | None = None, migrate: bool = True) -> None:
        self.url = url
        parts = urlsplit(url)
        self.label = (
            f"postgresql://{parts.hostname or 'localhost'}{':' + str(parts.port) if parts.port else ''}{parts.path}"
        )
        kwargs: dict[str, Any] = {"autocommit": True, "row_factory": dict_row, "connect_timeout": 10}
        if password is not None:
            kwargs["password"] = password
        try:
            self.conn = psycopg.connect(url.replace("postgres://", "postgresql://", 1), **kwargs)
        except psycopg.Error as err:
            raise StoreError(
                f"{self.label}: cannot connect: {_first_line(err)}",
                hint="check the URL, that the server runs, and PGPASSWORD or ~/.pgpass",
            ) from None
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

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def row_dict(self, cursor: Any, row: Any) -> dict[str, Any]:
        return dict(row)

    @contextlib.contextmanager
    def _transaction(self, write: bool = True) -> Iterator[Any]:
        try:
            with self.conn.transaction(), self.conn.cursor() as cursor:
                yield cursor
        except psycopg.Error as err:
            raise self._wrap(err) from None

    def _wrap(self, err: Exception) -> StoreError:
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
            for table in ("messages", "receipts"):
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
