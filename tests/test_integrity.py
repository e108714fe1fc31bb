"""Integrity of every claim (issue 15), through the real CLI against real servers and files.

Three mechanisms: receipts move only letters that were attempted; a letter's bytes are
bound to the chain (checked before sending and by ``log verify``); evidence bundles are
bound to the chain (log format 2, tags) and verified by recomputing them. Each test
names the case of the issue it covers.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaign import chain
from tests.conftest import DATA, ROOT, forge_body, run_cli, set_smtp_port, stored_body
from tests.support.smtp import Script, ScriptedServer

CORPUS = DATA / "receipts"


# ---------------------------------------------------------------------------
# Helpers


def log_rows(*filters: str) -> list[dict[str, Any]]:
    result = run_cli("log", "--json", *filters)
    assert result.code == 0, result.output
    return json.loads(result.stdout)


def by_recipient() -> dict[str, dict[str, Any]]:
    return {r["recipient"]: r for r in log_rows()}


def events(kind: str | None = None) -> list[dict[str, Any]]:
    result = run_cli("log", "--events", "--json")
    assert result.code == 0, result.output
    return [r for r in json.loads(result.stdout) if kind is None or r["event"] == kind]


def queue(*args: str, letter: str = "peace-agreement") -> None:
    result = run_cli("queue", letter, *args)
    assert result.code == 0, result.output


def send(workspace: Path, script: Script | None = None) -> tuple[Any, ScriptedServer]:
    with ScriptedServer(script or Script()) as server:
        set_smtp_port(workspace, server.port)
        result = run_cli("send", "--yes")
    assert "Traceback" not in result.output, result.output
    return result, server


def wire_sha(data: bytes) -> str:
    return hashlib.sha256(data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")).hexdigest()


def db(workspace: Path) -> sqlite3.Connection:
    return sqlite3.connect(workspace / ".campaign" / "state.db")


def envid_of(workspace: Path, message_id: str) -> str:
    con = db(workspace)
    try:
        return str(con.execute("SELECT envid FROM messages WHERE message_id = ?", (message_id,)).fetchone()[0])
    finally:
        con.close()


def edit_letter(workspace: Path, line: str = "A sentence added after queueing.") -> None:
    for template in (workspace / "letters" / "peace-agreement").glob("*.md.j2"):
        template.write_text(template.read_text().replace("{{ salutation }}", "{{ salutation }}\n\n" + line, 1))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# Realistic reports without ENVID (Exchange Online, Gmail), made from the receipt corpus
# for a real letter: its Message-ID and recipient put where the servers write them.


def exchange_ndr(message_id: str, email: str) -> bytes:
    raw = (CORPUS / "exchange-ndr-recipient-not-found.eml").read_bytes()
    return raw.replace(b"<m-12.t0k3n@campaign.example>", message_id.encode()).replace(
        b"office@ombudsman.example", email.encode()
    )


def gmail_failure(message_id: str, email: str) -> bytes:
    raw = (CORPUS / "gmail-failure.eml").read_bytes()
    return raw.replace(b"<m-14.t0k3n@campaign.example>", message_id.encode()).replace(
        b"office.dushanbe@osce.example", email.encode()
    )


def postfix_delivered(message_id: str, email: str, envid: str) -> bytes:
    raw = (CORPUS / "postfix-success.eml").read_bytes()
    return (
        raw.replace(b"<m-1.t0k3n@campaign.example>", message_id.encode())
        .replace(b"00000000000000000000000000000001", envid.encode())
        .replace(b"wgad@ohchr.example", email.encode())
    )


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------
# 1. Receipts move only what was attempted (case 3)


def test_forged_delivered_report_for_a_queued_letter_changes_nothing(workspace: Path, tmp_path: Path) -> None:
    # Case 3: a "delivered" DSN for a letter still queued and never attempted, matched by
    # ENVID, and another by Message-ID with the right recipient: kept, suspicious, no change.
    queue("--to", "ohchr", "--to", "wgad")
    rows = by_recipient()
    ohchr, wgad = rows["ohchr"], rows["wgad"]
    forged_envid = write(
        tmp_path / "forged-envid.eml",
        postfix_delivered(ohchr["message_id"], ohchr["email"], envid_of(workspace, ohchr["message_id"])),
    )
    forged_mid = write(tmp_path / "forged-mid.eml", exchange_ndr(wgad["message_id"], wgad["email"]))
    result = run_cli("receipts", "import", str(forged_envid), str(forged_mid))
    assert result.code == 0, result.output
    assert "never sent" in result.stderr and "suspicious" in result.stderr
    after = by_recipient()
    assert after["ohchr"]["status"] == "queued" and after["wgad"]["status"] == "queued"
    assert after["ohchr"]["receipt"] is None and after["wgad"]["receipt"] is None
    unmatched = json.loads(run_cli("receipts", "unmatched", "--json").stdout)
    assert len(unmatched) == 2 and all(u["suspicious_row"] for u in unmatched)
    assert all("never handed to a server" in u["note"] for u in unmatched)
    table = run_cli("receipts", "unmatched")
    assert "SUSPICIOUS" in table.stdout
    assert len(events("receipt_suspicious")) == 2 and not events("receipt")
    # The letters still go out, once each.
    result, server = send(workspace)
    assert result.code == 0, result.output
    assert len(server.accepted) == 2
    assert {r["status"] for r in log_rows()} == {"sent"}


def test_exchange_online_and_gmail_bounces_without_envid_still_match(workspace: Path, tmp_path: Path) -> None:
    # Mechanism 1 keeps real reports working: no ENVID, Message-ID + the recipient they name.
    queue("--all")
    result, _ = send(workspace)
    assert result.code == 0, result.output
    rows = by_recipient()
    ndr = write(tmp_path / "exchange.eml", exchange_ndr(rows["ohchr"]["message_id"], rows["ohchr"]["email"]))
    gmail = write(tmp_path / "gmail.eml", gmail_failure(rows["wgad"]["message_id"], rows["wgad"]["email"]))
    assert run_cli("receipts", "import", str(ndr), str(gmail)).code == 0
    after = by_recipient()
    assert after["ohchr"]["status"] == "bounced" and after["ohchr"]["receipt_status"].startswith("5.1.10")
    assert after["wgad"]["status"] == "bounced" and after["wgad"]["receipt_status"].startswith("5.1.1")
    matched = {e["matched_by"] for e in events("receipt")}
    assert matched == {"message-id+recipient"}
    assert json.loads(run_cli("receipts", "unmatched", "--json").stdout) == []


def test_a_message_id_alone_or_with_another_recipient_is_not_enough(workspace: Path, tmp_path: Path) -> None:
    queue("--to", "ohchr", "--to", "wgad")
    assert send(workspace)[0].code == 0
    rows = by_recipient()
    wrong = write(tmp_path / "wrong.eml", exchange_ndr(rows["ohchr"]["message_id"], "someone@else.example"))
    bare = gmail_failure(rows["wgad"]["message_id"], "x@y.example")
    bare = bare.replace(b"Final-Recipient: rfc822; x@y.example\r\n", b"").replace(
        b"X-Failed-Recipients: x@y.example\r\n", b""
    )
    no_recipient = write(tmp_path / "bare.eml", bare)
    assert run_cli("receipts", "import", str(wrong), str(no_recipient)).code == 0
    assert {r["status"] for r in log_rows()} == {"sent"}
    notes = [u["note"] or "" for u in json.loads(run_cli("receipts", "unmatched", "--json").stdout)]
    assert any("another recipient (someone@else.example)" in n for n in notes)
    assert all("a Message-ID alone does not identify" in n or "malformed" in n for n in notes)


# ---------------------------------------------------------------------------
# 2. Bytes bound to the chain (cases 5 and 6)


def test_update_after_a_deferral_resets_the_prefix_and_the_bundle_verifies(workspace: Path, tmp_path: Path) -> None:
    # Case 5: `queue --update` after a deferred attempt must not keep the old Date/DKIM
    # prefix and hash: the next sending event names the bytes the server really gets.
    queue("--to", "ohchr")
    result, _ = send(workspace, Script(data_end=["451 4.3.0 try again later"]))
    assert by_recipient()["ohchr"]["status"] == "deferred"
    edit_letter(workspace)
    updated = run_cli("queue", "peace-agreement", "--to", "ohchr", "--update")
    assert updated.code == 0 and "1 updated" in updated.stdout, updated.output
    con = db(workspace)
    assert con.execute("SELECT wire_prefix, wire_sha256 FROM messages").fetchone() == (None, None)
    con.close()
    stored = stored_body(workspace / ".campaign" / "state.db")
    update = events("updated")[0]
    assert update["body_sha256"] == hashlib.sha256(stored).hexdigest()
    con = db(workspace)
    con.execute("UPDATE messages SET next_attempt_at = 0")
    con.commit()
    con.close()
    result, server = send(workspace)
    assert result.code == 0, result.output
    received = server.accepted[0].data
    assert b"A sentence added after queueing." in received
    assert events("sending")[-1]["sha256"] == wire_sha(received)
    bundle = tmp_path / "e.zip"
    assert run_cli("log", "export", "--campaign", "peace-agreement", "-o", str(bundle)).code == 0
    verified = run_cli("log", "verify", "--bundle", str(bundle))
    assert verified.code == 0, verified.output
    assert run_cli("log", "verify").code == 0


def test_update_is_refused_for_a_possible_duplicate(workspace: Path) -> None:
    # Case 5, second half: the old text may be at the institution already.
    queue("--to", "wgad")
    send(workspace, Script(reset_after_dot=1))
    row = by_recipient()["wgad"]
    assert row["possible_duplicate"] and row["status"] == "deferred"
    edit_letter(workspace)
    before = (log_rows(), events())
    result = run_cli("queue", "peace-agreement", "--to", "wgad", "--update")
    assert result.code == 1
    assert "possible duplicate" in result.stderr and "nothing was queued" in result.stderr
    assert len(error_lines(result.stderr)) == 1
    assert (log_rows(), events()) == before


def test_a_body_changed_in_the_database_is_refused_and_named(workspace: Path, tmp_path: Path) -> None:
    # Case 6: a body changed directly in the database. `log verify` names it; `send`
    # holds it (one line) and sends the others; its bundle does not verify.
    queue("--all")
    rows = by_recipient()
    target = rows["odihr"]
    body = stored_body(workspace / ".campaign" / "state.db", target["id"])
    forged = body.replace(b"\r\n\r\n", b"\r\n\r\nWe withdraw this letter.\r\n", 1)
    assert forged != body
    forge_body(workspace / ".campaign" / "state.db", target["id"], forged)
    verified = run_cli("log", "verify")
    assert verified.code == 1
    assert f"message {target['id']} {target['message_id']}" in verified.stderr
    assert "not the bytes the log recorded" in verified.stderr
    result, server = send(workspace)
    assert result.code == 3, result.output
    held = [line for line in error_lines(result.stderr) if f"message {target['id']} " in line]
    assert len(held) == 1 and "not the bytes the log recorded" in held[0]
    assert len(server.accepted) == 4
    assert not any(b"We withdraw" in item.data for item in server.accepted)
    assert by_recipient()["odihr"]["status"] == "held"
    hold = events("held")[0]
    assert hold["integrity"] is True and hold["found_sha256"] == hashlib.sha256(forged).hexdigest()
    bundle = tmp_path / "held.zip"
    assert run_cli("log", "export", str(target["id"]), "-o", str(bundle)).code == 0
    checked = run_cli("log", "verify", "--bundle", str(bundle))
    assert checked.code == 1 and "queued.eml is not the message whose hash" in checked.stderr
    # A person checks it and releases it: the release seals the bytes they accepted.
    assert run_cli("release", str(target["id"]), "--note", "checked").code == 0
    assert events("released")[0]["body_sha256"] == hashlib.sha256(forged).hexdigest()
    result, server = send(workspace)
    assert result.code == 0, result.output
    assert b"We withdraw" in server.accepted[0].data


def test_a_changed_send_prefix_is_refused(workspace: Path) -> None:
    # After a deferral the Date/DKIM prefix is stored: changed, the retry would send other bytes.
    queue("--to", "ohchr")
    send(workspace, Script(data_end=["451 4.3.0 later"]))
    con = db(workspace)
    con.execute("UPDATE messages SET wire_prefix = ?, next_attempt_at = 0", (b"Bcc: spy@evil.example\r\nDate: x\r\n",))
    con.commit()
    con.close()
    result, server = send(workspace)
    assert result.code == 3 and not server.accepted
    assert "are not the bytes of its last attempt" in result.stderr
    assert by_recipient()["ohchr"]["status"] == "held"


@pytest.mark.slow
def test_attached_pdf_is_part_of_the_recorded_bytes(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Case 6, attach_pdf: the hash is taken after the sealed PDF is attached, so it can be checked.
    monkeypatch.setenv("CAMPAIGN_KEY_PASSPHRASE", "organisation passphrase")
    assert run_cli("keys", "init").code == 0
    config = workspace / "campaign.toml"
    config.write_text(config.read_text() + "\n[letters]\nattach_pdf = true\n")
    queue("--to", "ohchr")
    stored = stored_body(workspace / ".campaign" / "state.db")
    queued = events("queued")[0]
    assert b"application/pdf" in stored
    assert queued["body_sha256"] == hashlib.sha256(stored).hexdigest() != queued["content_sha256"]
    result, server = send(workspace)
    assert result.code == 0, result.output
    assert events("sending")[0]["sha256"] == wire_sha(server.accepted[0].data)
    assert run_cli("log", "verify").code == 0


def test_a_store_tagged_with_another_key_is_refused(workspace: Path) -> None:
    queue("--to", "ohchr")
    key = workspace / ".campaign" / "chain.key"
    assert key.stat().st_mode & 0o777 == 0o600
    key.write_bytes(os.urandom(32))
    result = run_cli("queue", "peace-agreement", "--to", "wgad")
    assert result.code == 1 and "chain.key is not the key this log" in result.stderr
    assert len(error_lines(result.stderr)) == 1
    assert [e["event"] for e in events()] == ["queued"]  # the refused command added nothing


# ---------------------------------------------------------------------------
# 3. Log format 2 and bundles that cannot be edited (cases 7 and 8)


@pytest.fixture
def campaign_bundle(workspace: Path, tmp_path: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    """A campaign with a delivered, a bounced, a failed and two plain sent letters, exported."""
    queue("--all")
    result, _ = send(workspace, Script(rcpt=["250 ok", "550 5.1.1 <x>: user unknown"]))
    rows = by_recipient()
    failed = [name for name, r in rows.items() if r["status"] == "failed"]
    assert len(failed) == 1, rows
    sent = sorted(name for name, r in rows.items() if r["status"] == "sent")
    bounced, delivered = sent[0], sent[1]
    reports = [
        write(tmp_path / "bounce.eml", gmail_failure(rows[bounced]["message_id"], rows[bounced]["email"])),
        write(
            tmp_path / "ok.eml",
            postfix_delivered(
                rows[delivered]["message_id"],
                rows[delivered]["email"],
                envid_of(workspace, rows[delivered]["message_id"]),
            ),
        ),
    ]
    assert run_cli("receipts", "import", *map(str, reports)).code == 0
    bundle = tmp_path / "evidence.zip"
    exported = run_cli("log", "export", "--campaign", "peace-agreement", "-o", str(bundle))
    assert exported.code == 0, exported.output
    assert bundle.stat().st_mode & 0o777 == 0o600
    ok = run_cli("log", "verify", "--bundle", str(bundle))
    assert ok.code == 0, ok.output
    assert "complete: every event of campaign peace-agreement" in ok.stdout
    return bundle, by_recipient()


def read_bundle(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def rebuild(path: Path, files: dict[str, bytes]) -> Path:
    """What the issue's attacker did: the documented deterministic zip, rebuilt."""
    from campaign.evidence import _zip_bytes

    path.write_bytes(_zip_bytes(list(files.items())))
    return path


