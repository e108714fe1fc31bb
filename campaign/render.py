"""Letters → text, HTML and MIME bytes, in a sandbox that fails loudly.

Contract:
- Templates run in a Jinja2 ``SandboxedEnvironment`` with ``StrictUndefined``: an
  undefined variable, an unsafe attribute (``''.__class__``) or printing ``None`` is a
  ``RenderError`` naming the template, line and institution.
- Every merged value is Markdown-escaped before the Markdown is parsed (CommonMark,
  raw HTML disabled), so registry text cannot inject links or markup; the HTML part
  is escaped by markdown-it. All text is NFC-normalised. Remote images are dropped
  (a tracking pixel), with a warning.
- A template cannot exhaust the machine: inside the sandbox (no signals, so any thread
  may render, the web server's too) each render has a budget of steps (loop iterations,
  ``range`` items, calls, includes), a depth limit on nested calls and includes, and a
  cap on the size of any text it builds (``*``, ``**``, ``+``, ``%``, ``~``, filters and
  string methods that grow text are checked before they allocate) and of its output
  (counted while ``generate()`` runs). Going over is a ``RenderError`` naming the template.
- Templates are read only from inside ``letters/``: one that resolves outside it (a
  symbolic link) is refused.
- :func:`build_message` makes one ``EmailMessage`` per contact (exactly one address
  in To), with a random Message-ID on the sender's domain, a subject that must be one
  line, and bodies in quoted-printable so the bytes are 7-bit and never re-encoded on
  the way (a DKIM signature added at send time survives). ``Date`` is not set here:
  :func:`date_header` makes it at send time, in UTC.

This module is the only home of Jinja2, markdown-it-py and Babel.
"""

from __future__ import annotations

import contextvars
import functools
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email import base64mime as email_base64mime
from email import policy as email_policy
from email import quoprimime as email_quoprimime
from email.header import Header
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any, Literal

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import LoopContext
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


class _HeaderClasses(HeaderRegistry):
    """The stdlib's header registry, making each header's class once: the stdlib makes a
    new class (``type(...)``) every time it parses a header, a tenth of a message's cost."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


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


POLICY = MailPolicy(linesep="\r\n", cte_type="7bit", refold_source="none", header_factory=_HeaderClasses())
"""CRLF line endings, RFC 2047 headers, 7-bit bodies. Header values stored raw
(``set_raw``) are written as they are: :func:`build_message` stores them already folded
by this policy."""
POLICY_UTF8 = email_policy.SMTPUTF8.clone(cte_type="7bit", refold_source="none", header_factory=_HeaderClasses())
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
_INLINE_IMAGE = re.compile(r"^(data:image/|cid:)", re.I)


def _image(renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    """Images in a letter: only inline ones (``data:``, ``cid:``). A remote image is a
    tracking pixel (the mail client fetches it and tells its server who opened the letter
    and when), so it is dropped: its alt text stays, and the renderer warns."""
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    if _INLINE_IMAGE.match(src):
        return str(renderer.image(tokens, idx, options, env))
    if isinstance(env, dict):
        env.setdefault("dropped_images", []).append(src)
    alt = renderer.renderInlineAsText(token.children or [], options, env)
    return f"[{escape(alt)}]" if alt else ""


_MARKDOWN.add_render_rule("image", _image)


def md_escape(value: Any) -> str:
    """A merged value as literal Markdown text: punctuation escaped, lines hard-broken."""
    text = nfc(str(value))
    text = _MD_SPECIAL.sub(r"\\\1", text)
    lines = [line.strip() for line in text.splitlines()]
    return "\\\n".join(line for line in lines if line)


def markdown_to_text(markdown: str, tokens: list[Any] | None = None) -> str:
    """The plain-text part, rendered from the Markdown syntax tree (markdown-it tokens,
    parsed here unless the caller parsed them already): no ``**`` or ``_`` markers, no
    backslash escapes; paragraphs separated by a blank line, the author's line breaks kept,
    lists as ``-`` / ``1.``, quotes as ``>``, links as "text (address)"."""
    text = _TextWriter().write(tokens if tokens is not None else _MARKDOWN.parse(markdown))
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
# Resource limits inside the sandbox

MAX_TEXT = 10_000_000  # characters in any text a template builds, and in its output (a letter: ~10,000)
MAX_STEPS = 1_000_000  # loop iterations, range items, calls and includes per render
MAX_DEPTH = 40  # nested macro calls
MAX_INCLUDES = 100  # includes and imports per render (a template that includes itself stops here)
MAX_INT_BITS = 100_000  # ``**`` results
_LOOP_FILTER = "campaign_loop_budget"


class _Budget:
    """What one render may still spend (one per render, in a context variable)."""

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.depth = 0
        self.includes = 0

    def spend(self, steps: int = 1) -> None:
        self.steps -= steps
        if self.steps < 0:
            raise RenderError(
                f"the template does too much work (more than {MAX_STEPS:,} loop iterations, calls and includes)",
                hint="a letter needs no big loops; look for a loop inside a loop, or a macro that calls itself",
            )


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("campaign_render_budget", default=None)


def _spend(steps: int = 1) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.spend(steps)


def _too_long(size: int, what: str = "text") -> RenderError:
    return RenderError(
        f"the template builds a {what} of {size:,} characters; a letter may hold at most {MAX_TEXT:,}",
        hint="look for a multiplication, padding or repetition of text in the template",
    )


def _check_size(size: int, what: str = "text") -> None:
    if size > MAX_TEXT:
        raise _too_long(size, what)


def _limit_text(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise _too_long(len(value))
    return value


def _budgeted(iterable: Any) -> Iterator[Any]:
    """A loop's items, one budget step each."""
    budget = _BUDGET.get()
    if isinstance(iterable, jinja2.Undefined):
        iterable = iter(iterable)
    for item in iterable:
        if budget is not None:
            budget.spend()
        yield item


