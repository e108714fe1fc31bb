"""A throwaway PostgreSQL database per test run, and a schema per test.

Reads CAMPAIGN_TEST_PG (default postgresql://postgres@127.0.0.1:5432/postgres). Without
a server the tests that need it skip with a visible reason, except when CI=true: then
they fail, because CI must not silently skip them.
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url() -> str:
    return os.environ.get("CAMPAIGN_TEST_PG", DEFAULT)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def with_schema(url: str, schema: str) -> str:
    return f"{url}?options={quote(f'-csearch_path={schema}')}"


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is needed in CI: {reason}")
    pytest.skip(f"PostgreSQL not available ({reason}); set CAMPAIGN_TEST_PG or start the server")


class Database:
    """One database for the whole run; ``schema()`` gives each test its own namespace."""

    def __init__(self) -> None:
        import psycopg

        self.psycopg = psycopg
        self.admin = admin_url()
        self.name = f"campaign_test_{os.getpid()}_{secrets.token_hex(3)}"
        with psycopg.connect(self.admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.url = with_database(self.admin, self.name)

    def schema(self) -> str:
        name = f"t_{secrets.token_hex(4)}"
        with self.psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return with_schema(self.url, name)

    def drop(self) -> None:
        with self.psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
