"""Commands about the workspace itself: init, recipients, letters, preview."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from campaign.cli import common
from campaign.cli.common import note, out, plain, print_json, state, warn
from campaign.wording import plural

recipients_app = typer.Typer(
    help="The institutions in recipients.yaml.\n\nExample:\n\n    campaign recipients list --tag un",
    no_args_is_help=True,
)
letters_app = typer.Typer(
    help="The letter templates in letters/.\n\nExample:\n\n    campaign letters check --strict",
    no_args_is_help=True,
)


class PreviewFormat(enum.StrEnum):
    text = "text"
    html = "html"
    eml = "eml"
    markdown = "markdown"


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Treat warnings as errors (exit 1).")]


def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create (may exist, must not hold these files).")],
) -> None:
    """Create a workspace: a commented campaign.toml, an example registry and letter.

    Refuses to overwrite existing files.

    Example:

        campaign init my-campaign && campaign -C my-campaign letters check
    """
    from campaign import api

    written = api.init_workspace(directory)
    for path in written:
        out().print(f"created {plain(str(path))}")
    out().print(
        f"next: edit {plain(str(directory / 'campaign.toml'))} and recipients.yaml, then "
        f"`campaign -C {plain(str(directory))} letters check`"
    )


@recipients_app.command("list")
def recipients_list(
    ctx: typer.Context,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", help="Only institutions with this tag (repeat: any of them)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List institutions with their languages and contacts.

    Example:

        campaign recipients list --tag un --tag osce
    """
    from campaign import api

    ws = state(ctx).workspace()
    recipients = api.list_recipients(ws, tag or [])
    if as_json:
        print_json([r.model_dump(mode="json") for r in recipients])
        return
    t = common.table("id", "name", "languages", "contacts", "tags")
    for r in recipients:
        contacts = "\n".join(c.email for c in r.contacts) or "[dim]postal only[/dim]"
        t.add_row(plain(r.id), plain(r.label), " ".join(r.languages), contacts, plain(" ".join(r.tags)))
    out().print(t)
    out().print(f"{plural(len(recipients), 'institution')}, {sum(1 for r in recipients if r.postal_only)} postal only")


SHOWN_PER_KIND = 10  # `recipients check` lists this many warnings of one kind, then counts the rest


@recipients_app.command("check")
def recipients_check(
    ctx: typer.Context,
    strict: StrictOpt = False,
    every: Annotated[
        bool,
        typer.Option("--all", help=f"List every warning (by default {SHOWN_PER_KIND} of a kind, then a count)."),
    ] = False,
) -> None:
    """Validate recipients.yaml and warn about unsourced or unconfirmed addresses.

    Confirm every address on the institution's own site before a real send, then set
    `checked:` to that date.

    Example:

        campaign recipients check --strict
    """
    from campaign import api

    ws = state(ctx).workspace()
    warnings = api.check_recipients(ws)
    shown: dict[str, int] = {}
    for w in warnings:
        shown[w.message] = shown.get(w.message, 0) + 1
        if every or shown[w.message] <= SHOWN_PER_KIND:
            warn(str(w))
    for message, count in shown.items():
        if not every and count > SHOWN_PER_KIND:
            warn(f"… and {count - SHOWN_PER_KIND:,} more: {message} (`campaign recipients check --all` lists them)")
    count = len(api.list_recipients(ws))
    out().print(f"recipients.yaml: {plural(count, 'institution')} valid, {plural(len(warnings), 'warning')}")
    if strict and warnings:
        raise typer.Exit(1)


@recipients_app.command("import")
def recipients_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A CSV file (or .xlsx workbook) with one row per contact.")],
    update: Annotated[
        bool, typer.Option("--update", help="Change institutions whose id recipients.yaml already has.")
    ] = False,
    encoding: Annotated[
        str | None,
        typer.Option(
            "--encoding", help="The file's encoding, when it is neither UTF-8 nor Windows-1251.", metavar="NAME"
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row and show what would change; write nothing.")
    ] = False,
) -> None:
    """Add institutions from a spreadsheet to recipients.yaml, keeping its comments.

    Every row is checked with the same rules and words as recipients.yaml (errors name the
    row and column) before anything is written; then the new institutions are appended.
    The file may be UTF-8 (with or without a byte-order mark) or Windows-1251, as Excel
    writes CSV in Russian locales, separated by commas or semicolons. Rows with the same
    id add contacts to one institution. An id already in recipients.yaml is refused
    unless --update.

    Columns: id, name (or name.en, name.ru, ...), tags, languages, country, timezone,
    website, postal_address (or postal_address.LANG), source, checked, max_per_day,
    office_hours ("mon-fri 09:00-17:00"), field.KEY; for the contact: email,
    contact_name, role, salutation (or salutation.LANG), contact_source,
    contact_checked, contact_field.KEY.

    Example:

        campaign recipients import institutions.csv --dry-run
    """
    from campaign.api import recipients as recipients_api

    ws = state(ctx).workspace()
    report = recipients_api.import_recipients(ws, file, update=update, encoding=encoding, dry_run=dry_run)
    t = common.table("id", "name", "contacts", "rows", "recipients.yaml")
    for row in report.institutions:
        rows = ", ".join(map(str, row.rows))
        action = f"would be {row.action}" if dry_run else row.action
        t.add_row(plain(row.id), plain(row.name), str(row.contacts), rows, action)
    out().print(t)
    added, updated = report.count("added"), report.count("updated")
    verb = "would add" if dry_run else "added"
    summary = f"{verb} {plural(added, 'institution')}"
    if updated:
        summary += f", {'would update' if dry_run else 'updated'} {updated}"
    out().print(f"{summary} (read {plain(report.file)} as {report.read_as})")
    if not dry_run:
        out().print("next: `campaign recipients check`, then `campaign letters check`")


