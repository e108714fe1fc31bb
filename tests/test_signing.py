"""The signing scheme (commitments, RFC 9162 Merkle tree, receipts, payloads, sealed
names) and its storage on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaign import signing
from campaign.errors import SelectionError, SigningError
from campaign.signing.sealing import new_names_key, open_name, public_from_text, public_of_private, seal_name


def _hex(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def test_commitment_is_the_documented_hash() -> None:
    salt = bytes(range(32))
    text_sha = signing.sha256_text("Муҳтарам ҷанобон!\n")
    expected = hashlib.sha256(
        b"campaign-sign-v1" + salt + "Фирӯза Қодирова".encode() + bytes.fromhex(text_sha)
    ).hexdigest()
    assert signing.commitment(salt, "Фирӯза Қодирова", text_sha) == expected
    # NFC: a decomposed ӯ commits to the same thing as the composed one
    assert signing.commitment(salt, "Фиру\u0304за Қодирова", text_sha) == expected
    with pytest.raises(SigningError):
        signing.commitment(b"short", "x", text_sha)


def _reference_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1 written out independently (recursive, on raw leaf data)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _reference_root(leaves[:k]) + _reference_root(leaves[k:])).digest()


def test_root_matches_an_independent_rfc_9162_implementation() -> None:
    for n in range(0, 70):
        commits = [_hex(i) for i in range(n)]
        ordered = sorted(commits)
        assert signing.merkle_root(commits) == _reference_root([bytes.fromhex(c) for c in ordered]).hex()
    # RFC 6962/9162: the empty tree is the hash of the empty string
    assert signing.merkle_root([]) == hashlib.sha256(b"").hexdigest()


def test_every_leaf_has_a_proof_and_a_changed_proof_fails() -> None:
    for n in (1, 2, 3, 5, 8, 13, 33):
        commits = [_hex(i) for i in range(n)]
        root = signing.merkle_root(commits)
        for c in commits:
            index, path = signing.inclusion_proof(commits, c)
            assert signing.verify_inclusion(c, index, n, path, root)
            assert not signing.verify_inclusion(c, index, n, path, _hex(999))
            if path:
                bad = [path[0][:-1] + ("0" if path[0][-1] != "0" else "1"), *path[1:]]
                assert not signing.verify_inclusion(c, index, n, bad, root)
            assert not signing.verify_inclusion(_hex(10_000), index, n, path, root)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40, unique=True), st.data())
def test_proofs_hold_for_any_set(raw: list[bytes], data: st.DataObject) -> None:
    commits = [r.hex() for r in raw]
    chosen = data.draw(st.sampled_from(commits))
    index, path = signing.inclusion_proof(commits, chosen)
    assert signing.verify_inclusion(chosen, index, len(commits), path, signing.merkle_root(commits))


def test_the_order_of_signing_does_not_change_the_root() -> None:
    commits = [_hex(i) for i in range(10)]
    assert signing.merkle_root(commits) == signing.merkle_root(list(reversed(commits)))
    with pytest.raises(SigningError, match="twice"):
        signing.merkle_root([commits[0], commits[0]])


def test_receipts_round_trip_and_refuse_damage() -> None:
    receipt = signing.Receipt("pa-1", bytes(32), _hex(1))
    assert signing.parse_receipt(receipt.text()) == receipt
    assert signing.parse_receipt("  " + receipt.text()[:40] + "\n" + receipt.text()[40:]) == receipt
    for broken in ("", "hello", receipt.text()[:-1], receipt.text().replace("pa-1", "PA 1"), "x:y:z:w"):
        with pytest.raises(SigningError):
            signing.parse_receipt(broken)
    text_sha = _hex(2)
    salt = signing.new_salt()
    real = signing.Receipt("pa-1", salt, signing.commitment(salt, "Maria", text_sha))
    assert real.matches("Maria", text_sha)
    assert not real.matches("Mario", text_sha)
    assert "salt" not in repr(real) or salt.hex() not in repr(real)


def test_payloads_round_trip_and_refuse_unknown_parts() -> None:
    text = signing.proof_payload(drive="pa-1", letter_sha256=_hex(1), key_fingerprint=_hex(2), commitment=_hex(3))
    assert text.startswith("CSIGN1;d=pa-1;t=")
    assert signing.parse_payload(text) == {
        "drive": "pa-1", "letter_sha256": _hex(1), "commitment": _hex(3), "key_fingerprint": _hex(2)
    }  # fmt: skip
    for broken in ("", "CSIGN2;d=x", "CSIGN1;d=x;t=y", "CSIGN1;d=x;t=y;k=z;q=1", "CSIGN1;d=x;d=y;t=1;k=2"):
        with pytest.raises(SigningError):
            signing.parse_payload(broken)


def test_exports_recompute_their_root() -> None:
    commits = [_hex(i) for i in range(7)]
    export = signing.DriveExport(
        "pa-1", "peace-agreement", _hex(100), ["ohchr"], "2026-12-31T00:00:00.000Z", 7,
        signing.merkle_root(commits), _hex(200), commits,
    )  # fmt: skip
    again = signing.parse_export(export.to_json())
    assert signing.check_export(again).ok
    tampered = json.loads(export.to_json())
    tampered["commitments"][0] = _hex(50)
    check = signing.check_export(signing.parse_export(json.dumps(tampered)))
    assert not check.ok and "root" in check.problems[0]
    with pytest.raises(SigningError, match="not JSON"):
        signing.parse_export("{", name="x.json")


def test_sealed_names_open_only_with_the_private_half() -> None:
    private, public = new_names_key()
    other, _ = new_names_key()
    assert public_of_private(private) == public
    sealed = seal_name(public_from_text(public), "Ҷамшед Раҳимов")
    assert "Ҷамшед".encode() not in sealed
    assert open_name(private, sealed) == "Ҷамшед Раҳимов"
    with pytest.raises(SigningError, match="does not open"):
        open_name(other, sealed)
    with pytest.raises(SigningError):
        public_from_text("campaign-names-public-v1:@@@")


# ---------------------------------------------------------------------------
# The store, on both backends


def _drive(name: str = "pa-1") -> object:
    from campaign.store.signing import NewDrive

    return NewDrive(
        name=name, token=signing.new_token(), letter="peace-agreement", institutions=["ohchr"], closes_at=None,
        allow_pseudonyms=True, fields=["city"], passphrase_hash=None, rate_per_minute=60, names_public_key=None,
        reference_recipient="ohchr", text_lang="en", subject="S", text="S\n\nBody\n", body_html="<p>Body</p>",
        text_sha256=signing.sha256_text("S\n\nBody\n"), date_text="1 December 2026", reference="pa/1",
    )  # fmt: skip


def _signature(name: str, text_sha: str) -> tuple[object, signing.Receipt]:
    from campaign.store.signing import NewSignature

    salt = signing.new_salt()
    commit = signing.commitment(salt, name, text_sha)
    sig = NewSignature(
        commitment=commit, name=name, pseudonymous=False, sealed_name=None, title=None, city="Berlin",
        signature_png=None, typed_signature=name, ui_lang="en", text_lang="en", text_sha256=text_sha,
        translation_lang=None, translation_sha256=None, consented_to=["ohchr"],
    )  # fmt: skip
    return sig, signing.Receipt("pa-1", salt, commit)


def test_drives_in_the_store(store_url: str) -> None:
    from campaign.store import open_store
    from campaign.store import signing as sstore

    store = open_store(store_url)
    try:
        drive = _drive()
        drive_id = sstore.create_drive(store, drive, [], 1_000)  # type: ignore[arg-type]
        with pytest.raises(SigningError, match="exists already"):
            sstore.create_drive(store, drive, [], 1_000)  # type: ignore[arg-type]
        assert sstore.find_drive(store, token=drive.token)["name"] == "pa-1"  # type: ignore[attr-defined,index]
        receipts = []
        for n in range(5):
            sig, receipt = _signature(f"Supporter {n}", drive.text_sha256)  # type: ignore[attr-defined]
            assert sstore.add_signature(store, drive_id, sig, 2_000) == n + 1  # type: ignore[arg-type]
            receipts.append(receipt)
        # a wrong salt cannot withdraw someone else's signature
        forged = signing.Receipt("pa-1", bytes(32), receipts[0].commitment)
        assert not sstore.withdraw(
            store, drive_id, forged.commitment, lambda row: forged.matches(row["name"], row["text_sha256"])
        ).count
        assert sstore.withdraw(
            store, drive_id, receipts[0].commitment, lambda row: receipts[0].matches(row["name"], row["text_sha256"])
        ) == sstore.Deletion(1, None)
        sigs = sstore.signatures(store, drive_id)
        assert [s["name"] for s in sigs] == [f"Supporter {n}" for n in range(1, 5)]
        assert sstore.remove_signatures(store, drive_id, [int(sigs[0]["id"])], 3_000) == sstore.Deletion(1, None)
        with pytest.raises(SelectionError):
            sstore.remove_signatures(store, drive_id, [999_999], 3_000)
        commits = sstore.commitments(store, drive_id)
        with pytest.raises(SigningError, match="changed"):
            sstore.close_drive(
                store, drive_id, 4_000, expected=commits[:1], root="0" * 64, key_fingerprint="k", cover_pdf=b"%PDF"
            )
        root = signing.merkle_root(commits)
        sstore.close_drive(store, drive_id, 4_000, expected=commits, root=root, key_fingerprint="k", cover_pdf=b"%PDF")
        closed = sstore.get_drive(store, "pa-1")
        assert (closed["status"], closed["signature_count"], closed["root"]) == ("closed", 3, root)
        sig, _ = _signature("Late", drive.text_sha256)  # type: ignore[attr-defined]
        with pytest.raises(SigningError, match="closed"):
            sstore.add_signature(store, drive_id, sig, 5_000)  # type: ignore[arg-type]
        assert sstore.signatures(store, drive_id)[0]["name"] == "Supporter 2"
        # the chain holds counts and the root, never a name or a commitment
        with store.reading() as tx:
            events = tx.rows("SELECT kind, data FROM events ORDER BY seq")
        kinds = [e["kind"] for e in events]
        assert kinds == ["drive_opened", "signatures_removed", "drive_closed"]
        everything = json.dumps([dict(e) for e in events])
        assert "Supporter" not in everything and receipts[1].commitment not in everything
        assert root in everything
        with pytest.raises(SelectionError, match="no signing drive named 'nope'; drives: pa-1"):
            sstore.get_drive(store, "nope")
        # a deadline that passed refuses signatures before anyone closes the drive
        from dataclasses import replace

        late_drive = replace(drive, name="pa-2", token=signing.new_token(), closes_at="2001-01-01T00:00:00.000Z")  # type: ignore[type-var]
        late_id = sstore.create_drive(store, late_drive, [], 6_000)  # type: ignore[arg-type]
        with pytest.raises(SigningError, match="closed"):
            sstore.add_signature(store, late_id, sig, 1_800_000_000_000)  # type: ignore[arg-type]
    finally:
        store.close()


def test_a_withdrawn_name_leaves_no_trace_in_the_sqlite_files(tmp_path: Path) -> None:
    import sqlite3

    from campaign.store import open_store
    from campaign.store import signing as sstore

    def holding(name: bytes) -> list[str]:
        return sorted(p.name for p in tmp_path.iterdir() if p.is_file() and name in p.read_bytes())

    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        drive = _drive()
        drive_id = sstore.create_drive(store, drive, [], 1_000)  # type: ignore[arg-type]
        keep, _ = _signature("Keeper Name", drive.text_sha256)  # type: ignore[attr-defined]
        sstore.add_signature(store, drive_id, keep, 2_000)  # type: ignore[arg-type]
        gone, receipt = _signature("Zarina Withdrawnova", drive.text_sha256)  # type: ignore[attr-defined]
        sstore.add_signature(store, drive_id, gone, 2_000)  # type: ignore[arg-type]
        assert sstore.withdraw(
            store, drive_id, receipt.commitment, lambda row: receipt.matches(row["name"], row["text_sha256"])
        ) == sstore.Deletion(1, None)
        assert holding(b"Zarina Withdrawnova") == []  # while the store is open, not only after closing it

        # Another program reading keeps the checkpoint from finishing: the deletion stands,
        # and says so (it used to be silent), and scrub() erases the bytes once it can.
        other, other_receipt = _signature("Nodira Blocked", drive.text_sha256)  # type: ignore[attr-defined]
        sstore.add_signature(store, drive_id, other, 3_000)  # type: ignore[arg-type]
        reader = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM signatures").fetchone()
        deletion = sstore.withdraw(
            store, drive_id, other_receipt.commitment, lambda r: other_receipt.matches(r["name"], r["text_sha256"])
        )
        assert deletion.count == 1 and deletion.leftover is not None
        assert "write-ahead log" in deletion.leftover and "Nodira" not in deletion.leftover
        assert holding(b"Nodira Blocked")  # what the warning says
        reader.execute("COMMIT")
        reader.close()
        assert sstore.scrub(store) is None
        assert holding(b"Nodira Blocked") == []
    finally:
        store.close()
    assert holding(b"Zarina Withdrawnova") == []
    assert holding(b"Keeper Name")


def test_the_qr_code_on_the_page_is_the_payload_in_the_metadata(tmp_path: Path) -> None:
    """Print, scan, compare: the QR code decodes (zbarimg) to exactly the metadata payload,
    and a payload that disagrees with the embedded text is reported by verification."""
    import os
    import shutil
    import subprocess

    from campaign import pdf
    from campaign.pdf.payload import check_proof
    from tests.support.pdfpng import have_pdftoppm, render_page_png

    text = "Subject\n\nMuhtaram ҷанобон!\n"
    fields = {"drive": "pa-1", "letter_sha256": signing.sha256_text(text), "key_fingerprint": _hex(9)}
    payload = signing.proof_payload(**fields, commitment=_hex(3))
    content = pdf.LetterContent("tg", "Subject", "<p>Muhtaram ҷанобон!</p>", "1 декабр", "pa/1", "OHCHR", None)
    proof = pdf.Proof(payload=payload, lines=("words",), text=text)
    data = pdf.PdfRenderer().render(pdf.Letterhead("Org", None, None), content, pdf.Signer("Name"), proof=proof)
    check = check_proof(data, {_hex(9)})
    assert check is not None and check.ok, check
    wrong = pdf.Proof(payload=payload, lines=(), text=text + "changed")
    changed = pdf.PdfRenderer().render(pdf.Letterhead("Org", None, None), content, None, proof=wrong)
    bad = check_proof(changed, {_hex(9)})
    assert bad is not None and not bad.ok and "does not match" in bad.problems[0]
    assert not check_proof(data, {_hex(10)}).ok  # type: ignore[union-attr]
    if not (shutil.which("zbarimg") and have_pdftoppm()):
        if os.environ.get("CI") == "true":
            pytest.fail("zbarimg or pdftoppm missing: scripts/system-deps.sh installs zbar-tools and poppler-utils")
        pytest.skip("zbarimg (zbar-tools) or pdftoppm (poppler-utils) not installed")
    png = render_page_png(data, tmp_path / "page.png", dpi=300)
    scanned = subprocess.run(["zbarimg", "-q", "--raw", str(png)], capture_output=True, text=True, timeout=60)
    assert scanned.stdout.strip() == payload


def test_every_plural_category_of_a_cover_language_has_its_title() -> None:
    """The categories come from Babel's CLDR data, whose rules change between releases
    (Tajik's did): whatever the installed release says, each has words on the cover."""
    from campaign.pdf.cover import WORDS, cover_title
    from campaign.wording import plural_category

    for lang in WORDS:
        for n in range(0, 1201):
            assert f"title_{plural_category(n, lang)}" in WORDS[lang], (lang, n)
            assert str(n) in cover_title(n, lang)
    assert cover_title(1_000_000, "fr") == "1000000 supporters signed this letter"  # English words, English rule


@pytest.mark.parametrize(
    ("lang", "count", "title"),
    [("ru", 1, "Это письмо подписал 1 сторонник"), ("ru", 2, "Это письмо подписали 2 сторонника"),
     ("ru", 4, "Это письмо подписали 4 сторонника"), ("ru", 5, "Это письмо подписали 5 сторонников"),
     ("ru", 11, "Это письмо подписали 11 сторонников"), ("ru", 12, "Это письмо подписали 12 сторонников"),
     ("ru", 21, "Это письмо подписал 21 сторонник"), ("ru", 22, "Это письмо подписали 22 сторонника"),
     ("ru", 111, "Это письмо подписали 111 сторонников"), ("ru", 0, "Это письмо подписали 0 сторонников"),
     ("en", 1, "1 supporter signed this letter"), ("en", 21, "21 supporters signed this letter"),
     ("en", 0, "0 supporters signed this letter"),
     ("tg", 1, "Ин номаро 1 нафар тарафдор имзо кард"), ("tg", 2, "Ин номаро 2 нафар тарафдорон имзо карданд"),
     ("fr", 3, "3 supporters signed this letter")],
)  # fmt: skip
def test_the_cover_title_agrees_with_its_count(lang: str, count: int, title: str) -> None:
    from campaign.pdf.cover import cover_title

    assert cover_title(count, lang) == title
