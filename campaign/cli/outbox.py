"""Commands about the queue: queue, plan, send, release, followup, status, smtp, demo (the log: cli/log.py)."""

from __future__ import annotations

import enum
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from campaign.cli import common
from campaign.cli.common import err, note, out, plain, print_json, progress_line, state, warn
from campaign.cli.controls import held_back
from campaign.transitions import Status
from campaign.wording import clauses, plural

if TYPE_CHECKING:
    from campaign.dispatch import Progress

smtp_app = typer.Typer(
    help="The SMTP account's password and the DKIM key.\n\nExample:\n\n    campaign smtp login",
    no_args_is_help=True,
)


class ContactMode(enum.StrEnum):
    first = "first"
    all = "all"


CampaignOpt = Annotated[
    str | None, typer.Option("--campaign", help="Campaign name (default: all campaigns).", metavar="NAME")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


SHOWN_ROWS = 50


def queue(
    ctx: typer.Context,
    letter: Annotated[str, typer.Argument(help="Letter id (a folder in letters/).")],
    to: Annotated[
        list[str] | None, typer.Option("--to", help="Institution id (repeat for several).", metavar="ID")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Institutions with this tag (repeat: any).", metavar="TAG")
    ] = None,
    everyone: Annotated[bool, typer.Option("--all", help="Every institution in recipients.yaml.")] = False,
    campaign: Annotated[
        str | None, typer.Option("--campaign", help="Campaign name (default: the letter id).", metavar="NAME")
    ] = None,
    lang: Annotated[
        str | None, typer.Option("--lang", help="Language for every letter, instead of each institution's first.")
    ] = None,
    contacts: Annotated[
        ContactMode, typer.Option("--contacts", help="first: one letter per institution; all: one per contact.")
    ] = ContactMode.first,
    role: Annotated[str | None, typer.Option("--role", help="Only contacts with this role.", metavar="ROLE")] = None,
    update: Annotated[
        bool, typer.Option("--update", help="Replace queued letters whose text changed (keeps their Message-ID).")
    ] = False,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help='Hold until this time: "2026-12-10 09:00 Europe/Geneva" or ISO 8601 with offset.',
            metavar="TIME",
        ),
    ] = None,
    case: Annotated[
        list[str] | None,
        typer.Option(
            "--case", help="The letter is about this case (repeat); consent must cover each body.", metavar="ID"
        ),
    ] = None,
    drive: Annotated[
        str | None,
        typer.Option(
            "--drive",
            help="A closed signing drive: its institutions (or some, with --to), in the language signed, each "
            "letter with its sealed cover page attached; refused if the letter changed since the drive opened.",
            metavar="DRIVE",
        ),
    ] = None,
) -> None:
    """Render a letter for the chosen institutions and put it in the durable queue.

    Everything is rendered first: if one letter fails, nothing is queued. Queueing
    again adds nothing; changed letters are reported and replaced with --update.

    Example:

        campaign queue peace-agreement --tag un --tag osce
    """
    from campaign import api

    ws = state(ctx).workspace()
    report = api.queue(
        ws,
        api.QueueRequest(
            letter=letter,
            ids=to or [],
            tags=tag or [],
            everyone=everyone,
            campaign=campaign,
            lang=lang,
            contacts=contacts.value,
            role=role,
            update=update,
            at=at,
            cases=case or [],
            drive=drive,
        ),
    )
    for w in report.warnings:
        warn(w)
    t = common.table("institution", "contact", "lang", "subject", "queue")
    # Every row that needs a look (changed, skipped), and the others up to a screenful: a
    # parliament's 10,000 rows would take longer to print than to queue.
    shown = [r for r in report.rows if r.state not in ("new", "unchanged")]
    shown = shown + [r for r in report.rows if r.state in ("new", "unchanged")][: max(0, SHOWN_ROWS - len(shown))]
    for row in shown:
        label = {"postal-only": "skipped: postal only", "no-role": f"skipped: no contact with role {role}"}.get(
            row.state, row.outcome
        )
        t.add_row(plain(row.recipient), plain(row.email), row.lang, plain(row.subject), label)
    out().print(t)
    if len(shown) < len(report.rows):
        note(f"{plural(len(report.rows) - len(shown), 'more row')} not shown: see `campaign log --campaign NAME`")
    changed = [r for r in report.rows if r.outcome == "changed (not updated)"]
    out().print(common.queue_summary(report))
    if changed:
        warn(
            f"{plural(len(changed), 'queued letter')} {'differs' if len(changed) == 1 else 'differ'} from what "
            "the templates and registry give now "
            f"({', '.join(r.recipient for r in changed[:5])}{'…' if len(changed) > 5 else ''}); "
            "rerun with --update to replace the unsent ones"
        )


