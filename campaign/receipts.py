"""Delivery reports, read receipts and replies: parse them, match them to letters, record them.

Contract:
- Input: ``.eml`` files, mbox files and Maildir folders (:func:`read_sources`). A single
  file given explicitly that is not mail at all is a ``ReceiptError``; inside a mailbox,
  anything that is not about our letters (newsletters, spam, feedback reports) is skipped
  and counted, never an error.
- DSNs: RFC 3464 ``message/delivery-status`` (the stdlib gives a list of header blocks)
  and RFC 6533 ``message/global-delivery-status`` (the stdlib gives one message whose
  body holds the remaining blocks), and the common non-standard bounces that quote the
  original headers (X-Failed-Recipients, a quoted Message-ID). The outcome comes from
  ``Action``: delivered/expanded → delivered, relayed → relayed, failed → bounced (an
  expired message is bounced with its 4.x.x status), delayed → delayed (not final).
- Matching a delivery report, in order: Original-Envelope-Id (then the recipient within
  that envelope), the VERP tag ``<return-path-local>+<envid>@``, or our Message-ID (from
  the returned headers, X-Original-Message-ID, In-Reply-To) *together with* the recipient
  the report names (Final-Recipient or Original-Recipient, or X-Failed-Recipients): a
  Message-ID alone is something anyone who saw the letter can write, so it changes
  nothing. Exchange Online and Gmail bounces carry no ENVID and match this way.
- Receipts move only what was attempted: an entry about a letter with no ``sending``
  event is kept as *suspicious*, listed by `campaign receipts unmatched`, and changes
  nothing (the store checks this again in the transaction that records it).
- A report nested deeper than :data:`MAX_MIME_DEPTH` MIME levels is not read: it is kept
  as one unmatched entry that says so.
- MDNs (RFC 8098) are matched by Original-Message-ID and set a displayed/deleted flag;
  replies are mail whose In-Reply-To or References names one of our Message-IDs; an
  auto-reply (Auto-Submitted, X-Autoreply, "out of office" subjects) is flagged as such.
- Idempotent: a report is keyed by the SHA-256 of its bytes; importing it again changes
  nothing. Every entry becomes a hash-chained event; unmatched ones are kept and listed.
- Never raises anything but ``CampaignError`` subclasses, whatever the input bytes.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.header import Header, decode_header, make_header
from email.message import Message
from email.utils import parsedate_to_datetime
from pathlib import Path

from campaign.chain import sha256_hex
from campaign.errors import ReceiptError
from campaign.models import to_rfc3339
from campaign.store import ReceiptEntry, Report, Target
from campaign.store.protocols import ReceiptSink

MAX_REPORT_BYTES = 50 * 1024 * 1024
MAX_MIME_DEPTH = 30  # real reports nest 3 or 4 levels; parsing recurses once per level

_MSGID = re.compile(r"<[^<>\s]+@[^<>\s]+>")
_ENVID = re.compile(r"^[0-9a-f]{32}$")
_XTEXT = re.compile(r"\+([0-9A-F]{2})")
_UTF8X = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
_ENHANCED = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_QUOTED_MSGID = re.compile(r"^\s*Message-ID:\s*(<[^<>\s]+@[^<>\s]+>)", re.I | re.M)
_BOUNCE_SENDER = re.compile(r"mailer-daemon|postmaster|mail delivery|mail-daemon", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (status|failure|has failed|notification)|returned mail|mail delivery failed|"
    r"failure notice|not delivered|could not be delivered|delivery report|недоставлен|не доставлено",
    re.I,
)
_DELAY_TEXT = re.compile(r"delay|not yet been delivered|will (be )?retr|will keep trying|still trying", re.I)
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|answer)|autoreply|auto:|out of (the )?office|away from|"
    r"vacation|on leave|abwesenheit|absence|réponse automatique|respuesta automática|"
    r"автоответ|автоматический ответ|абонент в отпуске|нахожусь в отпуске|в отпуске|отсутству|"
    r"ҷавоби худкор)",
    re.I,
)
_STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")


@dataclass
class Parsed:
    """What one mail item is, before matching."""

    kind: str  # dsn | mdn | reply | other
    entries: list[dict[str, str | None]] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)  # ours, wherever the item names them
    verp: list[str] = field(default_factory=list)
    automatic: str | None = None  # why a reply is automatic
    arrival: str | None = None
    warning: str | None = None
    skip_reason: str | None = None


# ---------------------------------------------------------------------------
# Reading sources


@dataclass(frozen=True)
class Item:
    source: str
    raw: bytes


def read_sources(paths: Iterable[Path]) -> Iterator[Item]:
    """Mail items from files, mbox files and Maildir folders.

    Raises ReceiptError for a missing path, an unreadable file, or a single file given
    explicitly that is not mail.
    """
    for path in paths:
        if not path.exists():
            raise ReceiptError(f"{path}: no such file or folder")
        if path.is_dir():
            if not all((path / sub).is_dir() for sub in ("cur", "new")):
                raise ReceiptError(f"{path}: a folder must be a Maildir (with cur/ and new/)")
            # Maildir: every file in new/ and cur/ (never tmp/, where deliveries are in progress).
            names = sorted(
                (entry.name, f"{sub}/{entry.name}")
                for sub in ("new", "cur")
                for entry in os.scandir(path / sub)
                if entry.is_file() and not entry.name.startswith(".")
            )
            for _, rel in names:
                try:
                    raw = (path / rel).read_bytes()
                except OSError as err:
                    raise ReceiptError(f"{path}/{rel}: cannot read: {err.strerror}") from None
                yield Item(f"{path.name}/{rel}", raw)
            continue
        try:
            if path.stat().st_size > MAX_REPORT_BYTES:
                raise ReceiptError(f"{path}: over {MAX_REPORT_BYTES // 1048576} MB: not a delivery report")
            head = path.read_bytes()[:5]
        except OSError as err:
            raise ReceiptError(f"{path}: cannot read: {err.strerror}") from None
        if head == b"From ":
            mbox = mailbox.mbox(path, factory=None, create=False)
            try:
                raws = [mbox.get_bytes(key) for key in mbox.keys()]
            finally:
                mbox.close()
            for index, raw in enumerate(raws):
                yield Item(f"{path.name}#{index + 1}", _unquote_mboxrd(raw))
            continue
        raw = path.read_bytes()
        if not looks_like_mail(raw):
            raise ReceiptError(
                f"{path}: not an e-mail message (no header section)",
                hint="give .eml files, mbox files or Maildir folders",
            )
        yield Item(path.name, raw)


def _unquote_mboxrd(raw: bytes) -> bytes:
    return re.sub(rb"(?m)^>(>*From )", rb"\1", raw)


_HEADER_LINE = re.compile(rb"^[!-9;-~]+:[ \t]*\S")


def looks_like_mail(raw: bytes) -> bool:
    """At least two header fields at the top, before any blank line."""
    fields = 0
    for line in raw.lstrip(b"\r\n")[:65536].splitlines():
        if not line.strip():
            break
        if line[:1] in (b" ", b"\t"):
            continue
        if not _HEADER_LINE.match(line):
            return False
        fields += 1
        if fields >= 2:
            return True
    return False


# ---------------------------------------------------------------------------
# Parsing


def _text(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return " ".join(text.split())


_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def _decoded(value: object) -> str:
    """An RFC 2047 header (Subject, From) as text."""
    if value is None:
        return ""
    if isinstance(value, Header):
        # compat32 keeps a raw UTF-8 header (RFC 6532) as undecoded 8-bit bytes;
        # str() of it would print every byte as U+FFFD.
        value = b"".join(
            part if isinstance(part, bytes) else part.encode("utf-8", "surrogateescape")
            for part, _charset in decode_header(value)
        ).decode("utf-8", "replace")
    text = str(value)
    try:
        if not text.isascii():  # raw UTF-8 text, perhaps with encoded words inside it
            return _text(_ENCODED_WORD.sub(lambda m: str(make_header(decode_header(m.group(0)))), text))
        return _text(str(make_header(decode_header(text))))
    except (UnicodeError, LookupError, ValueError, email.errors.MessageError):
        return _text(value)


def _address(value: str | None) -> str | None:
    """``rfc822;A+2Bb@X.example`` → ``a+b@x.example`` (types removed, xtext and \\x{} decoded,
    IDNA domains as Unicode, ASCII lower-cased)."""
    if not value:
        return None
    text = value.split(";", 1)[1] if ";" in value else value
    text = text.strip().strip("<>").strip()
    text = _XTEXT.sub(lambda m: chr(int(m.group(1), 16)), text)
    text = _UTF8X.sub(lambda m: chr(int(m.group(1), 16)), text)
    if not text:
        return None
    local, at, domain = text.rpartition("@")
    if at and "xn--" in domain.lower():
        try:
            domain = domain.encode("ascii").decode("idna")
        except UnicodeError:
            pass
        text = f"{local}@{domain}"
    text = unicodedata.normalize("NFC", text)
    return text.lower() if text.isascii() else text.casefold()


def _mta(value: str | None) -> str | None:
    if not value:
        return None
    text = value.split(";", 1)[1] if ";" in value else value
    text = re.sub(r"\([^)]*\)", "", text).strip().rstrip(".").lower()
    return text.split()[0] if text else None


def _first_word(value: str | None) -> str | None:
    if not value:
        return None
    words = re.sub(r"\([^)]*\)", " ", value).split()
    return words[0].lower() if words else None


def _status(value: str | None) -> str | None:
    if not value:
        return None
    match = _ENHANCED.search(value)
    return match.group(1) if match else value.split()[0]


OUTCOMES = {
    "delivered": "delivered",
    "expanded": "delivered",
    "relayed": "relayed",
    "failed": "bounced",
    "delayed": "delayed",
}


def _blocks(part: Message) -> list[dict[str, str]]:
    """The header blocks of a (global-)delivery-status part as dicts with lower-case keys."""
    payload = part.get_payload()
    blocks: list[dict[str, str]] = []
    subs: list[Message] = [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
    for sub in subs:
        fields = {k.lower(): _text(v) for k, v in sub.items()}
        if fields:
            blocks.append(fields)
        body = sub.get_payload(decode=True) if not sub.is_multipart() else None
        if isinstance(body, bytes) and body:
            text = body.decode("utf-8", "replace").replace("\r\n", "\n")
            for chunk in re.split(r"\n[ \t]*\n", text):
                parsed = email.message_from_string(chunk.strip("\n") + "\n\n", policy=email.policy.compat32)
                extra = {k.lower(): _text(v) for k, v in parsed.items()}
                if extra:
                    blocks.append(extra)
    if not subs and isinstance(payload, str):
        for chunk in re.split(r"\n[ \t]*\n", payload.replace("\r\n", "\n")):
            parsed = email.message_from_string(chunk.strip("\n") + "\n\n", policy=email.policy.compat32)
            extra = {k.lower(): _text(v) for k, v in parsed.items()}
            if extra:
                blocks.append(extra)
    return blocks


def _parts(msg: Message) -> list[tuple[Message, str]]:
    """Every part with its content type, computed once (parsing Content-Type is not free)."""
    return [(part, part.get_content_type()) for part in msg.walk()]


def _returned_ids(parts: list[tuple[Message, str]]) -> list[str]:
    """Message-IDs of the returned original (headers or whole message) in a report."""
    ids: list[str] = []
    for part, ctype in parts:
        if ctype in ("text/rfc822-headers", "text/rfc822-header"):
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                ids += _QUOTED_MSGID.findall(text.decode("utf-8", "replace"))
        elif ctype in ("message/rfc822", "message/global-headers", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                value = inner[0].get("Message-ID")
                if value:
                    ids += _MSGID.findall(_text(value))
            elif isinstance(inner, str):
                ids += _QUOTED_MSGID.findall(inner)
    return ids


def _verp(msg: Message, return_local: str | None) -> list[str]:
    tokens: list[str] = []
    local = re.escape(return_local) if return_local else r"[^\s<>@+]+"
    pattern = re.compile(rf"{local}\+([0-9a-f]{{32}})@", re.I)
    for header in ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To"):
        for value in msg.get_all(header) or []:
            tokens += [t.lower() for t in pattern.findall(_text(value))]
    return list(dict.fromkeys(tokens))


def _arrival(msg: Message) -> str | None:
    value = msg.get("Date")
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(_text(value))
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return to_rfc3339(moment.replace(microsecond=0))


def _referenced_ids(msg: Message) -> list[str]:
    ids: list[str] = []
    for header in ("In-Reply-To", "References", "X-Original-Message-ID"):
        for value in msg.get_all(header) or []:
            ids += _MSGID.findall(_text(value))
    return ids


def _depth(msg: Message) -> int:
    """How deep the parsed parts nest (iterative: no recursion on hostile input)."""
    deepest = 0
    stack: list[tuple[Message, int]] = [(msg, 1)]
    while stack:
        part, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_MIME_DEPTH:
            return deepest
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend((p, level + 1) for p in payload if isinstance(p, Message))
    return deepest


def _too_deep_report(depth: str) -> Parsed:
    return Parsed(
        kind="dsn",
        warning=f"nested {depth} MIME levels deep: not read (the limit is {MAX_MIME_DEPTH}); kept for a person to "
        "look at",
    )


def parse(raw: bytes, *, return_local: str | None = None) -> Parsed:
    """Classify and parse one mail item (no matching). Never raises for odd input."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    except RecursionError:
        return _too_deep_report("hundreds of")
    except (ValueError, TypeError, IndexError, LookupError, AttributeError) as err:  # pragma: no cover - parser bugs
        return Parsed(kind="other", skip_reason=f"unparseable ({type(err).__name__})")
    if not msg.keys():
        return Parsed(kind="other", skip_reason="not an e-mail message")
    depth = _depth(msg)
    if depth > MAX_MIME_DEPTH:
        return _too_deep_report(f"more than {MAX_MIME_DEPTH}")
    warning = None
    if any(type(d).__name__ in ("CloseBoundaryNotFoundDefect", "StartBoundaryNotFoundDefect") for d in msg.defects):
        warning = "truncated: the report ends before its last part"
    try:
        parsed = _parse(msg, return_local)
    except (ValueError, TypeError, IndexError, KeyError, LookupError, AttributeError, UnicodeError) as err:
        return Parsed(kind="other", skip_reason=f"could not be read ({type(err).__name__}: {err})")
    parsed.warning = parsed.warning or warning
    parsed.arrival = parsed.arrival or _arrival(msg)
    return parsed


