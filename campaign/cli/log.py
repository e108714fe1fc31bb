"""Commands about the send log: log (the compact and wide views, --events, --json, --csv),
log verify and log export."""

from __future__ import annotations

import csv
import itertools
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from campaign.cli import common
from campaign.cli.common import err, out, plain, print_json, state, warn
from campaign.transitions import PENDING, Status
from campaign.wording import clauses, plural

if TYPE_CHECKING:
    from campaign.models import Message

log_app = typer.Typer(
    help="The send log: one row per message, the event history, and the hash-chain check.\n\n"
    "Example:\n\n    campaign log --campaign peace-agreement --status failed",
    invoke_without_command=True,
)
CampaignOpt = Annotated[
    str | None, typer.Option("--campaign", help="Campaign name (default: all campaigns).", metavar="NAME")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def message_row(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "campaign": m.campaign,
        "letter": m.letter,
        "recipient": m.recipient,
        "email": m.email,
        "lang": m.lang,
        "status": m.status.value,
        "attempts": m.attempts,
        "message_id": m.message_id,
        "sent_at": m.sent_at.isoformat().replace("+00:00", "Z") if m.sent_at else None,
        "last_reply": m.last_reply,
        "next_attempt_at": m.next_attempt_at.isoformat().replace("+00:00", "Z")
        if m.next_attempt_at and m.status in PENDING
        else None,
        "wait_reason": m.wait_reason,
        "possible_duplicate": m.possible_duplicate,
        "subject": m.subject,
        "receipt": m.delivery_status,
        "receipt_status": m.delivery_detail,
        "reporting_mta": m.reporting_mta,
        "receipt_at": _iso(m.receipt_at),
        "delayed_at": _iso(m.delayed_at),
        "displayed_at": _iso(m.displayed_at),
        "deleted_at": _iso(m.deleted_at),
        "replied_at": _iso(m.replied_at),
        "auto_replied_at": _iso(m.auto_replied_at),
    }


def _iso(moment: Any) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _flags(m: Message) -> str:
    flags = []
    if m.possible_duplicate:
        flags.append("dup?")
    if m.delayed_at and m.status.value == "sent":
        flags.append("delayed")
    if m.displayed_at:
        flags.append("read")
    if m.deleted_at:
        flags.append("deleted unread")
    if m.replied_at:
        flags.append("replied")
    if m.auto_replied_at:
        flags.append("auto-reply")
    return ", ".join(flags)


@log_app.callback(invoke_without_command=True)
def log(
    ctx: typer.Context,
    campaign: CampaignOpt = None,
    status_: Annotated[
        list[Status] | None, typer.Option("--status", help="Only letters in this state (repeat).")
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="Only letters to this institution id.", metavar="ID")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only letters changed since this date/time (UTC).", metavar="DATE")
    ] = None,
    events: Annotated[
        bool, typer.Option("--events", help="Show the event history instead of one row per letter.")
    ] = False,
    wide: Annotated[
        bool,
        typer.Option("--wide", help="All columns: address, attempts, full reply, receipt, flags, Message-ID."),
    ] = False,
    as_json: JsonOpt = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
) -> None:
    """One row per letter: institution, state, when, and what the server or the receipt said.

    The default view fits an 80-column terminal (long replies end in "…"); --wide shows
    every column, --json and --csv everything.

    Example:

        campaign log --status deferred --status failed
    """
    if ctx.invoked_subcommand is not None:
        return
    from campaign import api
    from campaign.errors import UsageError

    if as_json and as_csv:
        raise UsageError("choose one of --json and --csv")
    ws = state(ctx).workspace()
    query = api.LogQuery(campaign=campaign, statuses=tuple(s.value for s in status_ or []), recipient=to, since=since)
    if events:
        history = api.log_events(ws, query)
        rows = [
            {
                "seq": e.seq,
                "time": e.time.isoformat().replace("+00:00", "Z"),
                "event": e.kind,
                "message": e.message,
                "campaign": e.campaign,
                **dict(e.data),
                "hash": e.hash,
            }
            for e in history
        ]
        if as_json:
            print_json(rows)
        elif as_csv:
            _write_csv(rows)
        else:
            t = common.table("#", "time (UTC)", "event", "message", "details")
            for e in history:
                details = " ".join(f"{k}={v}" for k, v in e.data.items() if k not in ("sha256", "content_sha256"))
                t.add_row(
                    str(e.seq), e.time.strftime("%Y-%m-%d %H:%M:%S"), e.kind, plain(e.message or ""), plain(details)
                )
            out().print(t)
        return
    if as_json or as_csv:  # streamed: a page of letters at a time
        letters = (message_row(m) for m in api.log_stream(ws, query))
        if as_json:
            common.print_json_list(letters)
        else:
            _write_csv(letters)
        return
    stream = api.log_stream(ws, query)
    first = next(stream, None)
    if first is None:
        out().print("no letters match")
        return
    messages = itertools.chain([first], stream)  # the table holds its cells, not the letters
    if not wide:
        out().print(compact_log(messages))
        return
    t = common.table(
        "id", "institution", "email", "state", "tries", "last reply", "sent (UTC)", "receipt", "flags", "Message-ID"
    )
    for m in messages:
        receipt = ""
        if m.delivery_detail or m.delivery_status:
            receipt = " ".join(
                p
                for p in (
                    m.delivery_detail,
                    f"by {m.reporting_mta}" if m.reporting_mta else None,
                    m.receipt_at.strftime("%Y-%m-%d %H:%M") if m.receipt_at else None,
                )
                if p
            )
        t.add_row(
            str(m.id),
            plain(m.recipient),
            plain(m.email),
            m.status.value,
            str(m.attempts),
            plain(m.wait_reason or m.last_reply or ""),
            m.sent_at.strftime("%Y-%m-%d %H:%M:%S") if m.sent_at else "",
            plain(receipt),
            _flags(m),
            plain(m.message_id),
        )
    out().print(t)


