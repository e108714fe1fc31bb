"""Kill `campaign send` at random moments and prove nothing was lost or silently repeated.

Used by tests/test_crash.py (CI-sized) and benchmarks/crash_soak.py (long run).
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.sink import Sink

ROOT = Path(__file__).resolve().parents[2]


def make_workspace(base: Path, *, institutions: int, contacts: int, port: int, delay_config: str = "") -> Path:
    import shutil

    ws = base / "ws"
    ws.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "letters", ws / "letters", dirs_exist_ok=True)
    short = ws / "letters" / "short"
    short.mkdir(exist_ok=True)
    (short / "en.md.j2").write_text(
        '---\nsubject: "To {{ recipient.name }}"\n---\n{{ salutation }}\n\nA short letter about the peace agreement.\n'
    )
    lines = ["recipients:"]
    for i in range(institutions):
        lines += [f"  - id: inst-{i}", f"    name: Institution {i}", "    languages: [en]", "    contacts:"]
        lines += [f"      - email: office{c}@inst{i}.example" for c in range(contacts)]
    (ws / "recipients.yaml").write_text("\n".join(lines) + "\n")
    (ws / "campaign.toml").write_text(
        f"""[sender]
name = "Civic Platform (crash test)"
email = "letters@campaign.example"

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
timeout = "5s"
data_timeout = "5s"

[sending]
rate = 10000
per_domain_rate = 10000
retry_min = "0s"
{delay_config}
"""
    )
    return ws


def run(ws: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAMPAIGN_WORKSPACE": str(ws), "PYTHONPATH": str(ROOT)}
    env.pop("CAMPAIGN_DB", None)
    return subprocess.run(
        [sys.executable, "-m", "campaign", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def start(ws: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CAMPAIGN_WORKSPACE": str(ws), "PYTHONPATH": str(ROOT)}
    env.pop("CAMPAIGN_DB", None)
    return subprocess.Popen(
        [sys.executable, "-m", "campaign", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def pending(ws: Path) -> int:
    status = json.loads(run(ws, "status", "--json").stdout)
    counts = status["campaigns"].get("short", {})
    return sum(n for state, n in counts.items() if state in ("queued", "deferred", "sending"))


@dataclass
class SoakResult:
    letters: int
    kills: int
    runs: int
    arrivals: int
    duplicates: int  # extra copies the sink received
    named: int  # letters the log names as possible duplicates
    unexplained: list[str] = field(default_factory=list)  # duplicates the log does not name
    missing: list[str] = field(default_factory=list)  # letters that never arrived
    verify_ok: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.verify_ok
            and not self.unexplained
            and not self.missing
            and self.arrivals - self.duplicates == self.letters
        )


def soak(
    base: Path,
    *,
    institutions: int,
    contacts: int,
    min_kills: int,
    seed: int = 1,
    delay_ms: int = 10,
    kill_window: tuple[float, float] = (0.3, 1.2),
) -> SoakResult:
    """Queue ``institutions * contacts`` letters, then start `campaign send` and SIGKILL it at
    random moments until at least ``min_kills`` kills happened and the queue is empty."""
    rng = random.Random(seed)
    record = base / "sink.log"
    started = time.monotonic()
    with Sink(delay_ms=delay_ms, record=record) as sink:
        ws = make_workspace(base, institutions=institutions, contacts=contacts, port=sink.port)
        queued = run(ws, "queue", "short", "--all", "--contacts", "all")
        assert queued.returncode == 0, queued.stderr
        letters = institutions * contacts
        kills = runs = 0
        while True:
            left = pending(ws)
            if left == 0 and kills >= min_kills:
                break
            if left == 0:
                break
            runs += 1
            proc = start(ws, "send", "--yes", "--concurrency", "4")
            if kills < min_kills:
                time.sleep(rng.uniform(*kill_window))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
                proc.communicate(timeout=60)
            else:
                out, err = proc.communicate(timeout=600)
                assert proc.returncode in (0, 3), err[-2000:]
        arrivals = [line.split()[0] for line in record.read_text().splitlines()]
    events = json.loads(run(ws, "log", "--events", "--json").stdout)
    named = {e["message"] for e in events if e["event"] in ("crash_recovered", "outcome_unknown")}
    rows = json.loads(run(ws, "log", "--json").stdout)
    counts = collections.Counter(arrivals)
    expected = {r["message_id"] for r in rows}
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    return SoakResult(
        letters=letters,
        kills=kills,
        runs=runs,
        arrivals=len(arrivals),
        duplicates=duplicates,
        named=len(named),
        unexplained=sorted(m for m, n in counts.items() if n > 1 and m not in named),
        missing=sorted(expected - set(counts)),
        verify_ok=run(ws, "log", "verify").returncode == 0,
        seconds=time.monotonic() - started,
    )
