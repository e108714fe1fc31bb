"""Running a live campaign, through the real CLI: cancel, pause and resume, rescheduling,
letters whose institution or address changed, test sends, and what waits and why."""

from __future__ import annotations

import email
import email.policy
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import run_cli, tree_digest
from tests.support.review import dsn
from tests.support.smtp import ScriptedServer


def queue(*args: str) -> None:
    result = run_cli("queue", "peace-agreement", *args)
    assert result.code == 0, result.output


def rows() -> list[dict]:
    return json.loads(run_cli("log", "--json").stdout)


def events(kind: str | None = None) -> list[dict]:
    found = json.loads(run_cli("log", "--events", "--json").stdout)
    return [e for e in found if kind is None or e["event"] == kind]


def test_cancel_moves_unsent_letters_to_cancelled_with_a_reason(smtp_server: ScriptedServer, workspace: Path) -> None:
    queue("--all")
    ids = {r["recipient"]: r["id"] for r in rows()}
    result = run_cli("cancel", "--to", "ohchr", "--reason", "wrong desk")
    assert result.code == 0, result.output
    assert "1 letter cancelled" in result.stdout
    [cancelled] = events("cancelled")
    assert cancelled["reason"] == "wrong desk" and cancelled["from"] == "queued"
    assert run_cli("send", "--yes").code == 0
    statuses = {r["recipient"]: r["status"] for r in rows()}
    assert statuses["ohchr"] == "cancelled" and "ohchr" not in {
        m.rcpt_tos[0].split("@")[1] for m in smtp_server.accepted
    }
    # a sent letter cannot be cancelled: said, not changed
    other = next(i for name, i in ids.items() if name != "ohchr")
    again = run_cli("cancel", str(other))
    assert again.code == 0 and "already sent" in again.stderr
    assert run_cli("log", "verify").code == 0


def test_cancel_needs_a_choice_and_asks_before_all(workspace: Path) -> None:
    queue("--all")
    before = tree_digest(workspace)
    nothing = run_cli("cancel")
    assert nothing.code == 2 and "choose letters" in nothing.stderr
    unknown = run_cli("cancel", "999")
    assert unknown.code == 1 and "no letter with id 999" in unknown.stderr
    no_terminal = run_cli("cancel", "--all")
    assert no_terminal.code == 1 and "--yes" in no_terminal.stderr
    assert tree_digest(workspace) == before
    assert run_cli("cancel", "--all", "--yes").code == 0
    assert {r["status"] for r in rows()} == {"cancelled"}


def test_pause_stops_a_campaign_for_every_sender_and_resume_restarts_it(
    smtp_server: ScriptedServer, workspace: Path
) -> None:
    queue("--to", "ohchr")
    queue("--to", "wgad", "--campaign", "other")
    assert run_cli("pause", "--campaign", "peace-agreement", "--reason", "court ruling").code == 0
    result = run_cli("send", "--yes")
    assert result.code == 0, result.output
    assert "skipping what is paused: 1 letter waits in paused campaign peace-agreement" in result.stderr
    assert len(smtp_server.accepted) == 1  # only "other"
    status = json.loads(run_cli("status", "--json").stdout)
    assert any(w["reason"].startswith("paused") for w in status["waiting"])
    resumed = run_cli("resume", "--campaign", "peace-agreement")
    assert resumed.code == 0 and "sends its letters again" in resumed.stdout, resumed.output
    assert run_cli("send", "--yes").code == 0
    assert len(smtp_server.accepted) == 2
    kinds = [e["event"] for e in events()]
    assert "paused" in kinds and "resumed" in kinds
    not_paused = run_cli("resume", "--campaign", "peace-agreement")
    assert not_paused.code == 1 and "error: campaign peace-agreement was not paused" in not_paused.stderr


def test_queue_at_on_a_queued_letter_reschedules_it(workspace: Path) -> None:
    queue("--to", "ohchr")
    result = run_cli("queue", "peace-agreement", "--to", "ohchr", "--at", "2099-01-05 09:00 Europe/Zurich")
    assert result.code == 0, result.output
    assert "1 rescheduled" in result.stdout and "0 new" in result.stdout
    [row] = rows()
    assert row["next_attempt_at"].startswith("2099-01-05T08:00")
    plan = json.loads(run_cli("plan", "--json").stdout)
    assert plan[0]["expected_at"].startswith("2099-01-05") and plan[0]["waiting"].startswith("scheduled")
    assert events("rescheduled")


