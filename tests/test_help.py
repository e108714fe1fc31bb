"""Every command has help text that ends with an example, and the README mentions it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer

from campaign.cli import app
from tests.conftest import ROOT, run_cli


def commands(group: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    group = group or typer.main.get_command(app)
    for name, command in sorted(getattr(group, "commands", {}).items()):
        yield (*path, name), command
        yield from commands(command, (*path, name))


ALL = list(commands())


def test_there_are_commands() -> None:
    names = {" ".join(p) for p, _ in ALL}
    assert {"init", "queue", "send", "log", "log verify", "recipients list", "preview", "demo"} <= names


@pytest.mark.parametrize(("path", "command"), ALL, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_command_has_help_with_an_example(path: tuple[str, ...], command: Any) -> None:
    text = command.help or ""
    assert text.strip(), f"campaign {' '.join(path)} has no help text"
    assert "Example" in text, f"campaign {' '.join(path)}: end the help with an example"
    example = text.split("Example", 1)[1]
    assert "campaign " in example, f"campaign {' '.join(path)}: the example should show a command line"
    for param in command.params:
        if param.param_type_name == "option" and param.name not in ("help",):
            assert getattr(param, "help", None), f"campaign {' '.join(path)}: option {param.opts} has no help"


@pytest.mark.parametrize(("path", "command"), ALL, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_command_is_in_the_readme(path: tuple[str, ...], command: Any) -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"campaign {' '.join(path)}" in readme or f" {' '.join(path)} " in readme, (
        f"README.md does not mention `campaign {' '.join(path)}`"
    )


@pytest.mark.parametrize(("path", "command"), ALL, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_help_renders(path: tuple[str, ...], command: Any) -> None:
    result = run_cli(*path, "--help")
    assert result.code == 0, result.output
    assert "Usage" in result.stdout


def _examples(help_text: str) -> list[str]:
    """The example command lines of a help text as written in the source."""
    import inspect

    text = inspect.cleandoc(help_text).split("\f")[0]
    after = text.split("Example", 1)[1] if "Example" in text else ""
    return [" ".join(line.split()) for line in after.splitlines() if line.startswith("    ") and line.strip()]


def _rendered_examples(output: str) -> tuple[list[str], list[str]]:
    """(the example commands as shown, continuation lines joined; the raw lines shown)."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "Example:"), None)
    if start is None:
        return [], []
    block: list[str] = []
    for line in lines[start + 1 :]:
        if line.lstrip().startswith(("╭", "Usage:")):
            break
        if line.strip():
            block.append(line.rstrip())
    commands: list[str] = []
    pending = ""
    for line in block:
        pending = f"{pending} {line.strip()}" if pending else line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        commands.append(" ".join(pending.split()))
        pending = ""
    return commands, block


@pytest.mark.parametrize(("path", "command"), ALL, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_no_example_is_cut_in_an_80_column_terminal(
    path: tuple[str, ...], command: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every example line of every command's --help, rendered 80 columns wide, is whole:
    a long one is continued with a trailing backslash and an indented line, never cut at
    the margin with its tail at column 0."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    result = run_cli(*path, "--help")
    assert result.code == 0, result.output
    shown, block = _rendered_examples(result.stdout)
    assert all(len(line) <= 80 for line in result.stdout.splitlines())
    for line in block:
        assert line.startswith(" " * 5), f"campaign {' '.join(path)}: an example line was cut:\n{result.stdout}"
    for example in _examples(command.help or ""):
        assert example in shown, f"campaign {' '.join(path)}: {example!r} is not shown whole:\n{result.stdout}"


def test_the_root_help_example_is_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = run_cli("--help")
    from campaign.cli import HELP

    shown, _ = _rendered_examples(result.stdout)
    assert _examples(HELP) and all(example in shown for example in _examples(HELP))
