"""Cases: `campaign cases new/list/show/check/note`, and the checks queue, send, followup,
status and `letters check` make about letters that concern a case.

Nothing returned here carries a value about a person unless the caller asked for that
field by name (``show_case(..., reveal=[...])``): listings, JSON, findings, deadlines and
errors hold ids, field names, kinds and procedural dates only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaign import cases as core
from campaign.config import Workspace, is_loopback
from campaign.errors import CampaignError, CaseError, UsageError
from campaign.models import CaseNote, Letter, Recipient, Registry, utcnow

if TYPE_CHECKING:
    from campaign.api import LetterCheck
    from campaign.outbox import Target


def cases_folder(ws: Workspace) -> Path:
    """``.campaign/cases/``: one private YAML file per case."""
    return ws.state_dir / "cases"


def _registry(ws: Workspace) -> Registry:
    from campaign.api import load_registry

    return load_registry(ws)


# ---------------------------------------------------------------------------
# new, list, show


def new_case(ws: Workspace, case_id: str | None, *, example: bool = False) -> Path:
    """Write a commented template (or, with ``example``, the fictional example case)."""
    if case_id is None:
        if not example:
            raise UsageError("give the new case an id, e.g. `campaign cases new tj-2026-01`, or use --example")
        case_id = core.EXAMPLE_ID
    core.check_case_id(case_id)
    if core.case_path(cases_folder(ws), case_id).exists():
        raise CaseError(f"{core.FOLDER_LABEL}/{case_id}.yaml: already exists; nothing was written")
    ws.ensure_state_dir()
    return core.new_case(cases_folder(ws), case_id, example=example)


@dataclass(frozen=True)
class CaseSummary:
    """One line of `cases list`: nothing about the person."""

    id: str
    fictional: bool
    kind: str
    country: str | None
    to: list[str]
    consent: str  # e.g. "un-wgeid, un-wgad" / "withdrawn" / "none"
    notes: int
    file: str


def _consent_summary(case: Any) -> str:
    active = sorted({b for c in case.consent if c.withdrawn is None for b in c.bodies})
    if active:
        return ", ".join(active)
    return "withdrawn" if case.consent else "none"


def list_cases(ws: Workspace) -> tuple[list[CaseSummary], list[str]]:
    """Every case (and the files that do not validate, as one-line errors)."""
    good, bad = core.scan_cases(cases_folder(ws))
    rows = [
        CaseSummary(
            cf.id,
            cf.case.fictional,
            cf.case.kind,
            cf.case.country,
            list(cf.case.to),
            _consent_summary(cf.case),
            len(cf.case.notes),
            cf.label,
        )
        for cf in good
    ]
    return rows, [err.message for err in bad]


@dataclass(frozen=True)
class FieldRow:
    field: str
    filled: bool
    public: bool
    value: Any = None  # only for public fields, or fields asked for by name


@dataclass(frozen=True)
class HistoryRow:
    """One letter about the case, with what happened to it."""

    id: int
    campaign: str
    letter: str
    recipient: str
    email: str
    status: str
    sent_at: str | None
    events: list[tuple[str, str]]  # (time, kind)
    receipts: list[str]  # kinds and outcomes


@dataclass
class CaseDetail:
    id: str
    file: str
    fictional: bool
    kind: str
    country: str | None
    to: list[str]
    fields: list[FieldRow]
    consent: list[dict[str, Any]]
    notes: list[dict[str, Any]]
    deadlines: list[str]
    history: list[HistoryRow] = field(default_factory=list)
    revealed: dict[str, Any] = field(default_factory=dict)


def show_case(ws: Workspace, case_id: str, *, reveal: Sequence[str] = ()) -> CaseDetail:
    """A case's fields (values only where public or asked for), consent, dates, deadlines,
    and every letter about it across campaigns."""
    cf = core.load_case(cases_folder(ws), case_id)
    revealed = {name: core.reveal(cf, name) for name in reveal}
    public = core.public_values(cf)
    rows = [
        FieldRow(name, filled, is_public, public.get(name) if is_public else revealed.get(name))
        for name, filled, is_public in core.field_status(cf)
    ]
    consent = [
        {
            "given_by": c.given_by,
            "bodies": list(c.bodies),
            "publish_name": c.publish_name,
            "date": c.date.isoformat(),
            "withdrawn": c.withdrawn.isoformat() if c.withdrawn else None,
        }
        for c in cf.case.consent
    ]
    notes = [{"event": n.event, "date": n.date.isoformat(), "body": n.body} for n in cf.case.notes]
    registry = _registry(ws)
    detail = CaseDetail(
        cf.id,
        cf.label,
        cf.case.fictional,
        cf.case.kind,
        cf.case.country,
        list(cf.case.to),
        rows,
        consent,
        notes,
        [str(d) for d in core.deadlines(cf, registry)],
        revealed=revealed,
    )
    detail.history = _history(ws, cf.id)
    return detail


def _history(ws: Workspace, case_id: str) -> list[HistoryRow]:
    from campaign.api import open_store
    from campaign.store.cases import case_letters

    store = open_store(ws, create=False)
    try:
        out = []
        for m in case_letters(store, case_id):
            events = [(e.time.strftime("%Y-%m-%d %H:%M"), e.kind) for e in store.events(message=m.message_id)]
            receipts = [
                " ".join(p for p in (str(r["kind"]), r.get("outcome") or "", r.get("status") or "") if p)
                for r in store.receipts_for(m.id)
            ]
            out.append(
                HistoryRow(
                    m.id,
                    m.campaign,
                    m.letter,
                    m.recipient,
                    m.email,
                    m.status.value,
                    m.sent_at.strftime("%Y-%m-%d %H:%M") if m.sent_at else None,
                    events,
                    receipts,
                )
            )
        return out
    finally:
        store.close()


# ---------------------------------------------------------------------------
# check, note, deadlines


def check_cases(ws: Workspace, case_ids: Sequence[str] = (), *, letter_id: str | None = None) -> list[core.Finding]:
    """What each body still needs, consent problems and admissibility warnings, for the
    given cases (all when none); a file that does not validate is one finding. The covering
    letter (``letter_id``, default letters/case-submission/) is checked as `submit prepare`
    checks it: a language the body does not take, the body's page or word limit."""
    from campaign.api import submit as submit_api
    from campaign.errors import SelectionError

    registry = _registry(ws)
    today = utcnow().date()
    folder = cases_folder(ws)
    findings: list[core.Finding] = []
    if case_ids:
        files = [core.load_case(folder, cid) for cid in case_ids]
    else:
        files, bad = core.scan_cases(folder)
        findings.extend(core.Finding("", None, "error", err.message.split(": ", 1)[0], err.message) for err in bad)
        if not files and not bad:
            raise CaseError(
                f"{core.FOLDER_LABEL}/: no cases yet", hint="create one with `campaign cases new ID` (or --example)"
            )
    try:
        letter = submit_api.case_letter(ws, letter_id or submit_api.DEFAULT_LETTER)
    except (SelectionError, CaseError) as err:
        if letter_id is not None:
            raise
        letter = None
        where = f"letters/{submit_api.DEFAULT_LETTER}/"
        found = err.message.removeprefix(where).lstrip(": ")
        findings.append(
            core.Finding("", None, "info", where, f"{found}: languages and length not checked (--letter LETTER)")
        )
    for cf in files:
        findings.extend(core.check_case(cf, registry, root=ws.root, today=today))
        if letter is not None:
            findings.extend(submit_api.letter_findings(ws, cf, core.bodies(cf, registry)[0], letter))
    return findings


