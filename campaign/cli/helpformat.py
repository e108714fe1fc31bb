"""How `--help` reads: one docstring convention and one pass over the command tree.

The convention for a command's docstring (and a group's ``help=``):

- the first paragraph is one sentence, shown in the command lists;
- paragraphs are separated by a blank line and may be wrapped in the source however
  is convenient: they are joined into one line here and wrapped to the terminal by rich,
  so they never come out ragged;
- a line indented by four spaces (an example command) is kept as written, except that
  one longer than fits an 80-column terminal is broken between words into lines ending
  in `` \\`` (a shell continuation), so no example is ever cut mid-command;
- the help ends with ``Example:`` and at least one indented command line
  (tests/test_help.py checks it).

:func:`tidy` applies the convention to every command of the built click tree, and gives
every parameter a metavar a person can read: an upper-case word for a value (``N``,
``TEXT``, ``PATH``, ``ID...``), the choices for an enum, nothing for a flag, instead of
the Python types (``<bool>``, ``<list[int]>``, ``<int range> [x>=1]``) typer shows by default.
"""

from __future__ import annotations

import functools
import inspect
import shlex
from typing import Any

EXAMPLE_WIDTH = 76
"""The widest example line, its indentation included: rich prints help with one column of
padding on each side, so this fits an 80-column terminal with room to spare."""


def reflow(text: str | None) -> str | None:
    """Join the lines of each paragraph; keep indented (example) lines as they are."""
    if not text:
        return text
    text = inspect.cleandoc(text)
    head, sep, tail = text.partition("\f")  # click's "cut here": keep only what is shown
    paragraphs = head.split("\n\n")
    out = []
    for paragraph in paragraphs:
        lines = paragraph.split("\n")
        if any(line.startswith("    ") for line in lines):
            # An example block: the prose lines before it are joined, the commands kept.
            prose = [line.strip() for line in lines if not line.startswith("    ")]
            code = [part for line in lines if line.startswith("    ") for part in wrap_example(line)]
            block = ([" ".join(prose)] if prose else []) + code
            out.append("\n".join(block))
        else:
            out.append(" ".join(line.strip() for line in lines if line.strip()))
    kept = [p for p in out if p]
    rest = "\n".join(kept[1:]).split("\n")[1:]
    if rest and all(line.startswith("    ") for line in rest if line.strip()):
        # typer dedents the text after the first paragraph by its common indentation,
        # which would pull the example to the margin when nothing but "Example:" precedes
        # it; an empty markup tag is an unindented line that prints as nothing.
        return "\n\n".join(kept) + "\n" + _GUARD
    return "\n\n".join(kept)


_GUARD = "[dim][/dim]"


def wrap_example(line: str, width: int = EXAMPLE_WIDTH) -> list[str]:
    """An example command line as lines of at most ``width`` characters, broken between
    words (never inside a quoted argument, an option kept with its value) with a shell
    continuation `` \\``; continuation lines are indented four more spaces."""
    if len(line) <= width:
        return [line]
    indent = line[: len(line) - len(line.lstrip())]
    try:
        lexer = shlex.shlex(line.strip(), posix=False)
        lexer.whitespace_split = True
        lexer.commenters = ""
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: plain words
        tokens = line.split()
    units: list[str] = []
    for token in tokens:
        if units and units[-1].startswith("-") and " " not in units[-1] and not token.startswith("-"):
            units[-1] += " " + token  # --to ohchr stays together
        else:
            units.append(token)
    lines: list[str] = []
    current = indent + units[0]
    for unit in units[1:]:
        if len(current) + 1 + len(unit) + 2 <= width:
            current += " " + unit
        else:
            lines.append(current + " \\")
            current = indent + "    " + unit
    lines.append(current)
    return lines


def _metavar(param: Any) -> str:
    """A readable placeholder for a parameter's value (typer vendors click privately, so
    parameters are read by their attributes, not their classes)."""
    desc = getattr(param, "type_descriptor", None)
    if desc is not None and desc.is_choice:
        choices = _choices(param)
        if len("|".join(choices)) <= _MAX_CHOICES_WIDTH:
            return "|".join(choices)
    name = (param.name or "value").upper().rstrip("_")
    if param.param_type_name == "argument":
        if param.nargs != 1:
            single = name[:-1] if name.endswith("S") and not name.endswith("SS") else name
            return f"{single}..."
        return name
    if desc is not None:
        annotation = desc.annotation
        args = getattr(annotation, "__args__", None)
        if desc.is_list and args:
            annotation = args[0]
        if annotation is int:
            return "N"
        if annotation is float:
            return "NUMBER"
        if desc.is_path:
            return "PATH"
        if annotation is str:
            return "TEXT"
    return name


_MAX_CHOICES_WIDTH = 24
"""Longer choice lists are named in the help sentence, not in the metavar column."""


def _choices(param: Any) -> list[str]:
    desc = param.type_descriptor
    return [str(getattr(c, "value", c)) for c in desc.choices or ()]


def _no_type(*args: Any, **kwargs: Any) -> None:
    """An argument's type column stays empty: its metavar already says what it is."""
    return None


def tidy(command: Any) -> Any:
    """Apply the help convention to ``command`` and everything below it (in place)."""
    command.help = reflow(command.help)
    if command.short_help:
        command.short_help = reflow(command.short_help)
    for param in command.params:
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
        elif param.metavar is None:
            param.metavar = _metavar(param)
            desc = getattr(param, "type_descriptor", None)
            if desc is not None and desc.is_choice and "|" not in param.metavar and param.help:
                param.help = f"{param.help.rstrip()} One of: {', '.join(_choices(param))}."
        if param.param_type_name == "argument":
            param.display_type_rich = _no_type
            usage = param.metavar if param.required else f"[{param.metavar}]"
            param._usage_display_name = functools.partial(str, usage)
        # The range belongs in the help sentence ("at least 1"), not in a "[x>=1]" after
        # the type; validation is unaffected (typer validates from the declaration).
        for attr in ("min", "max"):
            if getattr(param, attr, None) is not None:
                setattr(param, attr, None)
        help_text = getattr(param, "help", None)
        if isinstance(help_text, str):
            param.help = " ".join(help_text.split())
    original = command.get_help_option

    def help_option(ctx: Any) -> Any:
        option = original(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        tidy(sub)
    return command
