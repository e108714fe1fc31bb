"""Cases and submissions through the real CLI: consent, missing elements, sensitive data,
submissions in each body's format (DOCX read back with python-docx, PDF text with pypdf),
deadlines, and the message key that includes the cases."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import unicodedata
from pathlib import Path

import pytest

from campaign.models import nfc
from tests.conftest import ROOT, make_workspace, run_cli, set_smtp_port, stored_body, tree_digest
from tests.support.smtp import Script, ScriptedServer

EXAMPLE = (ROOT / "campaign" / "scaffold" / "cases" / "example.yaml").read_text(encoding="utf-8")
NAMES = ["Ҷӯрабек Қаҳҳорӣ Ғафурзода", "Джурабек Каххори Гафурзода", "Jurabek Qahhori Ghafurzoda"]


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace with the shipped registry (which has the submission profiles), without
    its office hours: these tests send at whatever time they run (CI failed them after 17:00
    in Geneva, when every letter waited for the next morning)."""
    registry = tmp_path / "recipients.yaml"
    shipped = (ROOT / "recipients.yaml").read_text(encoding="utf-8")
    registry.write_text(re.sub(r"(?m)^\s*office_hours:.*\n", "", shipped), encoding="utf-8")
    root = make_workspace(tmp_path / "ws", registry=registry)
    monkeypatch.setenv("CAMPAIGN_WORKSPACE", str(root))
    return root


def write_case(ws: Path, case_id: str, text: str) -> Path:
    folder = ws / ".campaign" / "cases"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{case_id}.yaml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def real_case(text: str = EXAMPLE) -> str:
    """The example, not fictional (so it may be queued like a real case)."""
    return text.replace("fictional: true", "fictional: false")


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(needle)


def ok(*args: str) -> str:
    result = run_cli(*args)
    assert result.code == 0, result.output
    return result.output


# ---------------------------------------------------------------------------
# The case file


def test_new_example_is_private_fictional_and_complete(ws: Path) -> None:
    ok("cases", "new", "--example")
    path = ws / ".campaign" / "cases" / "example.yaml"
    assert path.stat().st_mode & 0o777 == 0o600
    assert (ws / ".campaign" / "cases").stat().st_mode & 0o777 == 0o700
    assert "FICTIONAL" in path.read_text() and "fictional: true" in path.read_text()
    result = run_cli("cases", "check", "example")
    assert result.code == 0, result.output
    assert "fictional example" in result.output
    listing = json.loads(ok("cases", "list", "--json").split("\n", 0)[0])
    assert listing["cases"][0]["fictional"] is True and listing["cases"][0]["to"] == ["un-wgeid", "un-wgad"]


def test_new_template_lists_every_missing_element(ws: Path) -> None:
    ok("cases", "new", "tj-2026-01")
    text = (ws / ".campaign" / "cases" / "tj-2026-01.yaml").read_text()
    assert "private" in text
    result = run_cli("cases", "check", "tj-2026-01")
    assert result.code == 0  # addressed to nobody yet: nothing to check against
    assert "addressed to no body" in result.output


def test_new_refuses_an_id_with_a_name_and_an_existing_case(ws: Path) -> None:
    result = run_cli("cases", "new", "Ivan Ivanov")
    assert result.code == 1 and "case id" in result.stderr
    assert not (ws / ".campaign").exists()
    ok("cases", "new", "--example")
    before = tree_digest(ws)
    result = run_cli("cases", "new", "--example")
    assert result.code == 1 and "already exists" in result.stderr
    assert tree_digest(ws) == before


WGEID_ELEMENTS = {
    "name": [
        '    tg: "Ҷӯрабек Қаҳҳорӣ Ғафурзода"',
        '    ru: "Джурабек Каххори Гафурзода"',
        '    en: "Jurabek Qahhori Ghafurzoda"',
    ],
    "identifying_data": [
        "  date_of_birth: 1988-04-17",
        '  identity_document: "passport no. 000000000 (fictional)"',
    ],
    "date": ["  date: 2026-10-02"],
    "place": ['  place: "outside his home in Dushanbe, at about 8 a.m. (fictional example)"'],
    "perpetrators": [
        '  perpetrators: "unidentified men in plain clothes who said they were security officers (fictional)"'
    ],
    "source": [
        '  name: "Example Human Rights Group (fictional)"',
        '  organisation: "Example Human Rights Group (fictional)"',
    ],
}


