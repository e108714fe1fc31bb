"""End to end through a real MTA: letters sent by `campaign send` to the loopback Postfix,
which delivers, bounces and defers them and writes real DSNs to the return path's Maildir;
`campaign receipts import` reads that Maildir; the log and an evidence bundle verify."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import make_workspace, run_cli
from tests.support import mailserver

pytestmark = [pytest.mark.mta, pytest.mark.slow]

REGISTRY = """\
recipients:
  - id: good
    name: A Working Group that exists
    languages: [en]
    contacts:
      - email: wgad@good.example
  - id: unknown
    name: A mailbox that does not exist
    languages: [en]
    contacts:
      - email: nobody@good.example
  - id: failing
    name: A domain that fails
    languages: [ru]
    contacts:
      - email: x@fail.example
  - id: deferring
    name: A domain that defers
    languages: [en]
    contacts:
      - email: x@defer.example
"""


def config(mta: mailserver.MtaInfo) -> str:
    return f"""[sender]
name = "Civic Platform (test)"
email = "letters@campaign.example"

[smtp]
host = "{mta.host}"
port = {mta.port}
security = "none"
timeout = "10s"
data_timeout = "30s"

[sending]
rate = 100
per_domain_rate = 100

[receipts]
return_path = "receipts@campaign.example"
"""


def test_receipts_from_a_real_postfix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mta = mailserver.require_mta()
    mailserver.reset_mailboxes()
    ws = make_workspace(tmp_path / "ws", config=config(mta))
    (ws / "recipients.yaml").write_text(REGISTRY)
    monkeypatch.setenv("CAMPAIGN_WORKSPACE", str(ws))
    assert run_cli("queue", "peace-agreement", "--all").code == 0
    sent = run_cli("send", "--yes")
    assert sent.code == 0, sent.output
    rows = {r["recipient"]: r for r in json.loads(run_cli("log", "--json").stdout)}
    assert {r["status"] for r in rows.values()} == {"sent"}  # Postfix took all four
    events = json.loads(run_cli("log", "--events", "--json").stdout)
    assert all(e["dsn"] for e in events if e["event"] == "sent")  # and was asked for DSNs
    envids = {}
    for e in events:
        if e["event"] == "queued":
            envids[e["recipient"]] = e["envid"]

    box = mta.return_path_maildir
    mailserver.wait_for_dsns(box, envids["good"], 30, action="delivered")
    mailserver.wait_for_dsns(box, envids["unknown"], 30, action="failed")
    mailserver.wait_for_dsns(box, envids["failing"], 30, action="failed")
    mailserver.wait_for_dsns(box, envids["deferring"], 30, action="delayed")
    first = run_cli("receipts", "import", str(box))
    assert first.code == 0, first.output

    rows = {r["recipient"]: r for r in json.loads(run_cli("log", "--json").stdout)}
    assert rows["good"]["status"] == "delivered"
    assert rows["unknown"]["status"] == "bounced" and rows["unknown"]["receipt_status"].startswith("5.1.1")
    assert rows["failing"]["status"] == "bounced" and rows["failing"]["receipt_status"].startswith("5.1.2")
    assert rows["deferring"]["status"] == "sent" and rows["deferring"]["delayed_at"]
    assert rows["good"]["reporting_mta"]

    # Postfix gives up on defer.example after its 20 s queue lifetime: Action failed, 4.4.1.
    mailserver.wait_for_dsns(box, envids["deferring"], 60, action="failed")
    before = run_cli("log", "--events", "--json").stdout
    second = run_cli("receipts", "import", str(box))
    assert second.code == 0
    rows = {r["recipient"]: r for r in json.loads(run_cli("log", "--json").stdout)}
    assert rows["deferring"]["status"] == "bounced" and rows["deferring"]["receipt_status"].startswith("4.4.1")
    after_second = run_cli("log", "--events", "--json").stdout
    assert after_second != before

    # Importing the same Maildir again leaves the log unchanged.
    third = run_cli("receipts", "import", str(box))
    assert third.code == 0 and "imported before: unchanged" in third.stdout
    assert run_cli("log", "--events", "--json").stdout == after_second
    assert run_cli("log", "verify").code == 0

    # The evidence bundle verifies, and fails after one byte of it is changed.
    bundle = tmp_path / "evidence.zip"
    assert run_cli("log", "export", "--campaign", "peace-agreement", "-o", str(bundle)).code == 0
    assert run_cli("log", "verify", "--bundle", str(bundle)).code == 0
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0x20
    bundle.write_bytes(bytes(data))
    assert run_cli("log", "verify", "--bundle", str(bundle)).code == 1

    # What the institution's mailbox got is byte for byte what the log hashed.
    delivered = mailserver.wait_for_messages(
        mta.maildir("wgad@good.example"), 1, 10, match=mailserver.containing(rows["good"]["message_id"])
    )
    assert delivered
    time.sleep(0)
