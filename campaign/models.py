"""The data model: validated institutions, contacts, letters and queued messages.

Everything here is a pydantic v2 model (``extra="forbid"``) or a plain value type,
with no I/O. Validation errors are plain ``ValueError`` with a short, user-facing
sentence; ``registry`` and ``config`` turn them into ``file:line: field: message``.

Also the home of e-mail address validation (email-validator, no DNS lookups):
internationalised domains are valid and kept in their normalised Unicode form;
a non-ASCII local part is accepted here and needs SMTPUTF8 at send time.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal, TypeVar, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from campaign import transitions as _transitions

# ---------------------------------------------------------------------------
# Small value types


def nfc(text: str) -> str:
    """Return ``text`` in Unicode NFC (a decomposed ӣ loses its macron in some paths)."""
    return unicodedata.normalize("NFC", text)


_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""Every control character (Unicode Cc) and every other line break str.splitlines() knows."""


def has_line_break(value: str) -> bool:
    """True for any line break Python or a mail reader knows, and any other control
    character (header injection hides in \r, \n, but also \x1c-\x1e, \x85, \u2028...)."""
    return _BREAKS.search(value) is not None


def _no_line_breaks(value: str) -> str:
    if has_line_break(value):
        raise ValueError("contains a line break or control character; header values must be one line")
    return value


def _one_line_text(value: Any) -> Any:
    if isinstance(value, str):
        value = nfc(value.strip())
        _no_line_breaks(value)
        if not value:
            raise ValueError("must not be empty")
    return value


def _text(value: Any) -> Any:
    if isinstance(value, str):
        value = nfc(value)
    return value


OneLine = Annotated[str, BeforeValidator(_one_line_text)]
"""A non-empty single-line string: it may end up in a mail header."""

Text = Annotated[str, BeforeValidator(_text)]
"""Free text (may span lines), NFC-normalised."""

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def _slug(value: Any) -> Any:
    if isinstance(value, str) and not _SLUG.match(value):
        raise ValueError(f"{value!r} is not a valid id: use lowercase letters, digits and hyphens (e.g. 'ohchr')")
    return value


Slug = Annotated[str, AfterValidator(_slug)]


def check_campaign_id(value: str) -> str:
    """A campaign name follows the rule of institution ids (lowercase letters, digits and
    hyphens, at most 64): it is printed, logged and put in file names. Raises ValueError."""
    if not _SLUG.match(value):
        raise ValueError(
            f"{value!r} is not a valid campaign name: use lowercase letters, digits and hyphens, at most 64 "
            "(e.g. 'peace-agreement-2026')"
        )
    return value


_LANG = re.compile(r"^[a-z]{2}$")


def _lang(value: Any) -> Any:
    if isinstance(value, str) and not _LANG.match(value):
        raise ValueError(f"{value!r} is not an ISO 639-1 language code (two lowercase letters)")
    return value


Lang = Annotated[str, AfterValidator(_lang)]


def normalize_address(value: str, info: ValidationInfo | None = None) -> str:
    """Validate an e-mail address (no DNS) and return its normalised form.

    Validation is remembered per process (a registry of 10,000 institutions checks each
    address once, however often a command asks). Inside a model validated with the
    context ``{"trusted": True}`` (our own cache of an already validated registry) an
    address already in normal form is taken as it is.

    Raises ``ValueError`` with a readable reason.
    """
    if not isinstance(value, str):
        raise ValueError("not a valid address: expected text")
    _no_line_breaks(value)
    candidate = nfc(value.strip())
    if info is not None and isinstance(info.context, dict) and info.context.get("trusted") and candidate == value:
        return candidate
    return _validated_address(candidate)


@functools.lru_cache(maxsize=1 << 16)
def _validated_address(candidate: str) -> str:
    # The limit is checked before and after the library: email-validator before 2.2 refuses a
    # long local part itself, in words that do not say what the limit is.
    _local_part_fits(candidate.rpartition("@")[0])
    try:
        info = validate_email(candidate, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as err:
        raise ValueError(f"not a valid address: {err}") from None
    local = str(info.normalized).rpartition("@")[0]
    _local_part_fits(local)
    if _ENCODED_WORD.search(local):
        raise ValueError(
            "not a valid address: the part before the @ is an encoded word (=?charset?b?...?=), which mail "
            "programs decode into a different address"
        )
    return str(info.normalized)


def _local_part_fits(local: str) -> None:
    size = len(local.encode("utf-8"))
    if size > 64:
        raise ValueError(
            f"not a valid address: the part before the @ is {size} bytes long; "
            "mail servers accept at most 64 (RFC 5321)"
        )


_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bBqQ]\?[^?]*\?=")