COMPACT_WIDTH = 80


def compact_log(messages: Iterable[Message]) -> Any:
    """The default `campaign log` table: five columns that fit an 80-column terminal, long
    values cut with "…" instead of folded over several lines."""
    from rich.table import Table

    t = Table(show_edge=False, header_style="bold", pad_edge=False, width=min(COMPACT_WIDTH, out().width))
    t.add_column("id", justify="right", no_wrap=True, min_width=2)
    t.add_column("institution", no_wrap=True, overflow="ellipsis", max_width=20)
    t.add_column("state", no_wrap=True, min_width=9)
    t.add_column("when (UTC)", no_wrap=True, min_width=11)
    t.add_column("note", no_wrap=True, overflow="ellipsis", ratio=1)
    for m in messages:
        pending = m.status in PENDING
        moment = m.next_attempt_at if pending else (m.sent_at or m.updated_at)
        # A held or cancelled letter's note is why (the hold's reason, the cancel's --reason).
        why = pending or m.status.value in ("held", "cancelled")
        said = m.wait_reason if why and m.wait_reason else m.last_reply
        receipt = m.delivery_detail if m.delivery_status else None
        t.add_row(
            str(m.id),
            plain(m.recipient),
            m.status.value,
            moment.strftime("%m-%d %H:%M") if moment else "",
            plain(clauses(_flags(m), f"{m.attempts} tries" if m.attempts > 1 else None, receipt or said, sep=" · ")),
        )
    return t


def _write_csv(rows: Iterable[dict[str, Any]]) -> None:
    """Rows as CSV, the columns those of all rows in order of appearance. A list is read
    twice (events differ in their keys); any other iterable is written as it comes, with
    the columns of its first row (a letter's rows all have the same)."""
    items = iter(rows)
    first = next(items, None)
    if first is None:
        return
    fields = list(first)
    if isinstance(rows, list):
        for row in rows:
            fields.extend(k for k in row if k not in fields)
    writer = csv.DictWriter(sys.stdout, fieldnames=fields)
    writer.writeheader()
    for row in itertools.chain([first], items):
        # Data never carries control characters through (CSV is read in terminals too).
        writer.writerow({k: common.visible(v) if isinstance(v, str) else v for k, v in row.items()})


