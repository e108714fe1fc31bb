"""Signing drives: the organiser's commands and the service behind the supporters' page.

The CLI calls the module functions (``open_drive``, ``list_drives``, ``review``,
``remove``, ``close_drive``, ``export_drive``, ``prove``, ``verify_export``,
``names_keygen``); ``campaign serve`` builds a :class:`SigningService` and hands it to the
web layer, which calls only its methods (never the store). Nothing here prints or
exits; problems are :class:`~campaign.errors.CampaignError`, and a supporter's bad form
is a :class:`~campaign.errors.SubmissionError` whose ``code`` the page words in the
supporter's language.

Privacy rules kept here: no method takes or stores a network identifier (address,
user agent, headers); the salt of a commitment lives only in the receipt returned to
the supporter; a pseudonymous signer's real name is sealed to the organisation's names
key before it reaches the store; the signed PDF is returned, never kept.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import io
import os
import re
import secrets
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import time as dtime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaign import registry as registry_mod
from campaign import signing
from campaign.api import drive_texts
from campaign.api.drive_texts import UI_LANGS
from campaign.config import Workspace
from campaign.errors import CampaignError, PdfError, SelectionError, SigningError, SubmissionError, UsageError
from campaign.files import OVERWRITE_HINT, check_target
from campaign.models import utcnow
from campaign.render import format_date

if TYPE_CHECKING:
    from campaign.store.signing import Deletion
    from campaign.store.sql import SqlStore

DEFAULT_PORT = 8470
DEFAULT_RATE = 120  # submissions per minute per drive
NAMES_PUBLIC = "names.pub"
ALLOWED_FIELDS = ("city", "title")
MAX_FIELD = 120
MAX_SIGNATURE_BYTES = 1_000_000

# Bidirectional overrides and invisible controls can make a name read differently from
# what it is; letters, marks, spaces and ordinary punctuation are what names are made of.
_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_JOINERS = {"\u200c", "\u200d"}  # ZWNJ/ZWJ appear in real names (Persian script)


def _store(ws: Workspace, *, create: bool = True) -> SqlStore:
    from campaign.api import open_store

    return open_store(ws, create=create)


@contextlib.contextmanager
def _opened(ws: Workspace, *, create: bool = False) -> Iterator[SqlStore]:
    store = _store(ws, create=create)
    try:
        yield store
    finally:
        store.close()


def _keys(ws: Workspace) -> Path:
    return ws.state_dir / "keys"


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------------------
# The names key (X25519; the private half stays with the organiser, offline)


def names_keygen(ws: Workspace, out: Path, *, force: bool = False) -> Path:
    """Create the names key: the private half to ``out`` (0600, replaced only with ``force``),
    the public half to .campaign/keys/names.pub. Raises WorkspaceError/SigningError."""
    from campaign.api import _new_state_undone_on_error, _write_private_file
    from campaign.signing.sealing import new_names_key

    public_path = _keys(ws) / NAMES_PUBLIC
    if public_path.exists():
        raise SigningError(
            f"{ws.relative(public_path)} exists already: this workspace has a names key",
            hint="sealed names can only be read with its private half; keep using that file",
        )
    if out.resolve().is_relative_to(ws.state_dir.resolve()):
        raise SigningError(
            f"{out}: the private half must not live in .campaign/ (campaign serve must never be able to read it)",
            hint="write it to a USB stick or another machine, e.g. -o /media/usb/names.key",
        )
    check_target(out, force=force)
    private, public = new_names_key()
    with _new_state_undone_on_error(ws):
        _write_private_file(out, (private + "\n").encode("ascii"), replace=force)
        ws.ensure_state_dir()
        from campaign.config import ensure_private_dir

        ensure_private_dir(_keys(ws))
        _write_private_file(public_path, (public + "\n").encode("ascii"))
    return out


def _names_public(ws: Workspace) -> str | None:
    path = _keys(ws) / NAMES_PUBLIC
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise SigningError(f"{ws.relative(path)}: cannot read the names public key ({err})") from None


# ---------------------------------------------------------------------------
# Opening a drive


@dataclass
class OpenRequest:
    letter: str
    ids: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    closes: str | None = None
    allow_pseudonyms: bool = False
    fields: list[str] = field(default_factory=list)
    passphrase: str | None = None
    rate: int = DEFAULT_RATE
    name: str | None = None


@dataclass(frozen=True)
class DriveInfo:
    name: str
    token: str
    letter: str
    institutions: list[str]
    status: str
    created_at: str
    closes_at: str | None
    closed_at: str | None
    allow_pseudonyms: bool
    fields: list[str]
    passphrase: bool
    rate_per_minute: int
    text_lang: str
    text_sha256: str
    signed: int | None = None
    count: int | None = None
    root: str | None = None

    @property
    def path(self) -> str:
        return f"/s/{self.token}"

    def url(self, base: str = f"http://127.0.0.1:{DEFAULT_PORT}") -> str:
        return base.rstrip("/") + self.path


def _info(row: dict[str, Any]) -> DriveInfo:
    return DriveInfo(
        name=row["name"],
        token=row["token"],
        letter=row["letter"],
        institutions=list(row["institutions"]),
        status=row["status"],
        created_at=row["created_at"],
        closes_at=row["closes_at"],
        closed_at=row["closed_at"],
        allow_pseudonyms=bool(row["allow_pseudonyms"]),
        fields=list(row["fields"]),
        passphrase=bool(row["passphrase_hash"]),
        rate_per_minute=int(row["rate_per_minute"]),
        text_lang=row["text_lang"],
        text_sha256=row["text_sha256"],
        signed=row.get("signed"),
        count=row["signature_count"],
        root=row["root"],
    )


def _parse_closes(text: str) -> str:
    """--closes: a date (the end of that day, UTC) or a time with its zone → RFC 3339 UTC."""
    from campaign.outbox import parse_at
    from campaign.store.sql import iso

    text = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            day = datetime.strptime(text, "%Y-%m-%d").date()
        except ValueError:
            raise UsageError(f"--closes {text!r}: not a date") from None
        moment = datetime.combine(day, dtime(23, 59, 59), UTC)
    else:
        try:
            moment = parse_at(text)
        except UsageError as err:
            raise UsageError(err.message.replace("--at", "--closes")) from None
    if moment <= utcnow():
        raise UsageError(f"--closes {text!r} is in the past", hint="give a later date, e.g. 2026-12-31")
    return iso(int(moment.timestamp() * 1000))


def hash_passphrase(passphrase: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(passphrase.encode("utf-8"), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def check_passphrase(stored: str, given: str) -> bool:
    try:
        _, salt, digest = stored.split("$")
        computed = hashlib.scrypt(given.encode("utf-8"), salt=bytes.fromhex(salt), n=2**14, r=8, p=1, dklen=32)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(computed.hex(), digest)


def open_drive(ws: Workspace, request: OpenRequest) -> DriveInfo:
    """Freeze the letter's texts for the chosen institutions and open a drive with an
    unguessable link. Raises SelectionError, UsageError, SigningError."""
    from campaign.api import _new_state_undone_on_error, load_registry
    from campaign.outbox import check_selection
    from campaign.store import signing as sstore

    check_selection(request.ids, request.tags, False)
    unknown = [f for f in request.fields if f not in ALLOWED_FIELDS]
    if unknown:
        raise UsageError(f"--fields {unknown[0]!r}: the optional fields are {', '.join(ALLOWED_FIELDS)}")
    if not 1 <= request.rate <= 100_000:
        raise UsageError(f"--rate {request.rate}: give a number of signatures per minute between 1 and 100000")
    if request.name is not None and not signing.is_drive_name(request.name):
        raise UsageError(f"--name {request.name!r}: use lowercase letters, digits and hyphens (e.g. pa-berlin)")
    if request.passphrase is not None and len(request.passphrase) < 4:
        raise UsageError("the drive's passphrase needs at least 4 characters")
    closes = _parse_closes(request.closes) if request.closes else None
    names_public = None
    if request.allow_pseudonyms:
        names_public = _names_public(ws)
        if names_public is None:
            raise SigningError(
                "--allow-pseudonyms needs the organisation's names key, to seal pseudonymous signers' real names",
                hint="create it once with `campaign sign keygen -o /media/usb/names.key` (keep that file offline)",
            )
    reg = load_registry(ws)
    letters = registry_mod.load_letters(ws.letters_dir)
    letter = registry_mod.get_letter(letters, request.letter)
    recipients = registry_mod.select_recipients(reg, ids=request.ids, tags=request.tags)
    today = utcnow().date()
    frozen = drive_texts.freeze(ws, letter, recipients, today)
    with _new_state_undone_on_error(ws):
        store = _store(ws)
        try:
            name = request.name or _next_name(store, letter.id)
            drive = sstore.NewDrive(
                name=name,
                token=signing.new_token(),
                letter=letter.id,
                institutions=[r.id for r in recipients],
                closes_at=closes,
                allow_pseudonyms=request.allow_pseudonyms,
                fields=list(dict.fromkeys(request.fields)),
                passphrase_hash=hash_passphrase(request.passphrase) if request.passphrase else None,
                rate_per_minute=request.rate,
                names_public_key=names_public,
                reference_recipient=frozen.reference.id,
                text_lang=frozen.lang,
                subject=frozen.subject,
                text=frozen.text,
                body_html=frozen.body_html,
                text_sha256=frozen.text_sha256,
                date_text=frozen.date_text,
                reference=f"{letter.id}/{name}/{today:%Y%m%d}",
            )
            sstore.create_drive(store, drive, frozen.translations, _now_ms())
            found = sstore.get_drive(store, name)
        finally:
            store.close()
    return _info(found)


def _next_name(store: SqlStore, letter: str) -> str:
    from campaign.store import signing as sstore

    taken = {d["name"] for d in sstore.list_drives(store)}
    n = 1
    while f"{letter}-{n}" in taken:
        n += 1
    return f"{letter}-{n}"[:80]


def list_drives(ws: Workspace) -> list[DriveInfo]:
    """Every drive, open and closed, with its number of signatures."""
    from campaign.store import signing as sstore

    with _opened(ws) as store:
        return [_info(row) for row in sstore.list_drives(store)]


# ---------------------------------------------------------------------------
# Review, removal, closing, export


@dataclass(frozen=True)
class SignatureRow:
    id: int
    name: str
    pseudonymous: bool
    real_name: str | None  # only with the names key; "(sealed)" otherwise
    city: str | None
    title: str | None
    signature: str  # drawn | typed
    ui_lang: str
    text_lang: str
    translation_lang: str | None
    signed_on: str


@dataclass(frozen=True)
class Review:
    drive: DriveInfo
    rows: list[SignatureRow]


def review(ws: Workspace, name: str, *, names_key: Path | None = None) -> Review:
    """The drive's signatures for the organiser to check (real names only with the key)."""
    from campaign.signing.sealing import open_name
    from campaign.store import signing as sstore

    private = None
    if names_key is not None:
        try:
            private = names_key.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as err:
            raise SigningError(f"{names_key}: cannot read the names key ({err})") from None
    with _opened(ws) as store:
        drive = sstore.get_drive(store, name)
        sigs = sstore.signatures(store, drive["id"])
        drive["signed"] = len(sigs)
    rows = []
    for sig in sigs:
        real = None
        if sig["pseudonymous"] and sig["sealed_name"]:
            real = open_name(private, sig["sealed_name"]) if private is not None else "(sealed)"
        rows.append(
            SignatureRow(
                id=int(sig["id"]),
                name=sig["name"],
                pseudonymous=bool(sig["pseudonymous"]),
                real_name=real,
                city=sig["city"],
                title=sig["title"],
                signature="drawn" if sig["signature_png"] else "typed",
                ui_lang=sig["ui_lang"],
                text_lang=sig["text_lang"],
                translation_lang=sig["translation_lang"],
                signed_on=sig["signed_on"],
            )
        )
    return Review(_info(drive), rows)


