"""Commands about cases and submissions: cases new/list/show/check/note, submit prepare.

Nothing printed here carries a value about a person unless it was asked for by name
(``cases show ID --reveal FIELD``): the api returns ids, field names, kinds and dates.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

import typer

from campaign.cli import common
from campaign.cli.common import err, note, out, plain, print_json, state, warn
from campaign.wording import plural

cases_app = typer.Typer(
    help="Cases: the people letters are about, their consent, and what each body still needs.\n\n"
    "Case files live in .campaign/cases/ (private, git-ignored); values are shown only when asked for "
    "by name.\n\nExample:\n\n    campaign cases new --example && campaign cases check",
    no_args_is_help=True,
)
submit_app = typer.Typer(
    help="Submissions: a case in the form a body requires (Word, PDF, e-mail, web-form sheet).\n\n"
    "Example:\n\n    campaign submit prepare --case example --to un-wgeid",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@cases_app.command("new")
def cases_new(
    ctx: typer.Context,
    case_id: Annotated[
        str | None, typer.Argument(help="The new case's id: letters, digits, hyphens; never a name.")
    ] = None,
    example: Annotated[
        bool, typer.Option("--example", help="Write the FICTIONAL example case (id: example) to try the whole path.")
    ] = False,
) -> None:
    """Write a commented case file to fill in (or the fictional example).

    The file is .campaign/cases/ID.yaml, mode 0600, git-ignored. Its id appears in the
    log and in listings: choose one that names nobody (tj-2026-01, not a surname).

    Example:

        campaign cases new tj-2026-01
    """
    from campaign.api import cases as cases_api

    ws = state(ctx).workspace()
    path = cases_api.new_case(ws, case_id, example=example)
    out().print(f"wrote {plain(ws.relative(path))} (mode 0600)")
    if example:
        note("a FICTIONAL example addressed to un-wgeid and un-wgad: try `campaign cases check example`")
    else:
        note(f"fill it in, then run `campaign cases check {path.stem}`")


@cases_app.command("list")
def cases_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The cases: id, kind, State, bodies addressed and consent (never a person's data).

    Example:

        campaign cases list --json
    """
    from campaign.api import cases as cases_api

    ws = state(ctx).workspace()
    rows, broken = cases_api.list_cases(ws)
    if as_json:
        print_json(
            {
                "cases": [
                    {
                        "id": r.id,
                        "fictional": r.fictional,
                        "kind": r.kind,
                        "country": r.country,
                        "to": r.to,
                        "consent": r.consent,
                        "dates_recorded": r.notes,
                        "file": r.file,
                    }
                    for r in rows
                ],
                "errors": broken,
            }
        )
        return
    for problem in broken:
        warn(problem)
    if not rows:
        out().print("no cases yet: `campaign cases new ID` (or --example)")
        return
    t = common.table("id", "kind", "State", "addressed to", "consent covers", "dates recorded")
    for r in rows:
        label = f"{r.id} (FICTIONAL)" if r.fictional else r.id
        t.add_row(plain(label), r.kind, r.country or "", plain(", ".join(r.to)), plain(r.consent), str(r.notes))
    out().print(t)


