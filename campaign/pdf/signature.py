"""PAdES signatures with pyHanko: baseline B-B, or B-T with a timestamp server.

Contract:
- :func:`sign_pdf` appends one incremental update holding the signature; the bytes
  before it are untouched. It fills the empty field :data:`~campaign.pdf.layout.FIELD_NAME`
  that :class:`~campaign.pdf.layout.PdfRenderer` put over the page's stamp box, drawing
  a visible stamp (signatory, UTC date, issuer and its fingerprint) in the bundled PT Sans,
  with labels in the document's language (its /Lang). A PDF without that field gets an
  invisible signature.
- The first signature of a document is a certification signature that allows no
  changes (DocMDP P=1), so Acrobat and pyHanko also flag anything drawn or
  annotated later; a letter signed here therefore cannot be signed again. A PDF
  signed elsewhere without that lock gets an additional approval signature.
- A certificate that has expired or is not yet valid is refused before signing.
- Sign last: re-saving, merging or "optimising" a signed PDF breaks its signature.
- With ``timestamp_url`` the signature gets an RFC 3161 timestamp (PAdES B-T); an
  unreachable server is a ``PdfError``, never a silent B-B.
- Raises ``PdfError`` for a PDF that cannot be read, an encrypted PDF, a timestamp
  server failure or any signing failure.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from io import BytesIO

from pyhanko.pdf_utils import layout as ph_layout
from pyhanko.pdf_utils.generic import PdfObject
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError as PyHankoPdfError
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.sign import fields as ph_fields
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner
from pyhanko.sign.timestamps import HTTPTimeStamper, TimeStamper, TimestampRequestError
from pyhanko.sign.validation import read_certification_data
from pyhanko.stamp import TextStampStyle

from campaign.errors import PdfError
from campaign.pdf.keystore import SigningKey
from campaign.pdf.layout import FIELD_NAME, Labels, LetterContent, Letterhead, PdfRenderer, Proof, Signer
from campaign.pdf.layout import labels_for as _labels_for
from campaign.pdf.stamp import StampFontFactory

_STAMP_FONT_SIZE = 9
_STAMP_LEADING = 12
_MAX_LINE = 70
_STAMP_FONT = StampFontFactory(font_size=_STAMP_FONT_SIZE)
_TEXT_LAYOUT = ph_layout.SimpleBoxLayoutRule(  # the text block itself: no inner margins
    x_align=ph_layout.AxisAlignment.ALIGN_MIN,
    y_align=ph_layout.AxisAlignment.ALIGN_MID,
    margins=ph_layout.Margins.uniform(0),
    inner_content_scaling=ph_layout.InnerScaling.NO_SCALING,
)
_STAMP_LAYOUT = ph_layout.SimpleBoxLayoutRule(  # the text block in the stamp's box
    x_align=ph_layout.AxisAlignment.ALIGN_MIN,
    y_align=ph_layout.AxisAlignment.ALIGN_MID,
    margins=ph_layout.Margins(left=8, right=8, top=4, bottom=8),
    inner_content_scaling=ph_layout.InnerScaling.SHRINK_TO_FIT,  # long names shrink, not clip
)


def _short(text: str) -> str:
    text = " ".join(unicodedata.normalize("NFC", text).split())
    return text if len(text) <= _MAX_LINE else text[: _MAX_LINE - 1] + "…"


def short_fingerprint(value: str) -> str:
    """``6D:D4:D6:B2 … AC:72:27:BC``: enough of a SHA-256 fingerprint to compare by eye
    with the one the organisation published, short enough for the stamp."""
    parts = value.split(":")
    return value if len(parts) <= 8 else f"{':'.join(parts[:4])} … {':'.join(parts[-4:])}"


SEALED_BY = {
    "en": ("Sealed by {org}", "Signed on its signing page by"),
    "ru": ("Заверено печатью: {org}", "Подписано на её странице:"),
    "tg": ("Бо мӯҳри {org} тасдиқ шудааст", "Дар саҳифаи он имзо кард:"),
}
"""Honest stamp wording for letters signed on the signing page: the organisation's seal
vouches for the document, the supporter did not sign with a key of their own."""


def stamp_lines(
    words: Labels,
    signer: Signer | None,
    key: SigningKey,
    when: dt.datetime,
    *,
    sealed_by: str | None = None,
    lang: str | None = None,
) -> list[str]:
    """The text of the visible stamp, one string per line: who signed (or, on the signing
    page, that the organisation sealed it for the supporter named), when, and which
    organisation issued the certificate with its root's fingerprint (a reader checks the
    issuer against what it published)."""
    if sealed_by is not None:
        title, by = SEALED_BY.get((lang or "en").split("-")[0], SEALED_BY["en"])
        lines = [title.format(org=_short(sealed_by))]
        if signer is not None:
            lines.append(f"{by} {_short(signer.name)}")
    else:
        lines = [words.stamp_title]
        if signer is not None:
            lines.append(f"{words.stamp_signatory}: {_short(signer.name)}")
        elif key.holder:
            lines.append(f"{words.stamp_signatory}: {_short(key.holder)}")
    lines.append(f"{words.stamp_date}: {when.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC")
    issuer = key.issuer or key.holder
    lines.append(f"{words.stamp_certificate}: {_short(issuer)}")
    if key.issuer_fingerprint:
        lines.append(f"SHA-256: {short_fingerprint(key.issuer_fingerprint)}")
    return lines


def _stamp_style(lines: list[str]) -> TextStampStyle:
    return TextStampStyle(
        stamp_text="\n".join(lines).replace("%", "%%"),
        text_box_style=TextBoxStyle(
            font=_STAMP_FONT,
            font_size=_STAMP_FONT_SIZE,
            leading=_STAMP_LEADING,
            box_layout_rule=_TEXT_LAYOUT,
        ),
        inner_content_layout=_STAMP_LAYOUT,
        border_width=1,
        border_color=(0.3, 0.3, 0.3),
        background=None,
    )


def _text_of(value: PdfObject | None) -> str | None:
    if value is None:
        return None
    return str(value)


def _reserved_field(writer: IncrementalPdfFileWriter) -> tuple[str, bool]:
    """(field name, whether it is our empty reserved field with a visible box)."""
    names = set()
    for name, value, _ref in ph_fields.enumerate_sig_fields(writer.prev):
        names.add(name)
        if name == FIELD_NAME and value is None:
            return name, True
    number = 1
    while f"Signature{number}" in names:
        number += 1
    return f"Signature{number}", False


def _already_signed(writer: IncrementalPdfFileWriter) -> bool:
    return any(True for _ in ph_fields.enumerate_sig_fields(writer.prev, filled_status=True))


def _check_validity(key: SigningKey) -> None:
    cert = key.signer.signing_cert
    if cert is None:
        raise PdfError(f"the key of {key.holder} has no certificate")
    validity = cert["tbs_certificate"]["validity"]
    not_before, not_after = validity["not_before"].native, validity["not_after"].native
    now = dt.datetime.now(dt.UTC)
    if now > not_after:
        raise PdfError(
            f"the certificate of {key.holder} expired on {not_after:%Y-%m-%d}",
            hint="ask the organisation for a new certificate (campaign keys issue)",
        )
    if now < not_before:
        raise PdfError(
            f"the certificate of {key.holder} is not valid before {not_before:%Y-%m-%d %H:%M} UTC",
            hint="check this computer's clock",
        )


def _timestamper(url: str) -> TimeStamper:
    if not url.startswith(("https://", "http://")):
        raise PdfError(
            f"{url!r}: a timestamp server address starts with https:// or http://",
            hint="set [pdf] timestamp_url to your timestamp authority's RFC 3161 address",
        )
    return HTTPTimeStamper(url, timeout=20)


def _reserve(key: SigningKey) -> int:
    """Bytes for the CMS container: the certificates it embeds plus a generous margin
    for the signed attributes and the signature value (about 1 KB with P-256)."""
    certs = sum(len(cert.dump()) for cert in key.signer.cert_registry)
    return 2 * ((4096 + len(key.certificate_der) + certs + 1) // 2)


def sign_pdf(
    pdf: bytes,
    key: SigningKey,
    *,
    signer: Signer | None,
    timestamp_url: str | None = None,
    reason: str | None = None,
    sealed_by: str | None = None,
) -> bytes:
    """``pdf`` with a PAdES signature by ``key`` appended (``sealed_by``: the stamp says the
    organisation sealed it, for letters signed on the signing page). Raises PdfError."""
    try:
        writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    except (PyHankoPdfError, ValueError, KeyError, IndexError, TypeError) as err:
        raise PdfError(f"cannot sign: the PDF cannot be read ({err})") from None
    if writer.prev.encrypted:
        raise PdfError("cannot sign an encrypted PDF", hint="sign the letter as campaign rendered it")
    _check_validity(key)
    certify = not _already_signed(writer)
    if not certify:
        locked = read_certification_data(writer.prev)
        if locked is not None and locked.permission == ph_fields.MDPPerm.NO_CHANGES:
            raise PdfError(
                "this PDF is already signed and its signature allows no further changes",
                hint="sign the unsigned letter instead (render it again)",
            )
    field_name, visible = _reserved_field(writer)
    lang = _text_of(writer.root.get("/Lang"))
    now = dt.datetime.now(dt.UTC)
    lines = stamp_lines(_labels_for(lang), signer, key, now, sealed_by=sealed_by, lang=lang)
    meta = PdfSignatureMetadata(
        field_name=field_name,
        md_algorithm="sha256",
        subfilter=ph_fields.SigSeedSubFilter.PADES,
        reason=reason,
        location=signer.city if signer is not None and signer.city else None,
        certify=certify,
        docmdp_permissions=ph_fields.MDPPerm.NO_CHANGES,
    )
    timestamper = _timestamper(timestamp_url) if timestamp_url else None
    pdf_signer = PdfSigner(
        meta,
        key.signer,
        timestamper=timestamper,
        stamp_style=_stamp_style(lines),
        new_field_spec=None if visible else ph_fields.SigFieldSpec(field_name),
    )
    try:
        out = pdf_signer.sign_pdf(
            writer,
            # pyHanko otherwise signs twice to measure the container (a third of the time)
            bytes_reserved=None if timestamper else _reserve(key),
        )
    except TimestampRequestError as err:
        raise PdfError(
            f"the timestamp server {timestamp_url} did not answer ({err})",
            hint="check the address and the network, or sign without a timestamp",
        ) from None
    except (SigningError, PyHankoPdfError, ValueError, OSError) as err:
        raise PdfError(f"cannot sign the PDF: {err}") from None
    signed: bytes = out.getvalue()
    return signed


def render_signed(
    renderer: PdfRenderer,
    head: Letterhead,
    content: LetterContent,
    signer: Signer | None,
    key: SigningKey,
    *,
    timestamp_url: str | None = None,
    proof: Proof | None = None,
    sealed_by: str | None = None,
) -> bytes:
    """Render one letter and sign it (the signature is the last thing written)."""
    return sign_pdf(
        renderer.render(head, content, signer, proof=proof),
        key,
        signer=signer,
        timestamp_url=timestamp_url,
        sealed_by=sealed_by,
    )
