"""Receipts: the corpus in tests/data/receipts (Postfix, Exim, Exchange, Gmail, SMTPUTF8,
MDNs, replies, noise, malformed) parsed, matched and recorded; evidence bundles."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaign.errors import CampaignError
from campaign.receipts import parse
from tests.conftest import DATA, run_cli, tree_digest

CORPUS = DATA / "receipts"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())


def seed_letters(workspace: Path, numbers: list[int] | None = None, status: str = "sent") -> None:
    """Put the corpus's letters in the store as sent messages (ids, envids, addresses as in the manifest)."""
    from campaign import api
    from campaign.models import address_domain, address_key
    from campaign.store import NewMessage

    ws = api.open_workspace(workspace)
    store = api.open_store(ws)
    now = api.now_ms()
    with store.enqueue(now) as session:
        for n, letter in MANIFEST["letters"].items():
            if numbers is not None and int(n) not in numbers:
                continue
            email = letter["to"]
            session.add(
                NewMessage(
                    campaign="corpus",
                    letter="peace-agreement",
                    recipient=f"inst-{n}",
                    email=email,
                    email_key=address_key(email),
                    domain=address_domain(email),
                    contact_name=None,
                    lang="en",
                    subject="Tajikistan",
                    message_id=letter["message_id"],
                    envid=letter["envid"],
                    body=b"Subject: x\r\n\r\nbody\r\n",
                    content_sha256="0" * 64,
                )
            )
    with store.transaction() as tx:
        tx.execute("UPDATE messages SET status = ?, sent_at = '2024-11-28T09:00:00.000Z'", (status,))
        # Receipts move only letters that were attempted: each seeded letter was handed to a server once.
        for row in tx.rows("SELECT message_id, campaign FROM messages"):
            tx.append(now, "sending", message=row["message_id"], campaign=row["campaign"], data={"attempt": 1})
            tx.append(now, status, message=row["message_id"], campaign=row["campaign"], data={"attempt": 1})
    store.close()


def rows() -> dict[str, dict[str, Any]]:
    result = run_cli("log", "--json", "--campaign", "corpus")
    assert result.code == 0, result.output
    return {r["message_id"]: r for r in json.loads(result.stdout)}


def letter_row(n: int) -> dict[str, Any]:
    return rows()[MANIFEST["letters"][str(n)]["message_id"]]


def import_(*paths: Path | str) -> Any:
    result = run_cli("receipts", "import", *map(str, paths))
    assert "Traceback" not in result.output
    return result


DSN_FILES = [f for f in MANIFEST["files"] if f["kind"] == "dsn" and f["entries"] and f["entries"][0].get("letter")]


@pytest.mark.parametrize("spec", DSN_FILES, ids=lambda f: f["file"])
def test_each_dsn_is_parsed_as_the_manifest_says(spec: dict[str, Any]) -> None:
    parsed = parse((CORPUS / spec["file"]).read_bytes(), return_local="receipts")
    assert parsed.kind == "dsn"
    assert len(parsed.entries) == len(spec["entries"])
    for want, got in zip(spec["entries"], parsed.entries, strict=True):
        assert got["outcome"] == want["outcome"]
        for key in ("envid", "final_recipient", "original_recipient", "reporting_mta", "action"):
            if key in want and want.get("structured") is not False:
                assert got.get(key) == want[key], key
        if want.get("structured") is not False and "remote_mta" in want:
            assert got.get("remote_mta") == want["remote_mta"]
        status = want.get("status") or want.get("status_from_text")
        if status:
            assert got.get("status") == status
        if want.get("message_id"):
            assert want["message_id"] in parsed.message_ids
        if want.get("verp"):
            assert want["verp"] in parsed.verp


@pytest.mark.parametrize(
    "spec",
    [f for f in MANIFEST["files"] if f["kind"] in ("dsn", "mdn", "reply", "auto-reply")],
    ids=lambda f: f["file"],
)
def test_each_file_imports_and_matches_its_letter(workspace: Path, spec: dict[str, Any]) -> None:
    seed_letters(workspace)
    result = import_(CORPUS / spec["file"])
    assert result.code == 0, result.output
    for entry in spec["entries"]:
        n = entry.get("letter")
        if n is None or n == 20:  # letter 20: see test_several_recipients_in_one_report
            continue
        row = letter_row(n)
        if spec["kind"] == "dsn":
            outcome = entry["outcome"]
            if outcome == "delayed":
                assert row["status"] == "sent" and row["delayed_at"]
            elif n != 20:
                assert row["status"] == outcome, (spec["file"], row)
        elif spec["kind"] == "mdn":
            assert row["displayed_at" if entry["disposition"] == "displayed" else "deleted_at"]
            assert row["status"] == "sent"  # a read receipt never changes the delivery state
        elif spec["kind"] == "reply":
            assert row["replied_at"] and not row["auto_replied_at"]
        else:
            assert row["auto_replied_at"] and not row["replied_at"]


