"""One letter → an unsigned formal A4 PDF, with WeasyPrint, in a closed room.

Contract:
- :class:`PdfRenderer` loads the bundled fonts, one ``FontConfiguration`` and one
  ``CSS`` once; reuse it for every letter of a run (a new one per letter is slower and
  grows memory). It is not thread-safe: one renderer per thread or process.
- Every text value is NFC-normalised and HTML-escaped before it goes into the page;
  ``body_html`` (markdown-it output) is inserted as is, NFC-normalised.
- WeasyPrint fetches through :class:`_Fetcher`, which serves the bundled fonts and the
  signer's handwritten-signature PNG from memory and refuses every other URL (local
  files, http, data:). Links are removed from the laid-out pages, so no /URI action or
  attachment reaches the PDF. Refused URLs are listed in
  :attr:`PdfRenderer.refused_urls` after each render.
- The page holds an empty box for the visible stamp of the digital signature; its
  position is read from the layout and an empty signature field named
  :data:`FIELD_NAME` is put exactly there, which :func:`campaign.pdf.sign_pdf` fills.
- Raises ``PdfError`` for a bad language code, an unreadable or oversized signature
  image, or a letter WeasyPrint cannot lay out.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
import struct
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydyf
import pyphen
from weasyprint import CSS, HTML, Attachment, Document
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import URLFetcher, URLFetcherResponse

from campaign.errors import PdfError

PACKAGE_DIR = Path(__file__).resolve().parent.parent
FONTS_DIR = PACKAGE_DIR / "fonts"
ASSETS_DIR = PACKAGE_DIR / "pdf_assets"

FIELD_NAME = "CampaignSignature"
"""The signature field that :class:`PdfRenderer` reserves and ``sign_pdf`` fills."""

STAMP_WIDTH_MM = 75.0
STAMP_HEIGHT_MM = 24.0
_PX_PER_MM = 96 / 25.4
_PT_PER_PX = 0.75

_ASSET = "campaign-asset:/"
_FONT_FILES = (
    "PTF55F.ttf", "PTF56F.ttf", "PTF75F.ttf", "PTF76F.ttf", "PTS55F.ttf", "PTS75F.ttf", "Caveat-Regular.ttf",
)  # fmt: skip
_SIGNATURE_URL = _ASSET + "signature.png"
_QR_URL = _ASSET + "proof-qr.png"
_MAX_IMAGE_BYTES = 2_000_000
_MAX_IMAGE_PIXELS = 4000 * 2000
_LANG = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")

_log = logging.getLogger("campaign.pdf")


# ---------------------------------------------------------------------------
# What a letter is made of


@dataclass(frozen=True)
class Letterhead:
    """The organisation (campaign.toml [sender])."""

    name: str
    address: str | None  # multi-line postal address
    email: str | None


@dataclass(frozen=True)
class LetterContent:
    """One letter for one institution."""

    lang: str  # "en" | "ru" | "tg" | ...
    subject: str
    body_html: str  # markdown-it output: salutation, paragraphs, closing formula
    date_text: str  # already formatted for the language
    reference: str  # e.g. "PA-2026-0007"
    recipient_name: str
    postal_address: str | None  # the institution's multi-line postal address


@dataclass(frozen=True)
class Signer:
    """The supporter who signs."""

    name: str
    title: str | None = None
    city: str | None = None
    signature_image: Path | None = None  # optional PNG of a handwritten signature
    signature_png: bytes | None = None  # the same, in memory (drawn on the signing page)
    typed_signature: str | None = None  # a signature typed on the signing page (handwriting font)


@dataclass(frozen=True)
class Proof:
    """What a letter signed on the signing page carries so that it checks offline."""

    payload: str  # the QR code's data, also stored in the PDF's metadata (/CampaignSign)
    lines: tuple[str, ...]  # the same in words, printed beside the code
    text: str | None = None  # the canonical letter text, embedded as letter-text.txt
    attachment_name: str = "letter-text.txt"


# ---------------------------------------------------------------------------
# Words the layout and the stamp need, per language (English when unknown)

PROOF_WORDS = {
    "en": ("Signed on the signing page of {org}. Check offline: the QR code holds the data below.",
           "SHA-256 of the letter text (embedded in this PDF as letter-text.txt)", "Your commitment",
           "Organisation key (root certificate SHA-256)"),
    "ru": ("Подписано на странице сбора подписей {org}. Проверка без сети: QR-код содержит данные ниже.",
           "SHA-256 текста письма (вложен в этот PDF как letter-text.txt)", "Ваше обязательство (commitment)",
           "Ключ организации (SHA-256 корневого сертификата)"),
    "tg": ("Дар саҳифаи ҷамъоварии имзоҳои {org} имзо шуд. Санҷиш бе шабака: рамзи QR маълумоти зеринро дорад.",
           "SHA-256-и матни нома (дар ин PDF ҳамчун letter-text.txt замима шудааст)", "Ӯҳдадории шумо (commitment)",
           "Калиди созмон (SHA-256-и сертификати решавӣ)"),
}  # fmt: skip


def proof_lines(lang: str, org: str, text_sha256: str, commitment: str, key_fingerprint: str) -> tuple[str, ...]:
    """The words printed beside a signing-page letter's QR code, in ``lang``."""
    intro, text_label, commit_label, key_label = PROOF_WORDS.get(lang, PROOF_WORDS["en"])
    return (
        intro.format(org=org),
        f"{text_label}: {text_sha256}",
        f"{commit_label}: {commitment}",
        f"{key_label}: {key_fingerprint}",
    )