def _budgeted_range(*args: int) -> range:
    from jinja2.sandbox import safe_range

    found = safe_range(*args)
    _spend(len(found))
    return found


_FORMAT_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_BRACES = re.compile(r"\{[^{}]*\}")


def _check_format(text: str) -> None:
    """Refuse a format string whose widths would make a huge text before we could check it."""
    for match in _FORMAT_PERCENT.finditer(text):
        for group in match.groups():
            if group == "*" or (group and len(group) > 6) or (group and int(group) > MAX_TEXT):
                raise _too_long(MAX_TEXT + 1, "formatted text")
    for match in _FORMAT_BRACES.finditer(text):
        for number in re.findall(r"\d+", match.group(0).partition(":")[2]):
            if len(number) > 6 or int(number) > MAX_TEXT:
                raise _too_long(MAX_TEXT + 1, "formatted text")


def _grown(value: Any, args: tuple[Any, ...], method: str) -> int | None:
    """The size a text-growing operation would produce (checked before it runs), or None."""
    if not isinstance(value, str):
        return None
    if method in ("center", "ljust", "rjust", "zfill", "indent", "wordwrap", "truncate"):
        widths = [a for a in args[:1] if isinstance(a, int)]
        extra = widths[0] if widths else 0
        if method == "indent":
            return len(value) + extra * (value.count("\n") + 2)
        return len(value) + max(0, extra)
    if method == "expandtabs":
        width = args[0] if args and isinstance(args[0], int) else 8
        return len(value) + value.count("\t") * max(0, width)
    if method == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        count = value.count(args[0]) if args[0] else len(value) + 1
        return len(value) + count * max(0, len(args[1]) - len(args[0]))
    if method in ("format", "format_map"):
        _check_format(value)
    return None


