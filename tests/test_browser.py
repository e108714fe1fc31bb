"""A supporter in a real browser: Playwright driving Debian's Chromium (headless, no
browser download) against `campaign serve` on loopback. Signing in Tajik with a drawn
signature, a pseudonym, a withdrawal, switching language, keyboard only, axe-core on
every page, and screenshots at phone and desktop width in en/ru/tg (build/screenshots/)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.signing import (
    CHROMIUM_ARGS,
    KEY,
    SCREENSHOTS,
    ServeProcess,
    chromium_or_skip,
    signing_workspace,
)

AXE = Path(__file__).resolve().parent / "support" / "axe" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    chromium_or_skip()
    base = tmp_path_factory.mktemp("browser")
    ws, drive = signing_workspace(base / "ws", allow_pseudonyms=True, fields=["city"], rate=10_000)
    from campaign import api
    from campaign.api import signing as signing_api

    workspace = api.open_workspace(ws)
    closed = signing_api.open_drive(
        workspace, signing_api.OpenRequest(letter="peace-agreement", ids=["ohchr"], name="done")
    )
    signing_api.close_drive(workspace, "done", KEY)
    with ServeProcess(ws, processes=1) as process:
        yield {"url": process.url, "drive": drive, "ws": ws, "workspace": workspace, "closed": closed,
               "names_key": base / "names.key"}  # fmt: skip


@pytest.fixture(scope="module")
def browser(server: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=chromium_or_skip(), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page_in(browser: Any) -> Iterator[Any]:
    contexts = []

    def make(lang: str = "en", viewport: dict[str, int] = DESKTOP) -> Any:
        context = browser.new_context(viewport=viewport, extra_http_headers={"Accept-Language": lang}, locale=lang)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(60_000)
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.console_errors = errors
        requests: list[str] = []
        page.on("request", lambda req: requests.append(req.url))
        page.requests_made = requests
        return page

    yield make
    for context in contexts:
        context.close()


def axe_check(page: Any, label: str) -> None:
    """Zero serious or critical axe-core violations on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == [], f"{label}: {bad}"


def draw(page: Any) -> None:
    box = page.locator("#pad").bounding_box()
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x + w * 0.1, y + h * 0.7)
    page.mouse.down()
    for i in range(1, 30):
        page.mouse.move(x + w * (0.1 + 0.027 * i), y + h * (0.5 + 0.3 * ((-1) ** i) * (i % 5) / 5), steps=2)
    page.mouse.up()


