"""Queue and send against a real SMTP server on loopback: every outcome class."""

from __future__ import annotations

import email
import email.policy
import fcntl
import json
import os
import socket
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import run_cli, set_smtp_port, tree_digest
from tests.support.smtp import Script, ScriptedServer


def log_rows(*filters: str) -> list[dict]:
    result = run_cli("log", "--json", *filters)
    assert result.code == 0, result.output
    return json.loads(result.stdout)


def events(kind: str | None = None) -> list[dict]:
    result = run_cli("log", "--events", "--json")
    assert result.code == 0, result.output
    rows = json.loads(result.stdout)
    return [r for r in rows if kind is None or r["event"] == kind]


def queue(*args: str) -> None:
    result = run_cli("queue", "peace-agreement", *args)
    assert result.code == 0, result.output


def send(*args: str) -> tuple[int, str]:
    result = run_cli("send", "--yes", *args)
    assert "Traceback" not in result.output
    return result.code, result.output


def test_happy_path_one_message_per_institution(smtp_server: ScriptedServer, workspace: Path) -> None:
    queue("--all")
    again = run_cli("queue", "peace-agreement", "--all")
    assert "0 new, 5 already queued" in again.stdout
    code, output = send()
    assert code == 0, output
    assert len(smtp_server.accepted) == 5
    assert sorted(a.rcpt_tos[0] for a in smtp_server.accepted) == sorted(
        [
            "registry@ohchr.example",
            "wgad@ohchr.example",
            "office@odihr.example",
            "info@mid.example",
            "info@tj-embassy.example",
        ]
    )
    for item in smtp_server.accepted:
        assert len(item.rcpt_tos) == 1  # one message per recipient, never a list
        msg = email.message_from_bytes(item.data, policy=email.policy.default)
        assert len(msg["To"].addresses) == 1 and "Bcc" not in msg and "Cc" not in msg
        assert msg["Date"] is not None and msg["Date"].datetime.utcoffset().total_seconds() == 0
        assert item.mail_from == "receipts@campaign.example"
    rows = log_rows()
    assert {r["status"] for r in rows} == {"sent"}
    assert all(r["last_reply"].startswith("250 2.0.0 Ok: queued as T") for r in rows)
    assert all(r["sent_at"] and r["message_id"] for r in rows)
    assert run_cli("log", "verify").code == 0
    # a second send has nothing to do; queueing again adds nothing
    code, output = send()
    assert code == 0 and "nothing to send" in output
    assert len(smtp_server.accepted) == 5


