"""Letters → text, HTML and MIME bytes, in a sandbox that fails loudly.

Contract:
- Templates run in a Jinja2 ``SandboxedEnvironment`` with ``StrictUndefined``: an
  undefined variable, an unsafe attribute (``''.__class__``) or printing ``None`` is a
  ``RenderError`` naming the template, line and institution.
- Every merged value is Markdown-escaped before the Markdown is parsed (CommonMark,
  raw HTML disabled), so registry text cannot inject links or markup; the HTML part
  is escaped by markdown-it. All text is NFC-normalised.
- :func:`build_message` makes one ``EmailMessage`` per contact (exactly one address
  in To), with a random Message-ID on the sender's domain, a subject that must be one
  line, and bodies in quoted-printable so the bytes are 7-bit and never re-encoded on
  the way (a DKIM signature added at send time survives). ``Date`` is not set here:
  :func:`date_header` makes it at send time, in UTC.

This module is the only home of Jinja2, markdown-it-py and Babel.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email import policy as email_policy
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any, Literal

import jinja2
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from campaign.errors import LetterError, RenderError
from campaign.models import (
    Contact,
    Letter,
    OriginalLetter,
    Recipient,
    Sender,
    ascii_address,
    has_line_break,
    nfc,
    split_front_matter,
)
from campaign.wording import did_you_mean

Medium = Literal["email", "pdf"]
Speaker = Literal["organisation", "supporter"]

_ADDRESS_HEADERS = {"from", "to", "cc", "reply-to", "sender", "disposition-notification-to"}
_TEXT_HEADERS = {"subject", "comments", "content-description"}


class MailPolicy(EmailPolicy):
    """The SMTP policy, with RFC 2047 encoding that keeps spaces.

    CPython's folder moves the space between two encoded words outside them, where
    RFC 2047 says decoders must drop it ("Созишномаи умумии" arrives as
    "Созишномаиумумии"). Non-ASCII subjects are therefore encoded with
    ``email.header.Header`` (spaces stay inside the words) and non-ASCII display names
    as one encoded word each, as ``email.utils.formataddr`` does.
    """

    def _encoded(self, name: str, value: Any) -> str | None:
        if self.utf8:
            return None
        text = str(value)
        if text.isascii():
            return None
        lname = name.lower()
        if lname in _ADDRESS_HEADERS and hasattr(value, "addresses"):
            items = [formataddr((a.display_name or "", a.addr_spec), charset="utf-8") for a in value.addresses]
            return f"{name}: " + ("," + self.linesep + " ").join(items) + self.linesep
        if lname in _TEXT_HEADERS:
            width = self.max_line_length or 78
            encoded = Header(text, "utf-8", maxlinelen=width, header_name=name).encode(linesep=self.linesep)
            return f"{name}: {encoded}{self.linesep}"
        return None

    def fold(self, name: str, value: Any) -> str:
        return self._encoded(name, value) or super().fold(name, value)

    def fold_binary(self, name: str, value: Any) -> bytes:
        encoded = self._encoded(name, value)
        return encoded.encode("ascii") if encoded else super().fold_binary(name, value)


POLICY = MailPolicy(linesep="\r\n", cte_type="7bit")
"""CRLF line endings, RFC 2047 headers, 7-bit bodies."""
POLICY_UTF8 = email_policy.SMTPUTF8.clone(cte_type="7bit")
"""For an address whose local part is not ASCII: UTF-8 headers, still 7-bit bodies."""

DEFAULT_SALUTATIONS = {
    "en": "Dear Sir or Madam,",
    "ru": "Уважаемые дамы и господа!",
    "tg": "Муҳтарам хонумҳо ва ҷанобон!",
    "fr": "Madame, Monsieur,",
    "de": "Sehr geehrte Damen und Herren,",
    "es": "Estimados señores:",
    "uk": "Шановні пані та панове!",
    "uz": "Hurmatli xonimlar va janoblar!",
    "pl": "Szanowni Państwo,",
    "tr": "Sayın Yetkili,",
}
BABEL_LOCALES = {"en": "en_GB"}

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~&=])")
_MARKDOWN = MarkdownIt("commonmark", {"html": False})


def md_escape(value: Any) -> str:
    """A merged value as literal Markdown text: punctuation escaped, lines hard-broken."""
    text = nfc(str(value))
    text = _MD_SPECIAL.sub(r"\\\1", text)
    lines = [line.strip() for line in text.splitlines()]
    return "\\\n".join(line for line in lines if line)


def markdown_to_text(markdown: str) -> str:
    """The plain-text part, rendered from the Markdown syntax tree (markdown-it tokens):
    no ``**`` or ``_`` markers, no backslash escapes; paragraphs separated by a blank
    line, the author's line breaks kept, lists as ``-`` / ``1.``, quotes as ``>``,
    links as "text (address)"."""
    text = _TextWriter().write(_MARKDOWN.parse(markdown))
    return text + "\n" if markdown.endswith("\n") and text else text


def _inline_text(children: list[Any]) -> str:
    out: list[str] = []
    links: list[str | None] = []
    for token in children:
        kind = token.type
        if kind in ("text", "code_inline", "html_inline"):
            out.append(token.content)
        elif kind in ("softbreak", "hardbreak"):
            out.append("\n")
        elif kind == "image":
            out.append(token.content or str(token.attrs.get("alt") or ""))
        elif kind == "link_open":
            links.append(str(token.attrs.get("href") or "") or None)
            out.append("\x00")  # where the link text starts
        elif kind == "link_close":
            href = links.pop() if links else None
            start = len(out) - 1 - out[::-1].index("\x00")
            label = "".join(out[start + 1 :])
            out[start:] = [label if not href or href in (label, f"mailto:{label}") else f"{label} ({href})"]
    return "".join(out)


class _TextWriter:
    """Walks the block tokens once, keeping the prefixes of quotes and list items."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.blank = False  # a blank line is due before the next block
        self.quote = 0
        self.lists: list[list[Any]] = []  # [ordered, next number, indent of its items]
        self.marker: str | None = None  # the marker of a list item whose first line is next
        self.indent = ""

    def _prefix(self) -> str:
        return "> " * self.quote

    def _emit(self, lines: list[str]) -> None:
        if self.blank and self.lines:
            self.lines.append(self._prefix().rstrip())
        self.blank = False
        for number, line in enumerate(lines):
            if number == 0 and self.marker is not None:
                lead = self.indent[: len(self.indent) - len(self.marker)] + self.marker
                self.marker = None
            else:
                lead = self.indent
            self.lines.append((self._prefix() + lead + line).rstrip())

    def write(self, tokens: list[Any]) -> str:
        for token in tokens:
            kind = token.type
            if kind == "inline":
                self._emit(_inline_text(token.children or []).split("\n"))
            elif kind == "paragraph_close" and not token.hidden:
                self.blank = True
            elif kind == "heading_close":
                self.blank = True
            elif kind in ("bullet_list_open", "ordered_list_open"):
                start = int(token.attrs.get("start") or 1) if kind == "ordered_list_open" else 0
                self.lists.append([kind == "ordered_list_open", start, self.indent])
            elif kind in ("bullet_list_close", "ordered_list_close"):
                self.indent = self.lists.pop()[2]
                self.blank = True
            elif kind == "list_item_open":
                level = self.lists[-1]
                if level[0]:
                    self.marker = f"{level[1]}. "
                    level[1] += 1
                else:
                    self.marker = "- "
                self.indent = level[2] + " " * len(self.marker)
            elif kind == "blockquote_open":
                if self.blank and self.lines:
                    self.lines.append(self._prefix().rstrip())
                self.blank = False
                self.quote += 1
            elif kind == "blockquote_close":
                self.quote -= 1
                self.blank = True
            elif kind in ("code_block", "fence"):
                self._emit(["    " + line for line in token.content.rstrip("\n").split("\n")])
                self.blank = True
            elif kind == "hr":
                self._emit(["* * *"])
                self.blank = True
        return "\n".join(self.lines).strip("\n")


