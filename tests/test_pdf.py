"""PDF letters: rendering (fonts, languages, the closed room), keys, PAdES signing,
verification of good and tampered files, merging for print."""

from __future__ import annotations

import datetime as dt
import http.server
import re
import shutil
import socket
import stat
import subprocess
import threading
import unicodedata
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pikepdf
import pypdf
import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem
from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fontTools.ttLib import TTFont
from PIL import Image
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign.signers import SimpleSigner
from pyhanko.sign.timestamps import DummyTimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

from campaign.errors import PdfError
from campaign.pdf import (
    ASSURANCE,
    FIELD_NAME,
    LetterContent,
    Letterhead,
    PdfRenderer,
    Signer,
    SigningKey,
    init_keys,
    issue_supporter,
    load_p12,
    load_seal,
    merge_unsigned,
    render_signed,
    root_certificate_pem,
    root_fingerprint,
    sign_pdf,
    verify_pdf,
)
from campaign.pdf.layout import FONTS_DIR
from tests.support.pdfpng import have_pdftoppm, render_page_png

PASSPHRASE = "correct horse battery staple"
TAJIK_LETTERS = "ғӣқӯҳҷҒӢҚӮҲҶ"
PROBES_TG = ["Ҷумҳурии", "ӯҳдадориҳо", "қонунӣ", "ғайриҳукуматӣ"]
PROBES_RU = ["Федерации", "уважением", "обязательств"]

HEAD = Letterhead(
    name="Civic Platform for Tajikistan",
    address="Example Street 1\n10115 Berlin\nGermany",
    email="letters@campaign.example",
)
SIGNER = Signer(name="Ҷамшед Қодиров", title="Coordinator, Berlin group", city="Berlin")

_TG_PARAGRAPH = (
    "Созишномаи умумӣ ба ҷанги шаҳрвандии солҳои 1992–1997 хотима бахшид. Тарафҳо "
    "ӯҳдадор шуданд, ки мухолифинро ба ҳаёти сиёсии кишвар баргардонанд ва фаъолияти "
    "озоди ҳизбҳои сиёсиро кафолат диҳанд. Ташкилотҳои ғайриҳукуматӣ борҳо нигаронии "
    "ҷиддии худро изҳор кардаанд."
)
_RU_PARAGRAPH = (
    "Общее соглашение положило конец гражданской войне 1992–1997 годов. Оно стало итогом "
    "многолетних межтаджикских переговоров под эгидой ООН при участии государств-"
    "наблюдателей и гарантов, в том числе Российской Федерации, а также ОБСЕ."
)


def tg_body(paragraphs: int = 3) -> str:
    # Decomposed on purpose (и + U+0304 for ӣ, у + U+0304 for ӯ): rendering must NFC it.
    text = unicodedata.normalize(
        "NFD",
        "<p>Муҳтарам хонумҳо ва ҷанобон!</p>\n"
        + f"<p>{_TG_PARAGRAPH}</p>\n" * paragraphs
        + "<ol>\n<li>дар назди Ҳукумати Ҷумҳурии Тоҷикистон масъалаи иҷрои ӯҳдадориҳо "
        "гузоред;</li>\n<li>фазои <em>қонунӣ</em> барои ташкилотҳои <strong>ғайриҳукуматӣ"
        "</strong> кафолат диҳед.</li>\n</ol>\n<p>Бо эҳтиром,</p>\n",
    )
    assert "ӣ" not in text  # really decomposed
    return text


def ru_body(paragraphs: int = 3) -> str:
    return (
        "<p>Уважаемые дамы и господа!</p>\n"
        + f"<p>{_RU_PARAGRAPH}</p>\n" * paragraphs
        + "<p>Прошу поставить вопрос о выполнении обязательств Российской Федерации.</p>\n"
        "<p>С уважением,</p>\n"
    )


