"""The strict SMTP client against a raw scripted server that breaks the protocol on purpose.

Each test goes through the real CLI. The rule under test: one reply per command, of the
class the command expects; anything else ends the connection with ``abort()`` and the
outcome follows the phase (nothing sent before the body; unknown, named as a possible
duplicate, once the final dot may have left). A broken server stops the run with one
line instead of burning an attempt per letter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli, set_smtp_port
from tests.support.rawsmtp import Behaviour, RawServer
from tests.support.smtp import Script, ScriptedServer


def log_rows() -> list[dict]:
    result = run_cli("log", "--json")
    assert result.code == 0, result.output
    return json.loads(result.stdout)


def events(kind: str) -> list[dict]:
    result = run_cli("log", "--events", "--json")
    return [e for e in json.loads(result.stdout) if e["event"] == kind]


def queue(*args: str) -> None:
    result = run_cli("queue", "peace-agreement", *args)
    assert result.code == 0, result.output


def send_through(behaviour: Behaviour, workspace: Path) -> tuple[RawServer, object]:
    with RawServer(behaviour) as server:
        set_smtp_port(workspace, server.port)
        result = run_cli("send", "--yes")
    assert "Traceback" not in result.output, result.output
    return server, result


def one_error_line(stderr: str) -> None:
    """The run stops with one error line (and a hint); per-letter progress lines may precede it."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert all(line.startswith("hint:") for line in lines[errors[0] + 1 :]), stderr


def resend_once(workspace: Path) -> ScriptedServer:
    """The next run against a correct server: every letter arrives, once."""
    with ScriptedServer(Script()) as good:
        set_smtp_port(workspace, good.port)
        result = run_cli("send", "--yes")
        assert result.code == 0, result.output
    return good


def test_250_to_data_is_not_a_delivery_and_stops_the_run(workspace: Path) -> None:
    # Case 1: a server that answers DATA with 250. Nothing was transmitted.
    queue("--all")
    server, result = send_through(Behaviour(replies={"DATA": [b"250 2.0.0 OK\r\n"] * 10}), workspace)
    assert result.code == 1
    assert "instead of 354" in result.stderr
    one_error_line(result.stderr)
    assert not server.messages
    rows = log_rows()
    # Nothing was sent, so nothing counts as an attempt: each letter a connection had taken
    # is put back (``not_sent``, with the reason), and the run stopped there.
    assert {r["status"] for r in rows} == {"queued"} and not any(r["attempts"] for r in rows)
    assert events("not_sent") and "instead of 354" in events("not_sent")[0]["reason"]
    assert not any(r["possible_duplicate"] for r in rows)
    good = resend_once(workspace)
    assert len(good.accepted) == 5


def test_a_stray_extra_reply_after_rcpt_sends_nothing(workspace: Path) -> None:
    # Case 2: one extra reply line after RCPT puts client and server out of step.
    queue("--all")
    behaviour = Behaviour(replies={"RCPT": [b"250 2.1.5 Ok\r\n250 2.1.5 and again\r\n"] * 10})
    server, result = send_through(behaviour, workspace)
    assert result.code == 1
    assert "broke the SMTP protocol" in result.stderr
    one_error_line(result.stderr)
    assert not server.messages and not server.partial
    assert not [r for r in log_rows() if r["status"] == "sent"]
    assert not any(r["possible_duplicate"] for r in log_rows())
    assert len(resend_once(workspace).accepted) == 5


def test_a_reply_to_nothing_is_a_violation(workspace: Path) -> None:
    # A stray line right behind MAIL's reply, while no command waits for one: the client
    # drops the connection before RCPT (never QUIT), nothing is sent, the run stops.
    queue("--to", "ohchr")
    behaviour = Behaviour(unsolicited_after={"MAIL": b"250 2.0.0 surprise\r\n"})
    server, result = send_through(behaviour, workspace)
    assert result.code == 1
    one_error_line(result.stderr)
    assert f"127.0.0.1:{server.port}" in result.stderr
    assert "a reply nobody asked for: '250 2.0.0 surprise'" in result.stderr
    assert not server.messages and not server.partial
    verbs = [c.split(":")[0].split(" ")[0] for c in server.commands]
    assert verbs.count("MAIL") == 1 and "RCPT" not in verbs, verbs
    [row] = log_rows()
    assert row["status"] == "queued" and not row["attempts"] and not row["possible_duplicate"]
    assert [e["reason"] for e in events("not_sent")] and not events("deferred")
    assert len(resend_once(workspace).accepted) == 1


def test_a_stray_line_after_the_final_250_stops_the_run_before_the_next_letter(workspace: Path) -> None:
    # A reply to nothing between two messages: letter 1 got its 250 and is recorded sent;
    # the stray line behind it drops the connection at once (no QUIT, no reconnect) and
    # stops the run with one line naming the server. Letter 2 is never started.
    queue("--all")
    behaviour = Behaviour(unsolicited_after={"DOT": b"250 2.0.0 stray\r\n"})
    with RawServer(behaviour) as server:
        set_smtp_port(workspace, server.port)
        result = run_cli("send", "--yes", "--concurrency", "1")
    assert "Traceback" not in result.output, result.output
    assert result.code == 1, result.output
    one_error_line(result.stderr)
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert f"127.0.0.1:{server.port}" in error and "a reply nobody asked for: '250 2.0.0 stray'" in error
    assert len(server.messages) == 1
    assert [c.split(":")[0].split(" ")[0] for c in server.commands] == ["EHLO", "MAIL", "RCPT", "DATA"]
    rows = log_rows()
    [sent] = [r for r in rows if r["status"] == "sent"]
    assert not sent["possible_duplicate"]
    rest = [r for r in rows if r is not sent]
    assert len(rest) == 4
    assert all(r["status"] == "queued" and not r["attempts"] and not r["possible_duplicate"] for r in rest), rest
    assert not events("outcome_unknown") and not events("deferred")
    # The next run against a correct server sends the four others, and letter 1 not again.
    assert len(resend_once(workspace).accepted) == 4


