"""The `campaign` command line: typer only; parse, call ``campaign.api``, print.

Exit codes: 0 ok (warnings allowed), 1 an error in the user's files, data or
environment, 2 a usage error, 3 when some letters failed or were held.
Heavy modules are imported inside the commands so that ``campaign --help`` is fast.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from campaign import __version__
from campaign.cli import common
from campaign.errors import CampaignError

HELP = """\
Advocacy letter campaigns to international institutions.

A workspace holds campaign.toml, recipients.yaml (the institutions) and letters/
(Jinja2 + Markdown templates per language). `campaign` checks them, previews each
letter, queues it durably, sends it carefully over SMTP, records every server reply and
delivery receipt in a hash-chained log, and exports signed PDF letters.

Start with `campaign init DIR`, or try everything safely with `campaign demo`.

Example:

    campaign -C my-campaign preview peace-agreement --to ohchr
"""

app = typer.Typer(
    name="campaign",
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"campaign {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    directory: Annotated[
        str | None,
        typer.Option(
            "-C",
            "--workspace",
            help="Run as if started in DIR (default: $CAMPAIGN_WORKSPACE, else the current folder).",
            metavar="DIR",
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Store URL, e.g. postgresql://user@host/db (default: $CAMPAIGN_DB, \\[store] url, "
            "else .campaign/state.db).",
            metavar="URL",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Global options come before the command, as in git."""
    ctx.obj = common.State(directory=directory, db=db)


from campaign.cli import workspace as _workspace  # noqa: E402

_workspace.register(app)

from campaign.cli import cases as _cases  # noqa: E402
from campaign.cli import controls as _controls  # noqa: E402
from campaign.cli import log as _log  # noqa: E402
from campaign.cli import outbox as _outbox  # noqa: E402
from campaign.cli import pdf as _pdf  # noqa: E402
from campaign.cli import receipts as _receipts  # noqa: E402
from campaign.cli import review as _review  # noqa: E402
from campaign.cli import serve as _serve  # noqa: E402
from campaign.cli import sign as _sign  # noqa: E402
from campaign.cli import team as _team  # noqa: E402

_outbox.register(app)
_controls.register(app)
_log.register(app)
_receipts.register(app)
_team.register(app)
_pdf.register(app)
_cases.register(app)
_sign.register(app)
_serve.register(app)
_review.register(app)


_command: Any = None


def command() -> Any:
    """The click command tree of the app, built once, with the help convention applied
    (campaign/cli/helpformat.py)."""
    global _command
    if _command is None:
        from campaign.cli.helpformat import tidy

        _command = tidy(typer.main.get_command(app))
    return _command


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and turn errors into one line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        result = command().main(args=args, prog_name="campaign", standalone_mode=False)
    except CampaignError as error:
        _print_error(error.message, error.hint)
        return error.exit_code
    except typer.Exit as error:
        return int(error.exit_code)
    except typer.Abort:
        common.err().print("aborted")
        return 130
    except typer.TyperException as error:
        ctx = getattr(error, "ctx", None)
        if type(error).__name__ == "NoArgsIsHelpError":
            # The help was printed while the error was made; no command is a usage error.
            return 2
        _reword(error)
        hint = f"see `{ctx.command_path} --help`" if ctx is not None else None
        _print_error(error.format_message(), hint if error.exit_code == 2 else None)
        return error.exit_code
    except KeyboardInterrupt:
        common.err().print("interrupted")
        return 130
    if isinstance(result, int):
        return result
    return 0


def _reword(error: Exception) -> None:
    """A bad option value that typer checked with pydantic: say it in our words
    (campaign.models.describe_error), not pydantic's."""
    cause = error.__cause__
    errors = getattr(cause, "errors", None)
    if callable(errors) and hasattr(error, "message"):
        from campaign.models import describe_error

        found = errors()
        if found:
            error.message = describe_error(found[0])


def _print_error(message: str, hint: str | None) -> None:
    console = common.err()
    console.print(f"[bold red]error:[/bold red] {common.plain(message)}")
    if hint:
        console.print(f"[dim]hint:[/dim] {common.plain(hint)}")


def run() -> None:
    """The console-script entry point."""
    sys.exit(main())