def ascii_address(address: str) -> str | None:
    """The normalised ``address`` with its domain in IDNA (punycode) form, or None when
    the local part is not ASCII (such an address needs SMTPUTF8). A normalised address
    that is all ASCII is its own ASCII form (tests/test_models.py checks the library
    agrees), so only the others go through email_validator."""
    if address.isascii():
        return address
    return _ascii_form(address)


@functools.lru_cache(maxsize=1 << 16)
def _ascii_form(address: str) -> str | None:
    info = validate_email(address, check_deliverability=False, allow_smtputf8=True)
    return info.ascii_email


def address_key(address: str) -> str:
    """The key that makes two spellings of one address the same contact."""
    return normalize_address(address).casefold()


def address_domain(address: str) -> str:
    """The receiving domain of an address, lowercased, in IDNA form where possible."""
    domain = address.rpartition("@")[2].lower()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def _email_field(value: Any, info: ValidationInfo) -> str:
    # Its own function, with ``info`` required: pydantic passes ValidationInfo only to a
    # validator whose second parameter has no default (normalize_address's has one).
    return normalize_address(value, info)


Email = Annotated[str, BeforeValidator(_email_field)]

_DURATION = re.compile(r"(\d+)\s*(w|d|h|m|s)")
_DURATION_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(value: Any) -> timedelta:
    """Parse ``"3d"``, ``"90m"``, ``"1h30m"``, ``"14d"`` or a number of seconds.

    Raises ``ValueError``.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError("not a duration")
    text = value.strip().lower().replace(" ", "")
    pos = 0
    seconds = 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        seconds += int(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{value!r} is not a duration: write a number and a unit, e.g. '30s', '10m', '3d', '1h30m'")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Render a timedelta the way :func:`parse_duration` reads it (``"1h30m"``)."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = _DURATION_UNITS[unit]
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


ZONE_ALIASES = {
    # Cities where institutions sit that have no IANA zone of their own.
    "Europe/Geneva": "Europe/Zurich",
    "Europe/Strasbourg": "Europe/Paris",
    "Europe/The_Hague": "Europe/Amsterdam",
    "America/Washington": "America/New_York",
}


def resolve_zone(name: str) -> ZoneInfo:
    """An IANA zone (``Europe/Geneva`` is read as ``Europe/Zurich``). Raises ValueError."""
    try:
        return ZoneInfo(ZONE_ALIASES.get(name, name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone name (e.g. 'Europe/Zurich')") from None


def _timezone(value: Any) -> Any:
    if isinstance(value, str):
        resolve_zone(value)
        return ZONE_ALIASES.get(value, value)
    return value


TimeZoneName = Annotated[str, AfterValidator(_timezone)]


def _country(value: str) -> str:
    if not re.fullmatch(r"[A-Z]{2}", value):
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code (e.g. 'CH')")
    return value


Country = Annotated[str, AfterValidator(_country)]

_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def parse_days(spec: str) -> frozenset[int]:
    """``"mon-fri"``, ``"mon,wed,fri"`` or ``"mon-thu,sat"`` → weekday numbers (Mon=0)."""
    days: set[int] = set()
    for part in spec.lower().replace(" ", "").split(","):
        if "-" in part:
            first, _, last = part.partition("-")
            if first not in _DAYS or last not in _DAYS:
                raise ValueError(f"{spec!r}: days are mon, tue, wed, thu, fri, sat, sun")
            a, b = _DAYS.index(first), _DAYS.index(last)
            span = range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)]
            days.update(span)
        elif part in _DAYS:
            days.add(_DAYS.index(part))
        else:
            raise ValueError(f"{spec!r}: days are mon, tue, wed, thu, fri, sat, sun (e.g. 'mon-fri')")
    return frozenset(days)


def _clock(value: Any) -> Any:
    if isinstance(value, str):
        if not re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
            raise ValueError(f"{value!r} is not a time of day: write HH:MM, e.g. '09:00'")
        hours, minutes = (int(x) for x in value.strip().split(":"))
        if hours == 24 and minutes == 0:
            return time.max
        if hours > 23 or minutes > 59:
            raise ValueError(f"{value!r} is not a time of day: write HH:MM, e.g. '09:00'")
        return time(hours, minutes)
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 sexagesimal leftovers (9:00 → 540) never reach us with YAML 1.2,
        # but a bare number is still a mistake worth naming.
        raise ValueError(f"{value!r} is not a time of day: write HH:MM in quotes, e.g. '09:00'")
    return value


def _clock_text(value: time) -> str:
    return "24:00" if value == time.max else value.strftime("%H:%M")


ClockTime = Annotated[time, BeforeValidator(_clock), PlainSerializer(_clock_text, return_type=str)]


class StrictModel(BaseModel):
    """Base for user-facing models: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Invalid(ValueError):
    """The first validation problem of some data: where (``loc``), what, and its kind."""

    def __init__(self, loc: tuple[str | int, ...], message: str, kind: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message
        self.kind = kind


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any) -> M:
    """Validate ``data`` as ``model``; raise :class:`Invalid` with the first problem.

    Keeps pydantic inside this module (and config): callers see plain locations.
    """
    try:
        return model.model_validate(data)
    except ValidationError as err:
        errors = err.errors()
        # A misspelt key shows up twice: as unknown, and as the missing real one. Say the first.
        # A value that fits no branch of a union (text or a mapping) is reported once per
        # branch; the branch of the value's own kind says what is really wrong with it.
        first = next(
            (e for e in errors if e["type"] == "extra_forbidden"),
            next((e for e in errors if not str(e["type"]).endswith("_type")), errors[0]),
        )
        raise Invalid(tuple(first["loc"]), describe_error(first), str(first["type"])) from None