def _parse(msg: Message, return_local: str | None) -> Parsed:
    parts = _parts(msg)
    ctype = parts[0][1]
    report_type = msg.get_param("report-type") or ""
    report_type = str(report_type).lower() if isinstance(report_type, str) else ""
    if ctype == "multipart/report" and report_type == "feedback-report":
        return Parsed(kind="other", skip_reason="feedback report (ARF)")
    if ctype == "multipart/report" and report_type == "disposition-notification":
        return _parse_mdn(msg, parts)
    status_part = next((p for p, t in parts if t in _STATUS_TYPES), None)
    if status_part is not None:
        return _parse_dsn(msg, parts, status_part, return_local)
    if _looks_like_bounce(msg):
        return _parse_plain_bounce(msg, parts, return_local)
    referenced = _referenced_ids(msg)
    if referenced:
        return Parsed(kind="reply", message_ids=referenced, automatic=_automatic(msg))
    return Parsed(kind="other", skip_reason="not a report or a reply to one of our letters")


def _parse_dsn(msg: Message, parts: list[tuple[Message, str]], part: Message, return_local: str | None) -> Parsed:
    blocks = _blocks(part)
    if not blocks:
        return Parsed(kind="dsn", warning="malformed delivery report: no status fields", message_ids=_ids(msg, parts))
    per_message, recipients = blocks[0], blocks[1:]
    if "final-recipient" in per_message or "action" in per_message:
        per_message, recipients = {}, blocks  # no per-message block at all
    envid = (per_message.get("original-envelope-id") or "").strip().lower() or None
    reporting = _mta(per_message.get("reporting-mta"))
    entries: list[dict[str, str | None]] = []
    problems: list[str] = []
    for index, block in enumerate(recipients, start=1):
        action = _first_word(block.get("action"))
        final = _address(block.get("final-recipient"))
        missing = [name for name, value in (("Final-Recipient", final), ("Action", action)) if not value]
        if missing:
            problems.append(f"recipient block {index}: {' and '.join(missing)} missing")
            continue
        assert action is not None
        if action not in OUTCOMES:
            problems.append(f"recipient block {index}: unknown Action {action!r}")
            continue
        entries.append(
            {
                "envid": envid,
                "action": action,
                "outcome": OUTCOMES[action],
                "status": _status(block.get("status")),
                "diagnostic": block.get("diagnostic-code") or None,
                "original_recipient": _address(block.get("original-recipient")),
                "final_recipient": final,
                "reporting_mta": reporting,
                "remote_mta": _mta(block.get("remote-mta")),
                "will_retry_until": block.get("will-retry-until") or None,
            }
        )
    ids = _MSGID.findall(per_message.get("x-original-message-id", "")) + _ids(msg, parts)
    warning = f"malformed delivery report ({'; '.join(problems)})" if problems else None
    return Parsed(kind="dsn", entries=entries, message_ids=ids, verp=_verp(msg, return_local), warning=warning)


