"""Commands for signing drives: sign keygen/open/list/review/remove/close/export/prove/verify."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from campaign.cli import common
from campaign.cli.common import ForceOpt, err, out, plain, state

sign_app = typer.Typer(
    help="Signing drives: supporters sign a letter in their browser (see `campaign serve`).\n\n"
    "Example:\n\n    campaign sign open peace-agreement --to ohchr --allow-pseudonyms --fields city",
    no_args_is_help=True,
)


class ExportFormat(enum.StrEnum):
    csv = "csv"
    json = "json"


def _passphrase(var: str, prompt: str) -> str:
    from campaign.cli.pdf import _passphrase as ask

    return ask(var, prompt)


@sign_app.command("keygen")
def keygen(
    ctx: typer.Context,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the private half (keep it offline).", metavar="FILE")
    ],
    force: ForceOpt = False,
) -> None:
    """Create the names key that seals pseudonymous signers' real names.

    The public half goes to .campaign/keys/names.pub; the private half to FILE (mode
    0600), which `campaign serve` never reads: keep it on a USB stick or another
    machine. Only `sign review --names-key FILE` opens sealed names.

    Example:

        campaign sign keygen -o /media/usb/names.key
    """
    from campaign.api import signing as signing_api

    ws = state(ctx).workspace()
    path = signing_api.names_keygen(ws, output, force=force)
    out().print(f"wrote {plain(str(path))} (mode 0600): keep it offline; without it sealed names cannot be read")
    out().print("public half: .campaign/keys/names.pub")


@sign_app.command("open")
def open_drive(
    ctx: typer.Context,
    letter: Annotated[str, typer.Argument(help="Letter id (a folder in letters/).")],
    to: Annotated[list[str] | None, typer.Option("--to", help="Institution id (repeat).", metavar="ID")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Institutions with this tag (repeat: any).", metavar="TAG")
    ] = None,
    closes: Annotated[
        str | None,
        typer.Option(
            "--closes", help="Stop accepting signatures: 2026-12-31, or a time with its zone.", metavar="DATE"
        ),
    ] = None,
    allow_pseudonyms: Annotated[
        bool, typer.Option("--allow-pseudonyms", help="Supporters may sign as e.g. “Resident of Khujand”.")
    ] = False,
    fields: Annotated[
        str | None, typer.Option("--fields", help="Optional fields to ask for: city,title.", metavar="LIST")
    ] = None,
    passphrase: Annotated[
        bool,
        typer.Option("--passphrase", help="Ask for a meeting passphrase (CAMPAIGN_DRIVE_PASSPHRASE, or a prompt)."),
    ] = False,
    rate: Annotated[
        int, typer.Option("--rate", help="At most this many signatures per minute (against floods).")
    ] = 120,
    name: Annotated[
        str | None, typer.Option("--name", help="The drive's name (default: LETTER-N).", metavar="NAME")
    ] = None,
) -> None:
    """Open a signing drive and print its link (/s/<token>, 192 random bits).

    The letter is rendered now, for the first institution in its language, and frozen:
    supporters read and sign exactly that text, with a translation into their language
    beside it. The institutions must read the letter in one language (open one drive
    per language). Serve the link with `campaign serve`.

    Example:

        campaign sign open peace-agreement --to ohchr --to wgad --closes 2026-12-31 --allow-pseudonyms
    """
    import os

    from campaign.api import signing as signing_api
    from campaign.errors import SecretError

    ws = state(ctx).workspace()
    secret = None
    if passphrase:
        secret = os.environ.get("CAMPAIGN_DRIVE_PASSPHRASE") or None
        if secret is None:
            if not common.is_terminal():
                raise SecretError(
                    "--passphrase: CAMPAIGN_DRIVE_PASSPHRASE is not set and there is no terminal to ask on",
                    hint="set CAMPAIGN_DRIVE_PASSPHRASE for this command",
                )
            secret = str(typer.prompt("Meeting passphrase", hide_input=True, confirmation_prompt=True))
    request = signing_api.OpenRequest(
        letter=letter,
        ids=to or [],
        tags=tag or [],
        closes=closes,
        allow_pseudonyms=allow_pseudonyms,
        fields=[f.strip() for f in fields.split(",") if f.strip()] if fields else [],
        passphrase=secret,
        rate=rate,
        name=name,
    )
    drive = signing_api.open_drive(ws, request)
    out().print(f"opened drive {plain(drive.name)} for {plain(', '.join(drive.institutions))}")
    out().print(f"text ({drive.text_lang}) SHA-256: {drive.text_sha256}")
    out().print(f"link: {plain(drive.url())}")
    out().print("serve it: campaign serve   (add --lan for a meeting: HTTPS on this machine's LAN address)")


@sign_app.command("list")
def list_drives(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """Signing drives: state, signatures so far, deadline, link.

    Example:

        campaign sign list
    """
    from campaign.api import signing as signing_api

    drives = signing_api.list_drives(state(ctx).workspace())
    if as_json:
        common.print_json(
            [
                {
                    "name": d.name, "letter": d.letter, "status": d.status, "signed": d.signed, "count": d.count,
                    "root": d.root, "institutions": d.institutions, "closes_at": d.closes_at, "path": d.path,
                }
                for d in drives
            ]
        )  # fmt: skip
        return
    if not drives:
        out().print("no signing drives yet: campaign sign open LETTER --to ID")
        return
    t = common.table("drive", "letter", "state", "signed", "closes", "link")
    for d in drives:
        t.add_row(plain(d.name), plain(d.letter), d.status, str(d.signed or 0), d.closes_at or "", plain(d.path))
    out().print(t)


@sign_app.command("review")
def review(
    ctx: typer.Context,
    drive: Annotated[str, typer.Argument(help="The drive's name.")],
    names_key: Annotated[
        Path | None,
        typer.Option("--names-key", help="The private names key, to show sealed real names.", metavar="FILE"),
    ] = None,
) -> None:
    """The drive's signatures, for the organiser to check before closing.

    A public link invites fakes: remove them with `campaign sign remove DRIVE ID…`.
    Pseudonymous signers' real names show as (sealed) unless --names-key is given.

    Example:

        campaign sign review peace-agreement-1
    """
    from campaign.api import signing as signing_api

    result = signing_api.review(state(ctx).workspace(), drive, names_key=names_key)
    d = result.drive
    out().print(f"drive {plain(d.name)}: {d.status}, {len(result.rows)} signatures, text {d.text_sha256[:16]}…")
    t = common.table("#", "name", "real name", "city", "title", "signature", "read in", "signed on")
    for row in result.rows:
        read = row.text_lang + (f" + {row.translation_lang}" if row.translation_lang else "")
        t.add_row(
            str(row.id),
            plain(row.name) + (" (pseudonym)" if row.pseudonymous else ""),
            plain(row.real_name or ""),
            plain(row.city or ""),
            plain(row.title or ""),
            row.signature,
            read,
            row.signed_on,
        )
    out().print(t)


@sign_app.command("remove")
def remove(
    ctx: typer.Context,
    drive: Annotated[str, typer.Argument(help="The drive's name.")],
    ids: Annotated[list[int], typer.Argument(help="Signature numbers from `sign review`.")],
) -> None:
    """Remove signatures (fakes, duplicates) from an open drive; their data is deleted.

    Example:

        campaign sign remove peace-agreement-1 4 7
    """
    from campaign.api import signing as signing_api

    removed = signing_api.remove(state(ctx).workspace(), drive, ids)
    out().print(f"removed {removed.count} signature(s) from {plain(drive)}")
    if removed.leftover:
        err().print(
            f"warning: {plain(removed.leftover)}; they are erased at the next deletion, or when the last "
            "program using the workspace stops (e.g. `campaign serve`)"
        )


@sign_app.command("close")
def close(
    ctx: typer.Context,
    drive: Annotated[str, typer.Argument(help="The drive's name.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the sealed cover page here.", metavar="FILE")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Close a drive: freeze it, count the signatures, compute the Merkle root, and seal
    the cover page "N supporters signed; root …" (passphrase: CAMPAIGN_KEY_PASSPHRASE).

    Send it with `campaign queue LETTER --drive DRIVE`.

    Example:

        campaign sign close peace-agreement-1 -o cover.pdf
    """
    from campaign.api import signing as signing_api

    ws = state(ctx).workspace()
    passphrase = _passphrase("CAMPAIGN_KEY_PASSPHRASE", "Passphrase for the organisation's keys")
    result = signing_api.close_drive(ws, drive, passphrase, cover_out=output, force=force)
    out().print(f"closed {plain(drive)}: {result.count} signatures")
    out().print(f"Merkle root: {result.root}")
    if result.cover:
        out().print(f"cover page: {plain(str(result.cover))}")
    out().print(f"publish: campaign sign export {plain(drive)} --format json -o {plain(drive)}.json")


