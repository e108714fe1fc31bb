"""The bad-input corpus: every folder in tests/bad_inputs/ is one thing a user can get wrong.

Each case is ``tests/bad_inputs/NNN-short-name/`` with a ``case.toml``::

    description = "what the user did wrong"
    args = ["recipients", "list"]     # CLI arguments; the workspace comes from CAMPAIGN_WORKSPACE
    exit = 1                          # expected exit code (1: the user's files/data/environment, 2: usage)
    message = "recipients.yaml:4"     # a fragment that must appear in the output
    # optional:
    setup = [["queue", "peace-agreement", "--all"]]  # commands run first (each must exit 0)
    setup_env = { CAMPAIGN_KEY_PASSPHRASE = "x" }    # environment for the setup commands only
    env = { CAMPAIGN_SMTP_PORT = "x" }              # environment for the failing command only
    remove = ["campaign.toml"]                      # files/folders deleted from the workspace first
    generate = "big-registry"                       # an input too big (or too binary) to commit
                                                    # ("case-files": the case's cases/*.yaml into .campaign/cases/)
    stdin = ""                                      # what the command reads on stdin (default: nothing)
    seconds = 3                                     # the failing command must give up within this time (default 30)
    xfail = "why"                                   # a known bug in the tool: the case says what SHOULD happen
    smtp = true                                     # a scripted SMTP server on a free loopback port for setup
                                                    # and command (CAMPAIGN_SMTP_PORT): never a fixed port

and an optional ``files/`` folder copied over the base workspace (tests/data/workspace plus
the shipped letters) before anything runs. Not ``files/.campaign/``: the repository ignores
every ``.campaign/`` folder, so state (a queue, keys, a damaged database) comes from ``setup``
and ``generate``. In ``args``, ``setup`` and ``env``, ``{ws}`` is
the workspace folder and ``{case}`` the case folder.

For every case: the exit code is the expected one, the fragment is in the output, there is
no traceback, stderr is one ``error:`` line plus at most one ``hint:`` line, and every file
of the workspace (including .campaign/state.db and the outbox) is byte-identical
before and after the failing command.
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import signal
import sqlite3
import tomllib
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result, make_workspace, run_cli, tree_digest
from tests.support.smtp import Script, ScriptedServer

CASES_DIR = Path(__file__).resolve().parent / "bad_inputs"
ALLOWED_KEYS = {
    "description",
    "args",
    "exit",
    "message",
    "setup",
    "setup_env",
    "env",
    "remove",
    "generate",
    "stdin",
    "seconds",
    "xfail",
    "smtp",
}
REQUIRED_KEYS = {"description", "args", "exit", "message"}
DEFAULT_SECONDS = 30  # no bad input may make a command hang


# ---------------------------------------------------------------------------
# Generated inputs: too big or too odd to keep in the repository


def _big_registry(ws: Path) -> None:
    """A syntactically fine recipients.yaml just over the 5 MB limit."""
    head = (ws / "recipients.yaml").read_text(encoding="utf-8")
    filler = "# " + "x" * 97 + "\n"
    size = 5 * 1024 * 1024 + 1024 - len(head.encode())
    (ws / "recipients.yaml").write_text(head + filler * (size // len(filler) + 1), encoding="utf-8")


def _newer_schema_db(ws: Path) -> None:
    """Record a migration this version does not know, as a newer campaign would have."""
    con = sqlite3.connect(ws / ".campaign" / "state.db")
    try:
        con.execute(
            "INSERT INTO schema_migrations (name, applied_at) VALUES ('9999_from_the_future', '2030-01-01T00:00:00Z')"
        )
        con.commit()
    finally:
        con.close()


def _garbage_db(ws: Path) -> None:
    """A state.db that is not SQLite at all, in a correctly private .campaign/ folder."""
    state = ws / ".campaign"
    state.mkdir(mode=0o700, exist_ok=True)
    state.chmod(0o700)
    (state / "state.db").write_bytes(b"this is not a database\n" * 200)


def _truncated_db(ws: Path) -> None:
    """The state database created by the setup, cut in half (a disk that filled up)."""
    db = ws / ".campaign" / "state.db"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])


def _truncated_pdf(ws: Path) -> None:
    """letter.pdf (signed by the setup) cut in half, as by a broken download."""
    pdf = ws / "letter.pdf"
    data = pdf.read_bytes()
    pdf.write_bytes(data[: len(data) // 2])


def _case_files(ws: Path, case_folder: Path) -> None:
    """The case's ``cases/*.yaml`` as private case files in .campaign/cases/ (a folder the
    repository ignores, so they cannot live under ``files/``)."""
    target = ws / ".campaign" / "cases"
    target.mkdir(parents=True, exist_ok=True)
    (ws / ".campaign").chmod(0o700)
    target.chmod(0o700)
    for path in sorted((case_folder / "cases").glob("*.yaml")):
        shutil.copy2(path, target / path.name)
        (target / path.name).chmod(0o600)


def _registry_folder(ws: Path) -> None:
    """recipients.yaml replaced by a folder (an unzip or a sync tool made one)."""
    (ws / "recipients.yaml").unlink()
    (ws / "recipients.yaml").mkdir()
    (ws / "recipients.yaml" / "README.txt").write_text("a folder where the registry should be\n")


def _template_folder(ws: Path) -> None:
    """letters/peace-agreement/en.md.j2 replaced by a folder."""
    template = ws / "letters" / "peace-agreement" / "en.md.j2"
    template.unlink()
    template.mkdir()
    (template / "README.txt").write_text("not a template\n")


def _other_chain_key(ws: Path) -> None:
    """Another workspace's chain key in place of this one's (a teammate's, a wrong backup)."""
    (ws / ".campaign" / "chain.key").write_bytes(bytes(range(32)))


def _damaged_chain_key(ws: Path) -> None:
    (ws / ".campaign" / "chain.key").write_bytes(b"short")


def _changed_body(ws: Path) -> None:
    """A queued letter's bytes changed directly in the database."""
    from tests.conftest import forge_body, stored_body

    state = ws / ".campaign" / "state.db"
    forge_body(state, 1, stored_body(state, 1) + b"\r\n")


def _address_changed(ws: Path) -> None:
    """ohchr's address changed in recipients.yaml after its letter was queued."""
    registry = ws / "recipients.yaml"
    registry.write_text(registry.read_text(encoding="utf-8").replace("registry@ohchr.example", "desk@ohchr.example"))


def _institution_removed(ws: Path) -> None:
    """wgad's block removed from recipients.yaml after its letter was queued."""
    registry = ws / "recipients.yaml"
    lines = registry.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.strip() == "- id: wgad")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("- id:"))
    registry.write_text("".join(lines[:start] + lines[end:]), encoding="utf-8")


