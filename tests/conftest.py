"""Shared fixtures: a temp workspace, a real SMTP server on loopback, the CLI runner.

All state goes to a temp folder through CAMPAIGN_WORKSPACE; nothing touches the
repository's own .campaign/.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.smtp import Script, ScriptedServer

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's environment or keyring."""
    for var in list(os.environ):
        if var.startswith("CAMPAIGN_") and var not in ("CAMPAIGN_TEST_PG",):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def make_workspace(target: Path, *, registry: Path | None = None, config: str | None = None) -> Path:
    """A workspace with the shipped letters and the test registry and settings."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "letters", target / "letters")
    shutil.copy2(registry or DATA / "workspace" / "recipients.yaml", target / "recipients.yaml")
    (target / "campaign.toml").write_text(config or (DATA / "workspace" / "campaign.toml").read_text())
    return target


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ws = make_workspace(tmp_path / "ws")
    monkeypatch.setenv("CAMPAIGN_WORKSPACE", str(ws))
    return ws


def set_smtp_port(ws: Path, port: int) -> None:
    path = ws / "campaign.toml"
    path.write_text(re.sub(r"(?m)^port = \d+", f"port = {port}", path.read_text()))


@pytest.fixture
def smtp_server(workspace: Path) -> Iterator[ScriptedServer]:
    """A real SMTP server on 127.0.0.1; the workspace points at it."""
    with ScriptedServer(Script()) as server:
        set_smtp_port(workspace, server.port)
        yield server


@pytest.fixture(scope="session")
def pg_database() -> Iterator[object]:
    """A throwaway PostgreSQL database for this run (see tests/support/pg.py)."""
    from tests.support import pg

    try:
        database = pg.Database()
    except Exception as err:  # noqa: BLE001 - any failure to reach the server means "not available"
        pg.unavailable(
            f"{pg.admin_url()}: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}"
        )
        return
    yield database
    database.drop()


@pytest.fixture
def pg_url(pg_database: object) -> str:
    """A fresh schema in the test database, as a store URL."""
    return pg_database.schema()  # type: ignore[attr-defined,no-any-return]


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store tests run against both SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("pg_url"))


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(*args: str, input: str | None = None) -> Result:
    """Run `campaign ARGS` in-process, capturing output and the exit code."""
    from campaign.cli import common, main

    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    if input is not None:
        sys.stdin = io.StringIO(input)
    common.reset_consoles()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(args))
    finally:
        sys.stdin = old_stdin
        common.reset_consoles()
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli() -> type[Result]:
    return Result


def tree_digest(path: Path) -> dict[str, str]:
    """Every file under ``path`` with its SHA-256: to prove nothing changed. The registry
    cache (``.campaign/cache/``) is left out: it is derived from recipients.yaml's bytes,
    keyed by their hash, and any command that read the file may write it."""
    digests = {}
    for file in sorted(path.rglob("*")):
        if file.is_file() and ".campaign/cache/" not in file.as_posix():
            digests[str(file.relative_to(path))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


def stored_body(state_db: Path, row_id: int | None = None) -> bytes:
    """A letter's stored bytes as every reader sees them (the store compresses bodies)."""
    from campaign.store import open_store

    with open_store(f"sqlite:///{state_db}") as store:
        if row_id is None:
            row_id = store.messages()[0].id
        return store.wire_bytes(row_id)[1]


def forge_body(state_db: Path, row_id: int, body: bytes) -> None:
    """Change a letter's stored bytes behind campaign's back, as someone editing the
    database would: the raw bytes, uncompressed."""
    import sqlite3

    con = sqlite3.connect(state_db)
    try:
        con.execute("UPDATE message_bodies SET body = ?, encoding = NULL WHERE id = ?", (body, row_id))
        con.commit()
    finally:
        con.close()
