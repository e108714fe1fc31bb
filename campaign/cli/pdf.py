"""Commands for signed PDF letters: keys init/issue, pdf export/batch/verify."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from campaign.cli import common
from campaign.cli.common import ForceOpt, err, out, plain, state
from campaign.wording import plural

keys_app = typer.Typer(
    help="The organisation's root certificate, its seal key, and supporters' certificates.\n\n"
    "Example:\n\n    campaign keys init",
    no_args_is_help=True,
)
pdf_app = typer.Typer(
    help="Letters as signed PDFs (PAdES) that anyone can verify.\n\n"
    'Example:\n\n    campaign pdf export peace-agreement --to ohchr --signer "Maria Ivanova" -o letter.pdf',
    no_args_is_help=True,
)


def _passphrase(var: str, prompt: str, *, confirm: bool = False) -> str:
    from campaign import api
    from campaign.errors import SecretError

    value = api.passphrase_from_env(var)
    if value is not None:
        return value
    if not common.is_terminal():
        raise SecretError(
            f"no passphrase: {var} is not set and there is no terminal to ask on",
            hint=f"set {var} in the environment of this command",
        )
    return str(typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm))


@keys_app.command("init")
def keys_init(ctx: typer.Context) -> None:
    """Create the organisation's root certificate and signing ("seal") key in .campaign/keys/.

    The passphrase comes from CAMPAIGN_KEY_PASSPHRASE or a prompt. Publish the printed
    fingerprint (website, social media) so that anyone can check letters you sign.

    Example:

        campaign keys init
    """
    from campaign import api
    from campaign.api import keys as keys_api

    ws = state(ctx).workspace()
    passphrase = _passphrase("CAMPAIGN_KEY_PASSPHRASE", "Passphrase for the organisation's keys", confirm=True)
    fingerprint = api.keys_init(ws, passphrase)
    out().print(f"created {plain(ws.relative(api.keys_folder(ws)))}/ (files mode 0600)")
    out().print(
        f"wrote {plain(keys_api.ROOT_FILE)}: the root certificate; give it to the institutions you write to "
        f"(they check letters with `campaign pdf verify --trust {keys_api.ROOT_FILE}`)"
    )
    out().print(f"root certificate fingerprint (SHA-256), publish it: {fingerprint}")


@keys_app.command("export-root")
def keys_export_root(
    ctx: typer.Context,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write it (default: organisation-root.pem here).", metavar="FILE"),
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Write the organisation's root certificate for institutions to trust.

    The certificate is public: send it with your letters or publish it, together with the
    fingerprint printed here, so anyone can check a signed letter with
    `campaign pdf verify letter.pdf --trust organisation-root.pem`.

    Example:

        campaign keys export-root -o organisation-root.pem
    """
    from campaign.api import keys as keys_api

    ws = state(ctx).workspace()
    path, fingerprint = keys_api.export_root(ws, output, force=force)
    out().print(f"wrote {plain(str(path))} (public)")
    out().print(f"root certificate fingerprint (SHA-256): {fingerprint}")


@keys_app.command("issue")
def keys_issue(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="The supporter's name, as it will appear on the certificate.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The PKCS#12 file to write (e.g. supporter.p12).", metavar="FILE")
    ],
    email: Annotated[str | None, typer.Option("--email", help="Optional e-mail for the certificate.")] = None,
    force: ForceOpt = False,
) -> None:
    """Issue a supporter certificate signed by the organisation's root, as a .p12 file.

    Passphrases: CAMPAIGN_KEY_PASSPHRASE (the organisation's keys) and
    CAMPAIGN_P12_PASSPHRASE (protects the supporter's file), or prompts. Give the file and
    its passphrase to the supporter by separate ways.

    Example:

        campaign keys issue --name "Maria Ivanova" -o maria.p12
    """
    from campaign import api

    ws = state(ctx).workspace()
    passphrase = _passphrase("CAMPAIGN_KEY_PASSPHRASE", "Passphrase for the organisation's keys")
    p12 = _passphrase("CAMPAIGN_P12_PASSPHRASE", "Passphrase to protect the supporter's file", confirm=True)
    path = api.keys_issue(ws, passphrase, name=name, email=email, p12_passphrase=p12, out=output, force=force)
    out().print(f"wrote {plain(str(path))} (mode 0600) for {plain(name)}")