@sign_app.command("export")
def export(
    ctx: typer.Context,
    drive: Annotated[str, typer.Argument(help="The drive's name.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The file to write.", metavar="FILE")],
    fmt: Annotated[
        ExportFormat,
        typer.Option("--format", help="csv: signatories for `pdf batch`; json: the public, name-free record."),
    ] = ExportFormat.csv,
    force: ForceOpt = False,
) -> None:
    """Export a drive: signatories as CSV (for `campaign pdf batch`), or the public
    record of a closed drive as JSON (commitments, count, root: no names).

    Example:

        campaign sign export peace-agreement-1 --format json -o peace-agreement-1.json
    """
    from campaign.api import signing as signing_api

    files = signing_api.export_drive(state(ctx).workspace(), drive, output, fmt=fmt.value, force=force)
    out().print(f"wrote {plain(str(files[0]))}" + (f" and {len(files) - 1} signature images" if len(files) > 1 else ""))


@sign_app.command("prove")
def prove(
    ctx: typer.Context,
    receipt: Annotated[str, typer.Argument(help="The receipt code (campaign-sign-v1:…).")],
    export_file: Annotated[
        Path | None, typer.Option("--export", help="Check offline against a drive export (JSON).", metavar="FILE")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="The name signed with: check the commitment opens to it.")
    ] = None,
) -> None:
    """Show that a receipt's signature is counted under the drive's root (inclusion proof).

    Example:

        campaign sign prove campaign-sign-v1:peace-agreement-1:… --export peace-agreement-1.json
    """
    from campaign.api import signing as signing_api
    from campaign.errors import CampaignError

    ws = None
    if export_file is None:
        ws = state(ctx).workspace()
    else:
        try:
            ws = state(ctx).workspace()
        except CampaignError:
            ws = None
    result = signing_api.prove(ws, receipt, export=export_file, name=name)
    mark = "[green]included[/green]" if result.included else "[bold red]NOT included[/bold red]"
    out().print(f"{mark}: leaf {result.index + 1} of {result.size} in drive {plain(result.drive)}")
    out().print(f"commitment: {result.commitment}")
    out().print(f"root: {result.root}" + ("" if result.closed else " (the drive is still open: not final)"))
    for n, node in enumerate(result.path, start=1):
        out().print(f"  path {n}: {node}")
    if result.name_matches is not None:
        out().print("name: " + ("the commitment opens to this name" if result.name_matches else "DOES NOT match"))
    if not result.included or result.name_matches is False:
        raise typer.Exit(1)


@sign_app.command("verify")
def verify(
    export_file: Annotated[Path, typer.Argument(help="A drive export (JSON) from `sign export --format json`.")],
) -> None:
    """Recompute a drive's Merkle root and count from its export, offline.

    Example:

        campaign sign verify peace-agreement-1.json
    """
    from campaign.api import signing as signing_api

    check = signing_api.verify_export(export_file)
    e = check.export
    if check.ok:
        out().print(f"[green]OK[/green]  {plain(e.drive)}: {e.count} signatures, root {e.root}")
    else:
        out().print(f"[bold red]NOT OK[/bold red]  {plain(e.drive)}")
        for problem in check.problems:
            err().print(f"    {plain(problem)}")
        raise typer.Exit(1)
    out().print(f"text SHA-256 {e.letter_sha256}; key {e.key_fingerprint}")
    out().print(
        "[dim]This shows the count and root follow from the listed commitments; each supporter checks their own "
        "with `campaign sign prove`. It does not prove each commitment is a real person.[/dim]"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(sign_app, name="sign", rich_help_panel="Signing drives")