def manifest_of(files: dict[str, bytes]) -> dict[str, Any]:
    return json.loads(files["manifest.json"])


def put_manifest(files: dict[str, bytes], manifest: dict[str, Any]) -> None:
    from campaign.evidence import _manifest_bytes

    files["manifest.json"] = _manifest_bytes(manifest)


def verify(path: Path) -> Any:
    result = run_cli("log", "verify", "--bundle", str(path))
    assert "Traceback" not in result.output
    return result


def test_an_edited_manifest_does_not_verify(campaign_bundle: tuple[Path, dict], tmp_path: Path) -> None:
    # Case 7a: the manifest says "delivered" for the failed letter and renames a recipient.
    bundle, _ = campaign_bundle
    files = read_bundle(bundle)
    manifest = manifest_of(files)
    failed = next(letter for letter in manifest["letters"] if letter["status"] == "failed")
    failed["status"] = "delivered"
    manifest["letters"][0]["recipient"] = "a-friendlier-institution"
    put_manifest(files, manifest)
    result = verify(rebuild(tmp_path / "a.zip", files))
    assert result.code == 1
    assert "has status delivered; its events say failed" in result.stderr
    assert "has recipient a-friendlier-institution" in result.stderr


def test_left_out_failure_and_bounce_are_named(campaign_bundle: tuple[Path, dict], tmp_path: Path) -> None:
    # Case 7b: the failure and bounce events and the bounce report left out, the manifest
    # made to agree: the chain still shows those events carry this campaign's tag.
    bundle, _ = campaign_bundle
    files = read_bundle(bundle)
    dropped: list[int] = []
    for name in list(files):
        if name.startswith("events/"):
            record = json.loads(files[name])
            if record["event"] == "failed" or (record["event"] == "receipt" and record["data"]["outcome"] == "bounced"):
                del files[name]
                dropped.append(int(name[7:13]))
        elif "/receipts/" in name:
            del files[name]
    assert len(dropped) == 2
    manifest = manifest_of(files)
    for letter in manifest["letters"]:
        letter["events"] = [seq for seq in letter["events"] if seq not in dropped]
        letter["receipts"] = []
        if letter["status"] in ("failed", "bounced"):
            letter["status"] = "sent"
    manifest["files"] = {
        n: hashlib.sha256(d).hexdigest() for n, d in files.items() if n not in ("manifest.json", "VERIFY.md")
    }
    put_manifest(files, manifest)
    result = verify(rebuild(tmp_path / "b.zip", files))
    assert result.code == 1
    for seq in dropped:
        assert f"event {seq} belongs to this campaign (it carries its tag) but is not in the bundle" in result.stderr
    # Re-tagging the left-out lines breaks their hashes.
    lines = files["chain.tsv"].decode().splitlines()
    for seq in dropped:
        fields = lines[seq - 1].split("\t")
        fields[3] = "0" * 32
        lines[seq - 1] = "\t".join(fields)
    files["chain.tsv"] = ("\n".join(lines) + "\n").encode()
    result = verify(rebuild(tmp_path / "b2.zip", files))
    assert result.code == 1 and "its hash does not match its tags and record digest" in result.stderr