def content(lang: str = "tg", body: str | None = None, subject: str | None = None) -> LetterContent:
    return LetterContent(
        lang=lang,
        subject=subject or "Тоҷикистон: Созишномаи умумии соли 1997 ва таъқиби мухолифин",
        body_html=body if body is not None else (tg_body() if lang == "tg" else ru_body()),
        date_text="28 ноябри 2026" if lang == "tg" else "28 ноября 2026 г.",
        reference="PA-2026-0007",
        recipient_name="Office of the United Nations High Commissioner for Human Rights",
        postal_address="Palais Wilson\n52 rue des Pâquis\nCH-1201 Geneva\nSwitzerland",
    )


def pdf_text(pdf: bytes) -> str:
    """All text, with words broken by hyphenation at line ends joined again."""
    reader = pypdf.PdfReader(BytesIO(pdf))
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    text = re.sub(r"[-\u2010\u00ad]\s*\n", "", text)
    return unicodedata.normalize("NFC", text)


def poppler_text(pdf: bytes, page: int | None = None) -> str:
    """Text as poppler sees it, annotation appearances (the stamp) included."""
    pages = ["-f", str(page), "-l", str(page)] if page else []
    done = subprocess.run(["pdftotext", *pages, "-", "-"], input=pdf, capture_output=True, check=True)
    return unicodedata.normalize("NFC", re.sub(r"[-\u2010\u00ad]\s*\n", "", done.stdout.decode()))


def page_texts(pdf: bytes) -> list[str]:
    reader = pypdf.PdfReader(BytesIO(pdf))
    return [re.sub(r"[-\u2010\u00ad]\s*\n", "", page.extract_text() or "") for page in reader.pages]


# ---------------------------------------------------------------------------
# Fixtures (module scope: keys and fonts are made once)


@pytest.fixture(scope="module")
def renderer() -> PdfRenderer:
    return PdfRenderer()


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("org") / "keys"
    init_keys(folder, PASSPHRASE, organisation="Civic Platform for Tajikistan")
    return folder


@pytest.fixture(scope="module")
def seal(keys_dir: Path) -> SigningKey:
    return load_seal(keys_dir, PASSPHRASE)


@pytest.fixture(scope="module")
def root_pem(keys_dir: Path) -> bytes:
    return root_certificate_pem(keys_dir)


