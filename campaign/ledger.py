"""Reading and verifying the append-only, hash-chained event log.

Contract: :func:`verify` recomputes every event's hash from its stored fields (see
``campaign.chain``), checks that each names its predecessor's hash and that the
sequence has no gaps, and that the stored chain head matches the last event (so a
cut-off tail is noticed too). It reports the first broken event by number; it never
changes anything. What the chain proves: that no recorded event was altered,
removed or inserted after the fact *relative to a head hash you kept elsewhere*
(in an exported bundle, a note, a message to a colleague).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campaign import chain
from campaign.store.sql import SqlStore


@dataclass(frozen=True)
class Verification:
    """The outcome of a chain check."""

    ok: bool
    count: int
    head: str
    broken_seq: int | None = None
    reason: str | None = None


def check_event(row: dict[str, Any], expected_seq: int, prev_hash: str) -> str | None:
    """Why the stored event ``row`` does not continue the chain, or None if it does."""
    if int(row["seq"]) != expected_seq:
        return f"expected event {expected_seq}, found {row['seq']} (an event is missing)"
    if row["prev_hash"] != prev_hash:
        return "its previous-hash does not match the event before it"
    try:
        data = json.loads(row["data"])
    except (TypeError, ValueError):
        return "its data is not valid JSON"
    rec = chain.record(row["time"], row["kind"], row["message"], row["campaign"], data)
    try:
        digest = chain.link(prev_hash, rec)
    except ValueError as err:
        return f"its data cannot be hashed: {err}"
    if digest != row["hash"]:
        return "its content does not match its hash (it was changed after it was written)"
    return None


def verify(store: SqlStore, *, batch: int = 5000) -> Verification:
    """Recompute the whole chain. Never raises for a broken chain: it reports it."""
    prev = chain.GENESIS
    count = 0
    last = 0
    while True:
        rows = store.raw_events(after_seq=last, limit=batch)
        if not rows:
            break
        for row in rows:
            reason = check_event(row, count + 1, prev)
            if reason is not None:
                return Verification(False, count, prev, int(row["seq"]), reason)
            prev = row["hash"]
            count += 1
        last = int(rows[-1]["seq"])
    head_seq, head_hash = store.chain_head()
    if head_seq != count or head_hash != prev:
        return Verification(
            False,
            count,
            prev,
            count + 1 if head_seq > count else head_seq,
            f"the chain head says {head_seq} events ending in {head_hash[:12]}…, but the log has {count} "
            f"ending in {prev[:12]}… (events were removed)",
        )
    return Verification(True, count, prev)


# ---------------------------------------------------------------------------
# Evidence bundles

BUNDLE_FORMAT = "campaign-evidence/1"

VERIFY_MD = """\
# How to check this evidence bundle

This bundle was exported by `campaign`, a tool that sends advocacy letters and keeps an
append-only, hash-chained log of everything that happened to them. It contains, for each
letter listed in `manifest.json`:

- `letters/<n>/message.eml`: the exact bytes that were handed to the mail server
  (a letter that was never sent has `queued.eml` instead: the bytes as queued);
- `letters/<n>/receipts/<sha256>.eml`: every delivery report, read receipt or reply that came
  back for it, exactly as received;
- `events/<seq>.json`: every log event about these letters, each in the exact form its hash
  covers;
- `chain.tsv`: the whole chain of the log (number, previous hash, hash of every event,
  including events about other letters, whose content is not included);
- `manifest.json`: what is where, with the SHA-256 of every file, and the chain head.

## What the chain proves

Each event's hash covers the previous event's hash and the event itself:

    hash = SHA-256( previous_hash + "\\n" + event_json )

The first event's previous hash is 64 zeros. Changing, removing or inserting any event
changes every hash after it, so the last hash (the *chain head*, in `manifest.json` and at
the end of `chain.tsv`) stands for the whole log. If you received the chain head earlier by
another way (a message, a note, a published post), and it matches, then nothing in the log
was changed since. A `sending` event records the SHA-256 of the exact bytes sent; a
`sent` event records what the receiving server answered; `receipt` events record the
delivery reports, with the SHA-256 of each report's bytes.