@dataclass(frozen=True)
class Labels:
    """Words printed by the layout and the stamp in one language."""

    date: str
    reference: str
    page: str  # with {page} and {pages}
    stamp_title: str
    stamp_signatory: str
    stamp_date: str
    stamp_certificate: str


LABELS: dict[str, Labels] = {
    "en": Labels(
        "Date", "Our ref.", "Page {page} of {pages}",
        "Digitally signed", "Signatory", "Date", "Certificate",
    ),
    "ru": Labels(
        "Дата", "Исх. №", "Страница {page} из {pages}",
        "Подписано электронной подписью", "Подписант", "Дата", "Сертификат",
    ),
    "tg": Labels(
        "Сана", "Рақам", "Саҳифаи {page} аз {pages}",
        "Имзои электронӣ", "Имзокунанда", "Сана", "Сертификат",
    ),
    "uk": Labels(
        "Дата", "Вих. №", "Сторінка {page} з {pages}",
        "Підписано електронним підписом", "Підписант", "Дата", "Сертифікат",
    ),
    "de": Labels(
        "Datum", "Unser Zeichen", "Seite {page} von {pages}",
        "Digital signiert", "Unterzeichner", "Datum", "Zertifikat",
    ),
    "fr": Labels(
        "Date", "Notre réf.", "Page {page} sur {pages}",
        "Signé électroniquement", "Signataire", "Date", "Certificat",
    ),
    "es": Labels(
        "Fecha", "Nuestra ref.", "Página {page} de {pages}",
        "Firmado electrónicamente", "Firmante", "Fecha", "Certificado",
    ),
}  # fmt: skip


def labels_for(lang: str | None) -> Labels:
    """The labels for a language tag ("ru", "ru-RU"), English when unknown."""
    base = (lang or "en").split("-")[0].lower()
    return LABELS.get(base, LABELS["en"])


# ---------------------------------------------------------------------------
# The closed room: nothing is fetched but what we hand over


class _Fetcher(URLFetcher):
    """Serves in-memory resources by exact URL; refuses (and records) everything else."""

    def __init__(self, resources: Mapping[str, tuple[bytes, str]]) -> None:
        super().__init__(timeout=1, allowed_protocols=(), allow_redirects=False)
        self._resources = resources
        self.refused: list[str] = []

    def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
        found = self._resources.get(url)
        if found is None:
            self.refused.append(url)
            _log.warning("refused to load %s: letters may not load files or web pages", url[:200])
            raise ValueError("refused: a letter may not load external resources")
        body, mime = found
        return URLFetcherResponse(url, body=body, headers={"Content-Type": mime})


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _text(value: str) -> str:
    """A plain value as HTML text."""
    return html.escape(_nfc(value), quote=True)


