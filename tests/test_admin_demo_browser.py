"""A newcomer's first look, in a real browser: `campaign demo` (a process), then `campaign
serve --admin-only`, the printed sign-in link in Debian's Chromium (Playwright, headless):
the demo's overview, where everything happened on one day, so the per-day chart is columns
side by side; axe-core on it. Then the demo's report opened offline and printed to PDF.
Screenshots at the README's width in build/screenshots/admin-demo-*.png (docs/admin-overview.png
and docs/report.png are copies of admin-demo-overview-docs.png and admin-demo-report-docs.png)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, make_workspace, run_cli
from tests.support.signing import CHROMIUM_ARGS, SCREENSHOTS, ServeProcess, chromium_or_skip
from tests.test_admin_browser import shot, status_json
from tests.test_browser import axe_check

pytestmark = pytest.mark.slow


DOCS = {"width": 860, "height": 1000}  # the README's screenshots


def test_the_demo_in_a_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """See the module's docstring."""
    from playwright.sync_api import sync_playwright

    chromium_or_skip()
    root = make_workspace(tmp_path / "root", registry=ROOT / "recipients.yaml")
    monkeypatch.chdir(root)
    # A process of its own, as a newcomer runs it.
    subprocess.run([sys.executable, "-m", "campaign", "-C", str(root), "demo"], check=True, capture_output=True)
    demo = root / ".campaign" / "demo"
    monkeypatch.setenv("CAMPAIGN_WORKSPACE", str(demo))
    name = "peace-agreement"
    assert name in status_json()["campaigns"]
    report = tmp_path / "report.html"
    assert run_cli("report", "--campaign", name, "-o", str(report)).code == 0
    with ServeProcess(demo, processes=0, extra=("--admin-only",)) as server, sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=chromium_or_skip(), headless=True, args=CHROMIUM_ARGS)
        try:
            context = chromium.new_context(viewport=DOCS, extra_http_headers={"Accept-Language": "en"}, locale="en")
            page = context.new_page()
            page.goto(f"{server.admin_url}/admin/login#token={server.admin_token}")
            page.wait_for_url(f"{server.admin_url}/admin/")
            page.get_by_role("link", name=name).first.click()
            page.wait_for_selector("svg.chart")
            assert page.locator("svg.chart").count() == 2
            assert page.locator("#timeline-title ~ g .series.columns").count() == 5
            axe_check(page, "demo overview")
            shot(page, "demo-overview-en")
            timeline = page.locator("section[aria-labelledby=timeline-h]").bounding_box()
            page.screenshot(  # down to the chart per day: the README's picture
                path=str(SCREENSHOTS / "admin-demo-overview-docs.png"),
                clip={"x": 0, "y": 0, "width": DOCS["width"], "height": timeline["y"] + timeline["height"] + 12},
                full_page=True,
            )
            context.close()
            offline = chromium.new_context(viewport=DOCS)
            offline.route(re.compile(r"^(?!file:).*"), lambda route: route.abort())
            page = offline.new_page()
            page.goto(report.as_uri())
            assert page.locator("svg.chart").count() == 2
            box = page.locator(".days").first.bounding_box()
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(  # down to the numbers per day: the README's picture
                path=str(SCREENSHOTS / "admin-demo-report-docs.png"),
                clip={"x": 0, "y": 0, "width": DOCS["width"], "height": box["y"] + box["height"] + 16},
                full_page=True,
            )
            offline.close()
        finally:
            chromium.close()
    if shutil.which("pdftoppm"):
        pdf = tmp_path / "report.pdf"
        assert run_cli("report", "--campaign", name, "--pdf", "-o", str(pdf)).code == 0
        prefix = SCREENSHOTS / "admin-demo-report-pdf"
        subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "2", str(pdf), str(prefix)], check=True)