This proves what the organisation's log recorded and that it was not altered afterwards.
It does not by itself prove that the organisation's clock was right or that a server told
the truth; the delivery reports are the receiving servers' own words.

## Check it with the tool

    campaign log verify --bundle bundle.zip

## Check it by hand (Linux or macOS shell)

1. Every file matches the manifest:

       sha256sum letters/1/message.eml        # compare with manifest.json "files"

2. One event: take its previous hash from `chain.tsv` (the line with its number) and:

       { printf '%s\\n' PREVIOUS_HASH; cat events/000123.json; } | sha256sum

   The result must equal the event's hash in `chain.tsv`. The event JSON is canonical:
   keys sorted, no spaces, UTF-8, times in UTC, no trailing newline.

3. The chain: in `chain.tsv` each line's previous hash must equal the line before's hash,
   numbers must run 1, 2, 3 … without gaps, and the last hash must equal the chain head.

4. The letter: `sha256sum letters/1/message.eml` must equal the `sha256` of its `sending`
   event(s); each receipt file's SHA-256 must equal the `report_sha256` of its receipt event.
"""


@dataclass(frozen=True)
class BundleLetter:
    """What the exporter needs about one letter."""

    row_id: int
    message_id: str
    campaign: str
    recipient: str
    email: str
    status: str
    subject: str


@dataclass
class BundleCheck:
    ok: bool
    letters: int = 0
    events: int = 0
    head: str | None = None
    problems: list[str] = field(default_factory=list)


def _zip_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    """A zip with no compression, fixed timestamps and modes: the same entries always give
    the same bytes, so a verifier can rebuild it and notice a change to any single byte."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as bundle:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            bundle.writestr(info, data)
    return buffer.getvalue()


