"""Dispatch figures, side by side in one run, against a recording loopback sink.

P1  `campaign send --concurrency 8` (limits not binding) ÷ raw aiosmtplib send_message of the
    same pre-built messages over 8 connections; D = 10 ms and D = 0 (aim >= 0.95, issue 14).
P2  the same send ÷ mailmerge on the same 2,000 letters, D = 10 ms (aim >= 12x).
P3  CPU per message for queue + send at D = 0 ÷ (raw aiosmtplib CPU + raw message-build CPU)
    (aim <= 1.3).
P4  peak RSS of the `campaign queue` and `campaign send` processes for 100,000 letters (aim <= 150 MB).
S   scheduling: messages the claim loop schedules per second with 100,000 queued across 2,000
    institutions, limits configured but not binding (uses the due index; `campaign plan`'s loop).

The sink (tests/support/sink.py) runs in its own process and delays every reply by D ms.
Our send is timed in-process (api.send, what `campaign send` runs) so that interpreter start-up
is not counted against either side.

    .venv/bin/python benchmarks/dispatch.py [--letters 2000] [--p4-letters 100000] [--skip p2,p4]
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.sink import Sink  # noqa: E402


def make_workspace(
    base: Path, *, institutions: int, contacts: int, port: int, short_letter: bool = False, etiquette: bool = True
) -> Path:
    """A generated workspace; with ``etiquette``, every institution has a daily cap and office
    hours that are configured but never binding (so their cost is measured, not their effect)."""
    ws = base / f"ws-{institutions}x{contacts}-{time.monotonic_ns()}"
    ws.mkdir(parents=True)
    shutil.copytree(ROOT / "letters", ws / "letters")
    if short_letter:
        folder = ws / "letters" / "short"
        folder.mkdir()
        (folder / "en.md.j2").write_text(
            '---\nsubject: "Letter to {{ recipient.name }}"\n---\n{{ salutation }}\n\n'
            + "We write about the 1997 General Agreement and the persecution of the opposition. " * 8
            + "\n\nRespectfully,\n\n{{ sender.name }}\n"
        )
    lines = ["recipients:"]
    for i in range(institutions):
        lines += [
            f"  - id: inst-{i}",
            f"    name: Institution {i} for human rights",
            "    languages: [en, ru]",
            "    timezone: Europe/Zurich",
        ]
        if etiquette:
            lines += ["    max_per_day: 10000", "    office_hours: {days: mon-sun, start: '00:00', end: '24:00'}"]
        lines.append("    contacts:")
        for c in range(contacts):
            lines.append(f"      - email: office{c}@inst{i}.example")
    (ws / "recipients.yaml").write_text("\n".join(lines) + "\n")
    (ws / "campaign.toml").write_text(
        f"""[sender]
name = "Civic Platform"
email = "letters@campaign.example"

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
concurrency = 8