GENERATORS = {
    "registry-folder": _registry_folder,
    "template-folder": _template_folder,
    "big-registry": _big_registry,
    "newer-schema-db": _newer_schema_db,
    "garbage-db": _garbage_db,
    "truncated-db": _truncated_db,
    "truncated-pdf": _truncated_pdf,
    "case-files": _case_files,
    "other-chain-key": _other_chain_key,
    "damaged-chain-key": _damaged_chain_key,
    "changed-body": _changed_body,
    "address-changed": _address_changed,
    "institution-removed": _institution_removed,
}
# Generators that need the state the setup commands created.
AFTER_SETUP = {
    "newer-schema-db",
    "truncated-db",
    "truncated-pdf",
    "other-chain-key",
    "damaged-chain-key",
    "changed-body",
    "address-changed",
    "institution-removed",
}


# ---------------------------------------------------------------------------
# Loading and running one case


@dataclass
class Case:
    name: str
    folder: Path
    spec: dict[str, Any]


def load_cases() -> list[Case]:
    cases = []
    for folder in sorted(p for p in CASES_DIR.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        with (folder / "case.toml").open("rb") as handle:
            spec = tomllib.load(handle)
        cases.append(Case(folder.name, folder, spec))
    return cases


def _expand(value: str, ws: Path, case: Case) -> str:
    return value.replace("{ws}", str(ws)).replace("{case}", str(case.folder))


def _apply_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], ws: Path, case: Case) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, _expand(str(value), ws, case))