def test_several_recipients_in_one_report(workspace: Path) -> None:
    seed_letters(workspace, [20])
    import_(CORPUS / "sendmail-multi-recipient.eml")
    row = letter_row(20)
    assert row["status"] == "delivered"  # the block for this letter's own recipient (a@)
    unmatched = json.loads(run_cli("receipts", "unmatched", "--json").stdout)
    assert {u["final_recipient"] for u in unmatched} == {"b+ru@unog.example", "c@unog.example"}


def test_expired_message_is_bounced_with_its_4xx_status(workspace: Path) -> None:
    seed_letters(workspace, [7])
    import_(CORPUS / "postfix-expired.eml")
    row = letter_row(7)
    assert row["status"] == "bounced" and row["receipt_status"].startswith("4.4.1")


def test_delivery_states_never_move_backwards(workspace: Path) -> None:
    seed_letters(workspace, [1, 2])
    import_(CORPUS / "postfix-success.eml")
    assert letter_row(1)["status"] == "delivered"
    # a relayed report for the same letter, later: it stays delivered
    relayed = (
        (CORPUS / "postfix-relayed.eml")
        .read_bytes()
        .replace(b"00000000000000000000000000000002", b"00000000000000000000000000000001")
        .replace(b"info@odihr.example", b"wgad@ohchr.example")
        .replace(b"<m-2.", b"<m-1.")
    )
    extra = workspace / "relayed-later.eml"
    extra.write_bytes(relayed)
    import_(extra)
    assert letter_row(1)["status"] == "delivered"
    events = json.loads(run_cli("log", "--events", "--json").stdout)
    later = [e for e in events if e["event"] == "receipt" and e.get("outcome") == "relayed"]
    assert later and "never move backwards" in later[0]["unchanged"]


def test_containers_and_idempotency(workspace: Path) -> None:
    seed_letters(workspace)
    first = import_(CORPUS / "sample.mbox", CORPUS / "maildir")
    assert first.code == 0, first.output
    assert letter_row(4)["status"] == "bounced"
    assert letter_row(22)["displayed_at"]
    assert letter_row(3)["replied_at"]
    assert letter_row(1)["status"] == "delivered"
    assert letter_row(26)["auto_replied_at"]
    assert letter_row(14)["status"] == "bounced"
    db = workspace / ".campaign" / "state.db"
    before_rows, before_events = rows(), run_cli("log", "--events", "--json").stdout
    again = import_(CORPUS / "sample.mbox", CORPUS / "maildir")
    assert again.code == 0 and "imported before: unchanged" in again.stdout
    assert rows() == before_rows
    assert run_cli("log", "--events", "--json").stdout == before_events
    assert run_cli("log", "verify").code == 0
    assert db.exists()


def test_other_mail_is_skipped_and_unmatched_is_kept(workspace: Path) -> None:
    seed_letters(workspace)
    result = import_(CORPUS / "other-newsletter.eml", CORPUS / "other-arf-feedback.eml", CORPUS / "unmatched-dsn.eml")
    assert result.code == 0
    assert "skipped 1: feedback report" in result.stdout and "skipped 1: not a report" in result.stdout
    assert letter_row(30)["status"] == "sent"  # the ARF embeds letter 30: no receipt for it
    unmatched = json.loads(run_cli("receipts", "unmatched", "--json").stdout)
    assert len(unmatched) == 1 and unmatched[0]["source"] == "unmatched-dsn.eml"
    table = run_cli("receipts", "unmatched")
    assert "unmatched-dsn.eml" in table.stdout


def test_malformed_and_truncated_reports_are_kept_with_a_warning(workspace: Path) -> None:
    seed_letters(workspace)
    result = import_(CORPUS / "malformed-dsn-missing-fields.eml", CORPUS / "truncated.eml")
    assert result.code == 0
    assert "malformed delivery report" in result.stderr and "truncated" in result.stderr
    assert letter_row(31)["status"] == "sent"  # no outcome from a broken report
    assert letter_row(32)["status"] == "bounced"  # the complete status part still counts
    unmatched = json.loads(run_cli("receipts", "unmatched", "--json").stdout)
    assert any("malformed" in (u["note"] or "") for u in unmatched)


def test_a_file_that_is_not_mail_is_an_error_and_changes_nothing(workspace: Path) -> None:
    seed_letters(workspace)
    before = tree_digest(workspace)
    result = import_(CORPUS / "not-mail.txt")
    assert result.code == 1
    assert "not-mail.txt: not an e-mail message" in result.stderr
    assert tree_digest(workspace) == before
    missing = import_(workspace / "nope.eml")
    assert missing.code == 1 and "no such file" in missing.stderr


def test_a_report_for_a_letter_awaiting_retry_stops_the_retry(workspace: Path) -> None:
    seed_letters(workspace, [1], status="deferred")
    import_(CORPUS / "postfix-success.eml")
    row = letter_row(1)
    assert row["status"] == "delivered" and row["next_attempt_at"] is None


