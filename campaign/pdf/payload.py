"""The signing-page proof inside a PDF: the QR payload in the metadata, the embedded text.

Contract: :func:`check_proof` reads ``/CampaignSign`` from the document information and
the embedded ``letter-text.txt`` (pikepdf, no rasterising), and checks them against the
document: the payload parses, the SHA-256 of the embedded text is the payload's ``t``,
and the key fingerprint ``k`` is one of the certificates the signature carries (or a
trusted root). Returns None for a PDF without a payload (an ordinary letter); never
raises for a bad payload: the problems are plain sentences.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from io import BytesIO

import pikepdf

from campaign.errors import SigningError
from campaign.pdf.layout import PAYLOAD_KEY
from campaign.signing import parse_payload


@dataclass(frozen=True)
class ProofCheck:
    payload: str
    fields: dict[str, str]
    ok: bool
    text_sha256: str | None
    problems: list[str] = field(default_factory=list)


def read_proof(data: bytes) -> tuple[str | None, bytes | None]:
    """(payload, embedded canonical text) of a PDF, each None when absent."""
    try:
        with pikepdf.open(BytesIO(data)) as pdf:
            value = pdf.docinfo.get("/" + PAYLOAD_KEY)
            payload = str(value) if value is not None else None
            text = None
            attached = pdf.attachments.get("letter-text.txt")
            if attached is not None:
                text = attached.get_file().read_bytes()
    except (pikepdf.PdfError, ValueError, KeyError, TypeError):
        return None, None
    return payload, text


def check_proof(data: bytes, fingerprints: set[str]) -> ProofCheck | None:
    """Check the payload against the document; ``fingerprints``: SHA-256 (hex, lower case)
    of the certificates in the signature and of the trusted roots."""
    payload, text = read_proof(data)
    if payload is None:
        return None
    try:
        fields = parse_payload(payload)
    except SigningError as err:
        return ProofCheck(payload, {}, False, None, [f"The QR payload in the metadata is malformed: {err.message}."])
    problems: list[str] = []
    text_sha = hashlib.sha256(text).hexdigest() if text is not None else None
    if text is None:
        if "commitment" in fields:
            problems.append("The letter's canonical text is not embedded, so its hash cannot be checked.")
    elif text_sha != fields["letter_sha256"]:
        problems.append(
            "The embedded letter text does not match the hash in the QR payload: the text or the payload was changed."
        )
    if fields["key_fingerprint"].lower().replace(":", "") not in fingerprints:
        problems.append("The key fingerprint in the QR payload is not the key that sealed this document.")
    return ProofCheck(payload, fields, not problems, text_sha, problems)