def _lines(value: str | None) -> list[str]:
    if not value:
        return []
    return [line.strip() for line in _nfc(value).splitlines() if line.strip()]


def _css_string(value: str) -> str:
    """A CSS string literal that cannot end the string, the rule or the <style> element."""
    out = []
    for char in _nfc(value):
        if char in "\t\n\r\x0b\x0c\x85\u2028\u2029":
            char = " "
        if char in "\\\"'<>&" or ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\{ord(char):x} ")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


PAYLOAD_KEY = "CampaignSign"
"""The document-information key holding the QR code's payload (read by ``verify_pdf``)."""


def check_signature_png(data: bytes, name: str = "the signature image") -> bytes:
    """The same checks as :func:`read_signature_image`, for bytes in memory."""
    if len(data) > _MAX_IMAGE_BYTES:
        raise PdfError(f"{name} is larger than {_MAX_IMAGE_BYTES // 1_000_000} MB")
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or len(data) < 33:
        raise PdfError(f"{name} is not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    if not width or not height or width * height > _MAX_IMAGE_PIXELS:
        raise PdfError(f"{name} is {width}x{height} pixels, too large")
    return data


def read_signature_image(path: Path) -> bytes:
    """The PNG bytes of a handwritten signature, checked. Raises PdfError."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise PdfError(
            f"{path}: cannot read the signature image ({err.strerror or err})",
            hint="give the path of a PNG file",
        ) from None
    if len(data) > _MAX_IMAGE_BYTES:
        raise PdfError(
            f"{path}: the signature image is larger than {_MAX_IMAGE_BYTES // 1_000_000} MB",
            hint="scan the signature at 300 dpi and crop it",
        )
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or len(data) < 33:
        raise PdfError(f"{path}: the signature image is not a PNG file", hint="convert it to PNG")
    width, height = struct.unpack(">II", data[16:24])
    if not width or not height or width * height > _MAX_IMAGE_PIXELS:
        raise PdfError(
            f"{path}: the signature image is {width}x{height} pixels, too large",
            hint="crop and scale it to at most 4000x2000 pixels",
        )
    return data


# ---------------------------------------------------------------------------
# The page


def letter_html(
    head: Letterhead,
    content: LetterContent,
    signer: Signer | None,
    *,
    lang: str,
    stamp_id: str,
    with_image: bool,
    proof: Proof | None = None,
) -> str:
    """The letter's HTML page: every value escaped, ``body_html`` inserted as is.

    ``stamp_id`` is the id of the reserved stamp box (random per letter, so letter text
    cannot claim it); ``with_image`` puts the handwritten signature (served by the
    renderer's fetcher) above the signer's name.
    """
    words = labels_for(lang)
    justify = pyphen.language_fallback(lang.replace("-", "_")) is not None
    page_label = words.page.split("{page}")
    before, between_after = page_label[0], page_label[1].split("{pages}")
    footer = (
        f"{_css_string(before)} counter(page) {_css_string(between_after[0])} "
        f"counter(pages) {_css_string(between_after[1])}"
    )

    address = _lines(head.address)
    contact = "".join(f"<p>{_text(line)}</p>" for line in address)
    if head.email:
        contact += f'<p class="email">{_text(head.email)}</p>'
    # The return address for the envelope window: each part kept whole, breaking only
    # between parts, on at most two lines (never cut off).
    return_line = " · ".join(f'<span class="part">{_text(part)}</span>' for part in [head.name.strip(), *address])

    recipient = [f'<span class="name">{_text(content.recipient_name)}</span>']
    recipient += [_text(line) for line in _lines(content.postal_address)]

    person: list[str] = []
    if signer is not None:
        if with_image:
            person.append(f'<img class="handwritten" src="{_SIGNATURE_URL}" alt="">')
        elif signer.typed_signature:
            person.append(f'<p class="typed">{_text(signer.typed_signature)}</p>')
        person.append('<div class="line"></div>')
        person.append(f'<p class="name">{_text(signer.name)}</p>')
        if signer.title:
            person.append(f'<p class="title">{_text(signer.title)}</p>')
        if signer.city:
            person.append(f'<p class="city">{_text(signer.city)}</p>')
    else:
        person.append('<div class="line"></div>')
        person.append(f'<p class="name">{_text(head.name)}</p>')

    return f"""<!DOCTYPE html>
<html lang="{_text(lang)}" class="{"justify" if justify else "ragged"}">
<head>
<meta charset="utf-8">
<title>{_text(content.subject)}</title>
<style>
@page {{
  @top-left {{ content: {_css_string(head.name)}; }}
  @top-right {{ content: {_css_string(content.reference + " · " + content.date_text)}; }}
  @bottom-center {{ content: {footer}; }}
}}
@page :first {{ @top-left {{ content: none; }} @top-right {{ content: none; }} }}
</style>
</head>
<body>
<header class="letterhead">
  <div class="org">{_text(head.name)}</div>
  <div class="contact">{contact}</div>
</header>
<section class="window">
  <div class="address">
    <div class="return-zone"><p class="return">{return_line}</p></div>
    <p class="recipient">{"<br>".join(recipient)}</p>
  </div>
  <div class="info">
    <table>
      <tr><th>{_text(words.date)}</th><td>{_text(content.date_text)}</td></tr>
      <tr><th>{_text(words.reference)}</th><td>{_text(content.reference)}</td></tr>
    </table>
  </div>
</section>
<p class="subject">{_text(content.subject)}</p>
<main class="body">
{_nfc(content.body_html)}
</main>
<section class="signature">
  <div class="person">{"".join(person)}</div>
  <div class="stamp-box" id="{stamp_id}"></div>
</section>
{_proof_html(proof)}
</body>
</html>
"""


def _proof_html(proof: Proof | None) -> str:
    if proof is None:
        return ""
    words = "".join(f'<p class="hash">{_text(line)}</p>' for line in proof.lines)
    return f'<section class="proof"><img src="{_QR_URL}" alt=""><div class="words">{words}</div></section>'


@dataclass(frozen=True)
class _StampPlace:
    page: int  # 0-based
    rect: tuple[float, float, float, float]  # PDF points, lower-left origin


def _find_stamp(document: Document, stamp_id: str) -> _StampPlace | None:
    """Where the reserved stamp box landed, from the layout's anchor for its id."""
    for number, page in enumerate(document.pages):
        found = page.anchors.get(stamp_id)
        if found is None:
            continue
        if len(found) == 4:  # WeasyPrint ≥ 66: (x1, y1, x2, y2)
            x1, y1, x2, y2 = found
        else:  # older: the top-left point only; the size is fixed by the stylesheet
            x1, y1 = found
            x2 = x1 + STAMP_WIDTH_MM * _PX_PER_MM
            y2 = y1 + STAMP_HEIGHT_MM * _PX_PER_MM
        height = page.height * _PT_PER_PX
        rect = (
            x1 * _PT_PER_PX,
            height - y2 * _PT_PER_PX,
            x2 * _PT_PER_PX,
            height - y1 * _PT_PER_PX,
        )
        return _StampPlace(number, rect)
    return None


def _add_signature_field(place: _StampPlace) -> Callable[[Document, pydyf.PDF], None]:
    """A WeasyPrint finisher putting an empty signature field over the stamp box."""

    def finish(document: Document, pdf: pydyf.PDF) -> None:
        page_number = pdf.pages["Kids"][::3][place.page]
        page = pdf.objects[page_number]
        widget = pydyf.Dictionary(
            {
                "Type": "/Annot",
                "Subtype": "/Widget",
                "FT": "/Sig",
                "T": pydyf.String(FIELD_NAME),
                "F": 4,  # print
                "Rect": pydyf.Array([round(v, 2) for v in place.rect]),
                "P": page.reference,
            }
        )
        pdf.add_object(widget)
        if "Annots" not in page:
            page["Annots"] = pydyf.Array()
        page["Annots"].append(widget.reference)
        pdf.catalog["AcroForm"] = pydyf.Dictionary({"Fields": pydyf.Array([widget.reference])})

    return finish


class PdfRenderer:
    """Renders letters as formal A4 PDFs; create once, reuse for every letter."""

    def __init__(self) -> None:
        try:
            fonts = {f"{_ASSET}fonts/{name}": ((FONTS_DIR / name).read_bytes(), "font/ttf") for name in _FONT_FILES}
            css_text = (ASSETS_DIR / "letter.css").read_text(encoding="utf-8")
        except OSError as err:
            raise PdfError(
                f"the bundled fonts or stylesheet cannot be read ({err})",
                hint="reinstall campaign: its fonts/ and pdf_assets/ folders are incomplete",
            ) from None
        css_text = css_text.replace("{stamp_width}", f"{STAMP_WIDTH_MM}mm").replace(
            "{stamp_height}", f"{STAMP_HEIGHT_MM}mm"
        )
        self._fonts = FontConfiguration()
        fetcher = _Fetcher(fonts)
        self._css = CSS(string=css_text, font_config=self._fonts, url_fetcher=fetcher)
        if fetcher.refused:
            raise PdfError(f"the bundled stylesheet refers to {fetcher.refused[0]}")
        self.refused_urls: tuple[str, ...] = ()
        """URLs the last letter tried to load and was refused (files, web pages)."""

    def render(
        self, head: Letterhead, content: LetterContent, signer: Signer | None, *, proof: Proof | None = None
    ) -> bytes:
        """The unsigned PDF of one letter (with ``proof``: a QR code, the payload in the
        metadata and the canonical text embedded). Raises PdfError."""
        from campaign.pdf.qr import qr_png

        lang = content.lang.strip()
        if not _LANG.match(lang):
            raise PdfError(f"{lang!r} is not a language code", hint='use e.g. "en", "ru", "tg"')
        resources: dict[str, tuple[bytes, str]] = {}
        if signer is not None and signer.signature_image is not None:
            resources[_SIGNATURE_URL] = (read_signature_image(signer.signature_image), "image/png")
        elif signer is not None and signer.signature_png is not None:
            resources[_SIGNATURE_URL] = (check_signature_png(signer.signature_png), "image/png")
        with_image = bool(resources)
        if proof is not None:
            resources[_QR_URL] = (qr_png(proof.payload), "image/png")
        fetcher = _Fetcher(resources)
        stamp_id = "stamp-" + secrets.token_hex(8)
        source = letter_html(head, content, signer, lang=lang, stamp_id=stamp_id, with_image=with_image, proof=proof)
        try:
            document = HTML(string=source, url_fetcher=fetcher).render(stylesheets=[self._css], font_config=self._fonts)
            self.refused_urls = tuple(fetcher.refused)
            for page in document.pages:
                page.links = []  # no /URI actions, no attachments from letter text
            meta = document.metadata
            meta.title = _nfc(content.subject)
            meta.authors = [_nfc(head.name)]
            meta.lang = lang
            meta.description = meta.generator = meta.created = meta.modified = None
            meta.keywords, meta.attachments, meta.custom, meta.xmp_metadata = [], [], {}, []
            if proof is not None:
                meta.custom = {PAYLOAD_KEY: proof.payload}
                if proof.text is not None:
                    meta.attachments = [
                        Attachment(
                            string=proof.text.encode("utf-8"),
                            name=proof.attachment_name,
                            description="The canonical letter text; its SHA-256 is t= in the QR code",
                        )
                    ]
            place = _find_stamp(document, stamp_id)
            finisher = _add_signature_field(place) if place is not None else None
            pdf: bytes = document.write_pdf(finisher=finisher, pdf_identifier=True, custom_metadata=proof is not None)
        except (ValueError, TypeError, LookupError, OSError) as err:
            raise PdfError(f"cannot lay out the letter {content.reference!r}: {type(err).__name__}: {err}") from err
        return pdf
