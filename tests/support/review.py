"""A campaign in mixed states, made with real parts, for the organisers' area and the report.

    ws = mixed_campaign(tmp_path / "ws", institutions=2000)

Builds a workspace with N institutions (tags ``europe``/``un`` alternating, and
``special`` on every tenth), queues the shipped peace-agreement letter to all of them,
then, through the real CLI:
- the first 5 are sent to a scripted server that refuses them with 554 5.7.1 (held);
- the next 5 are cancelled; the next 5 rescheduled to 2031 (they wait, `--at`);
- everything else is sent to the recording sink (``tests.support.sink``);
- delivery reports (60 % delivered, 5 % bounced, spread over five days), read receipts,
  replies (one with a subject of ``<script>…``) and automatic replies are written as
  .eml files and imported with `campaign receipts import`.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from tests.conftest import make_workspace, run_cli
from tests.support.sink import Sink
from tests.support.smtp import Script, ScriptedServer

HOSTILE_SUBJECT = "<script>alert('reply')</script> Re: your letter"


def registry(n: int) -> str:
    lines = ["recipients:"]
    for i in range(n):
        tags = ["europe" if i % 2 == 0 else "un"] + (["special"] if i % 10 == 0 else [])
        lines += [
            f"  - id: inst-{i:04d}",
            f"    name: Institution number {i}",
            f"    tags: [{', '.join(tags)}]",
            "    languages: [en]",
            "    contacts:",
            f"      - email: office@inst{i:04d}.example",
        ]
    return "\n".join(lines) + "\n"


def config(port: int) -> str:
    return f"""[sender]
name = "Civic Platform (test)"
email = "letters@campaign.example"

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
timeout = "5s"
data_timeout = "5s"
concurrency = 8

[sending]
rate = 10000
per_domain_rate = 10000
max_age = "3d"

[receipts]
return_path = "receipts@campaign.example"
"""


def set_port(ws: Path, port: int) -> None:
    path = ws / "campaign.toml"
    path.write_text(re.sub(r"(?m)^port = \d+", f"port = {port}", path.read_text()))


def dsn(envid: str, address: str, *, action: str, status: str, when: datetime) -> bytes:
    diagnostic = "smtp; 250 2.0.0 Ok" if action == "delivered" else "smtp; 550 5.1.1 User unknown"
    text = f"""From: Mail Delivery System <MAILER-DAEMON@mx.example>
To: receipts@campaign.example
Subject: Delivery Status Notification
Date: {format_datetime(when)}
Message-ID: <dsn-{envid}@mx.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

Report.

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example
Original-Envelope-Id: {envid}

Final-Recipient: rfc822; {address}
Original-Recipient: rfc822; {address}
Action: {action}
Status: {status}
Diagnostic-Code: {diagnostic}

--b--
"""
    return text.replace("\n", "\r\n").encode()


def mdn(message_id: str, when: datetime) -> bytes:
    text = f"""From: registry@inst.example
To: receipts@campaign.example
Subject: Read: your letter
Date: {format_datetime(when)}
Message-ID: <mdn-{abs(hash(message_id))}@inst.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="b"

--b
Content-Type: text/plain

Your message was displayed.

--b
Content-Type: message/disposition-notification

Reporting-UA: mail.inst.example; Outlook
Final-Recipient: rfc822;registry@inst.example
Original-Message-ID: {message_id}
Disposition: manual-action/MDN-sent-manually; displayed

