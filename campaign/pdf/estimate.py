"""How many pages a Word document will take, estimated with the PDF stack.

python-docx writes Word files but has no layout engine, so the page count of a DOCX is
not known until Word opens it. :func:`estimate_pages` lays the same content out with
WeasyPrint in the document's geometry (A4, 25 mm margins, Times New Roman 12 pt, single
spacing) and counts the pages. It is an estimate and says so, naming the font it could
use: Times New Roman, or a metric-compatible substitute (Liberation Serif, Tinos), or,
when none is installed, the bundled PT Serif, which is wider (the estimate is then high).

Nothing is fetched: the fragment is HTML text (escaped by the caller) and the only fonts
are the system's and the bundled ones.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from weasyprint import CSS, HTML
from weasyprint.text.fonts import FontConfiguration

from campaign.errors import PdfError
from campaign.pdf.layout import _ASSET, FONTS_DIR, _Fetcher

METRIC_COMPATIBLE = ("Times New Roman", "Liberation Serif", "Tinos")

_CSS = """
@font-face { font-family: "Bundled Serif"; src: url("campaign-asset:/fonts/PTF55F.ttf"); }
@font-face { font-family: "Bundled Serif"; font-weight: 700; src: url("campaign-asset:/fonts/PTF75F.ttf"); }
@page { size: A4; margin: 25mm; }
html { font-family: "Times New Roman", "Liberation Serif", "Tinos", "Bundled Serif"; font-size: 12pt;
       line-height: 1.15; }
p { margin: 0 0 8pt 0; }
.sub-title { font-size: 16pt; }
h2 { font-size: 12pt; margin: 10pt 0 4pt 0; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 0.5pt solid #000; padding: 0 5.4pt; vertical-align: top; text-align: left; font-weight: normal; }
th { width: 50mm; font-weight: bold; }
"""


@dataclass(frozen=True)
class PageEstimate:
    """Pages of A4 the content takes, and the font the estimate was made with."""

    pages: int
    font: str

    @property
    def metric_compatible(self) -> bool:
        return any(name.replace(" ", "") in self.font.replace(" ", "") for name in METRIC_COMPATIBLE)

    def __str__(self) -> str:
        note = (
            ""
            if self.metric_compatible
            else "; Times New Roman is not installed here and this font is wider, so Word may need fewer pages"
        )
        pages = "1 page" if self.pages == 1 else f"{self.pages} pages"
        return f"about {pages} of A4 in {self.font} 12 pt (an estimate{note})"


def estimate_pages(fragment: str, *, lang: str = "en") -> PageEstimate:
    """Lay ``fragment`` out as the Word document would be, and count the pages."""
    fonts = {
        f"{_ASSET}fonts/{name}": ((FONTS_DIR / name).read_bytes(), "font/ttf") for name in ("PTF55F.ttf", "PTF75F.ttf")
    }
    fetcher = _Fetcher(fonts)
    config = FontConfiguration()
    try:
        css = CSS(string=_CSS, font_config=config, url_fetcher=fetcher)
        page = f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"></head><body>{fragment}</body></html>'
        document = HTML(string=page, url_fetcher=fetcher).render(stylesheets=[css], font_config=config)
        pdf = document.write_pdf()
    except (ValueError, TypeError, LookupError, OSError) as err:
        raise PdfError(f"cannot estimate the page count: {type(err).__name__}: {err}") from err
    return PageEstimate(len(document.pages), _main_font(pdf or b""))


def _main_font(pdf: bytes) -> str:
    """The name of the regular font the estimate used (from the PDF's font resources)."""
    import pikepdf

    names: list[str] = []
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        for page in doc.pages:
            resources = page.obj.get("/Resources")
            fonts = resources.get("/Font") if resources is not None else None
            if fonts is None:
                continue
            for _, font in fonts.items():
                base = str(font.get("/BaseFont", ""))
                names.append(base.lstrip("/").split("+", 1)[-1])
    for name in names:
        if "Bold" not in name:
            return _pretty(name)
    return _pretty(names[0]) if names else "an unknown font"


def _pretty(name: str) -> str:
    import re

    if name.startswith(("PTSerif", "PT-Serif", "PTF")):
        return "PT Serif (bundled)"
    name = re.sub(r"[-,](Regular|Roman|Book|Bold|Italic|BoldItalic)$", "", name).replace("-", " ")
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)


def count_pages(pdf: bytes) -> int:
    """The number of pages of a PDF."""
    import pikepdf

    with pikepdf.open(io.BytesIO(pdf)) as doc:
        return len(doc.pages)
