"""The cases registry: the people letters are about, their consent, and what each body needs.

Contract:
- A case is one YAML 1.2 file, ``.campaign/cases/<id>.yaml`` (git-ignored with the rest of
  ``.campaign/``; folder 0700, files 0600 whatever the umask), validated like
  recipients.yaml: errors read ``.campaign/cases/<id>.yaml:14: person.date_of_birth: ...``.
- **Nothing about a person leaves this module unless asked for by name.** Every field
  about a person is sensitive by default; a case lists the fields that may be shown under
  ``public:``. Errors, findings, summaries and deadlines carry field *names*, ids, kinds and
  dates of the procedure, never a value; :func:`reveal` is the one door to a value, and
  the template view (:func:`template_context`) is how a letter gets them.
- Consent names bodies by registry id or tag. :func:`consent_problem` says, in one line
  without personal data, why a case may not go to an institution (none recorded, withdrawn,
  not covering it, or not from whom the body requires), or None.
- :func:`missing_elements` names each element a body's submission profile requires that
  the case lacks, with the line where it belongs; :func:`check_case` adds consent problems
  and the admissibility warnings a machine can check; :func:`deadlines` turns the dates
  recorded with ``campaign cases note`` into the follow-ups the profiles define.
- YAML is read and written through ``campaign.registry`` (the home of ruamel.yaml).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from campaign import registry as yamlio
from campaign.errors import CaseError
from campaign.files import save_private
from campaign.models import (
    CASE_ELEMENTS,
    NOTE_KINDS,
    Case,
    CaseNote,
    Invalid,
    Recipient,
    Registry,
    SubmissionProfile,
    nfc,
    parse,
)
from campaign.render import country_name, missing_value, month_year

MAX_CASE_BYTES = 1024 * 1024
FOLDER_LABEL = ".campaign/cases"
EXAMPLE_ID = "example"

# Fields that describe the procedure, not the person: shown without asking.
PROCEDURAL = (
    "fictional",
    "kind",
    "country",
    "to",
    "public",
    "event.type",
    "source.confidential",
    "source.role",
    "evidence.kind",
    "attachments.kind",
    "consent.given_by",
    "consent.bodies",
    "consent.publish_name",
    "consent.date",
    "consent.withdrawn",
    "notes.event",
    "notes.date",
    "notes.body",
)

_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def _field_paths() -> list[str]:
    """Every dotted field a case can have (sections of lists count as one field)."""
    paths: list[str] = []
    for name, info in Case.model_fields.items():
        sub = info.annotation
        fields = getattr(sub, "model_fields", None)
        if isinstance(fields, dict) and name not in ("remedies", "evidence", "attachments", "consent", "notes"):
            paths.extend(f"{name}.{child}" for child in fields)
        else:
            paths.append(name)
    return paths


# ---------------------------------------------------------------------------
# Loading


@dataclass(frozen=True)
class CaseFile:
    """A validated case and where it came from (the YAML tree gives line numbers)."""

    id: str
    path: Path
    label: str  # ".campaign/cases/<id>.yaml"
    case: Case
    tree: Any

    def line(self, *loc: str | int) -> int:
        """The line of a field, or of its nearest ancestor present in the file."""
        return yamlio.line_of(self.tree, list(loc)) or 1

    def where(self, *loc: str | int) -> str:
        return f"{self.label}:{self.line(*loc)}"


def check_case_id(case_id: str) -> str:
    """A case id: lowercase letters, digits and hyphens (it names a file). Raises CaseError."""
    if not _ID.match(case_id or ""):
        raise CaseError(
            f"case id {case_id!r}: use lowercase letters, digits and hyphens (e.g. tj-2026-01)",
            hint="the id appears in the log and listings: never put a name in it",
        )
    return case_id


def case_path(folder: Path, case_id: str) -> Path:
    return folder / f"{check_case_id(case_id)}.yaml"


def load_case(folder: Path, case_id: str) -> CaseFile:
    """Load and validate ``<folder>/<id>.yaml``. Raises CaseError (file:line: field)."""
    path = case_path(folder, case_id)
    label = f"{FOLDER_LABEL}/{path.name}"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(folder.glob("*.yaml"))[:8]) if folder.is_dir() else ""
        raise CaseError(
            f"{label}: no such case",
            hint=f"cases here: {known}" if known else "create one with `campaign cases new ID`",
        )
    return parse_case(path, label)


def parse_case(path: Path, label: str) -> CaseFile:
    """Validate one case file; every message names file, line and field, never a value."""
    text = nfc(yamlio.read_text(path, label=label, limit=MAX_CASE_BYTES, error=CaseError))
    tree = yamlio.parse_yaml(text, label, CaseError)
    if tree is None:
        raise CaseError(f"{label}: the file is empty", hint="start from `campaign cases new ID`")
    if not isinstance(tree, dict):
        raise CaseError(f"{label}:1: expected a mapping of fields (person:, event:, consent: ...)")
    plain = yamlio.plain_tree(tree, label, CaseError)
    try:
        case = parse(Case, plain)
    except Invalid as err:
        raise _validation_error(err, tree, plain, label) from None
    for index, field in enumerate(case.public):
        if field not in _field_paths() and not ("." not in field and field in Case.model_fields):
            line = yamlio.line_of(tree, ["public", index]) or 1
            raise CaseError(f"{label}:{line}: public[{index}]: not a case field; use names like event.date")
    return CaseFile(path.stem, path, label, case, tree)


def _validation_error(err: Invalid, tree: Any, plain: Any, label: str) -> CaseError:
    loc = [p for p in err.loc if isinstance(p, int) or not any(c in str(p) for c in "[(")]
    line = yamlio.line_of(tree, loc)
    where = f"{label}:{line}" if line else label
    dotted = ""
    for part in loc:
        dotted += f"[{part}]" if isinstance(part, int) else ("." if dotted else "") + str(part)
    message = _message(err)
    for value in sorted(_strings(plain), key=len, reverse=True):
        if len(value) >= 3 and value in message:
            message = message.replace(value, "…")  # never echo what the file says
    return CaseError(f"{where}: {dotted or '(top level)'}: {message}")


def _message(err: Invalid) -> str:
    if err.kind == "extra_forbidden":
        return "unknown key; check the spelling (`campaign cases new ID` writes every key)"
    if err.kind == "missing":
        return "required, but missing"
    if err.kind.startswith("literal_error") or err.kind == "enum":
        return err.message.replace("Input should be", "use")
    if err.kind in ("date_from_datetime_parsing", "date_parsing", "date_type"):
        return "not a date: write YYYY-MM-DD"
    if err.kind == "bool_parsing" or err.kind == "bool_type":
        return "write true or false"
    if err.kind in ("string_type", "dict_type", "list_type", "model_type"):
        return {
            "string_type": "expected text",
            "dict_type": "expected a mapping of fields",
            "list_type": "expected a list",
            "model_type": "expected a mapping of fields",
        }[err.kind]
    return err.message


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def load_cases(folder: Path) -> list[CaseFile]:
    """Every case in the folder, in id order. Raises CaseError at the first broken file."""
    if not folder.is_dir():
        return []
    return [parse_case(p, f"{FOLDER_LABEL}/{p.name}") for p in sorted(folder.glob("*.yaml"))]


def scan_cases(folder: Path) -> tuple[list[CaseFile], list[CaseError]]:
    """Every case that loads, and the errors of those that do not (listings go on)."""
    good: list[CaseFile] = []
    bad: list[CaseError] = []
    if folder.is_dir():
        for path in sorted(folder.glob("*.yaml")):
            try:
                good.append(parse_case(path, f"{FOLDER_LABEL}/{path.name}"))
            except CaseError as err:
                bad.append(err)
    return good, bad


# ---------------------------------------------------------------------------
# Writing (files 0600 in a 0700 folder, replaced atomically)


def ensure_folder(folder: Path) -> Path:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder


def write_private(path: Path, text: str, *, replace: bool = False) -> None:
    """Write ``text`` to ``path`` (0600, atomically: campaign.files), named by its place in
    the cases folder, never by the full path."""
    save_private(path, text.encode("utf-8"), replace=replace, error=CaseError, label=f"{FOLDER_LABEL}/{path.name}")


def template_text(*, example: bool) -> str:
    """The commented template `cases new` writes (or the fictional example)."""
    name = "example.yaml" if example else "template.yaml"
    return (resources.files("campaign") / "scaffold" / "cases" / name).read_text(encoding="utf-8")


def new_case(folder: Path, case_id: str, *, example: bool = False) -> Path:
    """Write a new case file from the template (or the fictional example). Raises CaseError."""
    path = case_path(folder, case_id)
    ensure_folder(folder)
    write_private(path, template_text(example=example))
    return path


def add_note(cf: CaseFile, note: CaseNote) -> CaseFile:
    """Append a dated note to the case file (comments and layout kept); returns it reloaded."""
    text = yamlio.read_text(cf.path, label=cf.label, limit=MAX_CASE_BYTES, error=CaseError)
    item: dict[str, Any] = {"event": note.event, "date": note.date, "body": note.body, "text": note.text}
    updated = yamlio.append_yaml_item(text, "notes", item, label=cf.label, error=CaseError)
    write_private(cf.path, updated, replace=True)
    return parse_case(cf.path, cf.label)


# ---------------------------------------------------------------------------
# Sensitivity


def is_public(case: Case, field: str) -> bool:
    """Whether ``field`` (dotted) may be shown without being asked for by name."""
    if field in PROCEDURAL:
        return True
    parts = field.split(".")
    return any(".".join(parts[: n + 1]) in case.public for n in range(len(parts)))


def _get(data: Any, field: str) -> Any:
    for part in field.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def is_filled(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str | list | dict):
        if isinstance(value, dict):
            return any(is_filled(v) for v in value.values())
        if isinstance(value, list):
            return any(is_filled(v) for v in value)
        return bool(value.strip())
    return True


def field_status(cf: CaseFile) -> list[tuple[str, bool, bool]]:
    """(field, filled, public) for every field of the case: what `cases show` lists."""
    data = cf.case.model_dump(mode="json")
    return [(f, is_filled(_get(data, f)), is_public(cf.case, f)) for f in _field_paths()]


def reveal(cf: CaseFile, field: str) -> Any:
    """The value of one field, asked for by name. Raises CaseError for an unknown field."""
    known = _field_paths()
    if field not in known and not ("." not in field and field in Case.model_fields):
        raise CaseError(f"{cf.label}: no field {field!r}", hint="see the field names with `campaign cases show ID`")
    return _get(cf.case.model_dump(mode="json"), field)


def public_values(cf: CaseFile) -> dict[str, Any]:
    """The values of the fields marked public, and the procedural ones."""
    data = cf.case.model_dump(mode="json")
    return {f: _get(data, f) for f in (*PROCEDURAL, *cf.case.public) if "." not in f or _get(data, f) is not None}


def sensitive_values(case: Case) -> list[str]:
    """Every text value about a person in the case (what must never leak)."""
    data = case.model_dump(mode="json")
    out: list[str] = []
    for field in _field_paths():
        if field.split(".")[0] in ("consent", "notes"):
            continue
        if is_public(case, field):
            continue
        out.extend(_strings(_get(data, field)))
    for consent in data["consent"]:
        out.extend(v for v in (consent.get("name"), consent.get("relationship"), consent.get("recorded")) if v)
    for note in data["notes"]:
        if note.get("text"):
            out.append(note["text"])
    return [v for v in dict.fromkeys(out) if v]


# ---------------------------------------------------------------------------
# Which bodies, what they need, consent


def bodies(cf: CaseFile, registry: Registry) -> tuple[list[Recipient], list[tuple[str, str]]]:
    """The institutions the case is addressed to (``to:`` ids or tags), and the unknown
    entries as (where, entry)."""
    found: list[Recipient] = []
    unknown: list[tuple[str, str]] = []
    for index, entry in enumerate(cf.case.to):
        matched = [r for r in registry.recipients if r.id == entry or entry in r.tags]
        if not matched:
            unknown.append((cf.where("to", index), entry))
        found.extend(r for r in matched if r not in found)
    return found, unknown


def _covers(bodies_: Iterable[str], recipient: Recipient) -> bool:
    return any(b == recipient.id or b in recipient.tags for b in bodies_)


def consent_problem(case: Case | CaseFile, recipient: Recipient) -> str | None:
    """Why the case may not go to ``recipient``, in one line without personal data; None
    when an active consent covers it (and comes from whom the body's profile requires)."""
    if isinstance(case, CaseFile):
        case = case.case
    covering = [c for c in case.consent if _covers(c.bodies, recipient)]
    active = [c for c in covering if c.withdrawn is None]
    profile = recipient.submission
    if active and case.kind == "reprisal" and profile is not None and profile.kind == "special-procedure":
        # OHCHR: for intimidation and reprisal cases "the informed consent of the alleged
        # victim is a prerequisite for the information to be reported".
        if not any(c.given_by == "victim" for c in active):
            return f"a reprisal case needs the victim's own informed consent before it goes to {recipient.id}"
    if active:
        rule = profile.consent if profile else None
        if rule is not None and not any(c.given_by in rule.given_by for c in active):
            givers = " or ".join(rule.given_by)
            have = ", ".join(sorted({c.given_by for c in active}))
            return (
                f"{profile.mandate if profile else recipient.id} needs consent from the {givers}; "
                f"the consent recorded for {recipient.id} is from the {have}"
            )
        return None
    if covering:
        last = max(c.withdrawn for c in covering if c.withdrawn is not None)
        return f"consent for {recipient.id} was withdrawn on {last.isoformat()}"  # every covering one is withdrawn
    if case.consent:
        named = sorted({b for c in case.consent for b in c.bodies})
        return f"the consent recorded does not cover {recipient.id} (it names {', '.join(named)})"
    return f"no consent recorded: add a consent: entry naming {recipient.id} (or one of its tags)"


@dataclass(frozen=True)
class Missing:
    """One required element a case lacks for a body."""

    element: str
    fields: tuple[str, ...]
    meaning: str
    where: str  # file:line where it belongs


def files_on_behalf(case: Case) -> bool:
    """Whether the source files for someone else (``source.role`` is not ``victim``)."""
    return case.source.role != "victim"


def required_elements(case: Case, profile: SubmissionProfile) -> list[str]:
    """What ``profile`` requires of this case: ``requires``, and ``requires_on_behalf`` when
    the source is not the person concerned."""
    extra = profile.requires_on_behalf if files_on_behalf(case) else []
    return list(dict.fromkeys([*profile.requires, *extra]))


def missing_elements(cf: CaseFile, profile: SubmissionProfile) -> list[Missing]:
    """Each element the profile requires of the case (:func:`required_elements`) that the
    case lacks, in the profile's order."""
    data = cf.case.model_dump(mode="json")
    out: list[Missing] = []
    for element in required_elements(cf.case, profile):
        fields, meaning = CASE_ELEMENTS[element]
        if element in profile.requires_on_behalf and element not in profile.requires:
            role = cf.case.source.role
            meaning += (
                f"; source.role is {role}: filed for someone else"
                if role
                else "; needed unless the person submits it themselves (then write source.role: victim)"
            )
        if element == "authorisation":
            ok = any(a.kind == "authorisation" for a in cf.case.attachments)
        else:
            ok = any(is_filled(_get(data, f)) for f in fields)
        if not ok:
            out.append(Missing(element, fields, meaning, cf.where(*fields[0].split("."))))
    return out


Level = Literal["missing", "consent", "error", "warning", "info"]


@dataclass(frozen=True)
class Finding:
    """Something `cases check` reports about one case (and body). No values, ever."""

    case: str
    body: str | None
    level: Level
    where: str
    message: str

    def __str__(self) -> str:
        body = f"{self.body}: " if self.body else ""
        return f"{self.where}: {body}{self.message}"


def check_case(cf: CaseFile, registry: Registry, *, root: Path, today: date) -> list[Finding]:
    """What each body the case is addressed to still needs, consent problems, and the
    admissibility warnings a machine can check."""
    case = cf.case
    out: list[Finding] = []

    def add(body: str | None, level: Level, where: str, message: str) -> None:
        out.append(Finding(cf.id, body, level, where, message))

    if case.fictional:
        add(None, "info", cf.where("fictional"), "a fictional example: it may only go to a local test server")
    targets, unknown = bodies(cf, registry)
    for where, entry in unknown:
        add(None, "error", where, f"to: no institution or tag {entry!r} in recipients.yaml")
    if not case.to:
        add(None, "warning", cf.where("to"), "to: the case is addressed to no body yet (list registry ids or tags)")
    for index, attachment in enumerate(case.attachments):
        problem = attachment_problem(root, attachment.path)
        if problem:
            add(None, "error", cf.where("attachments", index, "path"), f"attachments[{index}].path: {problem}")
    for recipient in targets:
        profile = recipient.submission
        problem = consent_problem(case, recipient)
        if problem:
            add(recipient.id, "consent", cf.where("consent"), problem)
        if profile is None:
            add(recipient.id, "info", cf.where("to"), "no submission profile in recipients.yaml: nothing to check")
            continue
        for missing in missing_elements(cf, profile):
            add(recipient.id, "missing", missing.where, f"missing {missing.element}: {missing.meaning}")
        out.extend(_admissibility(cf, recipient, profile, today))
    return out


def _admissibility(cf: CaseFile, recipient: Recipient, profile: SubmissionProfile, today: date) -> list[Finding]:
    case = cf.case
    out: list[Finding] = []

    def add(level: Level, where: str, message: str) -> None:
        out.append(Finding(cf.id, recipient.id, level, where, message))

    if profile.kind in ("special-procedure", "treaty-body") and "source" not in profile.requires:
        if not (case.source.name or case.source.organisation):
            add("warning", cf.where("source"), "no source named: anonymous communications are not considered")
    if profile.media_only_inadmissible and case.evidence and all(e.kind == "media" for e in case.evidence):
        add(
            "warning",
            cf.where("evidence"),
            "the allegations rest only on media reports: a communication may not be based exclusively on them",
        )
    if profile.one_country and not case.country:
        add("warning", cf.where("country"), "one country per submission: name the State concerned (country:)")
    if profile.consent is not None and profile.consent.prior:
        submitted = [n.date for n in case.notes if n.event == "submitted" and n.body in (None, recipient.id)]
        given = [c.date for c in case.consent if _covers(c.bodies, recipient) and c.withdrawn is None]
        if submitted and given and min(given) > min(submitted):
            add("consent", cf.where("consent"), f"{profile.mandate} needs consent given before the submission")
    if profile.published and not any(c.publish_name for c in case.consent if _covers(c.bodies, recipient)):
        add(
            "info",
            cf.where("consent"),
            f"submissions to {profile.mandate} are published; consent does not allow the name: "
            "prepared documents withhold it",
        )
    if profile.signature:
        add("info", cf.where("source"), "must be signed by hand: print it, sign it, and attach the scan to the e-mail")
    if profile.urgent_within_days and case.event.date:
        start = _first_day(case.event.date)
        if start is not None and today - start <= timedelta(days=profile.urgent_within_days):
            add(
                "info",
                cf.where("event", "date"),
                f"urgent procedure: the events are less than {profile.urgent_within_days} days old; submit now",
            )
    return out


def _first_day(partial: str) -> date | None:
    parts = [int(p) for p in partial.split("-")]
    try:
        return date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
    except (ValueError, IndexError):
        return None


def attachment_problem(root: Path, relative: str) -> str | None:
    """Why an attachment path cannot be used (outside the workspace, missing), or None."""
    try:
        target = (root / relative).resolve()
        target.relative_to(root.resolve())
    except ValueError:
        return "outside the workspace; keep attachments inside it"
    if not target.is_file():
        return "no such file"
    return None


# ---------------------------------------------------------------------------
# Deadlines


@dataclass(frozen=True)
class Deadline:
    """A follow-up a profile defines, counted from a date recorded on the case."""

    case: str
    body: str
    mandate: str
    anchor: str  # the note kind it counts from
    anchor_date: date
    due: date | None
    what: str
    then: str | None

    def __str__(self) -> str:
        when = f" {self.due.isoformat()}" if self.due else ""
        then = f"; then {self.then}" if self.then else ""
        return f"{self.mandate}: {self.what}{when}{then}"


def deadlines(cf: CaseFile, registry: Registry) -> list[Deadline]:
    """Open follow-ups: one per recorded date whose profile defines one, unless a later
    date was recorded for the same body (the step was done)."""
    out: list[Deadline] = []
    notes = sorted(cf.case.notes, key=lambda n: n.date)
    for index, note in enumerate(notes):
        recipient = registry.get(note.body) if note.body else None
        if recipient is None or recipient.submission is None:
            continue
        later = [n for n in notes[index + 1 :] if n.body == note.body and n.event != "other"]
        if later:
            continue
        for follow in recipient.submission.followups:
            if follow.after != note.event:
                continue
            due = note.date + timedelta(days=follow.days) if follow.days is not None else None
            out.append(
                Deadline(
                    cf.id,
                    recipient.id,
                    recipient.submission.mandate,
                    note.event,
                    note.date,
                    due,
                    follow.due,
                    follow.then,
                )
            )
    return sorted(out, key=lambda d: (d.due or d.anchor_date, d.case))


def default_body(cf: CaseFile, registry: Registry) -> str | None:
    """The body a note is about when the case is addressed to exactly one."""
    targets, _ = bodies(cf, registry)
    return targets[0].id if len(targets) == 1 else None


def check_note_kind(kind: str) -> str:
    if kind not in NOTE_KINDS:
        raise CaseError(f"{kind!r} is not a date kind; use one of: {', '.join(NOTE_KINDS)}")
    return kind


# ---------------------------------------------------------------------------
# Letters about cases


def case_key(ids: Sequence[str]) -> str:
    """The cases part of a letter's identity: sorted ids, comma-separated."""
    return ",".join(sorted(dict.fromkeys(ids)))


def subject_for(
    case: Case, case_id: str, recipient: Any, *, organisation: str, today: date, session: str | None = None
) -> str | None:
    """The body's subject pattern filled in (no personal data: mandate, State, month).
    None when the body has no pattern, or it names the session and none was given.
    ``recipient`` is a registry Recipient or the template's view of one."""
    profile = recipient.submission
    if profile is None or profile.subject is None:
        return None
    if "{session}" in profile.subject and not session:
        return None
    values = {
        "mandate": profile.mandate,
        "country": country_name(case.country) if case.country else "",
        "organisation": organisation,
        "month_year": month_year(today),
        "session": session or "",
        "case": case_id,
    }
    return " ".join(profile.subject.format_map(values).split())


class CaseView:
    """A case as templates see it: fields by name (``case.person.names.en``,
    ``case.event.place``), lists iterate; a missing field is falsy in ``{% if %}`` and an
    error naming the field and the case file when printed."""

    __slots__ = ("_data", "_path", "_cf", "_opts")

    def __init__(self, data: Any, path: str, cf: CaseFile, opts: ViewOptions) -> None:
        self._data = data
        self._path = path
        self._cf = cf
        self._opts = opts

    def _wrap(self, value: Any, path: str) -> Any:
        if not is_filled(value):
            return missing_value(f"case {self._cf.id} has no {path} ({self._cf.label})")
        if isinstance(value, dict):
            return CaseView(value, path, self._cf, self._opts)
        if isinstance(value, list):
            return [self._wrap(v, f"{path}[{n}]") for n, v in enumerate(value)]
        if isinstance(value, str) and "\n" in value and not path.endswith("address"):
            # Prose wrapped by hand in the YAML file: one paragraph per blank-line block.
            blocks = [" ".join(line.strip() for line in b.splitlines()) for b in value.split("\n\n")]
            return "\n\n".join(b for b in blocks if b)
        return value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if isinstance(self._data, dict) and name in self._data:
            return self._wrap(self._data[name], f"{self._path}.{name}" if self._path else name)
        if self._path == "" and name == "id":
            return self._cf.id
        return missing_value(f"case {self._cf.id} has no field {self._path + '.' if self._path else ''}{name}")

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data) if isinstance(self._data, dict) else iter(())

    def __str__(self) -> str:
        return f"case {self._cf.id}" if not self._path else self._path

    def name_in(self, lang: str) -> Any:
        """The person's name in ``lang`` (else English, else the first one written)."""
        if self._opts.withhold_name:
            return WITHHELD.get(lang, WITHHELD["en"])
        names = {k: v for k, v in self._cf.case.person.names.items() if v}
        for key in (lang, *(k for k in names if k.startswith(lang + "-")), "en"):
            if names.get(key):
                return names[key]
        if names:
            return next(iter(names.values()))
        return missing_value(f"case {self._cf.id} has no person.names ({self._cf.label})")

    def country_name(self, lang: str = "en") -> Any:
        if not self._cf.case.country:
            return missing_value(f"case {self._cf.id} has no country ({self._cf.label})")
        return country_name(self._cf.case.country, lang)

    def subject_for(self, recipient: Recipient) -> Any:
        """The body's subject pattern, filled in; missing when the body has none."""
        subject = subject_for(
            self._cf.case,
            self._cf.id,
            recipient,
            organisation=self._opts.sender,
            today=self._opts.today,
            session=self._opts.session,
        )
        if subject is None:
            return missing_value(f"{recipient.id} has no submission subject in recipients.yaml")
        return subject


WITHHELD = {"en": "[name withheld]", "ru": "[имя не указано]", "fr": "[nom non communiqué]", "es": "[nombre omitido]"}


@dataclass(frozen=True)
class ViewOptions:
    sender: str
    today: date
    withhold_name: bool = False
    session: str | None = None


def template_context(
    files: Sequence[CaseFile],
    *,
    sender: str,
    today: date,
    document: dict[str, str] | None = None,
    withhold_name: bool = False,
    session: str | None = None,
) -> dict[str, Any]:
    """``case`` (the first case), ``cases`` (all) and ``document`` (the attached submission
    document: ``document.filename``, ``document.form``; None when nothing is attached)."""
    opts = ViewOptions(sender, today, withhold_name, session)
    views = [CaseView(cf.case.model_dump(mode="json"), "", cf, opts) for cf in files]
    return {
        "case": views[0] if views else missing_value("this letter is not about a case"),
        "cases": views,
        "document": document,
    }
