"""Unsigned letters → one PDF for printing, with pikepdf.

Contract: :func:`merge_unsigned` concatenates the pages of unsigned letters in order
and drops their empty signature fields (a merged file is for paper, not for signing).
A signed letter is refused: merging re-writes it and would break its signature. Raises
``PdfError`` naming the letter (1-based) that is signed or cannot be read.
"""

from __future__ import annotations

from io import BytesIO

import pikepdf

from campaign.errors import PdfError


def _is_signed(pdf: pikepdf.Pdf) -> bool:
    form = pdf.Root.get("/AcroForm")
    if form is None:
        return False
    pending = list(form.get("/Fields", []))
    while pending:
        item = pending.pop()
        if item.get("/FT") == "/Sig" and item.get("/V") is not None:
            return True
        pending.extend(item.get("/Kids", []))
    return False


def _drop_signature_fields(pdf: pikepdf.Pdf) -> None:
    """Remove the empty signature fields (paper cannot be signed digitally)."""
    for page in pdf.pages:
        annots = page.obj.get("/Annots")
        if annots is None:
            continue
        kept = [a for a in annots if a.get("/FT") != "/Sig"]
        if kept:
            page.obj.Annots = pikepdf.Array(kept)
        else:
            del page.obj["/Annots"]
    if "/AcroForm" in pdf.Root:
        del pdf.Root["/AcroForm"]


def merge_unsigned(pdfs: list[bytes]) -> bytes:
    """One PDF with every page of ``pdfs``, for printing. Raises PdfError."""
    if not pdfs:
        raise PdfError("no letters to merge")
    merged = pikepdf.new()
    sources = []
    try:
        for number, data in enumerate(pdfs, start=1):
            try:
                source = pikepdf.open(BytesIO(data))
            except (pikepdf.PdfError, ValueError) as err:
                raise PdfError(f"letter {number} of {len(pdfs)} is not a readable PDF ({err})") from None
            sources.append(source)
            if _is_signed(source):
                raise PdfError(
                    f"letter {number} of {len(pdfs)} is signed; merging would break its signature",
                    hint="merge unsigned letters for printing; keep signed ones as separate files",
                )
            _drop_signature_fields(source)
            merged.pages.extend(source.pages)
        out = BytesIO()
        merged.save(out)
    except pikepdf.PdfError as err:
        raise PdfError(f"cannot merge the letters ({err})") from None
    finally:
        for source in sources:
            source.close()
    return out.getvalue()
