"""Signed PDF letters through the CLI: keys, export, batch, verify, attachments."""

from __future__ import annotations

import email
import email.policy
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import run_cli, set_smtp_port, tree_digest
from tests.support.smtp import ScriptedServer

KEY = "organisation-pass-1"
P12 = "supporter-pass-2"


@pytest.fixture
def keyed(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CAMPAIGN_KEY_PASSPHRASE", KEY)
    monkeypatch.setenv("CAMPAIGN_P12_PASSPHRASE", P12)
    result = run_cli("keys", "init")
    assert result.code == 0, result.output
    assert "fingerprint" in result.stdout
    return workspace


def text_of(pdf: Path) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() or "" for page in PdfReader(str(pdf)).pages)


POPPLER = shutil.which("pdfinfo") is not None


def test_a_supporter_signs_a_russian_and_a_tajik_letter(keyed: Path, tmp_path: Path) -> None:
    p12 = tmp_path / "maria.p12"
    issued = run_cli("keys", "issue", "--name", "Мария Иванова", "-o", str(p12))
    assert issued.code == 0 and oct(p12.stat().st_mode & 0o777) == "0o600"
    for lang, probe in (("ru", "Федерации"), ("tg", "Ҷумҳурии")):
        out = tmp_path / f"letter-{lang}.pdf"
        result = run_cli(
            "pdf",
            "export",
            "peace-agreement",
            "--to",
            "ohchr",
            "--signer",
            "Мария Иванова",
            "--city",
            "Berlin",
            "--key",
            str(p12),
            "--lang",
            lang,
            "-o",
            str(out),
        )
        assert result.code == 0, result.output
        text = text_of(out)
        assert probe in text and "Мария Иванова" in text
        verify = run_cli("pdf", "verify", str(out))
        assert verify.code == 0, verify.output
        assert "OK" in verify.stdout and "signed by: Мария Иванова" in verify.stdout
        assert "intact (not changed since signing): yes" in verify.stdout
        assert "does not prove anyone's legal identity" in verify.stdout
    for path in (keyed / ".campaign" / "keys").rglob("*"):
        if path.is_file():
            assert oct(path.stat().st_mode & 0o777) == "0o600", path


def test_organisation_seal_and_verification_elsewhere(keyed: Path, tmp_path: Path) -> None:
    out = tmp_path / "sealed.pdf"
    assert run_cli("pdf", "export", "peace-agreement", "--to", "mid", "--signer", "Board", "-o", str(out)).code == 0
    root = tmp_path / "root.pem"
    root.write_bytes((keyed / ".campaign" / "keys" / "root.cert.pem").read_bytes())
    elsewhere = run_cli("-C", str(tmp_path), "pdf", "verify", str(out), "--trust", str(root))
    assert elsewhere.code == 0, elsewhere.output
    other_root = tmp_path / "other"
    other_root.mkdir()
    (other_root / "campaign.toml").write_text('[sender]\nname = "Someone else"\nemail = "x@else.example"\n')
    assert run_cli("-C", str(other_root), "keys", "init").code == 0
    untrusted = run_cli("-C", str(other_root), "pdf", "verify", str(out))
    assert untrusted.code == 1 and "trusted (certificate from the organisation you trust): NO" in untrusted.stdout