def followup(
    ctx: typer.Context,
    letter: Annotated[str, typer.Argument(help="The follow-up letter id (e.g. peace-agreement-followup).")],
    campaign: Annotated[
        str, typer.Option("--campaign", help="The campaign whose letters are followed up.", metavar="NAME")
    ],
    after: Annotated[
        str, typer.Option("--after", help="Only letters sent at least this long ago, e.g. 14d.", metavar="DURATION")
    ] = "14d",
    into: Annotated[
        str | None,
        typer.Option("--into", help="Campaign name for the follow-ups (default: NAME-followup).", metavar="NAME"),
    ] = None,
    lang: Annotated[str | None, typer.Option("--lang", help="Language for every letter.")] = None,
) -> None:
    """Queue a follow-up to each institution that got the letter and has not replied.

    Only letters sent (or delivered) at least --after ago and without a reply count;
    automatic replies are not answers. Each follow-up is threaded to the original with
    In-Reply-To. Running it again adds nothing.

    Example:

        campaign followup peace-agreement-followup --campaign peace-agreement --after 14d
    """
    from campaign import api

    ws = state(ctx).workspace()
    report = api.followup(ws, letter, campaign=campaign, after=after, into=into, lang=lang)
    for w in report.warnings:
        warn(w)
    t = common.table("institution", "contact", "lang", "subject", "queue")
    for row in report.rows:
        t.add_row(plain(row.recipient), plain(row.email), row.lang, plain(row.subject), row.state)
    out().print(t)
    out().print(f"{plural(report.count('new'), 'follow-up')} queued, {report.count('unchanged')} already queued")
    for line in report.notes:
        out().print(f"deadline: {plain(line)}")


@smtp_app.command("dkim-keygen")
def dkim_keygen(
    ctx: typer.Context,
    selector: Annotated[str, typer.Option("--selector", help="DKIM selector, e.g. campaign2026.")],
    domain: Annotated[str | None, typer.Option("--domain", help="Signing domain (default: the sender's).")] = None,
) -> None:
    """Create a DKIM key pair and print the DNS TXT record to publish.

    Example:

        campaign smtp dkim-keygen --selector campaign2026
    """
    from campaign import api

    ws = state(ctx).workspace()
    key = api.dkim_keygen(ws, selector, domain)
    out().print(f"private key: {plain(ws.relative(key.key_file))} (mode 0600, never share it)")
    out().print(plain(f'publish this DNS TXT record:\n{key.record_name}. IN TXT "{key.record}"'))
    out().print(
        plain(
            f'then add to campaign.toml:\n[dkim]\nselector = "{selector}"\ndomain = '
            f'"{key.record_name.split("._domainkey.")[1]}"\n'
            f'key_file = "{ws.relative(key.key_file)}"'
        )
    )


