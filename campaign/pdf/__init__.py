"""Letters as signed PDFs: render (WeasyPrint), sign (pyHanko, PAdES), verify, merge.

What a signature here proves: a signature made with a certificate issued by the
organisation proves that the document is unaltered since signing and who held the key;
it does not prove anyone's legal identity.

Contract:
- :class:`PdfRenderer` turns a :class:`Letterhead`, a :class:`LetterContent` and a
  :class:`Signer` into an unsigned formal A4 PDF using only the fonts bundled in
  ``campaign/fonts`` (PT Serif, PT Sans; Russian and Tajik covered) and the stylesheet
  in ``campaign/pdf_assets``; the letter cannot make it read a local file or the
  network.
- :func:`sign_pdf` adds a PAdES B-B signature (B-T with ``timestamp_url``) with a
  visible stamp in the reserved box; :func:`render_signed` does both. Sign last: any
  re-save or merge of a signed PDF breaks the signature.
- :func:`init_keys`, :func:`issue_supporter`, :func:`load_seal`, :func:`load_p12`,
  :func:`root_fingerprint`, :func:`root_certificate_pem` manage the organisation's root
  certificate, its seal key and supporters' PKCS#12 files (files 0600, folder 0700).
- :func:`verify_pdf` says whether a signed letter is intact, trusted and unmodified,
  with plain-language reasons; :func:`merge_unsigned` joins unsigned letters for
  printing.
- Every error a user can cause is a one-line ``campaign.errors.PdfError``. Nothing
  here prints.

This package is the only home of WeasyPrint, pyHanko, pyhanko-certvalidator, pikepdf,
segno (QR codes) and Pillow (signature images from the signing page); cryptography is
shared with ``transport`` and ``signing``.
"""

from __future__ import annotations

import logging
import warnings

from cryptography.utils import CryptographyDeprecationWarning

# Users never see a library's warning about its own internals. Each filter names one
# exact message from one library, and only around the import that raises it:
# - cryptography 51 deprecates DSA (pyca/cryptography#15597) and pyHanko 0.38 still
#   imports its key classes (pyhanko.sign.signers.pdf_cms, pyhanko.sign.general); we
#   never make or accept DSA keys.
# - WeasyPrint 63+ warns at import when libharfbuzz-subset is missing (it falls back to
#   fontTools); scripts/system-deps.sh installs it, and `campaign demo` says so.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore",
        message="DSA is deprecated",
        category=CryptographyDeprecationWarning,
        module=r"pyhanko(_certvalidator)?\.",
    )
    warnings.filterwarnings(
        "ignore", message="HarfBuzz-Subset will be required", category=DeprecationWarning, module=r"weasyprint\."
    )
    from campaign.pdf.batch import Supporter, read_supporters, sign_many
    from campaign.pdf.cover import Cover, render_cover
    from campaign.pdf.document import print_html
    from campaign.pdf.estimate import PageEstimate, count_pages, estimate_pages
    from campaign.pdf.image import normalise_signature
    from campaign.pdf.keystore import (
        SigningKey,
        init_keys,
        issue_supporter,
        load_p12,
        load_seal,
        root_certificate_pem,
        root_fingerprint,
    )
    from campaign.pdf.keystore import fingerprint as certificate_fingerprint
    from campaign.pdf.layout import (
        FIELD_NAME,
        PAYLOAD_KEY,
        LetterContent,
        Letterhead,
        PdfRenderer,
        Proof,
        Signer,
        proof_lines,
    )
    from campaign.pdf.merge import merge_unsigned
    from campaign.pdf.qr import qr_png, qr_terminal
    from campaign.pdf.signature import render_signed, sign_pdf
    from campaign.pdf.verification import Verification, check_trust_roots, verify_pdf

# pyHanko logs tracebacks at WARNING when it analyses a tampered file; without a
# handler Python's last-resort handler would print them. The application decides.
for _name in ("campaign.pdf", "pyhanko", "pyhanko_certvalidator", "fontTools", "weasyprint"):
    logging.getLogger(_name).addHandler(logging.NullHandler())

ASSURANCE = (
    "A signature made with a certificate issued by the organisation proves that the "
    "document is unaltered since signing and who held the key; it does not prove "
    "anyone's legal identity."
)
"""The sentence the CLI prints next to every verification result."""

__all__ = [
    "Supporter",
    "read_supporters",
    "sign_many",
    "ASSURANCE",
    "FIELD_NAME",
    "PAYLOAD_KEY",
    "Cover",
    "Proof",
    "proof_lines",
    "certificate_fingerprint",
    "normalise_signature",
    "print_html",
    "qr_png",
    "qr_terminal",
    "render_cover",
    "LetterContent",
    "Letterhead",
    "PageEstimate",
    "PdfRenderer",
    "Signer",
    "SigningKey",
    "Verification",
    "count_pages",
    "estimate_pages",
    "check_trust_roots",
    "init_keys",
    "issue_supporter",
    "load_p12",
    "load_seal",
    "merge_unsigned",
    "render_signed",
    "root_certificate_pem",
    "root_fingerprint",
    "sign_pdf",
    "verify_pdf",
]
