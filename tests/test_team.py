"""Teams on PostgreSQL: several organisers and several send processes sharing one queue."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT, make_workspace, run_cli
from tests.support.sink import Sink

pytestmark = pytest.mark.postgres


def config(port: int, *, extra: str = "") -> str:
    return (DATA / "workspace" / "campaign.toml").read_text().replace("port = 2525", f"port = {port}") + extra


def campaign(
    ws: Path, db: str, *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAMPAIGN_WORKSPACE": str(ws), "CAMPAIGN_DB": db, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "campaign", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def start(ws: Path, db: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CAMPAIGN_WORKSPACE": str(ws), "CAMPAIGN_DB": db, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "campaign", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def recorded(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def test_a_second_organiser_sees_the_same_queue_and_log(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "sink.log"
    with Sink(record=record) as sink:
        alice = make_workspace(tmp_path / "alice", config=config(sink.port))
        bob = make_workspace(tmp_path / "bob", config=config(sink.port))
        monkeypatch.setenv("CAMPAIGN_DB", pg_url)
        assert run_cli("-C", str(alice), "queue", "peace-agreement", "--all").code == 0
        again = run_cli("-C", str(bob), "queue", "peace-agreement", "--all")
        assert "0 new, 5 already queued" in again.stdout  # the key is shared, not per checkout
        assert (
            run_cli("-C", str(alice), "status", "--json").stdout == run_cli("-C", str(bob), "status", "--json").stdout
        )
        assert run_cli("-C", str(alice), "log", "--json").stdout == run_cli("-C", str(bob), "log", "--json").stdout
        # both send at once: nothing twice
        procs = [start(ws, pg_url, "send", "--yes", "--concurrency", "2") for ws in (alice, bob)]
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        assert len(recorded(record)) == 5 == len(set(recorded(record)))
        assert run_cli("-C", str(bob), "log", "verify").code == 0
        assert run_cli("-C", str(alice), "log", "--json").stdout == run_cli("-C", str(bob), "log", "--json").stdout
        workers = json.loads(run_cli("-C", str(alice), "workers", "--json").stdout)
        assert 1 <= len(workers) <= 2 and sum(w["sent"] for w in workers) == 5


def registry(institutions: int, contacts: int, capped: dict[int, int]) -> str:
    lines = ["recipients:"]
    for i in range(institutions):
        lines += [
            f"  - id: inst-{i}",
            f"    name: Institution {i}",
            "    languages: [en]",
            "    timezone: Europe/Zurich",
        ]
        if i in capped:
            lines.append(f"    max_per_day: {capped[i]}")
        lines.append("    contacts:")
        lines += [f"      - email: office{c}@inst{i}.example" for c in range(contacts)]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_four_workers_send_ten_thousand_letters_exactly_once(pg_url: str, tmp_path: Path) -> None:
    institutions, contacts = 2000, 5
    capped = dict.fromkeys(range(0, institutions, 100), 2)  # 20 institutions allow 2 letters a day
    record = tmp_path / "sink.log"
    with Sink(record=record) as sink:
        ws = make_workspace(
            tmp_path / "ws",
            # Generous timeouts: on a loaded 2-core machine a reply can take longer than the
            # test default of 5 s, and a reply that never came is (rightly) an unknown outcome.
            config=config(sink.port)
            .replace("rate = 1000\nper_domain_rate = 1000", "rate = 10000\nper_domain_rate = 10000")
            .replace('timeout = "5s"\ndata_timeout = "5s"', 'timeout = "60s"\ndata_timeout = "60s"'),
        )
        (ws / "recipients.yaml").write_text(registry(institutions, contacts, capped))
        short = ws / "letters" / "short"
        short.mkdir()
        (short / "en.md.j2").write_text(
            '---\nsubject: "To {{ recipient.name }}"\n---\n{{ salutation }}\n\nA short letter.\n'
        )
        campaign(ws, pg_url, "queue", "short", "--all", "--contacts", "all")
        procs = [start(ws, pg_url, "send", "--yes", "--concurrency", "4") for _ in range(4)]
        outputs = [p.communicate(timeout=600) for p in procs]
        for proc, (_, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err[-2000:]
        ids = recorded(record)
    expected = institutions * contacts - sum(contacts - cap for cap in capped.values())
    assert len(ids) == expected
    assert len(set(ids)) == len(ids), "a letter went twice"
    rows = json.loads(campaign(ws, pg_url, "log", "--json").stdout)
    per_institution = collections.Counter(r["recipient"] for r in rows if r["status"] == "sent")
    for i, cap in capped.items():
        assert per_institution[f"inst-{i}"] == cap
    not_sent = [r for r in rows if r["status"] != "sent" and r["recipient"] not in {f"inst-{i}" for i in capped}]
    assert sum(per_institution.values()) == expected, not_sent[:3]
    assert "ok:" in campaign(ws, pg_url, "log", "verify").stdout
    workers = json.loads(campaign(ws, pg_url, "workers", "--json").stdout)
    assert len(workers) == 4 and sum(w["sent"] for w in workers) == expected
    assert all(w["sent"] > 0 for w in workers), "every worker took a share"


def dsn(envid: str, message_id: str, rcpt: str, n: int) -> bytes:
    """A small RFC 3464 delay report (it changes no status, only a flag)."""
    return (
        "From: MAILER-DAEMON@mx.example\r\nTo: receipts@campaign.example\r\n"
        f"Subject: Delayed Mail\r\nMessage-ID: <dsn{n}@mx.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nDelayed.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.example\r\nOriginal-Envelope-Id: {envid}\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nAction: delayed\r\nStatus: 4.4.1\r\n"
        f"Diagnostic-Code: smtp; 451 try later ({n})\r\n\r\n"
        f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {message_id}\r\n\r\n--b--\r\n"
    ).encode()


@pytest.mark.slow
def test_four_workers_and_a_receipts_import_at_once_never_deadlock(pg_url: str, tmp_path: Path) -> None:
    # The lock order under load: claims, outcomes and 5,000 imported reports, all at once.
    record = tmp_path / "sink.log"
    with Sink(record=record) as sink:
        ws = make_workspace(
            tmp_path / "ws",
            config=config(sink.port)
            .replace("rate = 1000\nper_domain_rate = 1000", "rate = 10000\nper_domain_rate = 10000")
            .replace('timeout = "5s"\ndata_timeout = "5s"', 'timeout = "60s"\ndata_timeout = "60s"'),
        )
        (ws / "recipients.yaml").write_text(registry(1000, 2, {}))
        short = ws / "letters" / "short"
        short.mkdir()
        (short / "en.md.j2").write_text('---\nsubject: "To {{ recipient.name }}"\n---\n{{ salutation }}\n\nShort.\n')
        # campaign "a" (1,000 letters) went out before; its delay reports arrive while "b" goes out
        campaign(ws, pg_url, "queue", "short", "--all", "--campaign", "a")
        campaign(ws, pg_url, "send", "--yes", "--campaign", "a", "--concurrency", "8")
        sent_a = json.loads(campaign(ws, pg_url, "log", "--json", "--campaign", "a").stdout)
        envids = {r["message_id"]: r for r in sent_a}
        events = json.loads(campaign(ws, pg_url, "log", "--events", "--json", "--campaign", "a").stdout)
        envid_of = {e["message"]: e.get("envid") for e in events if e["event"] == "queued"}
        maildir = tmp_path / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True)
        ids = list(envids)
        for n in range(5000):
            mid = ids[n % len(ids)]
            (maildir / "new" / f"{n}.eml").write_bytes(dsn(envid_of[mid] or "", mid, envids[mid]["email"], n))
        campaign(ws, pg_url, "queue", "short", "--all", "--contacts", "all", "--campaign", "b")
        ids_before = len(recorded(record))
        procs = [start(ws, pg_url, "send", "--yes", "--campaign", "b", "--concurrency", "4") for _ in range(4)]
        importer = start(ws, pg_url, "receipts", "import", str(maildir))
        outputs = [p.communicate(timeout=600) for p in [*procs, importer]]
        for proc, (_, err) in zip([*procs, importer], outputs, strict=True):
            assert proc.returncode == 0, err[-2000:]
            assert "deadlock" not in err
        arrived = recorded(record)[ids_before:]
    assert len(arrived) == 2000 and len(set(arrived)) == 2000, "every letter of b exactly once"
    rows = json.loads(campaign(ws, pg_url, "log", "--json", "--campaign", "b").stdout)
    assert {r["status"] for r in rows} == {"sent"}
    status = json.loads(campaign(ws, pg_url, "status", "--json").stdout)
    assert status["receipts"]["a"]["delayed"] == 1000
    assert "ok:" in campaign(ws, pg_url, "log", "verify").stdout


def test_a_killed_workers_letters_are_picked_up_after_its_lease(pg_url: str, tmp_path: Path) -> None:
    record = tmp_path / "sink.log"
    extra = "\n"
    cfg = config(0).replace('timeout = "5s"\ndata_timeout = "5s"', 'timeout = "1s"\ndata_timeout = "2s"')
    cfg = cfg.replace('retry_min = "1m"', 'retry_min = "1m"\nlease = "4s"') + extra
    with Sink(record=record, delay_ms=400) as sink:
        ws = make_workspace(tmp_path / "ws", config=cfg.replace("port = 0", f"port = {sink.port}"))
        campaign(ws, pg_url, "queue", "peace-agreement", "--all")
        victim = start(ws, pg_url, "send", "--yes", "--concurrency", "2")
        deadline = time.monotonic() + 30
        held = []
        while time.monotonic() < deadline:
            rows = json.loads(campaign(ws, pg_url, "log", "--json").stdout)
            held = [r for r in rows if r["status"] == "sending"]
            if held:
                break
            time.sleep(0.05)
        assert held, "the first worker never claimed anything"
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=10)
        # What the dead worker left behind: the letters seen above may have been
        # sent in the moment before the kill, and others claimed in their place.
        rows = json.loads(campaign(ws, pg_url, "log", "--json").stdout)
        held = [r for r in rows if r["status"] == "sending"]
        assert held, "the killed worker held no letter"
        time.sleep(4.5)  # the lease expires
        campaign(ws, pg_url, "send", "--yes")
        rows = json.loads(campaign(ws, pg_url, "log", "--json").stdout)
    assert {r["status"] for r in rows} == {"sent"}
    events = json.loads(campaign(ws, pg_url, "log", "--events", "--json").stdout)
    recovered = {e["message"] for e in events if e["event"] == "crash_recovered"}
    assert {r["message_id"] for r in held} <= recovered
    arrived = recorded(record)
    assert set(arrived) == {r["message_id"] for r in rows}  # every letter arrived
    twice = {m for m, n in collections.Counter(arrived).items() if n > 1}
    assert twice <= recovered  # any duplicate is one the log names
    assert "ok:" in campaign(ws, pg_url, "log", "verify").stdout


def test_migrating_a_workspace_into_postgresql(pg_url: str, tmp_path: Path) -> None:
    with Sink() as sink:
        ws = make_workspace(tmp_path / "ws", config=config(sink.port))
        env_free = {k: v for k, v in os.environ.items() if k != "CAMPAIGN_DB"}
        subprocess.run(
            [sys.executable, "-m", "campaign", "-C", str(ws), "queue", "peace-agreement", "--all"],
            env={**env_free, "PYTHONPATH": str(ROOT)},
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [sys.executable, "-m", "campaign", "-C", str(ws), "send", "--yes", "--limit", "3"],
            env={**env_free, "PYTHONPATH": str(ROOT)},
            check=True,
            capture_output=True,
        )
        local = run_cli("-C", str(ws), "log", "verify").stdout
        result = run_cli("-C", str(ws), "store", "migrate", "--to", pg_url)
        assert result.code == 0, result.output
        assert "chain verified" in result.stdout
        remote = campaign(ws, pg_url, "log", "verify").stdout
        assert remote.split("chain head ")[1] == local.split("chain head ")[1]
        again = run_cli("-C", str(ws), "store", "migrate", "--to", pg_url)
        assert again.code == 1 and "already holds letters" in again.stderr
        # the team continues on PostgreSQL: the rest goes out, numbering continues
        campaign(ws, pg_url, "send", "--yes")
        rows = json.loads(campaign(ws, pg_url, "log", "--json").stdout)
        assert [r["status"] for r in rows] == ["sent"] * 5


def test_a_password_in_the_store_url_is_refused(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    result = run_cli("-C", str(ws), "--db", "postgresql://u:hunter2@127.0.0.1/x", "status")
    assert result.code == 2 and "--db: the store URL carries a password" in result.stderr
    assert "hunter2" not in result.output