def send(
    ctx: typer.Context,
    campaign: CampaignOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Write the exact bytes to .campaign/outbox/ and change nothing.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Send at most N letters in this run.", metavar="N")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", min=1, max=64, help="SMTP connections (default: \\[smtp] concurrency, 4).", metavar="K"
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Keep running until every letter is final (retries, office hours, schedules)."),
    ] = False,
    rate: Annotated[
        float | None,
        typer.Option("--rate", min=0.001, help="Messages per second overall, for this run only.", metavar="R"),
    ] = None,
    to: Annotated[
        list[str] | None,
        typer.Option("--to", help="Only the letters to this institution (repeat for several).", metavar="ID"),
    ] = None,
    test_to: Annotated[
        str | None,
        typer.Option(
            "--test-to",
            help="Send one test copy of each chosen institution's letter to this address instead "
            "(subject [TEST]); nothing is marked sent.",
            metavar="ADDRESS",
        ),
    ] = None,
    lang: Annotated[
        str | None,
        typer.Option("--lang", help="With --test-to: render the copy in this language.", metavar="LANG"),
    ] = None,
) -> None:
    """Send the queued letters that are due, carefully.

    Every attempt, server reply and retry is logged. Ctrl-C finishes the letters in
    flight and stops; a second Ctrl-C aborts at once. Either way `campaign send`
    resumes where it stopped. Exit code 0: all sent; 3: some failed or are held;
    1: the run stopped on an error. Paused campaigns are skipped.

    With --test-to you@example.org, each chosen institution's letter goes to you
    instead, as a test copy with its own Message-ID and return path: it counts
    against no limit, marks nothing sent, and no report about it can touch the real
    letter.

    Example:

        campaign send --campaign peace-agreement --yes
        campaign send --test-to me@example.org --to un-human-rights-committee --lang ru
    """
    from campaign import api

    if lang and not test_to:
        raise typer.BadParameter(
            "--lang goes with --test-to (a queued letter's language is fixed)", param_hint="--lang"
        )
    ws = state(ctx).workspace(**({"sending.rate": rate} if rate else {}))
    if test_to:
        from campaign.api import testsend

        result = testsend.test_send(
            ws, testsend.TestSendRequest(test_to, campaign=campaign, recipients=tuple(to or ()), lang=lang)
        )
        for copy in result.copies:
            out().print(
                f"{'sent' if copy.sent else 'NOT sent'}: test copy of the letter to {plain(copy.institution)} "
                f"({copy.lang}) → {plain(test_to)}: {plain(copy.result)}"
            )
        raise typer.Exit(0 if all(c.sent for c in result.copies) else 1)
    request = api.SendRequest(
        campaign=campaign,
        dry_run=dry_run,
        limit=limit,
        concurrency=concurrency,
        wait=wait,
        rate=rate,
        recipients=tuple(to or ()),
    )
    if dry_run:
        outcome = api.send(ws, request)
        for path in outcome.written:
            out().print(f"wrote {plain(ws.relative(path))}")
        out().print(
            f"{plural(len(outcome.written), 'letter')} written to {plain(ws.relative(ws.outbox_dir))}/; "
            "nothing was sent or changed"
        )
        return
    summary = api.send_summary(ws, campaign, tuple(to or ()))
    paused = held_back(summary.paused_letters, "*" in summary.paused_campaigns)
    if summary.letters == 0 and not (wait and summary.later):
        where = f" in {campaign}" if campaign else ""
        if summary.later:
            waits = "waits" if summary.later == 1 else "wait"
            out().print(
                f"nothing is due now{where}: {plural(summary.later, 'letter')} {waits} for a later time "
                "(`campaign send --wait` sends them when due)"
            )
            print_waiting(api.status(ws, campaign).waiting)
        if paused:
            out().print(plain(f"nothing to send now{where}: {paused}" if not summary.later else paused))
        elif not summary.later:
            out().print(f"nothing to send: the queue has no pending letters{where}")
        return
    if paused:
        note(f"skipping what is paused: {paused}")
    if not yes:
        if not common.is_terminal():
            err().print("[bold red]error:[/bold red] refusing to send without confirmation: no terminal to ask on")
            err().print("[dim]hint:[/dim] pass --yes to send without asking")
            raise typer.Exit(1)
        question = (
            f"Send {plural(summary.letters, 'letter')} to {plural(summary.institutions, 'institution')} "
            f"through {summary.server}?"
        )
        if summary.later:
            waits = "waits" if summary.later == 1 else "wait"
            question += f" ({plural(summary.later, 'more letter')} {waits} for a later time)"
        if not typer.confirm(question, default=False):
            out().print("nothing sent")
            raise typer.Exit(1)
    drawer = ProgressDrawer(summary.letters + (summary.later if wait else 0), wait=wait)

    def interrupted(presses: int) -> None:
        if presses == 1:
            drawer.message("stopping after the letters in flight (Ctrl-C again to abort now)")
        else:
            drawer.message("aborting")

    with drawer:
        outcome = api.send(ws, request, on_progress=drawer.update, on_interrupt=interrupted)
    print_send_summary(outcome)
    raise typer.Exit(outcome.exit_code)


