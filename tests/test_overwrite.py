"""One rule for every command that writes a file: refuse an existing one (one line, nothing
written), overwrite it with --force (issue 17, defect 13).

The commands are found in the command tree: any with an option that names a file or folder
to write (``--output``/``-o``, ``--out-dir``, ``--print-file``). Each must declare the shared
``--force`` (``campaign.cli.common.ForceOpt``) and have a case here, which runs it through
the real CLI against a target that exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, make_workspace, run_cli, tree_digest

OUTPUT_PARAMS = {"output", "out_dir", "print_file"}
KEY = "organisation-pass-1"


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, command in sorted(getattr(group, "commands", {}).items()):
        yield (*path, name), command
        yield from _commands(command, (*path, name))


def file_writing_commands() -> dict[str, Any]:
    from campaign.cli import command

    return {
        " ".join(path): cmd
        for path, cmd in _commands(command())
        if any(p.name in OUTPUT_PARAMS for p in getattr(cmd, "params", []))
    }


@dataclass
class Case:
    """``args`` write ``target`` (both relative to the workspace) once ``setup`` has run."""

    args: list[str]
    target: str
    setup: list[list[str]] = field(default_factory=list)
    keys: bool = False  # `keys init` first (CAMPAIGN_KEY_PASSPHRASE is set for every case)


QUEUED = [["queue", "peace-agreement", "--to", "un-wgad"]]
DRIVE = [["sign", "open", "peace-agreement", "--to", "un-wgad", "--name", "d1"]]

CASES: dict[str, Case] = {
    "log export": Case(
        ["log", "export", "--campaign", "peace-agreement", "-o", "evidence.zip"], "evidence.zip", QUEUED
    ),
    "report": Case(["report", "-o", "report.html"], "report.html", QUEUED),
    "recipients export": Case(["recipients", "export", "--csv", "-o", "institutions.csv"], "institutions.csv"),
    "keys export-root": Case(["keys", "export-root", "-o", "root.pem"], "root.pem", keys=True),
    "keys issue": Case(["keys", "issue", "--name", "Maria Ivanova", "-o", "maria.p12"], "maria.p12", keys=True),
    "pdf export": Case(
        ["pdf", "export", "peace-agreement", "--to", "un-wgad", "--signer", "Maria Ivanova", "-o", "letter.pdf"],
        "letter.pdf",
        keys=True,
    ),
    "pdf batch": Case(
        ["pdf", "batch", "peace-agreement", "--to", "un-wgad", "--supporters", "supporters.csv", "--out-dir", "out"],
        "out/0001-maria-ivanova-un-wgad.pdf",
        keys=True,
    ),
    "sign keygen": Case(["sign", "keygen", "-o", "names.key"], "names.key"),
    "sign close": Case(["sign", "close", "d1", "-o", "cover.pdf"], "cover.pdf", DRIVE, keys=True),
    "sign export": Case(["sign", "export", "d1", "-o", "signers.csv"], "signers.csv", DRIVE, keys=True),
    "submit prepare": Case(
        ["submit", "prepare", "--case", "c1", "--to", "un-sr-torture", "--format", "sheet", "-o", "sheet.html"],
        "sheet.html",
    ),
}


def test_every_file_writing_command_has_the_shared_force_and_a_case() -> None:
    from campaign.cli.common import ForceOpt

    shared = ForceOpt.__metadata__[0]
    found = file_writing_commands()
    assert set(found) == set(CASES), "a command that writes a file needs --force and a case here"
    for name, command in found.items():
        [force] = [p for p in command.params if p.name == "force"] or [None]
        assert force is not None, f"campaign {name} writes a file but has no --force"
        assert force.opts == ["--force"] and force.help == " ".join(shared.help.split()), name


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped registry (its submission profiles), without office hours."""
    registry = tmp_path / "recipients.yaml"
    shipped = (ROOT / "recipients.yaml").read_text(encoding="utf-8")
    registry.write_text(re.sub(r"(?m)^\s*office_hours:.*\n", "", shipped), encoding="utf-8")
    root = make_workspace(tmp_path / "ws", registry=registry)
    monkeypatch.setenv("CAMPAIGN_WORKSPACE", str(root))
    monkeypatch.setenv("CAMPAIGN_KEY_PASSPHRASE", KEY)
    monkeypatch.setenv("CAMPAIGN_P12_PASSPHRASE", "supporter-pass-2")
    monkeypatch.chdir(root)
    return root


def _prepare(ws: Path, case: Case) -> None:
    if case.keys:
        assert run_cli("keys", "init").code == 0
    for command in case.setup:
        result = run_cli(*command)
        assert result.code == 0, f"setup {command}: {result.output}"
    (ws / "supporters.csv").write_text("name,city\nMaria Ivanova,Berlin\n", encoding="utf-8")
    if "--case" in case.args:
        cases = ws / ".campaign" / "cases"
        cases.mkdir(parents=True, exist_ok=True, mode=0o700)
        example = (ROOT / "campaign" / "scaffold" / "cases" / "example.yaml").read_text(encoding="utf-8")
        example = example.replace("fictional: true", "fictional: false")
        (cases / "c1.yaml").write_text(
            example.replace("bodies: [un-wgeid, un-wgad]", "bodies: [special-procedures]"), encoding="utf-8"
        )
        (cases / "c1.yaml").chmod(0o600)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_file_that_exists_is_refused_without_force_and_overwritten_with_it(ws: Path, name: str) -> None:
    case = CASES[name]
    _prepare(ws, case)
    target = ws / case.target
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"an older file\n")
    before = tree_digest(ws)
    refused = run_cli(*case.args)
    assert refused.code == 1, refused.output
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error:") and "already exists; nothing was written" in lines[0], refused.stderr
    assert lines[1:] == ["hint: choose another name, or add --force to overwrite it"] or "--force" in lines[-1]
    assert tree_digest(ws) == before, f"campaign {name} changed the workspace without --force"
    forced = run_cli(*case.args, "--force")
    assert forced.code == 0, forced.output
    assert target.read_bytes() != b"an older file\n"
