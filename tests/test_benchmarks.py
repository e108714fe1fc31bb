"""The benchmark scripts still run against today's letters and code (a figure nobody can
reproduce is no figure). Only the ones that need no bench extra, at a toy size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_render_benchmark_runs_on_the_shipped_letters() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "render.py"), "--pairs", "20", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ratio ours/baseline" in result.stdout
