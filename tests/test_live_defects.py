"""Issue 17, "Running a live campaign": the defects a new user hit, each through the real CLI.

One test (or a few) per numbered defect; the number is in the test's name. The bad-input
corpus (tests/bad_inputs/250-299) holds the one-line refusals.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli, tree_digest
from tests.support.smtp import Script, ScriptedServer

# ---------------------------------------------------------------------------
# 1. An unreadable or directory recipients.yaml or letter template is one line


def _one_line_error(result: object, fragment: str) -> None:
    code, stderr = result.code, result.stderr  # type: ignore[attr-defined]
    assert code == 1, result
    assert "Traceback" not in result.output  # type: ignore[attr-defined]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:") and fragment in lines[0], stderr
    assert len(lines) <= 2


def test_1_registry_that_is_a_folder_is_one_line(workspace: Path) -> None:
    (workspace / "recipients.yaml").unlink()
    (workspace / "recipients.yaml").mkdir()
    before = tree_digest(workspace)
    for args in (["recipients", "list"], ["letters", "check"], ["queue", "peace-agreement", "--all"]):
        _one_line_error(run_cli(*args), "recipients.yaml: cannot read: Is a directory")
    assert tree_digest(workspace) == before


def test_1_template_or_partial_that_is_a_folder_is_one_line(workspace: Path) -> None:
    template = workspace / "letters" / "peace-agreement" / "en.md.j2"
    template.unlink()
    template.mkdir()
    _one_line_error(run_cli("letters", "check"), "letters/peace-agreement/en.md.j2: cannot read: Is a directory")
    shutil.rmtree(template)
    shutil.copy2(ROOT / "letters" / "peace-agreement" / "en.md.j2", template)
    partial = workspace / "letters" / "_partials" / "closing.en.md.j2"
    partial.unlink()
    partial.mkdir()
    result = run_cli("preview", "peace-agreement", "--to", "ohchr")
    assert result.code == 1 and "Traceback" not in result.output
    assert "_partials/closing.en.md.j2" in result.stderr


def _unreadable_run(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real program without the right to read others' files. Root reads everything,
    so as root the capabilities that allow it are dropped (util-linux setpriv)."""
    command = [sys.executable, "-m", "campaign", *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        command = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *command]
    env = {**os.environ, "CAMPAIGN_WORKSPACE": str(workspace), "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.mark.parametrize(
    ("path", "args", "fragment"),
    [
        ("recipients.yaml", ("recipients", "list"), "recipients.yaml: cannot read: Permission denied"),
        (
            "letters/peace-agreement/ru.md.j2",
            ("letters", "check"),
            "letters/peace-agreement/ru.md.j2: cannot read: Permission denied",
        ),
        (
            "letters/_partials/closing.ru.md.j2",
            ("preview", "peace-agreement", "--to", "mid"),
            "letters/_partials/closing.ru.md.j2: cannot read: Permission denied",
        ),
    ],
)
def test_1_unreadable_file_is_one_line(workspace: Path, path: str, args: tuple[str, ...], fragment: str) -> None:
    (workspace / path).chmod(0)
    try:
        result = _unreadable_run(workspace, *args)
    finally:
        (workspace / path).chmod(0o644)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and fragment in result.stderr, result.stderr


# ---------------------------------------------------------------------------
# 3. Replies with raw UTF-8 headers (RFC 6532)


def test_3_raw_utf8_reply_headers_are_readable(smtp_server: ScriptedServer, workspace: Path, tmp_path: Path) -> None:
    assert run_cli("queue", "peace-agreement", "--to", "mid").code == 0
    assert run_cli("send", "--yes").code == 0
    sent = json.loads(run_cli("log", "--json").stdout)[0]
    raw = (
        "From: Иван Петров <info@mid.example>\r\n"
        "To: letters@campaign.example\r\n"
        "Subject: Ответ на ваше письмо =?utf-8?b?KNCc0JjQlCk=?=\r\n"
        "Date: Mon, 30 Nov 2026 10:00:00 +0300\r\n"
        "Message-ID: <answer-1@mid.example>\r\n"
        f"In-Reply-To: {sent['message_id']}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "Ваше письмо получено.\r\n"
    ).encode()
    (tmp_path / "answer.eml").write_bytes(raw)
    assert run_cli("receipts", "import", str(tmp_path / "answer.eml")).code == 0
    listed = json.loads(run_cli("replies", "--json").stdout)
    assert listed[0]["sender"] == "Иван Петров <info@mid.example>"
    assert listed[0]["reply_subject"] == "Ответ на ваше письмо (МИД)"
    table = run_cli("replies").stdout
    assert "Ответ на ваше письмо (МИД)" in table and "Иван Петров" in table
    assert "\ufffd" not in table + json.dumps(listed, ensure_ascii=False)


