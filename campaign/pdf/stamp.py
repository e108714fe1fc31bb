"""The bundled font for the visible signature stamp, prepared once per process.

pyHanko's default stamp font is an unembedded Courier that garbles Cyrillic, and its
OpenType engine re-reads and re-subsets the font file for every signature (more than
half of a signed letter's time) and writes glyph widths as if every font had 1,000
units per em. This module gives pyHanko a font engine for PT Sans that

- parses the font file once per process;
- embeds one subset made for a fixed repertoire (Latin, Latin-1, Latin Extended-A,
  all of Cyrillic including the Tajik letters ғ ӣ қ ӯ ҳ ҷ, common punctuation). A
  stamp text with letters outside it gets its own subset, cached by the extra glyphs,
  so a run of letters signed by one person subsets the font once;
- keeps glyph ids (CIDToGIDMap /Identity), writes widths scaled to 1/1000 em and a
  ToUnicode map, so the stamp text can be copied and searched;
- draws a character the font lacks as "?" (never an invisible or wrong glyph).

Thread-safe; nothing here does I/O after the first use except reading the font file
once.
"""

from __future__ import annotations

import functools
import threading
import unicodedata
import zlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from fontTools import subset as ft_subset
from fontTools.ttLib import TTFont
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.font.api import FontEngine, FontEngineFactory, ShapeResult
from pyhanko.pdf_utils.writer import BasePdfFileWriter

FONTS_DIR = Path(__file__).resolve().parent.parent / "fonts"
STAMP_FONT_FILE = FONTS_DIR / "PTS55F.ttf"

_REPERTOIRE_RANGES = (
    (0x0020, 0x007E),  # Basic Latin
    (0x00A0, 0x00FF),  # Latin-1
    (0x0100, 0x017F),  # Latin Extended-A (Polish, Turkish, Czech... names)
    (0x0218, 0x021B),  # Romanian comma-below letters
    (0x0400, 0x052F),  # Cyrillic and Cyrillic Supplement (Tajik, Kazakh, Uzbek...)
    (0x2010, 0x2026),  # dashes, quotes, ellipsis
    (0x2116, 0x2116),  # numero sign
    (0x20AC, 0x20AC),  # euro sign
)

pdf_name = generic.NameObject

# Characters PT Sans lacks that have an obvious stand-in.
_STAND_INS = {
    0x2010: "-",  # hyphen
    0x2011: "-",  # non-breaking hyphen
    0x2009: " ",  # thin space
    0x202F: " ",  # narrow no-break space
    0x200B: "",  # zero-width space
    0x00AD: "",  # soft hyphen
}


@dataclass(frozen=True)
class _Subset:
    """Everything about one embedded subset that does not change between PDFs."""

    program: bytes  # the subset TrueType font, zlib-compressed
    program_length: int  # its uncompressed length (/Length1)
    widths: list[int | list[int]]  # the /W array of the CIDFont
    to_unicode: bytes  # the ToUnicode CMap, zlib-compressed


@dataclass(frozen=True)
class _Metrics:
    """The font descriptor's numbers, in 1/1000 em."""

    ascent: int
    descent: int
    cap_height: int
    bbox: tuple[int, ...]
    italic_angle: float
    stem_v: int