def _kind_of(value: Any) -> str:
    """What a value is, in the words of someone who wrote a YAML/TOML/CSV file."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value[:40]!r}" if value.strip() else "empty text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping (key: value)"
    return type(value).__name__


_RANGE_WORDS = {
    "greater_than_equal": ("ge", "must be at least {}"),
    "greater_than": ("gt", "must be more than {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "less_than": ("lt", "must be less than {}"),
}


def describe_error(error: Mapping[str, Any]) -> str:
    """One pydantic error in our words: what was expected, and what was found.

    The only place that translates pydantic's wording ("Input should be a valid
    integer, unable to parse string as an integer", "Value error, ...") for users;
    ``registry`` and ``config`` both get their messages from here.
    """
    kind = str(error.get("type", ""))
    value = error.get("input")
    ctx = error.get("ctx") or {}
    got = _kind_of(value)
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required, but missing"
    if kind in ("value_error", "assertion_error"):
        err = ctx.get("error")
        message = str(err) if err is not None else str(error.get("msg", ""))
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        return message
    if kind in _RANGE_WORDS:
        key, words = _RANGE_WORDS[kind]
        return words.format(ctx.get(key)) + f", not {value}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected a whole number, got {got}"
    if kind in ("float_parsing", "float_type", "finite_number"):
        return f"expected a number, got {got}"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false, got {got}"
    if kind in ("string_type", "string_unicode"):
        return f"expected text, got {got}"
    if kind in ("list_type", "tuple_type", "set_type"):
        return f"expected a list, e.g. [a, b], got {got}"
    if kind in ("dict_type", "mapping_type", "model_type", "model_attributes_type", "dataclass_type"):
        return f"expected a mapping (key: value), got {got}"
    if kind.startswith(("date_", "datetime_")):
        return f"expected a date written YYYY-MM-DD, got {got}"
    if kind.startswith("time_"):
        return f"expected a time written HH:MM, got {got}"
    if kind in ("too_short", "too_long"):
        size = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        if kind == "too_short":
            return "must not be empty" if size in (None, 1) else f"needs at least {size} entries"
        return f"has more than {size} entries"
    if kind in ("literal_error", "enum"):
        return f"must be {ctx.get('expected', 'one of the allowed values')}, not {value!r}"
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ").replace("Input should be", "must be")
    return message


# ---------------------------------------------------------------------------
# Registry


class OfficeHours(StrictModel):
    """When an institution accepts letters, in its own time zone."""

    days: str = "mon-fri"
    start: ClockTime = time(9, 0)
    end: ClockTime = time(17, 0)

    @field_validator("days")
    @classmethod
    def _check_days(cls, value: str) -> str:
        parse_days(value)
        return value

    @model_validator(mode="after")
    def _check_order(self) -> OfficeHours:
        if self.end <= self.start:
            raise ValueError("office_hours: end must be after start")
        return self

    @property
    def weekdays(self) -> frozenset[int]:
        return parse_days(self.days)


# ---------------------------------------------------------------------------
# Submission profiles: what a body requires of a case (recipients.yaml `submission:`)

CASE_ELEMENTS: dict[str, tuple[tuple[str, ...], str]] = {
    # element name → (case fields, any one of which satisfies it; what it means)
    "name": (("person.names",), "the person's full name"),
    "identifying_data": (
        ("person.date_of_birth", "person.identity_document", "person.photo"),
        "identifying data: date of birth, identity document or photo",
    ),
    "date_of_birth": (("person.date_of_birth",), "the person's date of birth"),
    "nationality": (("person.nationality",), "the person's nationality"),
    "date": (("event.date",), "the date of the arrest, disappearance or events"),
    "place": (("event.place",), "the place of arrest, abduction or last sighting"),
    "perpetrators": (("event.perpetrators",), "the persons or authorities believed responsible"),
    "circumstances": (("event.circumstances",), "the circumstances, in chronological order"),
    "whereabouts": (("whereabouts",), "where the person is held, or that it is unknown"),
    "detention": (("detention.authority",), "the authority that ordered the detention, and on what legal basis"),
    "grounds": (("grounds",), "why it violates the person's rights (articles or categories)"),
    "remedies": (("remedies",), "domestic remedies tried, or steps taken by the relatives"),
    "remedy_sought": (("remedy_sought",), "what the body is asked to do"),
    "source": (("source.name", "source.organisation"), "who submits the case (the source; kept confidential)"),
    "author": (("source.address",), "the author's postal address (and e-mail)"),
    "state": (("country",), "the State concerned"),
    "authorisation": (("attachments",), "the victim's signed authorisation, attached (kind: authorisation)"),
}
"""The case elements a submission profile can require, by the name ``cases check`` prints."""

NoteKind = Literal["submitted", "transmitted", "government-reply", "comments-sent", "clarified", "closed", "other"]
"""Dates an organiser records on a case (`campaign cases note ID KIND --date ...`)."""
NOTE_KINDS: tuple[str, ...] = get_args(NoteKind)

ConsentGiver = Literal["victim", "relative", "representative"]
_ANY_GIVER: list[ConsentGiver] = ["victim", "relative", "representative"]


def _element(value: Any) -> Any:
    if isinstance(value, str) and value not in CASE_ELEMENTS:
        raise ValueError(f"{value!r} is not a case element; use one of: {', '.join(CASE_ELEMENTS)}")
    return value


CaseElement = Annotated[str, AfterValidator(_element)]


class ConsentRule(StrictModel):
    """Whose consent a body needs before a case goes to it (campaign itself never sends a
    case where no consent covers the body)."""

    given_by: list[ConsentGiver] = Field(default_factory=lambda: _ANY_GIVER.copy(), min_length=1)
    prior: bool = False  # given before anything is submitted (WGEID: "with the prior consent of the relatives")


class FollowUp(StrictModel):
    """A deadline counted from a date recorded on the case."""

    after: NoteKind
    days: Annotated[int, Field(ge=0, le=3650)] | None = None
    due: OneLine  # what falls due ("government reply due")
    then: OneLine | None = None  # what the organiser does next ("send comments on the reply")


class SubmissionProfile(StrictModel):
    """How one body takes submissions about a case. Accepted languages are the
    institution's own ``languages``; the rules come from ``source``."""

    mandate: OneLine  # the short name used in subjects and deadlines ("WGAD")
    kind: Literal["special-procedure", "treaty-body", "upr", "other"]
    channel: Literal["email", "web-form", "post"]
    format: Literal["email-text", "pdf", "docx"]
    form: OneLine | None = None  # the body's own form or questionnaire
    requires: list[CaseElement] = Field(default_factory=list)
    # Also required when the source is not the person concerned (source.role is not victim):
    # a treaty body needs the victim's authorisation from whoever files for them.
    requires_on_behalf: list[CaseElement] = Field(default_factory=list)
    consent: ConsentRule | None = None
    max_pages: Annotated[int, Field(ge=1, le=1000)] | None = None
    max_words: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    subject: OneLine | None = None  # pattern: {mandate} {country} {organisation} {month_year} {session} {case}
    one_country: bool = False
    signature: bool = False  # signed by hand; a scan goes with an e-mail
    published: bool = False  # submissions become public documents
    urgent_within_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    media_only_inadmissible: bool = False  # "not exclusively based on mass-media reports"
    followups: list[FollowUp] = Field(default_factory=list)
    source: OneLine  # the body's own page where these rules are published
    note: Text | None = None

    @field_validator("subject")
    @classmethod
    def _check_subject(cls, value: str | None) -> str | None:
        if value is not None:
            for name in re.findall(r"\{([^{}]*)\}", value):
                if name not in SUBJECT_FIELDS:
                    known = ", ".join("{" + f + "}" for f in SUBJECT_FIELDS)
                    raise ValueError(f"unknown placeholder {{{name}}}; use {known}")
        return value


