"""The program's own HTML documents (the campaign report) printed to PDF.

Contract: :func:`print_html` lays out a complete HTML document with WeasyPrint, with the
bundled PT Sans as its font (Cyrillic covered), inline SVG drawn as vectors, and nothing
fetched: the document's own links and images, if any, are refused by the same closed
URL fetcher the letters use. Raises ``PdfError``.
"""

from __future__ import annotations

from weasyprint import CSS, HTML
from weasyprint.text.fonts import FontConfiguration

from campaign.errors import PdfError
from campaign.pdf.layout import _ASSET, FONTS_DIR, _Fetcher

_CSS = """
@font-face { font-family: "PT Sans"; font-weight: 400; src: url("campaign-asset:/fonts/PTS55F.ttf"); }
@font-face { font-family: "PT Sans"; font-weight: 700; src: url("campaign-asset:/fonts/PTS75F.ttf"); }
html { font-family: "PT Sans"; font-size: 9.5pt; }
"""


def print_html(document: str, *, lang: str = "en") -> bytes:
    """The PDF of an HTML document of our own (A4, as its print stylesheet says)."""
    fonts = {
        f"{_ASSET}fonts/{name}": ((FONTS_DIR / name).read_bytes(), "font/ttf") for name in ("PTS55F.ttf", "PTS75F.ttf")
    }
    fetcher = _Fetcher(fonts)
    config = FontConfiguration()
    try:
        css = CSS(string=_CSS, font_config=config, url_fetcher=fetcher)
        rendered = HTML(string=document, url_fetcher=fetcher).render(stylesheets=[css], font_config=config)
        for page in rendered.pages:
            page.links = []
        rendered.metadata.lang = lang
        pdf = rendered.write_pdf()
    except (ValueError, TypeError, LookupError, OSError) as err:
        raise PdfError(f"cannot print the report: {type(err).__name__}: {err}") from err
    if not pdf:
        raise PdfError("cannot print the report: WeasyPrint returned nothing")
    return bytes(pdf)
