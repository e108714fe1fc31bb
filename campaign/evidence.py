"""Evidence bundles: everything about some letters, bound to the hash chain, checkable offline.

Contract (format ``campaign-evidence/2``; VERIFY.md inside each bundle says it for people):
- A bundle holds ``chain.tsv`` (every event of the log: number, previous hash, hash, and
  for log format 2 the campaign tag, the letter tag and the record digest), the full
  records of the events about its letters (``events/NNNNNN.json``, canonical JSON), the
  bytes of each letter (``letters/<n>/message.eml`` as last sent, or ``queued.eml`` as
  queued), every report about it (``letters/<n>/receipts/<sha256>.eml``), ``VERIFY.md``
  and ``manifest.json``.
- Nothing in the manifest is trusted. :func:`verify_bundle` recomputes it from the events:
  which letters there are, their institution, address, subject and state (by replaying
  their events), which files must exist and what each must hash to. Every file is checked
  against a hash recorded in the chain: a letter against its ``sending`` event (or the
  ``body_sha256`` of its ``queued``/``updated`` event), a report against the
  ``report_sha256`` of its receipt event, an event against its line in ``chain.tsv``.
- Completeness: every format-2 event carries opaque tags of its campaign and letter. A
  bundle states its campaign's tag (a campaign bundle) and each letter's tag; the verifier
  checks that the included events carry those tags and that no event left out (a hash-only
  line of ``chain.tsv``) carries them. Format-1 events have no tags: VERIFY.md and the
  verifier say what such a stretch cannot prove.
- The zip is only a container: a faithful re-zip (other compression, folder entries, one
  enclosing folder) or the unzipped folder verifies the same. The total uncompressed size
  is limited before anything is read, and files are hashed as streams.
- :func:`verify_bundle` never raises: every problem, including a malformed bundle, is one
  line in :attr:`BundleCheck.problems`.
"""

from __future__ import annotations

import bz2
import contextlib
import hashlib
import io
import json
import lzma
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campaign import chain
from campaign.errors import WorkspaceError
from campaign.files import save_private
from campaign.store.integrity import SealTracker
from campaign.store.sql import SqlStore
from campaign.wording import plural

BUNDLE_FORMAT = "campaign-evidence/2"
LEGACY_FORMAT = "campaign-evidence/1"
MAX_BUNDLE_BYTES = 1 << 30  # uncompressed, in total
MAX_FILES = 200_000
MAX_EVENT_BYTES = 1 << 20
MAX_MANIFEST_BYTES = 64 << 20
MAX_CHAIN_BYTES = 512 << 20
CHUNK = 1 << 16

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TAG = re.compile(r"-|[0-9a-f]{32}")
_EVENT_NAME = re.compile(r"events/([0-9]{1,12})\.json")
_LETTER_FILE = re.compile(r"letters/([0-9]{1,9})/(message\.eml|queued\.eml|receipts/([0-9a-f]{64})\.eml)")
REPORT_EVENTS = ("receipt", "read_receipt", "reply", "auto_reply", "receipt_suspicious")

