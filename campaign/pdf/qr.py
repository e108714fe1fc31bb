"""QR codes (segno, pure Python): PNG for the PDFs, text for a terminal.

Contract: :func:`qr_png` returns a one-pixel-per-module PNG (error correction M, a fixed
mask: choosing the best of eight cost more than laying out the rest of the page) that
the PDF scales up without smoothing; :func:`qr_terminal` returns the code
as lines of block characters (two modules per character row) with a quiet zone, for
`campaign serve` to print the supporters' URL. Raises PdfError for data too long for
a QR code. This module is the only home of segno.
"""

from __future__ import annotations

import io

import segno
from segno import DataOverflowError

from campaign.errors import PdfError


def _make(data: str, *, mask: int | None = None) -> segno.QRCode:
    try:
        return segno.make_qr(data, error="m", boost_error=False, encoding="utf-8", mask=mask)
    except DataOverflowError:
        raise PdfError(f"{len(data)} characters are too many for a QR code") from None


def qr_png(data: str) -> bytes:
    """The QR code of ``data`` as a small PNG (1 px per module, a 4-module quiet zone)."""
    out = io.BytesIO()
    _make(data, mask=2).save(out, kind="png", scale=1, border=4, dark="#000", light="#fff")
    return out.getvalue()


def qr_terminal(data: str) -> str:
    """The QR code of ``data`` drawn with half blocks (▀ ▄ █), dark on a light terminal too."""
    code = _make(data)
    border = 2
    rows = [[bool(v) for v in row] for row in code.matrix_iter(scale=1, border=border)]
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    lines = []
    # Inverted: light modules are drawn, so the code reads on dark and light terminals alike.
    for top, bottom in zip(rows[::2], rows[1::2], strict=True):
        chars = []
        for a, b in zip(top, bottom, strict=True):
            chars.append({(False, False): "█", (True, False): "▄", (False, True): "▀", (True, True): " "}[(a, b)])
        lines.append("".join(chars))
    return "\n".join(lines)
