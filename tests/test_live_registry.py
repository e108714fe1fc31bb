"""Issue 17, "What letters need from the registry", through the real CLI: names and
addresses per language, custom fields, `recipients import` (CSV, .xlsx) and `export --csv`."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli, tree_digest
from tests.support.smtp import ScriptedServer

REGISTRY = """\
# Our institutions (a comment that must survive every import).
recipients:
  - id: mid
    name:   # one name per language
      en: Ministry of Foreign Affairs of the Russian Federation
      ru: Министерство иностранных дел Российской Федерации
    tags: [russia]
    languages: [ru]
    postal_address:
      en: |
        Smolenskaya-Sennaya pl. 32/34
        Moscow 119200
      ru: |
        Смоленская-Сенная пл., д. 32/34
        Москва, 119200
    fields: {reference_number: "MID-2026/17", desk: Human rights}
    contacts:
      - email: info@mid.example
        fields: {desk: Department of Humanitarian Cooperation}

  - id: osce
    name: OSCE Programme Office in Dushanbe   # a plain name still works
    tags: [osce]
    languages: [tg, ru, en]
    contacts:
      - email: office@osce.example
"""


@pytest.fixture
def ws(workspace: Path) -> Path:
    (workspace / "recipients.yaml").write_text(REGISTRY, encoding="utf-8")
    return workspace


# ---------------------------------------------------------------------------
# Names and addresses per language


def test_translated_name_in_to_header_salutation_and_pdf(
    ws: Path, smtp_server: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    letter = ws / "letters" / "peace-agreement" / "ru.md.j2"
    letter.write_text(letter.read_text().replace("{{ salutation }}", "{{ salutation }} ({{ recipient.name }})", 1))
    assert run_cli("queue", "peace-agreement", "--to", "mid", "--to", "osce").code == 0
    assert run_cli("send", "--yes").code == 0
    by_rcpt = {
        a.rcpt_tos[0]: email.message_from_bytes(a.data, policy=email.policy.default) for a in smtp_server.accepted
    }
    mid = by_rcpt["info@mid.example"]
    assert str(mid["To"]) == "Министерство иностранных дел Российской Федерации <info@mid.example>"
    text = mid.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "(Министерство иностранных дел Российской Федерации)" in text  # recipient.name in the letter's language
    assert str(by_rcpt["office@osce.example"]["To"]) == "OSCE Programme Office in Dushanbe <office@osce.example>"

    monkeypatch.setenv("CAMPAIGN_KEY_PASSPHRASE", "organisation-pass-1")
    assert run_cli("keys", "init").code == 0
    pdf = tmp_path / "mid.pdf"
    assert run_cli("pdf", "export", "peace-agreement", "--to", "mid", "--signer", "M", "-o", str(pdf)).code == 0
    from pypdf import PdfReader

    page = " ".join((PdfReader(str(pdf)).pages[0].extract_text() or "").split())
    assert "Министерство иностранных дел Российской Федерации" in page
    assert "Смоленская-Сенная пл., д. 32/34" in page and "Smolenskaya" not in page


def test_translations_missing_for_a_language_are_warned(ws: Path) -> None:
    (ws / "recipients.yaml").write_text(REGISTRY.replace("    languages: [ru]\n", "    languages: [ru, tg]\n"))
    result = run_cli("recipients", "check")
    assert result.code == 0
    assert "mid: name has no tg version; letters in that language use the en one" in result.stderr
    listed = run_cli("recipients", "list")
    assert "Ministry of Foreign Affairs of the Russian" in listed.stdout  # lists show the English name


def test_preview_shows_the_translated_name(ws: Path) -> None:
    result = run_cli("preview", "peace-agreement", "--to", "mid")
    assert result.stdout.startswith("To: Министерство иностранных дел Российской Федерации <info@mid.example>")


# ---------------------------------------------------------------------------
# Custom fields


def test_fields_reach_templates_contact_fields_win(ws: Path) -> None:
    letter = ws / "letters" / "peace-agreement" / "ru.md.j2"
    letter.write_text(
        letter.read_text().replace(
            "{{ salutation }}",
            "{{ salutation }}\n\nИсх. к № {{ recipient.fields.reference_number }}, {{ recipient.fields.desk }}.",
            1,
        )
    )
    result = run_cli("preview", "peace-agreement", "--to", "mid")
    assert result.code == 0, result.output
    assert "Исх. к № MID-2026/17, Department of Humanitarian Cooperation." in result.stdout


def test_a_field_an_institution_lacks_fails_letters_check(ws: Path) -> None:
    letter = ws / "letters" / "peace-agreement" / "tg.md.j2"  # osce reads Tajik first; mid does not
    lines = letter.read_text().splitlines(keepends=True)
    line = next(i for i, text in enumerate(lines) if "{{ salutation }}" in text)
    lines[line] = lines[line].replace("{{ salutation }}", "{{ salutation }} {{ recipient.fields.reference_number }}")
    letter.write_text("".join(lines))
    before = tree_digest(ws)
    result = run_cli("letters", "check", "peace-agreement")
    assert result.code == 1
    expected = (
        f"letters/peace-agreement/tg.md.j2:{line + 1}: undefined: recipient.fields.reference_number: "
        "institution osce has no field 'reference_number' (its fields: none)"
    )
    assert expected in result.stderr, result.stderr
    assert "for osce" not in result.stderr  # the institution is named once
    assert "for mid" not in result.stderr  # mid has the field
    assert tree_digest(ws) == before
    guarded = letter.read_text().replace(
        "{{ recipient.fields.reference_number }}",
        "{% if recipient.fields.reference_number is defined %}{{ recipient.fields.reference_number }}{% endif %}",
    )
    letter.write_text(guarded)
    assert run_cli("letters", "check", "peace-agreement").code == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("{Reference: x}", "'Reference' is not a field name"),
        ("{items: x}", "'items' cannot be a field name"),
        ("{desk: [a, b]}", "a field holds one value (text or a number), not a list"),
        ("{desk: ''}", "is empty; leave the field out instead"),
    ],
)
def test_bad_fields_are_named(ws: Path, fields: str, message: str) -> None:
    (ws / "recipients.yaml").write_text(
        REGISTRY.replace('fields: {reference_number: "MID-2026/17", desk: Human rights}', f"fields: {fields}")
    )
    result = run_cli("recipients", "list")
    assert result.code == 1 and "recipients.yaml:16: recipients[0].fields" in result.stderr
    assert message in result.stderr


# ---------------------------------------------------------------------------
# recipients import / export


CSV_ROWS = (
    "id;name.en;name.ru;languages;tags;email;contact_name;field.mandate\n"
    "un-wgeid;UN Working Group on Enforced or Involuntary Disappearances;Рабочая группа по насильственным "
    "исчезновениям;en fr es;un special-procedures;wgeid@ohchr.example;Secretariat;disappearances\n"
    "tj-ombudsman;Human Rights Ombudsman of Tajikistan;Уполномоченный по правам человека;tg ru;tajikistan;"
    "info@ombudsman.example;;\n"
    "tj-ombudsman;;;;;press@ombudsman.example;Press office;\n"
)


def test_import_cp1251_semicolons_keeps_comments(ws: Path, tmp_path: Path) -> None:
    source = tmp_path / "excel.csv"
    source.write_bytes(CSV_ROWS.replace("\n", "\r\n").encode("cp1251"))
    result = run_cli("recipients", "import", str(source))
    assert result.code == 0, result.output
    assert "added 2 institutions (read excel.csv as Windows-1251, semicolon-separated)" in result.stdout
    text = (ws / "recipients.yaml").read_text()
    assert text.startswith(REGISTRY)  # everything before, comments included, byte for byte
    assert "# a plain name still works" in text
    listed = {r["id"]: r for r in json.loads(run_cli("recipients", "list", "--json").stdout)}
    assert listed["un-wgeid"]["name"]["ru"] == "Рабочая группа по насильственным исчезновениям"
    assert listed["un-wgeid"]["fields"] == {"mandate": "disappearances"}
    assert [c["email"] for c in listed["tj-ombudsman"]["contacts"]] == [
        "info@ombudsman.example",
        "press@ombudsman.example",
    ]
    assert listed["tj-ombudsman"]["contacts"][1]["name"] == "Press office"


@pytest.mark.parametrize(
    ("encoding", "delimiter"), [("utf-8", ","), ("utf-8-sig", ";"), ("utf-8-sig", ","), ("cp1251", ",")]
)
def test_import_detects_encoding_and_delimiter(ws: Path, tmp_path: Path, encoding: str, delimiter: str) -> None:
    import csv
    import io

    rows = [line.split(";") for line in CSV_ROWS.strip().split("\n")]
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter).writerows(rows)
    source = tmp_path / "list.csv"
    source.write_bytes(out.getvalue().encode(encoding))
    result = run_cli("recipients", "import", str(source))
    assert result.code == 0, result.output
    listed = {r["id"]: r for r in json.loads(run_cli("recipients", "list", "--json").stdout)}
    assert listed["tj-ombudsman"]["name"]["ru"] == "Уполномоченный по правам человека"


def test_import_refuses_existing_ids_unless_update(ws: Path, tmp_path: Path) -> None:
    source = tmp_path / "update.csv"
    source.write_text(
        "id,name,languages,email,contact_name,field.desk\nosce,OSCE PO Dushanbe,tg ru,new@osce.example,New,Desk 1\n"
    )
    before = tree_digest(ws)
    refused = run_cli("recipients", "import", str(source))
    assert refused.code == 1
    assert "update.csv: row 2, column id: 'osce' is already in recipients.yaml" in refused.stderr
    assert "--update" in refused.stderr
    assert tree_digest(ws) == before
    updated = run_cli("recipients", "import", str(source), "--update")
    assert updated.code == 0, updated.output
    assert "added 0 institutions, updated 1" in updated.stdout
    osce = {r["id"]: r for r in json.loads(run_cli("recipients", "list", "--json").stdout)}["osce"]
    assert osce["name"] == "OSCE PO Dushanbe" and osce["languages"] == ["tg", "ru"]
    assert [c["email"] for c in osce["contacts"]] == ["office@osce.example", "new@osce.example"]
    text = (ws / "recipients.yaml").read_text()
    assert "# Our institutions (a comment that must survive every import)." in text
    assert "name:   # one name per language" in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "id,name,languages,email\nnew-one,New,en,not-an-address\n",
            "rows.csv: row 2, column email: not a valid address",
        ),
        (
            "id,name,languages\nnew-one,New,english\n",
            "rows.csv: row 2, column languages: 'english' is not an ISO 639-1",
        ),
        ("id,name,languages,max_per_day\nnew-one,New,en,lots\n", "row 2, column max_per_day: expected a whole number"),
        (
            "id,name,langauges\nnew-one,New,en\n",
            "row 1, column C: unknown column 'langauges' (did you mean 'languages'?)",
        ),
        ("id,name,languages\nNew One,New,en\n", "row 2, column id: 'New One' is not a valid id"),
        ("id,name,languages\nnew-one,,en\n", "row 2, column name: required, but missing"),
        ("id,name.ru,languages\nnew-one,Новый,ru\nnew-one,Другой,ru\n", "row 3, column name.ru: differs from row 2"),
        ("id,name,languages,office_hours\nnew-one,N,en,weekdays 9-5\n", "row 2, column office_hours"),
        ("id,name,languages,field.Bad\nnew-one,N,en,x\n", "row 2, column field.Bad: 'Bad' is not a field name"),
    ],
)
def test_import_names_row_and_column(ws: Path, tmp_path: Path, content: str, message: str) -> None:
    source = tmp_path / "rows.csv"
    source.write_text(content)
    before = tree_digest(ws)
    result = run_cli("recipients", "import", str(source))
    assert result.code == 1, result.output
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert tree_digest(ws) == before


def test_import_reports_how_many_rows_are_bad(ws: Path, tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("id,name,languages,email\na,A,en,bad\nb,B,en,b@b.example\nc,C,xx1,c@c.example\nd,D,en,worse\n")
    result = run_cli("recipients", "import", str(source))
    assert result.code == 1
    assert "rows.csv: row 2, column email: not a valid address" in result.stderr
    assert "2 other rows also have problems (4, 5); nothing was imported" in result.stderr


def test_export_imports_again_unchanged(ws: Path, tmp_path: Path) -> None:
    exported = run_cli("recipients", "export", "--csv")
    assert exported.code == 0
    assert exported.stdout.startswith("id,name,name.en,name.ru,tags,languages,")
    assert "field.desk" in exported.stdout and "contact_field.desk" in exported.stdout
    target = tmp_path / "institutions.csv"
    written = run_cli("recipients", "export", "--csv", "-o", str(target))
    assert written.code == 0 and "wrote" in written.stdout and "2 institutions" in written.stdout
    assert target.read_bytes().startswith(b"\xef\xbb\xbf")  # spreadsheets see UTF-8
    before = json.loads(run_cli("recipients", "list", "--json").stdout)
    (ws / "recipients.yaml").write_text("recipients:\n  - id: placeholder\n    name: P\n    languages: [en]\n")
    result = run_cli("recipients", "import", str(target))
    assert result.code == 0, result.output
    after = json.loads(run_cli("recipients", "list", "--json").stdout)[1:]
    assert after == before
    again = run_cli("recipients", "export", "--csv", "-o", str(target))
    assert again.code == 1 and "already exists; nothing was written" in again.stderr


def test_import_xlsx(ws: Path, tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    for row in [line.split(";") for line in CSV_ROWS.strip().split("\n")]:
        sheet.append(row)
    sheet.append(["tj-court", "Supreme Court", "Суди Олӣ", "tg", "", "", "", ""])
    book.save(tmp_path / "list.xlsx")
    result = run_cli("recipients", "import", str(tmp_path / "list.xlsx"))
    assert result.code == 0, result.output
    assert "added 3 institutions (read list.xlsx as Excel workbook" in result.stdout
    listed = {r["id"]: r for r in json.loads(run_cli("recipients", "list", "--json").stdout)}
    assert listed["tj-court"]["name"] == {"en": "Supreme Court", "ru": "Суди Олӣ"}
    assert listed["tj-court"]["contacts"] == []


def test_shipped_registry_exports_and_imports(tmp_path: Path) -> None:
    exported = run_cli("-C", str(ROOT), "recipients", "export", "--csv")
    assert exported.code == 0
    assert "ru-mfa" in exported.stdout and "Министерство иностранных дел Российской Федерации" in exported.stdout


def test_update_changes_only_the_cells_given(ws: Path, tmp_path: Path) -> None:
    source = tmp_path / "partial.csv"
    source.write_text(
        "id,name.tg,field.desk,email,contact_name\n"
        "mid,Вазорати корҳои хориҷии Федератсияи Россия,Human rights (2),press@mid.example,Press\n"
        "mid,,,info@mid.example,Information desk\n",
        encoding="utf-8",
    )
    result = run_cli("recipients", "import", str(source), "--update")
    assert result.code == 0, result.output
    mid = {r["id"]: r for r in json.loads(run_cli("recipients", "list", "--json").stdout)}["mid"]
    assert mid["name"] == {
        "en": "Ministry of Foreign Affairs of the Russian Federation",
        "ru": "Министерство иностранных дел Российской Федерации",
        "tg": "Вазорати корҳои хориҷии Федератсияи Россия",
    }
    assert mid["languages"] == ["ru"] and mid["postal_address"]["ru"].startswith("Смоленская")
    assert mid["fields"] == {"reference_number": "MID-2026/17", "desk": "Human rights (2)"}
    contacts = {c["email"]: c for c in mid["contacts"]}
    assert contacts["info@mid.example"]["name"] == "Information desk"
    assert contacts["info@mid.example"]["fields"] == {"desk": "Department of Humanitarian Cooperation"}
    assert contacts["press@mid.example"]["name"] == "Press"
    text = (ws / "recipients.yaml").read_text()
    assert "name:   # one name per language" in text and "# a plain name still works" in text