def test_status_counts_receipts(workspace: Path) -> None:
    seed_letters(workspace)
    import_(
        CORPUS / "postfix-success.eml",
        CORPUS / "postfix-failed-ret-hdrs.eml",
        CORPUS / "postfix-delayed.eml",
        CORPUS / "postfix-relayed.eml",
    )
    status = json.loads(run_cli("status", "--json").stdout)
    counts = status["campaigns"]["corpus"]
    assert counts["delivered"] == 1 and counts["bounced"] == 1 and counts["relayed"] == 1
    assert status["receipts"]["corpus"]["delayed"] == 1
    assert status["receipts"]["corpus"]["awaiting"] == counts["sent"] - 1
    table = run_cli("status")
    assert "awaiting receipt" in table.stdout and "delayed" in table.stdout
    log = run_cli("log", "--campaign", "corpus")
    assert "5.2.2" in log.stdout


def test_evidence_bundle_round_trip(workspace: Path, tmp_path: Path) -> None:
    seed_letters(workspace, [1, 4, 6])
    import_(CORPUS / "postfix-success.eml", CORPUS / "postfix-failed-user-unknown.eml", CORPUS / "postfix-delayed.eml")
    bundle = tmp_path / "evidence.zip"
    result = run_cli("log", "export", "--campaign", "corpus", "-o", str(bundle))
    assert result.code == 0, result.output
    head = run_cli("log", "verify").stdout.split("chain head ")[1].strip()
    assert head in result.stdout
    with zipfile.ZipFile(bundle) as z:
        names = z.namelist()
        manifest = json.loads(z.read("manifest.json"))
        assert "VERIFY.md" in names and "chain.tsv" in names
        assert any(n.startswith("letters/1/receipts/") for n in names)
        assert manifest["head"]["hash"] == head
    ok = run_cli("log", "verify", "--bundle", str(bundle))
    assert ok.code == 0 and "ok: 3 letters" in ok.stdout
    data = bytearray(bundle.read_bytes())
    for offset in range(0, len(data), max(1, len(data) // 40)):  # one byte changed anywhere fails
        broken = tmp_path / f"broken-{offset}.zip"
        changed = bytearray(data)
        changed[offset] ^= 0x01
        broken.write_bytes(bytes(changed))
        result = run_cli("log", "verify", "--bundle", str(broken))
        # A changed byte of content fails; one in zip metadata that carries none (versions,
        # file attributes: what any faithful re-zip changes) is named as a re-pack.
        assert result.code == 1 or "not byte for byte the one campaign exported" in result.stderr, offset
        assert "Traceback" not in result.output


def test_bundle_with_a_changed_file_inside(workspace: Path, tmp_path: Path) -> None:
    seed_letters(workspace, [1])
    import_(CORPUS / "postfix-success.eml")
    bundle = tmp_path / "e.zip"
    assert run_cli("log", "export", "1", "-o", str(bundle)).code == 0
    tampered = tmp_path / "t.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(tampered, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.startswith("events/"):
                data = data.replace(b'"receipt"', b'"receipt "')
            dst.writestr(name, data)
    result = run_cli("log", "verify", "--bundle", str(tampered))
    assert result.code == 1 and "does not match its SHA-256" in result.stderr


def test_export_usage(workspace: Path) -> None:
    assert run_cli("log", "export").code == 2
    seed_letters(workspace, [1])
    result = run_cli("log", "export", "--campaign", "nope")
    assert result.code == 1 and "no letters in campaign 'nope'" in result.stderr


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_parser_never_raises_on_random_bytes(data: bytes) -> None:
    parse(data, return_local="receipts")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([f["file"] for f in MANIFEST["files"] if f["file"].endswith(".eml")]), st.data())
def test_parser_never_raises_on_mutated_reports(name: str, data: st.DataObject) -> None:
    raw = bytearray((CORPUS / name).read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "dup", "insert"]))
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[pos : pos + data.draw(st.integers(1, 200))]
        elif op == "dup":
            raw[pos:pos] = raw[pos : pos + data.draw(st.integers(1, 200))]
        else:
            raw[pos:pos] = data.draw(
                st.sampled_from([b"\n\n", b"--", b"Action: ", b"\x00", b"\r", b"=?utf-8?b?", "ҷ".encode()])
            )
    try:
        parse(bytes(raw), return_local="receipts")
    except CampaignError:
        pass


def test_maildir_must_have_cur_and_new(workspace: Path, tmp_path: Path) -> None:
    folder = tmp_path / "notmaildir"
    folder.mkdir()
    result = import_(folder)
    assert result.code == 1 and "must be a Maildir" in result.stderr


def test_corpus_is_copied_not_modified(tmp_path: Path) -> None:
    copy = tmp_path / "corpus"
    shutil.copytree(CORPUS, copy)
    assert tree_digest(copy) == tree_digest(CORPUS)