def test_a_stall_mid_message_past_data_timeout_is_a_deferral_and_the_dot_never_leaves(workspace: Path) -> None:
    # Case 4: the server stops reading mid-message past data_timeout, then resumes. The
    # client must drop the connection (not close it, which would flush the rest and the
    # dot): the server must never receive a complete copy from the first attempt.
    config = workspace / "campaign.toml"
    text = config.read_text().replace('data_timeout = "5s"', 'data_timeout = "2s"')
    config.write_text(text.replace('retry_min = "1m"', 'retry_min = "0s"'))  # the retry comes at once
    big = workspace / "letters" / "big"
    big.mkdir()
    paragraph = "Lorem ipsum dolor sit amet. " * 40
    (big / "en.md.j2").write_text(
        f"---\nsubject: A long letter\n---\n{{% for i in range(6000) %}}{paragraph}\n\n{{% endfor %}}"
    )
    assert run_cli("queue", "big", "--to", "ohchr").code == 0
    server, result = send_through(Behaviour(stall_in_body=[(100_000, 5.0)]), workspace)
    assert result.code == 0, result.output
    # The retry delivered it; the first attempt must not have: one copy, not two.
    assert len(server.messages) == 1, "the stalled attempt delivered a copy too"
    row = log_rows()[0]
    assert row["status"] == "sent" and not row["possible_duplicate"]
    [deferred] = events("deferred")
    assert "never sent" in deferred["reply"]
    assert not events("outcome_unknown")


def test_garbage_reply_to_data_is_a_protocol_error_not_a_traceback(workspace: Path) -> None:
    # Case 9 (DATA): never a traceback, never left "sending".
    queue("--to", "ohchr")
    server, result = send_through(Behaviour(replies={"DATA": [b"hello there\r\n"]}), workspace)
    assert result.code == 1 and "not an SMTP reply line" in result.stderr
    one_error_line(result.stderr)
    assert log_rows()[0]["status"] == "queued" and not server.messages


def test_garbage_reply_after_the_dot_is_an_unknown_outcome_named_as_possible_duplicate(workspace: Path) -> None:
    # Case 9 (after the dot): the server has the whole message; its answer is nonsense.
    queue("--to", "ohchr")
    server, result = send_through(Behaviour(replies={"DOT": [b"OK THANKS\r\n"]}), workspace)
    assert result.code == 1 and "after the end of the message" in result.stderr
    assert len(server.messages) == 1
    row = log_rows()[0]
    assert row["status"] == "deferred" and row["possible_duplicate"]
    assert events("outcome_unknown")


def test_garbage_reply_to_rcpt_is_not_a_permanent_failure(workspace: Path) -> None:
    # Case 9 (RCPT): a malformed reply is not a 5xx: the letter is not failed.
    queue("--to", "ohchr")
    _, result = send_through(Behaviour(replies={"RCPT": [b"55O no such user\r\n"]}), workspace)
    assert result.code == 1
    assert log_rows()[0]["status"] == "queued" and not events("failed")


def test_a_multiline_reply_that_changes_its_code_is_a_violation(workspace: Path) -> None:
    queue("--to", "ohchr")
    _, result = send_through(Behaviour(replies={"MAIL": [b"250-first\r\n354 second\r\n"]}), workspace)
    assert result.code == 1 and "changed its code" in result.stderr
    assert log_rows()[0]["status"] in ("queued", "deferred")


def test_a_broken_greeting_stops_the_run_untouched(workspace: Path) -> None:
    queue("--to", "ohchr")
    _, result = send_through(Behaviour(greeting=b"SSH-2.0-OpenSSH_9.2\r\n"), workspace)
    assert result.code == 1 and "broke the SMTP protocol while connecting" in result.stderr
    one_error_line(result.stderr)
    assert log_rows()[0]["status"] == "queued" and log_rows()[0]["attempts"] == 0


@pytest.mark.parametrize(
    "wire",
    [
        b"Subject: a\r\n\r\nbody\r\n",
        b"Subject: a\r\n\r\n.starts with a dot\r\n.\r\n..two\r\n",
        b".first\r\nline",
        b"bare\nlf\n.dot\n",
        b"bare\rcr\r.dot\r",
        b"mixed\r\n\n\r\r\n.x\r",
        b"\r\n\r\n",
        b"",
        b"no line end at all",
        b"a\r\n.\r\n",
    ],
)
def test_data_is_framed_exactly_as_the_rfc_says(wire: bytes) -> None:
    # The fast path (lines already CRLF, no dot to stuff) frames as the full rewrite does.
    import re

    from campaign.transport import prepare_data

    data = re.sub(rb"\r\n|\n|\r(?!\n)", b"\r\n", wire)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    assert prepare_data(wire) == re.sub(rb"(?m)^\.", b"..", data) + b".\r\n"
