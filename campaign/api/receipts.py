"""Delivery reports, read receipts and replies: import, IMAP fetch, unmatched, replies.

Re-exported by ``campaign.api``; see its docstring for the rules every function follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaign.config import Workspace
from campaign.errors import (
    ConfigError,
)

if TYPE_CHECKING:
    from campaign.imap import ImapConfig
    from campaign.receipts import ImportResult
from campaign.api import _new_state_undone_on_error, now_ms, open_store


def import_receipts(ws: Workspace, paths: list[Path]) -> ImportResult:
    """Import delivery reports, read receipts and replies from files, mbox files, Maildirs."""
    from campaign.receipts import import_items, read_sources

    items = list(read_sources(paths))  # read (and refuse non-mail) before changing anything
    with open_store(ws) as store:
        return import_items(store, items, now_ms=now_ms, return_local=_return_local(ws))


def _return_local(ws: Workspace) -> str:
    return ws.settings.return_path.rpartition("@")[0]


def unmatched_receipts(ws: Workspace) -> list[dict[str, Any]]:
    """Report entries that matched no letter (kept, never dropped)."""
    with open_store(ws, create=False) as store:
        return store.unmatched()


def imap_config(ws: Workspace) -> ImapConfig:
    """[receipts.imap] plus the password (CAMPAIGN_IMAP_PASSWORD or the keyring)."""
    from campaign.config import get_secret, imap_account
    from campaign.imap import ImapConfig

    imap = ws.settings.receipts.imap
    if imap is None:
        raise ConfigError(
            "campaign.toml has no [receipts.imap] section",
            hint="add host, port, username and folder under [receipts.imap]; see `campaign init`",
        )
    password = get_secret("CAMPAIGN_IMAP_PASSWORD", imap_account(imap))
    ca_file = str((ws.root / imap.ca_file).resolve()) if imap.ca_file else None
    return ImapConfig(
        host=imap.host,
        port=imap.port,
        username=imap.username,
        password=password,
        folder=imap.folder,
        security=imap.security,
        ca_file=ca_file,
        timeout=imap.timeout.total_seconds(),
    )


@dataclass
class FetchResult:
    fetched: int
    imported: ImportResult
    moved: int = 0


def fetch_receipts(ws: Workspace, *, move_to: str | None = None) -> FetchResult:
    """Fetch new messages from the IMAP folder and import them like `receipts import`."""

    config = imap_config(ws)
    account = f"{config.username}@{config.host}:{config.port}"
    with _new_state_undone_on_error(ws):
        return _fetch_into(ws, config, account, move_to)


def _fetch_into(ws: Workspace, config: ImapConfig, account: str, move_to: str | None) -> FetchResult:
    from campaign import imap
    from campaign.receipts import Item, import_items

    with open_store(ws) as store:
        with imap.session(config, readonly=move_to is None) as (client, uidvalidity):
            position = store.mailbox_position(account, config.folder)
            after = position[1] if position and position[0] == uidvalidity else 0
            batch = imap.fetch_new(client, uidvalidity, after)
            items = [Item(f"imap:{config.folder}/{uid}", raw) for uid, raw in batch.messages]
            result = import_items(store, items, now_ms=now_ms, return_local=_return_local(ws))
            if batch.messages:
                store.set_mailbox_position(account, config.folder, uidvalidity, batch.messages[-1][0], now_ms())
            moved = 0
            if move_to:
                handled = set(result.handled)
                uids = [uid for uid, _ in batch.messages if f"imap:{config.folder}/{uid}" in handled]
                imap.move(client, uids, move_to)
                moved = len(uids)
    return FetchResult(len(batch.messages), result, moved)


@dataclass(frozen=True)
class ReplyRow:
    kind: str
    campaign: str
    recipient: str
    email: str
    message_row: int
    subject: str
    received: str
    sender: str
    reply_subject: str
    automatic: str | None
    sha256: str


def replies(ws: Workspace, campaign: str | None = None) -> list[ReplyRow]:
    """Replies (and automatic replies) to our letters, with who answered and when."""
    from campaign.receipts import describe

    with open_store(ws, create=False) as store:
        rows = []
        for r in store.replies(campaign):
            raw = store.blob(r["report_sha256"]) or b""
            sender, subject = describe(raw)
            if r.get("cases"):  # "Re: <subject>" may name the person the letter is about
                subject = "(a reply to a letter about a case: subject not shown)"
            rows.append(
                ReplyRow(
                    kind=r["kind"],
                    campaign=r["campaign"],
                    recipient=r["recipient"],
                    email=r["email"],
                    message_row=int(r["message_row"]),
                    subject=r["subject"],
                    received=r["arrival"] or r["received_at"],
                    sender=sender,
                    reply_subject=subject,
                    automatic=r["note"],
                    sha256=r["report_sha256"],
                )
            )
        return rows
