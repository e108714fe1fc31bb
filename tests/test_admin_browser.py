"""An organiser in a real browser: Playwright driving Debian's Chromium (headless, no
browser download) against `campaign serve --admin-only` on loopback, on a campaign of
2,000 letters in mixed states (sent through the recording sink, delivery reports, read
receipts and replies imported). Signs in through the printed link, filters by tag, opens a
letter's history, downloads its .eml (SHA-256 equal to the log's), releases a held letter
and sees the event; axe-core on every page; screenshots in English and Russian, at phone
and desktop width (build/screenshots/). Then `campaign report`: opened from a file with
the network blocked (no request but the file), numbers equal to `status --json`, and the
PDF rendered (pdftoppm) with every institution's id in `pdftotext`'s output."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.support.review import HOSTILE_SUBJECT, mixed_campaign
from tests.support.signing import CHROMIUM_ARGS, SCREENSHOTS, ServeProcess, chromium_or_skip
from tests.test_browser import DESKTOP, PHONE, axe_check

pytestmark = pytest.mark.slow
LETTERS = 2000


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    chromium_or_skip()
    with pytest.MonkeyPatch.context() as mp:
        base = tmp_path_factory.mktemp("admin")
        mp.setenv("HOME", str(base / "home"))
        mp.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
        ws = mixed_campaign(base / "ws", LETTERS, mp)
        with ServeProcess(ws, processes=0, extra=("--admin-only",)) as server:
            assert "serving the signing page" not in server.output
            yield {"ws": ws, "server": server, "base": base}


@pytest.fixture(autouse=True)
def _workspace(campaign: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_WORKSPACE", str(campaign["ws"]))


@pytest.fixture(scope="module")
def browser(campaign: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=chromium_or_skip(), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def signed_in(browser: Any, campaign: dict[str, Any]) -> Iterator[Any]:
    contexts = []

    def make(lang: str = "en", viewport: dict[str, int] = DESKTOP) -> Any:
        context = browser.new_context(
            viewport=viewport, extra_http_headers={"Accept-Language": lang}, locale=lang, accept_downloads=True
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(60_000)
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda dialog: errors.append(f"a dialog opened: {dialog.message}"))
        page.console_errors = errors
        requests: list[str] = []
        page.on("request", lambda req: requests.append(req.url))
        page.requests_made = requests
        server = campaign["server"]
        page.goto(f"{server.admin_url}/admin/login#token={server.admin_token}")
        page.wait_for_url(f"{server.admin_url}/admin/")
        assert server.admin_token not in page.url
        return page

    yield make
    for context in contexts:
        context.close()


def shot(page: Any, name: str, *, full: bool = True) -> Path:
    """A screenshot (the whole page, or the first screen of a long one)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"admin-{name}.png"
    page.screenshot(path=str(path), full_page=full)
    return path


def status_json() -> dict[str, Any]:
    result = run_cli("status", "--json")
    assert result.code == 0, result.output
    return dict(json.loads(result.stdout))