@pdf_app.command("export")
def pdf_export(
    ctx: typer.Context,
    letter: Annotated[str, typer.Argument(help="Letter id (a folder in letters/).")],
    to: Annotated[str, typer.Option("--to", help="Institution id from recipients.yaml.", metavar="ID")],
    signer: Annotated[str, typer.Option("--signer", help="The supporter's name, printed under the letter.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The PDF to write.", metavar="FILE")],
    title: Annotated[str | None, typer.Option("--title", help="The supporter's title or role.")] = None,
    city: Annotated[str | None, typer.Option("--city", help="Where the supporter signs.")] = None,
    signature_image: Annotated[
        Path | None, typer.Option("--signature-image", help="A PNG of a handwritten signature.", metavar="PNG")
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option("--key", help="The supporter's own .p12 (default: the organisation seal).", metavar="FILE.p12"),
    ] = None,
    lang: Annotated[str | None, typer.Option("--lang", help="Language instead of the institution's first.")] = None,
    force: ForceOpt = False,
) -> None:
    """Export one letter to one institution as a signed PDF (visible and PAdES signature).

    With --key the supporter's own certificate signs (passphrase: CAMPAIGN_P12_PASSPHRASE
    or a prompt); without it the organisation seal signs (CAMPAIGN_KEY_PASSPHRASE).

    Example:

        campaign pdf export peace-agreement --to ohchr --signer "Maria Ivanova" --key maria.p12 -o letter.pdf
    """
    from campaign import api

    ws = state(ctx).workspace()
    if key is not None:
        passphrase = _passphrase("CAMPAIGN_P12_PASSPHRASE", f"Passphrase of {key}")
    else:
        passphrase = _passphrase("CAMPAIGN_KEY_PASSPHRASE", "Passphrase for the organisation's keys")
    path = api.pdf_export(
        ws,
        letter,
        to,
        api.SignerInput(signer, title, city, signature_image),
        output,
        key_file=key,
        passphrase=passphrase,
        lang=lang,
        force=force,
    )
    out().print(f"wrote {plain(str(path))}: signed by {'your key' if key else 'the organisation seal'}")
    out().print(f"check it: campaign pdf verify {plain(str(path))}")


@pdf_app.command("batch")
def pdf_batch(
    ctx: typer.Context,
    letter: Annotated[str, typer.Argument(help="Letter id (a folder in letters/).")],
    supporters: Annotated[
        Path, typer.Option("--supporters", help="CSV with columns name, title, city, signature_image.", metavar="CSV")
    ],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Folder for the signed PDFs.", metavar="DIR")],
    to: Annotated[list[str] | None, typer.Option("--to", help="Institution id (repeat).", metavar="ID")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Institutions with this tag (repeat: any).", metavar="TAG")
    ] = None,
    everyone: Annotated[bool, typer.Option("--all", help="Every institution in recipients.yaml.")] = False,
    zip_: Annotated[bool, typer.Option("--zip", help="Also pack the individually signed files into one .zip.")] = False,
    print_file: Annotated[
        Path | None,
        typer.Option(
            "--print-file", help="Also write all letters, unsigned, into one PDF for printing.", metavar="FILE.pdf"
        ),
    ] = None,
    processes: Annotated[
        int | None, typer.Option("--processes", min=1, help="Worker processes (default: number of CPUs).")
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images", help="The folder signature_image paths are relative to (default: the CSV's).", metavar="DIR"
        ),
    ] = None,
    force: ForceOpt = False,
) -> None:
    """One organisation-sealed PDF per supporter and institution.

    supporters.csv is UTF-8 with a header; `name` is required, `title`, `city` and
    `signature_image` (a PNG path relative to the CSV's folder, or to --images DIR,
    and never outside it) are optional. A bad row is reported with its line number
    and nothing is written.

    Example:

        campaign pdf batch peace-agreement --tag un --supporters supporters.csv --out-dir signed --zip
    """
    from campaign import api

    ws = state(ctx).workspace()
    passphrase = _passphrase("CAMPAIGN_KEY_PASSPHRASE", "Passphrase for the organisation's keys")
    progress = None
    if common.is_terminal():
        from rich.progress import Progress

        progress = Progress(console=err())
        progress.start()
        task = progress.add_task("signing", total=None)

    def tick(done: int, total: int) -> None:
        if progress is not None:
            progress.update(task, completed=done, total=total)

    try:
        result = api.pdf_batch(
            ws,
            letter,
            supporters,
            out_dir,
            ids=to or [],
            tags=tag or [],
            passphrase=passphrase,
            everyone=everyone,
            zip_output=zip_,
            print_file=print_file,
            processes=processes,
            on_progress=tick,
            images=images,
            force=force,
        )
    finally:
        if progress is not None:
            progress.stop()
    out().print(f"wrote {plural(len(result.files), 'signed letter')} to {plain(str(out_dir))}/")
    if result.zip_file:
        out().print(f"zip of the signed files: {plain(str(result.zip_file))}")
    if result.print_file:
        out().print(f"unsigned print file: {plain(str(result.print_file))}")