def test_a_letter_whose_address_changed_is_held_and_release_refuses_it(
    smtp_server: ScriptedServer, workspace: Path
) -> None:
    queue("--to", "ohchr", "--to", "wgad")
    registry = workspace / "recipients.yaml"
    text = registry.read_text()
    [old] = [r["email"] for r in rows() if r["recipient"] == "ohchr"]
    registry.write_text(text.replace(old, "new-desk@ohchr.org"))
    result = run_cli("send", "--yes")
    assert result.code == 3, result.output
    assert "address of ohchr changed in recipients.yaml: requeue or cancel" in result.stdout
    by = {r["recipient"]: r for r in rows()}
    assert by["ohchr"]["status"] == "held" and by["wgad"]["status"] == "sent"
    assert len(smtp_server.accepted) == 1
    before = tree_digest(workspace)
    refused = run_cli("release", str(by["ohchr"]["id"]))
    assert refused.code == 1 and "old address" in refused.stderr
    assert "is no longer an address of ohchr" in refused.stderr
    assert "hint: `campaign queue peace-agreement --to ohchr` makes a new letter to the new address" in refused.stderr
    assert "removed" not in refused.stderr
    assert tree_digest(workspace) == before
    # the truthful way: queue for the new address, cancel the old letter
    queue("--to", "ohchr")
    assert run_cli("cancel", str(by["ohchr"]["id"])).code == 0
    assert run_cli("send", "--yes").code == 0
    assert smtp_server.accepted[-1].rcpt_tos == ["new-desk@ohchr.org"]


def test_an_institution_removed_from_the_registry_is_held_with_its_own_reason(
    smtp_server: ScriptedServer, workspace: Path
) -> None:
    queue("--to", "ohchr")
    registry = workspace / "recipients.yaml"
    lines = registry.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.strip() == "- id: ohchr")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("- id:")), len(lines))
    registry.write_text("".join(lines[:start] + lines[end:]))
    result = run_cli("send", "--yes")
    assert "ohchr is no longer in recipients.yaml" in result.stdout
    assert rows()[0]["status"] == "held" and not smtp_server.accepted
    # release must not offer to requeue for an institution that is gone
    before = tree_digest(workspace)
    refused = run_cli("release", str(rows()[0]["id"]))
    assert refused.code == 1, refused.output
    assert "ohchr is no longer in recipients.yaml" in refused.stderr and "institution you removed" in refused.stderr
    assert "no longer an address" not in refused.stderr and "campaign queue" not in refused.stderr
    assert f"hint: `campaign cancel {rows()[0]['id']}`, or put ohchr back in recipients.yaml" in refused.stderr
    assert tree_digest(workspace) == before
    assert run_cli("cancel", str(rows()[0]["id"])).code == 0


def test_test_send_goes_to_the_organiser_with_its_own_identity(smtp_server: ScriptedServer, workspace: Path) -> None:
    queue("--to", "ohchr")
    [real] = rows()
    result = run_cli("send", "--test-to", "me@organiser.example", "--to", "ohchr", "--lang", "ru")
    assert result.code == 0, result.output
    [copy] = smtp_server.accepted
    assert copy.rcpt_tos == ["me@organiser.example"]
    assert "+test-" in copy.mail_from
    msg = email.message_from_bytes(copy.data, policy=email.policy.SMTP)
    assert str(msg["Subject"]).startswith("[TEST] ")
    assert msg["Message-ID"] != real["message_id"]
    assert msg["Content-Language"] == "ru"
    envid = [o for o in copy.mail_options if o.startswith("ENVID=")]
    assert envid and real["message_id"] not in envid[0]
    # nothing about the real letter changed; the test is logged outside the campaign
    assert rows()[0]["status"] == "queued" and rows()[0]["attempts"] == 0
    [logged] = events("test_sent")
    assert logged["institution"] == "ohchr" and logged.get("campaign") == "peace-agreement"
    many = run_cli("queue", "peace-agreement", "--all")
    assert many.code == 0
    refused = run_cli("send", "--test-to", "me@organiser.example", "--lang", "de")
    assert refused.code in (1, 2)