@pytest.fixture(scope="module")
def other_root(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("other") / "keys"
    init_keys(folder, PASSPHRASE, organisation="Someone Else")
    return root_certificate_pem(folder)


@pytest.fixture(scope="module")
def unsigned_tg(renderer: PdfRenderer) -> bytes:
    return renderer.render(HEAD, content("tg"), SIGNER)


@pytest.fixture(scope="module")
def signed_tg(unsigned_tg: bytes, seal: SigningKey) -> bytes:
    return sign_pdf(unsigned_tg, seal, signer=SIGNER, reason="Appeal to OHCHR")


# ---------------------------------------------------------------------------
# Fonts and text


def test_bundled_fonts_cover_russian_and_tajik() -> None:
    assert (FONTS_DIR / "LICENSE.txt").read_text().count("ParaType") >= 3
    for name in ("PTF55F", "PTF56F", "PTF75F", "PTF76F", "PTS55F", "PTS75F"):
        cmap = TTFont(FONTS_DIR / f"{name}.ttf").getBestCmap()
        missing = [c for c in TAJIK_LETTERS + "ЁёЖжЩщЫыЭэЮюЯя«»—№" if ord(c) not in cmap]
        assert not missing, f"{name} lacks {missing}"


@pytest.mark.parametrize(("lang", "probes"), [("tg", PROBES_TG), ("ru", PROBES_RU)])
def test_probe_words_survive_rendering(renderer: PdfRenderer, seal: SigningKey, lang: str, probes: list[str]) -> None:
    pdf = render_signed(renderer, HEAD, content(lang), SIGNER, seal)
    text = pdf_text(pdf)
    for word in probes:
        assert word in text, f"{word!r} is not in the extracted {lang} text"
    assert "Ҷамшед Қодиров" in text  # the signature block and the stamp
    assert "PA-2026-0007" in text


@pytest.mark.parametrize("lang", ["ru", "tg"])
def test_only_the_bundled_fonts_are_embedded(renderer: PdfRenderer, seal: SigningKey, lang: str) -> None:
    # Russian is hyphenated: the hyphen must not come from a host font either.
    body = ru_body(8) if lang == "ru" else tg_body(8)
    signed = render_signed(renderer, HEAD, content(lang, body), SIGNER, seal)
    first_page = pypdf.PdfReader(BytesIO(signed)).pages[0].extract_text()
    assert lang != "ru" or re.search(r"-\n", first_page)
    pdf = pikepdf.open(BytesIO(signed))
    fonts = set()
    for obj in pdf.objects:
        if isinstance(obj, pikepdf.Dictionary) and obj.get("/Type") == "/Font":
            if obj.get("/Subtype") in ("/CIDFontType2", "/CIDFontType0"):
                continue  # reached through its Type0 parent
            descendant = obj.get("/DescendantFonts")
            target = descendant[0] if descendant is not None else obj
            descriptor = target.get("/FontDescriptor")
            embedded = descriptor is not None and any(
                key in descriptor for key in ("/FontFile", "/FontFile2", "/FontFile3")
            )
            fonts.add((str(obj.get("/BaseFont")).split("+")[-1], embedded))
    names = {name for name, _ in fonts}
    assert fonts and all(embedded for _, embedded in fonts), fonts
    # WeasyPrint names embedded fonts after the @font-face family: "Campaign-*" proves
    # the bundled files were used, not a host copy of PT Serif; PT Sans is the stamp's.
    allowed = {"Campaign-Serif", "Campaign-Serif-Italic", "Campaign-Serif-Bold"}
    allowed |= {"Campaign-Serif-BoldItalic", "Campaign-Sans", "Campaign-Sans-Bold"}
    assert names <= allowed | {"PTSans-Regular"}, names
    assert {"Campaign-Serif", "Campaign-Sans-Bold", "PTSans-Regular"} <= names


def test_letter_layout_fields(unsigned_tg: bytes) -> None:
    reader = pypdf.PdfReader(BytesIO(unsigned_tg))
    box = reader.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)
    first = reader.pages[0].extract_text()
    assert "Civic Platform for Tajikistan" in first
    assert "Palais Wilson" in first and "CH-1201 Geneva" in first
    assert "Сана" in first and "Рақам" in first
    last = page_texts(unsigned_tg)[-1]
    pages = len(reader.pages)
    assert f"Саҳифаи {pages} аз {pages}" in last
    assert reader.root_object["/Lang"] == "tg"


def test_signature_block_is_never_split(renderer: PdfRenderer) -> None:
    """Whatever the body length, the closing formula, the signer's name and the reserved
    field share a page (with 7 paragraphs the block would straddle pages 1 and 2)."""
    moved = False
    for paragraphs in range(5, 11):
        pdf = renderer.render(HEAD, content("ru", ru_body(paragraphs)), SIGNER)
        reader = pypdf.PdfReader(BytesIO(pdf))
        field_pages = [
            number
            for number, page in enumerate(reader.pages)
            for annot in page.get("/Annots", [])
            if annot.get_object().get("/T") == FIELD_NAME
        ]
        assert len(field_pages) == 1
        texts = page_texts(pdf)
        on_page = texts[field_pages[0]]
        assert "Ҷамшед Қодиров" in on_page and "Coordinator, Berlin group" in on_page
        assert "С уважением" in on_page
        moved |= field_pages[0] == 1 and "Прошу поставить" not in on_page
    assert moved  # one length did push the whole block (with its closing) to page 2


