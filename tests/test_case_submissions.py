"""Cases and submissions, continued (tests/test_cases.py is near its size limit): what
`submit prepare --queue` reports, the language and length checks `cases check` shares with
`submit prepare`, the Human Rights Committee's authorisation, `letters check --case` scope,
and what the prepared documents look like."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import run_cli, set_smtp_port, tree_digest
from tests.support.smtp import Script, ScriptedServer
from tests.test_cases import line_of, ok, pdf_text, real_case, squash, upr_case, write_case
from tests.test_cases import ws as ws  # the fixture: a workspace with the shipped registry

# ---------------------------------------------------------------------------
# submit prepare --queue says what happened, with the words `campaign queue` uses


def message_count(ws: Path) -> int:
    con = sqlite3.connect(ws / ".campaign" / "state.db")
    try:
        return int(con.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        con.close()


def test_prepare_queue_after_the_letter_was_sent_says_so_and_fails(ws: Path) -> None:
    path = write_case(ws, "c1", real_case())
    with ScriptedServer(Script()) as server:
        set_smtp_port(ws, server.port)
        first = ok("submit", "prepare", "--case", "c1", "--to", "un-wgeid", "--queue")
        assert "queue: campaign case-submission, un-wgeid <hrc-wg-eid@un.org>: 1 new, 0 already queued" in first
        ok("send", "--yes")
        # The same document again, then a changed one: neither is queued, and neither says "changed-sent".
        for text in (real_case(), real_case().replace("two neighbours", "three neighbours")):
            path.write_text(text)
            result = run_cli("submit", "prepare", "--case", "c1", "--to", "un-wgeid", "--queue", "--force")
            assert result.code == 1, result.output
            assert "0 new, 0 already queued, 1 already sent" in result.stdout
            assert "send it with" not in result.output and "changed-sent" not in result.output
            errors = [line for line in result.stderr.splitlines() if line.strip()]
            assert errors == [
                "error: nothing was queued: the submission to un-wgeid in campaign case-submission was already "
                "sent: for a follow-up submission add --campaign NEW (e.g. --campaign case-submission-2)"
            ]
            assert message_count(ws) == 1
        # What the error says to do works.
        again = ok(
            "submit", "prepare", "--case", "c1", "--to", "un-wgeid", "--queue", "--force",
            "--campaign", "case-submission-2",
        )  # fmt: skip
        assert "1 new, 0 already queued" in again and "send it with `campaign send`" in again
        ok("send", "--yes")
        assert len(server.accepted) == 2
    # `campaign queue` reports a sent letter the same way (it said "already queued").
    summary = ok("queue", "case-submission", "--to", "un-wgeid", "--case", "c1", "--campaign", "case-submission-2")
    assert "0 new, 0 already queued, 1 already sent" in summary


def test_prepare_queue_with_a_changed_unsent_letter_needs_update(ws: Path) -> None:
    path = write_case(ws, "c1", real_case())
    ok("submit", "prepare", "--case", "c1", "--to", "un-wgeid", "--queue")
    same = ok("submit", "prepare", "--case", "c1", "--to", "un-wgeid", "--queue", "--force")
    assert "0 new, 1 already queued" in same  # queued, waiting: nothing to do
    path.write_text(real_case().replace("two neighbours", "three neighbours"))
    before = tree_digest(ws / ".campaign" / "cases")
    result = run_cli("submit", "prepare", "--case", "c1", "--to", "un-wgeid", "--queue", "--force")
    assert result.code == 1
    assert "0 new, 0 already queued, 1 changed (not updated)" in result.stdout
    assert "waits to be sent with a different text: add --update to replace it" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1
    updated = ok("submit", "prepare", "--case", "c1", "--to", "un-wgeid", "--queue", "--force", "--update")
    assert "0 new, 0 already queued, 1 updated" in updated
    assert message_count(ws) == 1 and tree_digest(ws / ".campaign" / "cases") == before


# ---------------------------------------------------------------------------
# The Human Rights Committee needs the victim's authorisation from anyone filing for them


def hrc_case(role: str | None, *, authorisation: bool = False) -> str:
    text = real_case().replace("bodies: [un-wgeid, un-wgad]", "bodies: [treaty-body]")
    text = text.replace("to: [un-wgeid, un-wgad]", "to: [un-human-rights-committee]")
    text = text.replace("  role: organisation\n", f"  role: {role}\n" if role else "")
    if authorisation:
        text = text.replace(
            "attachments: []",
            "attachments:\n  - path: files/authorisation.pdf\n    kind: authorisation",
        )
    return text


@pytest.mark.parametrize("role", ["organisation", "relative", None])
def test_committee_requires_authorisation_when_filed_for_someone_else(ws: Path, role: str | None) -> None:
    text = hrc_case(role)
    write_case(ws, "c1", text)
    result = run_cli("cases", "check", "c1")
    assert result.code == 1
    missing = [line for line in result.stdout.splitlines() if line.startswith("missing")]
    assert len(missing) == 1, result.stdout
    where = f".campaign/cases/c1.yaml:{line_of(text, 'attachments: []')}"
    assert f"{where}: un-human-rights-committee: missing authorisation: the victim's signed authorisation" in missing[0]
    assert ("source.role is " + role if role else "write source.role: victim") in missing[0]
    # submit prepare: in the checklist and as a placeholder in the PDF; --queue refuses.
    output = ok("submit", "prepare", "--case", "c1", "--to", "un-human-rights-committee", "--format", "sheet")
    assert "missing authorisation" in output
    sheet = (ws / ".campaign" / "submissions" / "c1-un-human-rights-committee.sheet.txt").read_text()
    assert "[missing: the victim's signed authorisation" in sheet


def test_committee_takes_the_victims_own_complaint_without_authorisation(ws: Path) -> None:
    write_case(ws, "self", hrc_case("victim"))
    (ws / "files").mkdir()
    (ws / "files" / "authorisation.pdf").write_bytes(b"%PDF-1.4 scan")
    write_case(ws, "attached", hrc_case("organisation", authorisation=True))
    result = run_cli("cases", "check", "self", "attached")
    assert result.code == 0, result.output
    assert "authorisation" not in result.stdout
    result = run_cli("submit", "prepare", "--case", "self", "--to", "un-human-rights-committee", "--format", "sheet")
    assert result.code == 0 and "authorisation" not in result.output


def test_committee_queue_refuses_without_authorisation(ws: Path) -> None:
    write_case(ws, "c1", hrc_case("organisation"))
    before = tree_digest(ws)
    result = run_cli(
        "submit", "prepare", "--case", "c1", "--to", "un-human-rights-committee", "--format", "sheet",
        "-o", str(ws / "sheet.txt"), "--queue",
    )  # fmt: skip
    assert result.code == 1
    assert "case c1 lacks authorisation for Human Rights Committee: nothing was queued" in result.stderr
    assert not (ws / ".campaign" / "state.db").exists()
    assert {k for k in tree_digest(ws) if k not in before} == {"sheet.txt"}


# ---------------------------------------------------------------------------
# cases check warns about what submit prepare would refuse: language and length


def test_check_warns_about_a_language_the_body_does_not_take(ws: Path) -> None:
    import shutil

    text = real_case()
    write_case(ws, "c1", text)
    folder = ws / "letters" / "ru-only"
    folder.mkdir()
    shutil.copy2(ws / "letters" / "case-submission" / "ru.md.j2", folder / "ru.md.j2")
    result = run_cli("cases", "check", "c1", "--letter", "ru-only")
    assert result.code == 0, result.output  # a warning: nothing is missing
    where = f".campaign/cases/c1.yaml:{line_of(text, 'to: [un-wgeid, un-wgad]')}"
    for body, mandate in (("un-wgeid", "WGEID"), ("un-wgad", "WGAD")):
        expected = f"warning {where}: {body}: letters/ru-only/ is in ru only; {mandate} takes submissions in en, fr, es"
        assert expected in result.stdout, result.stdout
    # The same words as submit prepare's refusal: one check, not two.
    refused = run_cli("submit", "prepare", "--case", "c1", "--to", "un-wgad", "--letter", "ru-only")
    assert "letters/ru-only/ is in ru only; WGAD takes submissions in en, fr, es" in refused.stderr
    assert "takes submissions" not in ok("cases", "check", "c1")  # the shipped letter is in English too


def test_check_warns_over_the_page_limit(ws: Path) -> None:
    pytest.importorskip("weasyprint")
    text = upr_case(4000).replace("to: [un-wgeid, un-wgad]", "to: [un-upr]")
    write_case(ws, "long", text)
    write_case(ws, "short", upr_case(300).replace("to: [un-wgeid, un-wgad]", "to: [un-upr]"))
    result = run_cli("cases", "check", "--json")
    assert result.code == 0, result.output
    findings = [f for f in json.loads(result.stdout) if "at most 5 pages" in f["message"]]
    assert [(f["case"], f["body"], f["level"]) for f in findings] == [("long", "un-upr", "warning")]
    assert findings[0]["where"] == f".campaign/cases/long.yaml:{line_of(text, '  circumstances: |')}"
    assert findings[0]["message"].startswith("UPR takes at most 5 pages; this submission is about")
    assert "an estimate" in findings[0]["message"]
    refused = run_cli("submit", "prepare", "--case", "long", "--to", "un-upr", "--session", "May 2027")
    assert refused.code == 1 and findings[0]["message"].split(":")[0] in refused.stderr


# ---------------------------------------------------------------------------
# letters check --case: only the bodies the case is addressed to, each problem once


def test_letters_check_with_a_case_renders_for_its_bodies_and_says_each_problem_once(ws: Path) -> None:
    write_case(ws, "c1", real_case())
    template = ws / "letters" / "case-submission" / "en.md.j2"
    template.write_text(template.read_text().replace("{{ salutation }}", "{{ salutation }} {{ case.person.photo }}"))
    result = run_cli("letters", "check", "case-submission", "--case", "c1")
    assert result.code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: letters/case-submission/en.md.j2:6: undefined: case c1 has no person.photo (.campaign/cases/c1.yaml) "
        "for un-wgeid, un-wgad"
    ]
    assert "1 error" in result.stdout
    result = run_cli("letters", "check", "case-submission", "--case", "c1", "--to", "un-upr")
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        errors[0].replace("un-wgeid, un-wgad", "un-upr")
    ]
    many = ["un-wgeid", "un-wgad", "un-sr-torture", "un-sr-human-rights-defenders", "un-upr", "eu-eeas"]
    result = run_cli("letters", "check", "case-submission", "--case", "c1", *(a for b in many for a in ("--to", b)))
    assert "for un-wgeid, un-wgad, un-sr-torture and 3 more institutions" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def test_letters_check_with_a_case_addressed_to_nobody_asks_for_to(ws: Path) -> None:
    write_case(ws, "c1", real_case().replace("to: [un-wgeid, un-wgad]", "to: []"))
    result = run_cli("letters", "check", "case-submission", "--case", "c1")
    assert result.code == 2
    expected = "case c1 is addressed to no institution: fill in to: in .campaign/cases/c1.yaml, or name one with --to"
    assert expected in result.stderr
    ok("letters", "check", "case-submission", "--case", "c1", "--to", "un-wgad")


# ---------------------------------------------------------------------------
# What the documents look like


def test_the_example_docx_says_fictional_at_the_top_and_a_real_one_does_not(ws: Path) -> None:
    import docx

    ok("cases", "new", "--example")
    write_case(ws, "c1", real_case())
    ok("submit", "prepare", "--case", "example", "--to", "un-wgeid")
    ok("submit", "prepare", "--case", "c1", "--to", "un-wgeid")
    first = docx.Document(str(ws / ".campaign" / "submissions" / "example-un-wgeid.docx")).paragraphs[0]
    assert first.text.startswith("FICTIONAL EXAMPLE: this person, these events and this organisation do not exist")
    assert all(run.bold for run in first.runs)
    real = docx.Document(str(ws / ".campaign" / "submissions" / "c1-un-wgeid.docx")).paragraphs
    assert real[0].style.name == "Title" and "FICTIONAL" not in "\n".join(p.text for p in real)


def test_what_stays_confidential_is_in_the_source_section(ws: Path) -> None:
    pytest.importorskip("weasyprint")
    write_case(ws, "c1", real_case().replace("bodies: [un-wgeid, un-wgad]", "bodies: [treaty-body]"))
    ok("submit", "prepare", "--case", "c1", "--to", "un-human-rights-committee")
    text = squash(pdf_text(ws / ".campaign" / "submissions" / "c1-un-human-rights-committee.pdf"))
    source, consent = text.index("6. The source (confidential)"), text.index("7. Consent")
    # (the narrow label column hyphenates: "con- fidential", "per- son")
    assert source < text.index("Information to be kept con") < consent
    assert text.index("8. Attachments") < text.index("Authorisation by the per") < text.index("[missing: the victim")