def test_a_forged_message_file_does_not_verify(campaign_bundle: tuple[Path, dict], tmp_path: Path) -> None:
    # Case 7c: message.eml replaced, as it is and renamed to queued.eml.
    bundle, _ = campaign_bundle
    files = read_bundle(bundle)
    name = next(n for n in files if n.endswith("/message.eml"))
    forged = files[name].replace(b"Dear", b"We withdraw our letter. Dear", 1)
    files[name] = forged
    result = verify(rebuild(tmp_path / "c.zip", files))
    assert result.code == 1 and "is not the message whose hash its last sending event recorded" in result.stderr
    del files[name]
    files[name.replace("message.eml", "queued.eml")] = forged
    manifest = manifest_of(files)
    manifest["files"] = {
        n: hashlib.sha256(d).hexdigest() for n, d in files.items() if n not in ("manifest.json", "VERIFY.md")
    }
    put_manifest(files, manifest)
    result = verify(rebuild(tmp_path / "c2.zip", files))
    assert result.code == 1
    assert f"{name} is missing" in result.stderr
    assert "queued.eml is not named by any event of its letter" in result.stderr


def test_faithful_rezips_and_unzipped_folders_verify(campaign_bundle: tuple[Path, dict], tmp_path: Path) -> None:
    # Case 8: the zip is a container: folder entries (`zip -r`), compression, one enclosing
    # folder, or no zip at all.
    bundle, _ = campaign_bundle
    files = read_bundle(bundle)
    rezip = tmp_path / "rezip.zip"
    with zipfile.ZipFile(rezip, "w", compression=zipfile.ZIP_DEFLATED) as z:
        folders = sorted({n.rsplit("/", 1)[0] + "/" for n in files if "/" in n})
        for folder in folders:
            z.writestr(zipfile.ZipInfo(folder), b"")
        for name, data in files.items():
            z.writestr(name, data)
    assert verify(rezip).code == 0
    enclosed = tmp_path / "enclosed.zip"
    with zipfile.ZipFile(enclosed, "w", compression=zipfile.ZIP_BZIP2) as z:
        z.writestr("evidence/", b"")
        for name, data in files.items():
            z.writestr(f"evidence/{name}", data)
        z.writestr("__MACOSX/evidence/._manifest.json", b"resource fork")
    assert verify(enclosed).code == 0
    folder = tmp_path / "unzipped"
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    ok = verify(folder)
    assert ok.code == 0, ok.output
    (folder / "letters" / "1" / "message.eml").write_bytes(b"forged")
    assert verify(folder).code == 1


