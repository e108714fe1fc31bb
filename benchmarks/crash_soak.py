"""A long crash soak: kill `campaign send` with SIGKILL at random moments, many times, and
check that every letter arrived, every duplicate is one the log names, and the chain verifies.

    .venv/bin/python benchmarks/crash_soak.py [--letters 10000] [--kills 100] [--seed 1]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.crash import soak  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--delay-ms", type=int, default=10, help="sink reply delay (keeps letters in flight)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="campaign-soak-"))
    try:
        contacts = 5
        result = soak(
            base,
            institutions=max(1, args.letters // contacts),
            contacts=contacts,
            min_kills=args.kills,
            seed=args.seed,
            delay_ms=args.delay_ms,
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(
        f"crash soak: {result.letters} letters, {result.kills} SIGKILLs over {result.runs} runs, {result.seconds:.0f} s"
    )
    print(
        f"  arrivals at the sink: {result.arrivals}; extra copies: {result.duplicates}; letters the log names "
        f"as possible duplicates: {result.named}"
    )
    print(
        f"  letters never arrived: {len(result.missing)}; duplicates the log does not name: {len(result.unexplained)}"
    )
    print(
        f"  arrivals - duplicates == letters: {result.arrivals - result.duplicates == result.letters}; log "
        f"verify: {'ok' if result.verify_ok else 'BROKEN'}"
    )
    print("  RESULT:", "ok" if result.ok else "FAILED")
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
