"""Commands about what comes back: delivery reports, read receipts, replies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from campaign.cli import common
from campaign.cli.common import out, plain, print_json, state, warn
from campaign.wording import plural

receipts_app = typer.Typer(
    help="Delivery reports (DSNs), read receipts and replies: import them and match them to letters.\n\n"
    "Example:\n\n    campaign receipts import ~/Maildir/receipts",
    no_args_is_help=True,
)


@receipts_app.command("import")
def receipts_import(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help=".eml files, mbox files or Maildir folders.")],
) -> None:
    """Read reports and replies, match them to letters, and record them in the log.

    Importing the same reports again changes nothing. Other mail in a mailbox
    (newsletters, spam) is skipped and counted; reports that match no letter are kept
    and listed by `campaign receipts unmatched`.

    Example:

        campaign receipts import bounces.mbox ~/Maildir/.Receipts
    """
    from campaign import api

    ws = state(ctx).workspace()
    result = api.import_receipts(ws, paths)
    for w in result.warnings:
        warn(w)
    kinds = ", ".join(plural(n, k) for k, n in sorted(result.by_kind.items())) or "nothing new"
    out().print(f"{plural(result.items, 'message')} read: {plural(result.recorded, 'entry')} recorded ({kinds})")
    if result.already:
        out().print(f"{plural(result.already, 'report')} imported before: unchanged")
    if result.unmatched:
        out().print(f"{plural(result.unmatched, 'entry')} matching no letter: see `campaign receipts unmatched`")
    if result.suspicious:
        warn(
            f"{plural(result.suspicious, 'entry')} about letters that were never sent: kept as suspicious, "
            "nothing was changed; see `campaign receipts unmatched`"
        )
    for reason, n in sorted(result.skipped.items()):
        out().print(f"skipped {n}: {plain(reason)}")


@receipts_app.command("unmatched")
def receipts_unmatched(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List report entries that changed no letter: unmatched ones, and suspicious ones
    (about a letter that was never sent). They are kept, never dropped.

    Example:

        campaign receipts unmatched --json
    """
    from campaign import api

    ws = state(ctx).workspace()
    rows = api.unmatched_receipts(ws)
    if as_json:
        print_json(rows)
        return
    if not rows:
        out().print("every imported report matched a letter")
        return
    t = common.table("received (UTC)", "kind", "outcome", "recipient", "status", "source", "note")
    for r in rows:
        t.add_row(
            r["received_at"][:19].replace("T", " "),
            ("SUSPICIOUS " if r.get("suspicious_row") else "") + r["kind"],
            r["outcome"] or "",
            plain(r["final_recipient"] or ""),
            plain(r["status"] or ""),
            plain(r["source"] or ""),
            plain(r["note"] or ""),
        )
    out().print(t)


@receipts_app.command("fetch")
def receipts_fetch(
    ctx: typer.Context,
    move_to: Annotated[
        str | None,
        typer.Option("--move-to", help="File the messages that were imported into this folder.", metavar="FOLDER"),
    ] = None,
) -> None:
    """Fetch new reports and replies from the IMAP mailbox in \\[receipts.imap] and import them.

    TLS with certificate verification; the password comes from CAMPAIGN_IMAP_PASSWORD or
    the system keyring. It remembers what it processed (UIDVALIDITY and UID), so running
    it again fetches nothing new. It never deletes mail.

    Example:

        campaign receipts fetch --move-to Processed
    """
    from campaign import api

    ws = state(ctx).workspace()
    result = api.fetch_receipts(ws, move_to=move_to)
    imported = result.imported
    for w in imported.warnings:
        warn(w)
    kinds = ", ".join(plural(n, k) for k, n in sorted(imported.by_kind.items())) or "nothing new"
    out().print(
        f"{plural(result.fetched, 'new message')} fetched: {plural(imported.recorded, 'entry')} recorded ({kinds})"
    )
    for reason, n in sorted(imported.skipped.items()):
        out().print(f"skipped {n}: {plain(reason)}")
    if imported.unmatched:
        out().print(f"{plural(imported.unmatched, 'entry')} matching no letter: see `campaign receipts unmatched`")
    if move_to:
        out().print(f"moved {plural(result.moved, 'message')} to {plain(move_to)}")


def replies(
    ctx: typer.Context,
    campaign: Annotated[
        str | None, typer.Option("--campaign", help="Only replies to this campaign.", metavar="NAME")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List answers from institutions, and automatic replies (marked as such).

    Example:

        campaign replies --campaign peace-agreement
    """
    from dataclasses import asdict

    from campaign import api

    ws = state(ctx).workspace()
    rows = api.replies(ws, campaign)
    if as_json:
        print_json([asdict(r) for r in rows])
        return
    if not rows:
        out().print("no replies yet")
        return
    t = common.table("received (UTC)", "institution", "kind", "from", "subject", "letter id")
    for r in rows:
        kind = "automatic reply" if r.kind == "auto-reply" else "reply"
        t.add_row(
            r.received[:16].replace("T", " "),
            plain(r.recipient),
            kind,
            plain(r.sender),
            plain(r.reply_subject),
            str(r.message_row),
        )
    out().print(t)
    answered = len({r.message_row for r in rows if r.kind == "reply"})
    automatic = sum(1 for r in rows if r.kind == "auto-reply")
    out().print(f"{plural(answered, 'letter')} answered, {plural(automatic, 'automatic reply')}")


def register(app: typer.Typer) -> None:
    app.add_typer(receipts_app, name="receipts", rich_help_panel="Review: status, log and evidence")
    app.command("replies", rich_help_panel="Review: status, log and evidence")(replies)