[sending]
rate = 10000
per_domain_rate = 10000
"""
    )
    return ws


def queue(ws: Path, letter: str, campaign: str | None = None, contacts: str = "first") -> None:
    from campaign import api

    req = api.QueueRequest(letter=letter, everyone=True, campaign=campaign, contacts=contacts)  # type: ignore[arg-type]
    api.queue(api.open_workspace(ws), req)


def send_ours(ws: Path, port: int) -> tuple[float, int]:
    from campaign import api

    text = (ws / "campaign.toml").read_text()
    import re

    (ws / "campaign.toml").write_text(re.sub(r"port = \d+", f"port = {port}", text))
    w = api.open_workspace(ws)
    start = time.perf_counter()
    outcome = api.send(w, api.SendRequest(concurrency=8))
    elapsed = time.perf_counter() - start
    assert outcome.report is not None
    return elapsed, outcome.report.progress.sent


def prebuilt_messages(ws: Path) -> list[tuple[str, email.message.EmailMessage]]:
    from campaign import api

    w = api.open_workspace(ws)
    store = api.open_store(w)
    out = []
    for m in store.messages():
        prefix, body = store.wire_bytes(m.id)
        raw = (prefix or b"Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n") + body
        msg = email.message_from_bytes(raw, policy=email.policy.SMTP)
        out.append((m.email, msg))  # type: ignore[arg-type]
    store.close()
    return out


async def _raw_send(port: int, messages: list[tuple[str, email.message.EmailMessage]], connections: int = 8) -> None:
    import aiosmtplib

    queue_: asyncio.Queue[tuple[str, email.message.EmailMessage]] = asyncio.Queue()
    for item in messages:
        queue_.put_nowait(item)

    async def worker() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, local_hostname="campaign.example")
        await smtp.connect()
        while True:
            try:
                rcpt, msg = queue_.get_nowait()
            except asyncio.QueueEmpty:
                break
            await smtp.send_message(msg, sender="receipts@campaign.example", recipients=[rcpt])
        await smtp.quit()

    await asyncio.gather(*(worker() for _ in range(connections)))


def raw_send(port: int, messages: list[tuple[str, email.message.EmailMessage]]) -> float:
    start = time.perf_counter()
    asyncio.run(_raw_send(port, messages))
    return time.perf_counter() - start


def p1(base: Path, letters: int) -> dict[int, float]:
    print(f"P1: {letters} letters, 8 connections, limits configured (caps, office hours, rates) but not binding")
    ours_rate: dict[int, float] = {}
    for delay in (10, 0):
        with Sink(delay_ms=delay) as sink:
            ws = make_workspace(base, institutions=letters, contacts=1, port=sink.port)
            queue(ws, "peace-agreement")
            messages = prebuilt_messages(ws)
            raw_elapsed = raw_send(sink.port, messages)
            ours_elapsed, sent = send_ours(ws, sink.port)
            assert sent == letters, sent
        r_ours, r_raw = letters / ours_elapsed, letters / raw_elapsed
        ours_rate[delay] = r_ours
        print(
            f"  D={delay:>2} ms: campaign send {r_ours:7.0f} msg/s   raw aiosmtplib {r_raw:7.0f} msg/s   ratio "
            f"{r_ours / r_raw:.2f} (aim >= 0.95)"
        )
    return ours_rate


def p2(base: Path, letters: int, ours_d10: float) -> None:
    print(f"P2: {letters} letters, D = 10 ms, campaign send --concurrency 8 vs mailmerge")
    if shutil.which("mailmerge", path=str(ROOT / ".venv" / "bin")) is None:
        print("  mailmerge not installed: run `make bench` (installs the bench extra)")
        return
    work = base / "mailmerge"
    work.mkdir()
    ws = make_workspace(base, institutions=letters, contacts=1, port=1)
    from campaign import api
    from campaign.registry import load_letters, load_registry
    from campaign.render import Renderer

    w = api.open_workspace(ws)
    sample = load_registry(ws / "recipients.yaml").recipients[0]
    body = (
        Renderer(ws / "letters")
        .render(load_letters(ws / "letters")["peace-agreement"], sample, sample.contacts[0], w.settings.sender)
        .text
    )
    (work / "mailmerge_template.txt").write_text(
        "TO: {{email}}\nSUBJECT: Tajikistan: the 1997 General Agreement\nFROM: Civic Platform "
        "<letters@campaign.example>\n\n" + body.replace("{", "(").replace("}", ")")
    )
    (work / "mailmerge_database.csv").write_text(
        "email\n" + "".join(f"office0@inst{i}.example\n" for i in range(letters))
    )
    with Sink(delay_ms=10) as sink:
        (work / "mailmerge_server.conf").write_text(
            f"[smtp_server]\nhost = 127.0.0.1\nport = {sink.port}\nratelimit = 0\n"
        )
        start = time.perf_counter()
        subprocess.run(
            [str(ROOT / ".venv" / "bin" / "mailmerge"), "--no-dry-run", "--no-limit"],
            cwd=work,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        mm = letters / (time.perf_counter() - start)
    print(
        f"  campaign send {ours_d10:7.0f} msg/s   mailmerge {mm:7.1f} msg/s   ratio {ours_d10 / mm:.1f}x (aim >= 12x)"
    )


def p3(base: Path, letters: int) -> None:
    print(f"P3: CPU per message, queue + send of {letters} letters at D = 0 (this process; the sink runs apart)")
    from benchmarks.render import baseline, pairs  # the inline bare build of benchmarks/render.py

    with Sink(delay_ms=0) as sink:
        ws = make_workspace(base, institutions=letters, contacts=1, port=sink.port)
        c0 = time.process_time()
        queue(ws, "peace-agreement")
        send_ours(ws, sink.port)
        ours_cpu = time.process_time() - c0
        targets = pairs(letters)
        c0 = time.process_time()
        baseline(targets)
        build_cpu = time.process_time() - c0
        ws2 = make_workspace(base, institutions=letters, contacts=1, port=sink.port)
        queue(ws2, "peace-agreement")
        messages = prebuilt_messages(ws2)
        c0 = time.process_time()
        raw_send(sink.port, messages)
        send_cpu = time.process_time() - c0
    per = lambda s: s / letters * 1000  # noqa: E731
    print(
        f"  campaign queue+send {per(ours_cpu):.2f} ms/msg   raw build {per(build_cpu):.2f} + raw send "
        f"{per(send_cpu):.2f} = {per(build_cpu + send_cpu):.2f} ms/msg"
    )
    print(f"  ratio {ours_cpu / (build_cpu + send_cpu):.2f} (aim <= 1.3)")


# The child reports its own high-water mark (VmHWM belongs to the address space exec made).
# ru_maxrss from wait4 would not do: Linux carries the parent's peak across vfork + exec, so a
# child of this (large) benchmark process would report the benchmark's own peak.
_PEAK_WRAPPER = """
import atexit, os, sys
def _report():
    with open("/proc/self/status") as status:
        kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["CAMPAIGN_BENCH_PEAK"], "w") as out:
        out.write(kb)
