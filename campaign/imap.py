"""Fetching reports and replies from an IMAP mailbox (IMAPClient).

Contract:
- TLS always: implicit TLS (port 993) or STARTTLS, certificates verified against the
  system store or ``ca_file``; no plain-text login, ever.
- :func:`fetch_new` returns the messages whose UID is above the highest one processed
  for the folder's current UIDVALIDITY (a changed UIDVALIDITY means the server
  renumbered the folder: everything is looked at again, and the import stays
  idempotent because reports are keyed by their bytes). Messages are read with
  BODY.PEEK, so nothing is marked seen, and nothing is ever deleted.
- :func:`move` files processed messages into another folder (IMAP MOVE; created if
  missing), only when asked.
- Errors are ``ImapError`` naming host and port, never the password.

This module is the only home of imapclient.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from campaign.errors import ImapError

CHUNK = 200


@dataclass(frozen=True)
class ImapConfig:
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    folder: str = "INBOX"
    security: Literal["tls", "starttls"] = "tls"
    ca_file: str | None = None
    timeout: float = 60.0

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Fetched:
    uidvalidity: int
    messages: list[tuple[int, bytes]]  # (uid, raw bytes), ascending uid


@contextmanager
def session(config: ImapConfig, *, readonly: bool = True) -> Iterator[tuple[IMAPClient, int]]:
    """A logged-in connection with the folder selected: (client, UIDVALIDITY)."""
    try:
        context = ssl.create_default_context(cafile=config.ca_file)
    except (OSError, ssl.SSLError) as err:
        raise ImapError(f"[receipts.imap] ca_file {config.ca_file}: cannot load ({err})") from None
    client: IMAPClient | None = None
    try:
        client = IMAPClient(
            config.host, port=config.port, ssl=config.security == "tls", ssl_context=context, timeout=config.timeout
        )
        if config.security == "starttls":
            client.starttls(context)
        client.login(config.username, config.password)
        info = client.select_folder(config.folder, readonly=readonly)
        uidvalidity = int(info.get(b"UIDVALIDITY", 0))
        yield client, uidvalidity
    except LoginError:
        raise ImapError(
            f"{config.where}: login failed for {config.username}",
            hint="check [receipts.imap] username and CAMPAIGN_IMAP_PASSWORD (or the keyring)",
        ) from None
    except ssl.SSLCertVerificationError as err:
        raise ImapError(
            f"{config.where}: TLS certificate not trusted ({err.verify_message})",
            hint="if the server uses a private CA, set [receipts.imap] ca_file",
        ) from None
    except (ssl.SSLError, TimeoutError, ConnectionError, OSError) as err:
        raise ImapError(f"{config.where}: cannot connect: {err}") from None
    except IMAPClientError as err:
        raise ImapError(f"{config.where}: {_clean(err)}") from None
    finally:
        if client is not None:
            try:
                client.logout()
            except (IMAPClientError, OSError, ssl.SSLError):
                pass


def _clean(err: BaseException) -> str:
    text = str(err)
    return text.replace("b'", "").replace("'", "") or type(err).__name__


def fetch_new(client: IMAPClient, uidvalidity: int, after_uid: int) -> Fetched:
    """Messages with UID > after_uid, read without marking them seen."""
    try:
        uids = sorted(int(u) for u in client.search(["UID", f"{after_uid + 1}:*"]) if int(u) > after_uid)
        messages: list[tuple[int, bytes]] = []
        for start in range(0, len(uids), CHUNK):
            chunk = uids[start : start + CHUNK]
            data: dict[Any, Any] = client.fetch(chunk, ["BODY.PEEK[]"])
            for uid in chunk:
                body = data.get(uid, {}).get(b"BODY[]")
                if isinstance(body, bytes):
                    messages.append((uid, body))
    except IMAPClientError as err:
        raise ImapError(f"cannot fetch: {_clean(err)}") from None
    return Fetched(uidvalidity, messages)


def move(client: IMAPClient, uids: list[int], folder: str) -> None:
    """File messages into ``folder`` (created if missing) with IMAP MOVE."""
    if not uids:
        return
    try:
        if not client.folder_exists(folder):
            client.create_folder(folder)
        if not client.has_capability("MOVE"):
            raise ImapError("the server does not offer IMAP MOVE; nothing was moved", hint="run without --move-to")
        for start in range(0, len(uids), CHUNK):
            client.move(uids[start : start + CHUNK], folder)
    except IMAPClientError as err:
        raise ImapError(f"cannot move to {folder}: {_clean(err)}") from None
