"""Sending etiquette with an injected clock: rates, daily caps, office hours, schedules, plans."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from campaign.models import OfficeHours
from campaign.pacing import (
    InstitutionPolicy,
    MemoryState,
    Pacer,
    PacingConfig,
    dt_to_ms,
    local_day,
    next_opening,
)
from tests.conftest import run_cli, set_smtp_port
from tests.support.smtp import Script, ScriptedServer

ZURICH = ZoneInfo("Europe/Zurich")


def ms(text: str, zone: ZoneInfo = UTC) -> int:  # type: ignore[assignment]
    return dt_to_ms(datetime.fromisoformat(text).replace(tzinfo=zone))


def simulate(pacer: Pacer, messages: list[tuple[str, str]], start: int, horizon_ms: int) -> list[tuple[int, str, str]]:
    """Greedy sender on a simulated clock: every message goes as soon as the pacer allows."""
    state = MemoryState()
    pending = list(messages)
    sent: list[tuple[int, str, str]] = []
    now = start
    while pending and now < start + horizon_ms:
        progressed = False
        next_times = []
        for msg in list(pending):
            g = pacer.check_global(now, state)
            if not g.ok:
                next_times.append(g.until)
                break
            v = pacer.check(now, msg[0], msg[1], state)
            if v.ok:
                pacer.consume(now, msg[0], msg[1], state)
                sent.append((now, *msg))
                pending.remove(msg)
                progressed = True
            else:
                next_times.append(v.until)
        if not progressed:
            now = min(t for t in next_times if t is not None)
    return sent


def max_in_window(times: list[int], window_ms: int) -> int:
    best = 0
    j = 0
    for i, t in enumerate(times):
        while times[j] < t - window_ms + 1:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_per_domain_rate_over_simulated_windows() -> None:
    pacer = Pacer(PacingConfig(rate=100, per_domain_rate=0.2))
    start = ms("2026-11-30T10:00:00")
    sent = simulate(pacer, [("ohchr", "ohchr.org")] * 10 + [("odihr", "osce.org")] * 10, start, 3_600_000)
    assert len(sent) == 20
    for domain in ("ohchr.org", "osce.org"):
        times = [t for t, _, d in sent if d == domain]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert min(gaps) >= 5000  # 0.2/s: never closer than five seconds
        assert max_in_window(times, 60_000) <= 12 + 1
    # the two domains interleave: the slow one does not hold the other back
    assert sent[1][2] != sent[0][2]


def test_global_rate_over_simulated_windows() -> None:
    pacer = Pacer(PacingConfig(rate=2, per_domain_rate=1000))
    start = ms("2026-11-30T10:00:00")
    messages = [(f"r{i}", f"d{i}.example") for i in range(50)]
    times = [t for t, _, _ in simulate(pacer, messages, start, 3_600_000)]
    assert len(times) == 50
    # a bucket of one second of rate: at most rate*W + capacity in any window W
    for window in (1000, 5000, 10_000):
        assert max_in_window(times, window) <= 2 * window // 1000 + 2


def test_rates_above_a_thousand_per_second_keep_their_meaning() -> None:
    # buckets count microseconds: 5,000/s must not be rounded down to one per millisecond
    pacer = Pacer(PacingConfig(rate=5000, per_domain_rate=1_000_000))
    start = ms("2026-11-30T10:00:00")
    messages = [(f"r{i}", f"d{i}.example") for i in range(20_000)]
    times = [t for t, _, _ in simulate(pacer, messages, start, 60_000)]
    assert len(times) == 20_000
    assert 5000 < max_in_window(times, 1000) <= 2 * 5000 + 1  # the first second holds the burst too
    steady = [t for t in times if t >= times[0] + 2000]
    assert max_in_window(steady, 1000) == pytest.approx(5000, abs=5)


def test_daily_cap_across_midnight_in_the_institution_time_zone() -> None:
    policy = InstitutionPolicy(zone=ZoneInfo("Asia/Dushanbe"), max_per_day=3)
    pacer = Pacer(PacingConfig(rate=100, per_domain_rate=100, institutions={"mfa": policy}))
    # 21:30 UTC is 02:30 the next day in Dushanbe (UTC+5): the day boundary is theirs
    start = ms("2026-11-30T18:00:00")
    sent = simulate(pacer, [("mfa", "mfa.example")] * 7, start, 3 * 86_400_000)
    days = [local_day(t, policy.zone) for t, _, _ in sent]
    assert days == ["2026-11-30"] * 3 + ["2026-12-01"] * 3 + ["2026-12-02"]
    assert sent[3][0] == ms("2026-12-01T00:00:00", ZoneInfo("Asia/Dushanbe"))


def test_cap_reason_is_readable() -> None:
    policy = InstitutionPolicy(max_per_day=1)
    pacer = Pacer(PacingConfig(rate=100, per_domain_rate=100, institutions={"ohchr": policy}))
    state = MemoryState()
    now = ms("2026-11-30T10:00:00")
    pacer.consume(now, "ohchr", "ohchr.org", state)
    verdict = pacer.check(now + 1000, "ohchr", "ohchr.org", state)
    assert not verdict.ok and verdict.reason == "daily cap 1 reached for ohchr" and not verdict.short


def test_office_hours_across_a_weekend_and_dst_change() -> None:
    hours = OfficeHours(days="mon-fri", start="09:00", end="17:00")  # type: ignore[arg-type]
    # Friday 27 March 2026, 18:00 in Zurich: closed; DST starts Sunday 29 March (02:00 → 03:00)
    friday_evening = ms("2026-03-27T18:00:00", ZURICH)
    opening = next_opening(friday_evening, hours, ZURICH)
    assert opening == ms("2026-03-30T09:00:00", ZURICH)
    assert opening - friday_evening == (2 * 24 + 15) * 3_600_000 - 3_600_000  # one hour shorter: DST
    assert datetime.fromtimestamp(opening / 1000, UTC).hour == 7  # 09:00 CEST is 07:00 UTC
    # autumn: 23 October 2026 (Fri) → Monday 26 October after the change back
    autumn = next_opening(ms("2026-10-23T17:30:00", ZURICH), hours, ZURICH)
    assert datetime.fromtimestamp(autumn / 1000, UTC).hour == 8  # 09:00 CET is 08:00 UTC
    assert next_opening(ms("2026-03-30T10:00:00", ZURICH), hours, ZURICH) is None  # open


def test_office_hours_reason_names_the_opening() -> None:
    policy = InstitutionPolicy(zone=ZURICH, office_hours=OfficeHours(days="mon-fri", start="09:00", end="17:00"))  # type: ignore[arg-type]
    pacer = Pacer(PacingConfig(rate=1, per_domain_rate=1, institutions={"ohchr": policy}))
    verdict = pacer.check(ms("2026-11-28T12:00:00"), "ohchr", "ohchr.org", MemoryState())  # a Saturday
    assert verdict.reason == "office hours: opens Mon 09:00 Europe/Zurich"
    assert verdict.until == ms("2026-11-30T09:00:00", ZURICH)


def test_parked_messages_spread_out() -> None:
    pacer = Pacer(PacingConfig(rate=1000, per_domain_rate=0.5))
    state = MemoryState()
    now = ms("2026-11-30T10:00:00")
    pacer.consume(now, "a", "un.org", state)
    slots = []
    for _ in range(5):
        verdict = pacer.check(now, "a", "un.org", state)
        slots.append(pacer.park(now, verdict, state))
    assert slots == [now + 2000 * k for k in range(1, 6)]


# -- through the real store, send loop and CLI ------------------------------------------


def write_etiquette(
    workspace: Path, *, cap: int | None = None, hours: str | None = None, zone: str = "Europe/Zurich"
) -> None:
    path = workspace / "recipients.yaml"
    text = path.read_text()
    extra = f"    timezone: {zone}\n"
    if cap:
        extra += f"    max_per_day: {cap}\n"
    if hours:
        extra += f"    office_hours: {hours}\n"
    text = text.replace(
        "  - id: wgad\n    name: UN Working Group on Arbitrary Detention\n",
        "  - id: wgad\n    name: UN Working Group on Arbitrary Detention\n" + extra,
    )
    text = text.replace(
        "    timezone: Europe/Zurich\n    contacts:\n      - email: wgad", "    contacts:\n      - email: wgad"
    )
    path.write_text(text)


def test_two_campaigns_together_never_exceed_the_cap(smtp_server: ScriptedServer, workspace: Path) -> None:
    write_etiquette(workspace, cap=2)
    for name in ("first", "second", "third"):
        assert run_cli("queue", "peace-agreement", "--to", "wgad", "--campaign", name).code == 0
    result = run_cli("send", "--yes")
    assert result.code == 0, result.output
    assert len(smtp_server.accepted) == 2
    rows = json.loads(run_cli("log", "--json", "--status", "queued").stdout)
    assert len(rows) == 1 and rows[0]["wait_reason"] == "daily cap 2 reached for wgad"
    status = json.loads(run_cli("status", "--json").stdout)
    assert status["waiting"][0]["reason"] == "daily cap 2 reached for wgad"
    assert "daily cap 2 reached for wgad" in run_cli("status").stdout
    # a second run the same day sends nothing more to wgad
    run_cli("send", "--yes")
    assert len(smtp_server.accepted) == 2


def test_at_holds_messages_until_then(smtp_server: ScriptedServer, workspace: Path) -> None:
    later = (datetime.now(UTC) + timedelta(days=3)).astimezone(ZURICH)  # Geneva keeps Swiss time
    when = later.strftime("%Y-%m-%d %H:%M") + " Europe/Geneva"
    assert run_cli("queue", "peace-agreement", "--to", "ohchr", "--at", when).code == 0
    result = run_cli("send", "--yes")
    assert result.code == 0 and not smtp_server.accepted
    assert f"scheduled: {when}" in result.stdout
    row = json.loads(run_cli("log", "--json").stdout)[0]
    assert row["next_attempt_at"].startswith(later.astimezone(UTC).strftime("%Y-%m-%dT%H:%M"))
    iso = run_cli("queue", "peace-agreement", "--to", "wgad", "--at", "2030-01-02T09:00:00+01:00")
    assert iso.code == 0
    bad_zone = run_cli("queue", "peace-agreement", "--to", "odihr", "--at", "2030-01-02 09:00 Europe/Atlantis")
    assert bad_zone.code == 2 and "not an IANA time zone" in bad_zone.stderr


def test_plan_agrees_with_send_wait_on_a_simulated_clock(workspace: Path) -> None:
    """`campaign plan` and the real send loop (real SMTP, simulated clock) give the same times."""
    from campaign import api
    from campaign.dispatch import Dispatcher, VirtualClock
    from campaign.pacing import Pacer
    from campaign.transport import SmtpConnection

    write_etiquette(workspace, cap=2, hours='{days: "mon-fri", start: "09:00", end: "17:00"}')
    (workspace / "campaign.toml").write_text(
        (workspace / "campaign.toml")
        .read_text()
        .replace("rate = 1000\nper_domain_rate = 1000", "rate = 0.5\nper_domain_rate = 0.25")
    )
    for name in ("a", "b", "c"):
        assert run_cli("queue", "peace-agreement", "--all", "--campaign", name).code == 0
    start = ms("2026-11-27T16:59:40", ZURICH)  # Friday, twenty seconds before Geneva closes
    ws = api.open_workspace(workspace)
    planned = {r.id: r.at_ms for r in api.plan(ws, start_ms=start).rows}
    assert len(planned) == 15
    with ScriptedServer(Script()) as server:
        set_smtp_port(workspace, server.port)
        ws = api.open_workspace(workspace)
        request = api.SendRequest(wait=True)
        sent_at: dict[int, int] = {}
        store = api.open_store(ws)
        dispatcher = Dispatcher(
            store,
            lambda: SmtpConnection(api.smtp_config(ws)),
            Pacer(api._pacing(ws, request)),
            api._send_options(ws, request, "test", store.dialect),
            prefix=api.wire_prefix_for(ws),
            clock=VirtualClock(start),
            on_outcome=lambda o, at: sent_at.__setitem__(o.id, at),
        )
        asyncio.run(dispatcher.run())
        store.close()
        assert len(server.accepted) == 15
    assert sent_at == planned
    wgad = sorted(
        t
        for mid, t in sent_at.items()
        if mid in {r["id"] for r in json.loads(run_cli("log", "--json", "--to", "wgad").stdout)}
    )
    # Friday before 17:00 two letters at most, then nothing until Monday 09:00 Zurich
    friday = [t for t in wgad if t < ms("2026-11-27T17:00:00", ZURICH)]
    assert len(friday) <= 2
    monday = ms("2026-11-30T09:00:00", ZURICH)
    assert all(t >= monday for t in wgad if t not in friday)
    days: dict[str, int] = {}
    for t in wgad:
        days[local_day(t, ZURICH)] = days.get(local_day(t, ZURICH), 0) + 1
    assert max(days.values()) <= 2


def test_plan_cli(workspace: Path) -> None:
    write_etiquette(workspace, hours='{days: "mon-fri", start: "09:00", end: "17:00"}')
    assert run_cli("queue", "peace-agreement", "--all").code == 0
    result = run_cli("plan", "--json")
    assert result.code == 0
    rows = json.loads(result.stdout)
    assert len(rows) == 5 and all(r["outcome"] == "sent" for r in rows)
    wgad = next(r for r in rows if r["recipient"] == "wgad")
    local = datetime.fromisoformat(wgad["local_time"])
    assert local.weekday() < 5 and 9 <= local.hour < 17
    table = run_cli("plan")
    assert table.code == 0 and "Europe/Zurich" in table.stdout
    # planning changes nothing
    assert json.loads(run_cli("log", "--json").stdout)[0]["status"] == "queued"
    assert not json.loads(run_cli("log", "--events", "--json").stdout)[-1]["event"].startswith("send")


def test_bad_office_hours_are_one_line(workspace: Path) -> None:
    write_etiquette(workspace, hours='{days: "mon-fri", start: "9am", end: "17:00"}')
    result = run_cli("recipients", "check")
    assert result.code == 1 and "recipients.yaml:" in result.stderr and "'9am' is not a time of day" in result.stderr


def test_bad_zone_is_one_line_and_geneva_is_understood(workspace: Path) -> None:
    original = (workspace / "recipients.yaml").read_text()
    write_etiquette(workspace, zone="Europe/Geneva")
    assert run_cli("recipients", "check").code == 0
    (workspace / "recipients.yaml").write_text(original)
    write_etiquette(workspace, zone="Europe/Genf")
    result = run_cli("recipients", "check")
    assert result.code == 1 and "'Europe/Genf' is not an IANA time zone" in result.stderr


@pytest.mark.parametrize("rate", ["0", "-1", "fast"])
def test_bad_rate_option(workspace: Path, rate: str) -> None:
    result = run_cli("send", "--yes", "--rate", rate)
    assert result.code == 2
