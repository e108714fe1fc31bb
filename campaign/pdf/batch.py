"""Many signed letters at once: the supporters' CSV, and a pool of processes that seal.

Contract:
- :func:`read_supporters` reads ``supporters.csv`` (UTF-8; columns ``name``, ``title``,
  ``city``, ``signature_image``) and refuses, naming the line, a missing name, a value over
  several lines, an unknown column, or a signature image outside the CSV's folder (or the
  folder given as ``images``): a CSV from someone else must not make us read and stamp any
  file we can read.
- :func:`sign_many` renders and seals each job in worker processes (one renderer and one
  loaded seal per process), yielding (signed PDF, unsigned PDF or None) in job order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from campaign.errors import SelectionError


@dataclass(frozen=True)
class Supporter:
    """A supporter as the CLI or a CSV row gives them."""

    name: str
    title: str | None = None
    city: str | None = None
    signature_image: Path | None = None


def read_supporters(path: Path, images: Path | None = None) -> list[Supporter]:
    """supporters.csv: columns name (required), title, city, signature_image (a PNG path,
    relative to the CSV's folder, or to ``images`` when given, and never outside it: a CSV
    from someone else must not make us read and stamp any file we can read).
    Raises SelectionError naming the line."""
    import csv

    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SelectionError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise SelectionError(f"{path}: not UTF-8 text", hint="save the CSV as UTF-8") from None
    reader = csv.DictReader(text.splitlines())
    allowed = {"name", "title", "city", "signature_image"}
    header = reader.fieldnames or []
    if "name" not in header:
        raise SelectionError(
            f"{path}:1: the header must have a `name` column (and optionally title, city, signature_image)"
        )
    unknown = [c for c in header if c not in allowed]
    if unknown:
        raise SelectionError(
            f"{path}:1: unknown column {unknown[0]!r}; the columns are name, title, city, signature_image"
        )
    supporters = []
    for row in reader:
        line = reader.line_num
        name = (row.get("name") or "").strip()
        if not name:
            raise SelectionError(f"{path}:{line}: name is empty")
        if any("\n" in (v or "") or "\r" in (v or "") for v in row.values()):
            raise SelectionError(f"{path}:{line}: a value spans several lines")
        image = (row.get("signature_image") or "").strip()
        base = images if images is not None else path.parent
        image_path = (base / image) if image else None
        if image_path is not None and not image_path.resolve().is_relative_to(base.resolve()):
            where = f"--images {images}" if images is not None else "the CSV's folder"
            raise SelectionError(
                f"{path}:{line}: signature_image {image!r} is outside {where}; refused",
                hint="put the signature images in the CSV's folder, or name their folder with --images DIR",
            )
        if image_path is not None and not image_path.is_file():
            raise SelectionError(f"{path}:{line}: signature_image {image!r} not found")
        supporters.append(
            Supporter(
                name, (row.get("title") or "").strip() or None, (row.get("city") or "").strip() or None, image_path
            )
        )
    if not supporters:
        raise SelectionError(f"{path}: no supporters (only a header)")
    return supporters


_WORKER: dict[str, Any] = {}


def _init(keys: str, passphrase: str, timestamp_url: str | None) -> None:
    from campaign import pdf

    _WORKER["renderer"] = pdf.PdfRenderer()
    _WORKER["key"] = pdf.load_seal(Path(keys), passphrase)
    _WORKER["timestamp_url"] = timestamp_url


def _one(job: tuple[Any, Any, Any, bool]) -> tuple[bytes, bytes | None]:
    from campaign import pdf

    head, content, person, want_unsigned = job
    unsigned = _WORKER["renderer"].render(head, content, person)
    signed = pdf.sign_pdf(unsigned, _WORKER["key"], signer=person, timestamp_url=_WORKER["timestamp_url"])
    return signed, (unsigned if want_unsigned else None)


def sign_many(
    jobs: list[tuple[Any, Any, Any, bool]],
    keys: Path,
    passphrase: str,
    *,
    timestamp_url: str | None = None,
    processes: int | None = None,
) -> Iterator[tuple[bytes, bytes | None]]:
    """(signed, unsigned-or-None) for each (letterhead, content, signer, want_unsigned) job,
    in order, rendered and sealed by ``processes`` worker processes (default: one per core)."""
    from concurrent.futures import ProcessPoolExecutor

    workers = max(1, processes or os.cpu_count() or 1)
    with ProcessPoolExecutor(
        max_workers=workers, initializer=_init, initargs=(str(keys), passphrase, timestamp_url)
    ) as pool:
        yield from pool.map(_one, jobs)