def off_loop(fn: Any, *args: Any) -> Any:
    """Run ``fn`` in another thread: Playwright's sync API keeps an event loop running in
    this one, and pyHanko's validation starts its own with asyncio.run()."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


def verify_with_pyhanko(pdf: bytes, ws: Path) -> None:
    from asn1crypto import pem, x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    root = x509.Certificate.load(pem.unarmor((ws / ".campaign" / "keys" / "root.cert.pem").read_bytes())[2])
    status = validate_pdf_signature(
        PdfFileReader(io.BytesIO(pdf)).embedded_signatures[0], ValidationContext(trust_roots=[root])
    )
    assert status.intact and status.valid and status.trusted


def test_a_supporter_signs_in_tajik_by_drawing(server: dict[str, Any], page_in: Any, tmp_path: Path) -> None:
    page = page_in("tg", PHONE)
    page.goto(server["url"] + server["drive"].path)
    assert page.locator("html").get_attribute("lang") == "tg"
    page.get_by_label("Ному насаби пурраи шумо").fill("Фирӯза Қодирова")
    page.get_by_label("Шаҳр").fill("Хуҷанд")
    page.get_by_label("Бо ангушт ё муш кашам").check()
    draw(page)
    page.locator("#consent").check()
    page.get_by_role("button", name="Имзо кардан ва гирифтани нома").click()
    page.wait_for_selector("#download-pdf")
    assert "Ташаккур" in page.locator("h1").inner_text()
    receipt = page.locator("#receipt").input_value()
    assert receipt.startswith("campaign-sign-v1:")
    with page.expect_download() as info:
        page.locator("#download-pdf").click()
    path = tmp_path / "signed.pdf"
    info.value.save_as(path)
    pdf = path.read_bytes()
    off_loop(verify_with_pyhanko, pdf, server["ws"])
    import pikepdf

    with pikepdf.open(io.BytesIO(pdf)) as doc:
        assert any(p.get_images() for p in doc.pages)  # the drawn signature
        assert "letter-text.txt" in doc.attachments
    from campaign import api

    [result] = off_loop(api.pdf_verify, server["workspace"], [path], [])
    assert result.ok and result.proof_ok
    with page.expect_download() as info:
        page.locator("#download-receipt").click()
    receipt_file = tmp_path / "receipt.txt"
    info.value.save_as(receipt_file)
    assert receipt in receipt_file.read_text()
    assert page.console_errors == []
    assert all(u.startswith(server["url"]) for u in page.requests_made), page.requests_made


def test_a_pseudonymous_signature(server: dict[str, Any], page_in: Any) -> None:
    page = page_in("ru")
    page.goto(server["url"] + server["drive"].path)
    assert not page.locator("#pseudonym").is_visible()
    page.get_by_label("Ваше полное имя").fill("Ҷамшед Настоящий")
    page.get_by_label("псевдонимом").check()
    page.get_by_label("Псевдоним, который будет напечатан под письмом").fill("Житель Худжанда")
    page.get_by_label("Ваше настоящее имя (необязательно)").fill("Ҷамшед Раҳимов-Настоящий")
    page.get_by_label("Напечатанная подпись").fill("Житель Худжанда")
    assert page.locator("#typed-preview").inner_text() == "Житель Худжанда"
    page.locator("#consent").check()
    page.get_by_role("button", name="Подписать и получить письмо").click()
    page.wait_for_selector("#download-pdf")
    from campaign.api import signing as signing_api

    review = signing_api.review(server["workspace"], server["drive"].name, names_key=server["names_key"])
    row = next(r for r in review.rows if r.name == "Житель Худжанда")
    assert row.pseudonymous and row.real_name == "Ҷамшед Раҳимов-Настоящий"
    for file in (server["ws"] / ".campaign").rglob("*"):
        if file.is_file():
            assert "Раҳимов-Настоящий".encode() not in file.read_bytes()


def test_a_withdrawal(server: dict[str, Any], page_in: Any) -> None:
    page = page_in("en")
    page.goto(server["url"] + server["drive"].path)
    page.get_by_label("Your full name").fill("Withdrawing Person")
    page.locator("#consent").check()
    page.get_by_role("button", name="Sign and get my letter").click()
    page.wait_for_selector("#download-pdf")
    receipt = page.locator("#receipt").input_value()
    page.get_by_role("link", name="Changed your mind? Withdraw your signature").click()
    page.get_by_label("Receipt code").fill(receipt)
    page.get_by_role("button", name="Withdraw my signature").click()
    assert page.locator("h1").inner_text() == "Your signature was withdrawn"
    axe_check(page, "withdrawn")
    for file in (server["ws"] / ".campaign").rglob("*"):
        if file.is_file():
            assert b"Withdrawing Person" not in file.read_bytes()


def test_switching_language(server: dict[str, Any], page_in: Any) -> None:
    page = page_in("en")
    page.goto(server["url"] + server["drive"].path)
    assert page.locator("html").get_attribute("lang") == "en"
    page.get_by_role("link", name="Русский").click()
    assert page.locator("html").get_attribute("lang") == "ru"
    assert page.get_by_role("heading", name="Перевод: Русский").is_visible()
    page.get_by_role("link", name="Тоҷикӣ").click()
    assert page.locator("html").get_attribute("lang") == "tg"
    assert page.get_by_role("heading", level=1).inner_text() == "Номаро имзо кунед"
    assert page.locator("nav a[aria-current=page]").inner_text() == "Тоҷикӣ"


def test_signing_with_the_keyboard_only(server: dict[str, Any], page_in: Any) -> None:
    page = page_in("en")
    page.goto(server["url"] + server["drive"].path)
    order = []
    for _ in range(40):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
    fields = [f for f in order if f in ("name", "as-real", "city", "kind-typed", "typed_signature", "consent")]
    assert fields[:6] == ["name", "as-real", "city", "kind-typed", "typed_signature", "consent"], order
    page.goto(server["url"] + server["drive"].path)
    while page.evaluate("document.activeElement.id") != "name":
        page.keyboard.press("Tab")
    page.keyboard.type("Keyboard Supporter")
    while page.evaluate("document.activeElement.id") != "consent":
        page.keyboard.press("Tab")
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.type") == "submit"
    page.keyboard.press("Enter")
    page.wait_for_selector("#download-pdf")
    assert page.locator("#receipt").input_value().startswith("campaign-sign-v1:")


def test_every_page_passes_axe_and_the_screenshots(server: dict[str, Any], page_in: Any) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    url = server["url"] + server["drive"].path
    for lang in ("en", "ru", "tg"):
        for label, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
            page = page_in(lang, viewport)
            page.goto(url)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(SCREENSHOTS / f"sign-{lang}-{label}.png"), full_page=True)
            axe_check(page, f"sign page {lang} {label}")
    page = page_in("ru", PHONE)
    page.goto(url)
    page.locator("#consent").check()
    page.get_by_role("button", name="Подписать и получить письмо").click()  # no name: the error
    assert page.locator("#form-error").is_visible()
    page.screenshot(path=str(SCREENSHOTS / "sign-ru-phone-error.png"), full_page=True)
    axe_check(page, "error")
    page.get_by_label("Ваше полное имя").fill("Мария Иванова")
    page.get_by_label("Нарисовать пальцем или мышью").check()
    draw(page)
    page.screenshot(path=str(SCREENSHOTS / "sign-ru-phone-drawn.png"), full_page=False)
    page.get_by_role("button", name="Подписать и получить письмо").click()
    page.wait_for_selector("#download-pdf")
    page.screenshot(path=str(SCREENSHOTS / "done-ru-phone.png"), full_page=True)
    axe_check(page, "done")
    page.goto(url + "/withdraw?lang=tg")
    axe_check(page, "withdraw")
    page.goto(server["url"] + server["closed"].path)
    axe_check(page, "closed drive")
    page.goto(server["url"] + "/s/" + "Z" * 32)
    axe_check(page, "unknown link")
    page.goto(server["url"] + "/")
    axe_check(page, "home")
    for name in ("sign-en-phone.png", "sign-tg-desktop.png"):
        data = (SCREENSHOTS / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