def note_case(
    ws: Workspace, case_id: str, event: str, *, on: str | None, body: str | None, text: str | None = None
) -> tuple[CaseNote, list[str]]:
    """Record a date of the procedure on the case (e.g. when the body transmitted it to
    the government); returns the note and the case's open deadlines."""
    from campaign.models import Invalid, parse

    core.check_note_kind(event)
    cf = core.load_case(cases_folder(ws), case_id)
    registry = _registry(ws)
    if body is None:
        body = core.default_body(cf, registry)
        if body is None and cf.case.to:
            raise UsageError(f"case {case_id} is addressed to several bodies: say which with --to ID")
    elif registry.get(body) is None:
        raise UsageError(f"--to {body!r}: no institution with this id in recipients.yaml")
    try:
        when = date.fromisoformat(on) if on else utcnow().date()
    except ValueError:
        raise UsageError(f"--date {on!r}: write YYYY-MM-DD") from None
    try:
        note = parse(CaseNote, {"event": event, "date": when, "body": body, "text": text})
    except Invalid as err:
        raise UsageError(f"{'.'.join(map(str, err.loc))}: {err.message}") from None
    updated = core.add_note(cf, note)
    return note, [str(d) for d in core.deadlines(updated, registry) if d.body == body]


@dataclass(frozen=True)
class DeadlineRow:
    case: str
    body: str
    due: str | None
    text: str