# ---------------------------------------------------------------------------
# 4. pdf batch --all


def test_4_pdf_batch_takes_all(workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_KEY_PASSPHRASE", "organisation-pass-1")
    assert run_cli("keys", "init").code == 0
    (tmp_path / "supporters.csv").write_text("name,city\nMaria Ivanova,Berlin\n")
    out = tmp_path / "signed"
    result = run_cli(
        "pdf", "batch", "peace-agreement", "--all", "--supporters", str(tmp_path / "supporters.csv"),
        "--out-dir", str(out), "--processes", "1",
    )  # fmt: skip
    assert result.code == 0, result.output
    assert len(list(out.glob("*.pdf"))) == 6  # every institution of the test registry
    assert "wrote 6 signed letters" in result.stdout
    neither = run_cli("pdf", "batch", "peace-agreement", "--supporters", "x.csv", "--out-dir", str(out))
    assert neither.code == 2 and "--all" in neither.stderr


# ---------------------------------------------------------------------------
# 5. pdf verify checks every file; outside a workspace it says to pass --trust


def test_5_pdf_verify_reports_every_file(workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_KEY_PASSPHRASE", "organisation-pass-1")
    assert run_cli("keys", "init").code == 0
    good = tmp_path / "good.pdf"
    result = run_cli("pdf", "export", "peace-agreement", "--to", "ohchr", "--signer", "Maria Ivanova", "-o", str(good))
    assert result.code == 0, result.output
    (tmp_path / "word.pdf").write_text("not a pdf at all")
    result = run_cli("pdf", "verify", str(tmp_path / "word.pdf"), str(tmp_path / "missing.pdf"), str(good))
    assert result.code == 1
    assert "Traceback" not in result.output
    assert "word.pdf: not a PDF file" in result.stderr
    assert "missing.pdf: cannot read: No such file or directory" in result.stderr
    assert f"OK  {good}" in result.stdout  # the good file after two bad ones was still checked
    assert "2 of 3 files did not verify" in result.stdout
    all_good = run_cli("pdf", "verify", str(good), str(good))
    assert all_good.code == 0 and all_good.stdout.count("OK  ") == 2

    monkeypatch.delenv("CAMPAIGN_WORKSPACE")
    monkeypatch.chdir(tmp_path)
    outside = run_cli("pdf", "verify", str(good))
    assert outside.code == 1
    assert "not a campaign workspace" in outside.stderr and "pass --trust" in outside.stderr


# ---------------------------------------------------------------------------
# 6. Run-together sentences, broken plurals, internal wording


def test_6_server_reply_and_hint_do_not_run_together(workspace: Path) -> None:
    with ScriptedServer(Script(rcpt=["550 5.1.1 <registry@ohchr.example>: User unknown"])) as server:
        from tests.conftest import set_smtp_port

        set_smtp_port(workspace, server.port)
        assert run_cli("queue", "peace-agreement", "--to", "ohchr").code == 0
        result = run_cli("send", "--yes")
    assert result.code == 3, result.output
    line = next(line for line in result.stdout.splitlines() if line.startswith("failed:"))
    assert "User unknown; the server refused the address" in line, line


def test_6_counts_agree_with_their_nouns(workspace: Path) -> None:
    (workspace / "recipients.yaml").write_text(
        "recipients:\n  - id: solo\n    name: Solo\n    languages: [en]\n    contacts: [{email: a@solo.example}]\n"
    )
    listed = run_cli("recipients", "list")
    assert "1 institution, 0 postal only" in listed.stdout
    checked = run_cli("recipients", "check")
    assert "1 institution valid, 2 warnings" in checked.stdout
    with ScriptedServer(Script(data_end=["554 5.7.1 policy"])) as server:
        from tests.conftest import set_smtp_port

        set_smtp_port(workspace, server.port)
        assert run_cli("queue", "peace-agreement", "--all").code == 0
        assert run_cli("send", "--yes").code == 3
    released = run_cli("release", "1")
    assert released.code == 0, released.output
    assert "released 1 letter: it goes with the next `campaign send`" in released.stdout


COUNTED_NOUNS = (
    "letters", "institutions", "warnings", "errors", "events", "messages", "entries", "replies",
    "renderings", "follow-ups", "files", "reports", "rows", "contacts", "signed letters",
)  # fmt: skip


def test_6_no_count_is_glued_to_a_plural_noun_in_the_source() -> None:
    """The mechanism: counts go through campaign.wording.plural, never f"{n} letters"."""
    offenders = []
    for path in sorted((ROOT / "campaign").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.JoinedStr):
                continue
            parts = node.values
            for before, after in zip(parts, parts[1:], strict=False):
                if isinstance(before, ast.FormattedValue) and isinstance(after, ast.Constant):
                    text = str(after.value)
                    expr = ast.unparse(before.value)
                    counted = re.match(r"^(len\(|n$|count|.*\.(count|letters|institutions|events|recorded)\b)", expr)
                    if counted and any(text.startswith(f" {noun}") for noun in COUNTED_NOUNS):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {{{expr}}}{text[:20]}")
    assert not offenders, "use campaign.wording.plural:\n" + "\n".join(offenders)


def test_6_plural_helper() -> None:
    from campaign.wording import clauses, plural

    assert plural(1, "letter") == "1 letter" and plural(0, "letter") == "0 letters"
    assert plural(2, "reply") == "2 replies" and plural(2, "automatic reply") == "2 automatic replies"
    assert plural(3, "address") == "3 addresses" and plural(2, "day") == "2 days"
    assert plural(1200, "event") == "1,200 events"
    assert plural(2, "letter in the queue") == "2 letters in the queue"
    assert clauses("550 5.1.1 User unknown.", None, "", "the address was refused") == (
        "550 5.1.1 User unknown; the address was refused"
    )


@pytest.mark.parametrize(
    ("registry", "expected", "internal"),
    [
        ("max_per_day: lots", "max_per_day: expected a whole number, got the text 'lots'", "Input should be"),
        ("max_per_day: 0", "max_per_day: must be at least 1, not 0", "greater than or equal"),
        ("checked: yesterday", "checked: expected a date written YYYY-MM-DD", "valid date or datetime"),
        ("tags: un", "tags: expected a list, e.g. [a, b], got the text 'un'", "valid list"),
        ("name: {EN: Solo}", "'EN' is not an ISO 639-1 language code", "valid string"),
        ("fields: {desk: [a, b]}", "a field holds one value (text or a number), not a list", "Value error"),
    ],
)
def test_6_registry_errors_are_in_our_words(workspace: Path, registry: str, expected: str, internal: str) -> None:
    base = "recipients:\n  - id: solo\n    name: Solo\n    languages: [en]\n"
    text = base.replace("    name: Solo\n", "") if registry.startswith("name:") else base
    (workspace / "recipients.yaml").write_text(text + f"    {registry}\n")
    result = run_cli("recipients", "list")
    assert result.code == 1
    assert expected in result.stderr, result.stderr
    assert internal not in result.stderr and "Value error" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["send", "--limit", "0"], "Invalid value for '--limit': must be at least 1, not 0"),
        (["send", "--rate", "fast"], "Invalid value for '--rate': expected a number, got the text 'fast'"),
        (["release", "abc"], "Invalid value for 'ID...': expected a whole number, got the text 'abc'"),
    ],
)
def test_6_option_values_are_checked_in_our_words(workspace: Path, args: list[str], expected: str) -> None:
    result = run_cli(*args)
    assert result.code == 2
    assert expected in result.stderr and "Input should be" not in result.stderr


