"""The recovery journal: outcomes a server confirmed that the store could not record.

Contract:
- When a send must stop while the store is unavailable (locked past the retry window, a
  failed statement), the outcomes it holds in memory (a server's 250 for a letter the
  store still shows ``sending``) are written to ``.campaign/recovery/<worker>.json``:
  mode 0600, fsynced, then the folder fsynced, so the file survives a power cut.
- Letters the run had claimed but never started to send (it stopped first, and the store
  could not take them back) are saved beside them as ``unsent``: without that, the next
  run would find them ``sending`` and resend them as possible duplicates, which they are
  not.
- The next run applies every journal **before** it recovers anything in ``sending``
  (``SqlStore.finish`` under the journal's worker, which is idempotent; then ``unclaim``
  for the unsent, which leaves alone a letter another worker took over), then deletes the
  file. So a letter the server accepted is recorded as sent and never resent, and a letter
  never sent is not named a possible duplicate.
- A journal is plain JSON (one object per outcome, the fields of ``store.Outcome``):
  readable by a person, and by another machine when the folder is copied there.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from campaign.errors import StoreError
from campaign.files import write_private
from campaign.store import Outcome, Unsent

VERSION = 2  # 2: adds ``unsent`` (a version 1 file has none)


def write(folder: Path, worker: str, outcomes: list[Outcome], unsent: Sequence[Unsent] = ()) -> Path:
    """Write ``outcomes`` and ``unsent`` durably; returns the file. Raises OSError (disk
    full, read-only)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{worker}.json"
    payload = {
        "version": VERSION,
        "worker": worker,
        "outcomes": [asdict(o) for o in outcomes],
        "unsent": [asdict(u) for u in unsent],
    }
    data = json.dumps(payload, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8")
    write_private(path, data, replace=True)
    _fsync_dir(folder)
    return path


def pending(folder: Path) -> list[tuple[Path, str, list[Outcome], list[Unsent]]]:
    """Every journal in ``folder``: (file, worker, outcomes, unsent), oldest first. Raises
    StoreError for a file that cannot be read (it must not be skipped silently)."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name)):
        try:
            payload: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            worker = str(payload["worker"])
            outcomes = [Outcome(**item) for item in payload["outcomes"]]
            unsent = [Unsent(**item) for item in payload.get("unsent", [])]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise StoreError(
                f"{path}: a recovery journal that cannot be read ({err})",
                hint="it lists letters a server accepted that are not recorded yet; "
                "fix or move the file aside knowingly (those letters could then be sent again)",
            ) from None
        found.append((path, worker, outcomes, unsent))
    return found


def done(path: Path) -> None:
    """Remove an applied journal (durably)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