@recipients_app.command("export")
def recipients_export(
    ctx: typer.Context,
    csv_: Annotated[
        bool, typer.Option("--csv", help="Write CSV (the default, and the only format so far).", show_default=False)
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write to this file (UTF-8 with a byte-order mark for spreadsheets) instead of printing.",
            metavar="FILE",
        ),
    ] = None,
    force: common.ForceOpt = False,
) -> None:
    """Write recipients.yaml as CSV: one row per contact, every translation and field in its
    own column, in the columns `recipients import` reads.

    Example:

        campaign recipients export --csv -o institutions.csv
    """
    import sys

    from campaign.api import recipients as recipients_api

    ws = state(ctx).workspace()
    text, count = recipients_api.export_recipients(ws, output, force=force)
    if output is None:
        sys.stdout.write(text)
        return
    out().print(f"wrote {plain(str(output))}: {plural(count, 'institution')}")


@letters_app.command("list")
def letters_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List letters and the languages each is written in.

    Example:

        campaign letters list --json
    """
    from campaign import api

    ws = state(ctx).workspace()
    letters = api.list_letters(ws)
    if as_json:
        print_json([{"id": x.id, "languages": x.languages, "description": x.description} for x in letters])
        return
    t = common.table("letter", "languages", "description")
    for letter in letters:
        t.add_row(plain(letter.id), " ".join(letter.languages), plain(letter.description or ""))
    out().print(t)


@letters_app.command("check")
def letters_check(
    ctx: typer.Context,
    letter: Annotated[list[str] | None, typer.Argument(help="Letters to check (default: all).")] = None,
    strict: StrictOpt = False,
    case: Annotated[
        list[str] | None,
        typer.Option(
            "--case", help="Render with this case (repeat): a field the case lacks is an error.", metavar="ID"
        ),
    ] = None,
    to: Annotated[
        list[str] | None,
        typer.Option(
            "--to",
            help="Only for this institution (repeat); with --case, default: those the case is addressed to.",
            metavar="ID",
        ),
    ] = None,
) -> None:
    """Render every letter for every institution and language it would go out in.

    Reports all problems at once, each once, naming the institutions it concerns:
    undefined variables (with template and line), missing subjects, missing
    translations; with --case, every case field a template prints that the case lacks,
    rendered for the institutions the case is addressed to (or --to).

    Example:

        campaign letters check peace-agreement --strict
    """
    from campaign import api
    from campaign.api import cases as cases_api

    ws = state(ctx).workspace()
    report = (
        cases_api.check_letters(ws, letter or [], case, to=to or [])
        if case
        else api.check_letters(ws, letter or [], recipient_ids=to or [])
    )
    for w in report.warnings:
        warn(w)
    for problem in report.problems:
        common.err().print(f"[bold red]error:[/bold red] {plain(problem)}")
    out().print(
        f"{plural(report.rendered, 'rendering')} checked, {plural(len(report.problems), 'error')}, "
        f"{plural(len(report.warnings), 'warning')}"
    )
    if report.problems or (strict and report.warnings):
        raise typer.Exit(1)


def preview(
    ctx: typer.Context,
    letter: Annotated[str, typer.Argument(help="Letter id (a folder in letters/).")],
    to: Annotated[str, typer.Option("--to", help="Institution id from recipients.yaml.")],
    lang: Annotated[
        str | None, typer.Option("--lang", help="Language to use instead of the institution's first.")
    ] = None,
    fmt: Annotated[
        PreviewFormat, typer.Option("--format", help="text, html, markdown, or eml (the MIME bytes).")
    ] = PreviewFormat.text,
    contact: Annotated[str | None, typer.Option("--contact", help="Contact e-mail (default: the first).")] = None,
    campaign: Annotated[
        str | None,
        typer.Option(
            "--campaign", help="With --format eml: the campaign of the queued letter (default: any).", metavar="NAME"
        ),
    ] = None,
) -> None:
    """Show what one institution would receive.

    With --format eml, a letter that is already queued is shown as the exact bytes that
    are (or will be) sent; otherwise the output is a fresh rendering, and a note on
    stderr says so.

    Example:

        campaign preview peace-agreement --to ohchr --lang ru --format eml
    """
    from campaign import api

    ws = state(ctx).workspace()
    shown = api.preview(ws, letter, to, lang=lang, fmt=fmt.value, contact_email=contact, campaign=campaign)
    for w in shown.rendered.warnings:
        warn(w)
    if shown.note:
        note(f"note: {shown.note}")
    import sys

    text = shown.text
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


SET_UP = "Set up: the workspace, institutions and letters"


def register(app: typer.Typer) -> None:
    app.command("init", rich_help_panel=SET_UP)(init)
    app.add_typer(recipients_app, name="recipients", rich_help_panel=SET_UP)
    app.add_typer(letters_app, name="letters", rich_help_panel=SET_UP)
    app.command("preview", rich_help_panel=SET_UP)(preview)