def test_6_config_errors_are_in_our_words(workspace: Path) -> None:
    config = workspace / "campaign.toml"
    config.write_text(config.read_text().replace("port = 2525", 'port = "many"'))
    result = run_cli("status")
    assert result.code == 1
    assert "smtp.port: expected a whole number, got the text 'many'" in result.stderr


def test_6_a_misspelt_template_field_is_named_with_a_suggestion(workspace: Path) -> None:
    letter = workspace / "letters" / "peace-agreement" / "en.md.j2"
    letter.write_text(letter.read_text().replace("{{ salutation }}", "{{ salutation }} {{ recipient.nme }}", 1))
    result = run_cli("letters", "check", "peace-agreement")
    assert result.code == 1
    assert "recipient has no field 'nme' (did you mean 'name'?)" in result.stderr
    assert "campaign.models" not in result.stderr and "object' has no attribute" not in result.stderr


# ---------------------------------------------------------------------------
# 7. Help rendering


def _all_help_paths() -> list[tuple[str, ...]]:
    from tests.test_help import ALL

    return [(), *(path for path, _ in ALL)]


def test_7_no_python_types_in_any_help() -> None:
    for path in _all_help_paths():
        result = run_cli(*path, "--help")
        assert result.code == 0, path
        text = result.stdout
        for python_type in ("<bool>", "<list[", "<int", "<str>", "<float", "<path>", "[x>=", "[x<=", "range>"):
            assert python_type not in text, f"campaign {' '.join(path)} --help shows {python_type}:\n{text}"
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert "{" not in usage, usage