def prepare(case: Case, root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The workspace for ``case`` with its files, setup and generated inputs applied."""
    spec = case.spec
    ws = make_workspace(root / "ws")
    files = case.folder / "files"
    if files.is_dir():
        shutil.copytree(files, ws, dirs_exist_ok=True)
    for name in spec.get("remove", []):
        target = ws / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    monkeypatch.setenv("CAMPAIGN_WORKSPACE", str(ws))
    generate = spec.get("generate")
    if generate == "case-files":
        _case_files(ws, case.folder)
    elif generate is not None and generate not in AFTER_SETUP:
        GENERATORS[generate](ws)
    if spec.get("setup"):
        with monkeypatch.context() as m:
            _apply_env(m, spec.get("setup_env", {}), ws, case)
            for command in spec["setup"]:
                result = run_cli(*[_expand(a, ws, case) for a in command], input="")
                assert result.code == 0, f"setup {command} failed ({result.code}):\n{result.output}"
    if generate in AFTER_SETUP:
        GENERATORS[generate](ws)
    return ws


class TookTooLong(Exception):
    """The failing command ran past the case's ``seconds``."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the command after ``seconds`` (a bad input must be refused quickly, not hang)."""

    def expired(signum: int, frame: object) -> None:
        raise TookTooLong(f"the command was still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_case(case: Case, root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Result, dict[str, str], dict[str, str]]:
    """Prepare the workspace, run the failing command; the result and the digests before and after."""
    with contextlib.ExitStack() as stack:
        if case.spec.get("smtp"):
            server = stack.enter_context(ScriptedServer(Script()))
            monkeypatch.setenv("CAMPAIGN_SMTP_PORT", str(server.port))
        return _run_case(case, root, monkeypatch)


def _run_case(case: Case, root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Result, dict[str, str], dict[str, str]]:
    ws = prepare(case, root, monkeypatch)
    before = tree_digest(ws)
    args = [_expand(a, ws, case) for a in case.spec["args"]]
    with monkeypatch.context() as m, _time_limit(case.spec.get("seconds", DEFAULT_SECONDS)):
        _apply_env(m, case.spec.get("env", {}), ws, case)
        try:
            result = run_cli(*args, input=case.spec.get("stdin", ""))
        except Exception:  # noqa: BLE001 - the real CLI would die with a traceback: report it as such
            result = Result(1, "", "Traceback (most recent call last):\n" + traceback.format_exc())
    gc.collect()  # what the end of a real process does: finalise what the command left open
    after = tree_digest(ws)
    return result, before, after


def error_lines(stderr: str) -> list[str]:
    """The lines of stderr that count (blank lines do not)."""
    return [line for line in stderr.splitlines() if line.strip()]


def check(case: Case, result: Result, before: dict[str, str], after: dict[str, str]) -> None:
    spec = case.spec
    output = result.stdout + result.stderr
    shown = f"\n--- exit {result.code}\n--- stdout:\n{result.stdout}\n--- stderr:\n{result.stderr}"
    assert "Traceback" not in output, f"a traceback{shown}"
    assert result.code == spec["exit"], f"exit code {result.code}, expected {spec['exit']}{shown}"
    assert spec["message"] in output, f"{spec['message']!r} not in the output{shown}"
    lines = error_lines(result.stderr)
    assert lines, f"nothing on stderr{shown}"
    assert lines[0].startswith("error:"), f"stderr does not start with 'error:'{shown}"
    assert len(lines) <= 2, f"more than an error line and a hint{shown}"
    if len(lines) == 2:
        assert lines[1].startswith("hint:"), f"the second line is not a hint{shown}"
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the workspace changed: {changed}{shown}"


def _params() -> list[Any]:
    params = []
    for case in load_cases():
        marks = []
        if "xfail" in case.spec:
            marks.append(pytest.mark.xfail(reason=case.spec["xfail"], strict=True))
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


def test_cases_are_well_formed() -> None:
    cases = load_cases()
    assert len(cases) >= 60
    for case in cases:
        keys = set(case.spec)
        assert REQUIRED_KEYS <= keys, f"{case.name}: missing {sorted(REQUIRED_KEYS - keys)}"
        assert keys <= ALLOWED_KEYS, f"{case.name}: unknown keys {sorted(keys - ALLOWED_KEYS)}"
        assert case.spec["exit"] in (1, 2), f"{case.name}: exit must be 1 or 2"
        assert isinstance(case.spec["args"], list) and all(isinstance(a, str) for a in case.spec["args"])
        assert case.spec["message"].strip(), f"{case.name}: empty message"
        assert case.spec["description"].strip(), f"{case.name}: say what the user did wrong"
        assert str(case.spec.get("xfail", "why")).strip(), f"{case.name}: say why it fails"
        assert all(isinstance(c, list) for c in case.spec.get("setup", [])), f"{case.name}: setup is a list of commands"
        assert case.spec.get("generate") in (None, *GENERATORS), f"{case.name}: unknown generate"
        # The repository's .gitignore drops every .campaign/ folder: such a case would pass here
        # and lose its input on a fresh clone. State comes from `setup` and `generate` instead.
        assert not (case.folder / "files" / ".campaign").exists(), f"{case.name}: files/.campaign/ is git-ignored"
        assert case.name[:4].rstrip("-").isdigit(), f"{case.name}: name it NNN-short-name"
        # A case that sends must bring its own server: the suite passes with nothing listening.
        sends = any(c[:1] == ["send"] and "--dry-run" not in c for c in case.spec.get("setup", []))
        assert not sends or case.spec.get("smtp"), f"{case.name}: setup sends; add smtp = true"


@pytest.mark.parametrize("case", _params())
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, before, after = run_case(case, tmp_path, monkeypatch)
    check(case, result, before, after)
