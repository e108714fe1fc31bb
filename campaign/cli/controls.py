"""Managing a live campaign: cancel, pause, resume."""

from __future__ import annotations

from typing import Annotated

import typer

from campaign.cli import common
from campaign.cli.common import note, out, plain, state
from campaign.wording import plural

SENDING = "Send: queue, schedule, send and follow up"  # the panel of cli/outbox.py


def cancel(
    ctx: typer.Context,
    ids: Annotated[list[int] | None, typer.Argument(help="Letter ids (see `campaign log`).", metavar="[ID]...")] = None,
    to: Annotated[
        list[str] | None, typer.Option("--to", help="The letters to this institution (repeat).", metavar="ID")
    ] = None,
    campaign: Annotated[
        str | None, typer.Option("--campaign", help="The letters of this campaign.", metavar="NAME")
    ] = None,
    everyone: Annotated[bool, typer.Option("--all", help="Every letter not yet sent (asks first).")] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why, for the log (e.g. 'released from prison').", metavar="TEXT")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Cancel letters that are not sent yet: queued, deferred or held.

    A cancelled letter is final: it is never sent, and the log records who was not
    written to and why. A letter in flight right now is not touched (the command says
    so); letters already sent stay as they are. Choose letters by id, by --to
    institution, by --campaign, or everything with --all.

    Example:

        campaign cancel --campaign peace-agreement --to un-upr --reason "address wrong"
        campaign cancel 12 13
    """
    from campaign.api import controls

    request = controls.CancelRequest(
        ids=tuple(ids or ()), recipients=tuple(to or ()), campaign=campaign, everyone=everyone, reason=reason
    )
    controls.check_cancel(request)
    ws = state(ctx).workspace()
    if everyone and not yes:
        if not common.is_terminal():
            common.err().print("[bold red]error:[/bold red] refusing to cancel everything without confirmation")
            common.err().print("[dim]hint:[/dim] pass --yes to cancel without asking")
            raise typer.Exit(1)
        scope = f"in {campaign}" if campaign else "in every campaign"
        if not typer.confirm(f"Cancel every letter not yet sent {scope}?", default=False):
            out().print("nothing cancelled")
            raise typer.Exit(1)
    result = controls.cancel(ws, request)
    for row in result.cancelled:
        out().print(f"cancelled: {row['id']} {plain(row['recipient'])} <{plain(row['email'])}> (was {row['status']})")
    for row in result.in_flight:
        note(f"not cancelled: {row['id']} {plain(row['recipient'])} is being sent right now")
    if result.final and not everyone:
        for row in result.final:
            note(f"not cancelled: {row['id']} {plain(row['recipient'])} is already {row['status']}")
    out().print(f"{common.plural(len(result.cancelled), 'letter')} cancelled")


def pause(
    ctx: typer.Context,
    campaign: Annotated[
        str | None, typer.Option("--campaign", help="Pause this campaign (default: every campaign).", metavar="NAME")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why, for the log.", metavar="TEXT")] = None,
) -> None:
    """Stop sending a campaign until `campaign resume`.

    The pause lives in the store, so every sender sharing it sees it: a send that is
    running stops taking this campaign's letters at once and finishes those in flight;
    later sends skip the campaign and say so. Nothing is cancelled.

    Example:

        campaign pause --campaign peace-agreement --reason "wait for the court ruling"
    """
    from campaign.api import controls

    ws = state(ctx).workspace()
    changed = controls.pause(ws, campaign, reason)
    what = f"campaign {plain(campaign)}" if campaign else "every campaign"
    out().print(f"paused {what}" if changed else f"{what} was paused already")


def resume(
    ctx: typer.Context,
    campaign: Annotated[
        str | None,
        typer.Option(
            "--campaign", help="Resume this campaign (default: lift the pause of every campaign).", metavar="NAME"
        ),
    ] = None,
) -> None:
    """Send a paused campaign again (with the next `campaign send`).

    Without --campaign, every pause is lifted: that of all campaigns and each campaign's own.

    Example:

        campaign resume --campaign peace-agreement
    """
    from campaign.api import controls

    ws = state(ctx).workspace()
    lifted = controls.resume(ws, campaign)
    what = f"campaign {plain(campaign)}" if campaign else "every campaign"
    if not lifted:
        from campaign.errors import SelectionError

        paused = controls.paused(ws)
        names = ", ".join("all (no --campaign)" if n == "*" else n for n in sorted(paused))
        raise SelectionError(
            f"{what} was not paused; nothing changed",
            hint=f"paused now: {names}" if paused else "nothing is paused (see `campaign status`)",
        )
    names = ", ".join("every campaign" if n == "*" else f"campaign {n}" for n in lifted)
    whose = "its" if lifted != ["*"] and len(lifted) == 1 else "their"
    out().print(f"resumed {plain(names)}: the next `campaign send` sends {whose} letters again")


def held_back(letters: dict[str, int], every: bool) -> str | None:
    """What paused campaigns hold back, in one sentence for `send` (None: nothing)."""
    total = sum(letters.values())
    if not total:
        return None
    waits, them = ("waits", "it") if total == 1 else ("wait", "them")
    names, count = ", ".join(letters), plural(total, "letter")
    if every:
        return f"{count} {waits} because every campaign is paused ({names}); `campaign resume` sends {them}"
    if len(letters) == 1:
        return f"{count} {waits} in paused campaign {names}; `campaign resume --campaign {names}` sends {them}"
    return (
        f"{count} {waits} in paused campaigns {names}; `campaign resume` sends {them} (`--campaign NAME`: one campaign)"
    )


def register(app: typer.Typer) -> None:
    app.command("cancel", rich_help_panel=SENDING)(cancel)
    app.command("pause", rich_help_panel=SENDING)(pause)
    app.command("resume", rich_help_panel=SENDING)(resume)
