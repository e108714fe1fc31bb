"""Cases and submissions, continued (tests/test_cases.py is near its size limit): what
`submit prepare --queue` reports, the language and length checks `cases check` shares with
`submit prepare`, the Human Rights Committee's authorisation, `letters check --case` scope,
and what the prepared documents look like."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import run_cli, set_smtp_port, tree_digest
from tests.support.smtp import Script, ScriptedServer
from tests.test_cases import ok, real_case, write_case
from tests.test_cases import ws as ws  # the fixture: a workspace with the shipped registry

# ---------------------------------------------------------------------------
# submit prepare --queue says what happened, with the words `campaign queue` uses


def message_count(ws: Path) -> int:
    con = sqlite3.connect(ws / ".campaign" / "state.db")
    try:
        return int(con.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        con.close()


def test_prepare_queue_after_the_letter_was_sent_says_so_and_fails(ws: Path) -> None:
    path = write_case(ws, "c1", real_case())
    with ScriptedServer(Script()) as server:
        set_smtp_port(ws, server.port)
        first = ok("submit", "prepare", "--case", "c1", "--to", "un-wgeid", "--queue")
        assert "queue: campaign case-submission, un-wgeid <hrc-wg-eid@un.org>: 1 new, 0 already queued" in first
        ok("send", "--yes")
        # The same document again, then a changed one: neither is queued, and neither says "changed-sent".
        for text in (real_case(), real_case().replace("two neighbours", "three neighbours")):
            path.write_text(text)
            result = run_cli("submit", "prepare", "--case", "c1", "--to", "un-wgeid", "--queue", "--force")
            assert result.code == 1, result.output
            assert "0 new, 0 already queued, 1 already sent" in result.stdout
            assert "send it with" not in result.output and "changed-sent" not in result.output
            errors = [line for line in result.stderr.splitlines() if line.strip()]
            assert errors == [
                "error: nothing was queued: the submission to un-wgeid in campaign case-submission was already "
                "sent: for a follow-up submission add --campaign NEW (e.g. --campaign case-submission-2)"
            ]
            assert message_count(ws) == 1
        # What the error says to do works.
        again = ok(
            "submit", "prepare", "--case", "c1", "--to", "un-wgeid", "--queue", "--force",
            "--campaign", "case-submission-2",
        )  # fmt: skip
        assert "1 new, 0 already queued" in again and "send it with `campaign send`" in again
        ok("send", "--yes")
        assert len(server.accepted) == 2
    # `campaign queue` reports a sent letter the same way (it said "already queued").
    summary = ok("queue", "case-submission", "--to", "un-wgeid", "--case", "c1", "--campaign", "case-submission-2")
    assert "0 new, 0 already queued, 1 already sent" in summary


def test_prepare_queue_with_a_changed_unsent_letter_needs_update(ws: Path) -> None:
    path = write_case(ws, "c1", real_case())
    ok("submit", "prepare", "--case", "c1", "--to", "un-wgeid", "--queue")
    same = ok("submit", "prepare", "--case", "c1", "--to", "un-wgeid", "--queue", "--force")
    assert "0 new, 1 already queued" in same  # queued, waiting: nothing to do
    path.write_text(real_case().replace("two neighbours", "three neighbours"))
    before = tree_digest(ws / ".campaign" / "cases")
    result = run_cli("submit", "prepare", "--case", "c1", "--to", "un-wgeid", "--queue", "--force")
    assert result.code == 1
    assert "0 new, 0 already queued, 1 changed (not updated)" in result.stdout
    assert "waits to be sent with a different text: add --update to replace it" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1
    updated = ok("submit", "prepare", "--case", "c1", "--to", "un-wgeid", "--queue", "--force", "--update")
    assert "0 new, 0 already queued, 1 updated" in updated
    assert message_count(ws) == 1 and tree_digest(ws / ".campaign" / "cases") == before