def _ids(msg: Message, parts: list[tuple[Message, str]]) -> list[str]:
    return list(dict.fromkeys(_referenced_ids(msg) + _returned_ids(parts)))


def _looks_like_bounce(msg: Message) -> bool:
    sender = _decoded(msg.get("From"))
    subject = _decoded(msg.get("Subject"))
    null_path = (msg.get("Return-Path") or "").strip() in ("<>", "")
    return bool(
        msg.get("X-Failed-Recipients")
        or (_BOUNCE_SENDER.search(sender) and _BOUNCE_SUBJECT.search(subject))
        or (null_path and msg.get("Return-Path") is not None and _BOUNCE_SUBJECT.search(subject))
    )


def _body_text(msg: Message, parts: list[tuple[Message, str]]) -> str:
    chunks = []
    for part, ctype in parts:
        if ctype.startswith("text/") or ctype == "message/rfc822":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                chunks.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    if not chunks and isinstance(msg.get_payload(), str):
        chunks.append(str(msg.get_payload()))
    return "\n".join(chunks)


def _parse_plain_bounce(msg: Message, parts: list[tuple[Message, str]], return_local: str | None) -> Parsed:
    text = _body_text(msg, parts)
    failed = [a.strip() for a in _text(msg.get("X-Failed-Recipients")).split(",") if a.strip()]
    ids = list(dict.fromkeys(_QUOTED_MSGID.findall(text) + _ids(msg, parts)))
    status = _ENHANCED.search(text)
    diagnostic = next(
        (line.strip() for line in text.splitlines() if re.match(r"\s*(SMTP error.*?:\s*)?[45]\d\d[ -]", line)), None
    )
    if diagnostic:
        diagnostic = re.sub(r"^SMTP error[^:]*:\s*", "", diagnostic, flags=re.I)
    outcome = (
        "delayed" if _DELAY_TEXT.search(_decoded(msg.get("Subject")) + " " + text[:2000]) and not failed else "bounced"
    )
    recipients: list[str | None] = [_address(a) for a in failed] or [None]
    entries: list[dict[str, str | None]] = [
        {
            "envid": None,
            "action": None,
            "outcome": outcome,
            "status": status.group(1) if status else None,
            "diagnostic": diagnostic,
            "original_recipient": None,
            "final_recipient": final,
            "reporting_mta": None,
            "remote_mta": None,
        }
        for final in recipients
    ]
    return Parsed(
        kind="dsn",
        entries=entries,
        message_ids=ids,
        verp=_verp(msg, return_local),
        warning="not a standard delivery report: read from its text",
    )