@pytest.mark.parametrize("element", [*WGEID_ELEMENTS, "remedies"])
def test_check_names_each_missing_wgeid_element_with_its_line(ws: Path, element: str) -> None:
    text = real_case().replace("to: [un-wgeid, un-wgad]", "to: [un-wgeid]")
    if element == "remedies":
        start = text.index("remedies:\n")
        end = text.index("\nsource:")
        text = text[:start] + "remedies: []\n" + text[end:]
        anchor = "remedies: []"
    else:
        for line in WGEID_ELEMENTS[element]:
            assert line in text, line
            key = line.split(":")[0]
            text = text.replace(line, f"{key}:")
        anchor = {
            "name": "  names:",
            "identifying_data": "  date_of_birth:",
            "date": "  date:",
            "place": "  place:",
            "perpetrators": "  perpetrators:",
            "source": "  name:",
        }[element]
    write_case(ws, "c1", text)
    result = run_cli("cases", "check", "c1")
    assert result.code == 1, result.output
    missing = [line for line in result.stdout.splitlines() if line.startswith("missing")]
    assert len(missing) == 1, result.stdout
    expected_line = line_of(text, anchor) if element != "remedies" else line_of(text, "remedies: []")
    assert f".campaign/cases/c1.yaml:{expected_line}: un-wgeid: missing {element}:" in missing[0], missing[0]


def test_check_reports_withdrawn_and_uncovered_consent(ws: Path) -> None:
    withdrawn = real_case().replace("    withdrawn:\n", "    withdrawn: 2026-11-20\n")
    write_case(ws, "gone", withdrawn)
    treaty_only = real_case().replace("bodies: [un-wgeid, un-wgad]", "bodies: [treaty-body]")
    write_case(ws, "treaty", treaty_only)
    result = run_cli("cases", "check", "--json")
    assert result.code == 1
    findings = json.loads(result.stdout)
    consent = {(f["case"], f["body"]): f["message"] for f in findings if f["level"] == "consent"}
    assert consent[("gone", "un-wgeid")] == "consent for un-wgeid was withdrawn on 2026-11-20"
    assert "does not cover un-wgad (it names treaty-body)" in consent[("treaty", "un-wgad")]
    line = line_of(treaty_only, "consent:")
    wheres = {f["where"] for f in findings if f["case"] == "treaty" and f["level"] == "consent"}
    assert wheres == {f".campaign/cases/treaty.yaml:{line}"}


def test_admissibility_warnings(ws: Path) -> None:
    text = real_case().replace(
        """evidence:
  - kind: testimony""",
        """evidence:
  - kind: media""",
    )
    write_case(ws, "media", text)
    result = run_cli("cases", "check", "media")
    assert "rest only on media reports" in result.stdout


def test_validation_errors_name_file_line_and_field_never_the_value(ws: Path) -> None:
    secret = "Secretname Ҳҳ"
    bad = real_case().replace("  gender: male", f'  gender: male\n  favourite: "{secret}"')
    write_case(ws, "bad", bad)
    result = run_cli("cases", "show", "bad")
    assert result.code == 1
    assert f".campaign/cases/bad.yaml:{line_of(bad, 'favourite')}: person.favourite: unknown key" in result.stderr
    bad_date = real_case().replace("  date_of_birth: 1988-04-17", f"  date_of_birth: {secret}")
    write_case(ws, "bad", bad_date)
    result = run_cli("cases", "show", "bad")
    assert result.code == 1
    assert f"bad.yaml:{line_of(bad_date, 'date_of_birth')}: person.date_of_birth:" in result.stderr
    assert secret not in result.output and "Secretname" not in result.output


# ---------------------------------------------------------------------------
# Consent at queue, send and followup


