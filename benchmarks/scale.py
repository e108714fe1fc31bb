"""Scale figures: every parliament at once (issue "Scale to every parliament").

A registry of N institutions (one contact each, on distinct domains, Russian first), the
shipped Russian letter queued as C campaigns (N x C letters), sent to the recording sink
on loopback with no reply delay. Each `campaign` command runs as its own process; its CPU
time comes from wait4() and its peak RSS from its own VmHWM. Printed, side by side:

P3  CPU per letter of `queue` + `send` ÷ (raw aiosmtplib CPU per message + stdlib build CPU
    per message for the same letter), both measured here in one run   (aim <= 1.0)
P4  peak RSS of any `campaign` process                                  (aim <= 100 MB)
D   state size per letter (.campaign/state.db with its WAL)             (aim <= 8 KB)
W   bytes on the wire for one Russian letter as queued, and the same letter with every
    text part in base64 (what a mail client would choose for Cyrillic)
R   `campaign recipients check` and `campaign status` on this registry and store (aim <= 1 s)

    .venv/bin/python benchmarks/scale.py                      # 10,000 x 10 = 100,000 letters
    .venv/bin/python benchmarks/scale.py --institutions 2000 --campaigns 2   # a quick look
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
from datetime import date
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.sink import Sink  # noqa: E402

# The child reports its own high-water mark (see benchmarks/dispatch.py for why not wait4's).
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


def make_workspace(base: Path, institutions: int, port: int) -> Path:
    ws = base / "ws"
    ws.mkdir(parents=True)
    shutil.copytree(ROOT / "letters", ws / "letters")
    lines = ["recipients:"]
    for i in range(institutions):
        lines += [
            f"  - id: inst-{i}",
            f"    name: Member {i} of a parliament",
            "    languages: [ru, en]",
            "    timezone: Europe/Brussels",
            "    contacts:",
            f"      - email: office@member{i}.example",
        ]
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


def run(ws: Path, *args: str) -> tuple[float, float, float]:
    """`campaign ARGS` in its own process: (CPU seconds, peak RSS MB, wall seconds)."""
    env = {**os.environ, "CAMPAIGN_WORKSPACE": str(ws), "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile() as log, tempfile.NamedTemporaryFile() as peak:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", _PEAK_WRAPPER, *args],
            env={**env, "CAMPAIGN_BENCH_PEAK": peak.name},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            log.seek(0)
            raise SystemExit(f"campaign {' '.join(args)} failed: {log.read().decode('utf-8', 'replace')[-2000:]}")
        return usage.ru_utime + usage.ru_stime, int(Path(peak.name).read_text()) / 1024, wall


def sample_message(ws: Path) -> bytes:
    """One queued letter, exactly as stored (for the wire-size figure and the baselines)."""
    from campaign import api

    store = api.open_store(api.open_workspace(ws))
    try:  # not `with`: the script also measures versions whose store was no context manager
        first = store.messages()[0]
        prefix, body = store.wire_bytes(first.id)
    finally:
        store.close()
    return (prefix or b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n") + body


def base64_parts(raw: bytes) -> bytes:
    """The same message with every text part in base64."""
    msg = email.message_from_bytes(raw, policy=email.policy.SMTP)
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            text = part.get_content()
            subtype = part.get_content_subtype()
            part.set_content(text, subtype=subtype, cte="base64")
    return msg.as_bytes(policy=email.policy.SMTP)


def stdlib_build_cpu(raw: bytes, count: int) -> float:
    """CPU per message to build the same letter with the stdlib (headers, both text parts)."""
    msg = email.message_from_bytes(raw, policy=email.policy.SMTP)
    parts = {p.get_content_subtype(): p.get_content() for p in msg.walk() if p.get_content_maintype() == "text"}
    text, html = parts.get("plain", ""), parts.get("html", "")
    subject, sender = str(msg["Subject"]), str(msg["From"])
    smtp = email.policy.SMTP
    start = time.process_time()
    for i in range(count):
        m = EmailMessage(policy=smtp)
        m["From"] = sender
        m["To"] = f"Member {i} <office@member{i}.example>"
        m["Subject"] = subject
        m["Message-ID"] = f"<{i:032x}@campaign.example>"
        m["Content-Language"] = "ru"
        m.set_content(text)
        if html:
            m.add_alternative(html, subtype="html")
        m.as_bytes()
    return (time.process_time() - start) / count


def aiosmtplib_send_cpu(port: int, raw: bytes, count: int) -> float:
    """CPU per message for raw aiosmtplib sending the same bytes over 8 connections."""
    import aiosmtplib

    async def main() -> None:
        remaining = list(range(count))

        async def worker() -> None:
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, local_hostname="campaign.example")
            await smtp.connect()
            while remaining:
                i = remaining.pop()
                await smtp.sendmail("receipts@campaign.example", [f"office@member{i}.example"], raw)
            await smtp.quit()

        await asyncio.gather(*(worker() for _ in range(8)))

    start = time.process_time()
    asyncio.run(main())
    return (time.process_time() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--institutions", type=int, default=10_000)
    parser.add_argument("--campaigns", type=int, default=10)
    args = parser.parse_args()
    n, c = args.institutions, args.campaigns
    letters = n * c
    base = Path(tempfile.mkdtemp(prefix="campaign-scale-"))
    try:
        with Sink(delay_ms=0) as sink:
            ws = make_workspace(base, n, sink.port)
            print(f"scale: {n} institutions x {c} campaigns = {letters} letters (Russian), sink on loopback, D = 0")
            check_cpu, check_peak, check_wall = run(ws, "recipients", "check")
            queue_cpu, queue_peak, queue_wall = 0.0, 0.0, 0.0
            for k in range(c):
                cpu, peak, wall = run(ws, "queue", "peace-agreement", "--all", "--campaign", f"c{k}")
                queue_cpu, queue_peak, queue_wall = queue_cpu + cpu, max(queue_peak, peak), queue_wall + wall
            raw = sample_message(ws)
            send_cpu, send_peak, send_wall = run(ws, "send", "--yes", "--concurrency", "8")
            status_cpu, status_peak, status_wall = run(ws, "status")
            state = sum(p.stat().st_size for p in (ws / ".campaign").glob("state.db*") if p.is_file())
            floor_n = min(letters, 5000)
            build = stdlib_build_cpu(raw, floor_n)
            send_floor = aiosmtplib_send_cpu(sink.port, raw, floor_n)
        ours = (queue_cpu + send_cpu) / letters
        floor = build + send_floor
        print(f"  queue: {queue_cpu / letters * 1000:.2f} ms CPU per letter ({letters / queue_wall:.0f} letters/s)")
        print(f"  send:  {send_cpu / letters * 1000:.2f} ms CPU per letter ({letters / send_wall:.0f} letters/s)")
        print(
            f"  floor: stdlib build {build * 1000:.2f} + raw aiosmtplib send {send_floor * 1000:.2f} = "
            f"{floor * 1000:.2f} ms per message"
        )
        print(f"P3 CPU per letter (queue + send) / floor: {ours / floor:.2f} (aim <= 1.0)")
        peak = max(check_peak, queue_peak, send_peak, status_peak)
        print(
            f"P4 peak RSS: {peak:.0f} MB (recipients check {check_peak:.0f}, queue {queue_peak:.0f}, "
            f"send {send_peak:.0f}, status {status_peak:.0f}; aim <= 100 MB)"
        )
        print(f"D  state: {state / 1e6:.1f} MB, {state / letters / 1024:.1f} KB per letter (aim <= 8 KB)")
        b64 = base64_parts(raw)
        print(f"W  one Russian letter on the wire: {len(raw)} bytes as queued, {len(b64)} with base64 text parts")
        print(
            f"R  recipients check {check_wall:.2f} s, status {status_wall:.2f} s on this registry and store "
            "(aim <= 1 s each)"
        )
        print(f"   (the letter: {len(raw)} bytes; date {date.today().isoformat()})")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