def test_7_paragraphs_are_reflowed_and_examples_kept() -> None:
    text = run_cli("--help").stdout
    lines = [line.strip() for line in text.splitlines()]
    # "letters/" ended a hand-wrapped source line; reflowed, the sentence goes on after it
    assert any("letters/ (Jinja2" in line for line in lines), text
    release = run_cli("release", "--help").stdout
    assert "    campaign release 12" in release  # the example keeps its indentation
    assert "Usage: campaign release [OPTIONS] ID..." in release


def test_7_reflow_convention() -> None:
    from campaign.cli.helpformat import reflow

    doc = """Summary line.

    A paragraph wrapped
    by hand in the source.

    Example:

        campaign queue x --to y
    """
    assert reflow(doc).startswith("Summary line.\n\nA paragraph wrapped by hand in the source.\n\nExample:\n\n")
    assert "\n    campaign queue x --to y" in reflow(doc)


def test_7_no_command_prints_help_and_exits_2() -> None:
    result = run_cli()
    assert result.code == 2
    assert result.stdout.count("Usage: campaign") == 1  # printed once, not twice
    group = run_cli("recipients")
    assert group.code == 2 and "Usage: campaign recipients" in group.stdout


# ---------------------------------------------------------------------------
# 8. campaign log fits 80 columns; --wide shows everything


def test_8_log_fits_80_columns_and_wide_shows_all(smtp_server: ScriptedServer, workspace: Path) -> None:
    smtp_server.script.rcpt = ["451 4.7.1 Greylisted for a very long time, please come back much later today"]
    assert run_cli("queue", "peace-agreement", "--all").code == 0
    assert run_cli("send", "--yes").code == 0
    result = run_cli("log")
    assert result.code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 2 + 5  # header, rule, one line per letter: nothing folded
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    assert "…" in result.stdout  # the long reply is cut, not broken over lines
    assert "<" not in result.stdout  # no Message-ID in the compact view
    wide = run_cli("log", "--wide").stdout
    assert "Message-ID" in wide and "tries" in wide and "Greylisted for a very long time" in wide
    assert "registry@ohchr.example" in wide


# ---------------------------------------------------------------------------
# 9. The plain-text part is clean text, rendered from the Markdown tree