def deadlines(ws: Workspace, case_ids: Iterable[str] | None = None) -> tuple[list[DeadlineRow], list[str]]:
    """Open follow-ups of every case (or of ``case_ids``), soonest first, and the case files
    that could not be read (one line each). Never raises for a broken case file."""
    folder = cases_folder(ws)
    if not folder.is_dir():
        return [], []
    wanted = set(case_ids) if case_ids is not None else None
    good, bad = core.scan_cases(folder)
    try:
        registry = _registry(ws)
    except CampaignError as err:  # status must still show the queue when recipients.yaml is broken
        return [], [err.message]
    rows = [
        DeadlineRow(d.case, d.body, d.due.isoformat() if d.due else None, str(d))
        for cf in good
        if wanted is None or cf.id in wanted
        for d in core.deadlines(cf, registry)
    ]
    rows.sort(key=lambda r: (r.due or "9999", r.case))
    return rows, [err.message for err in bad]


# ---------------------------------------------------------------------------
# Letters about cases: queue, send, followup, letters check


def _sender_name(ws: Workspace) -> str:
    return ws.settings.sender.name


def load_for_letters(ws: Workspace, case_ids: Sequence[str]) -> list[core.CaseFile]:
    """The cases named with --case (each once). Raises CaseError."""
    ids = list(dict.fromkeys(case_ids))
    return [core.load_case(cases_folder(ws), cid) for cid in ids]


def consent_refusal(files: Sequence[core.CaseFile], recipient: Recipient) -> str | None:
    """The first reason any of the cases may not go to ``recipient``, with the case id."""
    for cf in files:
        problem = core.consent_problem(cf, recipient)
        if problem:
            return f"case {cf.id}: {problem}"
    return None


def check_fictional(ws: Workspace, files: Sequence[core.CaseFile]) -> None:
    """A fictional example may only go to a local test server. Raises CaseError."""
    fictional = [cf.id for cf in files if cf.case.fictional]
    if fictional and not is_loopback(ws.settings.smtp.host):
        raise CaseError(
            f"case {fictional[0]} is a fictional example: it may only be sent to a local test server, "
            f"not {ws.settings.smtp.host}",
            hint="try it with `campaign demo`, or write a real case with `campaign cases new ID`",
        )


def prepare_queue(
    ws: Workspace, case_ids: Sequence[str], letter: Letter, targets: list[Target]
) -> tuple[list[Target], Callable[[Target], Mapping[str, Any]]]:
    """For `queue --case`: refuse (CaseError, nothing queued) when a case's consent does not
    cover an institution; the targets with their cases, and the template context."""
    files = load_for_letters(ws, case_ids)
    if not letter.needs_case:
        raise CaseError(
            f"letters/{letter.id}/ is not a letter about a case (its front matter has no `case: true`)",
            hint="write case letters with `case: true` in the front matter, e.g. letters/case-submission/",
        )
    check_fictional(ws, files)
    for target in targets:
        for cf in files:
            problem = core.consent_problem(cf, target.recipient)
            if problem:  # one line: what is wrong, where, and what to do
                rid = target.recipient.id
                raise CaseError(
                    f"case {cf.id}: {problem}; nothing was queued: record consent covering {rid} "
                    f"at {cf.where('consent')} (consent:), or leave {rid} out"
                )
    context = core.template_context(files, sender=_sender_name(ws), today=utcnow().date())
    ids = tuple(cf.id for cf in files)
    return [replace(t, cases=ids) for t in targets], lambda target: context