def _finalize_markdown(value: Any) -> Any:
    if value is None:
        raise RenderError("a merged value is empty (None); guard optional fields with {% if %}")
    if isinstance(value, Markup):
        return str(value)
    return md_escape(value)


def _finalize_plain(value: Any) -> Any:
    if value is None:
        raise RenderError("a merged value is empty (None); guard optional fields with {% if %}")
    return nfc(str(value))


# ---------------------------------------------------------------------------
# What templates see: the recipient in the letter's language, and readable "undefined"


class FieldMap(dict[str, str]):
    """``recipient.fields`` / ``contact.fields``: custom facts from recipients.yaml."""

    def __init__(self, values: Mapping[str, str], *, owner: str, where: str) -> None:
        super().__init__(values)
        self._owner = owner  # "institution ohchr", "contact registry@ohchr.example of ohchr"
        self._where = where  # "recipient.fields"


@dataclass(frozen=True)
class RecipientView:
    """The institution as a template sees it: ``name`` and ``postal_address`` in the
    letter's language (``names`` holds every translation), ``fields`` the institution's
    custom fields with the contact's own on top."""

    id: str
    name: str
    names: Mapping[str, str]
    tags: list[str]
    languages: list[str]
    country: str | None
    timezone: str | None
    postal_address: str | None
    website: str | None
    fields: FieldMap
    postal_only: bool
    submission: Any = None  # the body's submission profile (cases: subject patterns, mandate)

    @classmethod
    def of(cls, recipient: Recipient, contact: Contact | None, lang: str) -> RecipientView:
        merged = {**recipient.fields, **(contact.fields if contact is not None else {})}
        names = recipient.name if isinstance(recipient.name, dict) else {lang: recipient.name}
        return cls(
            id=recipient.id,
            name=recipient.name_in(lang),
            names=dict(names),
            tags=list(recipient.tags),
            languages=list(recipient.languages),
            country=recipient.country,
            timezone=recipient.timezone,
            postal_address=recipient.address_in(lang),
            website=recipient.website,
            fields=FieldMap(merged, owner=f"institution {recipient.id}", where="recipient.fields"),
            postal_only=recipient.postal_only,
            submission=recipient.submission,
        )


