#!/usr/bin/env bash
# `campaign --help` start-up time against an empty typer app with the same number of
# commands and groups, alternating runs, median of each (aim: ratio <= 1.3).
#   bash benchmarks/startup.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUNS=${1:-21}
exec "$PY" - "$RUNS" <<'PYEOF'
import statistics, subprocess, sys, tempfile, time, textwrap
from pathlib import Path

runs = int(sys.argv[1])
import typer
from campaign.cli import app
root = typer.main.get_command(app)

def count(group):
    groups, leaves = 0, 0
    for cmd in getattr(group, "commands", {}).values():
        if getattr(cmd, "commands", None) is not None:
            groups += 1
            g, l = count(cmd)
            groups += g; leaves += l
        else:
            leaves += 1
    return groups, leaves

groups, leaves = count(root)
tmp = Path(tempfile.mkdtemp())
lines = ["import typer", "app = typer.Typer(help='Empty app with the same shape.')"]
per_group = max(1, leaves // max(1, groups + 1))
made = 0
for g in range(groups):
    lines.append(f"g{g} = typer.Typer(help='group {g}')")
    lines.append(f"app.add_typer(g{g}, name='g{g}')")
    for c in range(per_group):
        lines.append(f"@g{g}.command('c{c}')\ndef g{g}_c{c}(x: str = typer.Option('', help='an option')) -> None:\n    '''Command {c}.'''")
        made += 1
while made < leaves:
    lines.append(f"@app.command('c{made}')\ndef c{made}(x: str = typer.Option('', help='an option')) -> None:\n    '''Command {made}.'''")
    made += 1
lines.append("app()")
(tmp / "empty_app.py").write_text("\n".join(lines) + "\n")

ours = [sys.executable, "-m", "campaign", "--help"]
base = [sys.executable, str(tmp / "empty_app.py"), "--help"]
t_ours, t_base = [], []
for _ in range(2):  # warm the page cache
    subprocess.run(ours, capture_output=True); subprocess.run(base, capture_output=True)
for _ in range(runs):
    for cmd, acc in ((base, t_base), (ours, t_ours)):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        acc.append(time.perf_counter() - start)
o, b = statistics.median(t_ours), statistics.median(t_base)
print(f"startup: `campaign --help` vs an empty typer app with {groups} groups and {leaves} commands, median of {runs} alternating runs")
print(f"  campaign --help: {o*1000:7.1f} ms")
print(f"  empty app:       {b*1000:7.1f} ms")
print(f"  ratio: {o/b:.2f}  (aim <= 1.3)")
PYEOF