def remove(ws: Workspace, name: str, ids: list[int]) -> Deletion:
    """Remove signatures (e.g. fakes) from an open drive; the chain records the count.
    ``leftover`` says why deleted bytes may remain on disk (for a warning)."""
    from campaign.store import signing as sstore

    if not ids:
        raise UsageError("give the numbers of the signatures to remove (see `campaign sign review`)")
    with _opened(ws) as store:
        drive = sstore.get_drive(store, name)
        return sstore.remove_signatures(store, drive["id"], sorted(set(ids)), _now_ms())


@dataclass(frozen=True)
class CloseResult:
    drive: DriveInfo
    count: int
    root: str
    cover: Path | None


def root_fingerprint_hex(ws: Workspace) -> str:
    from campaign import pdf

    return pdf.root_fingerprint(_keys(ws)).replace(":", "").lower()


def close_drive(
    ws: Workspace, name: str, passphrase: str, *, cover_out: Path | None = None, force: bool = False
) -> CloseResult:
    """Freeze the drive: count, Merkle root and the sealed cover page (kept in the store;
    also written to ``cover_out``, replaced only with ``force``). Raises SigningError, PdfError."""
    from campaign import pdf
    from campaign.api import _letterhead, _write_private_file, load_registry
    from campaign.store import signing as sstore

    if cover_out is not None:
        check_target(cover_out, force=force, error=SigningError)
    key = pdf.load_seal(_keys(ws), passphrase)
    fingerprint = root_fingerprint_hex(ws)
    reg = load_registry(ws)
    names = {r.id: r.label for r in reg.recipients}
    with _opened(ws) as store:
        drive = sstore.get_drive(store, name)
        if drive["status"] != "open":
            raise SigningError(f"drive {name} is closed already (root {drive['root']})")
        for _attempt in range(5):
            commits = sstore.commitments(store, drive["id"])
            root = signing.merkle_root(commits)
            payload = signing.proof_payload(
                drive=name,
                letter_sha256=drive["text_sha256"],
                key_fingerprint=fingerprint,
                count=len(commits),
                root=root,
            )
            cover = pdf.Cover(
                lang=drive["text_lang"],
                drive=name,
                count=len(commits),
                institutions=[names.get(i, i) for i in drive["institutions"]],
                letter_subject=drive["subject"],
                letter_sha256=drive["text_sha256"],
                root=root,
                closed_on=format_date(utcnow().date(), drive["text_lang"]),
            )
            renderer = pdf.PdfRenderer()
            unsigned = pdf.render_cover(renderer, _letterhead(ws), cover, pdf.Proof(payload=payload, lines=()))
            sealed = pdf.sign_pdf(unsigned, key, signer=None, sealed_by=ws.settings.sender.name)
            try:
                sstore.close_drive(
                    store,
                    drive["id"],
                    _now_ms(),
                    expected=commits,
                    root=root,
                    key_fingerprint=fingerprint,
                    cover_pdf=sealed,
                )
                break
            except SigningError as err:
                if err.message != "changed":
                    raise
        else:
            raise SigningError(f"drive {name}: signatures keep arriving; close it again in a moment")
        closed = sstore.get_drive(store, name)
    if cover_out is not None:
        _write_private_file(cover_out, sealed, replace=force)
    return CloseResult(_info(closed), len(commits), root, cover_out)