def refuse_case_letter_without_case(letter: Letter) -> None:
    """A letter about a case queued without --case. Raises CaseError."""
    if letter.needs_case:
        raise CaseError(
            f"letters/{letter.id}/ is a letter about a case: name it with --case ID",
            hint="see the cases with `campaign cases list`",
        )


class FollowupCases:
    """For `followup`: the cases of the original letters, checked again, as template context."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._files: dict[str, core.CaseFile | CaseError] = {}

    def _load(self, case_id: str) -> core.CaseFile:
        if case_id not in self._files:
            try:
                self._files[case_id] = core.load_case(cases_folder(self.ws), case_id)
            except CaseError as err:
                self._files[case_id] = err
        found = self._files[case_id]
        if isinstance(found, CaseError):
            raise found
        return found

    def problem(self, case_ids: Sequence[str], recipient: Recipient) -> str | None:
        """Why no follow-up may go (consent withdrawn, case file gone), or None."""
        try:
            files = [self._load(cid) for cid in case_ids]
        except CaseError as err:
            return f"cannot check consent: {err.message}"
        return consent_refusal(files, recipient)

    def context_for(self, target: Target) -> Mapping[str, Any]:
        if not target.cases:
            return core.template_context([], sender=_sender_name(self.ws), today=utcnow().date())
        files = [self._load(cid) for cid in target.cases]
        return core.template_context(files, sender=_sender_name(self.ws), today=utcnow().date())


def consent_gate(ws: Workspace, registry: Registry) -> Callable[[dict[str, Any]], tuple[str, str] | None]:
    """For `send`: a claim gate that holds a letter about a case whose consent no longer
    covers its institution (withdrawn, changed, case file gone), checked as each letter is
    claimed. ``release`` puts it back; the next claim checks again."""
    checker = FollowupCases(ws)
    by_id = {r.id: r for r in registry.recipients}

    def gate(row: dict[str, Any]) -> tuple[str, str] | None:
        cases = str(row["cases"] or "")
        recipient = by_id.get(str(row["recipient"]))
        if not cases or recipient is None:
            return None  # no case; or the institution left the registry (the registry gate says so)
        problem = checker.problem(tuple(cases.split(",")), recipient)
        return ("consent", f"consent: {problem}") if problem else None

    return gate


def example_context(ws: Workspace) -> dict[str, Any]:
    """The fictional example case as template context (for `letters check` without --case)."""
    from importlib import resources

    path = resources.files("campaign") / "scaffold" / "cases" / "example.yaml"
    with resources.as_file(path) as real:
        cf = core.parse_case(Path(real), "the fictional example case")
    return core.template_context([cf], sender=_sender_name(ws), today=utcnow().date())


def check_letters(
    ws: Workspace, letter_ids: Sequence[str], case_ids: Sequence[str], *, to: Sequence[str] = ()
) -> LetterCheck:
    """`letters check --case ID`: render the letters with these cases for the institutions
    the cases are addressed to (their ``to:``), or those of ``to``; a template using a field
    the case lacks is a problem. Raises UsageError when the cases are addressed to nobody."""
    from campaign.api import check_letters as check

    files = load_for_letters(ws, case_ids)
    if not to:
        registry = _registry(ws)
        to = list(dict.fromkeys(r.id for cf in files for r in core.bodies(cf, registry)[0]))
        if not to:
            raise UsageError(
                f"case {files[0].id} is addressed to no institution: fill in to: in {files[0].label}, "
                "or name one with --to ID"
            )
    context = core.template_context(files, sender=_sender_name(ws), today=utcnow().date())
    return check(ws, letter_ids, context=context, recipient_ids=to)


def today() -> date:
    return utcnow().date()