VERIFY_MD = """\
# How to check this evidence bundle

This bundle was exported by `campaign`, a tool that sends advocacy letters and keeps an
append-only, hash-chained log of everything that happened to them. Nothing in it needs to
be taken on trust: every file is bound to the log's chain of hashes, and `manifest.json` is
only a summary that a checker recomputes from the events.

- `letters/<n>/message.eml`: the exact bytes last handed to the mail server for letter n
  (`queued.eml` instead when it was never sent, or was replaced after its last attempt);
- `letters/<n>/receipts/<sha256>.eml`: every delivery report, read receipt or reply about
  it, exactly as received (the name is the SHA-256 of the file);
- `events/<seq>.json`: every log event about these letters (and, for a whole campaign,
  about the campaign), each in the exact form its hash covers;
- `chain.tsv`: the whole chain of the log, one line per event, including events about
  other letters, whose content is not included;
- `manifest.json`: a summary (letters, their state, files and their SHA-256, the chain head).

## Check it with the tool

    campaign log verify --bundle bundle.zip        # or the unzipped folder

It recomputes everything below and prints the chain head. Compare that head with one you
received earlier by another way (a message, a note, a published post): if they match,
nothing in the log up to that point was changed since.

## What the chain proves

Each line of `chain.tsv` is one event. A line with 3 fields (number, previous hash, hash)
is in log format 1:

    hash = SHA-256( previous_hash + "\\n" + event_json )

A line with 6 fields (number, previous hash, hash, campaign tag, letter tag, record digest)
is in log format 2:

    record_digest = SHA-256( event_json )
    hash = SHA-256( previous_hash + "\\n" + "campaign-log/2 " + campaign_tag + " " + letter_tag
                    + "\\n" + record_digest )

The first event's previous hash is 64 zeros. Changing, removing or inserting any event
changes every hash after it, so the last hash (the *chain head*) stands for the whole log.

The tags are opaque: an HMAC of the campaign's name and of the letter's Message-ID under
a secret key that stays with the organisation (`-` when an event has none). They reveal
nothing about other campaigns, but because they are inside each hash they cannot be
changed: an event about this bundle's campaign or letters that was left out of the bundle
still shows its tag on its line in `chain.tsv`. `manifest.json` states the tags
(`scope.campaign_tag`, each letter's `message_tag`); the included events prove they are
the right ones.

A `sending` event records the SHA-256 of the exact bytes sent and a `sent` event what the
receiving server answered; `queued` and `updated` events record the SHA-256 of the exact
bytes stored (`body_sha256`); receipt events record the SHA-256 of each report.

This proves what the organisation's log recorded and that it was not altered afterwards,
relative to a chain head you hold. It does not prove that the organisation's clock was
right or that a server told the truth: delivery reports are the receiving servers' own
words.

### What a stretch in log format 1 cannot prove

Events written before the log moved to format 2 (lines with 3 fields) carry no tags. For
those events the bundle cannot prove that it is complete: an event about these letters
left out of the bundle looks like an event about another campaign. A letter queued then
is bound to the log by the hash of its text (`content_sha256`), not of its exact stored
bytes, so a letter with an attached PDF that was never sent cannot be checked byte for
byte. The checker names such letters and stretches instead of passing over them.

## Check it by hand (a shell with sha256sum, and Python)

1. The chain. For each format-2 line of `chain.tsv` (fields separated by tabs):

       printf '%s\\ncampaign-log/2 %s %s\\n%s' PREV CTAG MTAG DIGEST | sha256sum

   must print the line's hash. Each line's previous hash must be the hash of the line
   before, numbers must run 1, 2, 3 … without gaps, and the last hash is the chain head.
   For a format-1 line: `{ printf '%s\\n' PREV; cat events/000123.json; } | sha256sum`.

2. Each event file: `sha256sum events/000123.json` must equal the record digest on line
   123 (format 2). The JSON is canonical: keys sorted, no spaces, UTF-8, no newline at the end.

3. Completeness: every line whose campaign tag is `scope.campaign_tag` in manifest.json
   (a campaign bundle), and every line whose letter tag is one of the letters'
   `message_tag`, must have its `events/<seq>.json` in the bundle.

4. The letter: `sha256sum letters/1/message.eml` must equal the `sha256` of the letter's
   last `sending` event (for `queued.eml`: the `body_sha256` of its last `queued` or
   `updated` event); each receipt file's SHA-256 must equal the `report_sha256` of a
   receipt event of that letter.

A few lines of Python do steps 1 and 2 for every line:

    import hashlib
    prev = "0" * 64
    for line in open("chain.tsv"):
        f = line.rstrip("\\n").split("\\t")
        assert f[1] == prev
        if len(f) == 6:
            header = f"campaign-log/2 {f[3]} {f[4]}"
            h = hashlib.sha256(f"{f[1]}\\n{header}\\n{f[5]}".encode()).hexdigest()
            assert h == f[2], f[0]
            try:
                data = open(f"events/{int(f[0]):06d}.json", "rb").read()
                assert hashlib.sha256(data).hexdigest() == f[5], f[0]
            except FileNotFoundError:
                pass  # an event about other letters
        prev = f[2]
    print("chain head", prev)
"""


# ---------------------------------------------------------------------------
# Replaying a letter's events


@dataclass
class LetterView:
    """One letter as its events tell it."""

    message_id: str
    events: list[int] = field(default_factory=list)
    campaign: str | None = None
    letter: str | None = None
    recipient: str | None = None
    email: str | None = None
    subject: str | None = None
    status: str | None = None
    message_tag: str | None = None
    reports: list[str] = field(default_factory=list)
    seal: SealTracker = field(default_factory=SealTracker)
    legacy_events: int = 0
    _before_sending: str | None = None

    def feed(self, seq: int, kind: str, campaign: str | None, data: dict[str, Any]) -> None:
        self.events.append(seq)
        if kind in ("queued", "updated", "released", "sending"):
            self.seal.feed(kind, data)
        if kind == "queued":
            self.campaign = campaign
            for name in ("letter", "recipient", "email", "subject"):
                value = data.get(name)
                setattr(self, name, value if isinstance(value, str) else None)
            self.status = "queued"
        elif kind == "updated":
            subject = data.get("subject")
            if isinstance(subject, str):
                self.subject = subject
        elif kind == "sending":
            self._before_sending = self.status
            self.status = "sending"
        elif kind in ("sent", "deferred", "failed", "held"):
            self.status = kind
        elif kind in ("outcome_unknown", "crash_recovered"):
            self.status = "deferred"
        elif kind == "not_sent":
            self.status = self._before_sending or "queued"
        elif kind == "released":
            self.status = "queued"
        elif kind == "receipt":
            outcome = data.get("outcome")
            if outcome in ("delivered", "relayed", "bounced") and "unchanged" not in data:
                self.status = str(outcome)
        if kind in REPORT_EVENTS:
            sha = data.get("report_sha256")
            if isinstance(sha, str) and _HEX64.fullmatch(sha) and sha not in self.reports:
                self.reports.append(sha)

    @property
    def sent_bytes(self) -> bool:
        """Whether the bundle holds the bytes of its last attempt (else the bytes as queued)."""
        seal = self.seal.seal()
        return seal.last_sending is not None and not seal.updated_after

    @property
    def expected_sha256(self) -> str | None:
        seal = self.seal.seal()
        return seal.last_sending if self.sent_bytes else seal.body_sha256

    def summary(self, folder: str) -> dict[str, Any]:
        return {
            "folder": folder,
            "message_id": self.message_id,
            "campaign": self.campaign,
            "letter": self.letter,
            "recipient": self.recipient,
            "email": self.email,
            "subject": self.subject,
            "status": self.status,
            "message_tag": self.message_tag,
            "events": list(self.events),
            "receipts": list(self.reports),
        }

    def files(self, folder: str) -> list[str]:
        names = [f"{folder}/{'message.eml' if self.sent_bytes else 'queued.eml'}"]
        names += [f"{folder}/receipts/{sha}.eml" for sha in self.reports]
        return names