def cover_page(ws: Workspace, name: str) -> tuple[DriveInfo, bytes]:
    """A closed drive and its sealed cover page. Raises SigningError for an open drive."""
    from campaign.store import signing as sstore

    with _opened(ws) as store:
        drive = sstore.get_drive(store, name)
        data = sstore.cover_pdf(store, drive["id"])
    if data is None:
        raise SigningError(
            f"drive {name} is still open: it has no cover page yet", hint=f"close it first: campaign sign close {name}"
        )
    return _info(drive), data


def export_drive(ws: Workspace, name: str, out: Path, *, fmt: str = "csv", force: bool = False) -> list[Path]:
    """``csv``: signatories for `pdf batch` (name, title, city, signature_image; drawn
    signatures as PNG files in <out>-signatures/). ``json``: the public, name-free record
    of a closed drive that `sign verify` checks. Overwrites only with ``force``. Returns files written."""
    from campaign.api import _write_private_file
    from campaign.store import signing as sstore

    if fmt not in ("csv", "json"):
        raise UsageError(f"--format {fmt!r}: choose csv or json")
    check_target(out, force=force, error=SigningError)
    with _opened(ws) as store:
        drive = sstore.get_drive(store, name)
        if fmt == "json":
            if drive["status"] != "closed":
                raise SigningError(
                    f"drive {name} is still open: the public export needs the final root",
                    hint=f"close it first: campaign sign close {name}",
                )
            export = signing.DriveExport(
                drive=name,
                letter=drive["letter"],
                letter_sha256=drive["text_sha256"],
                institutions=drive["institutions"],
                closed_at=drive["closed_at"],
                count=int(drive["signature_count"]),
                root=drive["root"],
                key_fingerprint=drive["key_fingerprint"],
                commitments=sstore.commitments(store, drive["id"]),
            )
            _write_private_file(out, export.to_json().encode("utf-8"), replace=force)
            guide = out.with_name(out.stem + "-VERIFY.md")
            if not guide.exists():  # the same text every time: one beside the export is enough
                from importlib import resources

                _write_private_file(guide, (resources.files("campaign.signing") / "VERIFY.md").read_bytes())
                return [out, guide]
            return [out]
        sigs = sstore.signatures(store, drive["id"])
    images_dir = out.with_name(out.stem + "-signatures")
    written: list[Path] = []
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "title", "city", "signature_image"])
    drawn = [s for s in sigs if s["signature_png"]]
    if drawn:
        if images_dir.exists() and not (force and images_dir.is_dir()):
            raise SigningError(f"{images_dir}: already exists; nothing was written", hint=OVERWRITE_HINT)
        images_dir.mkdir(mode=0o700, exist_ok=True)
    for n, sig in enumerate(sigs, start=1):
        image = ""
        if sig["signature_png"]:
            path = images_dir / f"{n:04d}.png"
            _write_private_file(path, sig["signature_png"], replace=force)
            written.append(path)
            image = f"{images_dir.name}/{path.name}"
        writer.writerow([sig["name"], sig["title"] or "", sig["city"] or "", image])
    _write_private_file(out, buffer.getvalue().encode("utf-8"), replace=force)
    return [out, *written]