def _parse_mdn(msg: Message, parts: list[tuple[Message, str]]) -> Parsed:
    part = next(
        (p for p, t in parts if t in ("message/disposition-notification", "message/global-disposition-notification")),
        None,
    )
    if part is None:
        return Parsed(kind="other", skip_reason="read receipt without a disposition part")
    blocks = _blocks(part)
    fields = blocks[0] if blocks else {}
    disposition = fields.get("disposition", "")
    value = disposition.split(";", 1)[1] if ";" in disposition else disposition
    kind = _first_word(value.split("/")[0]) or ""
    original = _MSGID.findall(fields.get("original-message-id", ""))
    if kind not in ("displayed", "deleted"):
        return Parsed(kind="other", skip_reason=f"read receipt with disposition {kind or 'missing'!r}")
    entry: dict[str, str | None] = {
        "outcome": kind,
        "action": disposition.split(";", 1)[0].strip() or None,
        "final_recipient": _address(fields.get("final-recipient")),
        "original_recipient": _address(fields.get("original-recipient")),
        "reporting_mta": fields.get("reporting-ua") or None,
    }
    return Parsed(kind="mdn", entries=[entry], message_ids=original + _referenced_ids(msg))


def _automatic(msg: Message) -> str | None:
    auto = _text(msg.get("Auto-Submitted")).lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    for header in ("X-Autoreply", "X-Autorespond", "X-Autoresponse"):
        if msg.get(header):
            return f"{header}: {_text(msg.get(header))}"
    precedence = _text(msg.get("Precedence")).lower()
    if precedence in ("auto_reply", "auto-reply"):
        return f"Precedence: {precedence}"
    subject = _decoded(msg.get("Subject"))
    subject = re.sub(r"^\s*(re|aw|ответ|отв)\s*:\s*", "", subject, flags=re.I)
    if _AUTO_SUBJECT.search(subject):
        return f"subject: {subject[:60]}"
    return None