@cases_app.command("show")
def cases_show(
    ctx: typer.Context,
    case_id: Annotated[str, typer.Argument(help="Case id (see `campaign cases list`).")],
    reveal: Annotated[
        list[str] | None,
        typer.Option(
            "--reveal", help="Print the value of this field (repeat); nothing else is shown.", metavar="FIELD"
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """A case: which fields are filled, consent, dates, deadlines, and every letter about it.

    Values about the person are hidden; --reveal FIELD prints one you ask for by name.

    Example:

        campaign cases show example --reveal person.names
    """
    from campaign.api import cases as cases_api

    ws = state(ctx).workspace()
    d = cases_api.show_case(ws, case_id, reveal=reveal or [])
    if as_json:
        print_json(
            {
                "id": d.id,
                "file": d.file,
                "fictional": d.fictional,
                "kind": d.kind,
                "country": d.country,
                "to": d.to,
                "fields": {
                    f.field: ({"filled": f.filled, "value": f.value} if f.public or f.field in d.revealed else f.filled)
                    for f in d.fields
                },
                "revealed": d.revealed,
                "consent": d.consent,
                "dates": d.notes,
                "deadlines": d.deadlines,
                "letters": [
                    {
                        "id": h.id,
                        "campaign": h.campaign,
                        "letter": h.letter,
                        "institution": h.recipient,
                        "email": h.email,
                        "status": h.status,
                        "sent_at": h.sent_at,
                        "events": [{"time": t, "event": k} for t, k in h.events],
                        "receipts": h.receipts,
                    }
                    for h in d.history
                ],
            }
        )
        return
    title = f"case {d.id}" + (" (FICTIONAL EXAMPLE)" if d.fictional else "")
    out().print(f"[bold]{plain(title)}[/bold]  {plain(d.file)}")
    out().print(f"kind: {d.kind}   State: {d.country or '—'}   addressed to: {plain(', '.join(d.to) or '—')}")
    t = common.table("field", "filled", "value")
    for f in d.fields:
        value = ""
        if f.field in d.revealed:
            value = _show(d.revealed[f.field])
        elif f.public and f.filled:
            value = _show(f.value)
        elif f.filled:
            value = "(hidden: --reveal " + f.field + ")"
        t.add_row(f.field, "yes" if f.filled else "—", plain(value))
    out().print(t)
    for name, value in d.revealed.items():
        if name not in {f.field for f in d.fields}:
            out().print(f"{plain(name)}: {plain(_show(value))}")
    if d.consent:
        c = common.table("consent from", "covers", "given", "name may be published", "withdrawn")
        for entry in d.consent:
            c.add_row(
                entry["given_by"],
                plain(", ".join(entry["bodies"])),
                entry["date"],
                "yes" if entry["publish_name"] else "no",
                entry["withdrawn"] or "",
            )
        out().print(c)
    else:
        warn("no consent recorded: no letter about this case can be queued")
    if d.notes:
        n = common.table("date", "recorded", "body")
        for entry in d.notes:
            n.add_row(entry["date"], entry["event"], plain(entry["body"] or ""))
        out().print(n)
    for line in d.deadlines:
        out().print(f"deadline: {plain(line)}")
    if d.history:
        h = common.table("id", "campaign", "institution", "state", "sent (UTC)", "history", "reports")
        for row in d.history:
            h.add_row(
                str(row.id),
                plain(row.campaign),
                plain(row.recipient),
                row.status,
                row.sent_at or "",
                plain(", ".join(f"{k} {t}" for t, k in row.events)),
                plain("; ".join(row.receipts)),
            )
        out().print(h)
    else:
        out().print("no letters about this case yet")


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_show(v)}" for k, v in value.items() if v not in (None, "", [], {}))
    if isinstance(value, list):
        return "; ".join(_show(v) for v in value)
    return "" if value is None else str(value)


@cases_app.command("check")
def cases_check(
    ctx: typer.Context,
    case_ids: Annotated[list[str] | None, typer.Argument(help="Case ids (default: every case).")] = None,
    letter: Annotated[
        str | None,
        typer.Option("--letter", help="The covering letter to check (default: case-submission).", metavar="LETTER"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """What each body a case is addressed to still needs, consent problems, admissibility.

    Names each missing element (with the file and line where it belongs), consent that
    is missing, withdrawn or does not cover a body, and what a machine can check of the
    admissibility rules: no source, only media reports, and, as `submit prepare` checks
    them, a covering letter in none of the body's languages and a submission over its
    page or word limit. Exit 1 when something is missing or consent does not cover.

    Example:

        campaign cases check example
    """
    from campaign.api import cases as cases_api

    ws = state(ctx).workspace()
    findings = cases_api.check_cases(ws, case_ids or [], letter_id=letter)
    blocking = [f for f in findings if f.level in ("missing", "consent", "error")]
    if as_json:
        print_json(
            [
                {"case": f.case, "body": f.body, "level": f.level, "where": f.where, "message": f.message}
                for f in findings
            ]
        )
    else:
        styles = {"missing": "red", "consent": "red", "error": "red", "warning": "yellow", "info": "dim"}
        for f in findings:
            out().print(f"[{styles[f.level]}]{f.level}[/{styles[f.level]}] {plain(str(f))}")
        cases = len({f.case for f in findings if f.case}) or len(case_ids or [])
        warnings = len([f for f in findings if f.level == "warning"])
        out().print(
            f"{plural(len(blocking), 'problem')}, {plural(warnings, 'warning')}"
            + (f" in {plural(cases, 'case')}" if cases else "")
        )
    if blocking:
        raise typer.Exit(1)


class NoteKind(enum.StrEnum):
    submitted = "submitted"
    transmitted = "transmitted"
    government_reply = "government-reply"
    comments_sent = "comments-sent"
    clarified = "clarified"
    closed = "closed"
    other = "other"


@cases_app.command("note")
def cases_note(
    ctx: typer.Context,
    case_id: Annotated[str, typer.Argument(help="Case id.")],
    event: Annotated[NoteKind, typer.Argument(help="What happened: transmitted, government-reply, ...")],
    on: Annotated[str | None, typer.Option("--date", help="When (YYYY-MM-DD; default: today).", metavar="DATE")] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="The body it is about (default: the only one the case is addressed to).", metavar="ID"
        ),
    ] = None,
) -> None:
    """Record a date of the procedure; follow-up deadlines count from it.

    For example, when the WGAD writes that it transmitted the case to the Government,
    `transmitted` starts its 60 days; `campaign status` then shows the deadline.

    Example:

        campaign cases note example transmitted --to un-wgad --date 2026-11-02
    """
    from campaign.api import cases as cases_api

    ws = state(ctx).workspace()
    recorded, deadlines = cases_api.note_case(ws, case_id, event.value, on=on, body=to)
    out().print(
        f"recorded: {recorded.event} on {recorded.date.isoformat()}" + (f" ({recorded.body})" if recorded.body else "")
    )
    for line in deadlines:
        out().print(f"deadline: {plain(line)}")


class SubmitFormat(enum.StrEnum):
    docx = "docx"
    pdf = "pdf"
    email = "email"
    sheet = "sheet"


@submit_app.command("prepare")
def submit_prepare(
    ctx: typer.Context,
    case: Annotated[str, typer.Option("--case", help="Case id.", metavar="ID")],
    to: Annotated[str, typer.Option("--to", help="Institution id with a submission profile.", metavar="ID")],
    letter: Annotated[
        str, typer.Option("--letter", help="The covering letter (a letter with `case: true`).", metavar="LETTER")
    ] = "case-submission",
    fmt: Annotated[
        SubmitFormat | None,
        typer.Option("--format", help="docx, pdf, email or sheet (default: what the body requires)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write (default: .campaign/submissions/); .html for a sheet page.",
            metavar="FILE",
        ),
    ] = None,
    lang: Annotated[str | None, typer.Option("--lang", help="Language (one the body accepts).")] = None,
    session: Annotated[
        str | None, typer.Option("--session", help="UPR: the session's month and year, e.g. 'May 2027'.")
    ] = None,
    queue: Annotated[bool, typer.Option("--queue", help="Also queue the e-mail with the document attached.")] = False,
    campaign: Annotated[
        str | None,
        typer.Option("--campaign", help="Campaign name when queueing (default: the letter id).", metavar="NAME"),
    ] = None,
    scan: Annotated[
        Path | None,
        typer.Option("--scan", help="The hand-signed scan to queue (bodies that need a signature).", metavar="FILE"),
    ] = None,
    update: Annotated[
        bool,
        typer.Option("--update", help="With --queue: replace a queued, unsent version whose text changed."),
    ] = False,
    force: common.ForceOpt = False,
) -> None:
    """Write a case's submission in the form the body requires, and a checklist.

    Word for the WGEID, the WGAD and the UPR, a PDF for the treaty bodies (sealed when
    CAMPAIGN_KEY_PASSPHRASE is set), the e-mail text with the body's subject line, or a
    field-by-field sheet for web forms. Refuses when consent does not cover the body,
    the letter is in none of its languages, or the document is over its page limit.

    Example:

        campaign submit prepare --case example --to un-wgeid
    """
    from campaign.api import submit as submit_api

    ws = state(ctx).workspace()
    result = submit_api.prepare(
        ws,
        submit_api.PrepareRequest(
            case=case,
            to=to,
            letter=letter,
            fmt=fmt.value if fmt else None,
            out=output,
            lang=lang,
            session=session,
            queue=queue,
            campaign=campaign,
            update=update,
            scan=scan,
            force=force,
        ),
    )
    for path in result.files:
        out().print(f"wrote {plain(ws.relative(path) if path.is_absolute() else str(path))} (mode 0600)")
    out().print(f"to: {plain(result.to)}")
    out().print(f"subject: {plain(result.subject)}")
    out().print(f"language: {result.lang}   format: {result.fmt}")
    if result.estimate:
        out().print(f"length: {plain(result.estimate)}")
    if result.checklist:
        out().print("checklist:")
        for item in result.checklist:
            out().print(f"  - {plain(item)}")
    if result.queued is not None:
        to_line = ", ".join(f"{row.recipient} <{row.email}>" for row in result.queued.rows)
        summary = common.queue_summary(result.queued)
        out().print(f"queue: campaign {plain(result.campaign or '')}, {plain(to_line)}: {summary}")
        if result.queue_error is not None:
            raise result.queue_error
        out().print("send it with `campaign send`")
    else:
        err().print("[dim]nothing was queued (add --queue to queue the e-mail)[/dim]")


CASES = "Cases and submissions"


def register(app: typer.Typer) -> None:
    app.add_typer(cases_app, name="cases", rich_help_panel=CASES)
    app.add_typer(submit_app, name="submit", rich_help_panel=CASES)