SUBJECT_FIELDS = ("mandate", "country", "organisation", "month_year", "session", "case")


Salutation = OneLine | dict[Lang, OneLine]

Localized = OneLine | dict[Lang, OneLine]
"""A one-line text, or one per language: ``name: {en: …, ru: …, tg: …}``."""

LocalizedText = Text | dict[Lang, Text]
"""Free text (an address), or one per language."""


def in_language(
    value: str | dict[str, str] | None, lang: str, preferred: list[str] | tuple[str, ...] = ()
) -> str | None:
    """The version of ``value`` for ``lang``: that language, else English, else the first of
    ``preferred`` (the institution's languages) that exists, else the first given."""
    if value is None or isinstance(value, str):
        return value
    for candidate in (lang, "en", *preferred):
        if candidate in value:
            return value[candidate]
    return next(iter(value.values()), None)


_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_RESERVED_FIELDS = frozenset(name for name in dir(dict) if not name.startswith("_"))


def _field_name(value: Any) -> Any:
    if isinstance(value, str):
        if not _FIELD_NAME.match(value):
            raise ValueError(
                f"{value!r} is not a field name: use lowercase letters, digits and underscores, "
                "starting with a letter (e.g. reference_number), so templates can write recipient.fields.NAME"
            )
        if value in _RESERVED_FIELDS:
            raise ValueError(f"{value!r} cannot be a field name (templates use it for something else); choose another")
    return value