# ---------------------------------------------------------------------------
# Importing


@dataclass
class ImportResult:
    """What an import did."""

    items: int = 0
    recorded: int = 0
    already: int = 0
    unmatched: int = 0
    suspicious: int = 0  # entries about letters that were never attempted: kept, changed nothing
    skipped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)
    handled: list[str] = field(default_factory=list)  # sources recorded now or before


def _same_address(a: str | None, b: str) -> bool:
    return bool(a) and unicodedata.normalize("NFC", str(a)).casefold() == unicodedata.normalize("NFC", b).casefold()


def _entries(parsed: Parsed, targets: dict[str, Target]) -> list[ReceiptEntry]:
    """Match a parsed item's entries against the letters (see the module docstring)."""
    from campaign.store.receipts import suspicious

    def by_id() -> tuple[Target | None, str | None]:
        for mid in parsed.message_ids:
            if mid in targets:
                return targets[mid], "message-id"
        for token in parsed.verp:
            if token in targets:
                return targets[token], "verp"
        return None, None

    def by_verp() -> Target | None:
        return next((targets[t] for t in parsed.verp if t in targets), None)

    def named(entry: dict[str, str | None]) -> tuple[Target | None, str | None]:
        """Our letter by Message-ID, only with the recipient the report names."""
        for mid in parsed.message_ids:
            candidate = targets.get(mid)
            if candidate is None:
                continue
            if any(_same_address(entry.get(k), candidate.email) for k in ("final_recipient", "original_recipient")):
                return candidate, "message-id+recipient"
            who = entry.get("final_recipient") or entry.get("original_recipient")
            return None, (
                f"names our letter {mid} but "
                + (f"another recipient ({who})" if who else "no recipient")
                + ": a Message-ID alone does not identify the letter it reports on"
            )
        return None, None

    def judged(entry: ReceiptEntry) -> ReceiptEntry:
        if entry.target is not None and not entry.target.attempted:
            return suspicious(entry, entry.target)
        return entry

    out: list[ReceiptEntry] = []
    if parsed.kind in ("mdn", "reply"):
        target, how = by_id()
        kind = parsed.kind
        if kind == "reply":
            kind = "auto-reply" if parsed.automatic else "reply"
        for index, entry in enumerate(parsed.entries or [{}]):
            out.append(
                judged(
                    ReceiptEntry(
                        part=index,
                        kind=kind,
                        target=target,
                        matched_by=how,
                        outcome=entry.get("outcome"),
                        action=entry.get("action"),
                        final_recipient=entry.get("final_recipient"),
                        original_recipient=entry.get("original_recipient"),
                        reporting_mta=entry.get("reporting_mta"),
                        original_message_id=parsed.message_ids[0] if parsed.message_ids else None,
                        arrival=parsed.arrival,
                        note=parsed.automatic,
                    )
                )
            )
        return out
    entries = parsed.entries
    by_envelope: dict[str, list[int]] = {}
    for index, entry in enumerate(entries):
        envid = entry.get("envid")
        if envid and envid in targets:
            by_envelope.setdefault(envid, []).append(index)
    for index, entry in enumerate(entries):
        target = None
        how = None
        note = parsed.warning
        envid = entry.get("envid")
        if envid and envid in targets:
            candidate = targets[envid]
            if any(_same_address(entry.get(k), candidate.email) for k in ("original_recipient", "final_recipient")):
                target, how = candidate, "envid+recipient"
            elif len(by_envelope[envid]) == 1:
                target, how = candidate, "envid"
        else:
            target = by_verp()
            how = "verp" if target is not None else None
            if target is None:
                target, reason = named(entry)
                if target is not None:
                    how = reason
                elif reason:
                    note = f"{reason}; {note}" if note else reason
        out.append(
            judged(
                ReceiptEntry(
                    part=index,
                    kind="dsn",
                    target=target,
                    matched_by=how,
                    outcome=entry.get("outcome"),
                    action=entry.get("action"),
                    status=entry.get("status"),
                    diagnostic=entry.get("diagnostic"),
                    reporting_mta=entry.get("reporting_mta"),
                    remote_mta=entry.get("remote_mta"),
                    original_recipient=entry.get("original_recipient"),
                    final_recipient=entry.get("final_recipient"),
                    envid=envid,
                    original_message_id=parsed.message_ids[0] if parsed.message_ids else None,
                    arrival=parsed.arrival,
                    note=note,
                )
            )
        )
    if not out and parsed.warning:
        # A report we cannot read is still kept, as one unmatched entry, for a person to look at.
        target, how = by_id()
        out.append(
            ReceiptEntry(
                part=0,
                kind="dsn",
                target=None,
                matched_by=None,
                note=parsed.warning,
                original_message_id=target.message_id if target else None,
                arrival=parsed.arrival,
            )
        )
    return out