@dataclass(frozen=True)
class ContactView:
    """The contact as a template sees it (``contact.fields``: its own custom fields)."""

    email: str
    name: str | None
    role: str | None
    fields: FieldMap

    @classmethod
    def of(cls, recipient: Recipient, contact: Contact) -> ContactView:
        owner = f"contact {contact.email} of {recipient.id}"
        return cls(
            contact.email, contact.name, contact.role, FieldMap(contact.fields, owner=owner, where="contact.fields")
        )


_VARIABLES = ("recipient", "contact", "salutation", "sender", "lang", "today", "letter", "medium", "voice", "original")
_LABELS = {"RecipientView": "recipient", "ContactView": "contact", "Sender": "sender", "OriginalLetter": "original"}


def _known_names(obj: Any) -> list[str]:
    if isinstance(obj, FieldMap):
        return list(obj)
    fields = getattr(type(obj), "model_fields", None) or getattr(type(obj), "__dataclass_fields__", None) or {}
    return [name for name in fields if not name.startswith("_")]


class _FieldUndefinedError(jinja2.UndefinedError):
    """A template used a custom field that an institution or contact lacks."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


class _Undefined(jinja2.StrictUndefined):
    """StrictUndefined that says what is missing in our words: "recipient has no field
    'nme' (did you mean 'name'?)", not "'campaign.models.Recipient object' has no
    attribute 'nme'"."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        name = str(self._undefined_name)
        obj = self._undefined_obj
        if obj is jinja2.utils.missing:
            return f"{name!r} is not a variable here{did_you_mean(name, _VARIABLES)}"
        if isinstance(obj, FieldMap):
            have = ", ".join(sorted(obj)) or "none"
            return f"{obj._where}.{name}: {obj._owner} has no field {name!r} (its fields: {have})"
        label = _LABELS.get(type(obj).__name__)
        if label is None:
            return f"{type(obj).__name__} value has no {name!r}"
        return f"{label} has no field {name!r}{did_you_mean(name, _known_names(obj))}"

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        if isinstance(self._undefined_obj, FieldMap):
            raise _FieldUndefinedError(
                self._undefined_message,
                hint=f"add it under `fields:` in recipients.yaml, or write "
                f"{{% if {self._undefined_obj._where}.{self._undefined_name} is defined %}} around it",
            )
        raise self._undefined_exception(self._undefined_message)  # SecurityError for the sandbox's refusals


