"""The sealed cover page of a closed signing drive: "N supporters signed; root …".

Contract: :func:`render_cover` lays out one A4 page with the organisation's letterhead,
the count, the institutions, the SHA-256 of the signed text, the Merkle root, the date
the drive closed, what this proves and what not, and a QR code holding the same data
(``Proof.payload``, also stored in the PDF's metadata). It reuses a
:class:`~campaign.pdf.layout.PdfRenderer` (fonts, stylesheet, the closed fetcher) and
reserves the same stamp box, so ``sign_pdf`` seals it visibly. No supporter is named.
Raises PdfError.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from weasyprint import CSS, HTML

from campaign.errors import PdfError
from campaign.pdf.layout import (
    _QR_URL,
    PAYLOAD_KEY,
    Letterhead,
    PdfRenderer,
    Proof,
    _add_signature_field,
    _Fetcher,
    _find_stamp,
    _text,
)
from campaign.pdf.qr import qr_png
from campaign.wording import plural_category


@dataclass(frozen=True)
class Cover:
    lang: str
    drive: str
    count: int
    institutions: list[str]  # names, as the registry has them
    letter_subject: str
    letter_sha256: str
    root: str
    closed_on: str  # already formatted for the language


WORDS = {
    "en": {
        "title_one": "{count} supporter signed this letter",
        "title_other": "{count} supporters signed this letter",
        "to": "Addressed to",
        "letter": "Letter",
        "text": "SHA-256 of the signed text",
        "root": "Merkle root of the signatures",
        "closed": "Signatures collected until",
        "drive": "Signing drive",
        "proves": (
            "Each supporter holds a private receipt with which they can check that their own signature is one "
            "of the {count} counted under this root and was not altered. The root does not prove that every "
            "signature belongs to a real person; the organisation reviewed the signatures before closing. "
            "No names are printed here, to protect the signatories."
        ),
    },
    "ru": {
        "title_one": "Это письмо подписал {count} сторонник",
        "title_few": "Это письмо подписали {count} сторонника",
        "title_many": "Это письмо подписали {count} сторонников",
        "to": "Адресаты",
        "letter": "Письмо",
        "text": "SHA-256 подписанного текста",
        "root": "Корень дерева Меркла подписей",
        "closed": "Подписи собирались до",
        "drive": "Сбор подписей",
        "proves": (
            "У каждого подписавшего есть личная квитанция, по которой он может проверить, что его подпись — "
            "одна из {count}, учтённых в этом корне, и не изменена. Корень не доказывает, что каждая подпись "
            "принадлежит реальному человеку; организация проверила подписи перед закрытием сбора. "
            "Имена здесь не приводятся, чтобы защитить подписавших."
        ),
    },
    "tg": {
        "title_one": "Ин номаро {count} нафар тарафдор имзо кард",
        "title_other": "Ин номаро {count} нафар тарафдорон имзо карданд",
        "to": "Ба",
        "letter": "Нома",
        "text": "SHA-256-и матни имзошуда",
        "root": "Решаи дарахти Меркли имзоҳо",
        "closed": "Имзоҳо то ин сана ҷамъ оварда шуданд",
        "drive": "Ҷамъоварии имзо",
        "proves": (
            "Ҳар як имзокунанда квитансияи шахсӣ дорад, ки бо он метавонад санҷад, ки имзои ӯ яке аз {count} "
            "имзои ба ин реша воридшуда аст ва тағйир наёфтааст. Реша исбот намекунад, ки ҳар як имзо ба "
            "шахси воқеӣ тааллуқ дорад; созмон имзоҳоро пеш аз бастан санҷид. Барои ҳифзи имзокунандагон "
            "номҳо дар ин ҷо оварда намешаванд."
        ),
    },
}


def cover_title(count: int, lang: str) -> str:
    """The cover page's title for ``count`` signatures, in the plural form ``lang`` needs."""
    used = lang if lang in WORDS else "en"  # the words and their plural rule go together
    return WORDS[used]["title_" + plural_category(count, used)].format(count=count)


_CSS = """
.cover h1 { font-family: "Campaign Sans", sans-serif; font-size: 18pt; margin: 12mm 0 6mm 0; }
.cover table { border-collapse: collapse; font-size: 10pt; margin-bottom: 6mm; }
.cover th { text-align: left; font-weight: 400; color: #555; padding: 0 4mm 2mm 0; vertical-align: top;
            font-family: "Campaign Sans", sans-serif; width: 55mm; }
.cover td { padding: 0 0 2mm 0; vertical-align: top; }
.cover .hash { font-family: "Campaign Sans", sans-serif; font-size: 8.5pt; word-break: break-all; }
.cover .proves { font-size: 9.5pt; color: #222; margin: 0 0 6mm 0; }
.cover .bottom { display: flex; flex-direction: row; align-items: flex-end; }
.cover .bottom img { width: 38mm; height: 38mm; margin-right: 8mm; image-rendering: pixelated; }
"""


def render_cover(renderer: PdfRenderer, head: Letterhead, cover: Cover, proof: Proof) -> bytes:
    """The unsigned cover page. Raises PdfError."""
    lang = cover.lang.split("-")[0] if cover.lang.split("-")[0] in WORDS else "en"
    words = WORDS[lang]
    title = cover_title(cover.count, lang)
    stamp_id = "stamp-" + secrets.token_hex(8)
    rows = [
        (words["drive"], _text(cover.drive), ""),
        (words["letter"], _text(cover.letter_subject), ""),
        (words["to"], "<br>".join(_text(n) for n in cover.institutions), ""),
        (words["closed"], _text(cover.closed_on), ""),
        (words["text"], _text(cover.letter_sha256), "hash"),
        (words["root"], _text(cover.root), "hash"),
    ]
    table = "".join(f'<tr><th>{_text(k)}</th><td class="{c}">{v}</td></tr>' for k, v, c in rows)
    address = "".join(f"<p>{_text(line)}</p>" for line in (head.address or "").splitlines() if line.strip())
    source = f"""<!DOCTYPE html>
<html lang="{_text(cover.lang)}"><head><meta charset="utf-8"><title>{_text(title)}</title></head>
<body class="cover">
<header class="letterhead"><div class="org">{_text(head.name)}</div><div class="contact">{address}</div></header>
<h1>{_text(title)}</h1>
<table>{table}</table>
<p class="proves">{_text(words["proves"].format(count=cover.count))}</p>
<section class="bottom"><img src="{_QR_URL}" alt=""><div class="stamp-box" id="{stamp_id}"></div></section>
</body></html>"""
    fetcher = _Fetcher({_QR_URL: (qr_png(proof.payload), "image/png")})
    try:
        document = HTML(string=source, url_fetcher=fetcher).render(
            stylesheets=[renderer._css, CSS(string=_CSS, font_config=renderer._fonts)], font_config=renderer._fonts
        )
        meta = document.metadata
        meta.title = title
        meta.authors = [head.name]
        meta.lang = cover.lang
        meta.description = meta.generator = meta.created = meta.modified = None
        meta.keywords, meta.attachments, meta.xmp_metadata = [], [], []
        meta.custom = {PAYLOAD_KEY: proof.payload}
        place = _find_stamp(document, stamp_id)
        finisher = _add_signature_field(place) if place is not None else None
        data: bytes = document.write_pdf(finisher=finisher, pdf_identifier=True, custom_metadata=True)
    except (ValueError, TypeError, LookupError, OSError) as err:
        raise PdfError(f"cannot lay out the cover page of {cover.drive}: {type(err).__name__}: {err}") from err
    return data