def test_send_to_sends_only_that_institution(smtp_server: ScriptedServer, workspace: Path) -> None:
    queue("--all")
    assert run_cli("send", "--yes", "--to", "ohchr").code == 0
    assert len(smtp_server.accepted) == 1
    assert {r["status"] for r in rows() if r["recipient"] == "ohchr"} == {"sent"}


def test_status_says_why_letters_wait_right_after_queue(workspace: Path) -> None:
    registry = workspace / "recipients.yaml"
    text = registry.read_text()
    # ohchr closed every day (office hours outside of now), so status must say so before any send
    registry.write_text(
        text.replace(
            "  - id: ohchr\n", '  - id: ohchr\n    office_hours: {days: "sun", start: "03:00", end: "03:01"}\n', 1
        )
    )
    queue("--to", "ohchr")
    status = json.loads(run_cli("status", "--json").stdout)
    reasons = [w["reason"] for w in status["waiting"]]
    assert any(r.startswith("office hours: opens") for r in reasons), reasons
    plan = json.loads(run_cli("plan", "--json").stdout)
    assert plan[0]["waiting"].startswith("office hours: opens"), plan
    result = run_cli("send", "--yes")
    assert "nothing is due now" in result.stdout


def test_awaiting_receipt_counts_only_letters_with_a_report_requested(workspace: Path) -> None:
    from tests.support.smtp import Script

    queue("--to", "ohchr")
    with ScriptedServer(Script(dsn=False)) as server:
        from tests.conftest import set_smtp_port

        set_smtp_port(workspace, server.port)
        assert run_cli("send", "--yes").code == 0
    status = json.loads(run_cli("status", "--json").stdout)
    receipts = status["receipts"]["peace-agreement"]
    assert receipts["awaiting"] == 0 and receipts["not_requested"] == 1


def test_send_plan_and_status_say_what_a_pause_holds_back(workspace: Path) -> None:
    queue("--all")
    assert run_cli("pause", "--campaign", "peace-agreement").code == 0
    before = tree_digest(workspace)
    send = run_cli("send", "--yes")
    assert send.code == 0, send.output
    assert "no pending letters" not in send.output
    assert (
        "nothing to send now: 5 letters wait in paused campaign peace-agreement; "
        "`campaign resume --campaign peace-agreement` sends them"
    ) in send.stdout
    plan = run_cli("plan")
    assert plan.code == 0 and "ready" not in plan.stdout, plan.output
    assert plan.stdout.count("paused") >= 5 and "5 letters paused" in plan.stdout
    assert {r["outcome"] for r in json.loads(run_cli("plan", "--json").stdout)} == {"paused"}
    status = run_cli("status")
    assert "paused: `campaign resume` to send" in status.stdout
    assert tree_digest(workspace) == before
    # the pause of every campaign; `resume` without --campaign lifts every pause
    assert run_cli("pause").code == 0
    every = run_cli("send", "--yes")
    assert "5 letters wait because every campaign is paused (peace-agreement); `campaign resume`" in every.stdout
    resumed = run_cli("resume")
    assert resumed.code == 0, resumed.output
    assert resumed.stdout.strip() == (
        "resumed every campaign, campaign peace-agreement: the next `campaign send` sends their letters again"
    )
    plan_after = json.loads(run_cli("plan", "--json").stdout)
    assert {r["outcome"] for r in plan_after} == {"sent"} and {r["waiting"] for r in plan_after} == {None}
    assert "nothing (due now)" in run_cli("plan").stdout