def test_signature_image_is_placed(renderer: PdfRenderer, tmp_path: Path) -> None:
    image = tmp_path / "signature.png"
    Image.new("RGBA", (300, 100), (20, 30, 120, 255)).save(image)
    signer = Signer("Jane Doe", signature_image=image)
    pdf = pikepdf.open(BytesIO(renderer.render(HEAD, content("en", "<p>Hello</p>"), signer)))
    assert sum(len(page.get_images()) for page in pdf.pages) == 1
    not_png = tmp_path / "signature.txt"
    not_png.write_text("GIF89a")
    with pytest.raises(PdfError, match="not a PNG"):
        renderer.render(HEAD, content("en", "<p>x</p>"), Signer("Jane", signature_image=not_png))
    with pytest.raises(PdfError, match="cannot read"):
        renderer.render(HEAD, content("en"), Signer("Jane", signature_image=tmp_path / "none.png"))


def test_bad_language_code(renderer: PdfRenderer) -> None:
    with pytest.raises(PdfError, match="language code"):
        renderer.render(HEAD, content('en"><script>'), SIGNER)


# ---------------------------------------------------------------------------
# The closed room


HOSTILE = [
    '<img src="file:///etc/hostname">',
    '<a href="http://evil.example/track">click</a>',
    '<link rel="stylesheet" href="http://evil.example/style.css">',
    '<link rel="attachment" href="file:///etc/hostname">',
    '<img src="data:image/png;base64,iVBORw0KGgo=">',
    '<p style="background: url(file:///etc/hostname)">x</p>',
]


def _hostname() -> str:
    try:
        return Path("/etc/hostname").read_text().strip() or socket.gethostname()
    except OSError:
        return socket.gethostname()


def test_hostile_markup_fetches_and_embeds_nothing(renderer: PdfRenderer) -> None:
    signer = Signer(name=HOSTILE[0] + HOSTILE[1], title=HOSTILE[2], city=HOSTILE[3])
    body = "<p>Уважаемые дамы и господа!</p>\n" + "\n".join(HOSTILE) + "\n<p>С уважением,</p>"
    pdf = renderer.render(HEAD, content("ru", body), signer)
    refused = renderer.refused_urls
    # Only body_html markup reached the fetcher, which refused it; supporter text is escaped.
    assert "file:///etc/hostname" in refused
    assert "http://evil.example/style.css" in refused
    assert all(url.startswith(("file:", "http:", "data:")) for url in refused)
    raw = pikepdf.open(BytesIO(pdf))
    for page in raw.pages:
        for annot in page.get("/Annots", []):
            assert annot.get("/Subtype") != "/Link"
            assert "/A" not in annot
        assert len(page.get_images()) == 0
    assert "/EmbeddedFiles" not in raw.Root.get("/Names", {})
    assert b"/URI" not in pdf
    text = pdf_text(pdf)
    hostname = _hostname()
    if len(hostname) >= 4:
        assert hostname not in text
    assert '<img src="file:///etc/hostname">' in text  # the supporter's text, as text


def test_the_fetcher_never_reaches_urllib(renderer: PdfRenderer, monkeypatch: pytest.MonkeyPatch) -> None:
    import weasyprint.urls

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("WeasyPrint's own fetcher was used")

    monkeypatch.setattr(weasyprint.urls.URLFetcher, "open", forbidden)
    monkeypatch.setattr(weasyprint.urls.URLFetcher, "fetch", forbidden)
    renderer.render(HEAD, content("ru", "\n".join(HOSTILE)), SIGNER)
    assert "file:///etc/hostname" in renderer.refused_urls


def test_escaping_in_header_strings(renderer: PdfRenderer) -> None:
    head = Letterhead(name='Org "</style><img src=file:///etc/hostname>', address=None, email=None)
    pdf = renderer.render(head, content("en", "<p>Hello</p>"), None)
    assert not renderer.refused_urls
    assert 'Org "</style><img src=file:///etc/hostname>' in pdf_text(pdf)


# ---------------------------------------------------------------------------
# Keys