class ProgressDrawer:
    """A rich progress bar on a terminal, one plain line per message otherwise."""

    def __init__(self, total: int, *, wait: bool = False) -> None:
        self.total = total
        self.wait = wait
        self.tty = sys.stderr.isatty()
        self._progress: Any = None
        self._task: Any = None
        self._seen = 0
        self._store_note: str | None = None

    def __enter__(self) -> ProgressDrawer:
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeRemainingColumn(),
                console=err(),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("sending", total=self.total, detail="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def message(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(plain(text))
        else:
            note(text)

    def update(self, p: Progress) -> None:
        done = p.sent + p.failed + p.held
        if p.due and p.due != self.total:
            self.total = p.due
        detail = f"sent {p.sent}  deferred {p.deferred}  failed {p.failed}  held {p.held}"
        if p.waiting_until_ms:
            from campaign.pacing import ms_to_dt

            detail += f"  waiting until {ms_to_dt(p.waiting_until_ms):%H:%M:%S} UTC ({p.waiting_reason})"
        if p.store_waiting:
            detail += f"  {p.store_waiting}"
        if self._progress is None and p.store_waiting != self._store_note:
            self._store_note = p.store_waiting
            if p.store_waiting:
                note(p.store_waiting)
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=self.total, detail=detail)
            return
        events = p.sent + p.failed + p.held + p.deferred
        if p.last and events > self._seen:
            self._seen = events
            last = p.last
            progress_line(f"{last['status']:<8} {last['recipient']} <{last['email']}> {last['reply'] or ''}")
        elif p.waiting_until_ms:
            note(detail)


def print_send_summary(outcome: Any) -> None:
    report = outcome.report
    p = report.progress
    if report.journal_applied:
        note(
            f"recorded {plural(report.journal_applied, 'outcome')} that a previous run could not write "
            "(from .campaign/recovery/); those letters were not sent again"
        )
    if report.journal_returned:
        note(
            f"put back {plural(report.journal_returned, 'letter')} that a previous run had claimed but not sent "
            "(from .campaign/recovery/); not possible duplicates"
        )
    if report.recovered:
        warn(
            f"{plural(len(report.recovered), 'letter')} {'was' if len(report.recovered) == 1 else 'were'} being sent "
            "when a previous run stopped; "
            "they were sent again and may have reached the institution twice (logged as crash_recovered)"
        )
    t = common.table("sent", "deferred", "failed", "held", "outcome unknown")
    t.add_row(str(p.sent), str(p.deferred), str(p.failed), str(p.held), str(p.unknown))
    out().print(t)
    for hold in report.gated:
        after = " (`campaign release ID` once consent covers it again)" if hold.kind == "consent" else ""
        out().print(f"held: message {hold.id} to {plain(hold.recipient)}: {plain(hold.reason)}{after}")
    for o in report.problems:
        hint = o.data.get("hint") or o.data.get("reason") or ""
        out().print(f"{o.status}: message {o.id} {plain(o.message_id)}: {plain(clauses(o.reply, hint))}")
    if paused := held_back(getattr(outcome, "paused", {}), getattr(outcome, "every_paused", False)):
        out().print(plain(f"paused: {paused}"))
    if outcome.remaining:
        t = common.table("id", "institution", "state", "next attempt (UTC)", "why")
        for m in outcome.remaining[:50]:
            t.add_row(
                str(m.id),
                plain(m.recipient),
                m.status,
                m.next_attempt_at.strftime("%Y-%m-%d %H:%M:%S") if m.next_attempt_at else "",
                plain(m.wait_reason or (m.last_reply or "")),
            )
        out().print(t)
        if len(outcome.remaining) > 50:
            out().print(f"… and {len(outcome.remaining) - 50} more (see `campaign log --status queued`)")
        out().print(
            f"{plural(len(outcome.remaining), 'letter')} still to send; run `campaign send` again "
            "(or `campaign send --wait`)"
        )
    unrecorded = ""  # said in the run's one error line: the letters the server accepted
    if report.journaled:
        count = plural(len(report.journaled), "letter")
        if report.journal is not None:
            warn(
                f"{count} accepted by the server could not be recorded in the store yet: saved in "
                f"{plain(str(report.journal))}; the next `campaign send` records them first and does not "
                "send them again"
            )
        else:
            one = len(report.journaled) == 1
            ids = ", ".join(str(o.id) for o in report.journaled)
            unrecorded = (
                f"{count} accepted by the server could not be recorded, and the recovery journal could not be "
                f"written either ({plain(report.journal_error or '')}): message {'id' if one else 'ids'} {ids} "
                f"{'was' if one else 'were'} delivered; do not send {'it' if one else 'them'} again"
            )
    if report.unsent:
        count = plural(len(report.unsent), "claimed letter")
        them = "it" if len(report.unsent) == 1 else "them"
        if report.journal is not None:
            note(
                f"{count} not sent yet {'is' if len(report.unsent) == 1 else 'are'} saved in "
                f"{plain(str(report.journal))}; the next `campaign send` puts {them} back and sends {them} once"
            )
        else:
            ids = ", ".join(str(u.id) for u in report.unsent)
            warn(
                f"{count} not sent (message ids {ids}) could not be put back in the store or the journal: the "
                "next `campaign send` will send them as possible duplicates, though they were never sent"
            )
    for held in getattr(outcome, "refused", []):
        common.err().print(
            f"[bold red]error:[/bold red] message {held['id']} to {plain(held['recipient'])} "
            f"<{plain(held['email'])}> held, {plain(held['last_reply'] or '')}"
        )
    if report.stopped is not None or unrecorded:
        line = "; ".join(part for part in (plain(report.stopped.message) if report.stopped else "", unrecorded) if part)
        common.err().print(f"[bold red]error:[/bold red] {line}")
        if report.stopped is not None and report.stopped.hint:
            common.err().print(f"[dim]hint:[/dim] {plain(report.stopped.hint)}")
    if report.interrupted or report.aborted:
        note("stopped on request; run `campaign send` to resume where it stopped")


