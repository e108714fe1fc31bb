"""Signing drives: commitments, the Merkle tree over them, receipts, drive exports.

Pure functions, no I/O: the store keeps the rows, ``api.signing`` wires them. The scheme
(docs/ARCHITECTURE.md, "Signing drives"):

- A drive's *canonical text* is the letter exactly as the PDF was made from it (NFC,
  UTF-8); ``letter_sha256`` is its SHA-256.
- Each signature gets a commitment ``SHA-256("campaign-sign-v1" ‖ salt ‖ NFC-UTF-8 name ‖
  letter hash)`` with a fresh 32-byte salt that only the supporter's receipt holds; the
  salt and the letter hash have fixed lengths, so the concatenation is unambiguous.
- The drive's commitments, sorted (so the order says nothing about when anyone signed),
  are the leaves of an RFC 9162 (Certificate Transparency v2) Merkle tree:
  ``leaf = SHA-256(0x00 ‖ commitment)``, ``node = SHA-256(0x01 ‖ left ‖ right)``, the
  empty tree ``SHA-256("")``. Inclusion proofs are RFC 9162 audit paths.
- A receipt is one line of text: ``campaign-sign-v1:<drive>:<salt hex>:<commitment hex>``.
  Whoever holds it can show that the commitment is in the published root, and withdraw
  the signature before the drive closes; the server cannot make it again (it forgot
  the salt).
- The QR payload (on the PDFs and in their metadata) is one line of ``key=value`` pairs:
  see :func:`proof_payload` and :func:`parse_payload`.

What this proves, and what not: a supporter can check that their own signature was
counted and not altered; it does not prove that every leaf is a real person (the
organiser could add leaves); a receipt together with the published root proves that its
holder signed.

Raises :class:`~campaign.errors.SigningError` for malformed receipts, exports and payloads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from campaign.errors import SigningError

DOMAIN = b"campaign-sign-v1"
RECEIPT_PREFIX = "campaign-sign-v1"
EXPORT_FORMAT = "campaign-sign-drive-v1"
PAYLOAD_PREFIX = "CSIGN1"
SALT_BYTES = 32
TOKEN_BYTES = 24  # 192 bits in the link (/s/<token>); the issue asks for at least 128
MAX_NAME = 200

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_DRIVE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22,64}$")


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def sha256_text(text: str) -> str:
    """SHA-256 (hex) of ``text`` as NFC UTF-8: the hash of a canonical letter text."""
    return hashlib.sha256(nfc(text).encode("utf-8")).hexdigest()


def new_token() -> str:
    """An unguessable link token (192 bits, URL-safe)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def is_token(text: str) -> bool:
    return bool(_TOKEN.match(text))


def is_drive_name(text: str) -> bool:
    return bool(_DRIVE_NAME.match(text))


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_BYTES)


def commitment(salt: bytes, name: str, letter_sha256: str) -> str:
    """``SHA-256("campaign-sign-v1" ‖ salt ‖ NFC-UTF-8 name ‖ letter hash)`` in hex."""
    if len(salt) != SALT_BYTES:
        raise SigningError(f"a salt has {SALT_BYTES} bytes, not {len(salt)}")
    if not _HEX64.match(letter_sha256):
        raise SigningError(f"{letter_sha256!r} is not a SHA-256 in hex")
    data = DOMAIN + salt + nfc(name).encode("utf-8") + bytes.fromhex(letter_sha256)
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------
# The Merkle tree (RFC 9162, section 2.1)