# ---------------------------------------------------------------------------
# Export


@dataclass
class ExportResult:
    path: Path
    letters: int
    events: int
    head: str
    scope: str
    warnings: list[str] = field(default_factory=list)
    left_out: int = 0  # letters about a case, left out without --with-case-letters


def _zip_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    """A zip with no compression, fixed timestamps and modes: the same entries always give
    the same bytes (a re-export of the same state is byte-identical)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as bundle:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o600 << 16
            bundle.writestr(info, data)
    return buffer.getvalue()


def export_bundle(
    store: SqlStore,
    out: Path,
    *,
    message_ids: list[str],
    db_status: dict[str, str],
    campaign: str | None,
    created_at: str,
    force: bool = False,
) -> ExportResult:
    """Write an evidence bundle for the letters ``message_ids`` (all of ``campaign`` when
    given); ``db_status`` is each letter's state in the store, compared with its events.

    Raises WorkspaceError when ``out`` exists (without ``force``) or cannot be written.
    """
    if out.exists() and not force:
        raise WorkspaceError(f"{out}: already exists; nothing was written", hint="choose another -o, or add --force")
    wanted = set(message_ids)
    lines: list[str] = []
    events: list[tuple[int, bytes]] = []
    views: dict[str, LetterView] = {}
    campaign_tags: set[str] = set()
    head = (0, chain.GENESIS)
    last = 0
    while True:
        rows = store.raw_events(after_seq=last, limit=5000)
        if not rows:
            break
        for row in rows:
            seq = int(row["seq"])
            version = int(row.get("format") or chain.FORMAT_V1)
            data = json.loads(row["data"])
            rec = chain.record(row["time"], row["kind"], row["message"], row["campaign"], data)
            ctag, mtag = row.get("ctag") or chain.NO_TAG, row.get("mtag") or chain.NO_TAG
            if version == chain.FORMAT_V2:
                lines.append(f"{seq}\t{row['prev_hash']}\t{row['hash']}\t{ctag}\t{mtag}\t{chain.record_digest(rec)}")
            else:
                lines.append(f"{seq}\t{row['prev_hash']}\t{row['hash']}")
            message = row["message"]
            if message in wanted or (campaign is not None and row["campaign"] == campaign):
                events.append((seq, chain.canonical_json(rec).encode("utf-8")))
                if campaign is not None and row["campaign"] == campaign and version == chain.FORMAT_V2:
                    campaign_tags.add(ctag)
                if message in wanted:
                    view = views.setdefault(message, LetterView(message))
                    view.feed(seq, str(row["kind"]), row["campaign"], data)
                    if version == chain.FORMAT_V2:
                        view.message_tag = mtag
                    else:
                        view.legacy_events += 1
            head = (seq, str(row["hash"]))
        last = int(rows[-1]["seq"])
    warnings: list[str] = []
    scope: dict[str, Any] = {"kind": "letters", "campaign": None, "campaign_tag": None}
    if campaign is not None:
        key = store.known_key()
        tag = chain.tag(key, "campaign", campaign) if key is not None else None
        if len(campaign_tags) == 1:
            tag = next(iter(campaign_tags))
        elif len(campaign_tags) > 1:
            warnings.append(f"the events of campaign {campaign} carry {len(campaign_tags)} different tags")
        scope = {"kind": "campaign", "campaign": campaign, "campaign_tag": tag}
    entries: list[tuple[str, bytes]] = []
    files: dict[str, str] = {}

    def put(name: str, data: bytes) -> None:
        entries.append((name, data))
        files[name] = chain.sha256_hex(data)

    ordered = sorted(views.values(), key=lambda v: v.events[0])
    missing = [m for m in message_ids if m not in views]
    if missing:
        warnings.append(
            f"{plural(len(missing), 'letter')} {'has' if len(missing) == 1 else 'have'} no events in the log: "
            f"{', '.join(missing[:3])}"
        )
    summaries = []
    for number, view in enumerate(ordered, start=1):
        folder = f"letters/{number}"
        row_id, prefix, body = store.stored_bytes(view.message_id)
        name = f"{folder}/{'message.eml' if view.sent_bytes else 'queued.eml'}"
        put(name, (prefix or b"") + body if view.sent_bytes else body)
        for sha in view.reports:
            raw = store.blob(sha)
            if raw is None:
                warnings.append(f"{folder}: the report {sha[:12]}… named by its events is not in the store")
            else:
                put(f"{folder}/receipts/{sha}.eml", raw)
        if db_status.get(view.message_id) not in (None, view.status):
            warnings.append(
                f"message {row_id} ({view.message_id}): the database says {db_status[view.message_id]}, "
                f"its events say {view.status}; the bundle follows the events"
            )
        summaries.append(view.summary(folder))
    for seq, data in events:
        put(f"events/{seq:06d}.json", data)
    put("chain.tsv", ("\n".join(lines) + "\n").encode("ascii"))
    entries.append(("VERIFY.md", VERIFY_MD.encode("utf-8")))
    manifest = {
        "format": BUNDLE_FORMAT,
        "created_at": created_at,
        "head": {"seq": head[0], "hash": head[1]},
        "scope": scope,
        "letters": summaries,
        "files": files,
    }
    entries.append(("manifest.json", _manifest_bytes(manifest)))
    save_private(out, _zip_bytes(entries), replace=force, hint="choose another -o, or add --force")
    return ExportResult(out, len(ordered), len(events), head[1], scope["kind"], warnings)


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True).encode("utf-8")


# ---------------------------------------------------------------------------
# Verification


@dataclass
class BundleCheck:
    ok: bool
    letters: int = 0
    events: int = 0
    head: str | None = None
    scope: str | None = None  # "campaign NAME" or "letters"
    problems: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)


class _Stop(Exception):
    """A problem after which nothing else can be checked."""


_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    NotImplementedError,
    RuntimeError,
    zlib.error,
    lzma.LZMAError,
    struct.error,
    UnicodeError,
)
_ = bz2  # bzip2 entries are read through zipfile (its decompressor raises OSError/ValueError)


class _Container:
    """The files of a bundle by name, read with limits (a zip or a folder)."""

    def __init__(self, names: dict[str, Any], sizes: dict[str, int]) -> None:
        self.names = names
        self.sizes = sizes
        self.notes: list[str] = []
        self._digests: dict[str, str] = {}

    def open(self, name: str) -> Any:
        raise NotImplementedError

    def read(self, name: str, limit: int) -> bytes:
        size = self.sizes[name]
        if size > limit:
            raise _Stop(f"{name}: {size:,} bytes, more than a bundle's {limit:,}: not a campaign evidence bundle")
        out = bytearray()
        with self.open(name) as handle:
            while chunk := handle.read(CHUNK):
                out += chunk
                if len(out) > size:
                    raise _Stop(f"{name}: longer than the bundle says: the bundle is damaged")
        return bytes(out)

    def sha256(self, name: str) -> str:
        cached = self._digests.get(name)
        if cached is not None:
            return cached
        self._digests[name] = found = self._sha256(name)
        return found

    def _sha256(self, name: str) -> str:
        digest = hashlib.sha256()
        size = self.sizes[name]
        seen = 0
        with self.open(name) as handle:
            while chunk := handle.read(CHUNK):
                seen += len(chunk)
                if seen > size:
                    raise _Stop(f"{name}: longer than the bundle says: the bundle is damaged")
                digest.update(chunk)
        return digest.hexdigest()


class _Zip(_Container):
    def __init__(self, archive: zipfile.ZipFile, names: dict[str, Any], sizes: dict[str, int]) -> None:
        super().__init__(names, sizes)
        self.archive = archive

    def open(self, name: str) -> Any:
        return self.archive.open(self.names[name])


class _Folder(_Container):
    def open(self, name: str) -> Any:
        return open(self.names[name], "rb")  # noqa: SIM115 - closed by the caller's with


def _clean_name(raw: str) -> str | None:
    """A bundle-relative name, or None for a folder entry; raises _Stop for an unsafe one."""
    name = raw.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    if not name or name.endswith("/"):
        return None
    parts = name.split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts) or ":" in parts[0]:
        raise _Stop(f"{raw!r}: an unsafe file name in the bundle: not a campaign evidence bundle")
    return name


_IGNORED = re.compile(r"(^|/)(__MACOSX/.*|\.DS_Store|Thumbs\.db|desktop\.ini)$")


def _strip_folder(names: dict[str, Any], sizes: dict[str, int]) -> tuple[dict[str, Any], dict[str, int]]:
    """Files zipped together with their enclosing folder (``zip -r b.zip bundle/``)."""
    if "manifest.json" in names:
        return names, sizes
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1:
        top = next(iter(tops))
        if f"{top}/manifest.json" in names:
            cut = len(top) + 1
            return {n[cut:]: v for n, v in names.items()}, {n[cut:]: v for n, v in sizes.items()}
    return names, sizes


def _total_check(sizes: dict[str, int], limit: int, label: str) -> None:
    if len(sizes) > MAX_FILES:
        raise _Stop(
            f"{label}: {plural(len(sizes), 'file')}, more than a bundle's {MAX_FILES:,}: not a campaign evidence bundle"
        )
    total = sum(sizes.values())
    if total > limit:
        raise _Stop(
            f"{label}: unpacks to {total / (1 << 20):,.0f} MiB, more than the {limit / (1 << 20):,.0f} MiB a bundle "
            "may hold: refused without reading it"
        )


@contextlib.contextmanager
def _open_container(path: Path, limit: int) -> Iterator[_Container]:
    if path.is_dir():
        names: dict[str, Any] = {}
        sizes: dict[str, int] = {}
        notes = []
        for folder, dirs, files in os.walk(path, followlinks=False):
            base = Path(folder)
            for entry in sorted(dirs):
                if (base / entry).is_symlink():
                    raise _Stop(f"{(base / entry).relative_to(path)}: a symbolic link: a bundle holds only files")
            for entry in sorted(files):
                full = base / entry
                rel = full.relative_to(path).as_posix()
                if full.is_symlink() or not full.is_file():
                    raise _Stop(f"{rel}: a symbolic link or special file: a bundle holds only files")
                if _IGNORED.search(rel):
                    notes.append(f"{rel}: ignored (added by a file manager)")
                    continue
                names[rel] = full
                sizes[rel] = full.stat().st_size
                if len(names) > MAX_FILES:
                    _total_check(sizes, limit, path.name)
        names, sizes = _strip_folder(names, sizes)
        _total_check(sizes, limit, path.name)
        box: _Container = _Folder(names, sizes)
        box.notes = notes
        yield box
        return
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        if len(infos) > MAX_FILES:
            _total_check({str(i): 0 for i in range(len(infos))}, limit, path.name)
        _check_headers(path, infos)
        names, sizes, notes = {}, {}, []
        for info in infos:
            name = _clean_name(info.filename)
            if name is None or info.is_dir():
                continue
            if _IGNORED.search(name):
                notes.append(f"{name}: ignored (added by a file manager)")
                continue
            if info.flag_bits & 0x1:
                raise _Stop(f"{name}: encrypted: not a campaign evidence bundle")
            if name in names:
                raise _Stop(f"{name}: appears twice in the zip: the bundle was tampered with")
            names[name] = info
            sizes[name] = int(info.file_size)
        names, sizes = _strip_folder(names, sizes)
        _total_check(sizes, limit, path.name)
        zbox = _Zip(archive, names, sizes)
        zbox.notes = notes
        yield zbox


_LOCAL = struct.Struct("<4sHHHHHIIIHH")


def _dos_time(date_time: tuple[int, ...]) -> tuple[int, int]:
    y, mo, d, h, mi, s = date_time
    return (h << 11) | (mi << 5) | (s // 2), ((y - 1980) << 9) | (mo << 5) | d


def _check_headers(path: Path, infos: list[zipfile.ZipInfo]) -> None:
    """Each entry's local header agrees with the central directory (zipfile trusts the
    directory alone): a zip whose two copies of an entry's facts differ was damaged."""
    with path.open("rb") as handle:
        for info in infos:
            name = info.filename
            if info.volume != 0:
                raise _Stop(f"{name}: on another disk of a split zip: the zip is damaged or not a bundle")
            handle.seek(info.header_offset)
            raw = handle.read(_LOCAL.size)
            if len(raw) != _LOCAL.size:
                raise _Stop(f"{name}: its local header is cut off: the zip is damaged")
            sig, _need, flags, method, mtime, mdate, crc, csize, usize, _n, _e = _LOCAL.unpack(raw)
            if sig != b"PK\x03\x04":
                raise _Stop(f"{name}: no local header where the directory says: the zip is damaged")
            if flags != info.flag_bits or method != info.compress_type or (mtime, mdate) != _dos_time(info.date_time):
                raise _Stop(f"{name}: its local header disagrees with the zip's directory: the zip is damaged")
            if not flags & 0x08 and 0xFFFFFFFF not in (csize, usize):
                if (crc, csize, usize) != (info.CRC, info.compress_size, info.file_size):
                    raise _Stop(f"{name}: its local header disagrees with the zip's directory: the zip is damaged")