@dataclass(frozen=True)
class ProveResult:
    drive: str
    commitment: str
    index: int
    size: int
    path: list[str]
    root: str
    included: bool
    closed: bool
    name_matches: bool | None  # with --name: does the commitment open to it?


def prove(
    ws: Workspace | None, receipt_text: str, *, export: Path | None = None, name: str | None = None
) -> ProveResult:
    """Show that a receipt's commitment is in the drive's tree: from the store (the
    organiser) or offline from a drive export. Raises SigningError when it is not there."""
    from campaign.store import signing as sstore

    receipt = signing.parse_receipt(receipt_text)
    if export is not None:
        record = _read_export(export)
        if record.drive != receipt.drive:
            raise SigningError(f"this receipt is for drive {receipt.drive}, the export is of {record.drive}")
        commits, root, letter_sha, closed = record.commitments, record.root, record.letter_sha256, True
    else:
        if ws is None:
            raise UsageError("give --export DRIVE.json, or run it in the organiser's workspace")
        with _opened(ws) as store:
            drive = sstore.get_drive(store, receipt.drive)
            commits = sstore.commitments(store, drive["id"])
        closed = drive["status"] == "closed"
        root = drive["root"] if closed else signing.merkle_root(commits)
        letter_sha = drive["text_sha256"]
    if receipt.commitment not in commits:
        raise SigningError(
            f"the receipt's commitment is not in drive {receipt.drive}"
            + (" (withdrawn or removed)" if not closed else ": it was not counted"),
            hint="check that you copied the whole receipt",
        )
    index, path = signing.inclusion_proof(commits, receipt.commitment)
    included = signing.verify_inclusion(receipt.commitment, index, len(commits), path, root)
    matches = receipt.matches(name, letter_sha) if name is not None else None
    return ProveResult(receipt.drive, receipt.commitment, index, len(commits), path, root, included, closed, matches)


