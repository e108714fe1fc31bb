"""Several `campaign send` processes sharing one PostgreSQL queue: throughput with 1, 2 and
4 workers against a sink that delays every reply by 10 ms, and SQLite with one worker for
comparison, side by side (aim: 4 workers >= 3x one worker). Each worker uses 2 connections.

    .venv/bin/python benchmarks/workers.py [--letters 2000] [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.crash import make_workspace  # noqa: E402
from tests.support.pg import Database  # noqa: E402
from tests.support.sink import Sink  # noqa: E402

CONNECTIONS = 2


def campaign(ws: Path, db: str | None, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CAMPAIGN_WORKSPACE": str(ws), "PYTHONPATH": str(ROOT)}
    env.pop("CAMPAIGN_DB", None)
    if db:
        env["CAMPAIGN_DB"] = db
    return subprocess.Popen(
        [sys.executable, "-m", "campaign", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def measure(base: Path, letters: int, workers: int, db: str | None) -> tuple[float, int, int]:
    """(letters per second, letters received, duplicates) for one configuration."""
    record = base / f"sink-{workers}-{'pg' if db else 'sqlite'}.log"
    folder = base / f"w{workers}-{'pg' if db else 'sqlite'}"
    with Sink(delay_ms=10, record=record) as sink:
        ws = make_workspace(folder, institutions=letters // 5, contacts=5, port=sink.port)
        queued = campaign(ws, db, "queue", "short", "--all", "--contacts", "all")
        _, err = queued.communicate(timeout=600)
        assert queued.returncode == 0, err
        start = time.perf_counter()
        procs = [campaign(ws, db, "send", "--yes", "--concurrency", str(CONNECTIONS)) for _ in range(workers)]
        for proc in procs:
            _, err = proc.communicate(timeout=1200)
            assert proc.returncode == 0, err[-2000:]
        elapsed = time.perf_counter() - start
        ids = [line.split()[0] for line in record.read_text().splitlines()]
    duplicates = sum(n - 1 for n in collections.Counter(ids).values())
    return letters / elapsed, len(ids), duplicates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=2000)
    parser.add_argument(
        "--pg", default=os.environ.get("CAMPAIGN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    os.environ["CAMPAIGN_TEST_PG"] = args.pg
    base = Path(tempfile.mkdtemp(prefix="campaign-bench-workers-"))
    database = Database()
    try:
        print(f"workers: {args.letters} letters, sink delay 10 ms, {CONNECTIONS} connections per worker")
        sqlite_rate, got, dup = measure(base, args.letters, 1, None)
        print(f"  SQLite, 1 worker:      {sqlite_rate:7.1f} letters/s  ({got} received, {dup} duplicates)")
        rates = {}
        for n in (1, 2, 4):
            rate, got, dup = measure(base, args.letters, n, database.schema())
            rates[n] = rate
            plural = "s" if n > 1 else " "
            print(f"  PostgreSQL, {n} worker{plural}: {rate:7.1f} letters/s  ({got} received, {dup} duplicates)")
        print(
            f"  scaling: 2 workers {rates[2] / rates[1]:.2f}x, 4 workers {rates[4] / rates[1]:.2f}x one worker"
            " (aim >= 3x)"
        )
    finally:
        database.drop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
