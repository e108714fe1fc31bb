"""The workspace commands through the real CLI: exit codes, messages, nothing changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli, tree_digest


def test_version_and_help() -> None:
    result = run_cli("--version")
    assert result.code == 0 and result.stdout.startswith("campaign ")
    result = run_cli("--help")
    assert result.code == 0 and "Example" in result.stdout


def test_init_scaffolds_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "new"
    result = run_cli("init", str(target))
    assert result.code == 0, result.output
    assert (target / "campaign.toml").is_file() and (target / "letters" / "example" / "en.md.j2").is_file()
    before = tree_digest(target)
    again = run_cli("init", str(target))
    assert again.code == 1
    assert "already exist; nothing was written" in again.stderr
    assert tree_digest(target) == before
    # every command works on a scaffolded workspace
    for args in (
        ["recipients", "list"],
        ["recipients", "check"],
        ["letters", "list"],
        ["letters", "check"],
        ["preview", "example", "--to", "example-un-body"],
    ):
        result = run_cli("-C", str(target), *args)
        assert result.code == 0, (args, result.output)


def test_commands_on_the_shipped_workspace() -> None:
    for args in (
        ["recipients", "list", "--json"],
        ["recipients", "check"],
        ["letters", "list"],
        ["letters", "check"],
        ["preview", "peace-agreement", "--to", "un-wgad", "--format", "eml"],
    ):
        result = run_cli("-C", str(ROOT), *args)
        assert result.code == 0, (args, result.output)


def test_recipients_list_filters_by_any_tag(workspace: Path) -> None:
    result = run_cli("recipients", "list", "--tag", "osce", "--tag", "russia", "--json")
    assert result.code == 0
    assert {r["id"] for r in json.loads(result.stdout)} == {"odihr", "mid"}


def test_recipients_check_strict(workspace: Path) -> None:
    assert run_cli("recipients", "check").code == 0
    result = run_cli("recipients", "check", "--strict")
    assert result.code == 1 and "never confirmed" in result.stderr


def test_recipients_check_counts_a_long_run_of_one_warning(workspace: Path) -> None:
    # A registry of every parliament has 10,000 unconfirmed contacts: ten are listed, then
    # a count (printing them all took 3.5 s of `recipients check`'s 9.4 s); --all lists all.
    entries = "".join(
        f"  - id: mp-{i}\n    name: Member {i}\n    languages: [en]\n    contacts:\n"
        f"      - email: office@mp{i}.example\n        source: https://mp{i}.example/contact\n"
        for i in range(25)
    )
    (workspace / "recipients.yaml").write_text("recipients:\n" + entries)
    result = run_cli("recipients", "check")
    assert result.code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(lines) == 11 and "… and 15 more: never confirmed" in lines[-1] and "--all" in lines[-1]
    assert "25 institutions valid, 25 warnings" in result.stdout
    every = run_cli("recipients", "check", "--all")
    assert len([line for line in every.stderr.splitlines() if line.startswith("warning:")]) == 25


def test_letters_check_reports_every_problem_at_once(workspace: Path) -> None:
    bad = workspace / "letters" / "broken"
    bad.mkdir()
    (bad / "en.md.j2").write_text("---\nsubject: Hi\n---\n{{ recipient.nmae }}\n\n{{ sender.adress }}\n")
    result = run_cli("letters", "check")
    assert result.code == 1
    assert "letters/broken/en.md.j2:4: undefined" in result.stderr
    assert result.stderr.count("undefined") >= 1
    assert "Traceback" not in result.output


def test_preview_formats(workspace: Path) -> None:
    text = run_cli("preview", "peace-agreement", "--to", "mid")
    assert text.code == 0 and "Language: ru" in text.stdout
    html = run_cli("preview", "peace-agreement", "--to", "ohchr", "--format", "html")
    assert html.stdout.startswith("<!DOCTYPE html>")
    eml = run_cli("preview", "peace-agreement", "--to", "ohchr", "--lang", "ru", "--format", "eml")
    assert "Content-Language: ru" in eml.stdout
    postal = run_cli("preview", "peace-agreement", "--to", "ep-droi")
    assert postal.code == 0 and "postal only" in postal.stdout


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["preview", "peace-agreement", "--to", "nobody"], 1, "no institution with id 'nobody'"),
        (["preview", "no-such-letter", "--to", "ohchr"], 1, "letters/no-such-letter/: no such letter"),
        (["preview", "peace-agreement", "--to", "ohchr", "--lang", "de"], 1, "no de.md.j2"),
        (["preview", "peace-agreement", "--to", "ohchr", "--format", "pdf"], 2, "Invalid value"),
        (["preview", "peace-agreement"], 2, "Missing option '--to'"),
        (["recipients", "list", "--colour"], 2, "No such option"),
        (["frobnicate"], 2, "No such command"),
    ],
)
def test_bad_usage_is_one_line(workspace: Path, args: list[str], code: int, fragment: str) -> None:
    before = tree_digest(workspace)
    result = run_cli(*args)
    assert result.code == code, result.output
    assert fragment in result.stderr
    assert "Traceback" not in result.output
    assert tree_digest(workspace) == before


def test_broken_registry_via_cli(workspace: Path) -> None:
    path = workspace / "recipients.yaml"
    path.write_text(path.read_text().replace("wgad@ohchr.example", "wgad-at-ohchr"))
    before = tree_digest(workspace)
    result = run_cli("recipients", "list")
    assert result.code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: recipients.yaml:") and "contacts[0].email: not a valid address" in lines[0]
    assert len(lines) <= 2
    assert tree_digest(workspace) == before


@pytest.mark.parametrize(
    "items", [[], [{}], [{"a": 1}], [{"a": "Ж\u202e\nx", "b": [1, {"c": None}], "d": []}, {"e": 2.5}, [3, "x"]]]
)
def test_a_json_list_printed_an_item_at_a_time_is_the_same_bytes(
    items: list, capsys: pytest.CaptureFixture[str]
) -> None:
    from campaign.cli import common

    common.print_json(items)
    whole = capsys.readouterr().out
    common.print_json_list(iter(items))
    assert capsys.readouterr().out == whole