MALFORMED: dict[str, Any] = {
    "files-a-string": lambda m: m.update(files="everything"),
    "letters-a-dict": lambda m: m.update(letters={"1": "x"}),
    "head-a-list": lambda m: m.update(head=[1, 2]),
    "scope-a-number": lambda m: m.update(scope=7),
    "letters-of-numbers": lambda m: m.update(letters=[1, 2, 3]),
}


@pytest.mark.parametrize("change", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_manifests_are_one_line(campaign_bundle: tuple[Path, dict], tmp_path: Path, change: str) -> None:
    # Case 8: fields of the wrong type gave tracebacks.
    bundle, _ = campaign_bundle
    files = read_bundle(bundle)
    manifest = manifest_of(files)
    MALFORMED[change](manifest)
    put_manifest(files, manifest)
    result = verify(rebuild(tmp_path / f"{change}.zip", files))
    assert result.code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith("error:") and "check failed unexpectedly" not in result.stderr


@pytest.mark.parametrize(
    "variant",
    ["events-abc", "not-json-manifest", "not-a-zip", "truncated", "absolute-name", "duplicate-name", "chain-not-ascii"],
)
def test_malformed_bundles_are_one_line(campaign_bundle: tuple[Path, dict], tmp_path: Path, variant: str) -> None:
    bundle, _ = campaign_bundle
    files = read_bundle(bundle)
    target = tmp_path / f"{variant}.zip"
    if variant == "events-abc":
        files["events/abc.json"] = b"{}"
        rebuild(target, files)
    elif variant == "not-json-manifest":
        files["manifest.json"] = b"{not json"
        rebuild(target, files)
    elif variant == "not-a-zip":
        target.write_bytes(b"PK\x03\x04 this is not really a zip")
    elif variant == "truncated":
        target.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    elif variant == "absolute-name":
        files["/etc/passwd"] = b"root:x:0:0"
        rebuild(target, files)
    elif variant == "duplicate-name":
        with zipfile.ZipFile(target, "w") as z:
            for name, data in files.items():
                z.writestr(name, data)
            with pytest.warns(UserWarning, match="Duplicate name"):
                z.writestr("manifest.json", files["manifest.json"])
    else:
        files["chain.tsv"] = files["chain.tsv"] + "é".encode()
        rebuild(target, files)
    result = verify(target)
    assert result.code == 1, result.output
    errors = error_lines(result.stderr)
    assert errors and "check failed unexpectedly" not in result.stderr
    if variant != "events-abc":
        assert len(errors) == 1, result.stderr


def _declared_bomb(path: Path, declared: int) -> None:
    """A small zip whose directory says one entry unpacks to ``declared`` bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", b"{}")
        z.writestr("letters/1/message.eml", b"\0" * 1024)
    data = bytearray(path.read_bytes())
    # Patch the central directory's uncompressed size of the second entry (and its local header).
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = declared.to_bytes(4, "little")
    local = data.find(b"PK\x03\x04", 10)
    data[local + 22 : local + 26] = declared.to_bytes(4, "little")
    path.write_bytes(bytes(data))


def test_a_bundle_that_unpacks_too_big_is_refused_before_reading(tmp_path: Path) -> None:
    # Case 8: a small zip that claims gigabytes is refused at once, in one line.
    bomb = tmp_path / "bomb.zip"
    _declared_bomb(bomb, 4_000_000_000)
    result = verify(bomb)
    assert result.code == 1 and len(error_lines(result.stderr)) == 1
    assert "more than the 1,024 MiB a bundle may hold" in result.stderr


def test_a_zip_that_lies_about_its_size_is_damaged(tmp_path: Path) -> None:
    liar = tmp_path / "liar.zip"
    with zipfile.ZipFile(liar, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps({"format": "campaign-evidence/2"}))
        z.writestr("chain.tsv", b"1\t" + b"0" * 64 + b"\t" + b"1" * 64 + b"\n" * 100_000)
    data = bytearray(liar.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (200).to_bytes(4, "little")
    local = data.find(b"PK\x03\x04", 10)
    data[local + 22 : local + 26] = (200).to_bytes(4, "little")
    liar.write_bytes(bytes(data))
    result = verify(liar)
    assert result.code == 1 and len(error_lines(result.stderr)) == 1


@pytest.mark.slow
def test_a_real_two_gigabyte_zip_bomb(tmp_path: Path) -> None:
    # Case 8 as reported: a 2 MB zip that unpacks to 2 GiB was read into memory.
    bomb = tmp_path / "bomb.zip"
    zeros = b"\0" * (1 << 20)
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("manifest.json", b"{}")
        with z.open("letters/1/message.eml", "w", force_zip64=True) as handle:
            for _ in range(2048):
                handle.write(zeros)
    assert bomb.stat().st_size < 3 << 20
    result = verify(bomb)
    assert result.code == 1 and "refused without reading it" in result.stderr


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(st.data())
def test_any_manifest_or_chain_change_is_reported_not_raised(
    campaign_bundle: tuple[Path, dict], tmp_path: Path, data: st.DataObject
) -> None:
    from campaign.evidence import verify_bundle

    bundle, _ = campaign_bundle
    files = read_bundle(bundle)
    name = data.draw(st.sampled_from(sorted(files)))
    content = bytearray(files[name])
    if name == "manifest.json" and data.draw(st.booleans()):
        manifest = manifest_of(files)
        key = data.draw(st.sampled_from(sorted(manifest)))
        manifest[key] = data.draw(
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                lambda c: st.lists(c) | st.dictionaries(st.text(max_size=3), c),
                max_leaves=5,
            )
        )
        files[name] = json.dumps(manifest).encode()
    else:
        for _ in range(data.draw(st.integers(1, 4))):
            if not content:
                break
            pos = data.draw(st.integers(0, len(content) - 1))
            content[pos] = data.draw(st.integers(0, 255))
        files[name] = bytes(content)
    if files == read_bundle(bundle):
        return
    check = verify_bundle(rebuild(tmp_path / "fuzz.zip", files))
    assert not any("check failed unexpectedly" in p for p in check.problems), check.problems
    if name == "VERIFY.md":  # it explains and proves nothing: a changed one is named, not failed
        assert any("VERIFY.md is not the text" in c for c in check.caveats)
    elif name == "manifest.json" and _same_json(files[name], read_bundle(bundle)[name]):
        pass  # white space only: the verifier recomputes the manifest from the chain, the meaning is intact
    else:
        assert not check.ok


def _same_json(a: bytes, b: bytes) -> bool:
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return False


def test_export_refuses_to_overwrite_without_force(workspace: Path, tmp_path: Path) -> None:
    # Issue 17, defect 13.
    queue("--to", "ohchr")
    out = tmp_path / "e.zip"
    out.write_bytes(b"precious")
    result = run_cli("log", "export", "--campaign", "peace-agreement", "-o", str(out))
    assert result.code == 1 and "already exists" in result.stderr and "--force" in result.stderr
    assert out.read_bytes() == b"precious"
    forced = run_cli("log", "export", "--campaign", "peace-agreement", "-o", str(out), "--force")
    assert forced.code == 0 and out.read_bytes().startswith(b"PK")
    assert out.stat().st_mode & 0o777 == 0o600


def test_an_id_bundle_proves_its_letters_complete(workspace: Path, tmp_path: Path) -> None:
    queue("--to", "ohchr", "--to", "wgad")
    assert send(workspace)[0].code == 0
    rows = by_recipient()
    out = tmp_path / "one.zip"
    assert run_cli("log", "export", str(rows["ohchr"]["id"]), "-o", str(out)).code == 0
    ok = verify(out)
    assert ok.code == 0 and "every event of each of these letters" in ok.stdout
    files = read_bundle(out)
    sent = next(n for n in files if n.startswith("events/") and json.loads(files[n])["event"] == "sent")
    del files[sent]
    result = verify(rebuild(tmp_path / "cut.zip", files))
    assert result.code == 1 and "(it carries its tag) but is not in the bundle" in result.stderr


# ---------------------------------------------------------------------------
# Log format 1 stays verifiable as format 1


def _v1_store(path: Path, campaign: str | None = None) -> None:
    """A state.db as campaign wrote it before migration 0008: events in log format 1 (about
    ``campaign``, if given)."""
    from campaign.store import migrations
    from campaign.store.sqlite import SqliteStore

    saved = migrations.MIGRATIONS[:]
    # the list sql.py reads: a store as it stood before 0008 (later migrations build on it)
    migrations.MIGRATIONS[:] = [m for m in saved if m[0] < "0008_chain_v2"]
    try:
        SqliteStore(path).close()
    finally:
        migrations.MIGRATIONS[:] = saved
    con = sqlite3.connect(path)
    prev = chain.GENESIS
    for seq, (kind, data) in enumerate(
        [("run_started", {"worker": "old"}), ("run_finished", {"worker": "old", "sent": 0})], start=1
    ):
        rec = chain.record("2025-01-01T00:00:00.000Z", kind, None, campaign, data)
        digest = chain.link(prev, rec)
        con.execute(
            "INSERT INTO events (seq, time, kind, message, campaign, data, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, rec["time"], kind, None, campaign, chain.canonical_json(data), prev, digest),
        )
        prev = digest
    con.execute("UPDATE chain_head SET seq = 2, hash = ?", (prev,))
    con.commit()
    con.close()


def test_format_1_events_stay_verifiable_and_the_caveat_is_said(workspace: Path, tmp_path: Path) -> None:
    state = workspace / ".campaign"
    state.mkdir(mode=0o700)
    _v1_store(state / "state.db")
    queue("--to", "ohchr")
    assert send(workspace)[0].code == 0
    verified = run_cli("log", "verify")
    assert verified.code == 0, verified.output
    assert "events 1–2 are in log format 1" in verified.stderr
    con = db(workspace)
    formats = [r[0] for r in con.execute("SELECT format FROM events ORDER BY seq")]
    con.close()
    assert formats[:2] == [1, 1] and set(formats[2:]) == {2}
    out = tmp_path / "mixed.zip"
    assert run_cli("log", "export", "--campaign", "peace-agreement", "-o", str(out)).code == 0
    ok = verify(out)
    assert ok.code == 0 and "events 1–2 are in log format 1" in ok.stderr
    assert "log format 1" in read_bundle(out)["VERIFY.md"].decode()


def test_a_format_1_event_after_format_2_breaks_the_chain(workspace: Path) -> None:
    queue("--to", "ohchr")
    con = db(workspace)
    seq, prev = con.execute("SELECT seq, hash FROM chain_head").fetchone()
    rec = chain.record("2026-01-01T00:00:00.000Z", "sent", None, None, {"forged": True})
    con.execute(
        "INSERT INTO events (seq, time, kind, message, campaign, data, prev_hash, hash, format) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)",
        (seq + 1, rec["time"], "sent", None, None, chain.canonical_json(rec["data"]), prev, chain.link(prev, rec)),
    )
    con.execute("UPDATE chain_head SET seq = ?, hash = ?", (seq + 1, chain.link(prev, rec)))
    con.commit()
    con.close()
    result = run_cli("log", "verify")
    assert result.code == 1 and "in log format 1 after format-2 events" in result.stderr


# ---------------------------------------------------------------------------
# VERIFY.md's recipe, run as written (a shell with sha256sum, and Python)


def _verify_md_sections(text: str) -> tuple[str, str, str]:
    """The format-2 and format-1 shell lines of step 1, and the Python block, as written."""
    lines = text.splitlines()
    shell2 = next(line.strip() for line in lines if line.strip().startswith("printf '%s\\ncampaign-log/2"))
    shell1 = next(line[line.index("`{") + 1 : line.rindex("`")] for line in lines if "{ printf '%s\\n' PREV;" in line)
    start = next(i for i, line in enumerate(lines) if line.startswith("A few lines of Python")) + 2
    block = []
    for line in lines[start:]:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line[4:])
    return shell2, shell1, "\n".join(block).strip() + "\n"


def _sha256sum(folder: Path, command: str) -> str:
    done = subprocess.run(["bash", "-c", command], cwd=folder, capture_output=True, text=True, check=True)
    return done.stdout.split()[0]


def follow_verify_md(bundle: Path, folder: Path) -> tuple[str, int]:
    """Check an unzipped bundle the way VERIFY.md tells a person to, step by step: the chain
    head, and how many format-1 lines were checked from their event files."""
    with zipfile.ZipFile(bundle) as z:
        z.extractall(folder)
    shell2, shell1, python = _verify_md_sections((folder / "VERIFY.md").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    chain_lines = [line.split("\t") for line in (folder / "chain.tsv").read_text().splitlines()]
    # Step 1: each line's hash with sha256sum, as the shell lines say.
    prev = "0" * 64
    format_1 = 0
    for number, fields in enumerate(chain_lines, start=1):
        assert int(fields[0]) == number and fields[1] == prev, fields
        if len(fields) == 6:
            command = shell2
            for word, value in zip(("PREV", "CTAG", "MTAG", "DIGEST"), (fields[1], *fields[3:]), strict=True):
                command = re.sub(rf"\b{word}\b", shlex.quote(value), command)
        elif (folder / "events" / f"{number:06d}.json").exists():
            command = shell1.replace("PREV", fields[1]).replace("events/000123.json", f"events/{number:06d}.json")
            format_1 += 1
        else:  # a format-1 event about something else: its content is not in the bundle
            command = ""
        if command:
            assert _sha256sum(folder, command) == fields[2], (command, fields)
        prev = fields[2]
    assert prev == manifest["head"]["hash"]
    # Step 2: each event file's SHA-256 is the record digest on its line.
    event_files = sorted((folder / "events").iterdir())
    assert event_files
    for path in event_files:
        fields = chain_lines[int(path.stem) - 1]
        if len(fields) == 6:
            assert _sha256sum(folder, f"sha256sum events/{path.name}") == fields[5], path.name
    # Step 3: every line carrying the bundle's campaign tag or a letter's tag has its event file.
    tags = {letter["message_tag"] for letter in manifest["letters"]} | {manifest["scope"]["campaign_tag"]}
    for fields in chain_lines:
        if len(fields) == 6 and ({fields[3], fields[4]} & tags) - {None, "-"}:
            assert (folder / "events" / f"{int(fields[0]):06d}.json").exists(), fields[0]
    # Step 4: each letter's file against its last sending (or queued/updated) event; receipts.
    for letter in manifest["letters"]:
        records = [json.loads((folder / "events" / f"{seq:06d}.json").read_text()) for seq in letter["events"]]
        sending = [r["data"]["sha256"] for r in records if r["event"] == "sending"]
        stored = [r["data"]["body_sha256"] for r in records if r["event"] in ("queued", "updated")]
        name = "message.eml" if (folder / letter["folder"] / "message.eml").exists() else "queued.eml"
        expected = sending[-1] if name == "message.eml" else stored[-1]
        assert _sha256sum(folder, f"sha256sum {letter['folder']}/{name}") == expected, letter
        reported = {r["data"]["report_sha256"] for r in records if "report_sha256" in r["data"]}
        for receipt in sorted((folder / letter["folder"] / "receipts").glob("*.eml")):
            digest = _sha256sum(folder, f"sha256sum {letter['folder']}/receipts/{receipt.name}")
            assert digest == receipt.stem and digest in reported
    # The Python lines, as written, from the bundle's folder.
    (folder.parent / "steps.py").write_text(python)
    done = subprocess.run(
        [sys.executable, str(folder.parent / "steps.py")], cwd=folder, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == f"chain head {prev}"
    return prev, format_1


def test_verify_md_recipe_checks_an_exported_bundle(campaign_bundle: tuple[Path, dict], tmp_path: Path) -> None:
    bundle, _ = campaign_bundle
    head, _ = follow_verify_md(bundle, tmp_path / "unzipped")
    assert head in verify(bundle).stdout
    # and the recipe fails for an edited event file, as it should
    folder = tmp_path / "edited"
    files = read_bundle(bundle)
    name = next(n for n in files if n.startswith("events/") and json.loads(files[n])["event"] == "failed")
    files[name] = files[name].replace(b'"failed"', b'"sent"')
    with pytest.raises(AssertionError, match=name.removeprefix("events/")):
        follow_verify_md(rebuild(tmp_path / "edited.zip", files), folder)


def test_verify_md_recipe_covers_log_format_1_lines(workspace: Path, tmp_path: Path) -> None:
    state = workspace / ".campaign"
    state.mkdir(mode=0o700)
    _v1_store(state / "state.db", campaign="peace-agreement")
    queue("--to", "ohchr", "--to", "wgad")
    assert send(workspace)[0].code == 0
    out = tmp_path / "mixed.zip"
    assert run_cli("log", "export", "--campaign", "peace-agreement", "-o", str(out)).code == 0
    _, format_1 = follow_verify_md(out, tmp_path / "unzipped")
    assert format_1 == 2


# ---------------------------------------------------------------------------
# Case 10: an exception inside the claimer (the supervised dispatcher)


def test_an_exception_inside_the_claimer_ends_send_with_one_line(workspace: Path) -> None:
    # Case 10: a row of the wrong type makes the claimer raise; `send` hung forever.
    queue("--to", "ohchr")
    con = db(workspace)
    con.execute("UPDATE messages SET attempts = 'not a number'")
    con.commit()
    con.close()
    with ScriptedServer(Script()) as server:
        set_smtp_port(workspace, server.port)
        env = {**os.environ, "CAMPAIGN_WORKSPACE": str(workspace), "PYTHONPATH": str(ROOT)}
        try:
            done = subprocess.run(
                [sys.executable, "-m", "campaign", "send", "--yes"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
        except subprocess.TimeoutExpired:
            pytest.fail("`campaign send` still running after 30 s")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert len(error_lines(done.stderr)) == 1


def test_bundle_helpers_are_deterministic() -> None:
    from campaign.evidence import _zip_bytes

    entries = [("a", b"1"), ("b/c", b"2")]
    assert _zip_bytes(entries) == _zip_bytes(entries)
    assert zipfile.ZipFile(io.BytesIO(_zip_bytes(entries))).read("b/c") == b"2"


# ---------------------------------------------------------------------------
# The same mechanisms on both backends (SQLite and PostgreSQL), through the store


def test_integrity_in_the_store_on_both_backends(store_url: str, tmp_path: Path) -> None:
    from campaign.errors import StoreError
    from campaign.evidence import export_bundle, verify_bundle
    from campaign.ledger import verify as verify_log
    from campaign.pacing import Pacer, PacingConfig
    from campaign.store import NewMessage, ReceiptEntry, Report, Target, open_store
    from campaign.store.copy import copy_state
    from campaign.store.sqlite import SqliteStore

    now = 1_795_000_000_000
    store = open_store(store_url)
    store.key_path = tmp_path / "keys" / "chain.key"
    try:
        with store.enqueue(now) as session:
            for n in range(4):
                body = f"Subject: {n}\r\n\r\nbody {n}\r\n".encode()
                session.add(
                    NewMessage(
                        campaign="c",
                        letter="l",
                        recipient=f"inst-{n}",
                        email=f"o{n}@i{n}.example",
                        email_key=f"o{n}@i{n}.example",
                        domain=f"i{n}.example",
                        contact_name=None,
                        lang="en",
                        subject=f"letter {n}",
                        message_id=f"<c-{n}@campaign.example>",
                        envid=f"{n:032x}",
                        body=body,
                        content_sha256=chain.sha256_hex(body),
                    )
                )
        if store.key_in_store:  # a team's log keeps its key, so every workspace tags alike
            assert store.known_key() is not None and not store.key_path.exists()
        else:
            assert (store.key_path.stat().st_mode & 0o777) == 0o600
        with store.transaction() as tx:
            tx.execute(
                "UPDATE message_bodies SET body = ?, encoding = NULL WHERE id = 1", (b"Subject: 0\r\n\r\nforged\r\n",)
            )
        claim = store.claim(
            now,
            worker="w",
            limit=2,
            pacer=Pacer(PacingConfig(rate=10_000, per_domain_rate=10_000)),
            lease_ms=60_000,
            prefix=lambda row, body, at: b"Date: x\r\n",
        )
        assert [item.id for item in claim.items] == [2, 3]
        assert [row["id"] for row in store.integrity_holds("2000-01-01T00:00:00Z")] == [1]
        checked = verify_log(store)
        assert not checked.ok and checked.broken_seq is None
        assert any("message 1 <c-0@campaign.example>" in p for p in checked.problems)
        # Receipts: letter 4 was never attempted (the caller even claims it was).
        targets = store.targets(message_ids=["<c-1@campaign.example>", "<c-3@campaign.example>"])
        assert targets["<c-1@campaign.example>"].attempted and not targets["<c-3@campaign.example>"].attempted
        forged = Target(**{**targets["<c-3@campaign.example>"].__dict__, "attempted": True})
        entries = [
            ReceiptEntry(part=0, kind="dsn", target=targets["<c-1@campaign.example>"], outcome="delivered"),
            ReceiptEntry(part=1, kind="dsn", target=forged, outcome="delivered"),
        ]
        raw = b"x: y\r\n\r\n"
        report = Report(raw=raw, sha256=chain.sha256_hex(raw), source="t", entries=entries)
        assert store.record_reports([report], now) == 2
        statuses = {m.id: m.status.value for m in store.messages()}
        assert statuses[2] == "delivered" and statuses[4] == "queued"
        assert [r["suspicious_row"] for r in store.unmatched()] == [4]
        # Another key cannot append to this log.
        other = open_store(store_url)
        other.chain_key = bytes(32)
        try:
            with pytest.raises(StoreError, match="not the key this log"):
                other.append_event(now, "run_started")
        finally:
            other.close()
        # A campaign bundle from this store verifies; a copy keeps the key's fingerprint.
        out = tmp_path / "e.zip"
        messages = store.messages()
        export_bundle(
            store,
            out,
            message_ids=[m.message_id for m in messages],
            db_status={m.message_id: m.status.value for m in messages},
            campaign="c",
            created_at="2026-01-01T00:00:00Z",
        )
        check = verify_bundle(out)
        assert check.scope == "campaign c"
        assert check.problems == [  # the changed letter, and only it
            "letters/1/queued.eml is not the message whose hash its queued or updated event recorded: it was "
            "changed or replaced"
        ]
        copy = SqliteStore(tmp_path / "copy" / "state.db")
        copy_state(store, copy)
        copy.key_path = store.key_path
        assert verify_log(copy).count == verify_log(store).count
        copy.append_event(now, "run_started")  # the same key: accepted
        copy.close()
    finally:
        store.close()


@pytest.mark.postgres
def test_a_log_moved_to_a_shared_store_keeps_its_tags_for_the_whole_team(
    workspace: Path, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import make_workspace

    queue("--to", "ohchr", "--to", "wgad")
    assert send(workspace)[0].code == 0
    moved = run_cli("store", "migrate", "--to", pg_url)
    assert moved.code == 0, moved.output
    bob = make_workspace(tmp_path / "bob")  # a teammate's checkout: no chain key of its own
    monkeypatch.setenv("CAMPAIGN_DB", pg_url)
    added = run_cli("-C", str(bob), "queue", "peace-agreement", "--to", "odihr")
    assert added.code == 0, added.output
    assert not (bob / ".campaign" / "chain.key").exists()
    checked = run_cli("-C", str(bob), "log", "verify")
    assert checked.code == 0, checked.output
    out = tmp_path / "team.zip"
    assert run_cli("-C", str(bob), "log", "export", "--campaign", "peace-agreement", "-o", str(out)).code == 0
    ok = verify(out)
    assert ok.code == 0 and "3 letters" in ok.stdout, ok.output
