"""Checking signed letters: intact, trusted, unmodified, in words anyone can follow.

Contract:
- :func:`verify_pdf` validates every signature in a PDF with pyHanko against the trust
  roots it is given (no network: ``allow_fetching=False``) and judges by what matters,
  not by pyHanko's ``valid`` flag alone (which stays true when a signed byte is
  flipped, since the signature over the signed attributes is still good):
  *intact* (the hash of the signed bytes matches and the signature value is good),
  *trusted* (the certificate leads to one of the trust roots, is within its validity
  and allowed to sign), *unmodified* (nothing was appended after the last signature
  except validation data or timestamps; an earlier signature may only be followed by
  further signatures; any DocMDP violation, any drawing, annotation or replaced
  object counts as modified). pyHanko lets an update of the document information
  (Title, Author) or of its XMP metadata pass, and ignores bytes appended after the
  last ``%%EOF``: every byte after the last signed range is therefore examined here
  and named (:attr:`Verification.after_signing`); a changed /Info or XMP, or bytes
  outside any revision, make the letter *modified*. Only validation data (a /DSS
  dictionary, a document timestamp) may follow a signature unremarked.
- The reasons are plain sentences for a non-technical reader, one per failure.
- A bad, forged or tampered signature never raises; only a file that is not a PDF, is
  truncated or cannot be parsed at all raises ``PdfError`` (one line).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from io import BytesIO

from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.misc import PdfError as PyHankoPdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel, SuspiciousModification
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko.sign.validation.status import PdfSignatureStatus, SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from campaign.errors import PdfError
from campaign.pdf.payload import check_proof

_KEY_USAGE = KeyUsageConstraints(key_usage={"digital_signature", "non_repudiation"}, match_all_key_usages=False)


@dataclass(frozen=True)
class Verification:
    """What a reader of the file needs to know about its signature."""

    file: str
    signer: str | None  # certificate holder
    signing_time: dt.datetime | None
    intact: bool  # the signed bytes match the signature
    trusted: bool  # the certificate chains to a trusted root
    unmodified: bool  # nothing but validation data was added after signing
    ok: bool  # all three (and the signing-page proof, when there is one)
    reasons: list[str] = field(default_factory=list)  # plain-language, one per failure
    proof: dict[str, str] | None = None  # the QR payload's fields (letters from the signing page)
    proof_ok: bool | None = None  # None: no payload
    after_signing: list[str] = field(default_factory=list)  # what the bytes after the signed range hold


def _load_roots(trust_roots: list[bytes], names: list[str] | None = None) -> list[asn1_x509.Certificate]:
    roots = []
    for number, data in enumerate(trust_roots, start=1):
        label = names[number - 1] if names and len(names) >= number else f"trusted certificate #{number}"
        try:
            if pem.detect(data):
                blocks = [der for kind, _, der in pem.unarmor(data, multiple=True) if kind == "CERTIFICATE"]
            else:
                blocks = [data]
            for der in blocks:
                cert = asn1_x509.Certificate.load(der)
                cert.native  # noqa: B018 (parses the whole certificate now)
                roots.append(cert)
        except (ValueError, TypeError, EOFError):
            raise PdfError(
                f"{label}: not a certificate (PEM or DER)",
                hint="give the organisation's published root certificate (organisation-root.pem, written by "
                "`campaign keys export-root`)",
            ) from None
        if not blocks:
            raise PdfError(f"{label}: holds no certificate")
    return roots


def check_trust_roots(trust_roots: list[bytes], names: list[str] | None = None) -> None:
    """Raise PdfError (naming it) when a trust root is not a certificate."""
    _load_roots(trust_roots, names)


def _read(data: bytes, name: str) -> PdfFileReader:
    if b"%PDF-" not in data[:1024]:
        raise PdfError(f"{name}: not a PDF file", hint="give the signed letter (.pdf)")
    if b"%%EOF" not in data.rstrip(b"\x00\r\n\t\x0c ")[-1024:]:
        raise PdfError(
            f"{name}: the PDF is truncated (it stops before its end)",
            hint="copy or download the file again",
        )
    try:
        return PdfFileReader(BytesIO(data), strict=False)
    except (PyHankoPdfError, ValueError, KeyError, IndexError, TypeError) as err:
        raise PdfError(f"{name}: the PDF is damaged and cannot be read ({err})") from None


def _holder(status: PdfSignatureStatus | None, sig: EmbeddedPdfSignature) -> str | None:
    cert = status.signing_cert if status is not None else None
    if cert is None:
        try:
            cert = sig.signer_cert
        except (ValueError, KeyError, IndexError, TypeError):
            return None
    names = cert.subject.native
    return str(names.get("common_name") or cert.subject.human_friendly)


def _trust_reason(status: PdfSignatureStatus, holder: str) -> str:
    if status.revoked:
        return f"The certificate of {holder} has been revoked: it may no longer be used to sign."
    cert = status.signing_cert
    now = dt.datetime.now(dt.UTC)
    validity = cert["tbs_certificate"]["validity"]
    not_after = validity["not_after"].native
    not_before = validity["not_before"].native
    if not_after < now:
        return f"The certificate of {holder} expired on {not_after:%Y-%m-%d}."
    if not_before > now:
        return f"The certificate of {holder} is not valid before {not_before:%Y-%m-%d}."
    return (
        f"The certificate of {holder} was not issued by an organisation you trust: it does "
        "not lead to the root certificate you gave, so anyone could have made it."
    )


def _modification_reasons(status: PdfSignatureStatus, *, last: bool) -> list[str]:
    reasons = []
    coverage = status.coverage
    level = status.modification_level
    if coverage is None or coverage < SignatureCoverageLevel.ENTIRE_REVISION:
        reasons.append(
            "The signature does not cover the whole file: parts of it were not signed, "
            "or the file was rewritten after signing."
        )
    if isinstance(status.diff_result, SuspiciousModification):
        reasons.append(
            "Something was added to or replaced in the file after it was signed "
            "(for example text or drawings on a page)."
        )
    elif coverage == SignatureCoverageLevel.ENTIRE_REVISION and level is not None:
        allowed = ModificationLevel.LTA_UPDATES if last else ModificationLevel.FORM_FILLING
        if level > allowed:
            reasons.append(
                {
                    ModificationLevel.FORM_FILLING: (
                        "Form fields were filled in or a signature was added after signing."
                    ),
                    ModificationLevel.ANNOTATIONS: (
                        "Comments, marks or drawings were added to the pages after signing."
                    ),
                }.get(
                    level,
                    "Content was added to or changed in the file after it was signed "
                    "(for example text drawn on a page).",
                )
            )
    if status.docmdp_ok is False and not reasons:
        reasons.append("The signer allowed no changes after signing, but the file was changed.")
    return reasons


_BLANK = b"\r\n\t\x0c\x00 "


def _text(value: object) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _after_signing(reader: PdfFileReader, data: bytes, sig: EmbeddedPdfSignature) -> tuple[list[str], list[str]]:
    """(what the bytes after the last signed range hold, which of those are changes)."""
    try:
        byte_range = [int(x) for x in sig.sig_object["/ByteRange"]]
        signed_end = byte_range[2] + byte_range[3]
    except (KeyError, IndexError, TypeError, ValueError):
        return [], []
    if not data[signed_end:].strip(_BLANK):
        return [], []
    described: list[str] = []
    changes: list[str] = []
    extra = len(data) - signed_end
    described.append(f"{extra:,} bytes follow the signed part of the file")
    try:
        later = reader.xrefs.total_revisions - 1 - sig.signed_revision
        old = reader.get_historical_resolver(sig.signed_revision)
        if later > 0:
            described.append(
                "1 update was appended after signing" if later == 1 else f"{later} updates were appended after signing"
            )
            old_info = old.get_object(old.trailer_view.get_value_as_reference("/Info"))
            new_info = reader.trailer_view["/Info"] if "/Info" in reader.trailer_view else None
            if isinstance(new_info, generic.DictionaryObject) and isinstance(old_info, generic.DictionaryObject):
                keys = sorted(
                    str(k).lstrip("/") for k in set(old_info) | set(new_info) if old_info.get(k) != new_info.get(k)
                )
                if keys:
                    shown = ", ".join(
                        f"{k} ({_text(old_info.get('/' + k, ''))!r} → {_text(new_info.get('/' + k, ''))!r})"
                        for k in keys[:4]
                    )
                    changes.append(f"The document information was changed after signing: {shown}.")
            old_root = old.get_object(old.trailer_view.get_value_as_reference("/Root"))
            old_bytes = new_bytes = None
            if isinstance(old_root, generic.DictionaryObject) and "/Metadata" in old_root:
                old_bytes = old.get_object(old_root.get_value_as_reference("/Metadata")).data
            if "/Metadata" in reader.root:
                new_bytes = reader.root["/Metadata"].data
            if old_bytes != new_bytes:
                changes.append("The document's XMP metadata (title, author, dates) was changed after signing.")
            if "/DSS" in reader.root or list(reader.embedded_timestamp_signatures):
                described.append("validation data (certificates, revocation data or a timestamp) was added")
        last_end = reader.xrefs.get_xref_container_info(reader.xrefs.total_revisions - 1).end_location
        eof = data.find(b"%%EOF", last_end)
        tail = data[eof + 5 :].strip(_BLANK) if eof >= 0 else b""
        if tail:
            changes.append(
                f"{len(tail):,} bytes were added after the end of the file: they belong to no revision of the "
                "document and no signature covers them."
            )
    except (PyHankoPdfError, ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
        changes.append(
            f"The bytes after the signature cannot be read ({type(err).__name__}): treat the file as changed."
        )
    return described, changes


def verify_pdf(
    data: bytes, *, trust_roots: list[bytes], name: str = "letter.pdf", trust_names: list[str] | None = None
) -> Verification:
    """Check every signature in ``data``. Raises PdfError only for a file that is not a
    readable PDF or a trust root that is not a certificate (named by ``trust_names``)."""
    roots = _load_roots(trust_roots, trust_names)
    reader = _read(data, name)
    try:
        signatures = list(reader.embedded_regular_signatures)
    except (PyHankoPdfError, ValueError, KeyError, IndexError, TypeError) as err:
        raise PdfError(f"{name}: the PDF is damaged and cannot be read ({err})") from None
    if not signatures:
        return Verification(
            file=name,
            signer=None,
            signing_time=None,
            intact=False,
            trusted=False,
            unmodified=False,
            ok=False,
            reasons=["This PDF has no digital signature."],
        )
    context = ValidationContext(trust_roots=roots, allow_fetching=False, revocation_mode="soft-fail")
    intact = trusted = unmodified = True
    reasons: list[str] = []
    holders: list[str] = []
    signing_time: dt.datetime | None = None
    for index, sig in enumerate(signatures):
        last = index == len(signatures) - 1
        prefix = f"Signature {index + 1} of {len(signatures)}: " if len(signatures) > 1 else ""
        status: PdfSignatureStatus | None
        try:
            status = validate_pdf_signature(sig, context, key_usage_settings=_KEY_USAGE)
        except Exception as err:  # a broken signature must be reported, never raised
            status = None
            failure = f"{type(err).__name__}: {err}"
        holder = _holder(status, sig) or "an unknown signer"
        holders.append(holder)
        if status is None:
            intact = trusted = unmodified = False
            reasons.append(
                prefix + "The signature could not be checked: its data is damaged or not a "
                f"signature pyHanko understands ({failure[:200]})."
            )
            continue
        if signing_time is None:
            if status.timestamp_validity is not None:
                signing_time = status.timestamp_validity.timestamp
            else:
                signing_time = status.signer_reported_dt
        if not status.intact:
            intact = False
            reasons.append(
                prefix + "The letter was changed after it was signed: the signed content no "
                "longer matches the signature (or the file is damaged), so the signature "
                "no longer shows who signed it."
            )
        elif not status.valid:
            intact = False
            reasons.append(
                prefix + f"The signature does not match the certificate of {holder}: it is forged or damaged."
            )
        if status.intact and status.valid and not status.trusted:
            trusted = False
            reasons.append(prefix + _trust_reason(status, holder))
        elif not (status.intact and status.valid):
            trusted = False
        if status.timestamp_validity is not None and not (
            status.timestamp_validity.intact and status.timestamp_validity.valid and status.timestamp_validity.trusted
        ):
            trusted = False
            reasons.append(
                prefix + "The timestamp on the signature is not valid or comes from a "
                "timestamp service you do not trust."
            )
        found = _modification_reasons(status, last=last)
        if found:
            unmodified = False
            reasons.extend(prefix + reason for reason in found)
    proof = check_proof(data, _fingerprints(signatures, roots))
    if proof is not None:
        reasons.extend(proof.problems)
    after, changes = _after_signing(reader, data, signatures[-1])
    if changes:
        unmodified = False
        reasons.extend(changes)
    return Verification(
        file=name,
        signer="; ".join(dict.fromkeys(holders)),
        signing_time=signing_time,
        intact=intact,
        trusted=trusted,
        unmodified=unmodified,
        ok=intact and trusted and unmodified and (proof is None or proof.ok),
        reasons=reasons,
        proof=proof.fields if proof is not None else None,
        proof_ok=proof.ok if proof is not None else None,
        after_signing=after,
    )


def _fingerprints(signatures: list[EmbeddedPdfSignature], roots: list[asn1_x509.Certificate]) -> set[str]:
    found = {hashlib.sha256(root.dump()).hexdigest() for root in roots}
    for sig in signatures:
        try:
            for cert in sig.signed_data["certificates"]:
                found.add(hashlib.sha256(cert.chosen.dump()).hexdigest())
        except (KeyError, ValueError, TypeError, AttributeError):
            continue
    return found