def _leaf(commit: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(commit)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _mth(leaves: Sequence[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = _split(n)
    return _node(_mth(leaves[:k]), _mth(leaves[k:]))


def leaves_in_order(commitments: Sequence[str]) -> list[str]:
    """The tree's leaf order: commitments sorted, duplicates refused. Raises SigningError."""
    for commit in commitments:
        if not _HEX64.match(commit):
            raise SigningError(f"{commit[:80]!r} is not a commitment (64 hex digits)")
    ordered = sorted(commitments)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a == b:
            raise SigningError(f"commitment {a} appears twice")
    return ordered


def merkle_root(commitments: Sequence[str]) -> str:
    """The root (hex) of the tree over ``commitments`` (sorted first)."""
    return _mth([_leaf(c) for c in leaves_in_order(commitments)]).hex()


def inclusion_proof(commitments: Sequence[str], commit: str) -> tuple[int, list[str]]:
    """(leaf index, audit path as hex) of ``commit``. Raises SigningError when absent."""
    ordered = leaves_in_order(commitments)
    try:
        index = ordered.index(commit)
    except ValueError:
        raise SigningError("this commitment is not among the drive's signatures") from None
    leaves = [_leaf(c) for c in ordered]
    path: list[bytes] = []

    def walk(m: int, nodes: Sequence[bytes]) -> None:
        n = len(nodes)
        if n <= 1:
            return
        k = _split(n)
        if m < k:
            walk(m, nodes[:k])
            path.append(_mth(nodes[k:]))
        else:
            walk(m - k, nodes[k:])
            path.append(_mth(nodes[:k]))

    walk(index, leaves)
    return index, [p.hex() for p in path]


def verify_inclusion(commit: str, index: int, size: int, path: Sequence[str], root: str) -> bool:
    """RFC 9162 section 2.1.3.2: does the audit path lead from the leaf to ``root``?"""
    if not (_HEX64.match(commit) and _HEX64.match(root)) or not 0 <= index < size:
        return False
    try:
        nodes = [bytes.fromhex(p) for p in path]
    except ValueError:
        return False
    fn, sn = index, size - 1
    r = _leaf(commit)
    for p in nodes:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r.hex(), root)


# ---------------------------------------------------------------------------
# Receipts


@dataclass(frozen=True)
class Receipt:
    """What only the supporter keeps: the drive, the salt and the commitment."""

    drive: str
    salt: bytes = field(repr=False)
    commitment: str

    def text(self) -> str:
        return f"{RECEIPT_PREFIX}:{self.drive}:{self.salt.hex()}:{self.commitment}"

    def matches(self, name: str, letter_sha256: str) -> bool:
        """Whether the commitment is the one for this name and text (constant time)."""
        try:
            expected = commitment(self.salt, name, letter_sha256)
        except SigningError:
            return False
        return hmac.compare_digest(expected, self.commitment)


def parse_receipt(text: str) -> Receipt:
    """A receipt line back into its parts. Raises SigningError naming what is wrong."""
    cleaned = "".join(text.split())
    parts = cleaned.split(":")
    if len(parts) != 4 or parts[0] != RECEIPT_PREFIX:
        raise SigningError(
            "not a signing receipt: it starts with campaign-sign-v1: and has four parts separated by colons",
            hint="copy the whole receipt code, e.g. from the receipt file you downloaded",
        )
    _, drive, salt_hex, commit = parts
    if not is_drive_name(drive):
        raise SigningError(f"receipt: {drive[:80]!r} is not a drive name")
    if not re.fullmatch(r"[0-9a-f]{64}", salt_hex):
        raise SigningError("receipt: the salt is not 64 hex digits (the code is cut or changed)")
    if not _HEX64.match(commit):
        raise SigningError("receipt: the commitment is not 64 hex digits (the code is cut or changed)")
    return Receipt(drive, bytes.fromhex(salt_hex), commit)


# ---------------------------------------------------------------------------
# Drive exports (public: no names) and QR payloads


@dataclass(frozen=True)
class DriveExport:
    """The public record of a closed drive: enough to recompute its root offline."""

    drive: str
    letter: str
    letter_sha256: str
    institutions: list[str]
    closed_at: str
    count: int
    root: str
    key_fingerprint: str
    commitments: list[str]

    def to_json(self) -> str:
        data = {
            "format": EXPORT_FORMAT,
            "drive": self.drive,
            "letter": self.letter,
            "letter_sha256": self.letter_sha256,
            "institutions": self.institutions,
            "closed_at": self.closed_at,
            "count": self.count,
            "root": self.root,
            "key_fingerprint": self.key_fingerprint,
            "tree": "RFC 9162 over the sorted commitments: leaf = SHA-256(0x00 || c), node = SHA-256(0x01 || l || r)",
            "commitment": 'SHA-256("campaign-sign-v1" || salt || NFC UTF-8 name || letter_sha256 bytes)',
            "commitments": leaves_in_order(self.commitments),
        }
        return json.dumps(data, ensure_ascii=False, indent=1) + "\n"


@dataclass(frozen=True)
class ExportCheck:
    export: DriveExport
    computed_root: str
    ok: bool
    problems: list[str]


def parse_export(text: str, *, name: str = "export") -> DriveExport:
    """A drive export (JSON) back into a :class:`DriveExport`. Raises SigningError."""
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as err:
        raise SigningError(
            f"{name}:{err.lineno}: not JSON ({err.msg})", hint="give the file `sign export --format json` wrote"
        ) from None
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise SigningError(f"{name}: not a drive export (format {EXPORT_FORMAT!r} expected)")
    try:
        export = DriveExport(
            drive=str(data["drive"]),
            letter=str(data["letter"]),
            letter_sha256=str(data["letter_sha256"]),
            institutions=[str(i) for i in data["institutions"]],
            closed_at=str(data["closed_at"]),
            count=int(data["count"]),
            root=str(data["root"]),
            key_fingerprint=str(data["key_fingerprint"]),
            commitments=[str(c) for c in data["commitments"]],
        )
    except (KeyError, TypeError, ValueError) as err:
        raise SigningError(f"{name}: the export lacks or mistypes a field ({err})") from None
    return export


def check_export(export: DriveExport) -> ExportCheck:
    """Recompute the root and the count from the commitments."""
    problems: list[str] = []
    try:
        computed = merkle_root(export.commitments)
    except SigningError as err:
        return ExportCheck(export, "", False, [err.message])
    if computed != export.root:
        problems.append(f"the commitments give the root {computed}, not the published {export.root}")
    if len(export.commitments) != export.count:
        problems.append(f"the export lists {len(export.commitments)} commitments but says {export.count}")
    return ExportCheck(export, computed, not problems, problems)


_PAYLOAD_KEYS = {
    "t": "letter_sha256",
    "c": "commitment",
    "k": "key_fingerprint",
    "n": "count",
    "r": "root",
    "d": "drive",
}


def proof_payload(
    *,
    drive: str,
    letter_sha256: str,
    key_fingerprint: str,
    commitment: str | None = None,
    count: int | None = None,
    root: str | None = None,
) -> str:
    """The QR code's text: ``CSIGN1;d=<drive>;t=<text sha256>;c=<commitment>;k=<key>`` on a
    supporter's PDF; ``…;n=<count>;r=<root>;k=<key>`` on a cover page. Data, not a link."""
    parts = [PAYLOAD_PREFIX, f"d={drive}", f"t={letter_sha256}"]
    if commitment is not None:
        parts.append(f"c={commitment}")
    if count is not None:
        parts.append(f"n={count}")
    if root is not None:
        parts.append(f"r={root}")
    parts.append(f"k={key_fingerprint}")
    return ";".join(parts)


def parse_payload(text: str) -> dict[str, str]:
    """The payload's fields by their long names. Raises SigningError for anything else."""
    parts = text.strip().split(";")
    if not parts or parts[0] != PAYLOAD_PREFIX:
        raise SigningError(f"not a signing payload (it starts with {PAYLOAD_PREFIX};)")
    fields: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep or key not in _PAYLOAD_KEYS or _PAYLOAD_KEYS[key] in fields:
            raise SigningError(f"signing payload: unexpected part {part[:40]!r}")
        fields[_PAYLOAD_KEYS[key]] = value
    for needed in ("drive", "letter_sha256", "key_fingerprint"):
        if needed not in fields:
            raise SigningError(f"signing payload: {needed} is missing")
    return fields