# Jinja binds its operators (str(), ==, +, [...] ...) to the base class's failing method
# by value; point them at ours so every use of an undefined value speaks our words.
for _base in (jinja2.Undefined, jinja2.StrictUndefined):
    for _name, _value in vars(_base).items():
        if _value is jinja2.Undefined._fail_with_undefined_error and _name != "_fail_with_undefined_error":
            setattr(_Undefined, _name, _Undefined._fail_with_undefined_error)


class _LetterLoader(jinja2.BaseLoader):
    """Loads templates relative to letters/, with front matter blanked out so that
    line numbers in errors match the file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        pieces = jinja2.loaders.split_template_path(template)
        path = self.root.joinpath(*pieces)
        if not path.is_file():
            raise jinja2.TemplateNotFound(template)
        try:
            mtime = path.stat().st_mtime
            text = nfc(path.read_text(encoding="utf-8-sig").replace("\r\n", "\n"))
        except OSError as err:
            raise RenderError(f"letters/{'/'.join(pieces)}: cannot read: {err.strerror or err}") from None
        except UnicodeDecodeError:
            raise RenderError(f"letters/{'/'.join(pieces)}: not UTF-8 text", hint="save the file as UTF-8") from None
        front, body, body_line = split_front_matter(text)
        if front is not None:
            body = "\n" * (body_line - 1) + body
        return body, f"letters/{'/'.join(pieces)}", lambda: path.stat().st_mtime == mtime


@dataclass(frozen=True)
class RenderedLetter:
    """One letter for one contact, in one language."""

    letter: str
    lang: str
    subject: str
    markdown: str
    text: str
    html: str
    body_html: str = ""  # the HTML fragment inside <body> (for the PDF layout)
    warnings: tuple[str, ...] = field(default=())


class Renderer:
    """Compiles and caches the templates of one letters/ folder."""

    def __init__(self, letters_dir: Path) -> None:
        self.letters_dir = letters_dir
        loader = _LetterLoader(letters_dir)
        common: dict[str, Any] = {
            "loader": loader,
            "undefined": _Undefined,
            "autoescape": False,
            "keep_trailing_newline": True,
            "auto_reload": False,
        }
        self._body_env = SandboxedEnvironment(finalize=_finalize_markdown, **common)
        self._plain_env = SandboxedEnvironment(finalize=_finalize_plain, **common)
        for env in (self._body_env, self._plain_env):
            env.filters["date"] = format_date

    def choose_language(
        self, letter: Letter, recipient: Recipient, override: str | None = None
    ) -> tuple[str, str | None]:
        """(language, warning): the first of the institution's languages the letter has,
        else English with a warning; ``override`` wins. Raises RenderError."""
        return choose_language(letter, recipient, override)

    def render(
        self,
        letter: Letter,
        recipient: Recipient,
        contact: Contact | None,
        sender: Sender,
        *,
        lang: str | None = None,
        medium: Medium = "email",
        today: date | None = None,
        original: OriginalLetter | None = None,
        extra: Mapping[str, Any] | None = None,
        speaker: Speaker = "organisation",
    ) -> RenderedLetter:
        """Render ``letter`` for one contact. Raises RenderError naming template and line.

        ``speaker``: who signs, which sets ``voice`` ("we" for the organisation's letters,
        by e-mail or as its sealed PDF; "I" for a supporter's PDF) unless the letter's
        front matter fixes it with ``voice:``."""
        chosen, warning = choose_language(letter, recipient, lang)
        template = letter.templates[chosen]
        today = today or datetime.now(UTC).date()
        salutation = (contact.salutation_for(chosen) if contact else None) or DEFAULT_SALUTATIONS.get(
            chosen, DEFAULT_SALUTATIONS["en"]
        )
        context: dict[str, Any] = {
            "recipient": RecipientView.of(recipient, contact, chosen),
            "contact": ContactView.of(recipient, contact) if contact is not None else None,
            "salutation": salutation,
            "sender": sender,
            "lang": chosen,
            "today": format_date(today, chosen),
            "letter": letter.id,
            "medium": medium,
            "voice": template.voice or ("I" if speaker == "supporter" else "we"),
            "original": original,
            **(extra or {}),
        }
        where = f"for {recipient.id}"
        subject_source = f"letters/{template.path}"
        try:
            subject_tpl = self._plain_env.from_string(template.subject)
        except jinja2.TemplateSyntaxError as err:
            raise RenderError(f"{subject_source}: subject: template syntax error: {err.message}") from None
        subject = _run(subject_tpl, context, f"{subject_source}: subject", where).strip()
        if has_line_break(subject):
            raise RenderError(
                f"{subject_source}: subject renders to more than one line {where}",
                hint="a subject must be one line; check the merged values in it",
            )
        if not subject:
            raise RenderError(f"{subject_source}: subject renders empty {where}")
        try:
            body_tpl = self._body_env.get_template(template.path)
        except jinja2.TemplateSyntaxError as err:
            raise _syntax_error(err) from None
        except jinja2.TemplateNotFound as err:
            raise LetterError(f"letters/{template.path}: template not found: {err.name}") from None
        markdown = _run(body_tpl, context, subject_source, where).strip() + "\n"
        html_body = _MARKDOWN.render(markdown)
        html = (
            f'<!DOCTYPE html>\n<html lang="{chosen}">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{escape(subject)}</title>\n</head>\n<body>\n{html_body}</body>\n</html>\n"
        )
        return RenderedLetter(
            letter=letter.id,
            lang=chosen,
            subject=subject,
            markdown=markdown,
            text=markdown_to_text(markdown),
            html=html,
            body_html=html_body,
            warnings=(warning,) if warning else (),
        )


def choose_language(letter: Letter, recipient: Recipient, override: str | None = None) -> tuple[str, str | None]:
    """See :meth:`Renderer.choose_language`."""
    if override:
        if not re.fullmatch(r"[a-z]{2}", override):
            raise RenderError(
                f"--lang {override!r} is not a language code",
                hint=f"use a two-letter ISO 639-1 code; letters/{letter.id}/ has {', '.join(letter.languages)}",
            )
        if override in letter.templates:
            return override, None
        raise RenderError(
            f"letters/{letter.id}/: no {override}.md.j2 (the letter exists in {', '.join(letter.languages)})",
            hint=f"write letters/{letter.id}/{override}.md.j2 or choose another --lang",
        )
    for lang in recipient.languages:
        if lang in letter.templates:
            return lang, None
    if "en" in letter.templates:
        return "en", (f"{recipient.id}: letter {letter.id} has none of {', '.join(recipient.languages)}; using English")
    raise RenderError(
        f"{recipient.id}: letter {letter.id} exists in {', '.join(letter.languages)}, none of "
        f"which {recipient.id} reads ({', '.join(recipient.languages)}), and has no English version",
        hint=f"add a translation to letters/{letter.id}/ or pass --lang",
    )


def _run(template: jinja2.Template, context: dict[str, Any], source: str, where: str) -> str:
    try:
        return template.render(context)
    except RenderError as err:
        line = _template_line(err)
        raise RenderError(f"{source}{line}: {err.message} {where}") from None
    except jinja2.UndefinedError as err:
        line = _template_line(err)
        raise RenderError(
            f"{source}{line}: undefined: {err.message} {where}",
            hint=getattr(err, "hint", None) or "use only the variables listed in letters/README.md",
        ) from None
    except SecurityError as err:
        line = _template_line(err)
        raise RenderError(f"{source}{line}: not allowed in a letter: {err} {where}") from None
    except jinja2.TemplateSyntaxError as err:
        raise _syntax_error(err) from None
    except jinja2.TemplateNotFound as err:
        raise RenderError(f"{source}: included template not found: {err.name} {where}") from None
    except jinja2.TemplateError as err:
        line = _template_line(err)
        raise RenderError(f"{source}{line}: template error: {err} {where}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as err:
        line = _template_line(err)
        raise RenderError(f"{source}{line}: {type(err).__name__}: {err} {where}") from None


def _template_line(err: BaseException) -> str:
    """':<line>' of the innermost template frame in a Jinja-rewritten traceback."""
    tb = err.__traceback__
    found = ""
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name.endswith(".md.j2") or name == "<template>":
            found = f":{tb.tb_lineno}" if name != "<template>" else ""
        tb = tb.tb_next
    return found


def _syntax_error(err: jinja2.TemplateSyntaxError) -> LetterError:
    name = err.filename or err.name or "template"
    if not name.startswith("letters/"):
        name = f"letters/{name}"
    return LetterError(f"{name}:{err.lineno}: template syntax error: {err.message}")


class _MissingValue(jinja2.Undefined):
    """A value a template may test (``{% if case.x %}`` is false) but not print: printing
    it is an error that says what is missing."""

    __slots__ = ()

    def __str__(self) -> str:
        self._fail_with_undefined_error()
        return ""  # not reached


def missing_value(message: str) -> Any:
    """A stand-in for a missing field: falsy in ``{% if %}``, an error naming ``message``
    (no value, only what is missing) when a template prints it."""
    return _MissingValue(hint=message)


def country_name(code: str, lang: str = "en") -> str:
    """The name of a country from its ISO 3166 code ("TJ" → "Tajikistan"), else the code."""
    from babel import Locale

    names = Locale.parse(_babel_locale(lang)).territories
    return nfc(str(names.get(code.upper(), code)))


def month_year(day: date, lang: str = "en") -> str:
    """ "December 2026" (for subject lines that name the month)."""
    from babel.dates import format_date as babel_format_date

    return nfc(babel_format_date(day, format="LLLL y", locale=_babel_locale(lang)))


@functools.lru_cache(maxsize=64)
def _babel_locale(lang: str) -> str:
    from babel import Locale, UnknownLocaleError

    code = BABEL_LOCALES.get(lang, lang)
    try:
        Locale.parse(code)
    except (UnknownLocaleError, ValueError):
        return "en_GB"
    return code


def format_date(day: date | datetime, lang: str = "en") -> str:
    """A date written out for the language (``28 ноября 2026 г.``, ``6 декабри 2026``)."""
    from babel.dates import format_date as babel_format_date

    if isinstance(day, datetime):
        day = day.date()
    if lang in _RUNNING_TEXT_DATES:
        return _RUNNING_TEXT_DATES[lang](day)
    return nfc(babel_format_date(day, format="long", locale=_babel_locale(lang)))


def _tajik_date(day: date) -> str:
    """Babel's Tajik (CLDR ``tg``) long date is "06 Декабр 2026": a leading zero and the
    capitalised nominative month of a calendar heading. In running text and letters Tajik
    writes the day without a zero and the month in lower case with the izofat -и before
    the year: "6 декабри 2026"."""
    from babel.dates import get_month_names

    month = str(get_month_names("wide", context="format", locale="tg")[day.month]).lower()
    return nfc(f"{day.day} {month}и {day.year}")


_RUNNING_TEXT_DATES = {"tg": _tajik_date}


# ---------------------------------------------------------------------------
# MIME


def new_message_id(domain: str) -> str:
    """``<random@domain>``: 128 bits of randomness, never this machine's name."""
    return f"<{secrets.token_hex(16)}@{domain.encode('idna').decode('ascii')}>"


def new_envid() -> str:
    """The RFC 3461 envelope id: a random 128-bit token in lowercase hex."""
    return secrets.token_hex(16)


def check_header_value(name: str, value: str) -> str:
    """Refuse a header value with a line break or control character (header injection).
    Raises RenderError."""
    if has_line_break(value):
        raise RenderError(
            f"{name}: contains a line break or control character ({value[:40]!r}); header values must be one line"
        )
    return value


def _address_header(name: str | None, address: str) -> tuple[str, bool]:
    """(header value, needs SMTPUTF8)."""
    ascii_form = ascii_address(address)
    if name is not None:
        check_header_value("name", name)
    if ascii_form is not None:
        return str(Address(display_name=name or "", addr_spec=ascii_form)), False
    quoted = ""
    if name:
        quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '" '
    return f"{quoted}<{address}>", True


def build_message(
    rendered: RenderedLetter,
    *,
    sender: Sender,
    to_name: str | None,
    to_address: str,
    message_id: str,
    headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """A ``multipart/alternative`` message to exactly one address (no Date yet).

    Raises RenderError on a line break in any header value.
    """
    to_value, utf8 = _address_header(to_name, to_address)
    msg = EmailMessage(policy=POLICY_UTF8 if utf8 else POLICY)
    msg["From"] = _address_header(sender.name, sender.email)[0]
    msg["To"] = to_value
    if sender.reply_to:
        msg["Reply-To"] = _address_header(None, sender.reply_to)[0]
    msg["Subject"] = check_header_value("subject", rendered.subject)
    msg["Message-ID"] = check_header_value("Message-ID", message_id)
    for name, value in (headers or {}).items():
        msg[name] = check_header_value(name, value)
    msg.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    # set_content() drops Content-* headers, so the language goes on last.
    msg["Content-Language"] = rendered.lang
    return msg


def message_bytes(msg: EmailMessage) -> bytes:
    """The message as CRLF bytes, exactly as stored and sent (without Date)."""
    return msg.as_bytes(policy=msg.policy)


def attach(msg: EmailMessage, data: bytes, *, filename: str, subtype: str = "pdf") -> EmailMessage:
    """Make ``msg`` multipart/mixed with ``data`` attached (base64, 7-bit safe)."""
    msg.make_mixed()
    msg.add_attachment(data, maintype="application", subtype=subtype, filename=filename)
    return msg


def date_header(moment: datetime) -> bytes:
    """The ``Date:`` line added at the first send attempt, in UTC."""
    return f"Date: {format_datetime(moment.astimezone(UTC))}\r\n".encode("ascii")


TEST_PREFIX = "[TEST] "


def test_copy(body: bytes, *, to_address: str, message_id: str, institution: str) -> bytes:
    """A test copy of a letter for the organiser: the same parts, but ``To`` the organiser,
    ``Subject`` prefixed ``[TEST]``, a new Message-ID (so nothing that comes back can match
    the real letter), no read-receipt request, and a line saying whose letter it copies."""
    import email
    import email.policy

    check_header_value("--test-to", to_address)
    msg = email.message_from_bytes(body, policy=email.policy.SMTP)
    subject = str(msg.get("Subject", ""))
    for name in ("To", "Cc", "Message-ID", "Subject", "Disposition-Notification-To", "Date"):
        del msg[name]
    msg["To"] = to_address
    msg["Subject"] = TEST_PREFIX + subject
    msg["Message-ID"] = message_id
    msg["X-Campaign-Test"] = f"a test copy of the letter to {institution}; not sent to the institution"
    return msg.as_bytes(policy=email.policy.SMTP)


@functools.lru_cache(maxsize=8)
def _page_environment(directory: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(directory: Path, name: str, context: Mapping[str, Any]) -> str:
    """One of the program's own HTML pages (``campaign report``), from a template of its
    own in ``directory``: every value autoescaped, an undefined name an error. Letters,
    whose templates organisers write, go through :class:`Renderer` (sandboxed) instead."""
    template = _page_environment(str(directory)).get_template(name)
    return template.render(**context)