@log_app.command("verify")
def log_verify(
    ctx: typer.Context,
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="Check an exported evidence bundle (.zip, or the folder it was unzipped into) instead of the log.",
            metavar="FILE|DIR",
        ),
    ] = None,
) -> None:
    """Recompute the hash chain of the log and check every stored letter against it.

    Exit 0 and print the event count and the chain head hash (keep it somewhere
    else: it lets anyone check later that nothing was changed); exit 1 and name the
    first broken event, or each letter whose stored bytes are not the bytes the log
    recorded. With --bundle, check an evidence bundle offline (no workspace needed):
    every file against the chain, the manifest against the events, and that no event
    of its campaign or letters was left out.

    Example:

        campaign log verify --bundle evidence.zip
    """
    from campaign.api import evidence as evidence_api

    if bundle is not None:
        check = evidence_api.verify_bundle(bundle)
        for caveat in check.caveats:
            warn(caveat)
        if check.ok:
            out().print(
                f"ok: {plural(check.letters, 'letter')}, {plural(check.events, 'event')}, chain head {check.head}"
            )
            if check.scope and check.scope.startswith("campaign "):
                out().print(f"complete: every event of {plain(check.scope)} in the log is in the bundle")
            elif check.scope:
                out().print("complete: every event of each of these letters in the log is in the bundle")
            out().print("compare the chain head with one you received earlier by another way")
            return
        for problem in check.problems:
            err().print(f"[bold red]error:[/bold red] {plain(problem)}")
        raise typer.Exit(1)
    from campaign import api

    ws = state(ctx).workspace()
    result = api.verify_log(ws)
    for caveat in result.caveats:
        warn(caveat)
    if result.ok:
        out().print(f"ok: {plural(result.count, 'event')}, chain head {result.head}")
        return
    if result.broken_seq is not None:
        err().print(
            f"[bold red]error:[/bold red] the log is broken at event {result.broken_seq}: {plain(result.reason or '')}"
        )
        err().print(f"[dim]hint:[/dim] events 1–{result.count} verify; the log was changed outside campaign")
        raise typer.Exit(1)
    for problem in result.problems[:50]:
        err().print(f"[bold red]error:[/bold red] {plain(problem)}")
    if len(result.problems) > 50:
        err().print(f"[bold red]error:[/bold red] … and {len(result.problems) - 50} more")
    err().print(
        f"[dim]hint:[/dim] the chain verifies ({plural(result.count, 'event')}, head {result.head[:16]}…); "
        "`campaign send` holds these letters instead of sending them"
    )
    raise typer.Exit(1)


@log_app.command("export")
def log_export(
    ctx: typer.Context,
    ids: Annotated[list[int] | None, typer.Argument(help="Message ids (the id column of `campaign log`).")] = None,
    campaign: Annotated[
        str | None, typer.Option("--campaign", help="Every letter of this campaign.", metavar="NAME")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The bundle to write (.zip).", metavar="FILE")] = Path(
        "evidence.zip"
    ),
    with_case_letters: Annotated[
        bool,
        typer.Option(
            "--with-case-letters", help="Include letters about a case (their bytes carry the case's personal data)."
        ),
    ] = False,
    force: common.ForceOpt = False,
) -> None:
    """Export an evidence bundle: exact bytes sent, events, receipts, chain head, VERIFY.md.

    Anyone can check the bundle offline, with `campaign log verify --bundle` or by hand
    with sha256sum and a few lines of Python (VERIFY.md explains how). A campaign's
    bundle proves it holds every event of the campaign; a bundle of some letters, every
    event of those letters. The file is private (mode 0600) and never overwritten
    without --force.

    Example:

        campaign log export --campaign peace-agreement -o evidence.zip
    """
    from campaign.api import evidence as evidence_api

    ws = state(ctx).workspace()
    result = evidence_api.export_evidence(
        ws, output, campaign=campaign, ids=ids or None, force=force, with_case_letters=with_case_letters
    )
    for w in result.warnings:
        warn(w)
    whole = f"campaign {campaign}, complete" if result.scope == "campaign" else "selected letters"
    out().print(
        f"wrote {plain(str(result.path))} ({plain(whole)}): {plural(result.letters, 'letter')}, "
        f"{plural(result.events, 'event')}"
    )
    if result.left_out:
        warn(
            f"left out {plural(result.left_out, 'letter')} about a case: their bytes carry the case's personal data; "
            "add --with-case-letters to include them"
        )
    out().print(f"chain head {result.head}")


def register(app: typer.Typer) -> None:
    from campaign.cli.outbox import REVIEW

    app.add_typer(log_app, name="log", rich_help_panel=REVIEW)