def _field_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float | date):
        return str(value)
    if isinstance(value, str):
        value = nfc(value.strip())
        if not value:
            raise ValueError("is empty; leave the field out instead")
        return value
    raise ValueError(f"a field holds one value (text or a number), not {_kind_of(value)}")


FieldName = Annotated[str, AfterValidator(_field_name)]
FieldValue = Annotated[str, BeforeValidator(_field_value)]
Fields = dict[FieldName, FieldValue]
"""Custom facts about an institution or a contact (``fields:``), for templates as
``recipient.fields.NAME``. Facts about institutions only: data about people belongs in the
private case store, never in the git-tracked registry."""


class Contact(StrictModel):
    """One address at an institution."""

    email: Email
    name: OneLine | None = None
    role: Slug | None = None
    salutation: Salutation | None = None
    source: OneLine | None = None
    checked: date | None = None
    fields: Fields = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """:func:`address_key` of this contact, without validating the address again
        (the model holds it normalised)."""
        return self.email.casefold()

    def salutation_for(self, lang: str) -> str | None:
        if isinstance(self.salutation, str):
            return self.salutation
        if isinstance(self.salutation, dict):
            return self.salutation.get(lang)
        return None


class Recipient(StrictModel):
    """An institution in recipients.yaml."""

    id: Slug
    name: Localized
    tags: list[Slug] = Field(default_factory=list)
    languages: list[Lang] = Field(min_length=1)
    contacts: list[Contact] = Field(default_factory=list)
    country: Country | None = None
    timezone: TimeZoneName | None = None
    postal_address: LocalizedText | None = None
    website: OneLine | None = None
    source: OneLine | None = None
    checked: date | None = None
    max_per_day: Annotated[int, Field(ge=1, le=10000)] | None = None
    office_hours: OfficeHours | None = None
    submission: SubmissionProfile | None = None
    fields: Fields = Field(default_factory=dict)

    @field_validator("name", "postal_address")
    @classmethod
    def _some_language(cls, value: Any) -> Any:
        if isinstance(value, dict) and not value:
            raise ValueError("give the text, or one per language: {en: …, ru: …}")
        return value

    def name_in(self, lang: str) -> str:
        """The institution's name in ``lang`` (else English, else its first language)."""
        return in_language(self.name, lang, self.languages) or ""

    def address_in(self, lang: str) -> str | None:
        """The postal address in ``lang`` (else English, else its first language), or None."""
        return in_language(self.postal_address, lang, self.languages)

    @property
    def label(self) -> str:
        """The name to show in lists: English where given, else the first."""
        return self.name_in("en")

    @field_validator("contacts")
    @classmethod
    def _unique_contacts(cls, contacts: list[Contact]) -> list[Contact]:
        seen: set[str] = set()
        for contact in contacts:
            key = contact.email.casefold()
            if key in seen:
                raise ValueError(f"{contact.email} appears twice; list each address once")
            seen.add(key)
        return contacts

    @property
    def postal_only(self) -> bool:
        return not self.contacts

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone or "UTC")


