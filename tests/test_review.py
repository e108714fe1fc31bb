"""The organisers' area (in process, over ASGI) and `campaign report`, on a small campaign in
mixed states made with real parts (tests/support/review.py): security (no session, wrong
Host, cross-site posts, hostile reply subjects), downloads, the two actions, the report
file (self-contained, numbers equal to `status --json`, refuses to overwrite), words in
every language, weekly buckets, and the store's query plans (EXPLAIN on SQLite)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli, tree_digest
from tests.support.review import HOSTILE_SUBJECT, mixed_campaign
from tests.support.signing import AppClient

PORT = 8471
BASE = f"http://127.0.0.1:{PORT}"
TOKEN = "t" * 43


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as mp:
        base = tmp_path_factory.mktemp("review")
        mp.setenv("HOME", str(base / "home"))
        mp.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
        yield mixed_campaign(base / "ws", 60, mp)


@pytest.fixture
def ws(small: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CAMPAIGN_WORKSPACE", str(small))
    return small


@pytest.fixture
def client(ws: Path) -> Iterator[AppClient]:
    from campaign import api, web
    from campaign.api.review import ReviewService

    service = ReviewService(api.open_workspace(ws))
    with AppClient(web.admin_app(service, token=TOKEN, port=PORT), base_url=BASE) as c:
        yield c
    service.close()


def form_token(html: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', html)
    assert found is not None, html[:2000]
    return found.group(1)


def fields_of(html: str, action: str) -> dict[str, str]:
    """The hidden fields of the form that posts to ``action``."""
    form = re.search(rf'<form[^>]*action="{re.escape(action)}".*?</form>', html, re.S)
    assert form is not None, html[:2000]
    return dict(re.findall(r'name="(csrf|form_token)" value="([^"]+)"', form.group(0)))


def sign_in(c: AppClient) -> None:
    page = c.get("/admin/login")
    done = c.post("/admin/login", data={"token": TOKEN, "form_token": form_token(page.text)})
    assert done.status_code == 303 and done.headers["location"] == "/admin/"


def row_of(recipient: str) -> dict[str, Any]:
    result = run_cli("log", "--json", "--to", recipient)
    assert result.code == 0, result.output
    return dict(json.loads(result.stdout)[0])


def _signature(n: int, text_sha256: str) -> Any:
    """Supporter number ``n``'s signature (to ohchr, named "Supporter Namesake<n>")."""
    from campaign.store import signing as sstore

    return sstore.NewSignature(
        commitment=f"{n:064x}", name=f"Supporter Namesake{n:02d}", pseudonymous=False, sealed_name=None,
        title=None, city=None, signature_png=None, typed_signature="x", ui_lang="en", text_lang="en",
        text_sha256=text_sha256, translation_lang=None, translation_sha256=None, consented_to=["ohchr"],
    )  # fmt: skip


# -- security ------------------------------------------------------------------------


def test_without_a_session_nothing_is_shown(client: AppClient) -> None:
    for path in ("/admin/", "/admin/overview?c=peace-agreement", "/admin/letters?c=peace-agreement",
                 "/admin/letter/1", "/admin/drives", "/admin/verify"):  # fmt: skip
        page = client.get(path)
        assert page.status_code == 303 and page.headers["location"].startswith("/admin/login"), path
        assert "peace-agreement" not in page.text and "inst-" not in page.text
    for path in ("/admin/letter/1/eml", "/admin/evidence?c=peace-agreement"):
        assert client.get(path).status_code == 403
    assert client.post("/admin/letter/1/cancel", data={"x": "y"}).status_code == 403
    assert client.get("/admin/", headers={"cookie": "campaign_admin=forged-session"}).status_code == 303


def test_the_token_gives_an_httponly_strict_cookie_and_never_stays_in_a_url(client: AppClient) -> None:
    page = client.get("/admin/login")
    assert TOKEN not in page.text
    wrong = client.post("/admin/login", data={"token": "x" * 43, "form_token": form_token(page.text)})
    assert wrong.status_code == 403 and "not the one" in wrong.text and "set-cookie" not in wrong.headers
    page = client.get("/admin/login")
    done = client.post("/admin/login", data={"token": TOKEN, "form_token": form_token(page.text)})
    assert done.status_code == 303 and done.headers["location"] == "/admin/"
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    assert TOKEN not in cookie
    assert client.get("/admin/").status_code == 200


def test_a_host_that_is_not_this_listener_is_refused(client: AppClient) -> None:
    sign_in(client)
    for host in ("evil.example", f"evil.example:{PORT}", "127.0.0.1:9999", f"192.168.1.5:{PORT}", ""):
        page = client.get("/admin/", headers={"host": host})
        assert page.status_code == 421, host
        assert client.get("/admin/login", headers={"host": host}).status_code == 421
    assert client.get("/admin/", headers={"host": f"localhost:{PORT}"}).status_code == 200