def test_queue_refuses_an_uncovered_body_and_changes_nothing(ws: Path) -> None:
    write_case(ws, "treaty", real_case().replace("bodies: [un-wgeid, un-wgad]", "bodies: [treaty-body]"))
    ok("queue", "peace-agreement", "--to", "un-wgad")  # state exists: it must stay byte-identical
    before = tree_digest(ws)
    result = run_cli(
        "queue", "case-submission", "--to", "un-human-rights-committee", "--to", "un-wgeid", "--case", "treaty"
    )
    assert result.code == 1
    assert "case treaty: the consent recorded does not cover un-wgeid (it names treaty-body); nothing was queued" in (
        result.stderr
    )
    consent_line = line_of(real_case(), "consent:")
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        "error: case treaty: the consent recorded does not cover un-wgeid (it names treaty-body); nothing was "
        f"queued: record consent covering un-wgeid at .campaign/cases/treaty.yaml:{consent_line} (consent:), "
        "or leave un-wgeid out"
    ]
    assert tree_digest(ws) == before
    ok("queue", "case-submission", "--to", "un-human-rights-committee", "--case", "treaty")


def test_queue_refuses_a_withdrawn_consent_and_a_case_letter_without_case(ws: Path) -> None:
    write_case(ws, "gone", real_case().replace("    withdrawn:\n", "    withdrawn: 2026-11-20\n"))
    result = run_cli("queue", "case-submission", "--to", "un-wgeid", "--case", "gone")
    assert result.code == 1 and "withdrawn on 2026-11-20" in result.stderr
    result = run_cli("queue", "case-submission", "--to", "un-wgeid")
    assert result.code == 1 and "--case ID" in result.stderr
    assert not (ws / ".campaign" / "state.db").exists()


def test_two_cases_to_one_body_are_two_letters(ws: Path) -> None:
    write_case(ws, "a", real_case())
    write_case(ws, "b", real_case())
    ok("queue", "case-submission", "--to", "un-wgeid", "--case", "a")
    ok("queue", "case-submission", "--to", "un-wgeid", "--case", "b")
    again = ok("queue", "case-submission", "--to", "un-wgeid", "--case", "b")
    assert "0 new, 1 already queued" in again
    rows = json.loads(run_cli("log", "--json").stdout)
    assert [r["subject"] for r in rows] == ["case-submission [case a]", "case-submission [case b]"]