def plan(ctx: typer.Context, campaign: CampaignOpt = None, as_json: JsonOpt = False) -> None:
    """When each queued letter is expected to go, given every limit; sends nothing.

    Simulates `campaign send --wait` on a copy of the queue: the overall and per-domain
    rates, each institution's daily cap and office hours (in its own time zone), and
    scheduled times. Look at it before a campaign.

    Example:

        campaign plan --campaign peace-agreement
    """
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from campaign import api

    ws = state(ctx).workspace()
    result = api.plan(ws, campaign)

    def when(ms: int, zone: str | None = None) -> datetime:
        moment = datetime.fromtimestamp(ms / 1000, UTC)
        return moment.astimezone(ZoneInfo(zone)) if zone else moment

    if as_json:
        print_json(
            [
                {
                    "id": r.id,
                    "campaign": r.campaign,
                    "recipient": r.recipient,
                    "email": r.email,
                    "expected_at": None if paused else when(r.at_ms).isoformat().replace("+00:00", "Z"),
                    "local_time": None if paused else when(r.at_ms, r.zone).isoformat(),
                    "timezone": r.zone,
                    "outcome": r.outcome,
                    "waiting": r.waiting,
                }
                for r in result.rows
                for paused in [r.outcome == "paused"]
            ]
        )
        return
    if not result.rows:
        out().print("nothing is queued: nothing to plan")
        return
    t = common.table("id", "institution", "email", "expected (UTC)", "local time there", "now waiting for")
    for r in result.rows:
        local = when(r.at_ms, r.zone)
        expected = when(r.at_ms).strftime("%a %Y-%m-%d %H:%M:%S")
        if r.outcome != "sent":
            expected = f"{r.outcome}"
        t.add_row(
            str(r.id),
            plain(r.recipient),
            plain(r.email),
            expected,
            f"{local:%a %H:%M} {r.zone}" if r.outcome != "paused" else "",
            plain(r.waiting or ("nothing (due now)" if r.outcome == "sent" else "")),
        )
    out().print(t)
    going = [r for r in result.rows if r.outcome != "paused"]
    if going:
        first, last = going[0].at_ms, going[-1].at_ms
        out().print(
            f"{plural(len(going), 'letter')} from {when(first):%Y-%m-%d %H:%M} to {when(last):%Y-%m-%d %H:%M} UTC"
        )
    if len(going) < len(result.rows):
        out().print(f"{plural(len(result.rows) - len(going), 'letter')} paused: not sent until `campaign resume`")


