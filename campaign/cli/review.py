"""`campaign report`: the campaign as one self-contained HTML file (or PDF) with charts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from campaign.cli.common import ForceOpt, out, plain, plural, state


def report(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option("--output", "-o", help="The file to write.", metavar="FILE")] = Path(
        "report.html"
    ),
    campaign: Annotated[
        str | None, typer.Option("--campaign", help="Only this campaign (default: every campaign).", metavar="NAME")
    ] = None,
    pdf: Annotated[bool, typer.Option("--pdf", help="Write a PDF (A4) instead of HTML.")] = False,
    force: ForceOpt = False,
    with_signatories: Annotated[
        bool,
        typer.Option(
            "--with-signatories", help="Name the supporters who signed each drive (by default the report names none)."
        ),
    ] = False,
    lang: Annotated[str, typer.Option("--lang", help="Language of the report: en or ru.", metavar="LANG")] = "en",
) -> None:
    """Write a report for a board, a donor or a rapporteur: counts per state, delivery,
    read and reply rates, a per-day chart, what waits and why, every letter, the signing
    drives.

    One HTML file with its charts inside (inline SVG): it loads nothing from anywhere, so
    it can be e-mailed, opened offline or printed. --pdf prints it to PDF. Refuses to
    overwrite a file unless --force.

    Example:

        campaign report --campaign peace-agreement -o report.html
    """
    from campaign.api import review as review_api

    ws = state(ctx).workspace()
    result = review_api.write_report(
        ws,
        review_api.ReportRequest(
            out=output, campaign=campaign, pdf=pdf, force=force, with_signatories=with_signatories, lang=lang
        ),
    )
    out().print(
        f"wrote {plain(str(result.path))}: {plural(len(result.campaigns), 'campaign')}, "
        f"{plural(result.letters, 'letter')}, {plural(result.drives, 'signing drive')}"
        + (f", {plural(result.named, 'supporter')} named" if with_signatories else "")
    )


def register(app: typer.Typer) -> None:
    from campaign.cli.outbox import REVIEW

    app.command("report", rich_help_panel=REVIEW)(report)