def test_9_text_part_has_no_markdown_markers(smtp_server: ScriptedServer, workspace: Path) -> None:
    import email
    import email.policy

    letter = workspace / "letters" / "peace-agreement" / "en.md.j2"
    letter.write_text(
        letter.read_text().replace(
            "{{ salutation }}",
            "{{ salutation }}\n\nTo the **OSCE Office for Democratic Institutions** and _its_ "
            "[Director](https://osce.example/odihr):\n\n- first point\n- second point\n\nOffice 1\\\nStreet 2",
            1,
        )
    )
    assert run_cli("queue", "peace-agreement", "--to", "ohchr").code == 0
    assert run_cli("send", "--yes").code == 0
    msg = email.message_from_bytes(smtp_server.accepted[0].data, policy=email.policy.default)
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "To the OSCE Office for Democratic Institutions and its Director (https://osce.example/odihr):" in text
    assert "- first point\n- second point" in text
    assert "Office 1\nStreet 2" in text
    for marker in ("**", "_its_", "](", "\\\n"):
        assert marker not in text, marker
    assert "<strong>OSCE Office for Democratic Institutions</strong>" in html


# ---------------------------------------------------------------------------
# 10. preview --format eml shows the queued bytes, or says it is a preview


def test_10_preview_eml_is_the_queued_letter_or_says_it_is_not(smtp_server: ScriptedServer, workspace: Path) -> None:
    fresh = run_cli("preview", "peace-agreement", "--to", "ohchr", "--format", "eml")
    assert fresh.code == 0
    assert "note: a preview: nothing is queued" in fresh.stderr
    assert "Date:" not in fresh.stdout

    assert run_cli("queue", "peace-agreement", "--to", "ohchr").code == 0
    queued = run_cli("preview", "peace-agreement", "--to", "ohchr", "--format", "eml")
    assert "the bytes of queued message 1" in queued.stderr and "Date is added" in queued.stderr
    again = run_cli("preview", "peace-agreement", "--to", "ohchr", "--format", "eml")
    assert again.stdout == queued.stdout  # the same Message-ID and boundary every time

    assert run_cli("send", "--yes").code == 0
    sent = run_cli("preview", "peace-agreement", "--to", "ohchr", "--format", "eml")
    wire = smtp_server.accepted[0].data.replace(b"\r\n", b"\n").decode()
    assert sent.stdout.replace("\r\n", "\n") == wire  # exactly what the institution got, Date included
    assert sent.stdout.startswith("Date: ")


# ---------------------------------------------------------------------------
# 11. The PDF: the whole return address, the Tajik date, the stamp's issuer and fingerprint


def _pdf_text(path: Path) -> str:
    """Page text (pypdf) plus, where poppler is installed, the stamp's appearance text."""
    import unicodedata

    from pypdf import PdfReader

    text = "\n".join(page.extract_text() or "" for page in PdfReader(str(path)).pages)
    if shutil.which("pdftotext"):
        done = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, check=True)
        text += "\n" + done.stdout.decode()
    return unicodedata.normalize("NFC", text)