def test_sent_bytes_match_the_logged_hash(smtp_server: ScriptedServer, workspace: Path) -> None:
    import hashlib

    queue("--to", "ohchr")
    assert send()[0] == 0
    sending = events("sending")
    assert len(sending) == 1
    received = smtp_server.accepted[0].data
    assert hashlib.sha256(received.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")).hexdigest() == sending[0]["sha256"]


def test_dsn_parameters_are_requested(smtp_server: ScriptedServer, workspace: Path) -> None:
    queue("--to", "wgad")
    assert send()[0] == 0
    item = smtp_server.accepted[0]
    envid = next(o for o in item.mail_options if o.startswith("ENVID="))
    assert len(envid) == len("ENVID=") + 32
    assert "RET=HDRS" in item.mail_options
    assert "NOTIFY=SUCCESS,FAILURE,DELAY" in item.rcpt_options
    assert "ORCPT=RFC822;WGAD@OHCHR.EXAMPLE" in item.rcpt_options  # aiosmtpd upper-cases


def test_without_dsn_receipts_are_logged_as_not_requested(workspace: Path) -> None:
    with ScriptedServer(Script(dsn=False)) as server:
        set_smtp_port(workspace, server.port)
        queue("--to", "wgad")
        assert send()[0] == 0
        assert not any(o.startswith("ENVID") for o in server.accepted[0].mail_options)
    sent = events("sent")[0]
    assert sent["dsn"] is False and "not requested" in sent["receipts"]


def test_update_replaces_unsent_letters_and_keeps_message_id(workspace: Path) -> None:
    queue("--to", "ohchr", "--to", "wgad")
    before = {r["recipient"]: r["message_id"] for r in log_rows()}
    template = workspace / "letters" / "peace-agreement" / "en.md.j2"
    template.write_text(template.read_text().replace("{{ salutation }}", "{{ salutation }}\n\nA new first line."))
    report = run_cli("queue", "peace-agreement", "--to", "ohchr", "--to", "wgad")
    assert "differ" in report.stderr and "--update" in report.stderr
    updated = run_cli("queue", "peace-agreement", "--to", "ohchr", "--to", "wgad", "--update")
    assert "2 updated" in updated.stdout
    after = {r["recipient"]: r["message_id"] for r in log_rows()}
    assert after == before
    assert len(events("updated")) == 2


def test_queue_renders_everything_first_or_queues_nothing(workspace: Path) -> None:
    bad = workspace / "letters" / "peace-agreement" / "ru.md.j2"
    bad.write_text(bad.read_text() + "\n{{ recipient.nonexistent }}\n")
    result = run_cli("queue", "peace-agreement", "--all")
    assert result.code == 1 and "undefined" in result.stderr
    assert log_rows() == []
    assert events() == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--all", "--to", "ohchr"], "--all cannot be combined"),
        ([], "choose institutions with --to ID"),
        (["--to", "ohchr", "--at", "next tuesday"], "--at 'next tuesday'"),
        (["--to", "ohchr", "--contacts", "some"], "Invalid value"),
    ],
)
def test_queue_usage_errors(workspace: Path, args: list[str], fragment: str) -> None:
    result = run_cli("queue", "peace-agreement", *args)
    assert result.code == 2 and fragment in result.stderr


def test_contacts_all_and_role(smtp_server: ScriptedServer, workspace: Path) -> None:
    queue("--to", "ohchr", "--contacts", "all")
    assert {r["email"] for r in log_rows()} == {"registry@ohchr.example", "urgent-action@ohchr.example"}
    result = run_cli(
        "queue", "peace-agreement", "--to", "ohchr", "--to", "wgad", "--role", "urgent-appeals", "--campaign", "urgent"
    )
    assert "skipped" in result.stdout
    assert [r["email"] for r in log_rows("--campaign", "urgent")] == ["urgent-action@ohchr.example"]