atexit.register(_report)
sys.argv = ["campaign", *sys.argv[1:]]
from campaign.cli import run
run()
"""


def _peak_rss_mb(args: list[str], env: dict[str, str]) -> float:
    """Run `campaign ARGS`; return the peak RSS of that process alone, in MB."""
    with tempfile.TemporaryFile() as log, tempfile.NamedTemporaryFile() as peak:
        # stderr to a file: a pipe would fill up with one line per letter
        proc = subprocess.run(
            [sys.executable, "-c", _PEAK_WRAPPER, *args],
            env={**env, "CAMPAIGN_BENCH_PEAK": peak.name},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.seek(0)
        err = log.read().decode("utf-8", "replace")
        if proc.returncode != 0:
            raise SystemExit(f"campaign {' '.join(args[:4])} failed: {err[-2000:]}")
        return int(Path(peak.name).read_text()) / 1024


def p4(base: Path, letters: int) -> None:
    institutions, contacts = 2000, 5
    per_campaign = institutions * contacts
    campaigns = max(1, letters // per_campaign)
    total = campaigns * per_campaign
    print(
        f"P4: peak RSS for {total} letters ({campaigns} campaigns x {institutions} institutions x {contacts} contacts),"
        " short letter"
    )
    with Sink(delay_ms=0) as sink:
        ws = make_workspace(base, institutions=institutions, contacts=contacts, port=sink.port, short_letter=True)
        env = {**os.environ, "CAMPAIGN_WORKSPACE": str(ws)}
        start = time.perf_counter()
        queue_peak = max(
            _peak_rss_mb(["queue", "short", "--all", "--contacts", "all", "--campaign", f"c{c}"], env)
            for c in range(campaigns)
        )
        queued = time.perf_counter() - start
        start = time.perf_counter()
        send_peak = _peak_rss_mb(["send", "--yes", "--concurrency", "8"], env)
        sent = time.perf_counter() - start
    print(f"  queue: {total / queued:.0f} letters/s, peak RSS of a queue process {queue_peak:.0f} MB")
    print(f"  send:  {total / sent:.0f} letters/s, peak RSS of the send process {send_peak:.0f} MB (aim <= 150 MB)")


def scheduling(base: Path, letters: int) -> None:
    institutions = 2000
    contacts = max(1, letters // institutions)
    print(
        f"S: scheduling {institutions * contacts} queued letters across {institutions} institutions (limits "
        "set, not binding)"
    )
    from campaign import api

    ws = make_workspace(base, institutions=institutions, contacts=contacts, port=1, short_letter=True)
    queue(ws, "short", contacts="all")
    start = time.perf_counter()
    result = api.plan(api.open_workspace(ws))
    elapsed = time.perf_counter() - start
    print(f"  {len(result.rows)} letters scheduled in {elapsed:.1f} s: {len(result.rows) / elapsed:.0f} scheduled/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=2000)
    parser.add_argument("--p4-letters", type=int, default=100_000)
    parser.add_argument("--skip", default="", help="comma-separated: p1,p2,p3,p4,s")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    base = Path(tempfile.mkdtemp(prefix="campaign-bench-"))
    try:
        ours = p1(base, args.letters) if "p1" not in skip else {}
        if "p2" not in skip:
            if 10 not in ours:
                ours = p1(base, args.letters)
            p2(base, args.letters, ours[10])
        if "p3" not in skip:
            p3(base, args.letters)
        if "s" not in skip:
            scheduling(base, args.p4_letters)
        if "p4" not in skip:
            p4(base, args.p4_letters)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