def import_items(
    store: ReceiptSink,
    items: Iterable[Item],
    *,
    now_ms: Callable[[], int],
    return_local: str | None = None,
    batch: int = 100,
) -> ImportResult:
    """Parse, match and record mail items in batches of ``batch`` (one short transaction
    each: a long import never holds the chain head against the senders for long)."""
    result = ImportResult()
    pending: list[tuple[Item, Parsed]] = []

    def flush() -> None:
        if not pending:
            return
        shas = [sha256_hex(item.raw) for item, _ in pending]
        known: set[str] = set()
        envids = [str(e["envid"]) for _, p in pending for e in p.entries if e.get("envid")]
        tokens = [t for _, p in pending for t in p.verp]
        ids = [m for _, p in pending for m in p.message_ids]
        targets = store.targets(envids=[*envids, *tokens], message_ids=ids)
        reports: list[Report] = []
        seen: set[str] = set()
        for (item, parsed), sha in zip(pending, shas, strict=True):
            if sha in known or sha in seen:
                result.already += 1
                result.handled.append(item.source)
                continue
            seen.add(sha)
            entries = _entries(parsed, targets)
            if parsed.kind == "reply" and all(e.target is None for e in entries):
                result.skipped["not about our letters"] = result.skipped.get("not about our letters", 0) + 1
                continue
            if parsed.warning:
                result.warnings.append(f"{item.source}: {parsed.warning}")
            result.suspicious += sum(1 for e in entries if e.suspicious is not None)
            result.unmatched += sum(1 for e in entries if e.target is None and e.suspicious is None)
            for e in entries:
                result.by_kind[e.kind] = result.by_kind.get(e.kind, 0) + 1
            reports.append(Report(raw=item.raw, sha256=sha, source=item.source, entries=entries))
            result.handled.append(item.source)
        result.recorded += store.record_reports(reports, now_ms())
        pending.clear()

    chunk: list[Item] = []

    def consume() -> None:
        known = store.known_reports([sha256_hex(item.raw) for item in chunk])
        for item in chunk:
            result.items += 1
            if sha256_hex(item.raw) in known:
                result.already += 1  # imported before: not even parsed again
                result.handled.append(item.source)
                continue
            parsed = parse(item.raw, return_local=return_local)
            if parsed.kind == "other":
                reason = parsed.skip_reason or "other mail"
                result.skipped[reason] = result.skipped.get(reason, 0) + 1
                continue
            pending.append((item, parsed))
        chunk.clear()
        flush()

    for item in items:
        chunk.append(item)
        if len(chunk) >= batch:
            consume()
    consume()
    return result


def describe(raw: bytes) -> tuple[str, str]:
    """(From, Subject) of a stored reply, for listings."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    return _decoded(msg.get("From")), _decoded(msg.get("Subject"))