class Registry(StrictModel):
    """The whole recipients.yaml."""

    recipients: list[Recipient]

    @field_validator("recipients")
    @classmethod
    def _unique_ids(cls, recipients: list[Recipient]) -> list[Recipient]:
        seen: set[str] = set()
        for recipient in recipients:
            if recipient.id in seen:
                raise ValueError(f"id {recipient.id!r} is used twice; ids must be unique")
            seen.add(recipient.id)
        return recipients

    def get(self, recipient_id: str) -> Recipient | None:
        for recipient in self.recipients:
            if recipient.id == recipient_id:
                return recipient
        return None


# ---------------------------------------------------------------------------
# Letters


_FRONT = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(?:\n|\Z)", re.S)


def split_front_matter(text: str) -> tuple[str | None, str, int]:
    """Split a letter file: (front matter or None, body, 1-based line where the body starts)."""
    match = _FRONT.match(text)
    if not match:
        return None, text, 1
    front = match.group(1) or ""
    return front, text[match.end() :], text[: match.end()].count("\n") + 1


def _voice(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("i", "we"):
        return "I" if value.strip().lower() == "i" else "we"
    return value


Voice = Annotated[Literal["I", "we"], BeforeValidator(_voice)]
"""Who speaks in a letter: "I" (one person) or "we" (the organisation)."""


class FrontMatter(StrictModel):
    """The YAML block at the top of a letter template."""

    subject: OneLine
    description: OneLine | None = None
    case: bool = False  # a letter about a case: queued with --case ID
    voice: Voice | None = None  # None: "we" when the organisation sends, "I" when a supporter signs


class LetterTemplate(StrictModel):
    """One language version of a letter: ``letters/<id>/<lang>.md.j2``."""

    lang: Lang
    path: str  # relative to the letters folder, with forward slashes
    subject: str
    description: str | None = None
    body_line: int  # 1-based line where the body starts in the file
    case: bool = False
    voice: str | None = None  # "I" or "we" from the front matter; None: by who signs


class Letter(StrictModel):
    """A letter and its language versions."""

    id: Slug
    templates: dict[str, LetterTemplate]

    @property
    def languages(self) -> list[str]:
        return sorted(self.templates)

    @property
    def needs_case(self) -> bool:
        """A letter about a case (``case: true`` in its front matter)."""
        return any(t.case for t in self.templates.values())

    @property
    def description(self) -> str | None:
        for lang in ("en", *self.languages):
            template = self.templates.get(lang)
            if template and template.description:
                return template.description
        return None


class Sender(StrictModel):
    """The organisation that sends the letters ([sender] in campaign.toml)."""

    name: OneLine
    email: Email
    reply_to: Email | None = None
    address: Text | None = None
    signatory: OneLine | None = None
    signatory_title: OneLine | None = None

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2]