def release(
    ctx: typer.Context,
    ids: Annotated[list[int], typer.Argument(help="Message ids (the id column of `campaign log`).")],
    note_: Annotated[str | None, typer.Option("--note", help="Why it may go now (logged).")] = None,
) -> None:
    """Queue held (or failed) letters again after a person checked them.

    Example:

        campaign release 12 --note "policy block lifted by the secretariat"
    """
    from campaign import api

    ws = state(ctx).workspace()
    released = api.release(ws, ids, note_)
    out().print(
        f"released {plural(len(released), 'letter')}: "
        f"{'it goes' if len(released) == 1 else 'they go'} with the next `campaign send`"
    )


def status(ctx: typer.Context, campaign: CampaignOpt = None, as_json: JsonOpt = False) -> None:
    """Counts of letters per state, per campaign.

    Example:

        campaign status --campaign peace-agreement
    """
    from campaign import api

    ws = state(ctx).workspace()
    report = api.status(ws, campaign)
    counts = report.counts
    if as_json:
        from campaign.pacing import ms_to_dt

        print_json(
            {
                "campaigns": counts,
                "receipts": report.receipts,
                "waiting": [
                    {"reason": r, "count": n, "next_attempt_at": ms_to_dt(first).isoformat().replace("+00:00", "Z")}
                    for r, n, first in report.waiting
                ],
                "case_deadlines": [
                    {"case": d.case, "body": d.body, "due": d.due, "text": d.text} for d in report.deadlines
                ],
            }
        )
        return
    for problem in report.case_errors:
        warn(problem)
    _print_deadlines(report.deadlines)
    if not counts:
        out().print("the queue is empty: queue a letter with `campaign queue LETTER --all`")
        return
    present = {state for per in counts.values() for state in per}
    states = [s.value for s in Status if s.value in present]
    extra = ["awaiting receipt", "delayed"] if report.receipts else []
    t = common.table("campaign", *states, *extra, "total")
    for name, per in counts.items():
        rec = report.receipts.get(name, {})
        more = [str(rec.get("awaiting", 0)), str(rec.get("delayed", 0))] if extra else []
        t.add_row(plain(name), *[str(per.get(s, 0)) for s in states], *more, str(sum(per.values())))
    out().print(t)
    print_waiting(report.waiting)


def print_waiting(waiting: list[tuple[str, int, int]]) -> None:
    """Why letters wait, as `status` shows it (and `send` when nothing is due)."""
    if not waiting:
        return
    from campaign.pacing import ms_to_dt

    w = common.table("waiting", "letters", "next (UTC)")
    for reason, n, first in waiting:
        w.add_row(plain(reason), str(n), ms_to_dt(first).strftime("%Y-%m-%d %H:%M:%S"))
    out().print(w)


def _print_deadlines(deadlines: list[Any]) -> None:
    if not deadlines:
        return
    t = common.table("case", "body", "due", "follow-up")
    for d in deadlines:
        t.add_row(plain(d.case), plain(d.body), d.due or "", plain(d.text))
    out().print(t)


@smtp_app.command("login")
def smtp_login(ctx: typer.Context) -> None:
    """Store the SMTP password for \\[smtp] username in the system keyring.

    On a machine without a keyring, set CAMPAIGN_SMTP_PASSWORD instead.

    Example:

        campaign smtp login
    """
    from campaign import api
    from campaign.errors import SecretError

    ws = state(ctx).workspace()
    account = api.smtp_login_account(ws)  # fails before asking when there is no username
    if not common.is_terminal():
        raise SecretError(
            "no terminal to ask for the SMTP password on",
            hint="set CAMPAIGN_SMTP_PASSWORD in the environment of `campaign send` instead",
        )
    password = typer.prompt(f"SMTP password for {account}", hide_input=True)
    backend = api.smtp_login(ws, password)
    out().print(f"stored in the system keyring ({backend})")