def _checked_filter(name: str, filter_: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(filter_)
    def run(*args: Any, **kwargs: Any) -> Any:
        # Filters get the value first (or the context/environment, marked by pass_* flags).
        values = [a for a in args if isinstance(a, str)]
        if values:
            rest = args[args.index(values[0]) + 1 :] + tuple(kwargs[k] for k in ("width", "length") if k in kwargs)
            size = _grown(values[0], rest, name)
            if size is not None:
                _check_size(size)
        if name == "format" and values:
            _check_format(values[0])
        _spend()
        result = filter_(*args, **kwargs)
        if isinstance(result, str | list | tuple) and len(result) > MAX_TEXT:
            raise _too_long(len(result))
        return result

    return run


class _LimitedCode(CodeGenerator):
    """The sandbox's code, with every loop's items counted and every ``~`` checked."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for loop in node.find_all(nodes.For):
            if not (isinstance(loop.iter, nodes.Filter) and loop.iter.name == _LOOP_FILTER):
                loop.iter = nodes.Filter(loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.iter.lineno)
        super().visit_Template(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.limit_text(")
        super().visit_Concat(node, frame)
        self.write(")")


class LimitedSandbox(SandboxedEnvironment):
    """Jinja2's sandbox with the resource limits above."""

    code_generator_class = _LimitedCode
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.globals["range"] = _budgeted_range
        self.globals.pop("lipsum", None)  # placeholder text in any amount: nothing a letter needs
        self.filters = {name: _checked_filter(name, f) for name, f in self.filters.items()}
        self.filters[_LOOP_FILTER] = _budgeted

    @staticmethod
    def limit_text(value: Any) -> Any:
        return _limit_text(value)

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    _check_size(len(seq) * max(0, times))
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                if max(1, abs(left).bit_length()) * right > MAX_INT_BITS and abs(left) > 1:
                    raise RenderError(f"the template computes a number with more than {MAX_INT_BITS:,} bits")
        elif operator == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                _check_size(len(left) + len(right))
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
        return _limit_text(super().call_binop(context, operator, left, right))

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget = _BUDGET.get()
        if isinstance(__obj, LoopContext) and args:  # a recursive loop's next level
            args = (_budgeted(args[0]), *args[1:])
        target = getattr(__obj, "__wrapped__", __obj)
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            size = _grown(owner, args, getattr(target, "__name__", ""))
            if size is not None:
                _check_size(size)
        if budget is None:
            return _limit_text(super().call(__context, __obj, *args, **kwargs))
        budget.spend()
        budget.depth += 1
        try:
            if budget.depth > MAX_DEPTH:
                raise RenderError(
                    f"the template nests calls more than {MAX_DEPTH} deep (a macro that calls itself?)",
                    hint="a macro must stop calling itself at some point",
                )
            return _limit_text(super().call(__context, __obj, *args, **kwargs))
        finally:
            budget.depth -= 1

    def get_template(self, name: Any, parent: str | None = None, globals: Any = None) -> jinja2.Template:  # noqa: A002
        budget = _BUDGET.get()
        if budget is not None:
            budget.spend()
            budget.includes += 1
            if budget.includes > MAX_INCLUDES:
                raise RenderError(
                    f"the template includes templates more than {MAX_INCLUDES} times (a template that includes itself?)"
                )
        return super().get_template(name, parent, globals)


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
        if not path.resolve().is_relative_to(self.root.resolve()):
            # A symbolic link out of letters/ would let {% include %} put any readable file
            # (a key, a password store) into a letter.
            raise LetterError(
                f"letters/{'/'.join(pieces)}: a symbolic link to a file outside letters/: refused",
                hint="a letter may only use files inside letters/; copy the text in instead of linking to it",
            )
        mtime = path.stat().st_mtime
        text = nfc(path.read_text(encoding="utf-8-sig").replace("\r\n", "\n"))
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


_BODIES_KEPT = 64  # distinct letter bodies whose conversion a Renderer keeps


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
        self._body_env = LimitedSandbox(finalize=_finalize_markdown, **common)
        self._plain_env = LimitedSandbox(finalize=_finalize_plain, **common)
        for env in (self._body_env, self._plain_env):
            env.filters["date"] = format_date
        self._subjects: dict[str, jinja2.Template] = {}  # compiled once per subject, not per letter
        self._bodies: dict[str, tuple[str, str, tuple[str, ...]]] = {}  # see _converted

    def _converted(self, markdown: str) -> tuple[str, str, tuple[str, ...]]:
        """(plain text, HTML body, dropped image sources) of a rendered letter. Markdown is
        parsed once per distinct text: letters to many institutions with the same
        salutation share one body, and the conversion is a pure function of the text."""
        found = self._bodies.get(markdown)
        if found is None:
            env: dict[str, Any] = {}
            tokens = _MARKDOWN.parse(markdown, env)  # once, for both parts
            text = markdown_to_text(markdown, tokens)
            html_body = _MARKDOWN.renderer.render(tokens, _MARKDOWN.options, env)
            found = (text, html_body, tuple(env.get("dropped_images", ())))
            if len(self._bodies) >= _BODIES_KEPT:
                self._bodies.clear()
            self._bodies[markdown] = found
        return found

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
        subject_tpl = self._subjects.get(template.subject)
        if subject_tpl is None:
            try:
                subject_tpl = self._plain_env.from_string(template.subject)
            except jinja2.TemplateSyntaxError as err:
                raise RenderError(f"{subject_source}: subject: template syntax error: {err.message}") from None
            self._subjects[template.subject] = subject_tpl
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
        text, html_body, dropped = self._converted(markdown)
        warnings = [warning] if warning else []
        for src in dropped:
            shown = src if len(src) <= 60 else src[:57] + "…"
            warnings.append(
                f"{subject_source}: image {shown!r} dropped {where}: letters carry no remote images (the mail "
                "client would fetch it and tell its server who opened the letter)"
            )
        html = (
            f'<!DOCTYPE html>\n<html lang="{chosen}">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{escape(subject)}</title>\n</head>\n<body>\n{html_body}</body>\n</html>\n"
        )
        return RenderedLetter(
            letter=letter.id,
            lang=chosen,
            subject=subject,
            markdown=markdown,
            text=text,
            html=html,
            body_html=html_body,
            warnings=tuple(warnings),
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


def _generate(template: jinja2.Template, context: dict[str, Any]) -> str:
    """Render with a fresh budget, counting the output as it is produced."""
    token = _BUDGET.set(_Budget())
    try:
        out: list[str] = []
        size = 0
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_TEXT:
                raise _too_long(size, "letter")
            out.append(chunk)
        return "".join(out)
    finally:
        _BUDGET.reset(token)


def _run(template: jinja2.Template, context: dict[str, Any], source: str, where: str) -> str:
    try:
        return _generate(template, context)
    except RecursionError:
        raise RenderError(f"{source}: the template nests too deeply (it includes or calls itself) {where}") from None
    except RenderError as err:
        line = _template_line(err)
        raise RenderError(f"{source}{line}: {err.message} {where}") from None
    except jinja2.UndefinedError as err:
        line = _template_line(err)
        # A missing custom field's message names its institution already: not "… for ohchr" again.
        tail = "" if isinstance(err, _FieldUndefinedError) else f" {where}"
        raise RenderError(
            f"{source}{line}: undefined: {err.message}{tail}",
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

    Built with the stdlib's own objects and encoders, but without re-parsing the same
    headers for every letter: each header is folded (and RFC 2047-encoded) by the mail
    policy once per distinct value and stored ready to write (``set_raw``), and each text
    part is encoded by the stdlib encoder ``set_content`` itself uses, with the transfer
    encoding chosen by content (:func:`transfer_encoding`: base64 for mostly non-ASCII
    text such as Russian or Tajik, quoted-printable for mostly ASCII). For an English
    letter the bytes are exactly those ``set_content``/``add_alternative`` produce
    (tests/test_message_build.py compares them over the shipped and generated letters).

    Raises RenderError on a line break in any header value.
    """
    to_value, utf8 = _address_header(to_name, to_address)
    policy = POLICY_UTF8 if utf8 else POLICY
    values: list[tuple[str, str]] = [("From", _address_header(sender.name, sender.email)[0]), ("To", to_value)]
    if sender.reply_to:
        values.append(("Reply-To", _address_header(None, sender.reply_to)[0]))
    values.append(("Subject", check_header_value("subject", rendered.subject)))
    values.append(("Message-ID", check_header_value("Message-ID", message_id)))
    for name, value in (headers or {}).items():
        values.append((name, check_header_value(name, value)))
    msg = EmailMessage(policy=policy)
    for name, value in values:
        msg.set_raw(name, _folded(utf8, name, value))
    msg.set_raw("MIME-Version", "1.0")
    msg.set_raw("Content-Type", "multipart/alternative")
    msg.set_raw("Content-Language", _folded(utf8, "Content-Language", rendered.lang))
    html = _text_part(rendered.html, "html", policy)
    html.set_raw("MIME-Version", "1.0")  # as add_alternative() writes it: the same bytes as before
    msg.set_payload([_text_part(rendered.text, "plain", policy), html])
    check_header_lines(msg, to_address)
    return msg


def transfer_encoding(text: str) -> str:
    """The shorter 7-bit transfer encoding for ``text`` in UTF-8, as mail clients choose:
    quoted-printable turns each non-ASCII byte into three characters, base64 every three
    bytes into four; so Cyrillic text goes base64 (about 1.35x its UTF-8 size instead of
    about 2.7x) and English text stays quoted-printable (readable in the raw message)."""
    size = len(text.encode("utf-8"))
    escaped = size - len(text.encode("ascii", "ignore")) + text.count("=")  # three characters each in QP
    return "base64" if size + 2 * escaped > size * 4 // 3 + size // 57 else "quoted-printable"


_UNIQUE_HEADERS = frozenset({"to", "message-id"})  # a value per letter: nothing to remember


def _folded(utf8: bool, name: str, value: str) -> str:
    """``value`` folded and encoded by the mail policy, without ``Name: `` and the line
    end: what the generator would write for it, computed once per distinct value (but
    for the headers that differ in every letter)."""
    if name.lower() in _UNIQUE_HEADERS:
        return _fold(utf8, name, value)
    return _fold_shared(utf8, name, value)


def _fold(utf8: bool, name: str, value: str) -> str:
    policy = POLICY_UTF8 if utf8 else POLICY
    line = policy.fold_binary(name, policy.header_factory(name, value)).decode("utf-8" if utf8 else "ascii")
    return line[len(name) + 2 : -len(policy.linesep)]


_fold_shared = functools.lru_cache(maxsize=1024)(_fold)


def _text_part(text: str, subtype: str, policy: Any) -> EmailMessage:
    """One text part, encoded as ``EmailMessage.set_content`` would encode it."""
    part = EmailMessage(policy=policy)
    width = int(policy.max_line_length or 78)
    cte = transfer_encoding(text)
    lines = text.encode("utf-8").splitlines()
    if cte == "base64":
        embedded = policy.linesep.encode("ascii").join(lines) + policy.linesep.encode("ascii")
        payload = email_base64mime.body_encode(embedded, maxlinelen=width // 4 * 4, eol="\n")
    else:
        normal = b"\n".join(lines) + b"\n"
        payload = email_quoprimime.body_encode(normal.decode("latin-1"), width)
    # Parsed header objects, made once: the generator reads these two back for every part.
    part["Content-Type"] = _parsed(policy is POLICY_UTF8, "Content-Type", f'text/{subtype}; charset="utf-8"')
    part["Content-Transfer-Encoding"] = _parsed(policy is POLICY_UTF8, "Content-Transfer-Encoding", cte)
    part.set_payload(payload)
    return part


@functools.lru_cache(maxsize=64)
def _parsed(utf8: bool, name: str, value: str) -> Any:
    """A header object of the policy, made once per value (header objects are immutable)."""
    return (POLICY_UTF8 if utf8 else POLICY).header_factory(name, value)


MAX_LINE = 998  # octets per line, RFC 5322 2.1.1


def check_header_lines(msg: EmailMessage, to_address: str) -> None:
    """Every header line fits the 998-octet limit once folded (a long name without spaces
    cannot be folded). Raises RenderError naming the header."""
    for name, value in msg.raw_items():  # raw: no header is parsed again to be measured
        if len(name) + 2 + 4 * len(str(value)) <= MAX_LINE:
            continue  # cannot reach the limit even if every character took four bytes
        folded = msg.policy.fold_binary(name, value)
        longest = max(len(line) for line in folded.split(b"\r\n"))
        if longest > MAX_LINE:
            raise RenderError(
                f"{name} (to <{to_address}>): a header line of {longest} bytes; mail allows {MAX_LINE}",
                hint="shorten the name or subject (a contact's name, or the institution's when it has none)",
            )


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