def _read_export(path: Path) -> signing.DriveExport:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SelectionError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SigningError(f"{path}: cannot read ({err})") from None
    return signing.parse_export(text, name=str(path))


def verify_export(path: Path) -> signing.ExportCheck:
    """Recompute a drive export's root and count offline."""
    return signing.check_export(_read_export(path))


# ---------------------------------------------------------------------------
# The service behind the supporters' page


@dataclass(frozen=True)
class TextView:
    lang: str
    subject: str
    body_html: str
    sha256: str


@dataclass(frozen=True)
class PageView:
    """What the supporters' page shows for one drive (no store rows, no secrets)."""

    drive: str
    organisation: str
    open: bool
    closes_at: str | None
    text: TextView
    translation: TextView | None
    institutions: list[tuple[str, str]]  # (id, name)
    fields: list[str]
    allow_pseudonyms: bool
    needs_passphrase: bool


@dataclass
class Submission:
    """A supporter's form, as the web layer read it (strings and bytes only)."""

    ui_lang: str
    name: str
    consent: bool
    signature_kind: str  # drawn | typed | upload
    signature_data: bytes = b""  # PNG/JPEG bytes (drawn: decoded from the canvas; upload: the file)
    typed_signature: str = ""
    pseudonym: str = ""
    use_pseudonym: bool = False
    real_name: str = ""
    city: str = ""
    title: str = ""
    passphrase: str = ""
    translation_lang: str | None = None


@dataclass(frozen=True)
class Signed:
    """What the supporter takes home: the sealed PDF, the receipt. Nothing of it is kept."""

    drive: str
    pdf: bytes
    filename: str
    receipt: str
    commitment: str
    text_sha256: str


_WORKER: dict[str, Any] = {}


def _worker_init(keys: str, passphrase: str, timestamp_url: str | None) -> None:
    from campaign import pdf

    _WORKER["renderer"] = pdf.PdfRenderer()
    _WORKER["key"] = pdf.load_seal(Path(keys), passphrase)
    _WORKER["timestamp_url"] = timestamp_url


def _worker_warm(seconds: float) -> None:
    time.sleep(seconds)


def _render_job(job: tuple[Any, Any, Any, Any, str]) -> bytes:
    from campaign import pdf

    head, content, person, proof, org = job
    return pdf.render_signed(
        _WORKER["renderer"],
        head,
        content,
        person,
        _WORKER["key"],
        timestamp_url=_WORKER["timestamp_url"],
        proof=proof,
        sealed_by=org,
    )


class _InlineExecutor:
    """Renders in the calling thread, one at a time (no worker processes: tests, demos).
    The renderer and seal live in this process's ``_WORKER``, which another inline
    service's close() clears: they are loaded again when missing."""

    def __init__(self, *init: Any) -> None:
        self._lock = threading.Lock()
        self._init = init
        _worker_init(*init)

    def run(self, job: tuple[Any, Any, Any, Any, str]) -> bytes:
        with self._lock:
            if "key" not in _WORKER:
                _worker_init(*self._init)
            return _render_job(job)


