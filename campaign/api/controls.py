"""Managing a live campaign: cancel letters, pause and resume sending.

Each function opens the workspace's store, makes one change (which the store logs in the
event chain) and returns what happened; the CLI asks for confirmation and prints.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaign.api import _require_campaign, now_ms, open_store
from campaign.config import Workspace
from campaign.errors import SelectionError, UsageError
from campaign.store.controls import ALL, CancelResult


@dataclass(frozen=True)
class CancelRequest:
    ids: tuple[int, ...] = ()
    recipients: tuple[str, ...] = ()
    campaign: str | None = None
    everyone: bool = False
    reason: str | None = None


def check_cancel(request: CancelRequest) -> None:
    """Something must be chosen, and --all stands alone. Raises UsageError."""
    if request.everyone and (request.ids or request.recipients):
        raise UsageError("--all cannot be combined with letter ids or --to")
    if not (request.everyone or request.ids or request.recipients or request.campaign):
        raise UsageError("choose letters: ids (see `campaign log`), --to ID, --campaign NAME, or --all")


def cancel(ws: Workspace, request: CancelRequest) -> CancelResult:
    """Cancel queued, deferred and held letters (never one in flight)."""
    check_cancel(request)
    with open_store(ws, create=False) as store:
        _require_campaign(store, request.campaign)
        return store.cancel(
            now_ms(),
            ids=request.ids,
            recipients=request.recipients,
            campaign=request.campaign,
            reason=request.reason,
        )


def pause(ws: Workspace, campaign: str | None, reason: str | None = None) -> bool:
    """Pause one campaign (None: every campaign). False when it was paused already."""
    with open_store(ws, create=False) as store:
        _require_campaign(store, campaign)
        if not store.counts():
            raise SelectionError("nothing is queued yet: there is nothing to pause")
        return store.pause(campaign or ALL, now_ms(), reason=reason)


def resume(ws: Workspace, campaign: str | None) -> list[str]:
    """Lift a pause (None: every pause). Returns the pauses lifted (``*``: that of all
    campaigns); empty when nothing was paused."""
    with open_store(ws, create=False) as store:
        return store.resume(campaign or ALL, now_ms())


def paused(ws: Workspace) -> dict[str, tuple[str, str | None]]:
    """Paused campaigns (``*``: all) with when and why."""
    with open_store(ws, create=False) as store:
        return store.paused()