def test_a_running_send_stops_claiming_a_campaign_once_it_is_paused(workspace: Path) -> None:
    """The pause comes from another process while the first letter is on the wire (the
    server holds its reply until the pause is committed): the run finishes that letter and
    claims no other letter of the campaign."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, set_smtp_port
    from tests.support.smtp import Script

    queue("--all")
    paused: list[subprocess.CompletedProcess[str]] = []

    def pause_from_elsewhere(number: int) -> None:
        if number == 1:
            env = {**os.environ, "CAMPAIGN_WORKSPACE": str(workspace), "PYTHONPATH": str(ROOT)}
            paused.append(
                subprocess.run(
                    [sys.executable, "-m", "campaign", "pause", "--campaign", "peace-agreement"],
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=60,
                    check=False,
                )
            )

    with ScriptedServer(Script(on_data=pause_from_elsewhere)) as server:
        set_smtp_port(workspace, server.port)
        # One connection and an overall rate under 10/s: no letter is claimed ahead of the
        # one being sent, so what the pause stops is exact.
        result = run_cli("send", "--yes", "--concurrency", "1", "--rate", "5")
    assert paused and paused[0].returncode == 0, paused
    assert result.code == 0, result.output
    assert len(server.accepted) == 1
    statuses = sorted(r["status"] for r in rows())
    assert statuses == ["queued"] * 4 + ["sent"]
    assert "paused: 4 letters wait in paused campaign peace-agreement" in result.stdout
    assert "still to send" not in result.stdout


def test_the_compact_log_shows_why_a_letter_is_held_or_cancelled(smtp_server: ScriptedServer, workspace: Path) -> None:
    queue("--to", "ohchr", "--to", "wgad")
    registry = workspace / "recipients.yaml"
    [old] = [r["email"] for r in rows() if r["recipient"] == "ohchr"]
    registry.write_text(registry.read_text().replace(old, "new-desk@ohchr.example"))
    assert run_cli("send", "--yes", "--to", "ohchr").code == 3
    wgad = next(r["id"] for r in rows() if r["recipient"] == "wgad")
    reason = "the working group asked us to wait for the session in March, see the minutes"
    assert run_cli("cancel", str(wgad), "--reason", reason).code == 0
    result = run_cli("log")
    assert result.code == 0, result.output
    lines = {line.split()[4]: line for line in result.stdout.splitlines()[2:] if line.strip()}
    assert "the address of ohchr changed" in lines["held"]
    assert "the working group asked us" in lines["cancelled"] and lines["cancelled"].rstrip().endswith("…")
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout
    assert {r["recipient"]: r["wait_reason"] for r in rows()}["wgad"] == reason


def _managing_examples() -> list[list[str]]:
    """Every command line in the README and in --help that cancels, pauses, resumes, sends
    to one institution or sends a test copy."""
    import re
    import shlex

    from campaign.cli import command
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    texts = [line.split("  #")[0] for line in readme.splitlines() if line.startswith("campaign ")]
    texts += re.findall(r"`(campaign [^`]+)`", " ".join(readme.split()))
    for name in ("cancel", "pause", "resume", "send"):
        lines = (command().commands[name].help or "").replace("\\\n", " ").splitlines()  # continuations joined
        texts += [line.strip() for line in lines if line.startswith("    ")]
    found: list[list[str]] = []
    for text in texts:
        text = re.sub(r"\s*\[(--lang \w+)\]", r" \1", text.replace("\\", " "))
        words = shlex.split(text)[1:]
        if words[:1] in (["cancel"], ["pause"], ["resume"]) or (words[:1] == ["send"] and "--to" in words):
            template = any("[" in w or w.strip("[]").isupper() for w in words)  # `pause [--campaign NAME]`
            if not template and words not in found:
                found.append(words)
    return found


def test_the_examples_for_managing_a_campaign_work_with_the_shipped_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README and help examples name institutions that exist in the shipped recipients.yaml
    and have an e-mail address, so each example does what it says (examples by letter id
    are left out: ids depend on the reader's queue)."""
    import re

    from tests.conftest import ROOT, make_workspace, set_smtp_port

    examples = [w for w in _managing_examples() if not any(word.isdigit() for word in w)]
    assert any(w[0] == "cancel" for w in examples) and any("--test-to" in w for w in examples)
    shipped = (ROOT / "recipients.yaml").read_text(encoding="utf-8")
    registry = tmp_path / "recipients.yaml"
    registry.write_text(re.sub(r"(?m)^\s*office_hours:.*\n", "", shipped), encoding="utf-8")
    for n, words in enumerate(examples):
        ws = make_workspace(tmp_path / f"ws{n}", registry=registry)
        monkeypatch.setenv("CAMPAIGN_WORKSPACE", str(ws))
        with ScriptedServer() as server:
            set_smtp_port(ws, server.port)
            assert run_cli("queue", "peace-agreement", "--tag", "un").code == 0
            if words[0] == "resume":
                assert run_cli("pause", *words[1:]).code == 0
            asks = words[0] in ("send", "cancel") and "--test-to" not in words
            result = run_cli(*words, *(["--yes"] if asks else []))
            assert result.code == 0, (words, result.output)
            if words[0] == "cancel":
                assert "0 letters cancelled" not in result.stdout, (words, result.output)
            if words[0] == "send":
                assert server.accepted, (words, result.output)