def test_key_files_are_private(keys_dir: Path) -> None:
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    files = sorted(p.name for p in keys_dir.iterdir() if p.is_file())
    assert files == ["root.cert.pem", "root.key.pem", "seal.cert.pem", "seal.key.pem"]
    for path in keys_dir.iterdir():
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for name in ("root.key.pem", "seal.key.pem"):
        kind, _, der = asn1_pem.unarmor((keys_dir / name).read_bytes())
        assert kind == "ENCRYPTED PRIVATE KEY"
        scheme = asn1_keys.EncryptedPrivateKeyInfo.load(der)["encryption_algorithm"]
        kdf = scheme["parameters"]["key_derivation_func"]["parameters"]
        assert kdf["iteration_count"].native >= 600_000  # not BestAvailable's 2,048
        assert scheme["parameters"]["encryption_scheme"]["algorithm"].native == "aes256_cbc"


def test_certificates(keys_dir: Path, seal: SigningKey) -> None:
    root = x509.load_pem_x509_certificate((keys_dir / "root.cert.pem").read_bytes())
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    cert = x509.load_der_x509_certificate(seal.certificate_der)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment and not usage.key_cert_sign
    assert cert.issuer == root.subject
    fingerprint = root_fingerprint(keys_dir)
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", fingerprint)
    assert fingerprint == root.fingerprint(hashes.SHA256()).hex(":").upper()
    assert seal.holder == "Civic Platform for Tajikistan Seal"
    assert PASSPHRASE not in repr(seal) and "signer" not in repr(seal)


def test_init_refuses_existing_keys(keys_dir: Path) -> None:
    before = (keys_dir / "root.key.pem").read_bytes()
    with pytest.raises(PdfError, match="already exist"):
        init_keys(keys_dir, PASSPHRASE, organisation="Civic Platform for Tajikistan")
    assert (keys_dir / "root.key.pem").read_bytes() == before


def test_short_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PdfError, match="shorter than"):
        init_keys(tmp_path / "k", "short", organisation="Org")
    assert not (tmp_path / "k" / "root.key.pem").exists()


def test_wrong_passphrase_is_one_line(keys_dir: Path) -> None:
    with pytest.raises(PdfError) as caught:
        load_seal(keys_dir, "not the passphrase")
    assert "wrong passphrase" in caught.value.message and "\n" not in caught.value.message
    assert caught.value.__cause__ is None
    with pytest.raises(PdfError, match="wrong passphrase"):
        issue_supporter(keys_dir, "nope", name="X", email=None, p12_passphrase=PASSPHRASE)


def test_missing_keys(tmp_path: Path) -> None:
    with pytest.raises(PdfError, match="no keys folder"):
        load_seal(tmp_path / "absent", PASSPHRASE)
    with pytest.raises(PdfError, match="no root certificate"):
        root_fingerprint(tmp_path)


def test_supporter_p12_signs_and_verifies(
    keys_dir: Path, renderer: PdfRenderer, root_pem: bytes, tmp_path: Path
) -> None:
    p12 = issue_supporter(
        keys_dir,
        PASSPHRASE,
        name="Ҷамшед Қодиров",
        email="j@example.org",
        p12_passphrase="p12 secret!",
    )
    issued = list((keys_dir / "issued").iterdir())
    assert issued and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in issued)
    path = tmp_path / "jamshed.p12"
    path.write_bytes(p12)
    key = load_p12(path, "p12 secret!")
    assert key.holder == "Ҷамшед Қодиров"
    pdf = render_signed(renderer, HEAD, content("ru"), SIGNER, key)
    result = verify_pdf(pdf, trust_roots=[root_pem], name="jamshed.pdf")
    assert result.ok and result.signer == "Ҷамшед Қодиров", result.reasons
    with pytest.raises(PdfError) as caught:
        load_p12(path, "wrong")
    assert "wrong passphrase" in caught.value.message and "\n" not in caught.value.message
    junk = tmp_path / "junk.p12"
    junk.write_bytes(b"this is not a PKCS#12 file")
    with pytest.raises(PdfError, match="not a PKCS#12"):
        load_p12(junk, "whatever")


