"""The data model: validated institutions, contacts, letters and queued messages.

Everything here is a pydantic v2 model (``extra="forbid"``) or a plain value type,
with no I/O. Validation errors are plain ``ValueError`` with a short, user-facing
sentence; ``registry`` and ``config`` turn them into ``file:line: field: message``.

Also the home of e-mail address validation (email-validator, no DNS lookups):
internationalised domains are valid and kept in their normalised Unicode form;
a non-ASCII local part is accepted here and needs SMTPUTF8 at send time.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal, TypeVar
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
    field_validator,
    model_validator,
)

# ---------------------------------------------------------------------------
# Small value types


def nfc(text: str) -> str:
    """Return ``text`` in Unicode NFC (a decomposed ӣ loses its macron in some paths)."""
    return unicodedata.normalize("NFC", text)


def has_line_break(value: str) -> bool:
    """True for any line break Python or a mail reader knows, and any other control
    character (header injection hides in \r, \n, but also \x1c-\x1e, \x85, \u2028...)."""
    return (
        len(value.splitlines()) > 1
        or value.endswith(("\n", "\r"))
        or any(unicodedata.category(ch) == "Cc" for ch in value)
    )


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


def normalize_address(value: str) -> str:
    """Validate an e-mail address (no DNS) and return its normalised form.

    Raises ``ValueError`` with a readable reason.
    """
    if not isinstance(value, str):
        raise ValueError("not a valid address: expected text")
    _no_line_breaks(value)
    candidate = nfc(value.strip())
    try:
        info = validate_email(candidate, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as err:
        raise ValueError(f"not a valid address: {err}") from None
    local = str(info.normalized).rpartition("@")[0]
    if len(local.encode("utf-8")) > 64:
        raise ValueError(
            f"not a valid address: the part before the @ is {len(local.encode('utf-8'))} bytes long; "
            "mail servers accept at most 64 (RFC 5321)"
        )
    if _ENCODED_WORD.search(local):
        raise ValueError(
            "not a valid address: the part before the @ is an encoded word (=?charset?b?...?=), which mail "
            "programs decode into a different address"
        )
    return str(info.normalized)


_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bBqQ]\?[^?]*\?=")


def ascii_address(address: str) -> str | None:
    """The address with its domain in IDNA (punycode) form, or None when the local
    part is not ASCII (such an address needs SMTPUTF8)."""
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


Email = Annotated[str, BeforeValidator(normalize_address)]

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
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        message = str(first["msg"])
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        raise Invalid(tuple(first["loc"]), message, str(first["type"])) from None


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


Salutation = OneLine | dict[Lang, OneLine]


class Contact(StrictModel):
    """One address at an institution."""

    email: Email
    name: OneLine | None = None
    role: Slug | None = None
    salutation: Salutation | None = None
    source: OneLine | None = None
    checked: date | None = None

    def salutation_for(self, lang: str) -> str | None:
        if isinstance(self.salutation, str):
            return self.salutation
        if isinstance(self.salutation, dict):
            return self.salutation.get(lang)
        return None


class Recipient(StrictModel):
    """An institution in recipients.yaml."""

    id: Slug
    name: OneLine
    tags: list[Slug] = Field(default_factory=list)
    languages: list[Lang] = Field(min_length=1)
    contacts: list[Contact] = Field(default_factory=list)
    country: Country | None = None
    timezone: TimeZoneName | None = None
    postal_address: Text | None = None
    website: OneLine | None = None
    source: OneLine | None = None
    checked: date | None = None
    max_per_day: Annotated[int, Field(ge=1, le=10000)] | None = None
    office_hours: OfficeHours | None = None

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


class FrontMatter(StrictModel):
    """The YAML block at the top of a letter template."""

    subject: OneLine
    description: OneLine | None = None


class LetterTemplate(StrictModel):
    """One language version of a letter: ``letters/<id>/<lang>.md.j2``."""

    lang: Lang
    path: str  # relative to the letters folder, with forward slashes
    subject: str
    description: str | None = None
    body_line: int  # 1-based line where the body starts in the file


class Letter(StrictModel):
    """A letter and its language versions."""

    id: Slug
    templates: dict[str, LetterTemplate]

    @property
    def languages(self) -> list[str]:
        return sorted(self.templates)

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


class Status(enum.StrEnum):
    """The state of one queued message (see docs/ARCHITECTURE.md)."""

    QUEUED = "queued"
    SENDING = "sending"
    DEFERRED = "deferred"
    SENT = "sent"
    FAILED = "failed"
    HELD = "held"
    DELIVERED = "delivered"
    RELAYED = "relayed"
    BOUNCED = "bounced"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


PENDING_STATES = frozenset({Status.QUEUED, Status.DEFERRED})
FINAL_STATES = frozenset({Status.SENT, Status.FAILED, Status.HELD, Status.DELIVERED, Status.RELAYED, Status.BOUNCED})
DELIVERY_RANK = {Status.SENT: 0, Status.RELAYED: 1, Status.DELIVERED: 2, Status.BOUNCED: 2}
"""Receipts move a sent message forward only: sent < relayed < delivered | bounced."""


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