class StampFont:
    """One TrueType font, parsed once, that hands out cached subsets."""

    def __init__(self, path: Path) -> None:
        self._raw = path.read_bytes()
        tt = TTFont(BytesIO(self._raw))
        upem = tt["head"].unitsPerEm
        hmtx = tt["hmtx"]
        order = tt.getGlyphOrder()
        self.ps_name = str(tt["name"].getDebugName(6) or path.stem)
        self._gid_by_cp = {cp: tt.getGlyphID(name) for cp, name in tt.getBestCmap().items()}
        # Widths in 1/1000 em whatever the font's units per em (pyHanko assumes 1,000).
        self.advance = [round(hmtx[name][0] * 1000 / upem) for name in order]
        self._cp_by_gid: dict[int, int] = {}
        for cp in sorted(self._gid_by_cp):
            self._cp_by_gid.setdefault(self._gid_by_cp[cp], cp)
        self._question = self._gid_by_cp[ord("?")]
        self.base = frozenset(
            self._gid_by_cp[cp]
            for first, last in _REPERTOIRE_RANGES
            for cp in range(first, last + 1)
            if cp in self._gid_by_cp
        )
        hhea, head, os2, post = tt["hhea"], tt["head"], tt["OS/2"], tt["post"]
        scale = 1000 / upem
        self.metrics = _Metrics(
            ascent=round(hhea.ascent * scale),
            descent=round(hhea.descent * scale),
            cap_height=round(getattr(os2, "sCapHeight", 700) * scale),
            bbox=tuple(round(v * scale) for v in (head.xMin, head.yMin, head.xMax, head.yMax)),
            italic_angle=float(getattr(post, "italicAngle", 0)),
            stem_v=int(10 + 220 * (os2.usWeightClass - 50) / 900),
        )
        self._subsets: dict[frozenset[int], _Subset] = {}
        self._lock = threading.Lock()

    def glyphs(self, text: str) -> list[int]:
        """Glyph ids for ``text`` (NFC); a character the font lacks becomes "?"."""
        out: list[int] = []
        for char in unicodedata.normalize("NFC", text):
            gid = self._gid_by_cp.get(ord(char), 0)
            if not gid and ord(char) in _STAND_INS:
                out.extend(self._gid_by_cp[ord(c)] for c in _STAND_INS[ord(char)])
                continue
            out.append(gid if gid else self._question)
        return out

    def subset(self, used: frozenset[int]) -> _Subset:
        """The cached subset that covers ``used`` (the repertoire plus any extras)."""
        key = used - self.base
        with self._lock:
            found = self._subsets.get(key)
            if found is None:
                found = self._subsets[key] = self._make_subset(self.base | key)
            return found

    def _make_subset(self, gids: frozenset[int]) -> _Subset:
        options = ft_subset.Options()
        options.retain_gids = True  # CIDs are glyph ids (CIDToGIDMap /Identity)
        options.notdef_outline = True
        options.layout_features = []
        options.hinting = False
        options.glyph_names = False
        options.drop_tables += ["GSUB", "GPOS", "GDEF", "kern", "DSIG"]
        subsetter = ft_subset.Subsetter(options=options)
        subsetter.populate(gids=sorted(gids | {0}))
        tt = TTFont(BytesIO(self._raw))
        subsetter.subset(tt)
        buf = BytesIO()
        tt.save(buf)
        program = buf.getvalue()
        ordered = sorted(gids)
        widths: list[int | list[int]] = []
        run: list[int] = []
        start = previous = -2
        for gid in ordered:
            if gid != previous + 1 and run:
                widths += [start, run]
                run = []
            if not run:
                start = gid
            run.append(self.advance[gid])
            previous = gid
        if run:
            widths += [start, run]
        return _Subset(
            program=zlib.compress(program, 6),
            program_length=len(program),
            widths=widths,
            to_unicode=zlib.compress(self._to_unicode(ordered), 6),
        )

    def _to_unicode(self, gids: list[int]) -> bytes:
        pairs = [(gid, self._cp_by_gid[gid]) for gid in gids if gid in self._cp_by_gid]
        lines = [
            "/CIDInit /ProcSet findresource begin",
            "12 dict begin",
            "begincmap",
            "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
            "/CMapName /Adobe-Identity-UCS def",
            "/CMapType 2 def",
            "1 begincodespacerange",
            "<0000> <FFFF>",
            "endcodespacerange",
        ]
        for i in range(0, len(pairs), 100):
            chunk = pairs[i : i + 100]
            lines.append(f"{len(chunk)} beginbfchar")
            for gid, cp in chunk:
                lines.append(f"<{gid:04X}> <{chr(cp).encode('utf-16-be').hex().upper()}>")
            lines.append("endbfchar")
        lines += ["endcmap", "CMapName currentdict /CMap defineresource pop", "end", "end"]
        return "\n".join(lines).encode("ascii")


@functools.lru_cache(maxsize=1)
def stamp_font() -> StampFont:
    """The process-wide PT Sans used for stamps (parsed on first use)."""
    return StampFont(STAMP_FONT_FILE)


def _flate_stream(data: bytes, extra: dict[str, generic.PdfObject]) -> generic.StreamObject:
    header = generic.DictionaryObject({pdf_name("/Filter"): pdf_name("/FlateDecode")})
    for key, value in extra.items():
        header[pdf_name(key)] = value
    return generic.StreamObject(header, encoded_data=data)