# ---------------------------------------------------------------------------
# Signing and verification


def test_signed_letter_verifies(signed_tg: bytes, root_pem: bytes) -> None:
    result = verify_pdf(signed_tg, trust_roots=[root_pem], name="tg.pdf")
    assert result.ok, result.reasons
    assert (result.intact, result.trusted, result.unmodified) == (True, True, True)
    assert result.reasons == []
    assert result.signer == "Civic Platform for Tajikistan Seal"
    assert result.signing_time is not None
    assert abs(result.signing_time - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=10)
    assert "legal identity" in ASSURANCE


def test_der_root_is_accepted(signed_tg: bytes, root_pem: bytes) -> None:
    der = x509.load_pem_x509_certificate(root_pem).public_bytes(serialization.Encoding.DER)
    assert verify_pdf(signed_tg, trust_roots=[der]).ok


def test_not_trusted_against_another_root(signed_tg: bytes, other_root: bytes) -> None:
    result = verify_pdf(signed_tg, trust_roots=[other_root])
    assert result.intact and result.unmodified
    assert not result.trusted and not result.ok
    assert any("not issued by an organisation you trust" in r for r in result.reasons)


def test_visible_stamp_in_the_reserved_box(signed_tg: bytes, unsigned_tg: bytes) -> None:
    """The signature fills the reserved field, which keeps the box the layout made."""

    def widget(pdf: bytes) -> tuple[int, list[float], object]:
        reader = pypdf.PdfReader(BytesIO(pdf))
        for number, page in enumerate(reader.pages):
            for annot in page.get("/Annots", []):
                obj = annot.get_object()
                if obj.get("/T") == FIELD_NAME:
                    return number, [round(float(v), 1) for v in obj["/Rect"]], obj.get("/AP")
        raise AssertionError("no signature field")

    page_before, rect_before, ap_before = widget(unsigned_tg)
    page_after, rect_after, ap_after = widget(signed_tg)
    assert (page_before, rect_before) == (page_after, rect_after)
    width, height = rect_after[2] - rect_after[0], rect_after[3] - rect_after[1]
    assert (round(width), round(height)) == (213, 68)  # 75 x 24 mm
    assert ap_before is None and ap_after is not None
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is needed to read annotation appearances")
    stamp_text = poppler_text(signed_tg, page_after + 1)
    assert "Имзои электронӣ" in stamp_text
    # the issuer (the organisation's root) and its fingerprint, not the holder again (issue 17, 11)
    assert "Сертификат: Civic Platform for Tajikistan Root" in stamp_text
    assert re.search(r"SHA-256: [0-9A-F]{2}(:[0-9A-F]{2}){3} … [0-9A-F]{2}(:[0-9A-F]{2}){3}", stamp_text)
    assert "Имзокунанда: Ҷамшед Қодиров" in stamp_text


def test_expired_certificate_is_refused(unsigned_tg: bytes) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Old Key")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2021, 1, 1, tzinfo=dt.UTC))
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    key_der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = SimpleSigner(
        signing_cert=asn1_x509.Certificate.load(der),
        signing_key=asn1_keys.PrivateKeyInfo.load(key_der),
        cert_registry=SimpleCertificateStore(),
    )
    old = SigningKey(holder="Old Key", signer=signer, certificate_der=der)
    with pytest.raises(PdfError, match="expired on 2021-01-01"):
        sign_pdf(unsigned_tg, old, signer=SIGNER)


def test_signing_appends_one_revision(unsigned_tg: bytes, signed_tg: bytes) -> None:
    assert signed_tg.startswith(unsigned_tg)
    assert b"/ETSI.CAdES.detached" in signed_tg[len(unsigned_tg) :]