def export_bundle(store: SqlStore, letters: list[BundleLetter], out: Path, *, created_at: str) -> tuple[int, str]:
    """Write an evidence bundle (zip) for ``letters``; returns (events included, chain head)."""
    files: dict[str, str] = {}
    entries: list[tuple[str, bytes]] = []
    summaries: list[dict[str, Any]] = []
    included: set[int] = set()

    def put(name: str, data: bytes) -> None:
        entries.append((name, data))
        files[name] = chain.sha256_hex(data)

    for number, letter in enumerate(letters, start=1):
        folder = f"letters/{number}"
        prefix, body = store.wire_bytes(letter.row_id)
        put(f"{folder}/message.eml" if prefix is not None else f"{folder}/queued.eml", (prefix or b"") + body)
        events = store.events(message=letter.message_id)
        included.update(e.seq for e in events)
        receipts: list[str] = []
        for row in store.receipts_for(letter.row_id):
            sha = row["report_sha256"]
            raw = store.blob(sha) if sha not in receipts else None
            if raw is not None:
                put(f"{folder}/receipts/{sha}.eml", raw)
                receipts.append(sha)
        summaries.append(
            {
                "folder": folder,
                "message_id": letter.message_id,
                "campaign": letter.campaign,
                "recipient": letter.recipient,
                "email": letter.email,
                "status": letter.status,
                "subject": letter.subject,
                "events": [e.seq for e in events],
                "receipts": receipts,
            }
        )
    lines = []
    head = (0, chain.GENESIS)
    last = 0
    while True:
        rows = store.raw_events(after_seq=last, limit=5000)
        if not rows:
            break
        for row in rows:
            lines.append(f"{row['seq']}\t{row['prev_hash']}\t{row['hash']}")
            if int(row["seq"]) in included:
                rec = chain.record(row["time"], row["kind"], row["message"], row["campaign"], json.loads(row["data"]))
                put(f"events/{int(row['seq']):06d}.json", chain.canonical_json(rec).encode("utf-8"))
            head = (int(row["seq"]), str(row["hash"]))
        last = int(rows[-1]["seq"])
    put("chain.tsv", ("\n".join(lines) + "\n").encode("ascii"))
    put("VERIFY.md", VERIFY_MD.encode("utf-8"))
    manifest = {
        "format": BUNDLE_FORMAT,
        "created_at": created_at,
        "head": {"seq": head[0], "hash": head[1]},
        "letters": summaries,
        "files": files,
    }
    entries.append(
        ("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True).encode("utf-8"))
    )
    data = _zip_bytes(entries)
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return len(included), head[1]


def verify_bundle(path: Path) -> BundleCheck:
    """Check an evidence bundle offline; never raises for a bad bundle, reports it."""
    check = BundleCheck(ok=False)
    try:
        with zipfile.ZipFile(path) as bundle:
            names = set(bundle.namelist())
            if "manifest.json" not in names:
                check.problems.append("manifest.json is missing: not an evidence bundle")
                return check
            manifest = json.loads(bundle.read("manifest.json"))
            ordered = [(name, bundle.read(name)) for name in bundle.namelist()]
            contents = dict(ordered)
        if _zip_bytes(ordered) != path.read_bytes():
            check.problems.append("the zip file itself was changed after export (its bytes differ from a clean export)")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, KeyError, zlib.error) as err:
        check.problems.append(f"{path.name}: cannot be read as an evidence bundle ({err}): it was damaged or changed")
        return check
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        check.problems.append("manifest.json is not a campaign evidence manifest")
        return check
    files: dict[str, str] = manifest.get("files", {})
    for name, digest in files.items():
        data = contents.get(name)
        if data is None:
            check.problems.append(f"{name} is listed but missing")
        elif chain.sha256_hex(data) != digest:
            check.problems.append(f"{name} does not match its SHA-256 in the manifest: it was changed")
    for name in sorted(names - set(files) - {"manifest.json"}):
        check.problems.append(f"{name} is not listed in the manifest")
    links: dict[int, tuple[str, str]] = {}
    prev = chain.GENESIS
    for number, line in enumerate(contents.get("chain.tsv", b"").decode("ascii", "replace").splitlines(), start=1):
        parts = line.split("\t")
        if len(parts) != 3 or parts[0] != str(number):
            check.problems.append(f"chain.tsv line {number} is not event {number}")
            break
        if parts[1] != prev:
            check.problems.append(f"chain.tsv: event {number} does not follow event {number - 1}")
            break
        links[number] = (parts[1], parts[2])
        prev = parts[2]
    head = manifest.get("head", {})
    check.head = prev
    if head.get("hash") != prev or head.get("seq") != len(links):
        check.problems.append("the chain head in the manifest is not the last hash of chain.tsv")
    sending: dict[str, set[str]] = {}
    reports: dict[str, set[str]] = {}
    for name in sorted(n for n in names if n.startswith("events/")):
        seq = int(name.split("/")[1].split(".")[0])
        if seq not in links:
            check.problems.append(f"{name}: event {seq} is not in the chain")
            continue
        previous, digest = links[seq]
        payload = previous.encode("ascii") + b"\n" + contents[name]
        if hashlib.sha256(payload).hexdigest() != digest:
            check.problems.append(f"{name}: its content does not match its hash in the chain")
            continue
        event = json.loads(contents[name])
        check.events += 1
        data = event.get("data", {})
        if event.get("event") == "sending" and data.get("sha256"):
            sending.setdefault(event.get("message") or "", set()).add(data["sha256"])
        if data.get("report_sha256"):
            reports.setdefault(event.get("message") or "", set()).add(data["report_sha256"])
    for letter in manifest.get("letters", []):
        check.letters += 1
        folder, mid = letter.get("folder", ""), letter.get("message_id", "")
        sent = contents.get(f"{folder}/message.eml")
        if sent is not None and chain.sha256_hex(sent) not in sending.get(mid, set()):
            check.problems.append(f"{folder}/message.eml is not the message whose hash the log recorded")
        for sha in letter.get("receipts", []):
            if sha not in reports.get(mid, set()):
                check.problems.append(f"{folder}/receipts/{sha}.eml has no receipt event in the log")
    check.ok = not check.problems
    return check
