"""Signature images from the signing page: checked, decoded safely, re-encoded as PNG.

Contract: :func:`normalise_signature` accepts PNG, JPEG or WebP bytes of at most
``MAX_BYTES``, refuses anything else (by content, never by the name or type the browser
claims), refuses images above ``MAX_PIXELS`` *before* decoding them (no decompression
bomb), and returns a fresh PNG (RGBA, at most 1200×400, metadata dropped), so what
reaches a PDF is always a small, clean image we made. Raises PdfError with a short
reason (``too-large``, ``not-an-image``, ``too-many-pixels``) as the message.
This module is Pillow's only home.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from campaign.errors import PdfError

MAX_BYTES = 1_000_000
MAX_PIXELS = 4000 * 2000
_FORMATS = ("PNG", "JPEG", "WEBP")
_OUT = (1200, 400)


def normalise_signature(data: bytes) -> bytes:
    """A clean PNG from an uploaded or drawn signature. Raises PdfError."""
    if len(data) > MAX_BYTES:
        raise PdfError("too-large")
    if not data:
        raise PdfError("not-an-image")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=_FORMATS) as image:
                width, height = image.size
                if not width or not height or width * height > MAX_PIXELS:
                    raise PdfError("too-many-pixels")
                image.load()
                converted = image.convert("RGBA")
        except (
            UnidentifiedImageError,
            OSError,
            ValueError,
            SyntaxError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ):
            raise PdfError("not-an-image") from None
    converted.thumbnail(_OUT)
    out = io.BytesIO()
    converted.save(out, format="PNG", optimize=False)
    return out.getvalue()