MAX_REBUILD_BYTES = 64 << 20


def _compare_with_export(path: Path, box: _Zip, check: BundleCheck) -> None:
    """Say whether the zip is byte for byte what `log export` wrote. A faithful re-zip is
    fine (its contents are what was checked), but a person should know it was re-packed."""
    infos = box.archive.infolist()
    if sum(info.file_size for info in infos) > MAX_REBUILD_BYTES:
        return
    rebuilt = _zip_bytes([(info.filename, box.archive.read(info)) for info in infos])
    with path.open("rb") as handle:
        same = handle.read(len(rebuilt) + 1) == rebuilt
    if not same:
        check.caveats.append(
            "the zip is not byte for byte the one campaign exported (it was re-packed, or its zip metadata "
            "changed); everything in it was checked and verifies"
        )


@dataclass(frozen=True)
class _Link:
    seq: int
    prev: str
    hash: str
    version: int
    ctag: str = chain.NO_TAG
    mtag: str = chain.NO_TAG
    digest: str | None = None


def _parse_chain(text: str) -> list[_Link]:
    links: list[_Link] = []
    prev = chain.GENESIS
    seen_v2 = False
    for number, line in enumerate(text.removesuffix("\n").split("\n"), start=1):
        fields = line.split("\t")
        where = f"chain.tsv line {number}"
        if len(fields) not in (3, 6) or fields[0] != str(number):
            raise _Stop(f"{where} is not event {number} (the chain was cut or edited)")
        if not (_HEX64.fullmatch(fields[1]) and _HEX64.fullmatch(fields[2])):
            raise _Stop(f"{where}: not two SHA-256 hashes")
        if fields[1] != prev:
            raise _Stop(f"{where}: event {number} does not follow event {number - 1}")
        if len(fields) == 3:
            if seen_v2:
                raise _Stop(f"{where}: a log-format-1 line after format-2 lines (it was inserted or rewritten)")
            links.append(_Link(number, fields[1], fields[2], chain.FORMAT_V1))
        else:
            ctag, mtag, digest = fields[3], fields[4], fields[5]
            if not (_TAG.fullmatch(ctag) and _TAG.fullmatch(mtag) and _HEX64.fullmatch(digest)):
                raise _Stop(f"{where}: its tags or record digest are malformed")
            if chain.link_v2(fields[1], ctag, mtag, digest) != fields[2]:
                raise _Stop(f"{where}: its hash does not match its tags and record digest (the line was changed)")
            seen_v2 = True
            links.append(_Link(number, fields[1], fields[2], chain.FORMAT_V2, ctag, mtag, digest))
        prev = fields[2]
    if not links:
        raise _Stop("chain.tsv is empty")
    return links