def demo(ctx: typer.Context) -> None:
    """Run everything end to end on this machine, with nothing leaving it.

    Builds a workspace in .campaign/demo/ from this workspace's registry and letters
    (with two clearly fictional institutions added to its copy, so that letters go out
    in Russian and Tajik too), starts an SMTP server on 127.0.0.1 inside the program,
    queues the shipped letter to every institution with an e-mail, attaches a signed PDF
    made with throwaway keys to one letter (where WeasyPrint's system libraries are
    installed), sends, imports the simulated delivery reports and shows the log. Your
    own .campaign/state.db is never touched.

    Example:

        campaign demo && campaign -C .campaign/demo log verify
    """
    from campaign.api import demo as demo_api

    root = state(ctx).directory
    drawer: ProgressDrawer | None = None

    def progress(p: Progress) -> None:
        nonlocal drawer
        if drawer is not None:
            drawer.update(p)

    def started(total: int) -> None:
        nonlocal drawer
        drawer = ProgressDrawer(total).__enter__()

    try:
        result = demo_api.run(root, on_start=started, on_progress=progress)
    finally:
        if drawer is not None:
            drawer.__exit__(None, None, None)
    here = common.shown_path(result.workspace)
    out().print(f"demo workspace: {plain(here)}")
    if result.added:
        out().print(
            f"added to the demo's copy of recipients.yaml (fictional, tagged demo): {plain(', '.join(result.added))}"
        )
    out().print(
        f"queued {plural(result.queued, 'letter')} ({plural(result.postal_only, 'institution')} "
        f"{'is' if result.postal_only == 1 else 'are'} postal only)"
    )
    if result.case_letters:
        out().print(
            f"{plural(result.case_letters, 'of them is', 'of them are')} about the FICTIONAL example case "
            "(.campaign/cases/example.yaml), to the WGEID and the WGAD"
        )
    if result.submission is not None:
        out().print(f"the example case's WGEID form: {plain(common.shown_path(result.submission))}")
    print_send_summary(result.outcome)
    t = common.table("institution", "lang", "state", "server reply", "receipt (simulated by the demo)")
    for m in result.messages:
        t.add_row(
            plain(m.recipient),
            m.lang,
            m.status.value,
            plain(m.last_reply or ""),
            plain(f"{m.delivery_status} {m.delivery_detail or ''}" if m.delivery_status else ""),
        )
    out().print(t)
    languages = ", ".join(f"{n} in {lang}" for lang, n in sorted(result.languages.items()))
    out().print(f"letters sent: {languages or 'none'}")
    if result.verification is not None:
        out().print(
            f"log: {plural(result.verification.count, 'event')}, "
            f"chain verifies: {'yes' if result.verification.ok else 'NO'} (head {result.verification.head[:16]}…)"
        )
    out().print(f"received messages: {plain(common.shown_path(result.mailbox))}/")
    if result.receipts:
        out().print(
            f"simulated delivery reports: {plain(common.shown_path(result.reports))}/ (imported: {result.receipts})"
        )
    me = common.invocation()
    if result.signed_pdf is not None:
        pdf_path = common.shown_path(result.signed_pdf)
        out().print(
            f"signed PDF attached to the letter to {plain(result.signed_for or '')} (throwaway keys): {plain(pdf_path)}"
        )
        out().print(f"check it: {plain(me)} -C {plain(here)} pdf verify {plain(pdf_path)}")
    elif result.pdf_note:
        note(result.pdf_note)
    out().print(f"explore: {plain(me)} -C {plain(here)} log")
    if result.drive is not None:
        from campaign.api.signing import DEMO_PASSPHRASE

        out().print(f"signing drive {plain(result.drive.name)} is open: supporters sign in a browser")
        out().print(f"  CAMPAIGN_KEY_PASSPHRASE='{DEMO_PASSPHRASE}' {plain(me)} -C {plain(here)} serve")
        out().print(f"  then open {plain(result.drive.url())}")
        out().print("  and review the campaign with its charts at the organisers' link it prints (…:8471/admin/)")
    out().print(f"report: {plain(me)} -C {plain(here)} report -o report.html  (one file with charts, opens offline)")


SENDING = "Send: queue, schedule, send and follow up"
REVIEW = "Review: status, log and evidence"


def register(app: typer.Typer) -> None:
    app.command("demo", rich_help_panel="Try it")(demo)
    app.command("queue", rich_help_panel=SENDING)(queue)
    app.command("plan", rich_help_panel=SENDING)(plan)
    app.command("send", rich_help_panel=SENDING)(send)
    app.command("release", rich_help_panel=SENDING)(release)
    app.command("followup", rich_help_panel=SENDING)(followup)
    app.add_typer(smtp_app, name="smtp", rich_help_panel=SENDING)
    app.command("status", rich_help_panel=REVIEW)(status)
