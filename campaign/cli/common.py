"""What every command module shares: global state, consoles, output helpers.

The CLI may parse, build settings, call one ``api`` function, ask, draw progress and
print. It never runs SQL, opens SMTP connections, touches Jinja2 or YAML, or catches
a bare ``Exception``: ``campaign.cli.main`` turns a ``CampaignError`` into one line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from campaign.config import Workspace


ForceOpt = Annotated[
    bool, typer.Option("--force", help="Overwrite files that exist (without it: refuse and write nothing).")
]
"""The one --force of every command that writes a file (``campaign.files.check_target``):
tests/test_overwrite.py finds those commands and checks each against the rule."""


@dataclass
class State:
    """Global options given before the command (``campaign -C DIR --db URL ...``)."""

    directory: str | None = None
    db: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    _workspace: Workspace | None = None

    def workspace(self, **overrides: Any) -> Workspace:
        """Load the workspace once, with ``--db`` and per-command overrides applied."""
        from campaign import api

        merged = dict(self.overrides)
        labels = {}
        if self.db:
            merged["store.url"] = self.db
            labels["store.url"] = "--db"
        merged.update({k: v for k, v in overrides.items() if v is not None})
        if self._workspace is None or overrides:
            self._workspace = api.open_workspace(self.directory, overrides=merged, labels=labels)
        return self._workspace


def state(ctx: typer.Context) -> State:
    """The State stored by the root callback."""
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


_stdout: Console | None = None
_stderr: Console | None = None


def out() -> Console:
    """Console for results (stdout)."""
    global _stdout
    if _stdout is None:
        from rich.console import Console

        _stdout = Console(highlight=False, emoji=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    return _stdout


def err() -> Console:
    """Console for messages and warnings (stderr)."""
    global _stderr
    if _stderr is None:
        from rich.console import Console

        _stderr = Console(
            stderr=True, highlight=False, emoji=False, soft_wrap=True, width=None if sys.stderr.isatty() else 200
        )
    return _stderr


def reset_consoles() -> None:
    """Forget the consoles (tests swap sys.stdout between runs)."""
    global _stdout, _stderr
    _stdout = _stderr = None


_UNSAFE = {
    c
    for c in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
    if c not in (0x09, 0x0A)
}


def visible(text: str) -> str:
    """Data with its control characters shown as escapes (``\\x1b``), never sent to a
    terminal as they are: an escape sequence in a campaign name, a server's reply or a
    report's subject must not recolour, move or rewrite what a person reads. Tabs and
    line breaks stay; bidirectional overrides are escaped too."""
    if text.isprintable():
        return text
    return "".join(
        (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}") if ord(ch) in _UNSAFE else ch for ch in text
    )


def plain(text: str) -> str:
    """User data, safe to print: rich markup escaped, control characters made visible."""
    from rich.markup import escape

    return escape(visible(text))


def progress_line(message: str) -> None:
    """One line of user data on stderr, as :func:`note` prints it, without rich's
    rendering (a send prints one per letter when stderr is not a terminal)."""
    sys.stderr.write(visible(message) + "\n")
    sys.stderr.flush()


def warn(message: str) -> None:
    err().print(f"[yellow]warning:[/yellow] {plain(message)}")


def note(message: str) -> None:
    err().print(plain(message))


_JSON_UNSAFE = {c: f"\\u{c:04x}" for c in _UNSAFE if c >= 0x7F}  # json.dumps escapes the rest


def print_json(data: Any) -> None:
    """JSON to stdout, UTF-8, stable key order; C1 controls and bidirectional overrides
    escaped (JSON escapes C0 itself), so no data can drive a terminal."""
    text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write(text.translate(_JSON_UNSAFE) + "\n")
    sys.stdout.flush()


def print_json_list(items: Iterable[Any]) -> None:
    """:func:`print_json` of a list, written an item at a time (the same bytes): a log of
    100,000 letters is never one string in memory."""
    first = True
    for item in items:
        text = json.dumps(item, ensure_ascii=False, indent=2, default=str).translate(_JSON_UNSAFE)
        sys.stdout.write(("[\n" if first else ",\n") + "\n".join("  " + line for line in text.split("\n")))
        first = False
    sys.stdout.write("[]\n" if first else "\n]\n")
    sys.stdout.flush()


def table(*columns: str, title: str | None = None) -> Table:
    from rich.table import Table

    t = Table(title=title, show_edge=False, header_style="bold", pad_edge=False)
    for column in columns:
        t.add_column(column, overflow="fold")
    return t


def is_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 letter``, ``2 letters``: ``campaign.wording.plural`` (one rule everywhere)."""
    from campaign.wording import plural as _plural

    return _plural(count, word, words)


def queue_summary(report: Any) -> str:
    """The one summary of what queueing did (`queue`, `submit prepare --queue`): "2 new,
    1 already queued", then each other outcome that happened ("1 already sent")."""
    counts = report.outcomes()
    parts = [f"{counts['new']:,} new", f"{counts['already queued']:,} already queued"]
    parts += [f"{n:,} {outcome}" for outcome, n in counts.items() if n and outcome not in ("new", "already queued")]
    return ", ".join(parts)


def invocation() -> str:
    """How to run this program again from the current folder, as the person typed it:
    ``campaign`` when that name on PATH is this program, else the path they used
    (``.venv/bin/campaign``), so a printed hint works when pasted."""
    import os
    import shutil

    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "campaign"
    if argv0.endswith(("__main__.py", "-c")):
        return f"{sys.executable} -m campaign"
    found = shutil.which("campaign")
    try:
        if found and os.path.samefile(found, argv0):
            return "campaign"
    except OSError:
        pass
    if os.sep not in argv0:
        return "campaign" if found else f"{sys.executable} -m campaign"
    path = os.path.relpath(argv0)
    if path.startswith(".."):
        return os.path.abspath(argv0)
    return path if os.sep in path else "./" + path


def shown_path(path: Any) -> str:
    """A path as short as it can be while still working from the current folder."""
    import os

    text = str(path)
    try:
        relative = os.path.relpath(text)
    except ValueError:
        return text
    return relative if not relative.startswith("..") else text
