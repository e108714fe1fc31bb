"""The core under ordinary trouble: a busy or failing store never hangs a send and never
causes a resend; one state machine; one lock order; leases that cover a slow send.

Real parts throughout: `campaign send` as a subprocess against the recording sink, a second
process holding SQLite's write lock, a table renamed under a running sender, the PostgreSQL
server on 127.0.0.1:5432 with two connections interleaving.
"""

from __future__ import annotations

import collections
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from campaign import transitions
from campaign.errors import StoreBusyError, StoreConflictError
from campaign.pacing import Pacer, PacingConfig
from campaign.store import NewMessage, Outcome, ReceiptEntry, Report, Unsent, journal, open_store
from campaign.transitions import IllegalMove, Status
from tests.conftest import ROOT
from tests.support import crash
from tests.support.sink import Sink

PREFIX = b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"


def recorded(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def workspace_for(tmp_path: Path, port: int, *, letters: int, extra: str = "") -> Path:
    ws = crash.make_workspace(tmp_path, institutions=letters, contacts=1, port=port, delay_config=extra)
    assert crash.run(ws, "queue", "short", "--all").returncode == 0
    return ws


class Locker:
    """Another process takes SQLite's write lock and keeps it (as a long `queue` could)."""

    def __init__(self, db: Path, seconds: float) -> None:
        self.proc = hold_write_lock(db, seconds)

    def wait(self, timeout: float) -> None:
        self.proc.wait(timeout=timeout)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def hold_write_lock(db: Path, seconds: float) -> subprocess.Popen[str]:
    code = (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        f"time.sleep({seconds})\n"
        "c.execute('ROLLBACK')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def wait_for(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def log_rows(ws: Path) -> list[dict]:
    return json.loads(crash.run(ws, "log", "--json").stdout)


# -- a busy store ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_store_locked_longer_than_the_busy_timeout_is_waited_out_and_nothing_is_sent_twice(tmp_path: Path) -> None:
    record = tmp_path / "sink.log"
    with Sink(delay_ms=50, record=record) as sink:
        ws = workspace_for(tmp_path, sink.port, letters=60)
        (ws / "campaign.toml").write_text(
            (ws / "campaign.toml").read_text() + '\n[store]\nbusy_timeout = "1s"\nretry_for = "30s"\n'
        )
        proc = crash.start(ws, "send", "--yes", "--concurrency", "4")
        wait_for(lambda: len(recorded(record)) >= 10)
        locker = Locker(ws / ".campaign" / "state.db", 4)  # four busy timeouts
        out, err = proc.communicate(timeout=120)
        locker.wait(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    ids = recorded(record)
    assert len(ids) == 60 and len(set(ids)) == 60, "every letter arrived, none twice"
    rows = log_rows(ws)
    assert {r["status"] for r in rows} == {"sent"} and not any(r["possible_duplicate"] for r in rows)
    assert not (ws / ".campaign" / "recovery").exists() or not list((ws / ".campaign" / "recovery").iterdir())
    assert "ok:" in crash.run(ws, "log", "verify").stdout


@pytest.mark.slow
def test_a_store_locked_past_the_retry_window_stops_with_one_line_and_the_next_run_resends_nothing(
    tmp_path: Path,
) -> None:
    record = tmp_path / "sink.log"
    with Sink(delay_ms=50, record=record) as sink:
        ws = workspace_for(tmp_path, sink.port, letters=60)
        (ws / "campaign.toml").write_text(
            (ws / "campaign.toml").read_text() + '\n[store]\nbusy_timeout = "1s"\nretry_for = "3s"\n'
        )
        proc = crash.start(ws, "send", "--yes", "--concurrency", "4")
        wait_for(lambda: len(recorded(record)) >= 10)
        locker = Locker(ws / ".campaign" / "state.db", 12)
        started = time.monotonic()
        out, err = proc.communicate(timeout=120)
        stopped_after = time.monotonic() - started
        assert proc.returncode == 1, err
        assert stopped_after < 11, "the run gave up after its retry window, not after the lock"
        assert "Traceback" not in err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "locked by another process" in errors[0], err
        journal = list((ws / ".campaign" / "recovery").glob("*.json"))
        accepted_before = len(recorded(record))
        if accepted_before > 10:  # outcomes were waiting when it stopped: they are in the journal
            assert journal and "saved in" in err
            assert oct(journal[0].stat().st_mode & 0o777) == "0o600"
        locker.wait(timeout=30)
        again = crash.run(ws, "send", "--yes", "--concurrency", "4")
        assert again.returncode == 0, again.stderr
    ids = recorded(record)
    assert len(ids) == 60 and len(set(ids)) == 60, collections.Counter(ids).most_common(3)
    rows = log_rows(ws)
    assert {r["status"] for r in rows} == {"sent"}
    assert not any(r["possible_duplicate"] for r in rows), "a busy store is not a crash"
    assert not list((ws / ".campaign" / "recovery").glob("*.json")), "the journal was applied and removed"
    assert "ok:" in crash.run(ws, "log", "verify").stdout


@pytest.mark.slow
def test_a_store_that_fails_for_good_mid_run_stops_in_seconds_and_the_next_run_resends_nothing(
    tmp_path: Path,
) -> None:
    record = tmp_path / "sink.log"
    db = tmp_path / "ws" / ".campaign" / "state.db"
    with Sink(delay_ms=50, record=record) as sink:
        ws = workspace_for(tmp_path, sink.port, letters=60)
        proc = crash.start(ws, "send", "--yes", "--concurrency", "4")
        wait_for(lambda: len(recorded(record)) >= 10)
        # A real, non-retryable store error: the table every outcome updates disappears.
        with sqlite3.connect(db, timeout=30) as conn:
            conn.execute("ALTER TABLE workers RENAME TO workers_gone")
        started = time.monotonic()
        out, err = proc.communicate(timeout=60)
        assert time.monotonic() - started < 15
        assert proc.returncode == 1, err
        assert "Traceback" not in err and "no such table" in err
        with sqlite3.connect(db, timeout=30) as conn:
            conn.execute("ALTER TABLE workers_gone RENAME TO workers")
        again = crash.run(ws, "send", "--yes")
        assert again.returncode == 0, again.stderr
        if "not sent yet are saved in" in err or "not sent yet is saved in" in err:  # claimed, never sent
            assert "not possible duplicates" in again.stdout + again.stderr
    ids = recorded(record)
    assert len(ids) == 60 and len(set(ids)) == 60, collections.Counter(ids).most_common(3)
    assert not any(r["possible_duplicate"] for r in log_rows(ws))


def test_a_journal_puts_back_claimed_letters_that_were_never_sent(tmp_path: Path) -> None:
    # CI saw it: letters claimed but not yet handed to a connection when the store failed were
    # left "sending" and resent the next run as possible duplicates, though never sent once.
    record = tmp_path / "sink.log"
    with Sink(record=record) as sink:
        ws = workspace_for(tmp_path, sink.port, letters=3)
        with sqlite3.connect(ws / ".campaign" / "state.db") as conn:
            row = conn.execute("SELECT message_id, campaign FROM messages WHERE id = 2").fetchone()
            conn.execute("UPDATE messages SET status = 'sending', attempts = 1, lease_owner = 'w-old' WHERE id = 2")
        folder = ws / ".campaign" / "recovery"
        journal.write(folder, "w-old", [], [Unsent(2, row[0], row[1], 1, "queued")])
        again = crash.run(ws, "send", "--yes")
        assert again.returncode == 0, again.stderr
        assert "put back 1 letter" in again.stdout + again.stderr
    assert sorted(recorded(record)) == sorted(set(recorded(record))) and len(recorded(record)) == 3
    assert not any(r["possible_duplicate"] for r in log_rows(ws))
    assert not list(folder.glob("*.json"))


def test_a_version_1_journal_without_unsent_letters_is_still_read(tmp_path: Path) -> None:
    folder = tmp_path / "recovery"
    folder.mkdir()
    (folder / "w.json").write_text(json.dumps({"version": 1, "worker": "w", "outcomes": []}))
    [(path, worker, outcomes, unsent)] = journal.pending(folder)
    assert (worker, outcomes, unsent) == ("w", [], [])


def test_an_exception_inside_the_claimer_stops_the_run_with_one_line(tmp_path: Path) -> None:
    # Issue "Integrity of every claim", case 10: a body row of the wrong type used to hang send.
    with Sink(record=tmp_path / "sink.log") as sink:
        ws = workspace_for(tmp_path, sink.port, letters=3)
        with sqlite3.connect(ws / ".campaign" / "state.db") as conn:
            conn.execute("UPDATE messages SET attempts = 'not a number' WHERE id = 2")
        result = crash.run(ws, "send", "--yes", timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")], result.stderr


# -- one state machine -------------------------------------------------------------------


def test_the_architecture_document_shows_the_transition_table() -> None:
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    assert transitions.markdown_table() in doc, (
        "regenerate the table: python -c 'import campaign.transitions as t; print(t.markdown_table())'"
    )


def test_moves_outside_the_table_are_refused() -> None:
    with pytest.raises(IllegalMove):
        transitions.check("sent", [Status.QUEUED], Status.SENT)
    with pytest.raises(IllegalMove):
        transitions.check("released", [Status.SENT], Status.QUEUED)
    with pytest.raises(IllegalMove):
        transitions.check("cancelled", [Status.SENDING], Status.CANCELLED)
    transitions.check("cancelled", [Status.QUEUED, Status.DEFERRED, Status.HELD], Status.CANCELLED)
    assert transitions.receipt_target(Status.DELIVERED, Status.RELAYED) is None
    assert transitions.receipt_target(Status.SENT, Status.DELIVERED) is Status.DELIVERED


def new_message(i: int, campaign: str = "c") -> NewMessage:
    body = f"Subject: {i}\r\n\r\nletter {i}\r\n".encode()
    return NewMessage(
        campaign=campaign,
        letter="l",
        recipient=f"r{i}",
        email=f"office@r{i}.example",
        email_key=f"office@r{i}.example",
        domain=f"r{i}.example",
        contact_name=None,
        lang="en",
        subject=str(i),
        message_id=f"<{campaign}.{i}@campaign.example>",
        envid=f"{campaign}{i:030d}",
        body=body,
        content_sha256="0" * 64,
    )


def fill(url: str, count: int, campaign: str = "c") -> None:
    with open_store(url) as store, store.enqueue(1_000) as session:
        for i in range(count):
            session.add(new_message(i, campaign))


PACER = Pacer(PacingConfig(rate=10_000, per_domain_rate=10_000))


def claim(store: object, worker: str, now: int = 2_000, limit: int = 5) -> list:
    return store.claim(
        now, worker=worker, limit=limit, pacer=PACER, lease_ms=60_000, prefix=lambda r, b, t: PREFIX
    ).items  # type: ignore[attr-defined]


def sent(item: object) -> Outcome:
    return Outcome(
        id=item.id,
        message_id=item.message_id,
        campaign=item.campaign,
        status="sent",
        event="sent",  # type: ignore[attr-defined]
        attempt=item.attempt,
        code=250,
        reply="250 ok",  # type: ignore[attr-defined]
    )


def test_finish_is_idempotent_and_a_lost_lease_is_a_late_outcome(store_url: str) -> None:
    fill(store_url, 2)
    with open_store(store_url) as store:
        items = claim(store, "w1")
        assert store.finish([sent(items[0])], 3_000, worker="w1") == 1
        head = store.chain_head()
        # the same outcome again (a retry after a connection lost during COMMIT): nothing
        assert store.finish([sent(items[0])], 3_100, worker="w1") == 0
        assert store.chain_head() == head
        # another worker's outcome for a letter it does not hold: logged, not applied
        assert store.finish([sent(items[1])], 3_200, worker="w2") == 0
        assert store.events()[-1].kind == "late_outcome"
        with pytest.raises(StoreConflictError):
            with store.transaction() as tx:
                tx.move(
                    items[0].id,
                    "released",
                    sources=(Status.HELD,),
                    target=Status.QUEUED,
                    now_ms=1,
                    message=items[0].message_id,
                    campaign="c",
                    sets={"wait_reason": None},
                )


def test_release_gives_a_fresh_max_age_and_unclaim_checks_its_row(store_url: str) -> None:
    fill(store_url, 2)
    with open_store(store_url) as store:
        a, b = claim(store, "w1")[:2]
        held = Outcome(id=a.id, message_id=a.message_id, campaign="c", status="held", event="held", attempt=1)
        store.finish([held], 3_000, worker="w1")
        store.release([a.id], 86_400_000 * 5)
        [row] = [m for m in store.messages() if m.id == a.id]
        assert row.status == "queued"
        # the letter is young again: a deferral older than max_age counts from the release
        assert store.fail_expired(86_400_000 * 5 + 1000, 86_400_000 * 3) == []
        # unclaim of a letter another worker holds changes nothing and logs nothing
        events = len(store.events())
        assert store.unclaim([b], 4_000, worker="someone-else", reason="test") == 0
        assert len(store.events()) == events


def test_since_includes_the_first_second(workspace: Path) -> None:
    from tests.conftest import run_cli

    assert run_cli("queue", "peace-agreement", "--to", "ohchr").code == 0
    rows = json.loads(run_cli("log", "--events", "--json").stdout)
    first = rows[0]["time"]  # e.g. 2026-12-07T10:00:00.500Z
    whole_second = first[:19] + "Z"
    result = run_cli("log", "--events", "--json", "--since", whole_second)
    assert result.code == 0 and len(json.loads(result.stdout)) == len(rows)


# -- one lock order (PostgreSQL) --------------------------------------------------------------


@pytest.mark.postgres
def test_claim_finish_and_receipts_interleaved_on_two_connections_never_deadlock(pg_url: str) -> None:
    fill(pg_url, 400)
    errors: list[BaseException] = []
    done = {"rounds": 0}

    def sender(worker: str) -> None:
        with open_store(pg_url, busy_timeout=30) as store:
            try:
                for _ in range(50):
                    items = claim(store, worker, now=10**12, limit=4)
                    if not items:
                        return
                    store.finish([sent(i) for i in items], 10**12, worker=worker)
                    done["rounds"] += 1
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

    def importer() -> None:
        with open_store(pg_url, busy_timeout=30) as store:
            try:
                for n in range(100):
                    targets = store.targets(message_ids=[f"<c.{(n * 7) % 400}@campaign.example>"])
                    target = next(iter(targets.values()), None)
                    entry = ReceiptEntry(part=0, kind="dsn", target=target, outcome="delayed", matched_by="message-id")
                    raw = f"report {n}".encode()
                    import hashlib

                    store.record_reports([Report(raw, hashlib.sha256(raw).hexdigest(), "test", [entry])], 10**12)
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

    threads = [threading.Thread(target=sender, args=(w,)) for w in ("w1", "w2")] + [threading.Thread(target=importer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[0]
    assert done["rounds"] >= 100  # 200 interleaved claims and outcomes in all
    with open_store(pg_url) as store:
        statuses = collections.Counter(m.status for m in store.messages())
        assert statuses[Status.SENT] == 400


@pytest.mark.postgres
def test_a_connection_lost_is_retryable_and_the_retry_applies_once(pg_url: str) -> None:
    import psycopg

    fill(pg_url, 1)
    with open_store(pg_url) as store:
        [item] = claim(store, "w1")
        pid = store.conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]  # type: ignore[attr-defined]
        with psycopg.connect(pg_url.split("?")[0], autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreBusyError):
            store.finish([sent(item)], 3_000, worker="w1")
        assert store.finish([sent(item)], 3_000, worker="w1") == 1  # reconnected
        assert store.finish([sent(item)], 3_000, worker="w1") == 0  # and once only
        assert [m.status for m in store.messages()] == [Status.SENT]


# -- leases that cover a slow send --------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.slow
def test_a_send_slower_than_the_lease_is_not_taken_over(pg_url: str, tmp_path: Path) -> None:
    from tests.support.rawsmtp import Behaviour, RawServer

    # The server waits 8 s before answering the final dot; the lease is 3 s. The first worker
    # renews its lease every second, so a second worker starting meanwhile must not recover it.
    with RawServer(Behaviour(replies={"DOT": []}, dot_delay=8.0)) as server:
        ws = crash.make_workspace(tmp_path, institutions=1, contacts=1, port=server.port, delay_config='lease = "3s"')
        (ws / "campaign.toml").write_text(
            (ws / "campaign.toml").read_text().replace('data_timeout = "5s"', 'data_timeout = "30s"')
        )
        env = {**os.environ, "CAMPAIGN_WORKSPACE": str(ws), "CAMPAIGN_DB": pg_url, "PYTHONPATH": str(ROOT)}

        def run(*args: str) -> subprocess.Popen[str]:
            return subprocess.Popen(
                [sys.executable, "-m", "campaign", *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )

        queued = run("queue", "short", "--all")
        assert queued.communicate(timeout=60) and queued.returncode == 0
        first = run("send", "--yes")
        wait_for(lambda: server.commands.count("DATA") >= 1, timeout=30)
        time.sleep(4.5)  # past the first lease
        second = run("send", "--yes")
        _, err2 = second.communicate(timeout=60)
        _, err1 = first.communicate(timeout=60)
        assert second.returncode == 0, err2
        assert first.returncode == 0, err1
    assert len(server.messages) == 1, "a second worker sent the letter while the first was still talking"
    events = subprocess.run(
        [sys.executable, "-m", "campaign", "log", "--events", "--json"], env=env, capture_output=True, text=True
    )
    kinds = [e["event"] for e in json.loads(events.stdout)]
    assert "crash_recovered" not in kinds and kinds.count("sent") == 1


# -- the journal cannot be written either ---------------------------------------------------------


def test_when_the_journal_cannot_be_written_either_the_one_line_names_the_delivered_letters(tmp_path: Path) -> None:
    # The store fails for good while the server holds a letter's final reply; the recovery
    # journal cannot be written either (a file stands where its folder should be). The run
    # stops with one line that says so and names the letter the server accepted.
    from tests.support.rawsmtp import Behaviour, RawServer

    with RawServer(Behaviour(dot_delay=1.5)) as server:
        ws = workspace_for(tmp_path, server.port, letters=1)
        blocker = ws / ".campaign" / "recovery"
        blocker.write_bytes(b"not a folder")
        db = ws / ".campaign" / "state.db"
        proc = crash.start(ws, "send", "--yes", "--concurrency", "1")
        wait_for(lambda: len(server.messages) == 1, timeout=30)  # the body is in; the 250 waits
        with sqlite3.connect(db, timeout=30) as conn:
            conn.execute("ALTER TABLE workers RENAME TO workers_gone")
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert "no such table: workers" in line
    assert f"the recovery journal could not be written either ({blocker}: File exists)" in line
    assert "message id 1 was delivered; do not send it again" in line
    # Nothing was lost or changed behind the line's back: the file is as it was, the store
    # still shows the letter in flight (its outcome unrecorded, not invented), the log verifies.
    assert blocker.read_bytes() == b"not a folder"
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE workers_gone RENAME TO workers")
        assert conn.execute("SELECT status FROM messages WHERE id = 1").fetchone() == ("sending",)
    assert "ok:" in crash.run(ws, "log", "verify").stdout
    assert len(server.messages) == 1
    # Without its outcome, the next run can only send it again: named, never silently.
    blocker.unlink()
    with RawServer() as again:
        (ws / "campaign.toml").write_text(
            (ws / "campaign.toml").read_text().replace(f"port = {server.port}", f"port = {again.port}")
        )
        second = crash.run(ws, "send", "--yes", timeout=60)
    assert second.returncode == 0, second.stderr
    assert "may have reached the institution twice" in second.stderr
    [row] = log_rows(ws)
    assert row["status"] == "sent" and row["possible_duplicate"]


# -- queue renders outside the write transaction --------------------------------------------------

SLOW_LETTER = (
    '---\nsubject: "Slow"\n---\n{{ salutation }}\n'
    "{% for i in range(150) %}{% for j in range(1000) %}{% set _ = (i ~ j) | length %}{% endfor %}{% endfor %}\n"
    "A letter that takes a while to render.\n"
)


def test_queue_renders_with_the_write_lock_free(workspace: Path) -> None:
    # `campaign queue` of letters that take seconds to render: all the while, another
    # connection takes SQLite's write lock (BEGIN IMMEDIATE) at once, every time.
    from tests.conftest import run_cli

    assert run_cli("queue", "peace-agreement", "--to", "wgad").code == 0  # the store exists
    (workspace / "letters" / "slow").mkdir()
    (workspace / "letters" / "slow" / "en.md.j2").write_text(SLOW_LETTER)
    db = workspace / ".campaign" / "state.db"
    proc = crash.start(workspace, "queue", "slow", "--all")
    started = time.monotonic()
    taken, refused = 0, []
    while proc.poll() is None:
        con = sqlite3.connect(db, timeout=0.3, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
            taken += 1
        except sqlite3.OperationalError as err:
            refused.append(f"{time.monotonic() - started:.1f}s: {err}")
        finally:
            con.close()
        time.sleep(0.02)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "5 new" in out
    assert time.monotonic() - started > 2 and taken > 20  # the probes covered seconds of rendering
    assert not refused, f"the write lock was held while rendering: {refused}"


def test_queue_rechecks_rows_queued_while_it_rendered(workspace: Path) -> None:
    # While `queue` renders (no lock held), another `campaign queue` stores the same letter
    # for one institution: the commit finds it and keeps that one ("unchanged"), no copy.
    from campaign import api, outbox, registry
    from campaign.config import load_workspace
    from campaign.render import Renderer
    from tests.conftest import run_cli

    assert run_cli("queue", "peace-agreement", "--to", "wgad").code == 0  # the store exists
    db = workspace / ".campaign" / "state.db"
    ws = load_workspace(workspace, env=dict(os.environ))
    letter = registry.get_letter(registry.load_letters(ws.letters_dir), "peace-agreement")
    recipients = registry.select_recipients(api.load_registry(ws), ids=["ohchr", "odihr"], tags=[], everyone=False)
    chosen, _ = outbox.targets(recipients, contacts="first", role=None)
    rendered: list[str] = []

    def while_rendering(target: outbox.Target) -> dict[str, object]:
        if not rendered:
            con = sqlite3.connect(db, timeout=0.1, isolation_level=None)
            con.execute("BEGIN IMMEDIATE")  # free: nothing holds the write lock while rendering
            con.execute("ROLLBACK")
            con.close()
            meanwhile = run_cli("queue", "peace-agreement", "--to", "ohchr")
            assert meanwhile.code == 0, meanwhile.output
        rendered.append(target.recipient.id)
        return {}

    with api.open_store(ws) as store:
        report = outbox.queue_letter(
            store,
            Renderer(ws.letters_dir),
            letter,
            chosen,
            ws.settings.sender,
            campaign="peace-agreement",
            now_ms=api.now_ms(),
            context_for=while_rendering,
        )
    assert rendered == ["ohchr", "odihr"]
    assert {row.recipient: row.state for row in report.rows} == {"ohchr": "unchanged", "odihr": "new"}
    rows = [r for r in json.loads(run_cli("log", "--json").stdout) if r["recipient"] == "ohchr"]
    assert len(rows) == 1, rows
    assert [row.message_id for row in report.rows if row.recipient == "ohchr"] == [rows[0]["message_id"]]


# -- an idle `send --wait` keeps its heartbeat ----------------------------------------------------


def test_an_idle_send_wait_keeps_its_heartbeat(workspace: Path, smtp_server: object) -> None:
    # The only letter is due next year: `send --wait` sleeps. With a heartbeat every 0.3 s,
    # `campaign workers` would call it silent after 3 s without a beat; it stays active.
    import signal

    from tests.conftest import run_cli

    config = workspace / "campaign.toml"
    config.write_text(config.read_text().replace("[sending]", "[sending]\nheartbeat = 0.3", 1))
    assert "heartbeat = 0.3" in config.read_text()
    assert run_cli("queue", "peace-agreement", "--to", "ohchr", "--at", "2099-01-01 09:00 UTC").code == 0
    proc = crash.start(workspace, "send", "--wait", "--yes")
    try:

        def listed() -> list[dict]:
            result = run_cli("workers", "--json")
            assert result.code == 0, result.output
            return json.loads(result.stdout)

        wait_for(lambda: len(listed()) == 1, timeout=60)
        [first] = listed()
        time.sleep(4.5)  # longer than ten heartbeats
        [later] = listed()
        assert proc.poll() is None, proc.communicate()
        assert later["state"] == "active", later
        assert later["heartbeat_at"] > first["heartbeat_at"] and later["sent"] == 0
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err
    [stopped] = listed()
    assert stopped["state"] == "stopped"
    # and a worker that stopped beating without stopping (killed) turns silent
    with sqlite3.connect(workspace / ".campaign" / "state.db") as conn:
        conn.execute("UPDATE workers SET stopped_at = NULL, heartbeat_at = '2020-01-01T00:00:00.000Z'")
    assert [w["state"] for w in json.loads(run_cli("workers", "--json").stdout)] == []  # older than a day
    with sqlite3.connect(workspace / ".campaign" / "state.db") as conn:
        conn.execute("UPDATE workers SET heartbeat_at = ?", (stopped["started_at"],))
    assert [w["state"] for w in listed()] == ["silent"]
