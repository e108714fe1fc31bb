"""Render one page of a PDF to PNG with poppler's pdftoppm, so a person can look at it.

    from tests.support.pdfpng import render_page_png
    render_page_png(pdf_bytes, Path("/tmp/letter.png"), page=2)

Also runnable: ``python -m tests.support.pdfpng letter.pdf out.png [page] [dpi]``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def have_pdftoppm() -> bool:
    """Whether poppler-utils' pdftoppm is on PATH."""
    return shutil.which("pdftoppm") is not None


def render_page_png(pdf: bytes, out: Path, page: int = 1, *, dpi: int = 100) -> Path:
    """Write page ``page`` (1-based) of ``pdf`` as a PNG at ``out``; return ``out``.

    Raises RuntimeError when pdftoppm is missing or fails (e.g. no such page).
    """
    exe = shutil.which("pdftoppm")
    if exe is None:
        raise RuntimeError("pdftoppm not found: install poppler-utils")
    with tempfile.TemporaryDirectory(prefix="pdfpng-") as tmp:
        source = Path(tmp) / "in.pdf"
        source.write_bytes(pdf)
        stem = Path(tmp) / "page"
        done = subprocess.run(
            [exe, "-png", "-r", str(dpi), "-f", str(page), "-l", str(page), "-singlefile",
             str(source), str(stem)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip
        produced = stem.with_suffix(".png")
        if done.returncode != 0 or not produced.exists():
            raise RuntimeError(f"pdftoppm failed on page {page}: {done.stderr.strip()[:300]}")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(produced, out)
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 2:
        raise SystemExit("usage: python -m tests.support.pdfpng IN.pdf OUT.png [PAGE] [DPI]")
    render_page_png(
        Path(args[0]).read_bytes(),
        Path(args[1]),
        int(args[2]) if len(args) > 2 else 1,
        dpi=int(args[3]) if len(args) > 3 else 100,
    )