class OriginalLetter(StrictModel):
    """What a follow-up letter knows about the letter it follows."""

    subject: str
    sent_on: str
    message_id: str


# ---------------------------------------------------------------------------
# Queue and log


# The statuses and their moves live in campaign.transitions (pure, cheap to import);
# re-exported here as the models' vocabulary.
Status = _transitions.Status
PENDING_STATES = frozenset(_transitions.PENDING)
FINAL_STATES = _transitions.FINAL


class Message(BaseModel):
    """A queued letter to one contact, as the store returns it (bytes excluded)."""

    model_config = ConfigDict(frozen=True)

    id: int
    campaign: str
    letter: str
    recipient: str
    email: str
    lang: str
    subject: str
    message_id: str
    envid: str
    status: Status
    attempts: int = 0
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None = None
    wait_reason: str | None = None
    sent_at: datetime | None = None
    last_code: int | None = None
    last_status: str | None = None
    last_reply: str | None = None
    remote_id: str | None = None
    possible_duplicate: bool = False
    delivery_status: str | None = None
    delivery_detail: str | None = None
    reporting_mta: str | None = None
    receipt_at: datetime | None = None
    delayed_at: datetime | None = None
    displayed_at: datetime | None = None
    deleted_at: datetime | None = None
    replied_at: datetime | None = None
    auto_replied_at: datetime | None = None
    in_reply_to: str | None = None
    body_sha256: str
    cases: tuple[str, ...] = ()  # the cases a letter is about (ids; part of its identity)


class Event(BaseModel):
    """One entry of the hash-chained log. ``data`` holds only str, int, bool, None,
    lists and dicts of those: no floats, so the canonical JSON is stable."""

    model_config = ConfigDict(frozen=True)

    seq: int
    time: datetime
    kind: str
    message: str | None = None  # the RFC 5322 Message-ID, not a row id
    campaign: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    hash: str


ReceiptKind = Literal["dsn", "mdn", "reply", "auto-reply"]


def utcnow() -> datetime:
    """Now, in UTC, to the second (stored times carry no sub-second noise)."""
    return datetime.now(UTC).replace(microsecond=0)


def to_rfc3339(moment: datetime) -> str:
    """A UTC RFC 3339 timestamp with a ``Z``: the only time format the log stores."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def from_rfc3339(text: str) -> datetime:
    """Parse what :func:`to_rfc3339` writes."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# ---------------------------------------------------------------------------
# Cases (.campaign/cases/<id>.yaml): the people a letter is about. Every field about a
# person is sensitive: it is shown only when asked for by name (see campaign.cases).


def _optional_text(value: Any) -> Any:
    """An empty string in a case file is a field left blank: None."""
    if isinstance(value, str):
        value = nfc(value).strip()
        return value or None
    return value


def _optional_line(value: Any) -> Any:
    value = _optional_text(value)
    if isinstance(value, str) and has_line_break(value):
        raise ValueError("must be one line")
    return value


CaseText = Annotated[str | None, BeforeValidator(_optional_text)]
_Date = date  # for fields declared after a field named `date`
CaseLine = Annotated[str | None, BeforeValidator(_optional_line)]

_PARTIAL_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def _partial_date(value: Any) -> Any:
    """YYYY-MM-DD, YYYY-MM or YYYY (a disappearance may be known only to the month)."""
    if isinstance(value, date):
        return value.isoformat()
    value = _optional_text(value)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _PARTIAL_DATE.match(value):
        raise ValueError("write the date as YYYY-MM-DD, or YYYY-MM or YYYY when the day is not known")
    parts = [int(p) for p in value.split("-")]
    try:
        date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
    except ValueError:
        raise ValueError("not a real date: write YYYY-MM-DD") from None
    return value


PartialDate = Annotated[str | None, BeforeValidator(_partial_date)]
_NAME_KEY = re.compile(r"^[a-z]{2}(-[A-Z][a-z]{3})?$")


def _name_keys(value: Any) -> Any:
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str) or not _NAME_KEY.match(key):
                raise ValueError("name keys are language codes, with a script if needed: en, ru, tg, tg-Latn")
    return value