def test_pdf_without_reserved_field_gets_invisible_signature(
    renderer: PdfRenderer, seal: SigningKey, root_pem: bytes
) -> None:
    merged = merge_unsigned([renderer.render(HEAD, content("en", "<p>Hello</p>"), None)])
    signed = sign_pdf(merged, seal, signer=None)
    assert verify_pdf(signed, trust_roots=[root_pem]).ok


def test_flipped_byte_in_signed_range(signed_tg: bytes, root_pem: bytes) -> None:
    # 1. in the binary comment on line 2: harmless to any parser, covered by the signature
    data = bytearray(signed_tg)
    assert data[9:10] == b"%"
    data[11] ^= 0x01
    header = verify_pdf(bytes(data), trust_roots=[root_pem])
    # 2. in the middle of the longest stream (a font program) of the signed revision
    data = bytearray(signed_tg)
    streams = [m.span() for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", signed_tg, re.S)]
    start, end = max(streams, key=lambda span: span[1] - span[0])
    data[(start + end) // 2] ^= 0x20
    middle = verify_pdf(bytes(data), trust_roots=[root_pem])
    for result in (header, middle):
        assert not result.intact and not result.ok
        assert any("changed after it was signed" in r for r in result.reasons), result.reasons


def test_incremental_update_drawing_text(signed_tg: bytes, root_pem: bytes) -> None:
    writer = IncrementalPdfFileWriter(BytesIO(signed_tg))
    font = generic.DictionaryObject(
        {
            generic.NameObject("/Type"): generic.NameObject("/Font"),
            generic.NameObject("/Subtype"): generic.NameObject("/Type1"),
            generic.NameObject("/BaseFont"): generic.NameObject("/Helvetica"),
        }
    )
    resources = generic.DictionaryObject(
        {
            generic.NameObject("/Font"): generic.DictionaryObject(
                {generic.NameObject("/Forged"): writer.add_object(font)}
            )
        }
    )
    stream = generic.StreamObject(stream_data=b"BT /Forged 24 Tf 100 400 Td (I withdraw) Tj ET")
    writer.add_stream_to_page(0, writer.add_object(stream), resources=resources)
    out = BytesIO()
    writer.write(out)
    tampered = out.getvalue()
    assert "I withdraw" in pdf_text(tampered)
    result = verify_pdf(tampered, trust_roots=[root_pem])
    assert result.intact and result.trusted  # the signed revision itself is fine
    assert not result.unmodified and not result.ok
    assert any("after it was signed" in r or "after signing" in r for r in result.reasons)


def test_full_resave_breaks_the_signature(signed_tg: bytes, root_pem: bytes) -> None:
    with pikepdf.open(BytesIO(signed_tg)) as pdf:
        out = BytesIO()
        pdf.save(out)
    result = verify_pdf(out.getvalue(), trust_roots=[root_pem])
    assert not result.ok
    assert result.reasons


def test_unsigned_pdf_is_not_ok(unsigned_tg: bytes, root_pem: bytes) -> None:
    result = verify_pdf(unsigned_tg, trust_roots=[root_pem])
    assert not result.ok and result.reasons == ["This PDF has no digital signature."]


def test_not_a_pdf_and_truncated(signed_tg: bytes, root_pem: bytes) -> None:
    with pytest.raises(PdfError, match="not a PDF"):
        verify_pdf(b"GIF89a not a pdf at all", trust_roots=[root_pem], name="x.pdf")
    with pytest.raises(PdfError) as caught:
        verify_pdf(signed_tg[: len(signed_tg) // 2], trust_roots=[root_pem], name="half.pdf")
    assert "truncated" in caught.value.message and "\n" not in caught.value.message
    with pytest.raises(PdfError, match="not a certificate"):
        verify_pdf(signed_tg, trust_roots=[b"nonsense"])


def test_merge_unsigned(renderer: PdfRenderer, signed_tg: bytes, unsigned_tg: bytes) -> None:
    other = renderer.render(HEAD, content("ru"), SIGNER)
    merged = pikepdf.open(BytesIO(merge_unsigned([unsigned_tg, other])))
    expected = sum(len(pikepdf.open(BytesIO(pdf)).pages) for pdf in (unsigned_tg, other))
    assert len(merged.pages) == expected
    assert "/AcroForm" not in merged.Root
    with pytest.raises(PdfError, match="letter 2 of 2 is signed"):
        merge_unsigned([unsigned_tg, signed_tg])
    with pytest.raises(PdfError, match="not a readable PDF"):
        merge_unsigned([b"junk"])


# ---------------------------------------------------------------------------
# PAdES B-T against a timestamp authority on loopback


def _tsa_identity() -> tuple[bytes, DummyTimeStamper]:
    # pyHanko's DummyTimeStamper signs with RSA only
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Loopback TSA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    key_der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    stamper = DummyTimeStamper(tsa_cert=asn1_x509.Certificate.load(der), tsa_key=asn1_keys.PrivateKeyInfo.load(key_der))
    return der, stamper


@pytest.fixture
def tsa() -> Iterator[tuple[str, bytes]]:
    der, stamper = _tsa_identity()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            request = tsp.TimeStampReq.load(self.rfile.read(int(self.headers["Content-Length"])))
            reply = stamper.request_tsa_response(request).dump()
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", der
    finally:
        server.shutdown()
        server.server_close()


def test_pades_b_t_with_a_timestamp(
    unsigned_tg: bytes, seal: SigningKey, root_pem: bytes, tsa: tuple[str, bytes]
) -> None:
    url, tsa_der = tsa
    signed = sign_pdf(unsigned_tg, seal, signer=SIGNER, timestamp_url=url)
    result = verify_pdf(signed, trust_roots=[root_pem, tsa_der])
    assert result.ok, result.reasons
    untrusted_tsa = verify_pdf(signed, trust_roots=[root_pem])
    assert not untrusted_tsa.ok
    assert any("timestamp" in r for r in untrusted_tsa.reasons)


def test_unreachable_timestamp_server(unsigned_tg: bytes, seal: SigningKey) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(PdfError, match="did not answer"):
        sign_pdf(unsigned_tg, seal, signer=SIGNER, timestamp_url=f"http://127.0.0.1:{port}/")
    with pytest.raises(PdfError, match="starts with https"):
        sign_pdf(unsigned_tg, seal, signer=SIGNER, timestamp_url="file:///etc/hostname")


# ---------------------------------------------------------------------------
# For people: a PNG of a page


@pytest.mark.skipif(not have_pdftoppm(), reason="pdftoppm (poppler-utils) not installed")
def test_render_page_png(signed_tg: bytes, tmp_path: Path) -> None:
    out = render_page_png(signed_tg, tmp_path / "page1.png", page=1)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(RuntimeError):
        render_page_png(signed_tg, tmp_path / "page99.png", page=99)


@pytest.mark.skipif(shutil.which("pdfsig") is None, reason="pdfsig (poppler-utils) not installed")
def test_poppler_pdfsig_agrees(signed_tg: bytes, tmp_path: Path) -> None:
    """An independent implementation (poppler + NSS) checks the same signature."""
    good = tmp_path / "good.pdf"
    good.write_bytes(signed_tg)
    report = subprocess.run(["pdfsig", str(good)], capture_output=True, text=True).stdout
    assert "Signature is Valid" in report and "Total document signed" in report
    assert "ETSI.CAdES.detached" in report and "Civic Platform for Tajikistan Seal" in report
    flipped = bytearray(signed_tg)
    flipped[11] ^= 0x01
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(bytes(flipped))
    report = subprocess.run(["pdfsig", str(bad)], capture_output=True, text=True).stdout
    assert "Digest Mismatch" in report


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext not installed")
def test_pdftotext_agrees(signed_tg: bytes) -> None:
    text = poppler_text(signed_tg)
    for word in PROBES_TG:
        assert word in text