@pdf_app.command("verify")
def pdf_verify(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Signed PDF letters.")],
    trust: Annotated[
        list[Path] | None,
        typer.Option("--trust", help="A root certificate to trust (default: this workspace's).", metavar="ROOT.pem"),
    ] = None,
) -> None:
    """Check signed letters: who signed, when, and whether each is intact, trusted and unmodified.

    Any byte after the signed part of the file is reported and what it changed is named
    (document information, metadata, bytes outside the document). Exit 1 when any file
    fails. Works without a workspace when --trust is given.

    Example:

        campaign pdf verify letter.pdf --trust organisation-root.pem
    """
    from campaign import api
    from campaign.errors import CampaignError, SelectionError
    from campaign.pdf import ASSURANCE

    try:
        ws = state(ctx).workspace()
    except CampaignError as error:
        if not trust:
            raise SelectionError(
                error.message,
                hint="outside a workspace, pass --trust ROOT.pem: the organisation's root certificate "
                "(`campaign keys export-root` writes it)",
            ) from None
        ws = None
    results = api.pdf_verify(ws, files, trust or [])
    failed = 0
    for r in results:
        if isinstance(r, api.UnreadableFile):
            err().print(f"[bold red]error:[/bold red] {plain(r.message)}")
            if r.hint:
                err().print(f"[dim]hint:[/dim] {plain(r.hint)}")
            failed += 1
            continue
        mark = "[green]OK[/green]" if r.ok else "[bold red]NOT OK[/bold red]"
        out().print(f"{mark}  {plain(r.file)}")
        when = r.signing_time.strftime("%Y-%m-%d %H:%M UTC") if r.signing_time else "unknown"
        out().print(f"    signed by: {plain(r.signer or 'unknown')}, at {when}")
        out().print(f"    intact (not changed since signing): {'yes' if r.intact else 'NO'}")
        out().print(f"    trusted (certificate from the organisation you trust): {'yes' if r.trusted else 'NO'}")
        out().print(f"    unmodified (nothing added after the signature): {'yes' if r.unmodified else 'NO'}")
        if r.proof is not None:
            verdict = "matches this document" if r.proof_ok else "DOES NOT match this document"
            out().print(f"    signing-page proof (QR payload in the metadata): {verdict}")
            for key in ("drive", "letter_sha256", "commitment", "count", "root", "key_fingerprint"):
                if key in r.proof:
                    out().print(f"      {key}: {plain(r.proof[key])}")
        for reason in r.reasons:
            out().print(f"    why: {plain(reason)}")
        for found in r.after_signing:
            out().print(f"    after the signature: {plain(found)}")
        failed += 0 if r.ok else 1
    if failed < len(results):
        out().print(f"[dim]{plain(ASSURANCE)}[/dim]")
    if failed:
        if len(results) > 1:
            out().print(f"{failed} of {plural(len(results), 'file')} did not verify")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(pdf_app, name="pdf", rich_help_panel="Signed PDF letters")
    app.add_typer(keys_app, name="keys", rich_help_panel="Signed PDF letters")