class CasePerson(StrictModel):
    """The person the case is about."""

    names: Annotated[dict[str, CaseLine], BeforeValidator(_name_keys)] = Field(default_factory=dict)
    other_names: list[CaseLine] = Field(default_factory=list)
    gender: CaseLine = None
    date_of_birth: PartialDate = None
    place_of_birth: CaseLine = None
    nationality: CaseLine = None
    identity_document: CaseLine = None
    photo: CaseLine = None  # a path inside the workspace
    occupation: CaseLine = None
    address: CaseText = None
    affiliation: CaseText = None


class CaseEvent(StrictModel):
    """What happened: the arrest, disappearance, sentence or reprisal."""

    type: Literal["arrest", "disappearance", "detention", "sentence", "reprisal", "torture", "other"] | None = None
    date: PartialDate = None
    place: CaseText = None
    circumstances: CaseText = None
    perpetrators: CaseText = None
    witnesses: CaseText = None


class CaseDetention(StrictModel):
    """The detention, for bodies that judge whether it is arbitrary."""

    authority: CaseText = None
    legal_basis: CaseText = None
    place: CaseText = None
    charges: CaseText = None
    sentence: CaseText = None
    conditions: CaseText = None


class CaseRemedy(StrictModel):
    """One step taken at home: a complaint, an inquiry, habeas corpus."""

    date: PartialDate = None
    action: CaseText = None
    result: CaseText = None


SourceRole = Literal["victim", "relative", "representative", "organisation"]


class CaseSource(StrictModel):
    """Who submits the case: kept confidential by the bodies unless waived."""

    name: CaseLine = None
    organisation: CaseLine = None
    # Who submits, for the person concerned: "victim" when they submit it themselves. Any
    # other value (or none) is filing for someone else (their authorisation is needed).
    role: SourceRole | None = None
    relationship: CaseLine = None
    address: CaseText = None
    email: CaseLine = None
    phone: CaseLine = None
    confidential: bool = True


class CaseEvidence(StrictModel):
    """What the allegations rest on."""

    kind: Literal["testimony", "document", "official", "photo", "media", "other"]
    description: CaseText = None


class CaseAttachment(StrictModel):
    """A file that goes with submissions: a path inside the workspace."""

    path: str
    kind: Literal["document", "photo", "authorisation", "media", "other"] = "document"
    description: CaseLine = None


class CaseConsent(StrictModel):
    """Who agreed that the case may go to which bodies."""

    given_by: ConsentGiver
    name: CaseLine = None
    relationship: CaseLine = None
    bodies: list[str] = Field(min_length=1)  # registry ids or tags
    publish_name: bool = False
    date: date
    recorded: CaseText = None  # how: signed form, recorded call...
    withdrawn: _Date | None = None

    @field_validator("bodies")
    @classmethod
    def _check_bodies(cls, bodies: list[str]) -> list[str]:
        for body in bodies:
            _slug(body)
        return bodies


class CaseNote(StrictModel):
    """A date recorded on the case: deadlines count from these."""

    event: NoteKind
    date: date
    body: Slug | None = None
    text: CaseText = None


class Case(StrictModel):
    """One case file. The id is the file name."""

    fictional: bool = False
    kind: Literal["disappearance", "detention", "reprisal", "torture", "other"] = "other"
    country: Country | None = None  # the State concerned
    to: list[Slug] = Field(default_factory=list)  # bodies it is addressed to: registry ids or tags
    public: list[str] = Field(default_factory=list)  # fields that may be shown (dotted names)
    person: CasePerson = Field(default_factory=CasePerson)
    event: CaseEvent = Field(default_factory=CaseEvent)
    detention: CaseDetention = Field(default_factory=CaseDetention)
    whereabouts: CaseText = None
    remedies: list[CaseRemedy] = Field(default_factory=list)
    grounds: CaseText = None
    remedy_sought: CaseText = None
    source: CaseSource = Field(default_factory=CaseSource)
    evidence: list[CaseEvidence] = Field(default_factory=list)
    attachments: list[CaseAttachment] = Field(default_factory=list)
    consent: list[CaseConsent] = Field(default_factory=list)
    confidential: CaseText = None  # which parts the bodies must keep confidential
    notes: list[CaseNote] = Field(default_factory=list)