def test_cross_site_posts_are_refused_and_change_nothing(client: AppClient, ws: Path) -> None:
    sign_in(client)
    target = row_of("inst-0011")  # queued, waiting for --at
    confirm = client.get(f"/admin/letter/{target['id']}/cancel")
    before = tree_digest(ws / ".campaign")
    fields = fields_of(confirm.text, f"/admin/letter/{target['id']}/cancel")
    for headers in ({"sec-fetch-site": "cross-site"}, {"origin": "http://evil.example"}):
        refused = client.post(f"/admin/letter/{target['id']}/cancel", data=fields, headers=headers)
        assert refused.status_code == 403, headers
    no_csrf = client.post(f"/admin/letter/{target['id']}/cancel", data={"form_token": fields["form_token"]})
    assert no_csrf.status_code == 403
    assert tree_digest(ws / ".campaign") == before
    assert row_of("inst-0011")["status"] == "queued"


def test_a_reply_subject_with_a_script_shows_as_text(client: AppClient) -> None:
    sign_in(client)
    page = client.get("/admin/replies?c=peace-agreement")
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(&#39;reply&#39;)&lt;/script&gt;" in page.text
    assert "automatic" in page.text  # automatic replies are marked
    letter = re.search(r'href="/admin/letter/(\d+)">[^<]*</a><br><code>[^<]*</code></td><td>[^<]*</td>'
                       r'<td class="subject">&lt;script', page.text)  # fmt: skip
    assert letter is not None
    history = client.get(f"/admin/letter/{letter.group(1)}")
    assert "<script>alert" not in history.text and "&lt;script&gt;" in history.text
    assert HOSTILE_SUBJECT.startswith("<script>")


def test_headers_forbid_framing_scripts_from_elsewhere_and_caching(client: AppClient) -> None:
    sign_in(client)
    page = client.get("/admin/overview?c=peace-agreement")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "<svg" in page.text and "<script" not in page.text.split("</main>")[0]


# -- pages, downloads, actions ---------------------------------------------------------


def test_the_eml_is_an_attachment_with_the_sha256_of_the_log(client: AppClient, ws: Path) -> None:
    sign_in(client)
    target = row_of("inst-0030")
    download = client.get(f"/admin/letter/{target['id']}/eml")
    assert download.status_code == 200
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-type"].startswith("message/rfc822")
    events = json.loads(run_cli("log", "--events", "--json", "--to", "inst-0030").stdout)
    sending = [e for e in events if e["event"] == "sending"][-1]
    assert hashlib.sha256(download.content).hexdigest() == sending["sha256"]
    history = client.get(f"/admin/letter/{target['id']}")
    assert sending["sha256"] in history.text and f">{sending['seq']}<" in history.text


def test_filter_by_tag_and_state_sort_and_pages(client: AppClient) -> None:
    sign_in(client)
    page = client.get("/admin/letters?c=peace-agreement&tag=special&per=25")
    ids = re.findall(r'data-recipient="(inst-\d+)"', page.text)
    assert ids and all(int(i[5:]) % 10 == 0 for i in ids)
    assert "6 letters match" in page.text
    held = client.get("/admin/letters?c=peace-agreement&status=held")
    assert sorted(re.findall(r'data-recipient="(inst-\d+)"', held.text)) == [f"inst-{i:04d}" for i in range(5)]
    desc = client.get("/admin/letters?c=peace-agreement&sort=institution&order=desc&per=25&page=1")
    found = re.findall(r'data-recipient="(inst-\d+)"', desc.text)
    assert found[0] == "inst-0059" and found == sorted(found, reverse=True) and len(found) == 25
    last = client.get("/admin/letters?c=peace-agreement&per=25&page=3")
    assert len(re.findall(r'data-recipient="', last.text)) == 10 and "Page 3 of 3" in last.text
    for bad in ("status=nope", "sort=nope", "per=7", "page=0", "page=x", "tag=nope"):
        assert client.get(f"/admin/letters?c=peace-agreement&{bad}").status_code == 400, bad
    assert client.get("/admin/letters?c=no-such-campaign").status_code == 404


def test_release_a_held_letter_with_confirmation(client: AppClient, ws: Path) -> None:
    sign_in(client)
    target = row_of("inst-0002")
    assert target["status"] == "held"
    letter = client.get(f"/admin/letter/{target['id']}")
    assert f'href="/admin/letter/{target["id"]}/release"' in letter.text
    confirm = client.get(f"/admin/letter/{target['id']}/release")
    fields = fields_of(confirm.text, f"/admin/letter/{target['id']}/release")
    done = client.post(f"/admin/letter/{target['id']}/release", data=fields, headers={"sec-fetch-site": "same-origin"})
    assert done.status_code == 303
    assert row_of("inst-0002")["status"] == "queued"
    events = json.loads(run_cli("log", "--events", "--json", "--to", "inst-0002").stdout)
    assert events[-1]["event"] == "released"
    after = client.get(f"/admin/letter/{target['id']}")
    assert "was released" in after.text and 'data-event="released"' in after.text
    again = client.post(f"/admin/letter/{target['id']}/release", data=fields)
    assert again.status_code == 409  # the form is spent


def test_cancel_refuses_a_letter_already_sent(client: AppClient) -> None:
    sign_in(client)
    target = row_of("inst-0040")
    action = f"/admin/letter/{target['id']}/cancel"
    done = client.post(action, data=fields_of(client.get(action).text, action))
    assert done.status_code == 400 and "only unsent letters" in done.text
    assert row_of("inst-0040")["status"] == target["status"]


def test_cancel_a_queued_letter_with_confirmation(client: AppClient, ws: Path) -> None:
    """A queued letter (waiting for --at) is cancelled after the confirmation page: 303,
    the letter cancelled, a `cancelled` event with its reason; the post needs the
    session's CSRF value, and the form is spent once used."""
    sign_in(client)
    target = row_of("inst-0013")
    assert target["status"] == "queued"
    action = f"/admin/letter/{target['id']}/cancel"
    assert f'href="{action}"' in client.get(f"/admin/letter/{target['id']}").text
    fields = fields_of(client.get(action).text, action)
    for forged in ({"form_token": fields["form_token"]}, {**fields, "csrf": "x" * len(fields["csrf"])}):
        assert client.post(action, data=forged).status_code == 403
    assert row_of("inst-0013")["status"] == "queued"
    done = client.post(action, data=fields, headers={"sec-fetch-site": "same-origin"})
    assert done.status_code == 303 and done.headers["location"] == f"/admin/letter/{target['id']}"
    assert row_of("inst-0013")["status"] == "cancelled"
    events = json.loads(run_cli("log", "--events", "--json", "--to", "inst-0013").stdout)
    assert events[-1]["event"] == "cancelled", events[-1]
    assert events[-1]["reason"] == "cancelled in the organisers' area", events[-1]
    after = client.get(f"/admin/letter/{target['id']}")
    assert 'data-event="cancelled"' in after.text and f'href="{action}"' not in after.text
    assert client.post(action, data=fields).status_code == 409  # the form is spent


def test_unanswered_institutions_with_the_days_since_delivery(client: AppClient, ws: Path) -> None:
    """Institutions whose accepted letters got no reply from a person, with the whole days
    since the delivery report (or, without one, since sending), counted from today (UTC)."""
    from datetime import UTC, datetime

    from campaign import api
    from campaign.api.review import ReviewService

    rows = {r["recipient"]: r for r in json.loads(run_cli("log", "--json").stdout)}
    service = ReviewService(api.open_workspace(ws))
    try:
        later = date(2027, 3, 1)
        found = {u.recipient: u for u in service.unanswered("peace-agreement", today=later)}
    finally:
        service.close()
    replied = {r for r, row in rows.items() if row.get("replied_at")}
    accepted = {r for r, row in rows.items() if row["status"] in ("sent", "relayed", "delivered")}
    assert set(found) == accepted - replied and found
    delivered = [u for u in found.values() if u.delivered]
    assert delivered and any(not u.delivered for u in found.values())
    for u in found.values():
        row = rows[u.recipient]
        since = row["receipt_at"] if u.delivered else row["sent_at"]
        assert u.since[:10] == since[:10], (u, row)
        assert u.days == (later - date.fromisoformat(since[:10])).days
    sign_in(client)
    page = client.get("/admin/replies?c=peace-agreement")
    today = datetime.now(UTC).date()
    one = delivered[0]
    # the fixture's reports are dated from now: near midnight UTC one may fall tomorrow (0 days, never -1)
    days = max(0, (today - date.fromisoformat(one.since[:10])).days)
    cell = re.search(
        rf"<code>{one.recipient}</code>.*?</td><td class=\"n\">1</td><td class=\"n\">([^<]*)</td>", page.text
    )
    assert cell is not None and cell.group(1) == str(days), page.text[:3000]


def test_the_log_check_is_kept_until_the_chain_head_moves(client: AppClient, ws: Path) -> None:
    """`log verify`'s result is computed once per chain head: asked again it is the same
    check; after an event it is stale (the overview says so) and the next check is new."""
    sign_in(client)
    first = client.get("/admin/verify").text
    checked_at = re.search(r"Checked at (\S+ \(UTC\) in [\d.]+ s)", first)
    count = re.search(r"The log verifies: (\d+) events", first)
    assert checked_at and count, first[:3000]
    again = client.get("/admin/verify").text
    assert f"Checked at {checked_at.group(1)}" in again  # kept, not recomputed
    assert "Last check: The log verifies" in client.get("/admin/overview?c=peace-agreement").text
    assert run_cli("pause", "--campaign", "peace-agreement").code == 0  # an event: the chain head moves
    assert run_cli("resume", "--campaign", "peace-agreement").code == 0
    stale = client.get("/admin/overview?c=peace-agreement").text
    assert "Not checked since the log last changed" in stale and "Last check" not in stale
    fresh = client.get("/admin/verify").text
    recount = re.search(r"The log verifies: (\d+) events", fresh)
    assert recount is not None and int(recount.group(1)) == int(count.group(1)) + 2
    assert "Last check: The log verifies" in client.get("/admin/overview?c=peace-agreement").text
    # The same through the service: one object per chain head.
    from campaign import api
    from campaign.api.review import ReviewService

    service = ReviewService(api.open_workspace(ws))
    try:
        kept = service.verification()
        assert kept is not None and service.verification() is kept and service.verification(compute=False) is kept
        assert run_cli("pause", "--campaign", "peace-agreement").code == 0
        assert run_cli("resume", "--campaign", "peace-agreement").code == 0
        assert service.verification(compute=False) is None
        new = service.verification()
        assert new is not None and new is not kept and new.head != kept.head
        assert new.result.ok and new.result.count == kept.result.count + 2
    finally:
        service.close()


def test_overview_counts_equal_status_and_the_log_check_is_kept(client: AppClient, ws: Path) -> None:
    sign_in(client)
    status = json.loads(run_cli("status", "--json").stdout)
    page = client.get("/admin/overview?c=peace-agreement")
    shown = dict(re.findall(r'data-state="(\w+)">(\d+)<', page.text))
    counts = status["campaigns"]["peace-agreement"]
    assert {k: int(v) for k, v in shown.items() if k != "total"} == counts
    assert int(shown["total"]) == sum(counts.values())
    assert "scheduled: 2031-01-01T09:00+00:00" in page.text  # `campaign status`'s words
    waiting = client.get("/admin/waiting?c=peace-agreement")
    assert all(w["reason"] in waiting.text for w in status["waiting"])
    first = client.get("/admin/verify")
    assert "The log verifies" in first.text
    assert "Last check: The log verifies" in client.get("/admin/overview?c=peace-agreement").text
    evidence = client.get("/admin/evidence?c=peace-agreement")
    assert evidence.status_code == 200 and evidence.content.startswith(b"PK")
    assert evidence.headers["content-disposition"].startswith("attachment;")


def test_pages_in_russian(client: AppClient) -> None:
    sign_in(client)
    page = client.get("/admin/overview?c=peace-agreement&lang=ru")
    assert '<html lang="ru">' in page.text and "Письма по состояниям" in page.text
    assert "Письма по состояниям" in client.get("/admin/overview?c=peace-agreement").text  # remembered


def test_demo_then_serve_shows_the_demo_campaign_with_its_charts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a newcomer does: `campaign demo`, then `campaign serve` (the real process, the
    organisers' area alone), sign in with the printed token: the demo's campaign is listed,
    and its overview shows the counts of `status --json` and both charts; the demo sends
    everything on one day, so the per-day chart is columns side by side with their numbers."""
    import httpx

    from tests.conftest import ROOT, make_workspace
    from tests.support.signing import ServeProcess

    root = make_workspace(tmp_path / "root", registry=ROOT / "recipients.yaml")
    monkeypatch.chdir(root)
    assert run_cli("-C", str(root), "demo").code == 0
    demo = root / ".campaign" / "demo"
    status = json.loads(run_cli("-C", str(demo), "status", "--json").stdout)
    name = "peace-agreement"  # the demo's letter; its fictional case goes out as a campaign of its own
    assert name in status["campaigns"] and len(status["campaigns"]) == 2
    with (
        ServeProcess(demo, processes=0, extra=("--admin-only",)) as server,
        httpx.Client(base_url=server.admin_url, timeout=60) as c,
    ):
        login = c.get("/admin/login")
        signed = c.post("/admin/login", data={"token": server.admin_token, "form_token": form_token(login.text)})
        assert signed.status_code == 303, signed.text[:500]
        home = c.get("/admin/").text
        assert all(f"/admin/overview?c={campaign}" in home for campaign in status["campaigns"])
        page = c.get(f"/admin/overview?c={name}")
    assert page.status_code == 200
    shown = {k: int(v) for k, v in re.findall(r'data-state="(\w+)">(\d+)<', page.text) if k != "total"}
    assert shown == status["campaigns"][name]
    assert page.text.count('<svg xmlns="http://www.w3.org/2000/svg"') == 2
    timeline = page.text[page.text.index('aria-labelledby="timeline-title"') :]
    assert timeline.count('class="series columns"') == 5  # sent, delivered, bounced, read, answered
    sent = sum(n for s, n in status["campaigns"][name].items() if s not in ("queued", "held", "cancelled"))
    assert f">{sent:,}</text>" in timeline  # the column's number
    assert "The numbers per day (1 day)" in page.text


# -- the report ----------------------------------------------------------------------------


def test_report_is_self_contained_and_its_numbers_equal_status(ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = run_cli("report", "-o", str(out))
    assert result.code == 0, result.output
    html = out.read_text()
    assert out.stat().st_mode & 0o777 == 0o600
    assert not re.search(r"(?:src|href)\s*=\s*[\"'](?!#|data:)", html)  # nothing to fetch
    assert "<script" not in html and "@import" not in html and "url(" not in html
    assert "default-src 'none'" in html
    status = json.loads(run_cli("status", "--json").stdout)
    shown = {k: int(v) for k, v in re.findall(r'data-state="(\w+)">(\d+)<', html) if k != "total"}
    assert shown == status["campaigns"]["peace-agreement"]
    receipts = {k: int(v) for k, v in re.findall(r'data-receipts="(\w+)">(\d+)<', html)}
    assert receipts == status["receipts"]["peace-agreement"]
    assert all(f'data-recipient="inst-{i:04d}"' in html for i in range(60))
    assert "&lt;script&gt;" not in html or "<script>" not in html


def test_report_refuses_to_overwrite_without_force(ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    out.write_text("keep me")
    refused = run_cli("report", "-o", str(out))
    assert refused.code == 1 and "already exists" in refused.stderr and "--force" in refused.stderr
    assert out.read_text() == "keep me"
    assert run_cli("report", "-o", str(out), "--force", "--lang", "ru").code == 0
    assert "Отчёт о кампании" in out.read_text()


# -- pure parts ------------------------------------------------------------------------------


def test_every_language_has_every_word() -> None:
    from campaign.report.words import WORDS
    from campaign.web.admin_i18n import PAGE_WORDS

    for table in (WORDS, PAGE_WORDS):
        keys = set(table["en"])
        for lang, words in table.items():
            assert set(words) == keys, lang


def test_weekly_buckets_never_show_fewer_than_ten() -> None:
    from campaign.report import weekly_buckets

    monday = date(2026, 11, 2)

    def days(*counts: int) -> list[tuple[str, int]]:
        return [((monday + timedelta(weeks=i)).isoformat(), n) for i, n in enumerate(counts) if n]

    assert weekly_buckets(days(3, 4)) == []
    buckets = weekly_buckets(days(25, 3, 40, 2))
    assert [b.count for b in buckets] == [25, 45]
    assert sum(b.count for b in buckets) == 70
    assert all(b.count >= 10 for b in weekly_buckets(days(*range(1, 30))))
    assert buckets[1].label == "2026-W46…W48"


def test_the_chart_per_day_is_columns_for_a_few_days_and_lines_beyond() -> None:
    """One day (the demo) or a few: each kind a column of its own colour beside the others,
    numbered up to three days, so equal counts cannot hide each other; a long campaign: lines."""
    from campaign.report import charts

    names = {"sent": "Sent", "delivered": "Delivered", "bounced": "Bounced", "read": "Read", "replied": "Answered"}
    one = charts.timeline([(date(2026, 12, 7), {"sent": 9, "delivered": 9})], names, title="t")
    assert one is not None and one.count('class="series columns"') == 5 and "<path" not in one
    assert one.count(">9</text>") == 2 and ">2026-12-07<" in one
    columns = re.findall(r'<g class="series columns"><rect x="([\d.]+)"[^>]*fill="(#\w+)"', one)
    x = {colour: float(left) for left, colour in columns}
    assert x[charts.COLOURS["sent"]] < x[charts.COLOURS["delivered"]]  # beside, not on top of each other
    days = [(date(2026, 12, 1) + timedelta(days=n), {"sent": n, "read": 1}) for n in range(20)]
    long = charts.timeline(days, names, title="t")
    assert long is not None and "series columns" not in long and long.count("<path") >= 5


def test_store_queries_use_indexes(ws: Path) -> None:
    """EXPLAIN QUERY PLAN: every query of the organisers' area searches an index; none
    scans a table. The statements are the ones the store really runs (caught with SQLite's
    trace callback, parameters filled in): the overview, pages of the table, a letter's
    history (its receipts: ``message_row = ? OR suspicious_row = ?``), replies, the
    institutions that have not answered, a drive's signatures per day."""
    from campaign import api
    from campaign.store import review as sreview

    store = api.open_store(api.open_workspace(ws))
    ran: list[str] = []
    try:
        c = "peace-agreement"
        one = row_of("inst-0030")["id"]
        store.conn.set_trace_callback(ran.append)  # type: ignore[attr-defined]
        sreview.facts(store, c)
        for sort in sreview.SORTS:
            for query in (
                sreview.PageQuery(c, sort=sort),
                sreview.PageQuery(c, statuses=("sent",), sort=sort, descending=True, offset=50),
                sreview.PageQuery(c, recipients=("inst-0001", "inst-0003"), sort=sort),
            ):
                sreview.letter_page(store, query)
        store.receipts_for(one)
        store.replies(c)
        sreview.unanswered(store, c)
        sreview.signature_days(store, 1)
        store.conn.set_trace_callback(None)  # type: ignore[attr-defined]
        statements = [s for s in ran if s.lstrip().upper().startswith("SELECT")]
        for needle in ("suspicious_row", "kind IN ('reply', 'auto-reply')", "HAVING MAX", "signed_on"):
            assert any(needle in s for s in statements), needle
        for statement in statements:
            plan = sreview.explain(store, statement, ())
            scans = [p for p in plan if p.startswith("SCAN") and "INDEX" not in p]
            assert scans == [], (statement, plan)
            assert any("USING" in p and "INDEX" in p for p in plan), (statement, plan)
        # The overview's one pass walks the index keyed by its grouping: no sort.
        facts = sreview.explain(store, sreview.FACTS_SQL, [c])
        assert facts == ["SEARCH messages USING INDEX messages_review_facts (campaign=?)"], facts
        # A page sorted by sending or by change finds its ids in that index without reading rows.
        for sort in ("sent", "changed"):
            rows_sql, _, params = sreview.page_sql(sreview.PageQuery(c, sort=sort, offset=500))
            page = sreview.explain(store, rows_sql, params)
            assert any("COVERING INDEX messages_review_facts" in p for p in page), page
        history = sreview.explain(store, next(s for s in statements if "suspicious_row" in s), ())
        assert any("receipts_suspicious" in p for p in history), history
    finally:
        store.close()


def test_the_review_indexes_are_added_to_a_store_made_before_them(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0013 on a store the previous release made (SQLite and PostgreSQL): the
    overview's facts and a letter's receipts read the same before and after it."""
    from campaign.store import NewMessage, migrations, open_store
    from campaign.store import review as sreview

    before = [m for m in migrations.MIGRATIONS if m[0] != "0013_review_indexes"]
    # sql first: importing it under a patched migrations module would take the patched list
    monkeypatch.setattr("campaign.store.sql.MIGRATIONS", before)
    monkeypatch.setattr(migrations, "MIGRATIONS", before)
    store = open_store(store_url)
    with store.enqueue(1_000) as session:
        for n in range(6):
            session.add(
                NewMessage(
                    campaign="c", letter="l", recipient=f"inst-{n}", email=f"a@{n}.example",
                    email_key=f"a@{n}.example", domain=f"{n}.example", contact_name=None, lang="en", subject="s",
                    message_id=f"<{n}@x>", envid=f"e{n}", body=b"body", content_sha256="0" * 64,
                )
            )  # fmt: skip
    with store.transaction() as tx:  # as sends and reports left them
        tx.execute(
            "UPDATE messages SET status = 'delivered', sent_at = '2026-12-07T10:00:00.000Z', "
            "receipt_at = '2026-12-08T09:00:00Z', dsn_requested = 1 WHERE id <= 4"
        )
        tx.execute("UPDATE messages SET replied_at = '2026-12-09T09:00:00Z' WHERE id = 2")
        tx.execute(
            "INSERT INTO receipts (report_sha256, part, kind, message_row, suspicious_row, received_at) VALUES "
            "('a', 0, 'dsn', 3, NULL, '2026-12-08T09:00:00Z'), ('b', 0, 'dsn', NULL, 5, '2026-12-08T09:00:00Z')"
        )
    old_facts = sreview.facts(store, "c")
    old_receipts = [r["report_sha256"] for r in store.receipts_for(5)]
    store.close()
    monkeypatch.undo()
    store = open_store(store_url)
    try:
        assert store.migrations()[-1] == "0013_review_indexes"
        with store.reading() as tx:
            if store.dialect == "sqlite":
                names = {r["name"] for r in tx.rows("SELECT name FROM sqlite_master WHERE type = 'index'")}
            else:
                names = {r["indexname"] for r in tx.rows("SELECT indexname FROM pg_indexes")}
        assert {"messages_review_facts", "receipts_suspicious"} <= names
        assert sreview.facts(store, "c") == old_facts
        assert old_facts.totals["delivered"] == 4 and old_facts.totals["replied"] == 1
        assert [r["report_sha256"] for r in store.receipts_for(5)] == old_receipts == ["b"]
    finally:
        store.close()


def test_the_supporters_side_knows_nothing_of_the_organisers_area() -> None:
    """The supporters' router and templates import and link nothing of the admin area,
    and their application does not answer its paths."""
    import ast

    from tests.test_architecture import PACKAGE, imports

    for path in (PACKAGE / "web" / "supporters.py", PACKAGE / "web" / "i18n.py"):
        for name, line in imports(path):
            assert "admin" not in name, f"{path}:{line}: {name}"
        assert "admin" not in ast.unparse(ast.parse(path.read_text())).lower().replace("administr", "")
    for template in (PACKAGE / "web" / "templates" / "supporters").glob("*.html"):
        assert "admin" not in template.read_text(), template


def test_the_supporters_application_does_not_serve_the_admin_area(tmp_path: Path) -> None:
    from campaign import web

    class NoService:
        organisation = "Org"

    app = web.supporters_app(NoService())  # type: ignore[arg-type]
    with AppClient(app) as c:
        for path in ("/admin/", "/admin/login", "/admin/static/admin.css", "/admin/overview?c=x"):
            assert c.get(path).status_code == 404, path


def test_admin_templates_use_only_known_words() -> None:
    """`w.items` would be dict.items in Jinja2: every word a template uses is a key, and no
    key is the name of a dict method (the report's template too)."""
    from campaign.report.words import WORDS
    from campaign.web.admin_i18n import words

    root = Path(__file__).resolve().parent.parent / "campaign"
    for folder, known in (
        (root / "web" / "templates" / "admin", set(words("en"))),
        (root / "report", set(WORDS["en"])),
    ):
        used: set[str] = set()
        for path in [*folder.rglob("*.html"), *folder.rglob("*.j2")]:
            used |= set(re.findall(r"\bw\.(\w+)", path.read_text()))
        assert used and used <= known, used - known
        assert not [key for key in known if hasattr(dict, key)]


def test_report_names_supporters_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drives: count and signatures per week (buckets of at least 10) always; the names
    printed under the letter only with --with-signatories."""
    from datetime import UTC, datetime

    from campaign import api
    from campaign.store import signing as sstore
    from tests.support.signing import signing_workspace

    ws_path, drive = signing_workspace(tmp_path / "ws", ids=("ohchr",))
    monkeypatch.setenv("CAMPAIGN_WORKSPACE", str(ws_path))
    assert run_cli("queue", "peace-agreement", "--to", "ohchr").code == 0
    start = int(datetime(2026, 11, 2, 10, tzinfo=UTC).timestamp() * 1000)
    with api.open_store(api.open_workspace(ws_path)) as store:
        drive_id = sstore.get_drive(store, drive.name)["id"]
        for n in range(23):  # 12 in the first week, 8 in the second, 3 in the third
            day = 0 if n < 12 else 7 if n < 20 else 14
            sstore.add_signature(store, drive_id, _signature(n, drive.text_sha256), start + day * 86_400_000 + n)
    out = tmp_path / "report.html"
    assert run_cli("report", "-o", str(out)).code == 0
    html = out.read_text()
    assert "Namesake" not in html and "names no supporter" in html
    assert "<strong>23</strong>" in html and 'aria-labelledby="weeks-0-title"' in html
    weeks = re.findall(r"<tr><td>(2026-W[^<]+)</td><td class=\"n\">(\d+)</td></tr>", html)
    assert weeks == [("2026-W45", "12"), ("2026-W46…W47", "11")]
    named = run_cli("report", "-o", str(out), "--force", "--with-signatories")
    assert named.code == 0 and "23 supporters named" in named.stdout
    assert all(f"Supporter Namesake{n:02d}" in out.read_text() for n in range(23))


def test_the_drives_page_shows_weeks_of_at_least_ten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/admin/drives: a drive of 31 signatures over four weeks (14, 6, 9, 2) shows its count
    and signatures per week, each bucket at least 10 and adding up to the count; no name."""
    from datetime import UTC, datetime

    from campaign import api, web
    from campaign.api.review import ReviewService
    from campaign.store import signing as sstore
    from tests.support.signing import signing_workspace

    ws_path, drive = signing_workspace(tmp_path / "ws", ids=("ohchr",))
    monkeypatch.setenv("CAMPAIGN_WORKSPACE", str(ws_path))
    start = int(datetime(2026, 11, 2, 10, tzinfo=UTC).timestamp() * 1000)
    weeks = [0] * 14 + [1] * 6 + [2] * 9 + [3] * 2
    with api.open_store(api.open_workspace(ws_path)) as store:
        drive_id = sstore.get_drive(store, drive.name)["id"]
        for n, week in enumerate(weeks):
            at = start + (week * 7 + n % 3) * 86_400_000 + n
            sstore.add_signature(store, drive_id, _signature(n, drive.text_sha256), at)
    service = ReviewService(api.open_workspace(ws_path))
    try:
        with AppClient(web.admin_app(service, token=TOKEN, port=PORT), base_url=BASE) as c:
            sign_in(c)
            page = c.get("/admin/drives")
    finally:
        service.close()
    assert page.status_code == 200
    assert drive.name in page.text and "<strong>31</strong>" in page.text
    shown = re.findall(r"<tr><td>(2026-W[^<]+)</td><td class=\"n\" data-week>(\d+)</td></tr>", page.text)
    assert shown == [("2026-W45", "14"), ("2026-W46…W48", "17")], shown  # 6 + 9, then the short tail of 2
    assert all(int(n) >= 10 for _, n in shown) and sum(int(n) for _, n in shown) == len(weeks)
    assert 'aria-labelledby="weeks-0-title"' in page.text  # the chart beside the table
    assert "Namesake" not in page.text


@pytest.mark.postgres
def test_the_same_review_on_postgresql(ws: Path, pg_url: str, tmp_path: Path) -> None:
    """The organisers' queries and the report give the same answers on a PostgreSQL copy."""
    from campaign import api
    from campaign.api.review import ReviewService, TableRequest

    assert run_cli("store", "migrate", "--to", pg_url).code == 0
    local = ReviewService(api.open_workspace(ws))
    remote = ReviewService(api.open_workspace(ws, overrides={"store.url": pg_url}))
    try:
        for service in (local, remote):
            assert service._store.dialect == ("sqlite" if service is local else "postgres")
        a, b = local.overview("peace-agreement"), remote.overview("peace-agreement")
        assert (a.counts, a.totals, a.receipts, a.days) == (b.counts, b.totals, b.receipts, b.days)
        for request in (
            TableRequest("peace-agreement", tag="special", sort="sent", descending=True),
            TableRequest("peace-agreement", status="delivered", sort="changed", per_page=25, page=2),
        ):
            assert local.letters(request).rows == remote.letters(request).rows
        assert local.unanswered("peace-agreement") == remote.unanswered("peace-agreement")
        assert [r.subject for r in local.replies("peace-agreement")] == [
            r.subject for r in remote.replies("peace-agreement")
        ]
        one = local.letters(TableRequest("peace-agreement", status="delivered")).rows[0].id
        assert local.eml(one).data == remote.eml(one).data
        assert [e.hash for e in local.letter(one).events] == [e.hash for e in remote.letter(one).events]
    finally:
        local.close()
        remote.close()


def test_why_a_letter_waits_is_said_in_the_pages_language() -> None:
    # The Russian page said "office hours: opens Mon 09:00 Europe/Zurich" in English.
    from zoneinfo import ZoneInfo

    from campaign.pacing import READY, describe_moment
    from campaign.report.words import reason_in

    opening = f"office hours: opens {describe_moment(1_796_634_000_000, ZoneInfo('Europe/Zurich'))}"
    ours = [
        READY,
        "ready",
        "scheduled",
        "scheduled: 2026-12-10 09:00 Europe/Geneva",
        opening,
        "daily cap 3 reached for un-wgad",
        "rate: 0.5/s overall",
        "rate: 2/s to un.org",
        "retry after a temporary failure",
        "resending after a crash: possible duplicate",
        "paused: `campaign resume` to send",
    ]
    for text in ours:
        said = reason_in("ru", text)
        assert said != text and re.search("[а-я]", said), text
        assert reason_in("en", text) == text
    assert reason_in("ru", opening) == "вне часов работы: откроется пн в 10:00 (Europe/Zurich)"
    assert reason_in("ru", "451 4.7.1 greylisted, try later") == "451 4.7.1 greylisted, try later"  # the server's words
