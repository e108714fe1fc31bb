"""Evidence: export a bundle, check one offline, and what `send` refused because of it.

See ``campaign.evidence`` for the bundle format and ``campaign.store.integrity`` for how
a letter's bytes are bound to the log.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaign.api import open_store
from campaign.config import Workspace
from campaign.errors import SelectionError, UsageError, WorkspaceError
from campaign.files import check_target
from campaign.models import to_rfc3339, utcnow
from campaign.store import MessageFilter
from campaign.wording import plural

if TYPE_CHECKING:
    from campaign.evidence import BundleCheck, ExportResult
    from campaign.store.sql import SqlStore


def export_evidence(
    ws: Workspace,
    out: Path,
    *,
    campaign: str | None = None,
    ids: list[int] | None = None,
    force: bool = False,
    with_case_letters: bool = False,
) -> ExportResult:
    """Write an evidence bundle for a whole campaign or for message ids. Letters about a
    case carry the case's data in their bytes: they are left out unless ``with_case_letters``.

    Refuses to overwrite ``out`` unless ``force``. Raises UsageError, SelectionError,
    WorkspaceError.
    """
    from campaign.evidence import export_bundle

    if bool(campaign) == bool(ids):
        raise UsageError("give either --campaign NAME or message ids (see `campaign log`)")
    if out.is_dir():
        raise WorkspaceError(f"{out}: is a folder; give a file name for the bundle (e.g. evidence.zip)")
    check_target(out, force=force)
    with open_store(ws, create=False) as store:
        messages = store.messages(MessageFilter(campaign=campaign, ids=tuple(ids or ())))
        if not messages:
            raise SelectionError(
                f"no letters in campaign {campaign!r}"
                if campaign
                else f"no messages with ids {', '.join(map(str, ids or []))}",
                hint="see `campaign status` and `campaign log`",
            )
        unknown = sorted(set(ids or ()) - {m.id for m in messages})
        if unknown:
            raise SelectionError(
                f"no messages with ids {', '.join(map(str, unknown))}; nothing was written",
                hint="see the ids with `campaign log`",
            )
        about_cases = [m for m in messages if m.cases]
        if about_cases and not with_case_letters:
            if len(about_cases) == len(messages):
                raise SelectionError(
                    f"all {plural(len(messages), 'letter')} are about a case and carry its data in their bytes; "
                    "nothing was written",
                    hint="add --with-case-letters to export them (keep the bundle as private as the case files)",
                )
            messages = [m for m in messages if not m.cases]
        result = export_bundle(
            store,
            out,
            message_ids=[m.message_id for m in messages],
            db_status={m.message_id: m.status.value for m in messages},
            campaign=campaign,
            created_at=to_rfc3339(utcnow()),
            force=force,
        )
        result.left_out = 0 if with_case_letters else len(about_cases)
        return result


def verify_bundle(path: Path) -> BundleCheck:
    """Check an evidence bundle (a .zip, or the folder it was unzipped into) offline."""
    from campaign.evidence import verify_bundle as check

    if not path.exists():
        raise SelectionError(f"{path}: no such file or folder")
    return check(path)


def refused_by_integrity(store: SqlStore, since: str) -> list[dict[str, Any]]:
    """Letters `send` held since ``since`` because their bytes were not the bytes the log recorded."""
    return store.integrity_holds(since)
