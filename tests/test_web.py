# ruff: noqa: E501  (the bad-input table reads best one case per line)
"""The supporters' pages in-process (Starlette's test client over the real app, the real
store, the real PDF pipeline): languages, headers, signing, bad input, withdrawal."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from campaign import api
from campaign.api import signing as signing_api
from campaign.web import i18n
from tests.conftest import tree_digest
from tests.support.signing import KEY, AppClient, signing_workspace


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from campaign import web

    base = tmp_path_factory.mktemp("web")
    ws_path, drive = signing_workspace(base / "ws", allow_pseudonyms=True, fields=["city", "title"])
    ws = api.open_workspace(ws_path)
    closed = signing_api.open_drive(
        ws, signing_api.OpenRequest(letter="peace-agreement", ids=["ohchr"], name="closed-one")
    )
    signing_api.close_drive(ws, "closed-one", KEY)
    guarded = signing_api.open_drive(
        ws, signing_api.OpenRequest(letter="peace-agreement", ids=["ohchr"], name="meeting", passphrase="tea and bread")
    )
    plain = signing_api.open_drive(
        ws, signing_api.OpenRequest(letter="peace-agreement", ids=["wgad"], name="no-pseudo")
    )
    service = signing_api.signing_service(ws, KEY, processes=0)
    app = web.supporters_app(service)
    yield {"ws": ws, "ws_path": ws_path, "drive": drive, "closed": closed, "guarded": guarded, "plain": plain,
           "app": app, "names_key": base / "names.key"}  # fmt: skip
    service.close()


@pytest.fixture
def client(site: dict[str, Any]) -> Iterator[AppClient]:
    with AppClient(site["app"]) as c:
        yield c


def form_fields(html: str) -> dict[str, str]:
    token = re.search(r'name="form_token" value="([^"]+)"', html)
    csrf = re.search(r'name="csrf" value="([^"]+)"', html)
    assert token and csrf, html[:500]
    return {"form_token": token.group(1), "csrf": csrf.group(1)}


def sign(client: AppClient, path: str, *, lang: str = "en", files: Any = None, **fields: str) -> Any:
    page = client.get(f"{path}?lang={lang}")
    assert page.status_code == 200
    data = {"lang": lang, "signature_kind": "typed", "consent": "yes", **form_fields(page.text), **fields}
    data = {k: v for k, v in data.items() if v is not None}
    return client.post(
        f"{path}/sign?lang={lang}", data=data, files=files or {"_": ("", b"", "application/octet-stream")}
    )


def _state(site: dict[str, Any]) -> dict[str, str]:
    """Every stored byte (the -shm file is SQLite's index of the WAL, changed by reading)."""
    return {k: v for k, v in tree_digest(site["ws_path"] / ".campaign").items() if not k.endswith("-shm")}


def count(site: dict[str, Any], name: str) -> int:
    return next(d.signed or 0 for d in signing_api.list_drives(site["ws"]) if d.name == name)


@pytest.mark.parametrize(
    ("accept", "query", "expected"),
    [("ru-RU,ru;q=0.9,en;q=0.5", None, "ru"), ("tg", None, "tg"), ("de, fr;q=0.5", None, "en"),
     ("en;q=0.2, tg;q=0.8", None, "tg"), ("ru", "tg", "tg"), ("ru", "xx", "ru")],
)  # fmt: skip
def test_the_page_speaks_the_supporters_language(
    client: AppClient, site: dict[str, Any], accept: str, query: str | None, expected: str
) -> None:
    url = site["drive"].path + (f"?lang={query}" if query else "")
    page = client.get(url, headers={"accept-language": accept})
    assert page.status_code == 200
    assert f'<html lang="{expected}">' in page.text
    assert i18n.WORDS[expected]["submit"] in page.text


def test_every_language_has_every_word() -> None:
    for table in (i18n.WORDS, i18n.ERRORS, i18n.FIELDS):
        keys = set(table["en"])
        for lang in i18n.LANGS:
            assert set(table[lang]) == keys, lang


def test_the_letter_as_sent_and_a_translation_beside_it(client: AppClient, site: dict[str, Any]) -> None:
    page = client.get(site["drive"].path + "?lang=ru").text
    assert 'lang="tg"' in page and "Созишномаи умумӣ" in page  # the original, in Tajik (the embassy's language)
    assert "Перевод: Русский" in page and "Общее соглашение" in page
    assert site["drive"].text_sha256 in page
    same = client.get(site["drive"].path + "?lang=tg").text
    assert "Перевод" not in same and "Тарҷума" not in same  # no translation when the languages agree


def test_headers_cookies_and_no_third_party_requests(client: AppClient, site: dict[str, Any]) -> None:
    page = client.get(site["drive"].path)
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "server" not in page.headers
    cookies = page.headers.get_list("set-cookie")
    assert len(cookies) == 1 and cookies[0].startswith("csrf=")
    assert "HttpOnly" in cookies[0] and "SameSite=strict" in cookies[0]
    for url in re.findall(r'(?:src|href|action)="([^"]+)"', page.text):
        assert url.startswith(("/", "?", "#")), url
    css = client.get("/static/site.css").text
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", css)  # fonts and images come from this server
    home = client.get("/")
    assert home.status_code == 200 and "/s/" not in home.text  # no list of drives


def test_a_supporter_signs_and_takes_home_a_verifiable_pdf(
    client: AppClient, site: dict[str, Any], tmp_path: Path
) -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    before = count(site, site["drive"].name)
    done = sign(client, site["drive"].path, lang="tg", name="Фирӯза Қодирова", city="Хуҷанд", title="Омӯзгор")
    assert done.status_code == 200, done.text[:3000]
    assert count(site, site["drive"].name) == before + 1
    receipt = re.search(r">(campaign-sign-v1:[^<]+)<", done.text).group(1)  # type: ignore[union-attr]
    links = re.findall(r'href="(/s/[^"]+/download/[^"]+)"', done.text)
    pdf = client.get(links[0])
    assert pdf.headers["content-type"] == "application/pdf"
    assert "attachment" in pdf.headers["content-disposition"]
    assert "Фирӯза" not in pdf.headers["content-disposition"]
    text_file = client.get(links[1]).text
    assert receipt in text_file
    # pyHanko, independently of campaign's own verification
    root_pem = (site["ws_path"] / ".campaign" / "keys" / "root.cert.pem").read_bytes()
    from asn1crypto import pem, x509

    root = x509.Certificate.load(pem.unarmor(root_pem)[2])
    reader = PdfFileReader(io.BytesIO(pdf.content))
    status = validate_pdf_signature(reader.embedded_signatures[0], ValidationContext(trust_roots=[root]))
    assert status.intact and status.valid and status.trusted
    # campaign pdf verify checks the QR payload against the embedded text
    out = tmp_path / "signed.pdf"
    out.write_bytes(pdf.content)
    [result] = api.pdf_verify(site["ws"], [out], [])
    assert result.ok and result.proof_ok
    assert result.proof["letter_sha256"] == site["drive"].text_sha256  # type: ignore[index]
    parsed = signing_api.signing.parse_receipt(receipt)
    assert result.proof["commitment"] == parsed.commitment  # type: ignore[index]
    assert parsed.matches("Фирӯза Қодирова", site["drive"].text_sha256)
    # the receipt proves inclusion against the store
    proof = signing_api.prove(site["ws"], receipt, name="Фирӯза Қодирова")
    assert proof.included and proof.name_matches


def test_a_drawn_signature_reaches_the_pdf(client: AppClient, site: dict[str, Any]) -> None:
    import base64

    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (600, 200), (255, 255, 255, 0))
    ImageDraw.Draw(image).line([(20, 150), (200, 40), (380, 160), (560, 50)], fill=(10, 10, 60, 255), width=5)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    done = sign(client, site["drive"].path, name="Maria Ivanova", signature_kind="drawn", signature_drawn=data_url)
    assert done.status_code == 200, done.text[:2000]
    link = re.findall(r'href="(/s/[^"]+/download/[^"]+)"', done.text)[0]
    import pikepdf

    with pikepdf.open(io.BytesIO(client.get(link).content)) as pdf:
        assert any(page.get_images() for page in pdf.pages)