def _event_record(content: bytes, name: str) -> dict[str, Any]:
    try:
        record = json.loads(content)
    except (ValueError, RecursionError):
        raise _Stop(f"{name}: not valid JSON") from None
    types = {"time": (str,), "event": (str,), "message": (str, type(None)), "campaign": (str, type(None))}
    if (
        not isinstance(record, dict)
        or set(record) != {"time", "event", "message", "campaign", "data"}
        or not isinstance(record["data"], dict)
        or any(not isinstance(record[k], t) for k, t in types.items())
    ):
        raise _Stop(f"{name}: not an event record (time, event, message, campaign, data)")
    return record


def verify_bundle(path: Path, *, max_bytes: int = MAX_BUNDLE_BYTES) -> BundleCheck:
    """Check an evidence bundle (a zip or an unzipped folder) offline. Never raises."""
    check = BundleCheck(ok=False)
    try:
        with _open_container(path, max_bytes) as box:
            check.caveats.extend(box.notes)
            _verify(box, check)
            if isinstance(box, _Zip) and not check.problems:
                _compare_with_export(path, box, check)
    except _Stop as stop:
        check.problems.append(str(stop))
    except _READ_ERRORS as err:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        check.problems.append(
            f"{path.name}: cannot be read as an evidence bundle ({reason}): it was damaged or changed"
        )
    except Exception as err:  # the contract: a checker never raises, and a bug must not read as "ok"
        check.problems.append(
            f"{path.name}: the check failed unexpectedly ({type(err).__name__}); the bundle is NOT verified "
            "(please report this as a bug in campaign)"
        )
    check.ok = not check.problems
    return check