def test_overview_in_two_languages_at_two_widths(signed_in: Any, campaign: dict[str, Any]) -> None:
    counts = status_json()["campaigns"]["peace-agreement"]
    for lang, viewport, label in (("en", DESKTOP, "desktop"), ("ru", PHONE, "phone"), ("en", PHONE, "phone"),
                                  ("ru", DESKTOP, "desktop")):  # fmt: skip
        page = signed_in(lang, viewport)
        page.get_by_role("link", name="peace-agreement").first.click()
        page.wait_for_selector("svg.chart")
        assert page.locator("html").get_attribute("lang") == lang
        shown = {
            cell.get_attribute("data-state"): int(cell.inner_text()) for cell in page.locator("td[data-state]").all()
        }
        assert {k: v for k, v in shown.items() if k != "total"} == counts
        assert page.locator("svg.chart").count() == 2  # states and the per-day timeline
        axe_check(page, f"overview {lang} {label}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"{lang} {label}: the page is {width}px wide"
        shot(page, f"overview-{lang}-{label}")
        assert page.console_errors == []
        assert all(u.startswith(campaign["server"].admin_url) for u in page.requests_made), page.requests_made


def test_filter_by_tag_open_a_letter_and_download_its_bytes(
    signed_in: Any, campaign: dict[str, Any], tmp_path: Path
) -> None:
    page = signed_in("en")
    page.goto(f"{campaign['server'].admin_url}/admin/letters?c=peace-agreement")
    page.get_by_label("Tag (recipients.yaml)").select_option("special")
    page.get_by_label("State").select_option("delivered")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r".*tag=special.*"))
    ids = [r.get_attribute("data-recipient") for r in page.locator("tr[data-recipient]").all()]
    assert ids and all(int(i[5:]) % 10 == 0 for i in ids)  # type: ignore[index]
    assert all(b.inner_text() == "delivered" for b in page.locator("tr[data-recipient] .badge").all())
    axe_check(page, "letters filtered")
    shot(page, "letters-en-desktop", full=False)
    first = ids[0]
    page.locator(f'tr[data-recipient="{first}"] td:nth-child(2) a').click()
    page.wait_for_selector("#eml")
    axe_check(page, "letter history")
    shot(page, "letter-en-desktop")
    with page.expect_download() as info:
        page.locator("#eml").click()
    path = tmp_path / "letter.eml"
    info.value.save_as(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    events = json.loads(run_cli("log", "--events", "--json", "--to", str(first)).stdout)
    sending = [e for e in events if e["event"] == "sending"][-1]
    assert digest == sending["sha256"] == page.locator("#sending-sha256").inner_text()
    assert page.locator(f'tr[data-event="sending"] td:first-child:text-is("{sending["seq"]}")').count() == 1
    assert page.console_errors == []
    phone = signed_in("ru", PHONE)
    phone.goto(f"{campaign['server'].admin_url}/admin/letters?c=peace-agreement&tag=special")
    axe_check(phone, "letters ru phone")
    shot(phone, "letters-ru-phone", full=False)


def test_release_a_held_letter_and_see_the_event(signed_in: Any, campaign: dict[str, Any]) -> None:
    page = signed_in("en")
    page.goto(f"{campaign['server'].admin_url}/admin/letters?c=peace-agreement&status=held")
    row = page.locator("tr[data-recipient]").first
    recipient = row.get_attribute("data-recipient")
    row.locator("td:nth-child(2) a").click()
    assert page.locator("#letter-state").inner_text() == "held"
    page.get_by_role("link", name="Release this letter").click()
    axe_check(page, "confirm release")
    shot(page, "confirm-release-en-desktop")
    page.get_by_role("button", name="Yes, release it").click()
    page.wait_for_selector('tr[data-event="released"]')
    assert "was released" in page.locator(".done").inner_text()
    assert page.locator("#letter-state").inner_text() == "queued"
    events = json.loads(run_cli("log", "--events", "--json", "--to", str(recipient)).stdout)
    assert events[-1]["event"] == "released"
    assert page.console_errors == []


def test_replies_show_a_hostile_subject_as_text(signed_in: Any, campaign: dict[str, Any]) -> None:
    page = signed_in("en")
    page.goto(f"{campaign['server'].admin_url}/admin/replies?c=peace-agreement")
    cell = page.locator("td.subject", has_text="<script>alert").first
    assert cell.inner_text() == HOSTILE_SUBJECT
    assert page.locator(".badge.auto").count() > 0  # automatic replies marked
    axe_check(page, "replies")
    shot(page, "replies-en-desktop", full=False)
    for path in ("/admin/verify", "/admin/drives", "/admin/waiting?c=peace-agreement"):
        page.goto(campaign["server"].admin_url + path)
        axe_check(page, path)
    assert page.console_errors == []  # no dialog opened, no script ran


def test_the_report_opens_offline_and_agrees_with_status(browser: Any, campaign: dict[str, Any]) -> None:
    out = campaign["base"] / "report.html"
    result = run_cli("report", "-o", str(out))
    assert result.code == 0, result.output
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    context.route(re.compile(r"^(?!file:).*"), lambda route: route.abort())
    page.goto(out.as_uri())
    assert requests == [out.as_uri()], requests
    status = status_json()
    shown = {c.get_attribute("data-state"): int(c.inner_text()) for c in page.locator("td[data-state]").all()}
    assert {k: v for k, v in shown.items() if k != "total"} == status["campaigns"]["peace-agreement"]
    receipts = {c.get_attribute("data-receipts"): int(c.inner_text()) for c in page.locator("td[data-receipts]").all()}
    assert receipts == status["receipts"]["peace-agreement"]
    assert page.locator("tr[data-recipient]").count() == LETTERS
    axe_check(page, "report")
    shot(page, "report-en-desktop", full=False)
    context.close()


def test_the_report_as_pdf_names_every_institution(campaign: dict[str, Any]) -> None:
    if not shutil.which("pdftotext") or not shutil.which("pdftoppm"):
        reason = "pdftotext/pdftoppm not found: install poppler-utils (scripts/system-deps.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    out = campaign["base"] / "report.pdf"
    result = run_cli("report", "--pdf", "-o", str(out))
    assert result.code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF-")
    text = subprocess.run(["pdftotext", "-layout", str(out), "-"], capture_output=True, text=True, check=True).stdout
    missing = [f"inst-{i:04d}" for i in range(LETTERS) if f"inst-{i:04d}" not in text]
    assert missing == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    prefix = SCREENSHOTS / "admin-report-pdf"
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "3", str(out), str(prefix)], check=True)
    assert list(SCREENSHOTS.glob("admin-report-pdf-*.png"))