class StampFontEngine(FontEngine):
    """A pyHanko font engine writing one cached :class:`StampFont` subset."""

    def __init__(
        self,
        writer: BasePdfFileWriter,
        font: StampFont,
        font_size: int,
        obj_stream: object = None,
    ) -> None:
        super().__init__(writer, font.ps_name, embedded_subset=True, obj_stream=obj_stream, font_size=font_size)
        self._font = font
        self._used: set[int] = set()
        self._ref = writer.allocate_placeholder()
        self._written = False

    @property
    def uses_complex_positioning(self) -> bool:
        return False

    def shape(self, txt: str) -> ShapeResult:
        gids = self._font.glyphs(txt)
        if not gids:
            return ShapeResult(b"", 0, 0)
        self._used.update(gids)
        ops = b"<" + "".join(f"{gid:04x}" for gid in gids).encode("ascii") + b"> Tj"
        advance = sum(self._font.advance[gid] for gid in gids) / 1000
        return ShapeResult(graphics_ops=ops, x_advance=advance, y_advance=0)

    def as_resource(self) -> generic.IndirectObject:
        return self._ref

    def prepare_write(self) -> None:
        if self._written:
            return
        self._written = True
        font = self._font
        part = font.subset(frozenset(self._used))
        writer = self.writer
        name = f"{self.subset_prefix}+{font.ps_name}"
        program = writer.add_object(
            _flate_stream(part.program, {"/Length1": generic.NumberObject(part.program_length)})
        )
        info = font.metrics
        descriptor = generic.DictionaryObject(
            {
                pdf_name("/Type"): pdf_name("/FontDescriptor"),
                pdf_name("/FontName"): pdf_name("/" + name),
                pdf_name("/Flags"): generic.NumberObject(32),  # nonsymbolic
                pdf_name("/FontBBox"): generic.ArrayObject([generic.NumberObject(v) for v in info.bbox]),
                pdf_name("/ItalicAngle"): generic.FloatObject(info.italic_angle),
                pdf_name("/Ascent"): generic.NumberObject(info.ascent),
                pdf_name("/Descent"): generic.NumberObject(info.descent),
                pdf_name("/CapHeight"): generic.NumberObject(info.cap_height),
                pdf_name("/StemV"): generic.NumberObject(info.stem_v),
                pdf_name("/FontFile2"): program,
            }
        )
        widths = generic.ArrayObject()
        for item in part.widths:
            if isinstance(item, list):
                widths.append(generic.ArrayObject([generic.NumberObject(w) for w in item]))
            else:
                widths.append(generic.NumberObject(item))
        cidfont = generic.DictionaryObject(
            {
                pdf_name("/Type"): pdf_name("/Font"),
                pdf_name("/Subtype"): pdf_name("/CIDFontType2"),
                pdf_name("/BaseFont"): pdf_name("/" + name),
                pdf_name("/CIDSystemInfo"): generic.DictionaryObject(
                    {
                        pdf_name("/Registry"): generic.pdf_string("Adobe"),
                        pdf_name("/Ordering"): generic.pdf_string("Identity"),
                        pdf_name("/Supplement"): generic.NumberObject(0),
                    }
                ),
                pdf_name("/FontDescriptor"): writer.add_object(descriptor),
                pdf_name("/CIDToGIDMap"): pdf_name("/Identity"),
                pdf_name("/DW"): generic.NumberObject(500),
                pdf_name("/W"): widths,
            }
        )
        type0 = generic.DictionaryObject(
            {
                pdf_name("/Type"): pdf_name("/Font"),
                pdf_name("/Subtype"): pdf_name("/Type0"),
                pdf_name("/BaseFont"): pdf_name("/" + name),
                pdf_name("/Encoding"): pdf_name("/Identity-H"),
                pdf_name("/DescendantFonts"): generic.ArrayObject([writer.add_object(cidfont)]),
                pdf_name("/ToUnicode"): writer.add_object(_flate_stream(part.to_unicode, {})),
            }
        )
        writer.add_object(type0, idnum=self._ref.idnum)


@dataclass(frozen=True)
class StampFontFactory(FontEngineFactory):
    """Hands pyHanko a :class:`StampFontEngine` over the shared :func:`stamp_font`."""

    font_size: int = 8

    def create_font_engine(self, writer: BasePdfFileWriter, obj_stream: object = None) -> StampFontEngine:
        return StampFontEngine(writer, stamp_font(), self.font_size, obj_stream)
