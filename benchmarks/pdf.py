"""Signed PDF letters per second: campaign.pdf against a straightforward pipeline.

    .venv/bin/python benchmarks/pdf.py            # 40 letters per measurement
    .venv/bin/python benchmarks/pdf.py -n 80

Both pipelines lay out the same two-page Russian and Tajik letters (the shipped
peace-agreement letter, same HTML, same stylesheet and fonts) with WeasyPrint reusing one
FontConfiguration and one CSS, and sign each one PAdES B-B with a visible stamp in PT
Sans using the same organisation seal (EC P-256).

- campaign: ``render_signed`` (the closed-room fetcher, the reserved signature field,
  the process-wide stamp font engine, a fixed signature reservation).
- baseline, written here: the same WeasyPrint render, then pyHanko signing a new field
  at the same box with ``TextStampStyle`` over a fresh ``GlyphAccumulatorFactory`` per
  signature (needs ``uharfbuzz``) and pyHanko's default size estimate.

Each is measured in one process and with two worker processes (spawned, warmed up
before the clock starts, the same N letters split in two). Prints figures; asserts
nothing.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pikepdf
from markdown_it import MarkdownIt
from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.sign import fields, signers
from pyhanko.stamp import TextStampStyle
from weasyprint import CSS, HTML
from weasyprint.text.fonts import FontConfiguration

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from campaign.pdf import (  # noqa: E402
    LetterContent,
    Letterhead,
    PdfRenderer,
    Signer,
    SigningKey,
    init_keys,
    load_seal,
    render_signed,
)
from campaign.pdf.layout import (  # noqa: E402
    ASSETS_DIR,
    FONTS_DIR,
    STAMP_HEIGHT_MM,
    STAMP_WIDTH_MM,
    letter_html,
)

PASSPHRASE = "benchmark passphrase"
ORG = "Civic Platform for Tajikistan"
HEAD = Letterhead(ORG, "Example Street 1\n10115 Berlin\nGermany", "letters@campaign.example")
SIGNERS = [
    Signer("Ҷамшед Қодиров", "Coordinator, Berlin group", "Berlin"),
    Signer("Мария Иванова", "Volunteer", "Vienna"),
    Signer("Farrukh Rahimov", None, "Warsaw"),
    Signer("Зарина Ҳусейнова", "Member of the board", "Prague"),
]
RECIPIENTS = [
    ("Office of the United Nations High Commissioner for Human Rights",
     "Palais Wilson\n52 rue des Pâquis\nCH-1201 Geneva\nSwitzerland"),
    ("OSCE Office for Democratic Institutions and Human Rights",
     "ul. Miodowa 10\n00-251 Warsaw\nPoland"),
    ("European Parliament, Subcommittee on Human Rights",
     "Rue Wiertz 60\nB-1047 Brussels\nBelgium"),
]  # fmt: skip
CLOSING = {"ru": "С уважением,", "tg": "Бо эҳтиром,"}
SALUTATION = {"ru": "Уважаемые дамы и господа!", "tg": "Муҳтарам хонумҳо ва ҷанобон!"}
SUBJECT = {
    "ru": "Таджикистан: Общее соглашение 1997 года и преследование оппозиции",
    "tg": "Тоҷикистон: Созишномаи умумии соли 1997 ва таъқиби мухолифин",
}
DATE = {"ru": "28 ноября 2026 г.", "tg": "28 ноябри 2026"}


def shipped_body(lang: str) -> str:
    """The shipped peace-agreement letter as markdown-it HTML (its few Jinja forms resolved)."""
    text = (ROOT / "letters" / "peace-agreement" / f"{lang}.md.j2").read_text(encoding="utf-8")
    text = text.split("---", 2)[2]
    text = re.sub(r"\{%-? set .*?-?%\}", "", text)
    text = re.sub(r"\{% if pdf %\}(.*?)\{% else %\}.*?\{% endif %\}", r"\1", text, flags=re.S)
    text = re.sub(r"\{% include .*?%\}", CLOSING[lang], text)
    text = text.replace("{{ sender.name }}", ORG).replace("{{ salutation }}", SALUTATION[lang])
    if "{%" in text or "{{" in text:
        raise SystemExit(f"letters/peace-agreement/{lang}.md.j2: unexpected template syntax")
    return MarkdownIt("commonmark", {"html": False}).render(text.strip() + "\n")


def letters(count: int) -> list[tuple[LetterContent, Signer]]:
    bodies = {lang: shipped_body(lang) for lang in ("ru", "tg")}
    out = []
    for i in range(count):
        lang = ("ru", "tg")[i % 2]
        name, address = RECIPIENTS[i % len(RECIPIENTS)]
        content = LetterContent(
            lang=lang,
            subject=SUBJECT[lang],
            body_html=bodies[lang],
            date_text=DATE[lang],
            reference=f"PA-2026-{i + 1:04d}",
            recipient_name=name,
            postal_address=address,
        )
        out.append((content, SIGNERS[i % len(SIGNERS)]))
    return out


# ---------------------------------------------------------------------------
# The two pipelines


class Campaign:
    def __init__(self, key: SigningKey) -> None:
        self.renderer = PdfRenderer()
        self.key = key

    def __call__(self, content: LetterContent, signer: Signer) -> bytes:
        return render_signed(self.renderer, HEAD, content, signer, self.key)


class Baseline:
    """WeasyPrint with a reused FontConfiguration and CSS; pyHanko the straightforward way."""

    # where campaign's layout puts the stamp box on a letter's last page (PDF points)
    MM = 72 / 25.4
    STAMP_BOX = (312, 160, 312 + round(STAMP_WIDTH_MM * MM), 160 + round(STAMP_HEIGHT_MM * MM))

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.fonts = FontConfiguration()
        css = (ASSETS_DIR / "letter.css").read_text(encoding="utf-8")
        css = css.replace("campaign-asset:/fonts/", FONTS_DIR.as_uri() + "/")
        css = css.replace("{stamp_width}", f"{STAMP_WIDTH_MM}mm")
        css = css.replace("{stamp_height}", f"{STAMP_HEIGHT_MM}mm")
        self.css = CSS(string=css, font_config=self.fonts)

    def __call__(self, content: LetterContent, signer: Signer) -> bytes:
        source = letter_html(HEAD, content, signer, lang=content.lang, stamp_id="stamp", with_image=False)
        pdf = HTML(string=source).write_pdf(stylesheets=[self.css], font_config=self.fonts)
        style = TextStampStyle(
            stamp_text=f"Signed by {signer.name}\n%(ts)s\nCertificate: {self.key.holder}",
            text_box_style=TextBoxStyle(font=GlyphAccumulatorFactory(str(FONTS_DIR / "PTS55F.ttf")), font_size=9),
            background=None,
        )
        meta = signers.PdfSignatureMetadata(
            field_name="Signature1",
            md_algorithm="sha256",
            subfilter=fields.SigSeedSubFilter.PADES,
        )
        pdf_signer = signers.PdfSigner(
            meta,
            self.key.signer,
            stamp_style=style,
            new_field_spec=fields.SigFieldSpec("Signature1", on_page=-1, box=self.STAMP_BOX),
        )
        out = pdf_signer.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf)))
        signed: bytes = out.getvalue()
        return signed


PIPELINES: dict[str, Callable[[SigningKey], Callable[[LetterContent, Signer], bytes]]] = {
    "campaign": Campaign,
    "baseline": Baseline,
}


# ---------------------------------------------------------------------------
# Measuring

_worker: Callable[[LetterContent, Signer], bytes] | None = None
_work: list[tuple[LetterContent, Signer]] = []


def _init_worker(pipeline: str, keys: str, count: int, barrier: object) -> None:
    global _worker, _work
    _work = letters(count)
    _worker = PIPELINES[pipeline](load_seal(Path(keys), PASSPHRASE))
    for content, signer in _work[:2]:
        _worker(content, signer)  # warm up: fonts, first subsets
    barrier.wait()  # type: ignore[attr-defined]


def _run_slice(indices: list[int]) -> int:
    assert _worker is not None
    size = 0
    for i in indices:
        content, signer = _work[i]
        size += len(_worker(content, signer))
    return size


@dataclass
class Result:
    seconds: float
    letters: int
    size: int

    @property
    def rate(self) -> float:
        return self.letters / self.seconds


class OneProcess:
    def __init__(self, pipeline: str, keys: Path, count: int) -> None:
        self.work = letters(count)
        self.run = PIPELINES[pipeline](load_seal(keys, PASSPHRASE))
        for content, signer in self.work[:2]:
            self.run(content, signer)  # warm up: fonts, first subsets

    def measure(self) -> Result:
        started = time.perf_counter()
        size = sum(len(self.run(content, signer)) for content, signer in self.work)
        return Result(time.perf_counter() - started, len(self.work), size)

    def close(self) -> None:
        pass


class TwoProcesses:
    def __init__(self, pipeline: str, keys: Path, count: int) -> None:
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(3)
        self.count = count
        self.pool = ctx.Pool(2, _init_worker, (pipeline, str(keys), count, barrier))
        barrier.wait()  # both workers are warm

    def measure(self) -> Result:
        halves = [list(range(0, self.count, 2)), list(range(1, self.count, 2))]
        started = time.perf_counter()
        sizes = self.pool.map(_run_slice, halves, chunksize=1)
        return Result(time.perf_counter() - started, self.count, sum(sizes))

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=40, help="letters per measurement (default 40)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best counts")
    args = parser.parse_args()
    names = ("baseline", "campaign")
    rates: dict[tuple[str, int], list[float]] = {(n, p): [] for n in names for p in (1, 2)}
    sizes: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-pdf-") as tmp:
        keys = Path(tmp) / "keys"
        init_keys(keys, PASSPHRASE, organisation=ORG)
        sample = Campaign(load_seal(keys, PASSPHRASE))(*letters(1)[0])
        with pikepdf.open(io.BytesIO(sample)) as opened:
            pages = len(opened.pages)
        print(f"PDF letters: render + PAdES B-B signature with a visible stamp; N={args.n}, "
              f"best of {args.rounds} interleaved rounds")  # fmt: skip
        print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
              f"sample signed letter: {pages} pages, {len(sample) // 1024} KB")  # fmt: skip
        for procs, runner in ((1, OneProcess), (2, TwoProcesses)):
            runners = {name: runner(name, keys, args.n) for name in names}
            try:
                for round_ in range(args.rounds):
                    order = names if round_ % 2 == 0 else names[::-1]
                    for name in order:
                        result = runners[name].measure()
                        rates[(name, procs)].append(result.rate)
                        sizes[name] = result.size / result.letters / 1024
            finally:
                for each in runners.values():
                    each.close()
    best = {key: max(values) for key, values in rates.items()}
    print()
    print(f"{'letters/s':<12}{'1 process':>12}{'2 processes':>14}{'scaling':>10}{'KB/letter':>11}")
    for name in names:
        one, two = best[(name, 1)], best[(name, 2)]
        print(f"{name:<12}{one:>12.2f}{two:>14.2f}{two / one:>9.2f}x{sizes[name]:>11.1f}")
    ratio_1 = best[("campaign", 1)] / best[("baseline", 1)]
    ratio_2 = best[("campaign", 2)] / best[("baseline", 2)]
    print(f"{'ratio':<12}{ratio_1:>11.2f}x{ratio_2:>13.2f}x")
    print()
    for key, values in rates.items():
        print(f"rounds {key[0]:<9} {key[1]} proc: " + "  ".join(f"{v:.2f}" for v in values))
    print()
    print(f"campaign vs baseline, per process: {ratio_1:.2f}x (aim >= 1.5x)")
    scaling = best[("campaign", 2)] / best[("campaign", 1)]
    print(f"campaign 1 -> 2 processes: {scaling:.2f}x (aim >= 1.7x)")


if __name__ == "__main__":
    main()