def test_fictional_case_only_goes_to_a_local_server(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok("cases", "new", "--example")
    config = ws / "campaign.toml"
    config.write_text(
        config.read_text()
        .replace('host = "127.0.0.1"', 'host = "smtp.example.org"')
        .replace('security = "none"', 'security = "starttls"')
    )
    result = run_cli("queue", "case-submission", "--to", "un-wgeid", "--case", "example")
    assert result.code == 1 and "fictional example" in result.stderr


def test_send_holds_a_letter_whose_consent_was_withdrawn(ws: Path) -> None:
    path = write_case(ws, "c1", real_case())
    with ScriptedServer(Script()) as server:
        set_smtp_port(ws, server.port)
        ok("queue", "case-submission", "--to", "un-wgeid", "--to", "un-wgad", "--case", "c1")
        path.write_text(real_case().replace("bodies: [un-wgeid, un-wgad]", "bodies: [un-wgad]"))
        result = run_cli("send", "--yes")
        assert result.code == 3, result.output
        assert "to un-wgeid: consent: case c1: the consent recorded does not cover un-wgeid" in result.output
        assert [a.rcpt_tos[0] for a in server.accepted] == ["hrc-wg-ad@un.org"]
        rows = {r["recipient"]: r for r in json.loads(run_cli("log", "--json").stdout)}
        assert rows["un-wgeid"]["status"] == "held"
        held = [e for e in json.loads(run_cli("log", "--events", "--json").stdout) if e["event"] == "held"]
        assert held and held[0]["hold"] == "consent"
        ok("release", str(rows["un-wgeid"]["id"]))
        assert run_cli("send", "--yes").code == 3  # still not covered: held again
        assert len(server.accepted) == 1
        ok("log", "verify")


def test_followup_checks_consent_again_and_carries_the_case(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_case(ws, "c1", real_case())
    with ScriptedServer(Script()) as server:
        set_smtp_port(ws, server.port)
        ok("queue", "case-submission", "--to", "un-wgeid", "--to", "un-wgad", "--case", "c1")
        ok("send", "--yes")
        extra = "  - given_by: relative\n    bodies: [un-wgad]\n    date: 2026-10-06\n    withdrawn: 2026-11-20\n"
        changed = real_case().replace("bodies: [un-wgeid, un-wgad]", "bodies: [un-wgeid]")
        path.write_text(changed.replace("    withdrawn:\n", "    withdrawn:\n" + extra))
        ok("cases", "note", "c1", "transmitted", "--to", "un-wgeid", "--date", "2026-11-02")
        result = run_cli("followup", "case-submission", "--campaign", "case-submission", "--after", "0s")
        assert result.code == 0, result.output
        assert "not queued: case c1: consent for un-wgad was withdrawn on 2026-11-20" in result.stdout
        assert "1 follow-up queued" in result.stdout
        assert "WGEID: the case stays open" in result.stdout
        rows = json.loads(run_cli("log", "--json", "--campaign", "case-submission-followup").stdout)
        assert [r["recipient"] for r in rows] == ["un-wgeid"]
        assert rows[0]["subject"] == "case-submission [case c1]"


# ---------------------------------------------------------------------------
# Sensitive fields never leak


def sensitive(text: str) -> list[str]:
    from ruamel.yaml import YAML

    from campaign.cases import sensitive_values
    from campaign.models import Case, parse

    yaml = YAML(typ="safe")
    yaml.version = (1, 2)
    values = sensitive_values(parse(Case, yaml.load(text)))
    # Long enough to be telling, and the pieces of multi-line text (lines are printed apart).
    pieces = {p.strip() for v in values for p in [v, *v.splitlines()] if len(p.strip()) >= 6}
    return sorted(pieces)


def test_sensitive_fields_appear_nowhere_unless_asked_for(ws: Path, tmp_path: Path) -> None:
    text = real_case()
    write_case(ws, "c1", text)
    secrets = sensitive(text)
    assert any("Ҷӯрабек" in s for s in secrets) and len(secrets) > 25
    outputs: list[str] = []

    def run(*args: str) -> None:
        result = run_cli(*args)
        assert "Traceback" not in result.output
        outputs.append(result.output)

    with ScriptedServer(Script()) as server:
        set_smtp_port(ws, server.port)
        run("cases", "list")
        run("cases", "list", "--json")
        run("cases", "show", "c1")
        run("cases", "show", "c1", "--json")
        run("cases", "check")
        run("cases", "check", "--json")
        run("letters", "check", "case-submission", "--case", "c1")
        run("queue", "case-submission", "--to", "un-wgeid", "--to", "un-wgad", "--case", "c1")
        run("queue", "case-submission", "--to", "un-sr-torture", "--case", "c1")  # refused
        run("plan")
        run("send", "--yes")
        run("status")
        run("status", "--json")
        run("log")
        run("log", "--json")
        run("log", "--csv")
        run("log", "--events")
        run("log", "--events", "--json")
        run("replies")
        run("cases", "note", "c1", "transmitted", "--to", "un-wgad", "--date", "2026-11-02")
        run("followup", "case-submission", "--campaign", "case-submission", "--after", "0s")
        run("log", "export", "--campaign", "case-submission", "-o", str(tmp_path / "e.zip"))
        run("cases", "show", "nosuch")
        run("submit", "prepare", "--case", "c1", "--to", "un-sr-torture")  # refused: consent
        run("submit", "prepare", "--case", "c1", "--to", "un-wgeid")
    assert len(server.accepted) == 2  # the letters themselves carry the case: that is their job
    joined = nfc("\n".join(outputs))
    leaks = [s for s in secrets if nfc(s) in joined]
    assert not leaks, leaks
    import sqlite3

    con = sqlite3.connect(ws / ".campaign" / "state.db")
    event_data = "\n".join(row[0] for row in con.execute("SELECT data FROM events"))
    event_data += "\n".join(str(row) for row in con.execute("SELECT subject, wait_reason, last_reply FROM messages"))
    con.close()
    assert not [s for s in secrets if nfc(s) in nfc(event_data)]
    assert "left out 2 letters about a case" not in joined  # all were case letters: nothing exported
    assert "add --with-case-letters" in joined
    shown = ok("cases", "show", "c1", "--reveal", "person.names")
    assert all(name in shown for name in NAMES)


def test_log_export_leaves_case_letters_out_unless_asked(ws: Path, tmp_path: Path) -> None:
    import zipfile

    write_case(ws, "c1", real_case())
    with ScriptedServer(Script()) as server:
        set_smtp_port(ws, server.port)
        ok("queue", "peace-agreement", "--to", "un-wgeid", "--campaign", "mixed")
        ok("queue", "case-submission", "--to", "un-wgeid", "--case", "c1", "--campaign", "mixed")
        ok("send", "--yes")
    out = ok("log", "export", "--campaign", "mixed", "-o", str(tmp_path / "a.zip"))
    assert "1 letter," in out and "left out 1 letter about a case" in out
    names = zipfile.ZipFile(tmp_path / "a.zip").namelist()
    out = ok("log", "export", "--campaign", "mixed", "--with-case-letters", "-o", str(tmp_path / "b.zip"))
    assert "2 letters" in out
    assert len(zipfile.ZipFile(tmp_path / "b.zip").namelist()) > len(names)


# ---------------------------------------------------------------------------
# Submissions


def docx_text(path: Path) -> str:
    import docx

    doc = docx.Document(str(path))
    parts = [p.text for p in doc.paragraphs]
    parts += [cell.text for table in doc.tables for row in table.rows for cell in row.cells]
    return nfc("\n".join(parts))


def pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    return nfc("\n".join(page.extract_text() or "" for page in PdfReader(str(path)).pages))


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def required_values(body: str) -> list[str]:
    """The values of the example case that a body's profile requires (one per element)."""
    return {
        "un-wgeid": [*NAMES, "1988-04-17", "2026-10-02", "outside his home in Dushanbe", "plain clothes who said",
                     "Prosecutor-General", "Example Human Rights Group (fictional)"],
        "un-wgad": [*NAMES, "1988-04-17", "2026-10-02", "outside his home in Dushanbe", "plain clothes who said",
                    "no order was shown", "grey car without number plates", "category I", "Prosecutor-General",
                    "Example Human Rights Group (fictional)"],
        "un-sr-torture": ["Jurabek Qahhori Ghafurzoda", "plain clothes who said", "2026-10-02",
                          "outside his home in Dushanbe", "grey car without", "Example Human Rights Group"],
        "un-human-rights-committee": [*NAMES, "1988-04-17", "Tajik", "Example Street 1", "Tajikistan",
                                      "grey car without number plates", "category I", "Prosecutor-General",
                                      "disclose his fate", "Example Human Rights Group (fictional)"],
    }[body]  # fmt: skip


@pytest.mark.parametrize("body", ["un-wgeid", "un-wgad"])
def test_prepare_word_form_has_every_required_field(ws: Path, body: str) -> None:
    write_case(ws, "c1", real_case())
    output = ok("submit", "prepare", "--case", "c1", "--to", body)
    path = ws / ".campaign" / "submissions" / f"c1-{body}.docx"
    assert path.stat().st_mode & 0o777 == 0o600
    text = squash(docx_text(path))
    for value in required_values(body):
        assert squash(value) in text, value
    email = (ws / ".campaign" / "submissions" / f"c1-{body}.email.txt").read_text()
    mandate = {"un-wgeid": "WGEID", "un-wgad": "WGAD"}[body]
    assert f"Subject: {mandate} – Tajikistan" in email and f"c1-{body}.docx" in email
    assert "checklist" not in output or "missing" not in output
    again = run_cli("submit", "prepare", "--case", "c1", "--to", body)
    assert again.code == 1 and "already exists" in again.stderr
    ok("submit", "prepare", "--case", "c1", "--to", body, "--force")
    assert path.read_bytes() == (ws / ".campaign" / "submissions" / f"c1-{body}.docx").read_bytes()


def test_prepare_special_rapporteur_email_and_sheet(ws: Path) -> None:
    write_case(ws, "c1", real_case().replace("bodies: [un-wgeid, un-wgad]", "bodies: [special-procedures]"))
    ok("submit", "prepare", "--case", "c1", "--to", "un-sr-torture")
    text = (ws / ".campaign" / "submissions" / "c1-un-sr-torture.email.txt").read_text()
    assert "Subject: URGENT – Special Rapporteur on torture – Tajikistan" in text
    for value in required_values("un-sr-torture"):
        assert squash(value) in squash(text), value
    ok("submit", "prepare", "--case", "c1", "--to", "un-sr-torture", "--format", "sheet", "-o", str(ws / "s.html"))
    page = (ws / "s.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "Ҷӯрабек" in page


def test_prepare_human_rights_committee_pdf(ws: Path) -> None:
    pytest.importorskip("weasyprint")
    write_case(ws, "c1", real_case().replace("bodies: [un-wgeid, un-wgad]", "bodies: [un-human-rights-committee]"))
    output = ok("submit", "prepare", "--case", "c1", "--to", "un-human-rights-committee")
    assert "sign it by hand" in output and "not digitally sealed" in output
    text = squash(pdf_text(ws / ".campaign" / "submissions" / "c1-un-human-rights-committee.pdf"))
    for value in required_values("un-human-rights-committee"):
        assert squash(value) in text, value
    assert "missing authorisation" in output  # filed by an organisation for him
    path = write_case(ws, "c1", real_case().replace("bodies: [un-wgeid, un-wgad]", "bodies: [treaty-body]"))
    path.write_text(path.read_text().replace("attachments: []", "attachments: [{path: a.pdf, kind: authorisation}]"))
    result = run_cli("submit", "prepare", "--case", "c1", "--to", "un-human-rights-committee", "--queue", "--force")
    assert result.code == 1 and "signed by hand" in result.stderr


def test_prepare_russian_for_the_committee(ws: Path) -> None:
    pytest.importorskip("weasyprint")
    write_case(ws, "c1", real_case().replace("bodies: [un-wgeid, un-wgad]", "bodies: [treaty-body]"))
    ok("submit", "prepare", "--case", "c1", "--to", "un-human-rights-committee", "--lang", "ru")
    text = pdf_text(ws / ".campaign" / "submissions" / "c1-un-human-rights-committee.pdf")
    assert "Лицо, о котором идёт речь" in text
    for name in NAMES:
        assert name in text


def test_names_round_trip_through_docx_and_pdf(ws: Path) -> None:
    pytest.importorskip("weasyprint")
    write_case(ws, "c1", real_case().replace("bodies: [un-wgeid, un-wgad]", "bodies: [un-wgeid, treaty-body]"))
    ok("submit", "prepare", "--case", "c1", "--to", "un-wgeid")
    ok("submit", "prepare", "--case", "c1", "--to", "un-human-rights-committee")
    docx = docx_text(ws / ".campaign" / "submissions" / "c1-un-wgeid.docx")
    pdf = pdf_text(ws / ".campaign" / "submissions" / "c1-un-human-rights-committee.pdf")
    for name in NAMES:
        assert name in docx and name in pdf
    for letter in "ғӣқӯҳҷ":
        assert letter in docx.lower() and letter in pdf.lower()
        assert unicodedata.normalize("NFC", letter) == letter


def test_russian_only_letter_to_a_special_procedure_is_refused(ws: Path) -> None:
    write_case(ws, "c1", real_case())
    folder = ws / "letters" / "ru-only"
    folder.mkdir()
    shutil.copy2(ws / "letters" / "case-submission" / "ru.md.j2", folder / "ru.md.j2")
    before = tree_digest(ws)
    result = run_cli("submit", "prepare", "--case", "c1", "--to", "un-wgad", "--letter", "ru-only")
    assert result.code == 1
    assert "letters/ru-only/ is in ru only; WGAD takes submissions in en, fr, es" in result.stderr
    result = run_cli("submit", "prepare", "--case", "c1", "--to", "un-wgad", "--lang", "ru")
    assert result.code == 1 and "en, fr, es" in result.stderr
    assert tree_digest(ws) == before


def upr_case(circumstances_words: int) -> str:
    text = real_case().replace("bodies: [un-wgeid, un-wgad]", "bodies: [un-upr]")
    long = " ".join(f"word{n % 97}" for n in range(circumstances_words))
    start = text.index("  circumstances: |")
    end = text.index("  perpetrators:")
    return text[:start] + f"  circumstances: |\n    {long}\n" + text[end:]


def test_upr_submission_within_and_over_five_pages(ws: Path) -> None:
    pytest.importorskip("weasyprint")
    write_case(ws, "short", upr_case(300))
    output = ok("submit", "prepare", "--case", "short", "--to", "un-upr", "--session", "May 2027")
    assert "an estimate" in output and "pages of A4" in output
    assert "withholds it" in output  # published, and consent does not allow the name
    docx = docx_text(ws / ".campaign" / "submissions" / "short-un-upr.docx")
    assert "Tajikistan" in docx and "word96" in docx and NAMES[0] not in docx
    mail = (ws / ".campaign" / "submissions" / "short-un-upr.email.txt").read_text()
    assert "Subject: Civic Platform (test) – UPR submission – Tajikistan – May 2027" in mail
    write_case(ws, "long", upr_case(4000))
    before = tree_digest(ws)
    result = run_cli("submit", "prepare", "--case", "long", "--to", "un-upr", "--session", "May 2027")
    assert result.code == 1
    assert "UPR takes at most 5 pages; this submission is about" in result.stderr and "an estimate" in result.stderr
    assert tree_digest(ws) == before
    result = run_cli("submit", "prepare", "--case", "short", "--to", "un-upr", "--force")
    assert result.code == 2 and "--session" in result.stderr


def test_prepare_queue_attaches_the_document_under_the_event_hash(ws: Path) -> None:
    import email
    import email.policy
    import sqlite3

    write_case(ws, "c1", real_case())
    with ScriptedServer(Script()) as server:
        set_smtp_port(ws, server.port)
        ok("submit", "prepare", "--case", "c1", "--to", "un-wgeid", "--queue")
        again = ok("submit", "prepare", "--case", "c1", "--to", "un-wgeid", "--queue", "--force")
        assert "0 new, 1 already queued" in again  # the same document: the same letter
        ok("send", "--yes")
    form = (ws / ".campaign" / "submissions" / "c1-un-wgeid.docx").read_bytes()
    body = stored_body(ws / ".campaign" / "state.db")
    con = sqlite3.connect(ws / ".campaign" / "state.db")
    queued = json.loads(con.execute("SELECT data FROM events WHERE kind = 'queued'").fetchone()[0])
    con.close()
    assert queued["content_sha256"] == hashlib.sha256(body).hexdigest()
    assert queued["attachments"] == [
        {"filename": "c1-un-wgeid.docx", "sha256": hashlib.sha256(form).hexdigest(), "size": len(form)}
    ]
    sent = email.message_from_bytes(server.accepted[0].data, policy=email.policy.default)
    parts = list(sent.iter_attachments())
    assert parts[0].get_filename() == "c1-un-wgeid.docx" and parts[0].get_content() == form
    assert sent["Subject"] == "WGEID – Tajikistan"


# ---------------------------------------------------------------------------
# Letters about cases, deadlines


def test_letters_check_names_a_case_field_the_case_lacks(ws: Path) -> None:
    write_case(ws, "c1", real_case())
    template = ws / "letters" / "case-submission" / "en.md.j2"
    template.write_text(template.read_text().replace("{{ salutation }}", "{{ salutation }} {{ case.person.photo }}"))
    result = run_cli("letters", "check", "case-submission", "--case", "c1")
    assert result.code == 1
    assert "letters/case-submission/en.md.j2:6: undefined: case c1 has no person.photo (.campaign/cases/c1.yaml)" in (
        result.stderr
    )
    result = run_cli("queue", "case-submission", "--to", "un-wgad", "--case", "c1")
    assert result.code == 1 and "case c1 has no person.photo" in result.stderr
    plain = run_cli("letters", "check", "peace-agreement", "case-submission")
    assert "fictional example case" in plain.stderr


def test_deadlines_in_status_and_show(ws: Path) -> None:
    write_case(ws, "c1", real_case())
    out = ok("cases", "note", "c1", "transmitted", "--to", "un-wgad", "--date", "2026-11-02")
    assert "WGAD: government reply due 2027-01-01; then send comments on the reply" in out
    status = ok("status")
    assert "WGAD: government reply due 2027-01-01; then send comments on the reply" in status
    data = json.loads(run_cli("status", "--json").stdout)
    assert data["case_deadlines"][0]["due"] == "2027-01-01"
    ok("cases", "note", "c1", "government-reply", "--to", "un-wgad", "--date", "2027-01-10")
    status = ok("status")
    assert "government reply due" not in status and "final comments" in status
    text = (ws / ".campaign" / "cases" / "c1.yaml").read_text()
    assert "# ====" in text and "event: government-reply" in text  # comments kept
    assert (ws / ".campaign" / "cases" / "c1.yaml").stat().st_mode & 0o777 == 0o600
    result = run_cli("cases", "note", "c1", "transmitted", "--date", "2026-11-02")
    assert result.code == 2 and "--to" in result.stderr


# ---------------------------------------------------------------------------
# The store: the cases are part of the key; the migration keeps what was there


def test_migration_adds_cases_to_the_key_and_keeps_letters(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from campaign.store import NewMessage, migrations, open_store

    before = [m for m in migrations.MIGRATIONS if m[0] != "0010_cases"]
    monkeypatch.setattr(migrations, "MIGRATIONS", before)
    monkeypatch.setattr("campaign.store.sql.MIGRATIONS", before)

    def new(mid: str, cases: str = "") -> NewMessage:
        return NewMessage(
            campaign="c", letter="l", recipient="un-wgeid", email="a@un.example", email_key="a@un.example",
            domain="un.example", contact_name=None, lang="en", subject="s", message_id=mid, envid=mid.strip("<>@x"),
            body=b"body " + mid.encode(), content_sha256="0" * 64, cases=cases,
        )  # fmt: skip

    store = open_store(store_url)
    with store.transaction() as tx:  # a letter queued by the previous version (no cases column)
        tx.execute(
            "INSERT INTO messages (campaign, letter, recipient, email, email_key, domain, lang, subject, message_id, "
            "envid, content_sha256, status, attempts, created_at, updated_at, next_attempt_at) VALUES "
            "('c', 'l', 'un-wgeid', 'a@un.example', 'a@un.example', 'un.example', 'en', 's', '<old@x>', 'old', "
            "'0', 'queued', 0, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 0)"
        )
        tx.execute("INSERT INTO message_bodies (id, body) VALUES (1, ?)", (b"old body",))
    store.close()
    monkeypatch.undo()
    store = open_store(store_url)
    try:
        assert "0010_cases" in store.migrations()
        [old] = store.messages()
        assert old.cases == () and store.wire_bytes(old.id)[1] == b"old body"
        with store.enqueue(1000) as session:
            assert session.lookup("c", "l", "un-wgeid", "a@un.example") is not None
            assert session.lookup("c", "l", "un-wgeid", "a@un.example", "case-a") is None
            session.add(new("<a@x>", "case-a"))
            session.add(new("<b@x>", "case-b"))
        assert [m.cases for m in store.messages()] == [(), ("case-a",), ("case-b",)]
        from campaign.store.cases import case_letters

        assert [m.message_id for m in case_letters(store, "case-b")] == ["<b@x>"]
        from campaign.ledger import verify

        # the planted "old" letter has no event (it was written here, not queued): the only problem
        assert verify(store).problems == ["message 1 <old@x>: the log has no event about it"]
    finally:
        store.close()


def test_status_and_queue_without_cases_are_unchanged(ws: Path) -> None:
    """A workspace that never used cases sees nothing new."""
    ok("queue", "peace-agreement", "--to", "un-wgad")
    status = ok("status")
    assert "follow-up" not in status
    assert not (ws / ".campaign" / "cases").exists()
    rows = json.loads(run_cli("log", "--events", "--json").stdout)
    assert "cases" not in rows[0]


def test_demo_sends_the_fictional_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_workspace(tmp_path / "demo-root", registry=ROOT / "recipients.yaml")
    monkeypatch.chdir(root)
    result = run_cli("-C", str(root), "demo")
    assert result.code == 0, result.output
    assert "FICTIONAL example case" in result.stdout
    assert (root / ".campaign" / "demo" / ".campaign" / "submissions" / "example-un-wgeid.docx").is_file()