def test_cancel_leaves_a_letter_in_flight_alone_and_says_so(workspace: Path) -> None:
    """`cancel` runs in another process while the first letter is on the wire (the server
    holds its reply): that letter is not touched and the command names it; the others are
    cancelled, and the run sends nothing more."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, set_smtp_port
    from tests.support.smtp import Script

    queue("--all")
    cancelled: list[subprocess.CompletedProcess[str]] = []

    def cancel_from_elsewhere(number: int) -> None:
        if number == 1:
            env = {**os.environ, "CAMPAIGN_WORKSPACE": str(workspace), "PYTHONPATH": str(ROOT)}
            command = [sys.executable, "-m", "campaign", "cancel", "--campaign", "peace-agreement", "--reason", "x"]
            cancelled.append(subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False))

    with ScriptedServer(Script(on_data=cancel_from_elsewhere)) as server:
        set_smtp_port(workspace, server.port)
        result = run_cli("send", "--yes", "--concurrency", "1", "--rate", "5")
    assert result.code == 0, result.output
    [done] = cancelled
    assert done.returncode == 0, done
    [first] = [r for r in rows() if r["status"] == "sent"]
    assert f"not cancelled: {first['id']} {first['recipient']} is being sent right now" in done.stderr
    assert "4 letters cancelled" in done.stdout
    assert sorted(r["status"] for r in rows()) == ["cancelled"] * 4 + ["sent"]
    assert len(server.accepted) == 1
    assert [e["message"] for e in events("cancelled")] == [
        r["message_id"] for r in rows() if r["status"] == "cancelled"
    ]


def test_a_report_on_a_test_copy_leaves_the_real_letter_alone(
    smtp_server: ScriptedServer, workspace: Path, tmp_path: Path
) -> None:
    queue("--to", "ohchr")
    assert run_cli("send", "--test-to", "me@organiser.example", "--to", "ohchr").code == 0
    [copy] = smtp_server.accepted
    envid = next(o for o in copy.mail_options if o.startswith("ENVID=")).partition("=")[2]
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    when = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    (maildir / "new" / "1.eml").write_bytes(
        dsn(envid, "me@organiser.example", action="delivered", status="2.0.0", when=when)
    )
    (maildir / "new" / "2.eml").write_bytes(
        dsn(envid, "me@organiser.example", action="failed", status="5.1.1", when=when)
    )
    imported = run_cli("receipts", "import", str(maildir))
    assert imported.code == 0, imported.output
    [real] = rows()
    assert real["status"] == "queued" and real["attempts"] == 0 and not real["receipt"]
    assert not events("delivered") and not events("bounced")
    # the test copy is not part of the campaign's evidence, and it did not count as a send
    bundle = tmp_path / "evidence.zip"
    assert run_cli("send", "--yes").code == 0
    assert run_cli("log", "export", "--campaign", "peace-agreement", "-o", str(bundle)).code == 0
    with zipfile.ZipFile(bundle) as z:
        names = z.namelist()
        text = b"".join(z.read(n) for n in names if n.endswith(".json"))
    assert b'"sent"' in text, names  # the real letter's events are there
    assert b"test_sent" not in text and b"organiser.example" not in text
    assert [r["attempts"] for r in rows()] == [1]