--b--
"""
    return text.replace("\n", "\r\n").encode()


def reply(message_id: str, *, subject: str, when: datetime, automatic: bool = False) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Registry <registry@inst.example>"
    msg["To"] = "letters@campaign.example"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = f"<reply-{abs(hash((message_id, subject)))}@inst.example>"
    msg["In-Reply-To"] = message_id
    msg["References"] = message_id
    if automatic:
        msg["Auto-Submitted"] = "auto-replied"
    msg.set_content("Out of office until Monday." if automatic else "Thank you, we received your letter.")
    return msg.as_bytes()


def log_rows(*args: str) -> list[dict[str, Any]]:
    result = run_cli("log", "--json", *args)
    assert result.code == 0, result.output
    return list(json.loads(result.stdout))


def envids(ws: Path) -> dict[int, str]:
    from campaign import api

    return {m.id: m.envid for m in api.log(api.open_workspace(ws), api.LogQuery())}


def mixed_campaign(target: Path, institutions: int = 2000, monkeypatch: Any = None, *, letters: int = 1) -> Path:
    """The workspace described in the module docstring (CAMPAIGN_WORKSPACE must point at
    it while the CLI runs: the caller's monkeypatch sets it). With ``letters`` > 1, copies
    of the letter (peace-agreement-2, …) go to every institution in the same campaign, so
    a campaign can hold more letters than a registry under its 5 MB limit has institutions."""
    import shutil

    ws = make_workspace(target)
    (ws / "recipients.yaml").write_text(registry(institutions))
    (ws / "campaign.toml").write_text(config(2525))
    if monkeypatch is not None:
        monkeypatch.setenv("CAMPAIGN_WORKSPACE", str(ws))
    for k in range(2, letters + 1):
        shutil.copytree(ws / "letters" / "peace-agreement", ws / "letters" / f"peace-agreement-{k}")
    for name in ["peace-agreement", *(f"peace-agreement-{k}" for k in range(2, letters + 1))]:
        ok = run_cli("queue", name, "--all", "--campaign", "peace-agreement")
        assert ok.code == 0, ok.output
    with ScriptedServer(Script(data_end=["554 5.7.1 Message refused by policy"] * 5 * letters)) as refusing:
        set_port(ws, refusing.port)
        held = run_cli("send", "--yes", *[a for i in range(5) for a in ("--to", f"inst-{i:04d}")])
        assert held.code in (0, 3), held.output
    cancel = run_cli(
        "cancel", *[str(r["id"]) for r in log_rows() if r["recipient"] in {f"inst-{i:04d}" for i in range(5, 10)}]
    )
    assert cancel.code == 0, cancel.output
    later = run_cli("queue", "peace-agreement", *[a for i in range(10, 15) for a in ("--to", f"inst-{i:04d}")],
                    "--at", "2031-01-01T09:00+00:00")  # fmt: skip
    assert later.code == 0, later.output
    with Sink(delay_ms=0) as sink:
        set_port(ws, sink.port)
        sent = run_cli("send", "--yes")
        assert sent.code == 0, sent.output
    reports = target.parent / f"{target.name}-reports"
    reports.mkdir()
    ids = envids(ws)
    sent_at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)  # reports arrive over the next days
    for n, row in enumerate(r for r in log_rows() if r["status"] == "sent"):
        when = sent_at + timedelta(days=n % 5, hours=1 + n % 7)
        envid, address, mid = ids[row["id"]], row["email"], row["message_id"]
        if n % 20 == 0:
            (reports / f"{n}-bounce.eml").write_bytes(dsn(envid, address, action="failed", status="5.1.1", when=when))
            continue
        if n % 10 < 6:
            (reports / f"{n}-dsn.eml").write_bytes(dsn(envid, address, action="delivered", status="2.0.0", when=when))
        if n % 5 == 1:
            (reports / f"{n}-mdn.eml").write_bytes(mdn(mid, when + timedelta(hours=2)))
        if n % 10 == 3:
            subject = HOSTILE_SUBJECT if n == 3 else "Re: your letter"
            (reports / f"{n}-reply.eml").write_bytes(reply(mid, subject=subject, when=when + timedelta(days=1)))
        if n % 20 == 7:
            (reports / f"{n}-auto.eml").write_bytes(
                reply(mid, subject="Automatic reply: out of office", when=when, automatic=True)
            )
    imported = run_cli("receipts", "import", *sorted(str(p) for p in reports.iterdir()))
    assert imported.code == 0, imported.output
    return ws