class _Limiter:
    """At most ``rate`` submissions per minute per drive (no per-person state)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._times: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def take(self, drive: str, rate: int) -> bool:
        now = self._clock()
        with self._lock:
            times = self._times.setdefault(drive, deque())
            while times and times[0] <= now - 60:
                times.popleft()
            if len(times) >= rate:
                return False
            times.append(now)
            return True


class SigningService:
    """The supporters' page's only door into the core (one per `campaign serve`).

    Holds the store (one connection, used under a lock), the organisation's seal (in
    worker processes that render and seal PDFs) and a per-drive rate limiter. It never
    loads the names key's private half, and no method accepts a network identifier.
    """

    def __init__(
        self,
        ws: Workspace,
        passphrase: str,
        *,
        processes: int | None = None,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        from campaign import pdf
        from campaign.api import _letterhead, load_registry

        self.ws = ws
        self.warnings: list[str] = []  # for the organiser (never a name or an address)
        self._on_warning = on_warning
        self._leftover = False  # a withdrawal's bytes may still be in the WAL: scrub again later
        self.organisation = ws.settings.sender.name
        pdf.load_seal(_keys(ws), passphrase)  # a wrong passphrase fails here, before the server starts
        self.fingerprint = root_fingerprint_hex(ws)
        self.head = _letterhead(ws)
        registry = load_registry(ws)
        self._recipients = {r.id: r for r in registry.recipients}
        self._store = _store(ws)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, dict[str, Any] | None, list[Any]]] = {}
        self._limiter = _Limiter()
        self.processes = (os.cpu_count() or 1) if processes is None else processes
        self._pool: Executor | None = None
        self._inline: _InlineExecutor | None = None
        if self.processes > 0:
            import multiprocessing

            self._pool = ProcessPoolExecutor(
                max_workers=self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
                initargs=(str(_keys(ws)), passphrase, ws.settings.pdf.timestamp_url),
            )
            for _ in range(self.processes):  # start and initialise every worker now, not on the first supporter
                self._pool.submit(_worker_warm, 0.3)
        else:
            self._inline = _InlineExecutor(str(_keys(ws)), passphrase, ws.settings.pdf.timestamp_url)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        else:
            _WORKER.clear()
        with self._lock:
            self._store.close()

    # -- reading ------------------------------------------------------------------

    def _drive(self, token: str) -> tuple[dict[str, Any], list[Any]]:
        from campaign.store import signing as sstore

        if not signing.is_token(token):
            raise SubmissionError("not-found", status=404)
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached is None or now - cached[0] > 2.0:
            with self._lock:
                drive = sstore.find_drive(self._store, token=token)
                texts = sstore.drive_texts(self._store, drive["id"]) if drive else []
            cached = (now, drive, texts)
            self._cache[token] = cached
        _, drive, texts = cached
        if drive is None:
            raise SubmissionError("not-found", status=404)
        return drive, texts

    @staticmethod
    def _is_open(drive: dict[str, Any]) -> bool:
        from campaign.store.sql import iso

        return drive["status"] == "open" and not (drive["closes_at"] and drive["closes_at"] <= iso(_now_ms()))

    def page(self, token: str, ui_lang: str) -> PageView:
        """The drive behind a link, for the page. Raises SubmissionError("not-found")."""
        drive, texts = self._drive(token)
        main = TextView(drive["text_lang"], drive["subject"], drive["body_html"], drive["text_sha256"])
        translation = None
        if ui_lang != drive["text_lang"]:
            for text in texts:
                if text.lang == ui_lang:
                    translation = TextView(text.lang, text.subject, text.body_html, text.text_sha256)
        return PageView(
            drive=drive["name"],
            organisation=self.organisation,
            open=self._is_open(drive),
            closes_at=drive["closes_at"],
            text=main,
            translation=translation,
            institutions=[
                (i, self._recipients[i].name_in(ui_lang) if i in self._recipients else i) for i in drive["institutions"]
            ],
            fields=list(drive["fields"]),
            allow_pseudonyms=drive["allow_pseudonyms"],
            needs_passphrase=bool(drive["passphrase_hash"]),
        )

    # -- signing ------------------------------------------------------------------

    def submit(self, token: str, form: Submission) -> Signed:
        """Check the form, seal the supporter's PDF, then store the signature (in that
        order: a failure stores nothing). Raises SubmissionError with a code."""
        from campaign import pdf
        from campaign.signing.sealing import public_from_text, seal_name
        from campaign.store import signing as sstore

        drive, texts = self._drive(token)
        if not self._is_open(drive):
            raise SubmissionError("closed", status=410)
        if drive["passphrase_hash"] and not check_passphrase(drive["passphrase_hash"], form.passphrase):
            raise SubmissionError("passphrase-wrong", field="passphrase", status=403)
        ui_lang = form.ui_lang if form.ui_lang in UI_LANGS else "en"
        pseudonymous = bool(form.use_pseudonym)
        sealed = None
        if pseudonymous:
            if not drive["allow_pseudonyms"]:
                raise SubmissionError("pseudonyms-not-allowed", field="pseudonym", status=422)
            shown = clean_text(form.pseudonym, "pseudonym", limit=signing.MAX_NAME, required=True)
            # The real name is optional: given in its own field (or the name field), it is
            # sealed to the names key; not given, nothing but the pseudonym is stored.
            real = clean_text(form.real_name, "real_name", limit=signing.MAX_NAME, required=False)
            real = real or clean_text(form.name, "name", limit=signing.MAX_NAME, required=False)
            if real:
                sealed = seal_name(public_from_text(drive["names_public_key"]), real)
        else:
            shown = clean_text(form.name, "name", limit=signing.MAX_NAME, required=True)
        city = clean_text(form.city, "city", limit=MAX_FIELD, required=False) if "city" in drive["fields"] else ""
        title = clean_text(form.title, "title", limit=MAX_FIELD, required=False) if "title" in drive["fields"] else ""
        if not form.consent:
            raise SubmissionError("consent-missing", field="consent")
        image: bytes | None = None
        typed: str | None = None
        if form.signature_kind in ("drawn", "upload"):
            if not form.signature_data:
                raise SubmissionError("signature-missing", field="signature")
            try:
                image = pdf.normalise_signature(form.signature_data)
            except PdfError as err:
                raise SubmissionError(
                    "signature-" + err.message, field="signature", status=413 if err.message == "too-large" else 422
                ) from None
        elif form.signature_kind == "typed":
            typed = clean_text(form.typed_signature or shown, "typed_signature", limit=signing.MAX_NAME, required=True)
        else:
            raise SubmissionError("signature-missing", field="signature")
        translation = None
        if form.translation_lang:
            translation = next((t for t in texts if t.lang == form.translation_lang), None)
        if not self._limiter.take(drive["name"], int(drive["rate_per_minute"])):
            raise SubmissionError("busy", status=429)

        salt = signing.new_salt()
        commit = signing.commitment(salt, shown, drive["text_sha256"])
        receipt = signing.Receipt(drive["name"], salt, commit)
        recipient = self._recipients.get(drive["reference_recipient"])
        content = pdf.LetterContent(
            lang=drive["text_lang"],
            subject=drive["subject"],
            body_html=drive["body_html"],
            date_text=drive["date_text"],
            reference=drive["reference"],
            recipient_name=recipient.name_in(drive["text_lang"]) if recipient else drive["reference_recipient"],
            postal_address=_postal(recipient, drive["text_lang"]),
        )
        person = pdf.Signer(shown, title or None, city or None, signature_png=image, typed_signature=typed)
        payload = signing.proof_payload(
            drive=drive["name"], letter_sha256=drive["text_sha256"], key_fingerprint=self.fingerprint, commitment=commit
        )
        lines = pdf.proof_lines(drive["text_lang"], self.organisation, drive["text_sha256"], commit, self.fingerprint)
        proof = pdf.Proof(payload=payload, lines=lines, text=drive["text"])
        job = (self.head, content, person, proof, self.organisation)
        try:
            if self._pool is not None:
                data = self._pool.submit(_render_job, job).result()
            else:
                assert self._inline is not None
                data = self._inline.run(job)
        except CampaignError:
            raise SubmissionError("server-error", status=500) from None
        signature = sstore.NewSignature(
            commitment=commit,
            name=shown,
            pseudonymous=pseudonymous,
            sealed_name=sealed,
            title=title or None,
            city=city or None,
            signature_png=image,
            typed_signature=typed,
            ui_lang=ui_lang,
            text_lang=drive["text_lang"],
            text_sha256=drive["text_sha256"],
            translation_lang=translation.lang if translation else None,
            translation_sha256=translation.text_sha256 if translation else None,
            consented_to=list(drive["institutions"]),
        )
        try:
            with self._lock:
                sstore.add_signature(self._store, drive["id"], signature, _now_ms())
                self._scrub_again()
        except SigningError as err:
            if err.message == "closed":
                self._cache.pop(token, None)
                raise SubmissionError("closed", status=410) from None
            raise
        return Signed(
            drive["name"], data, f"{drive['name']}-signed-letter.pdf", receipt.text(), commit, drive["text_sha256"]
        )

    def withdraw(self, token: str, receipt_text: str) -> None:
        """Delete the signature a receipt belongs to, while the drive is open.
        Raises SubmissionError ("receipt-invalid", "receipt-unknown", "closed")."""
        from campaign.store import signing as sstore

        drive, _ = self._drive(token)
        try:
            receipt = signing.parse_receipt(receipt_text)
        except SigningError:
            raise SubmissionError("receipt-invalid", field="receipt") from None
        if receipt.drive != drive["name"]:
            raise SubmissionError("receipt-other-drive", field="receipt")
        if not self._is_open(drive):
            raise SubmissionError("closed", status=410)
        try:
            with self._lock:
                deleted = sstore.withdraw(
                    self._store,
                    drive["id"],
                    receipt.commitment,
                    lambda row: receipt.matches(row["name"], row["text_sha256"]),
                )
        except SigningError:
            raise SubmissionError("closed", status=410) from None
        if not deleted.count:
            raise SubmissionError("receipt-unknown", field="receipt", status=404)
        self._leftover = deleted.leftover is not None
        if deleted.leftover:
            self._warn(f"a withdrawal: {deleted.leftover}; tried again after the next signature, erased at the latest "
                       "when the last program using the workspace stops")  # fmt: skip

    def _warn(self, text: str) -> None:
        self.warnings.append(text)
        if self._on_warning is not None:
            self._on_warning(text)

    def _scrub_again(self) -> None:
        """After a write: erase what an earlier withdrawal left in the WAL (caller holds the lock)."""
        from campaign.store import signing as sstore

        if self._leftover and sstore.scrub(self._store) is None:
            self._leftover = False
            self._warn("the write-ahead log is checkpointed now: the withdrawn signature's bytes are erased")


def _postal(recipient: Any, lang: str) -> str | None:
    """The postal address in ``lang``, without a first line that repeats the name."""
    address = recipient.address_in(lang) if recipient is not None else None
    if not address:
        return None
    lines = address.strip().splitlines()
    if lines and " ".join(lines[0].split()).casefold() == " ".join(recipient.name_in(lang).split()).casefold():
        return "\n".join(lines[1:]) or None
    return str(address)


def clean_text(value: str, field_name: str, *, limit: int, required: bool) -> str:
    """A supporter's text field: NFC, trimmed, one line, no control characters or markup.
    Raises SubmissionError("<field>-…")."""
    text = unicodedata.normalize("NFC", value or "").strip()
    text = " ".join(text.split(" "))
    if not text:
        if required:
            raise SubmissionError("empty", field=field_name)
        return ""
    if len(text) > limit:
        raise SubmissionError("too-long", field=field_name, detail=str(limit))
    for char in text:
        if char in _JOINERS:
            continue
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES or char in "\t\n\r\x0b\x0c\x85":
            raise SubmissionError("control-characters", field=field_name)
    if any(c in text for c in "<>"):
        raise SubmissionError("markup", field=field_name)
    return text


def signing_service(
    ws: Workspace, passphrase: str, *, processes: int | None = None, on_warning: Callable[[str], None] | None = None
) -> SigningService:
    """The service `campaign serve` hands to the web layer; ``on_warning`` gets lines for
    the organiser. Raises PdfError (passphrase)."""
    if not (_keys(ws) / "seal.key.pem").exists():
        raise SigningError(
            "the signing page seals each supporter's letter, but this workspace has no organisation keys",
            hint="create them once with `campaign keys init`",
        )
    return SigningService(ws, passphrase, processes=processes, on_warning=on_warning)


# ---------------------------------------------------------------------------
# The demo

DEMO_PASSPHRASE = "demo passphrase, not a secret"
"""The demo workspace's key passphrase: printed on purpose, the demo's keys protect nothing."""


def demo_drive(ws: Workspace, letter: str) -> DriveInfo:
    """Keys and an open drive in the demo workspace, so `campaign serve` works after `make demo`."""
    from campaign.api import keys_folder, keys_init, load_registry

    if not (keys_folder(ws) / "root.key.pem").exists():  # the demo may have made them for its sealed PDF
        keys_init(ws, DEMO_PASSPHRASE)
    recipients = load_registry(ws).recipients
    found = registry_mod.get_letter(registry_mod.load_letters(ws.letters_dir), letter)
    first = next((r for r in recipients if "tg" in r.languages), recipients[0])
    lang = drive_texts.letter_language(found, first)
    # A second institution that reads the same text (a drive goes to one language).
    more = [r.id for r in recipients if r is not first and drive_texts.letter_language(found, r) == lang][:1]
    return open_drive(ws, OpenRequest(letter=letter, ids=[first.id, *more], fields=["city"], name="demo"))


# ---------------------------------------------------------------------------
# Serving on the LAN


@dataclass(frozen=True)
class LanSetup:
    host: str
    cert_file: Path
    key_file: Path
    fingerprint: str


def lan_setup(ws: Workspace, host: str | None) -> LanSetup:
    """The LAN address to serve on and the workspace's self-signed certificate for it."""
    import ipaddress
    import socket

    from campaign.signing.tls import lan_certificate

    if host is None:
        candidates: list[str] = []
        with contextlib.suppress(OSError):
            for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
                address = str(info[4][0])
                if not ipaddress.ip_address(address).is_loopback and address not in candidates:
                    candidates.append(address)
        if not candidates:
            raise SigningError(
                "cannot tell this machine's LAN address", hint="give it with --host, e.g. --lan --host 192.168.1.20"
            )
        host = candidates[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"--host {host!r}: give the machine's LAN IP address (e.g. 192.168.1.20)") from None
    ws.ensure_state_dir()
    cert = lan_certificate(ws.state_dir / "lan", [host], organisation=ws.settings.sender.name)
    return LanSetup(host, cert.cert_file, cert.key_file, cert.fingerprint)


def terminal_qr(text: str) -> str:
    """The QR code of a URL, drawn for a terminal."""
    from campaign import pdf

    return pdf.qr_terminal(text)


def fingerprint_words(fingerprint: str) -> str:
    """The first 8 bytes of a certificate fingerprint, for reading aloud at a meeting."""
    return ":".join(fingerprint.split(":")[:8])
