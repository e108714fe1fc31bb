"""One function per user action: the CLI's only door into the core.

Each function takes a resolved :class:`~campaign.config.Workspace` (or the arguments
to find one), wires settings, registry, renderer, store and transport together, and
returns plain results. Nothing here prints or exits; progress is reported through
callbacks and problems are raised as :class:`~campaign.errors.CampaignError`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaign import registry as registry_mod
from campaign.config import Workspace, load_workspace
from campaign.errors import SelectionError
from campaign.files import save_private
from campaign.models import Contact, Recipient, Registry

if TYPE_CHECKING:
    from campaign.store.sql import SqlStore


def open_workspace(
    directory: str | os.PathLike[str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Workspace:
    """Find the workspace (-C, CAMPAIGN_WORKSPACE, or the current folder) and its settings."""
    return load_workspace(directory, overrides=overrides, labels=labels)


def load_registry(ws: Workspace) -> Registry:
    """recipients.yaml of the workspace, validated (cached in .campaign/cache/ when it exists)."""
    cache = ws.state_dir / "cache" if ws.state_dir.is_dir() else None
    return registry_mod.load_registry(ws.registry_path, cache_dir=cache)


def pick_contact(recipient: Recipient, email: str | None) -> Contact | None:
    """The contact with ``email``, else the first one (None for postal-only institutions)."""
    if email is None:
        return recipient.contacts[0] if recipient.contacts else None
    for contact in recipient.contacts:
        if contact.email.casefold() == email.casefold():
            return contact
    raise SelectionError(f"{recipient.id} has no contact {email}")


def open_store(ws: Workspace, *, create: bool = True) -> SqlStore:
    """The workspace's store (SQLite in .campaign/ unless [store] url / --db says otherwise).

    With ``create=False`` (commands that only read), a workspace without state gets an
    empty in-memory store: reading never creates .campaign/.
    """
    from campaign.store import open_store as _open

    busy = ws.settings.store.busy_timeout.total_seconds()
    if ws.settings.store.url is None:
        if not create and not (ws.state_dir / "state.db").exists():
            from campaign.store.sqlite import SqliteStore

            return SqliteStore(None)
        ws.ensure_state_dir()
        store: SqlStore = _open(ws.store_url, busy_timeout=busy)
    else:
        store = _open(ws.store_url, password=_store_password(ws.store_url), busy_timeout=busy)
    store.key_path = ws.state_dir / "chain.key"  # the workspace's chain key (campaign.store.integrity)
    return store


def _store_password(url: str) -> str | None:
    """PostgreSQL: PGPASSWORD and ~/.pgpass are read by the driver; else the keyring."""
    from campaign.config import keyring_secret, store_account

    if os.environ.get("PGPASSWORD") or (Path.home() / ".pgpass").exists():
        return None
    return keyring_secret(store_account(url))


def _require_campaign(store: SqlStore, campaign: str | None) -> None:
    """A campaign named on the command line must exist (a typo must not look like "done")."""
    if campaign and not store.counts(campaign):
        raise SelectionError(f"no campaign named {campaign!r} in the queue", hint="see `campaign status`")


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    import time

    return int(time.time() * 1000)


def passphrase_from_env(var: str) -> str | None:
    """A passphrase from the environment (CAMPAIGN_KEY_PASSPHRASE, CAMPAIGN_P12_PASSPHRASE)."""
    return os.environ.get(var) or None


def keys_folder(ws: Workspace) -> Path:
    return ws.state_dir / "keys"


def _write_private_file(path: Path, data: bytes, *, replace: bool = False) -> None:
    """A private file (campaign.files); an existing one is replaced only with ``replace``."""
    save_private(path, data, replace=replace)


@contextlib.contextmanager
def _new_state_undone_on_error(ws: Workspace) -> Iterator[None]:
    """If a command creates the state (folder or database) and then fails, remove what it
    created: bad input leaves the workspace as it was."""
    import shutil

    folder_existed = ws.state_dir.exists()
    db = ws.state_dir / "state.db"
    db_existed = db.exists() or ws.settings.store.url is not None
    key = ws.state_dir / "chain.key"
    key_existed = key.exists()
    try:
        yield
    except BaseException:
        if not folder_existed:
            shutil.rmtree(ws.state_dir, ignore_errors=True)
        elif not db_existed:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            if not key_existed:
                key.unlink(missing_ok=True)  # it tagged nothing that was kept
        raise


# Each capability in its own module, re-exported here: `api.queue(...)` works as it always did.
# (These imports come last: the modules import the shared helpers above from this package.)
from campaign.api.log import (
    LogQuery,
    MigrationResult,
    StatusReport,
    _explain_ready,
    _since,
    log,
    log_events,
    log_stream,
    migrate_store,
    status,
    verify_log,
    workers,
)
from campaign.api.pdf import (
    BatchResult,
    SignerInput,
    UnreadableFile,
    _letterhead,
    _pdf_content,
    _slug,
    keys_init,
    keys_issue,
    pdf_batch,
    pdf_export,
    pdf_verify,
    reference_for,
)
from campaign.api.queueing import (
    QueueRequest,
    _letter_headers,
    _new_state_undone_on_error,
    _queue_into_store,
    _sealed_pdf_attachment,
    followup,
    queue,
)
from campaign.api.receipts import (
    FetchResult,
    ReplyRow,
    _fetch_into,
    _return_local,
    fetch_receipts,
    imap_config,
    import_receipts,
    replies,
    unmatched_receipts,
)
from campaign.api.sending import (
    DkimKey,
    PlanResult,
    PlanRow,
    SendOutcome,
    SendRequest,
    SendSummary,
    _dkim_key,
    _pacing,
    _prepare_send,
    _run_send,
    _send_options,
    _SendSetup,
    dkim_keygen,
    plan,
    release,
    send,
    send_summary,
    smtp_config,
    smtp_login,
    smtp_login_account,
    wire_prefix_for,
    write_outbox,
)
from campaign.api.workspace import (
    SCAFFOLD_FILES,
    LetterCheck,
    Preview,
    PreviewFormat,
    _contact_email,
    _queued_bytes,
    _render_preview,
    check_letters,
    check_recipients,
    init_workspace,
    list_letters,
    list_recipients,
    preview,
)

__all__ = [
    "BatchResult",
    "DkimKey",
    "FetchResult",
    "LetterCheck",
    "LogQuery",
    "MigrationResult",
    "PlanResult",
    "PlanRow",
    "Preview",
    "PreviewFormat",
    "QueueRequest",
    "ReplyRow",
    "SCAFFOLD_FILES",
    "SendOutcome",
    "SendRequest",
    "SendSummary",
    "SignerInput",
    "StatusReport",
    "UnreadableFile",
    "_SendSetup",
    "_contact_email",
    "_dkim_key",
    "_explain_ready",
    "_fetch_into",
    "_letter_headers",
    "_letterhead",
    "_new_state_undone_on_error",
    "_pacing",
    "_pdf_content",
    "_prepare_send",
    "_queue_into_store",
    "_queued_bytes",
    "_render_preview",
    "_require_campaign",
    "_return_local",
    "_run_send",
    "_sealed_pdf_attachment",
    "_send_options",
    "_since",
    "_slug",
    "_new_state_undone_on_error",
    "_store_password",
    "_write_private_file",
    "check_letters",
    "check_recipients",
    "dkim_keygen",
    "fetch_receipts",
    "followup",
    "imap_config",
    "import_receipts",
    "init_workspace",
    "keys_folder",
    "keys_init",
    "keys_issue",
    "list_letters",
    "list_recipients",
    "load_registry",
    "log",
    "log_events",
    "log_stream",
    "migrate_store",
    "now_ms",
    "open_store",
    "open_workspace",
    "passphrase_from_env",
    "pdf_batch",
    "pdf_export",
    "pdf_verify",
    "pick_contact",
    "plan",
    "preview",
    "queue",
    "reference_for",
    "release",
    "replies",
    "send",
    "send_summary",
    "smtp_config",
    "smtp_login",
    "smtp_login_account",
    "status",
    "unmatched_receipts",
    "verify_log",
    "wire_prefix_for",
    "workers",
    "write_outbox",
]