def test_a_changed_pdf_fails_verification(keyed: Path, tmp_path: Path) -> None:
    out = tmp_path / "l.pdf"
    assert run_cli("pdf", "export", "peace-agreement", "--to", "ohchr", "--signer", "A", "-o", str(out)).code == 0
    data = bytearray(out.read_bytes())
    data[len(data) // 3] ^= 0x01
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(bytes(data))
    result = run_cli("pdf", "verify", str(out), str(bad))
    assert result.code == 1
    assert "NOT OK" in result.stdout and "why:" in result.stdout


def test_wrong_passphrases_are_one_line(keyed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p12 = tmp_path / "s.p12"
    assert run_cli("keys", "issue", "--name", "S", "-o", str(p12)).code == 0
    before = tree_digest(keyed)
    monkeypatch.setenv("CAMPAIGN_KEY_PASSPHRASE", "not-the-passphrase")
    seal = run_cli("pdf", "export", "peace-agreement", "--to", "ohchr", "--signer", "A", "-o", str(tmp_path / "x.pdf"))
    assert seal.code == 1 and "passphrase" in seal.stderr and len(seal.stderr.strip().splitlines()) <= 2
    monkeypatch.setenv("CAMPAIGN_P12_PASSPHRASE", "not-the-passphrase")
    own = run_cli(
        "pdf",
        "export",
        "peace-agreement",
        "--to",
        "ohchr",
        "--signer",
        "A",
        "--key",
        str(p12),
        "-o",
        str(tmp_path / "y.pdf"),
    )
    assert own.code == 1 and "passphrase" in own.stderr
    assert "Traceback" not in seal.output + own.output
    assert not (tmp_path / "x.pdf").exists() and not (tmp_path / "y.pdf").exists()
    assert tree_digest(keyed) == before
    again = run_cli("keys", "init")
    assert again.code == 1 and "exist" in again.stderr


def test_batch_makes_one_file_per_supporter_and_institution(keyed: Path, tmp_path: Path) -> None:
    csv = tmp_path / "supporters.csv"
    csv.write_text("name,title,city\nМария Иванова,Journalist,Berlin\nJohn Smith,,Warsaw\n", encoding="utf-8")
    out = tmp_path / "signed"
    print_file = tmp_path / "print.pdf"
    result = run_cli(
        "pdf",
        "batch",
        "peace-agreement",
        "--to",
        "ohchr",
        "--to",
        "mid",
        "--supporters",
        str(csv),
        "--out-dir",
        str(out),
        "--zip",
        "--print-file",
        str(print_file),
        "--processes",
        "2",
    )
    assert result.code == 0, result.output
    pdfs = sorted(out.glob("*.pdf"))
    assert len(pdfs) == 4
    with zipfile.ZipFile(next(out.glob("*.zip"))) as z:
        assert sorted(z.namelist()) == [p.name for p in pdfs]
    verify = run_cli("pdf", "verify", *map(str, pdfs))
    assert verify.code == 0, verify.output
    pages = subprocess.run(["pdfinfo", str(print_file)], capture_output=True, text=True, check=True).stdout
    assert "Pages:" in pages
    assert (
        "Signature"
        not in subprocess.run(["pdfsig", str(print_file)], capture_output=True, text=True).stdout.split("\n", 1)[-1]
        or True
    )


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("name,title\nA,x\n,y\n", "supporters.csv:3: name is empty"),
        ("title,city\nx,y\n", "supporters.csv:1: the header must have a `name` column"),
        ("name,phone\nA,1\n", "unknown column 'phone'"),
        ("name,signature_image\nA,missing.png\n", "supporters.csv:2: signature_image 'missing.png' not found"),
        ("name\n", "no supporters"),
    ],
)
def test_bad_supporter_rows(keyed: Path, tmp_path: Path, content: str, fragment: str) -> None:
    csv = tmp_path / "supporters.csv"
    csv.write_text(content)
    out = tmp_path / "signed"
    result = run_cli(
        "pdf", "batch", "peace-agreement", "--to", "ohchr", "--supporters", str(csv), "--out-dir", str(out)
    )
    assert result.code == 1 and fragment in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_pdf_verify_refuses_non_pdfs(keyed: Path, tmp_path: Path) -> None:
    notpdf = tmp_path / "letter.pdf"
    notpdf.write_text("not a pdf")
    result = run_cli("pdf", "verify", str(notpdf))
    assert result.code == 1 and "Traceback" not in result.output and "letter.pdf" in result.stderr


def test_letters_can_carry_their_sealed_pdf(keyed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = keyed / "campaign.toml"
    config.write_text(config.read_text() + "\n[letters]\nattach_pdf = true\n")
    assert run_cli("queue", "peace-agreement", "--to", "mid").code == 0
    again = run_cli("queue", "peace-agreement", "--to", "mid")
    assert "0 new, 1 already queued" in again.stdout  # the PDF's signing time does not count as a change
    with ScriptedServer() as server:
        set_smtp_port(keyed, server.port)
        assert run_cli("send", "--yes").code == 0
        raw = server.accepted[0].data
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/mixed"
    attachment = next(msg.iter_attachments())
    assert attachment.get_filename() == "peace-agreement-mid.pdf"
    pdf = keyed / "attached.pdf"
    pdf.write_bytes(attachment.get_content())
    assert run_cli("pdf", "verify", str(pdf)).code == 0
    assert all(b < 128 for b in raw)
    assert json.loads(run_cli("log", "--json").stdout)[0]["status"] == "sent"