def test_temporary_failure_then_success(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_SENDING_RETRY_MIN", "0s")
    with ScriptedServer(Script(rcpt=["451 4.3.0 try again later"])) as server:
        set_smtp_port(workspace, server.port)
        queue("--to", "ohchr")
        code, output = send("--wait")
        assert code == 0, output
        assert len(server.accepted) == 1
    kinds = [e["event"] for e in events() if e["message"]]
    assert kinds == ["queued", "sending", "deferred", "sending", "sent"]
    deferred = events("deferred")[0]
    assert deferred["code"] == 451 and deferred["status"] == "4.3.0" and deferred["attempt"] == 1
    assert log_rows()[0]["attempts"] == 2


def test_deferred_without_wait_lists_the_next_attempt(workspace: Path) -> None:
    with ScriptedServer(Script(rcpt=["452 4.2.2 mailbox full"])) as server:
        set_smtp_port(workspace, server.port)
        queue("--to", "ohchr")
        code, output = send()
    assert code == 0
    assert "still to send" in output
    row = log_rows()[0]
    assert row["status"] == "deferred" and row["next_attempt_at"]


def test_max_age_turns_deferral_into_failure(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_SENDING_MAX_AGE", "0s")
    with ScriptedServer(Script(rcpt=["451 4.3.0 later"])) as server:
        set_smtp_port(workspace, server.port)
        queue("--to", "ohchr")
        code, _ = send()
    assert code == 3
    assert log_rows()[0]["status"] == "failed"
    assert "max_age" in events("failed")[0]["reason"]


@pytest.mark.parametrize(
    ("script", "state", "event", "code"),
    [
        (Script(rcpt=["550 5.1.1 <x>: Recipient address rejected: User unknown"]), "failed", "failed", 3),
        (Script(rcpt=["554 5.7.1 Message rejected by policy"]), "held", "held", 3),
        (Script(data_end=["552 5.3.4 Message size exceeds fixed limit"]), "failed", "failed", 3),
        (Script(data_end=["554 5.6.0 Message content rejected"]), "failed", "failed", 3),
        (Script(data_start=["451 4.3.0 not now"]), "deferred", "deferred", 0),
    ],
)
def test_permanent_and_policy_outcomes(workspace: Path, script: Script, state: str, event: str, code: int) -> None:
    with ScriptedServer(script) as server:
        set_smtp_port(workspace, server.port)
        queue("--to", "ohchr")
        rc, output = send()
    assert rc == code, output
    assert log_rows()[0]["status"] == state
    logged = events(event)
    assert logged and logged[0]["code"] in (550, 554, 552, 451)


def test_address_failure_hints_at_the_registry(workspace: Path) -> None:
    with ScriptedServer(Script(rcpt=["550 5.1.1 User unknown"])) as server:
        set_smtp_port(workspace, server.port)
        queue("--to", "ohchr")
        _, output = send()
    assert "recipients.yaml" in output
    assert "recipients.yaml" in events("failed")[0]["hint"]


def test_held_message_can_be_released(workspace: Path) -> None:
    with ScriptedServer(Script(rcpt=["554 5.7.1 policy"])) as server:
        set_smtp_port(workspace, server.port)
        queue("--to", "ohchr")
        send()
        held = log_rows()[0]
        assert held["status"] == "held"
        result = run_cli("release", str(held["id"]), "--note", "checked with the secretariat")
        assert result.code == 0
        assert log_rows()[0]["status"] == "queued"
        assert send()[0] == 0
        assert len(server.accepted) == 1
    assert events("released")[0]["note"] == "checked with the secretariat"
    bad = run_cli("release", "999")
    assert bad.code == 1 and "no message with id 999" in bad.stderr


def test_greeting_421_stops_the_run_untouched(workspace: Path) -> None:
    with ScriptedServer(Script(greeting="421 4.3.2 Service not available, closing channel")) as server:
        set_smtp_port(workspace, server.port)
        queue("--all")
        before = log_rows()
        code, output = send()
    assert code == 1
    assert "not accepting mail now: 421 4.3.2" in output
    assert log_rows() == before
    assert not events("sending")


def test_connection_refused_stops_the_run(workspace: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    set_smtp_port(workspace, port)
    queue("--to", "ohchr")
    code, output = send()
    assert code == 1 and "cannot connect" in output
    assert log_rows()[0]["status"] == "queued"


def test_authentication_failure_stops_the_run_untouched(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "correct-horse-battery-staple-9f3a"
    monkeypatch.setenv("CAMPAIGN_SMTP_USERNAME", "letters@campaign.example")
    monkeypatch.setenv("CAMPAIGN_SMTP_PASSWORD", secret)
    with ScriptedServer(Script(auth_ok=False), auth=True) as server:
        set_smtp_port(workspace, server.port)
        queue("--all")
        code, output = send()
        assert not server.accepted
    assert code == 1
    assert "authentication failed for letters@campaign.example" in output
    assert secret not in output
    assert {r["status"] for r in log_rows()} == {"queued"}
    assert not events("sending")


def test_missing_password_is_one_line(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_SMTP_USERNAME", "letters@campaign.example")
    queue("--to", "ohchr")
    result = run_cli("send", "--yes")
    assert result.code == 1
    assert "CAMPAIGN_SMTP_PASSWORD" in result.stderr and "Traceback" not in result.output


def test_reset_in_the_middle_of_data_is_a_plain_deferral(workspace: Path) -> None:
    big = workspace / "letters" / "big"
    big.mkdir()
    paragraph = "Lorem ipsum dolor sit amet. " * 40
    (big / "en.md.j2").write_text(
        f"---\nsubject: A long letter\n---\n{{% for i in range(6000) %}}{paragraph}\n\n{{% endfor %}}"
    )
    with ScriptedServer(Script(reset_mid_data=1)) as server:
        set_smtp_port(workspace, server.port)
        assert run_cli("queue", "big", "--to", "ohchr").code == 0
        code, output = send()
        assert server.resets == 1
    assert code == 0, output
    row = log_rows()[0]
    assert row["status"] == "deferred" and not row["possible_duplicate"]
    deferred = events("deferred")[0]
    assert "while sending the message" in deferred["reply"]
    assert not events("outcome_unknown")


def test_reset_after_the_final_dot_is_an_unknown_outcome(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_SENDING_RETRY_MIN", "0s")
    with ScriptedServer(Script(reset_after_dot=1)) as server:
        set_smtp_port(workspace, server.port)
        queue("--to", "ohchr")
        code, output = send("--wait")
        assert code == 0, output
        # the server had the whole message the first time: it may have delivered it
        assert len(server.unconfirmed) == 1 and len(server.accepted) == 1
    unknown = events("outcome_unknown")
    assert unknown and unknown[0]["possible_duplicate"] is True
    assert "after the end of the message" in unknown[0]["reply"]
    sent = events("sent")[0]
    assert sent["possible_duplicate"] is True  # the log names the duplicate
    assert log_rows()[0]["possible_duplicate"] is True


def test_server_slower_than_the_timeout(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_SMTP_DATA_TIMEOUT", "1s")
    with ScriptedServer(Script(stall_after_dot=3)) as server:
        set_smtp_port(workspace, server.port)
        queue("--to", "ohchr")
        send()
    unknown = events("outcome_unknown")
    assert unknown and "no reply within 1s" in unknown[0]["reply"]
    assert log_rows()[0]["status"] == "deferred"


def test_rcpt_timeout_is_a_deferral(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_SMTP_TIMEOUT", "1s")
    with ScriptedServer(Script(stall_rcpt=3)) as server:
        set_smtp_port(workspace, server.port)
        queue("--to", "ohchr")
        send()
    row = log_rows()[0]
    assert row["status"] == "deferred" and not row["possible_duplicate"]


def test_crash_between_sending_and_sent_is_resent_and_named(smtp_server: ScriptedServer, workspace: Path) -> None:
    queue("--to", "ohchr", "--to", "wgad")
    # A run that marked one message `sending` and died before recording the outcome.
    from campaign import api

    ws = api.open_workspace(workspace)
    store = api.open_store(ws)
    from campaign.pacing import Pacer, PacingConfig

    claim = store.claim(
        api.now_ms(),
        worker="crashed",
        limit=1,
        pacer=Pacer(PacingConfig(rate=100, per_domain_rate=100)),
        lease_ms=60_000,
        prefix=api.wire_prefix_for(ws),
    )
    store.close()
    assert len(claim.items) == 1
    crashed = claim.items[0].message_id
    code, output = send()
    assert code == 0, output
    assert "may have reached the institution twice" in output
    recovered = events("crash_recovered")
    assert [e["message"] for e in recovered] == [crashed]
    resent = [e for e in events("sending") if e["message"] == crashed]
    assert resent[-1]["possible_duplicate"] is True
    assert resent[0]["sha256"] == resent[-1]["sha256"]  # the same bytes went out again
    assert run_cli("log", "verify").code == 0


def test_only_one_send_per_workspace(smtp_server: ScriptedServer, workspace: Path) -> None:
    queue("--to", "ohchr")
    state = workspace / ".campaign"
    with open(state / "state.db.send-lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_cli("send", "--yes")
        # The same database named by URL is the same queue: the same lock (issue: -C vs --db).
        named = run_cli("--db", f"sqlite:///{state / 'state.db'}", "send", "--yes")
    assert result.code == 1 and "another `campaign send` is using this database" in result.stderr
    assert named.code == 1 and "another `campaign send` is using this database" in named.stderr
    assert log_rows()[0]["status"] == "queued"


def test_send_refuses_without_terminal_or_yes(smtp_server: ScriptedServer, workspace: Path) -> None:
    queue("--to", "ohchr")
    result = run_cli("send")
    assert result.code == 1 and "--yes" in result.stderr
    assert not smtp_server.accepted


def test_dry_run_writes_bytes_and_changes_nothing(smtp_server: ScriptedServer, workspace: Path) -> None:
    queue("--all")
    db = workspace / ".campaign" / "state.db"
    before = db.read_bytes()
    rows_before = log_rows()
    result = run_cli("send", "--dry-run")
    assert result.code == 0 and "nothing was sent" in result.stdout
    files = sorted((workspace / ".campaign" / "outbox").glob("*.eml"))
    assert len(files) == 5
    assert all(oct(f.stat().st_mode & 0o777) == "0o600" for f in files)
    assert files[0].read_bytes().startswith(b"Date: ")
    assert log_rows() == rows_before and not smtp_server.accepted
    assert db.read_bytes() == before


def test_limit_sends_at_most_n(smtp_server: ScriptedServer, workspace: Path) -> None:
    queue("--all")
    assert send("--limit", "2")[0] == 0
    assert len(smtp_server.accepted) == 2
    assert send()[0] == 0
    assert len(smtp_server.accepted) == 5


def test_ehlo_and_message_id_never_name_this_machine(smtp_server: ScriptedServer, workspace: Path) -> None:
    queue("--all")
    send()
    host = socket.gethostname().lower()
    fqdn = socket.getfqdn().lower()
    assert smtp_server.ehlo_names and set(smtp_server.ehlo_names) == {"campaign.example"}
    for item in smtp_server.accepted:
        raw = item.data.decode("ascii").lower()
        assert host not in raw and fqdn not in raw
        msg = email.message_from_bytes(item.data, policy=email.policy.default)
        assert msg["Message-ID"].endswith("@campaign.example>")
        assert "+0000" in msg["Date"] or "-0000" in msg["Date"]
        assert "X-Mailer" not in msg and "User-Agent" not in msg


def test_password_never_stored_or_printed(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-Pa55word-unique-7781"
    monkeypatch.setenv("CAMPAIGN_SMTP_USERNAME", "letters@campaign.example")
    monkeypatch.setenv("CAMPAIGN_SMTP_PASSWORD", secret)
    outputs = []
    with ScriptedServer(Script(), auth=True) as server:
        set_smtp_port(workspace, server.port)
        outputs.append(run_cli("queue", "peace-agreement", "--all").output)
        outputs.append(run_cli("send", "--yes", "--dry-run").output)
        outputs.append(run_cli("send", "--yes").output)
        outputs.append(run_cli("log", "--events", "--json").output)
        assert len(server.accepted) == 5
    for text in outputs:
        assert secret not in text
    for path in workspace.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_state_files_are_private(smtp_server: ScriptedServer, workspace: Path) -> None:
    queue("--to", "ohchr")
    send()
    state = workspace / ".campaign"
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    for name in ("state.db", "state.db.send-lock"):
        assert oct((state / name).stat().st_mode & 0o777) == "0o600", name
    assert (state / ".gitignore").exists()


def test_edited_event_fails_verify(smtp_server: ScriptedServer, workspace: Path) -> None:
    queue("--all")
    send()
    ok = run_cli("log", "verify")
    assert ok.code == 0 and "ok:" in ok.stdout
    db = sqlite3.connect(workspace / ".campaign" / "state.db")
    with db:
        db.execute("DROP TRIGGER events_no_update")  # someone with the file and sqlite3 at hand
        db.execute(
            "UPDATE events SET data = replace(data, '250 2.0.0', '550 5.0.0') WHERE kind = 'sent' AND seq = "
            "(SELECT MIN(seq) FROM events WHERE kind = 'sent')"
        )
    db.close()
    broken = run_cli("log", "verify")
    assert broken.code == 1
    seq = events("sent")[0]["seq"]
    assert f"broken at event {seq}" in broken.stderr


def test_events_are_append_only_in_the_database(smtp_server: ScriptedServer, workspace: Path) -> None:
    queue("--to", "ohchr")
    db = sqlite3.connect(workspace / ".campaign" / "state.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM events")
    db.close()


def test_status_and_log_views(smtp_server: ScriptedServer, workspace: Path) -> None:
    queue("--all")
    send("--limit", "3")
    status = json.loads(run_cli("status", "--json").stdout)
    assert status["campaigns"] == {"peace-agreement": {"queued": 2, "sent": 3}}
    assert status["waiting"][0]["count"] == 2
    table = run_cli("status")
    assert "peace-agreement" in table.stdout
    csv_out = run_cli("log", "--csv").stdout.splitlines()
    assert csv_out[0].startswith("id,campaign,letter,recipient,email,lang,status")
    assert len(csv_out) == 6
    assert len(log_rows("--status", "sent")) == 3
    assert len(log_rows("--to", "mid")) == 1
    both = run_cli("log", "--json", "--csv")
    assert both.code == 2
    unknown = run_cli("status", "--campaign", "nope")
    assert unknown.code == 1 and "no campaign named 'nope'" in unknown.stderr


def test_corrupted_state_database_is_one_line(workspace: Path) -> None:
    state = workspace / ".campaign"
    state.mkdir(mode=0o700)
    (state / "state.db").write_bytes(b"this is not sqlite at all" * 100)
    before = tree_digest(workspace)
    result = run_cli("status")
    assert result.code == 1 and "not a campaign database, or it is corrupted" in result.stderr
    assert "Traceback" not in result.output
    assert tree_digest(workspace) == before


def test_migrations_are_recorded(workspace: Path) -> None:
    queue("--to", "ohchr")
    db = sqlite3.connect(workspace / ".campaign" / "state.db")
    names = [r[0] for r in db.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert names[0] == "0001_queue_and_log"
    db.execute("INSERT INTO schema_migrations VALUES ('9999_from_the_future', 'x')")
    db.commit()
    db.close()
    result = run_cli("status")
    assert result.code == 1 and "newer version of campaign" in result.stderr


def test_smtputf8_address_needs_the_extension(workspace: Path) -> None:
    registry = workspace / "recipients.yaml"
    registry.write_text(registry.read_text().replace("info@mid.example", "почта@мид.example"))
    with ScriptedServer(Script(smtputf8=False)) as server:
        set_smtp_port(workspace, server.port)
        queue("--to", "mid")
        code, _ = send()
    assert code == 3
    failed = events("failed")[0]
    assert "SMTPUTF8" in failed["reply"]
    with ScriptedServer(Script(smtputf8=True)) as server:
        set_smtp_port(workspace, server.port)
        assert run_cli("release", str(log_rows()[0]["id"])).code == 0
        assert send()[0] == 0
        assert server.accepted[0].rcpt_tos == ["почта@мид.example"]
        assert "SMTPUTF8" in server.accepted[0].mail_options


def test_idn_domain_goes_out_in_ascii(workspace: Path) -> None:
    registry = workspace / "recipients.yaml"
    registry.write_text(registry.read_text().replace("info@mid.example", "info@мид.example"))
    with ScriptedServer(Script(smtputf8=False)) as server:
        set_smtp_port(workspace, server.port)
        queue("--to", "mid")
        assert send()[0] == 0
        assert server.accepted[0].rcpt_tos == ["info@" + "мид".encode("idna").decode() + ".example"]


def test_environment_is_not_leaked_in_paths(workspace: Path) -> None:
    assert os.environ.get("CAMPAIGN_WORKSPACE") == str(workspace)