def _verify(box: _Container, check: BundleCheck) -> None:
    if "manifest.json" not in box.names:
        raise _Stop("manifest.json is missing: not an evidence bundle")
    try:
        manifest = json.loads(box.read("manifest.json", MAX_MANIFEST_BYTES))
    except (ValueError, RecursionError):
        raise _Stop("manifest.json is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in (BUNDLE_FORMAT, LEGACY_FORMAT):
        raise _Stop("manifest.json is not a campaign evidence manifest")
    legacy = manifest["format"] == LEGACY_FORMAT
    if "chain.tsv" not in box.names:
        raise _Stop("chain.tsv is missing: the bundle cannot be checked")
    try:
        text = box.read("chain.tsv", MAX_CHAIN_BYTES).decode("ascii")
    except UnicodeDecodeError:
        raise _Stop("chain.tsv is not plain ASCII: it was changed") from None
    links = _parse_chain(text)
    by_seq = {link.seq: link for link in links}
    check.head = links[-1].hash
    head = manifest.get("head")
    if not (isinstance(head, dict) and head.get("hash") == check.head and head.get("seq") == len(links)):
        check.problems.append("manifest.json: its chain head is not the last hash of chain.tsv")

    # Events: each bound to its line of the chain.
    records: dict[int, dict[str, Any]] = {}
    broken: set[int] = set()
    for name in sorted(n for n in box.names if n.startswith("events/")):
        match = _EVENT_NAME.fullmatch(name)
        if match is None:
            check.problems.append(f"{name}: not an event file (events/NNNNNN.json)")
            continue
        seq = int(match.group(1))
        if name != f"events/{seq:06d}.json" or seq not in by_seq:
            check.problems.append(f"{name}: event {seq} is not in the chain")
            continue
        content = box.read(name, MAX_EVENT_BYTES)
        link = by_seq[seq]
        if link.version == chain.FORMAT_V2:
            bound = chain.sha256_hex(content) == link.digest
        else:
            bound = hashlib.sha256(link.prev.encode("ascii") + b"\n" + content).hexdigest() == link.hash
        if not bound:
            broken.add(seq)
            check.problems.append(f"{name} does not match its SHA-256 in the chain: it was changed")
            continue
        records[seq] = _event_record(content, name)
    check.events = len(records)

    # Letters, replayed from their events, in the order they were queued.
    views: dict[str, LetterView] = {}
    tags_of_campaign: dict[str, set[str]] = {}
    for seq in sorted(records):
        record, link = records[seq], by_seq[seq]
        campaign, message = record["campaign"], record["message"]
        if link.version == chain.FORMAT_V2:
            if (campaign is None) != (link.ctag == chain.NO_TAG) or (message is None) != (link.mtag == chain.NO_TAG):
                check.problems.append(f"events/{seq:06d}.json: its tags do not fit its campaign and letter")
            if campaign is not None:
                tags_of_campaign.setdefault(campaign, set()).add(link.ctag)
        if message is None:
            continue
        view = views.setdefault(message, LetterView(message))
        view.feed(seq, record["event"], campaign, record["data"])
        if link.version == chain.FORMAT_V2:
            if view.message_tag not in (None, link.mtag):
                check.problems.append(f"events/{seq:06d}.json: its letter tag differs from the letter's other events")
            view.message_tag = link.mtag
        else:
            view.legacy_events += 1
    for name, tags in tags_of_campaign.items():
        if len(tags) > 1:
            check.problems.append(f"the events of campaign {name!r} carry {len(tags)} different campaign tags")
    ordered = sorted(views.values(), key=lambda v: v.events[0])
    check.letters = len(ordered)
    for view in ordered:
        if records[view.events[0]]["event"] != "queued":
            check.problems.append(f"letter {view.message_id}: its queued event is not in the bundle")

    # Completeness: no event left out carries the tags of this bundle's campaign or letters.
    scope = manifest.get("scope") if not legacy else None
    campaign_tag: str | None = None
    if isinstance(scope, dict) and scope.get("kind") == "campaign":
        scope_name, campaign_tag = scope.get("campaign"), scope.get("campaign_tag")
        if not isinstance(scope_name, str) or not (isinstance(campaign_tag, str) and _TAG.fullmatch(campaign_tag)):
            raise _Stop("manifest.json: the scope names no campaign and tag")
        check.scope = f"campaign {scope_name}"
        carried = tags_of_campaign.get(scope_name, set())
        if carried and carried != {campaign_tag}:
            check.problems.append("manifest.json: the campaign tag it states is not the one its events carry")
        for seq, record in records.items():
            if record["campaign"] != scope_name:
                check.problems.append(
                    f"events/{seq:06d}.json: about campaign {record['campaign']!r}, not {scope_name!r}"
                )
                break
        if not carried and any(link.version == chain.FORMAT_V2 for link in links):
            check.caveats.append("no event of this campaign is in log format 2: its completeness cannot be proven")
    elif isinstance(scope, dict) and scope.get("kind") == "letters":
        check.scope = "letters"
    elif not legacy:
        raise _Stop("manifest.json: its scope is neither a campaign nor a set of letters")
    letter_tags = {v.message_tag: v for v in ordered if v.message_tag}
    left_out = 0
    for link in links:
        if link.seq in records or link.seq in broken or link.version != chain.FORMAT_V2:
            continue
        owner = letter_tags.get(link.mtag)
        if campaign_tag is not None and link.ctag == campaign_tag:
            reason = f"event {link.seq} belongs to this campaign (it carries its tag) but is not in the bundle"
        elif owner is not None:
            reason = (
                f"event {link.seq} is about letter {owner.message_id} (it carries its tag) but is not in the bundle"
            )
        else:
            continue
        left_out += 1
        if left_out <= 10:
            check.problems.append(reason + ": it was left out")
    if left_out > 10:
        check.problems.append(f"… and {left_out - 10} more events of this bundle were left out")
    legacy_lines = [link.seq for link in links if link.version == chain.FORMAT_V1]
    if legacy_lines:
        check.caveats.append(
            f"events 1–{legacy_lines[-1]} are in log format 1: for them the bundle cannot prove it is complete "
            "(an event left out looks like another campaign's)"
        )

    # Files: each bound to a hash in the chain; nothing else in the bundle.
    expected: dict[str, str | None] = {"manifest.json": None, "chain.tsv": None, "VERIFY.md": None}
    expected.update({f"events/{seq:06d}.json": None for seq in records})
    summaries = []
    for number, view in enumerate(ordered, start=1):
        folder = f"letters/{number}"
        summaries.append(view.summary(folder))
        names = view.files(folder)
        seal = view.seal.seal()
        letter_file = names[0]
        expected[letter_file] = view.expected_sha256
        for sha in view.reports:
            expected[f"{folder}/receipts/{sha}.eml"] = sha
        if letter_file not in box.names:
            check.problems.append(f"{letter_file} is missing (letter {view.message_id})")
        elif view.expected_sha256 is None:
            check.problems.append(f"{letter_file}: the log records no hash of its bytes")
        elif box.sha256(letter_file) != view.expected_sha256:
            if seal.legacy and not view.sent_bytes:
                check.caveats.append(
                    f"{letter_file}: queued in log format 1 and never sent: the log holds the hash of its text, "
                    "not of these bytes (with an attachment they differ), so they cannot be checked"
                )
            else:
                what = "last sending event" if view.sent_bytes else "queued or updated event"
                check.problems.append(
                    f"{letter_file} is not the message whose hash its {what} recorded: it was changed or replaced"
                )
        for sha in view.reports:
            name = f"{folder}/receipts/{sha}.eml"
            if name not in box.names:
                check.problems.append(f"{name} is missing: the report its receipt event names was left out")
            elif box.sha256(name) != sha:
                check.problems.append(f"{name} is not the report its receipt event recorded: it was changed")
    for name in sorted(set(box.names) - set(expected)):
        if _LETTER_FILE.fullmatch(name):
            if broken:
                continue  # its event is one of the changed ones named above
            check.problems.append(f"{name} is not named by any event of its letter: it does not belong in the bundle")
        else:
            check.problems.append(f"{name} is not part of an evidence bundle")
    for name in ("chain.tsv",):
        if name not in box.names:
            check.problems.append(f"{name} is missing")

    # The manifest must say exactly what the events say.
    if broken:
        return  # the letters cannot be told without those events: the problems above say why
    if legacy:
        check.caveats.append("made by an older campaign (format 1): its manifest was not compared with its events")
        return
    if "VERIFY.md" in box.names and box.read("VERIFY.md", MAX_MANIFEST_BYTES) != VERIFY_MD.encode("utf-8"):
        check.caveats.append(
            "VERIFY.md is not the text this version of campaign writes (it explains; it proves nothing)"
        )
    files = {name: box.sha256(name) for name in expected if name in box.names}
    files.pop("manifest.json", None)
    files.pop("VERIFY.md", None)
    _compare_manifest(manifest, summaries, files, check)


_FIELDS = ("message_id", "campaign", "letter", "recipient", "email", "subject", "status", "message_tag")


def _compare_manifest(
    manifest: dict[str, Any], summaries: list[dict[str, Any]], files: dict[str, str], check: BundleCheck
) -> None:
    said = manifest.get("letters")
    differences: list[str] = []
    if not isinstance(said, list):
        differences.append("manifest.json: its letters are not a list")
        said = []
    if len(said) != len(summaries):
        differences.append(f"manifest.json lists {plural(len(said), 'letter')}; the events are about {len(summaries)}")
    for index, (given, real) in enumerate(zip(said, summaries, strict=False), start=1):
        if not isinstance(given, dict):
            differences.append(f"manifest.json: letter {index} is not an object")
            continue
        for key in (*_FIELDS, "events", "receipts", "folder"):
            if given.get(key) != real[key]:
                differences.append(
                    f"manifest.json says letter {index} ({real['email'] or real['message_id']}) has {key} "
                    f"{_show(given.get(key))}; its events say {_show(real[key])}"
                )
        extra = set(given) - set(real)
        if extra:
            differences.append(
                f"manifest.json: letter {index} has fields no event supports ({', '.join(sorted(map(str, extra)))})"
            )
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        differences.append("manifest.json: its files are not a list of names and hashes")
    elif listed != files:
        wrong = sorted(set(listed) ^ set(files)) or sorted(n for n in files if listed.get(n) != files[n])
        differences.append(
            f"manifest.json: its list of files does not match the bundle ({', '.join(map(str, wrong[:3]))})"
        )
    extra_keys = set(manifest) - {"format", "created_at", "head", "scope", "letters", "files"}
    if extra_keys:
        differences.append(f"manifest.json has fields a bundle does not ({', '.join(sorted(map(str, extra_keys)))})")
    check.problems.extend(differences[:10])
    if len(differences) > 10:
        check.problems.append(f"… and {len(differences) - 10} more differences in manifest.json")


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "…"
