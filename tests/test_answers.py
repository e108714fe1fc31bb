"""Read receipts, replies, follow-ups, IMAP fetching and DKIM."""

from __future__ import annotations

import email
import email.policy
import json
import os
import smtplib
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from campaign.transport import dkim_verify
from tests.conftest import make_workspace, run_cli
from tests.support import mailserver
from tests.support.smtp import ScriptedServer


def rows(*filters: str) -> dict[str, dict]:
    result = run_cli("log", "--json", *filters)
    assert result.code == 0, result.output
    return {r["recipient"]: r for r in json.loads(result.stdout)}


def reply_to(
    message_id: str,
    *,
    sender: str = "registry@ohchr.example",
    subject: str = "Re: your letter",
    body: str = "Thank you, we received your letter.",
    headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "letters@campaign.example"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 30 Nov 2026 10:00:00 +0100"
    msg["Message-ID"] = f"<reply-{abs(hash((message_id, subject, sender)))}@institution.example>"
    msg["In-Reply-To"] = message_id
    msg["References"] = message_id
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(body)
    return msg.as_bytes()


def mdn_for(message_id: str, disposition: str = "displayed") -> bytes:
    text = f"""From: registry@ohchr.example
To: receipts@campaign.example
Subject: Read: your letter
Date: Mon, 30 Nov 2026 11:00:00 +0100
Message-ID: <mdn-{abs(hash(message_id))}@ohchr.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="b"

--b
Content-Type: text/plain

Your message was {disposition}.

--b
Content-Type: message/disposition-notification

Reporting-UA: mail.ohchr.example; Outlook
Final-Recipient: rfc822;registry@ohchr.example
Original-Message-ID: {message_id}
Disposition: manual-action/MDN-sent-manually; {disposition}

--b--
"""
    return text.replace("\n", "\r\n").encode()


@pytest.fixture
def sent(smtp_server: ScriptedServer, workspace: Path) -> dict[str, dict]:
    assert run_cli("queue", "peace-agreement", "--all").code == 0
    assert run_cli("send", "--yes").code == 0
    return rows()


def test_read_receipts_are_requested_only_when_asked(smtp_server: ScriptedServer, workspace: Path) -> None:
    assert run_cli("queue", "peace-agreement", "--to", "ohchr").code == 0
    config = workspace / "campaign.toml"
    config.write_text(config.read_text().replace("[receipts]\n", "[receipts]\nread_receipts = true\n"))
    assert run_cli("queue", "peace-agreement", "--to", "wgad").code == 0
    assert run_cli("send", "--yes").code == 0
    by_rcpt = {
        a.rcpt_tos[0]: email.message_from_bytes(a.data, policy=email.policy.default) for a in smtp_server.accepted
    }
    assert "Disposition-Notification-To" not in by_rcpt["registry@ohchr.example"]
    assert by_rcpt["wgad@ohchr.example"]["Disposition-Notification-To"] == "receipts@campaign.example"


def test_replies_mdns_and_auto_replies(sent: dict[str, dict], workspace: Path, tmp_path: Path) -> None:
    files = {
        "reply.eml": reply_to(sent["ohchr"]["message_id"]),
        "auto.eml": reply_to(
            sent["wgad"]["message_id"],
            sender="wgad@ohchr.example",
            subject="Out of Office: your letter",
            headers={"Auto-Submitted": "auto-replied"},
        ),
        "mdn.eml": mdn_for(sent["ohchr"]["message_id"]),
        "deleted.eml": mdn_for(sent["mid"]["message_id"], "deleted"),
        "unrelated.eml": reply_to("<someone-else@else.example>"),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    result = run_cli("receipts", "import", *(str(tmp_path / n) for n in files))
    assert result.code == 0, result.output
    assert "not about our letters" in result.stdout
    after = rows()
    assert after["ohchr"]["replied_at"] and after["ohchr"]["displayed_at"]
    assert after["ohchr"]["status"] == "sent"  # a read receipt never changes the delivery state
    assert after["wgad"]["auto_replied_at"] and not after["wgad"]["replied_at"]
    assert after["mid"]["deleted_at"]
    table = run_cli("log").stdout
    assert "replied" in table and "auto-reply" in table and "read" in table
    listed = json.loads(run_cli("replies", "--json").stdout)
    assert {(r["recipient"], r["kind"]) for r in listed} == {("ohchr", "reply"), ("wgad", "auto-reply")}
    assert next(r for r in listed if r["kind"] == "reply")["sender"] == "registry@ohchr.example"
    assert "automatic reply" in run_cli("replies").stdout


def test_followup_goes_only_to_institutions_without_an_answer(
    sent: dict[str, dict], workspace: Path, tmp_path: Path
) -> None:
    (tmp_path / "r.eml").write_bytes(reply_to(sent["ohchr"]["message_id"]))
    (tmp_path / "a.eml").write_bytes(reply_to(sent["wgad"]["message_id"], headers={"Auto-Submitted": "auto-replied"}))
    assert run_cli("receipts", "import", str(tmp_path / "r.eml"), str(tmp_path / "a.eml")).code == 0
    too_soon = run_cli("followup", "peace-agreement-followup", "--campaign", "peace-agreement", "--after", "14d")
    assert too_soon.code == 0 and "0 follow-ups queued" in too_soon.stdout
    result = run_cli("followup", "peace-agreement-followup", "--campaign", "peace-agreement", "--after", "0s")
    assert result.code == 0, result.output
    follow = rows("--campaign", "peace-agreement-followup")
    assert set(follow) == {"wgad", "odihr", "mid", "tj-embassy"}  # ohchr answered; an auto-reply is no answer
    again = run_cli("followup", "peace-agreement-followup", "--campaign", "peace-agreement", "--after", "0s")
    assert "0 follow-ups queued, 4 already queued" in again.stdout
    run_cli("send", "--yes")
    follow_ups = [
        a
        for a in sent_messages(workspace)
        if "followup" in a["Subject"].lower() or "Повторное" in a["Subject"] or "Follow-up" in a["Subject"]
    ]
    assert follow_ups
    for msg in follow_ups:
        original = next(r for r in sent.values() if r["email"] == msg["To"].addresses[0].addr_spec)
        assert msg["In-Reply-To"] == original["message_id"] and msg["References"] == original["message_id"]
    bad = run_cli("followup", "peace-agreement-followup", "--campaign", "nope")
    assert bad.code == 1 and "no campaign named 'nope'" in bad.stderr


def sent_messages(workspace: Path) -> list[EmailMessage]:
    from campaign import api

    ws = api.open_workspace(workspace)
    store = api.open_store(ws)
    out = []
    for m in store.messages():
        prefix, body = store.wire_bytes(m.id)
        parsed = email.message_from_bytes((prefix or b"") + body, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        out.append(parsed)
    store.close()
    return out


# -- DKIM ----------------------------------------------------------------------------------


def enable_dkim(workspace: Path) -> str:
    result = run_cli("smtp", "dkim-keygen", "--selector", "test2026")
    assert result.code == 0, result.output
    record = (workspace / ".campaign" / "dkim" / "test2026.txt").read_text().strip()
    assert "test2026._domainkey.campaign.example. IN TXT" in result.stdout
    config = workspace / "campaign.toml"
    config.write_text(
        config.read_text()
        + '\n[dkim]\nselector = "test2026"\ndomain = "campaign.example"\nkey_file = ".campaign/dkim/test2026.key"\n'
    )
    return record


def dns_stub(record: str):  # type: ignore[no-untyped-def]
    def lookup(name: bytes) -> bytes | None:
        return record.encode() if name.rstrip(b".") == b"test2026._domainkey.campaign.example" else None

    return lookup


def test_dkim_signature_verifies_offline(smtp_server: ScriptedServer, workspace: Path) -> None:
    record = enable_dkim(workspace)
    key = workspace / ".campaign" / "dkim" / "test2026.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert run_cli("queue", "peace-agreement", "--to", "tj-embassy").code == 0
    assert run_cli("send", "--yes").code == 0
    raw = smtp_server.accepted[0].data
    assert raw.startswith(b"DKIM-Signature:")
    assert dkim_verify(raw, dns_stub(record))
    start = raw.index(b"\r\n\r\n") + 200
    tampered = raw[:start] + bytes([raw[start] ^ 0x01]) + raw[start + 1 :]
    assert not dkim_verify(tampered, dns_stub(record))


def test_a_readable_dkim_key_is_refused(smtp_server: ScriptedServer, workspace: Path) -> None:
    enable_dkim(workspace)
    (workspace / ".campaign" / "dkim" / "test2026.key").chmod(0o644)
    assert run_cli("queue", "peace-agreement", "--to", "ohchr").code == 0
    result = run_cli("send", "--yes")
    assert result.code == 1 and "readable by others" in result.stderr and "chmod 600" in result.stderr
    assert not smtp_server.accepted


# -- a real MTA and a real IMAP server -------------------------------------------------------


MTA_REGISTRY = """\
recipients:
  - id: good
    name: Working Group
    languages: [en]
    contacts:
      - email: wgad@good.example
  - id: other
    name: Office
    languages: [ru]
    contacts:
      - email: office@good.example
  - id: third
    name: Info desk
    languages: [en]
    contacts:
      - email: info@good.example
"""


def mta_workspace(tmp_path: Path, mta: mailserver.MtaInfo, imap: mailserver.ImapInfo | None = None) -> Path:
    imap_section = ""
    if imap is not None:
        imap_section = (
            f'\n[receipts.imap]\nhost = "{imap.host}"\nport = {imap.tls_port}\nusername = "{imap.user}"\n'
            f'folder = "INBOX"\nsecurity = "tls"\nca_file = "{imap.ca_file}"\n'
        )
    config = f"""[sender]
name = "Civic Platform (test)"
email = "letters@campaign.example"

[smtp]
host = "{mta.host}"
port = {mta.port}
security = "none"

[sending]
rate = 100
per_domain_rate = 100

[receipts]
return_path = "receipts@campaign.example"
read_receipts = true
{imap_section}"""
    ws = make_workspace(tmp_path / "ws", config=config)
    (ws / "recipients.yaml").write_text(MTA_REGISTRY)
    return ws


def deliver(mta: mailserver.MtaInfo, raw: bytes, to: str = "receipts@campaign.example") -> None:
    with smtplib.SMTP(mta.host, mta.port, local_hostname="institution.example") as smtp:
        smtp.sendmail("someone@good.example", [to], raw)


@pytest.mark.mta
@pytest.mark.imap
def test_answers_fetched_over_imap_from_dovecot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mta = mailserver.require_mta()
    imap = mailserver.require_imap()
    mailserver.reset_mailboxes()
    ws = mta_workspace(tmp_path, mta, imap)
    monkeypatch.setenv("CAMPAIGN_WORKSPACE", str(ws))
    monkeypatch.setenv("CAMPAIGN_IMAP_PASSWORD", imap.password)
    assert run_cli("queue", "peace-agreement", "--all").code == 0
    assert run_cli("send", "--yes").code == 0
    letters = rows()
    deliver(mta, reply_to(letters["good"]["message_id"], sender="wgad@good.example"))
    deliver(
        mta,
        reply_to(
            letters["other"]["message_id"],
            sender="office@good.example",
            subject="Автоответ: в отпуске",
            headers={"X-Autoreply": "yes"},
        ),
    )
    deliver(mta, mdn_for(letters["third"]["message_id"]))
    mailserver.wait_for_messages(imap.maildir or mta.return_path_maildir, 3 + 3, 30)  # three DSNs + three answers
    first = run_cli("receipts", "fetch")
    assert first.code == 0, first.output
    after = rows()
    assert after["good"]["replied_at"] and after["good"]["status"] == "delivered"
    assert after["other"]["auto_replied_at"] and not after["other"]["replied_at"]
    assert after["third"]["displayed_at"]
    table = run_cli("log").stdout
    assert "replied" in table and "auto-reply" in table and "read" in table
    again = run_cli("receipts", "fetch")
    assert again.code == 0 and "0 new messages fetched" in again.stdout
    moved = run_cli("receipts", "fetch", "--move-to", "Processed")
    assert moved.code == 0 and "moved 0 messages" in moved.stdout
    bad = run_cli("receipts", "fetch")
    monkeypatch.setenv("CAMPAIGN_IMAP_PASSWORD", "wrong-password")
    wrong = run_cli("receipts", "fetch")
    assert bad.code == 0 and wrong.code == 1 and "login failed" in wrong.stderr and "wrong-password" not in wrong.output


@pytest.mark.mta
@pytest.mark.imap
def test_fetch_files_processed_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mta = mailserver.require_mta()
    imap = mailserver.require_imap()
    mailserver.reset_mailboxes()
    ws = mta_workspace(tmp_path, mta, imap)
    monkeypatch.setenv("CAMPAIGN_WORKSPACE", str(ws))
    monkeypatch.setenv("CAMPAIGN_IMAP_PASSWORD", imap.password)
    assert run_cli("queue", "peace-agreement", "--to", "good").code == 0
    assert run_cli("send", "--yes").code == 0
    mailserver.wait_for_messages(mta.return_path_maildir, 1, 30)
    result = run_cli("receipts", "fetch", "--move-to", "Processed")
    assert result.code == 0, result.output
    assert "moved 1 message to Processed" in result.stdout
    assert rows()["good"]["status"] == "delivered"


@pytest.mark.mta
def test_a_dkim_signed_letter_verifies_after_postfix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mta = mailserver.require_mta()
    ws = mta_workspace(tmp_path, mta)
    monkeypatch.setenv("CAMPAIGN_WORKSPACE", str(ws))
    record = enable_dkim(ws)
    assert run_cli("queue", "peace-agreement", "--to", "good").code == 0
    assert run_cli("send", "--yes").code == 0
    message_id = rows()["good"]["message_id"]
    delivered = mailserver.wait_for_messages(
        mta.maildir("wgad@good.example"), 1, 30, match=mailserver.containing(message_id)
    )
    raw = delivered[-1].read_bytes()
    assert b"Received:" in raw  # it really went through Postfix
    assert dkim_verify(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), dns_stub(record))


def test_fetch_without_imap_settings_is_one_line(workspace: Path) -> None:
    result = run_cli("receipts", "fetch")
    assert result.code == 1 and "[receipts.imap]" in result.stderr


def test_time_helpers_are_utc() -> None:
    assert datetime.now(UTC) - timedelta(seconds=1) < datetime.now(UTC)
    assert os.sep == "/"