def _png(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height), 255).save(buffer, format="PNG")
    return buffer.getvalue()


BAD = [
    ("empty name", {"name": "  "}, None, 422, "empty", "name"),
    ("10,000-character name", {"name": "Я" * 10_000}, None, 422, "too-long", "name"),
    ("control characters", {"name": "Maria\u202eavonavI"}, None, 422, "control-characters", "name"),
    ("a NUL byte", {"name": "Maria\x00"}, None, 422, "control-characters", "name"),
    ("script in the name", {"name": "<script>alert(1)</script>"}, None, 422, "markup", "name"),
    ("HTML in the city", {"name": "Maria", "city": "<b>Berlin</b>"}, None, 422, "markup", "city"),
    ("HTML in the typed signature", {"name": "Maria", "typed_signature": "<img src=x>"}, None, 422, "markup", "typed_signature"),
    ("no consent", {"name": "Maria", "consent": None}, None, 422, "consent-missing", None),
    ("no signature at all", {"name": "Maria", "signature_kind": "drawn"}, None, 422, "signature-missing", None),
    ("a drawn signature that is not an image", {"name": "Maria", "signature_kind": "drawn",
        "signature_drawn": "data:image/png;base64,SGVsbG8gd29ybGQ="}, None, 422, "signature-not-an-image", None),
    ("a non-image upload", {"name": "Maria", "signature_kind": "upload"},
        {"signature_file": ("sig.png", b"%PDF-1.7 not a picture", "image/png")}, 422, "signature-not-an-image", None),
    ("a huge upload", {"name": "Maria", "signature_kind": "upload"},
        {"signature_file": ("sig.png", b"\x89PNG" + b"0" * 1_200_000, "image/png")}, 413, "signature-too-large", None),
    ("a picture with too many pixels", {"name": "Maria", "signature_kind": "upload"},
        {"signature_file": ("sig.png", _png(9000, 1000), "image/png")}, 422, "signature-too-many-pixels", None),
    ("a pseudonym where none are allowed", {"name": "Maria", "sign_as": "pseudonym", "pseudonym": "X"}, None, 422,
        "pseudonyms-not-allowed", None),
    ("a forged CSRF field", {"name": "Maria", "csrf": "A" * 32}, None, 403, "form-forged", None),
    ("a forged form token", {"name": "Maria", "form_token": "abc.123.def"}, None, 403, "form-forged", None),
    ("a text field sent as a file", {"name": "Maria"}, {"city": ("x", b"Berlin", "text/plain")}, 400, "bad-request", None),
]  # fmt: skip


