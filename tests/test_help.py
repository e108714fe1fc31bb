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