@pytest.fixture
def keyed(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CAMPAIGN_KEY_PASSPHRASE", "organisation-pass-1")
    config = workspace / "campaign.toml"
    config.write_text(
        config.read_text().replace(
            'reply_to = "office@campaign.example"\n',
            'reply_to = "office@campaign.example"\naddress = """\nExample Street 1\n10115 Berlin\nGermany"""\n',
        )
        + '\n[pdf]\ncity = "Berlin"\n'
    )
    result = run_cli("keys", "init")
    assert result.code == 0, result.output
    return workspace


def test_11_pdf_return_address_date_and_stamp(keyed: Path, tmp_path: Path) -> None:
    from campaign.pdf import root_fingerprint

    out = tmp_path / "tg.pdf"
    result = run_cli(
        "pdf", "export", "peace-agreement", "--to", "tj-embassy", "--signer", "Ҷамшед Қодиров", "-o", str(out)
    )
    assert result.code == 0, result.output
    text = _pdf_text(out)
    flat = " ".join(text.split())
    # the return-address line is whole (it used to end in "10115 Ber…")
    assert "Civic Platform (test) · Example Street 1 · 10115 Berlin · Germany" in flat
    assert "Ber…" not in flat
    # the Tajik date: no leading zero, the month in lower case with its izofat
    assert re.search(
        r"\b[1-9]\d? (январ|феврал|март|апрел|май|июн|июл|август|сентябр|октябр|ноябр|декабр)и 20\d\d\b", text
    )
    assert not re.search(r"\b0\d (Январ|Феврал|Март|Апрел|Май|Июн|Июл|Август|Сентябр|Октябр|Ноябр|Декабр)\b", text)
    if shutil.which("pdftotext"):
        fingerprint = root_fingerprint(keyed / ".campaign" / "keys").split(":")
        assert "Сертификат: Civic Platform (test) Root" in flat
        assert f"SHA-256: {':'.join(fingerprint[:4])} … {':'.join(fingerprint[-4:])}" in flat


def test_11_tajik_and_russian_dates() -> None:
    from datetime import date

    from campaign.render import format_date

    assert format_date(date(2026, 12, 6), "tg") == "6 декабри 2026"
    assert format_date(date(2026, 5, 1), "tg") == "1 майи 2026"
    assert " ".join(format_date(date(2026, 12, 6), "ru").replace("\u202f", " ").split()) == "6 декабря 2026 г."


# ---------------------------------------------------------------------------
# 12. [pdf] city by default; one voice for the e-mail and its PDF; the root certificate's name


def test_12_pdf_city_from_settings(keyed: Path, tmp_path: Path) -> None:
    out = tmp_path / "en.pdf"
    result = run_cli("pdf", "export", "peace-agreement", "--to", "ohchr", "--signer", "Maria Ivanova", "-o", str(out))
    assert result.code == 0, result.output
    assert re.search(r"Maria Ivanova\s*\n\s*Berlin", _pdf_text(out))
    other = tmp_path / "other.pdf"
    flag = ("--city", "Vienna")
    assert (
        run_cli("pdf", "export", "peace-agreement", "--to", "ohchr", "--signer", "M", *flag, "-o", str(other)).code == 0
    )
    assert "Vienna" in _pdf_text(other)


def test_12_email_and_attached_pdf_speak_with_one_voice(keyed: Path, tmp_path: Path) -> None:
    import email
    import email.policy

    from tests.conftest import set_smtp_port

    config = keyed / "campaign.toml"
    config.write_text(config.read_text() + "\n[letters]\nattach_pdf = true\n")
    assert run_cli("queue", "peace-agreement", "--to", "ohchr").code == 0
    with ScriptedServer(Script()) as server:
        set_smtp_port(keyed, server.port)
        assert run_cli("send", "--yes").code == 0
        raw = server.accepted[0].data
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    attached = tmp_path / "attached.pdf"
    attached.write_bytes(next(msg.iter_attachments()).get_content())
    pdf_text = " ".join(_pdf_text(attached).split())
    assert "We are writing on behalf of" in body
    assert "We are writing on behalf of" in pdf_text and "I am writing" not in pdf_text
    # a supporter's own PDF speaks in the first person
    mine = tmp_path / "mine.pdf"
    assert run_cli("pdf", "export", "peace-agreement", "--to", "ohchr", "--signer", "M", "-o", str(mine)).code == 0
    assert "I am writing in support of the appeal" in " ".join(_pdf_text(mine).split())
    # a letter may fix its voice for every medium
    letter = keyed / "letters" / "peace-agreement" / "en.md.j2"
    letter.write_text(letter.read_text().replace("---\n{% set", "voice: we\n---\n{% set", 1))
    fixed = tmp_path / "fixed.pdf"
    assert run_cli("pdf", "export", "peace-agreement", "--to", "ohchr", "--signer", "M", "-o", str(fixed)).code == 0
    assert "We are writing on behalf of" in " ".join(_pdf_text(fixed).split())


def test_12_root_certificate_has_the_readme_name(keyed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text()
    assert "--trust organisation-root.pem" in readme and "campaign keys export-root" in readme
    public = keyed / "organisation-root.pem"
    assert public.is_file() and oct(public.stat().st_mode & 0o777) == "0o644"
    assert b"BEGIN CERTIFICATE" in public.read_bytes() and b"PRIVATE" not in public.read_bytes()
    exported = tmp_path / "for-ohchr.pem"
    result = run_cli("keys", "export-root", "-o", str(exported))
    assert result.code == 0 and "fingerprint" in result.stdout
    assert exported.read_bytes() == public.read_bytes()
    letter = tmp_path / "letter.pdf"
    assert run_cli("pdf", "export", "peace-agreement", "--to", "ohchr", "--signer", "M", "-o", str(letter)).code == 0
    monkeypatch.delenv("CAMPAIGN_WORKSPACE")
    monkeypatch.chdir(tmp_path)
    checked = run_cli("pdf", "verify", str(letter), "--trust", str(exported))
    assert checked.code == 0 and "trusted (certificate from the organisation you trust): yes" in checked.stdout
    again = run_cli("-C", str(keyed), "keys", "export-root", "-o", str(tmp_path / "letter.pdf"))
    assert again.code == 1 and "already exists; nothing was written" in again.stderr


# ---------------------------------------------------------------------------
# 14, 15. The demo: Russian and Tajik letters, a signed PDF, a closing hint that works as shown


def _demo_workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "clone"
    ws.mkdir()
    shutil.copytree(ROOT / "letters", ws / "letters")
    shutil.copy2(ROOT / "recipients.yaml", ws / "recipients.yaml")
    shutil.copy2(ROOT / "campaign.toml", ws / "campaign.toml")
    return ws


@pytest.mark.slow
def test_14_15_demo_sends_russian_tajik_and_a_signed_pdf_and_its_hint_works(tmp_path: Path) -> None:
    from campaign.api.demo import pdf_unavailable

    ws = _demo_workspace(tmp_path)
    program = ROOT / ".venv" / "bin" / "campaign"
    if not program.exists():
        pytest.skip("the console script is installed by `make` in .venv/bin")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_")}
    env["PATH"] = "/usr/bin:/bin"  # as on a fresh clone: .venv/bin is not on PATH
    done = subprocess.run([str(program), "demo"], cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"letters sent: \d+ in en, 1 in ru, 1 in tg", out), out
    messages = json.loads(
        subprocess.run(
            [str(program), "-C", ".campaign/demo", "log", "--json"], cwd=ws, env=env, capture_output=True, text=True
        ).stdout
    )
    assert {m["lang"] for m in messages} >= {"en", "ru", "tg"}
    assert all(m["status"] == "delivered" for m in messages)
    if pdf_unavailable() is None:
        signed = ws / ".campaign" / "demo" / "signed-letter.pdf"
        assert signed.is_file() and "signed PDF attached to the letter to demo-reads-tajik" in out
        check = next(line for line in out.splitlines() if line.startswith("check it: "))
        verified = subprocess.run(check.removeprefix("check it: "), shell=True, cwd=ws, env=env, capture_output=True)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    else:
        assert "scripts/system-deps.sh" in done.stdout + done.stderr
    hint = next(line for line in out.splitlines() if line.startswith("explore: "))
    command = hint.removeprefix("explore: ")
    shown = subprocess.run(command, shell=True, cwd=ws, env=env, capture_output=True, text=True)
    assert shown.returncode == 0, (command, shown.stderr)  # pasted as printed, it runs
    assert "demo-reads-tajik" in shown.stdout
    on_path = {**env, "PATH": f"{program.parent}:/usr/bin:/bin"}
    again = subprocess.run(["campaign", "demo"], cwd=ws, env=on_path, capture_output=True, text=True, timeout=600)
    assert "explore: campaign -C .campaign/demo log" in again.stdout


def test_14_readme_quick_start_puts_the_venv_on_path() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Quick start")
    quick = readme[start : readme.index("\n## ", start + 5)]
    assert "make demo" in quick and "make test" in quick
    block = quick[quick.index("```sh") : quick.index("```", quick.index("```sh") + 5)]
    assert block.count("\nmake ") == 2  # still two commands
    assert ".venv/bin" in quick.replace(block, "") and "PATH" in quick.replace(block, "")