@pytest.mark.parametrize(("what", "fields", "files", "status", "code", "field"), BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("lang", ["en", "tg"])
def test_bad_input_is_refused_in_the_supporters_language_and_nothing_is_stored(
    client: AppClient, site: dict[str, Any], what: str, fields: dict[str, Any], files: Any, status: int,
    code: str, field: str | None, lang: str,
) -> None:  # fmt: skip
    path = site["plain"].path if code == "pseudonyms-not-allowed" else site["drive"].path
    name = site["plain"].name if code == "pseudonyms-not-allowed" else site["drive"].name
    state = _state(site)
    before = count(site, name)
    response = sign(client, path, lang=lang, files=files, **fields)
    assert response.status_code == status, response.text[:2000]
    expected = i18n.error_text(lang, code, field, "200" if code == "too-long" else None)
    import html as html_mod

    assert html_mod.escape(expected, quote=False) in response.text or expected in html_mod.unescape(response.text)
    assert "<script>alert" not in response.text and "<b>Berlin" not in response.text
    assert count(site, name) == before
    assert _state(site) == state


def test_a_replayed_form_is_refused(client: AppClient, site: dict[str, Any]) -> None:
    page = client.get(site["drive"].path)
    data = {"lang": "en", "signature_kind": "typed", "consent": "yes", "name": "Once Only", **form_fields(page.text)}
    empty = {"_": ("", b"", "application/octet-stream")}
    assert client.post(site["drive"].path + "/sign", data=data, files=empty).status_code == 200
    before = count(site, site["drive"].name)
    again = client.post(site["drive"].path + "/sign", data=data, files=empty)
    assert again.status_code == 409
    assert i18n.ERRORS["en"]["form-replayed"] in again.text
    assert count(site, site["drive"].name) == before


def test_a_cross_site_post_is_refused(client: AppClient, site: dict[str, Any]) -> None:
    page = client.get(site["drive"].path)
    data = {"lang": "en", "signature_kind": "typed", "consent": "yes", "name": "Maria", **form_fields(page.text)}
    for headers in ({"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}):
        response = client.post(site["drive"].path + "/sign", data=data, files={"_": ("", b"", "x/y")}, headers=headers)
        assert response.status_code == 403


def test_unknown_tokens_closed_drives_and_passphrases(client: AppClient, site: dict[str, Any]) -> None:
    for url in ("/s/" + "A" * 32, "/s/short", "/s/../etc/passwd", "/nothing"):
        response = client.get(url + "?lang=ru")
        assert response.status_code == 404
        assert "Здесь нет сбора подписей" in response.text or "По этой ссылке" in response.text
    closed = client.get(site["closed"].path)
    assert (
        closed.status_code == 200
        and i18n.WORDS["en"]["closed"] in closed.text
        and '<form class="sign"' not in closed.text
    )
    late = sign(client, site["drive"].path, name="x")  # form from an open drive...
    assert late.status_code == 200
    response = client.post(site["closed"].path + "/sign", data={"name": "Too Late"}, files={"_": ("", b"", "x/y")})
    assert response.status_code == 410 and i18n.ERRORS["en"]["closed"] in response.text
    wrong = sign(client, site["guarded"].path, lang="ru", name="Maria", passphrase="coffee")
    assert wrong.status_code == 403 and i18n.ERRORS["ru"]["passphrase-wrong"] in wrong.text
    right = sign(client, site["guarded"].path, name="Maria", passphrase="tea and bread")
    assert right.status_code == 200
    assert client.get(site["drive"].path, params={"lang": "en"}).status_code == 200
    assert client.post("/s/" + "B" * 32 + "/sign", data={"name": "x"}).status_code == 404
    assert client.put(site["drive"].path).status_code in (404, 405)


def test_a_pseudonymous_signature_keeps_the_real_name_sealed(client: AppClient, site: dict[str, Any]) -> None:
    done = sign(
        client, site["drive"].path, name="Dilshod Real", sign_as="pseudonym", pseudonym="Resident of Khujand",
        real_name="Dilshod Karimov-Real",
    )  # fmt: skip
    assert done.status_code == 200, done.text[:2000]
    for path in (site["ws_path"] / ".campaign").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"Dilshod Karimov-Real" not in data and "Dilshod Karimov-Real".encode("utf-16-le") not in data
    plain = signing_api.review(site["ws"], site["drive"].name)
    row = next(r for r in plain.rows if r.name == "Resident of Khujand")
    assert row.pseudonymous and row.real_name == "(sealed)"
    opened = signing_api.review(site["ws"], site["drive"].name, names_key=site["names_key"])
    assert next(r for r in opened.rows if r.name == "Resident of Khujand").real_name == "Dilshod Karimov-Real"


def test_withdrawal_with_the_receipt(client: AppClient, site: dict[str, Any]) -> None:
    done = sign(client, site["drive"].path, name="Gulnora Withdrawing")
    receipt = re.search(r">(campaign-sign-v1:[^<]+)<", done.text).group(1)  # type: ignore[union-attr]
    before = count(site, site["drive"].name)

    def withdraw(text: str, lang: str = "en") -> Any:
        page = client.get(site["drive"].path + f"/withdraw?lang={lang}")
        assert page.status_code == 200
        data = {"lang": lang, "receipt": text, **form_fields(page.text)}
        return client.post(site["drive"].path + "/withdraw", data=data, files={"_": ("", b"", "x/y")})

    bad = withdraw("not a receipt", "tg")
    assert bad.status_code == 422 and i18n.ERRORS["tg"]["receipt-invalid"] in bad.text
    forged = receipt.rsplit(":", 2)[0] + ":" + "0" * 64 + ":" + receipt.rsplit(":", 1)[1]
    assert withdraw(forged).status_code == 404
    assert count(site, site["drive"].name) == before
    ok = withdraw(receipt)
    assert ok.status_code == 200 and i18n.WORDS["en"]["withdrawn_title"] in ok.text
    assert count(site, site["drive"].name) == before - 1
    assert withdraw(receipt).status_code == 404
    for path in (site["ws_path"] / ".campaign").rglob("*"):
        if path.is_file():
            assert b"Gulnora Withdrawing" not in path.read_bytes(), path


def test_downloads_expire_and_unknown_ones_are_404(client: AppClient, site: dict[str, Any]) -> None:
    assert client.get(site["drive"].path + "/download/" + "x" * 24).status_code == 404


def test_templates_use_only_known_words() -> None:
    """`w.clear` would be dict.clear in Jinja2: every word a template uses is a key, and no
    key is the name of a dict method."""
    folder = Path(api.__file__).resolve().parent.parent / "web" / "templates" / "supporters"
    used = set()
    for path in folder.rglob("*.html"):
        used |= set(re.findall(r"\bw\.(\w+)", path.read_text()))
    assert used and used <= set(i18n.WORDS["en"]), used - set(i18n.WORDS["en"])
    assert not [key for key in i18n.WORDS["en"] if hasattr(dict, key)]


def test_a_pseudonym_without_any_real_name_stores_nothing_sealed(client: AppClient, site: dict[str, Any]) -> None:
    done = sign(client, site["drive"].path, name="", sign_as="pseudonym", pseudonym="A Teacher from Kulob")
    assert done.status_code == 200, done.text[:2000]
    row = next(r for r in signing_api.review(site["ws"], site["drive"].name).rows if r.name == "A Teacher from Kulob")
    assert row.pseudonymous and row.real_name is None
    empty = sign(client, site["drive"].path, name="", sign_as="pseudonym", pseudonym=" ")
    assert empty.status_code == 422


def test_the_drive_rate_limit_answers_busy(site: dict[str, Any], tmp_path: Path) -> None:
    from campaign import web

    limited = signing_api.open_drive(
        site["ws"], signing_api.OpenRequest(letter="peace-agreement", ids=["ohchr"], name="slow-drive", rate=1)
    )
    service = signing_api.signing_service(site["ws"], KEY, processes=0)
    try:
        with AppClient(web.supporters_app(service)) as client:
            assert sign(client, limited.path, name="First").status_code == 200
            busy = sign(client, limited.path, lang="ru", name="Second")
            assert busy.status_code == 429 and i18n.ERRORS["ru"]["busy"] in busy.text
    finally:
        service.close()
    assert count(site, "slow-drive") == 1


def _lang_links(html: str) -> dict[str, str]:
    nav = re.search(r'<nav class="langs".*?</nav>', html, re.S)
    return dict(re.findall(r'href="([^"]+)" hreflang="(\w+)"', nav.group(0))) if nav else {}


def test_language_links_after_a_post_lead_to_get_pages(client: AppClient, site: dict[str, Any]) -> None:
    """Regression: the pages answering a POST had relative links (?lang=ru), which asked
    GET /s/<token>/sign (POST only: 405), and the supporter lost the downloads."""
    path = site["drive"].path
    done = sign(client, path, lang="en", name="Saida Switching")
    assert done.status_code == 200
    receipt = re.search(r">(campaign-sign-v1:[^<]+)<", done.text).group(1)  # type: ignore[union-attr]
    downloads = re.findall(r'href="(/s/[^"]+/download/[^"]+)"', done.text)
    links = _lang_links(done.text)
    assert sorted(links.values()) == ["en", "ru", "tg"]
    for href, lang in links.items():
        assert href.startswith(f"{path}/done/") and href.endswith(f"?lang={lang}"), href
        again = client.get(href)
        assert again.status_code == 200, again.text[:500]
        assert f'<html lang="{lang}">' in again.text and i18n.WORDS[lang]["done_title"] in again.text
        assert receipt in again.text
        assert re.findall(r'href="(/s/[^"]+/download/[^"]+)"', again.text) == downloads
        assert _lang_links(again.text) == links  # the switch works again from there
    assert client.get(downloads[0]).content.startswith(b"%PDF-")
    # another drive's token, or an unknown key, does not show the page
    other = next(iter(links)).replace(path, site["plain"].path)
    assert client.get(other).status_code == 404
    assert client.get(f"{path}/done/{'x' * 24}?lang=ru").status_code == 404

    refused = sign(client, path, lang="tg", name="   ")  # the form again, with the error
    assert refused.status_code == 422
    for href, lang in _lang_links(refused.text).items():
        assert href == f"{path}?lang={lang}"
        page = client.get(href)
        assert page.status_code == 200 and f'<html lang="{lang}">' in page.text and '<form class="sign"' in page.text

    form = client.get(f"{path}/withdraw?lang=ru")
    bad = client.post(
        f"{path}/withdraw", data={"lang": "ru", "receipt": "nonsense", **form_fields(form.text)},
        files={"_": ("", b"", "x/y")},
    )  # fmt: skip
    assert bad.status_code == 422
    assert set(_lang_links(bad.text)) == {f"{path}/withdraw?lang={lang}" for lang in i18n.LANGS}
    form = client.get(f"{path}/withdraw?lang=en")
    ok = client.post(
        f"{path}/withdraw", data={"lang": "en", "receipt": receipt, **form_fields(form.text)},
        files={"_": ("", b"", "x/y")},
    )  # fmt: skip
    assert ok.status_code == 200 and i18n.WORDS["en"]["withdrawn_title"] in ok.text
    assert _lang_links(ok.text) == {}  # nothing to show again at a GET address: no switch
    for page in (done, refused, bad, ok):
        assert 'href="?' not in page.text


def test_a_typed_signature_is_set_in_the_bundled_handwriting_font(client: AppClient, site: dict[str, Any]) -> None:
    """The typed signature's letters ғ ӣ қ ӯ ҳ ҷ are drawn with glyphs of the bundled Caveat
    (embedded as "Campaign-Hand"), not with a fallback font or .notdef boxes."""
    import pikepdf
    from fontTools.ttLib import TTFont

    typed = "Ғафур ғӣқӯҳҷ"
    done = sign(client, site["drive"].path, lang="tg", name="Ғафур Қодирӣ", typed_signature=typed)
    assert done.status_code == 200, done.text[:2000]
    link = re.findall(r'href="(/s/[^"]+/download/[^"]+)"', done.text)[0]
    with pikepdf.open(io.BytesIO(client.get(link).content)) as pdf:
        hands = {
            str(font.BaseFont): font
            for page in pdf.pages
            for _, font in page.Resources.Font.items()
            if str(font.BaseFont).endswith("+Campaign-Hand")
        }
        assert len(hands) == 1, hands
        font = next(iter(hands.values()))
        embedded = TTFont(io.BytesIO(font.DescendantFonts[0].FontDescriptor.FontFile2.read_bytes()))
        assert embedded["name"].getDebugName(1) == "Caveat"
        cmap = font.ToUnicode.read_bytes().decode("ascii")
        mapped = {int(u, 16): int(g, 16) for g, u in re.findall(r"<([0-9a-f]{4})> <([0-9a-f]{4})>", cmap)}
    for char in "ғӣқӯҳҷҒ":
        assert ord(char) in mapped, (char, sorted(hex(c) for c in mapped))
        assert mapped[ord(char)] != 0  # a glyph of its own, not .notdef


def test_a_withdrawal_the_wal_keeps_warns_the_organiser_and_is_erased_later(
    client: AppClient, site: dict[str, Any]
) -> None:
    import sqlite3

    service = site["app"].state.site.service
    done = sign(client, site["drive"].path, name="Malika Blockedreader")
    receipt = re.search(r">(campaign-sign-v1:[^<]+)<", done.text).group(1)  # type: ignore[union-attr]
    reader = sqlite3.connect(site["ws_path"] / ".campaign" / "state.db", isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM signatures").fetchone()
        page = client.get(site["drive"].path + "/withdraw")
        data = {"lang": "en", "receipt": receipt, **form_fields(page.text)}
        ok = client.post(site["drive"].path + "/withdraw", data=data, files={"_": ("", b"", "x/y")})
        assert ok.status_code == 200 and i18n.WORDS["en"]["withdrawn_title"] in ok.text  # the deletion stands
    finally:
        reader.execute("COMMIT")
        reader.close()
    assert "write-ahead log could not be checkpointed" in service.warnings[-1]
    assert "Malika" not in service.warnings[-1]
    assert sign(client, site["drive"].path, name="Next Supporter").status_code == 200  # the next write retries
    assert "erased" in service.warnings[-1]
    for path in (site["ws_path"] / ".campaign").rglob("*"):
        if path.is_file():
            assert b"Malika Blockedreader" not in path.read_bytes(), path
