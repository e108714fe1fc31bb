"""The loopback Postfix and Dovecot of the integration tests (scripts/loopback-*.sh).

``mta()`` and ``imap()`` read the env files the scripts write and check that the
servers answer; ``require_mta()`` / ``require_imap()`` skip a test with a visible
reason when they do not, except under CI (``CI=true``) where that is a failure.
The Maildir helpers read what the real Postfix delivered, and ``parse_dsn`` reads a
delivery status notification (RFC 3464) into plain fields.

State directories: ``CAMPAIGN_MTA_DIR`` (default /var/tmp/campaign-mta) and
``CAMPAIGN_IMAP_DIR`` (default /var/tmp/campaign-imap). They are read when this
module is imported, because the suite's autouse fixture removes every CAMPAIGN_*
variable from the environment while a test runs.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import os
import smtplib
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MTA_SCRIPT = ROOT / "scripts" / "loopback-mta.sh"
IMAP_SCRIPT = ROOT / "scripts" / "loopback-imap.sh"

DEFAULT_MTA_DIR = "/var/tmp/campaign-mta"
DEFAULT_IMAP_DIR = "/var/tmp/campaign-imap"
# Captured at import time, before the autouse fixture clears CAMPAIGN_* variables.
_MTA_DIR = os.environ.get("CAMPAIGN_MTA_DIR") or DEFAULT_MTA_DIR
_IMAP_DIR = os.environ.get("CAMPAIGN_IMAP_DIR") or DEFAULT_IMAP_DIR

PROBE_TIMEOUT = 5.0

# Addresses served by the loopback MTA (see docs/LOOPBACK-SERVICES.md).
RETURN_PATH = "receipts@campaign.example"
KNOWN_USER = "wgad@good.example"
UNKNOWN_USER = "nobody@good.example"  # accepted at RCPT, then bounced 5.1.1
FAIL_DOMAIN = "fail.example"  # accepted, then bounced 5.1.2
DEFER_DOMAIN = "defer.example"  # accepted, deferred 4.4.1: DELAY report, then expiry


@dataclass(frozen=True)
class MtaInfo:
    host: str
    port: int
    maildir_root: Path
    return_path_maildir: Path
    state_dir: Path
    log_file: Path | None = None

    def maildir(self, address: str) -> Path:
        """The Maildir of a virtual mailbox, e.g. wgad@good.example."""
        local, _, domain = address.partition("@")
        return self.maildir_root / domain / local.split("+", 1)[0]


@dataclass(frozen=True)
class ImapInfo:
    host: str
    port: int  # IMAP with STARTTLS
    tls_port: int  # IMAPS
    user: str
    password: str = field(repr=False)
    ca_file: Path
    maildir: Path | None = None
    log_file: Path | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that verifies the server against the generated test CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines (comments and blank lines ignored); {} when the file is missing."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def _opt_path(env: dict[str, str], key: str) -> Path | None:
    return Path(env[key]) if env.get(key) else None


def mta_dir() -> Path:
    return Path(os.environ.get("CAMPAIGN_MTA_DIR") or _MTA_DIR)


def imap_dir() -> Path:
    return Path(os.environ.get("CAMPAIGN_IMAP_DIR") or _IMAP_DIR)


def _smtp_has_dsn(host: str, port: int) -> bool:
    try:
        with smtplib.SMTP(host, port, timeout=PROBE_TIMEOUT) as smtp:
            code, _ = smtp.ehlo("probe.campaign.example")
            return code == 250 and smtp.has_extn("dsn")
    except (OSError, smtplib.SMTPException):
        return False


def mta() -> MtaInfo | None:
    """The running loopback Postfix, or None (no env file, not listening, no DSN)."""
    state = mta_dir()
    env = read_env_file(state / "env")
    try:
        info = MtaInfo(
            host=env["CAMPAIGN_TEST_MTA_HOST"],
            port=int(env["CAMPAIGN_TEST_MTA_PORT"]),
            maildir_root=Path(env["CAMPAIGN_TEST_MTA_MAILDIR_ROOT"]),
            return_path_maildir=Path(env["CAMPAIGN_TEST_RETURN_PATH_MAILDIR"]),
            state_dir=state,
            log_file=_opt_path(env, "CAMPAIGN_TEST_MTA_LOG"),
        )
    except (KeyError, ValueError):
        return None
    return info if _smtp_has_dsn(info.host, info.port) else None


def _imaps_answers(info: ImapInfo) -> bool:
    try:
        with imaplib.IMAP4_SSL(info.host, info.tls_port, ssl_context=info.ssl_context(), timeout=PROBE_TIMEOUT) as conn:
            conn.noop()
        return True
    except (OSError, ssl.SSLError, imaplib.IMAP4.error):
        return False


def imap() -> ImapInfo | None:
    """The running loopback Dovecot, or None (no env file, or IMAPS does not answer)."""
    env = read_env_file(imap_dir() / "env")
    try:
        info = ImapInfo(
            host=env["CAMPAIGN_TEST_IMAP_HOST"],
            port=int(env["CAMPAIGN_TEST_IMAP_PORT"]),
            tls_port=int(env["CAMPAIGN_TEST_IMAP_TLS_PORT"]),
            user=env["CAMPAIGN_TEST_IMAP_USER"],
            password=env["CAMPAIGN_TEST_IMAP_PASSWORD"],
            ca_file=Path(env["CAMPAIGN_TEST_IMAP_CA"]),
            maildir=_opt_path(env, "CAMPAIGN_TEST_IMAP_MAILDIR"),
            log_file=_opt_path(env, "CAMPAIGN_TEST_IMAP_LOG"),
        )
    except (KeyError, ValueError):
        return None
    if not info.ca_file.is_file():
        return None
    return info if _imaps_answers(info) else None


def _unavailable(reason: str) -> None:
    """Skip, or fail under CI: CI must never skip these tests silently."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the loopback services must run in CI)", pytrace=False)
    pytest.skip(reason)


def require_mta() -> MtaInfo:
    info = mta()
    if info is None:
        _unavailable(
            f"loopback Postfix not running: start it with `bash scripts/loopback-mta.sh start` (state dir {mta_dir()})"
        )
        raise AssertionError("unreachable")  # pragma: no cover
    return info


def require_imap() -> ImapInfo:
    info = imap()
    if info is None:
        _unavailable(
            f"loopback Dovecot not running: start it with `bash scripts/loopback-imap.sh start`"
            f" (state dir {imap_dir()})"
        )
        raise AssertionError("unreachable")  # pragma: no cover
    return info


# --- Maildirs ---------------------------------------------------------------------------


def maildir_messages(maildir: Path, match: Callable[[bytes], bool] | None = None) -> list[Path]:
    """Messages in new/ and cur/ (oldest first), optionally only those whose raw bytes match."""
    found: list[tuple[float, Path]] = []
    for sub in ("new", "cur"):
        try:
            entries = list(os.scandir(maildir / sub))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                mtime = entry.stat().st_mtime
                if match is not None and not match(Path(entry.path).read_bytes()):
                    continue
            except FileNotFoundError:  # moved new/ -> cur/ by an IMAP client meanwhile
                continue
            found.append((mtime, Path(entry.path)))
    return [path for _, path in sorted(found)]


def wait_for_messages(
    maildir: Path,
    count: int,
    timeout: float,
    match: Callable[[bytes], bool] | None = None,
) -> list[Path]:
    """Poll new/ and cur/ until at least ``count`` (matching) messages are there.

    Raises TimeoutError, naming what was found, when they do not arrive in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = maildir_messages(maildir, match)
        if len(found) >= count:
            return found
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{len(found)} of {count} expected message(s) in {maildir} after {timeout:.0f} s"
                f" (see the MTA log in {mta_dir() / 'log' / 'postfix.log'})"
            )
        time.sleep(0.1)


def containing(*needles: str | bytes) -> Callable[[bytes], bool]:
    """A ``match`` for the Maildir helpers: the raw message contains every needle."""
    raw = [n.encode() if isinstance(n, str) else n for n in needles]
    return lambda data: all(n in data for n in raw)


def reset_mailboxes() -> None:
    """Empty every Maildir of the loopback MTA and its queue (needs root, like the MTA).

    Other tests running at the same time lose their mail too: prefer unique
    Message-IDs / ENVIDs and ``match`` filters inside the suite.
    """
    env = {**os.environ, "CAMPAIGN_MTA_DIR": str(mta_dir())}
    subprocess.run(["bash", str(MTA_SCRIPT), "reset"], check=True, env=env, capture_output=True)


# --- DSNs -------------------------------------------------------------------------------


@dataclass
class DsnRecipient:
    final_recipient: str
    action: str  # delivered | failed | delayed | relayed | expanded
    status: str  # e.g. 2.0.0, 5.1.1, 4.4.1
    original_recipient: str | None = None
    diagnostic: str | None = None


@dataclass
class Dsn:
    """A multipart/report; report-type=delivery-status message, flattened."""

    message: Message
    envelope_id: str | None
    reporting_mta: str | None
    recipients: list[DsnRecipient]

    @property
    def actions(self) -> list[str]:
        return [r.action for r in self.recipients]


def _field(block: Message, name: str) -> str | None:
    value = block.get(name)
    return None if value is None else " ".join(str(value).split())


def _after_type(value: str | None) -> str | None:
    """'rfc822; a@b' -> 'a@b'."""
    if value is None:
        return None
    return value.split(";", 1)[1].strip() if ";" in value else value.strip()


def parse_dsn(raw: bytes) -> Dsn | None:
    """The delivery-status fields of a DSN, or None when ``raw`` is not a DSN."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    if msg.get_content_type() != "multipart/report":
        return None
    if str(msg.get_param("report-type", "")).lower() != "delivery-status":
        return None
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        blocks = [b for b in payload if isinstance(b, Message)] if isinstance(payload, list) else []
        if not blocks:
            return None
        per_message, per_recipient = blocks[0], blocks[1:]
        recipients = [
            DsnRecipient(
                final_recipient=_after_type(_field(b, "Final-Recipient")) or "",
                action=(_field(b, "Action") or "").lower(),
                status=_field(b, "Status") or "",
                original_recipient=_after_type(_field(b, "Original-Recipient")),
                diagnostic=_field(b, "Diagnostic-Code"),
            )
            for b in per_recipient
        ]
        return Dsn(
            message=msg,
            envelope_id=_field(per_message, "Original-Envelope-Id"),
            reporting_mta=_after_type(_field(per_message, "Reporting-MTA")),
            recipients=recipients,
        )
    return None


def wait_for_dsns(
    maildir: Path,
    envelope_id: str,
    timeout: float,
    *,
    action: str | None = None,
    count: int = 1,
) -> list[Dsn]:
    """Wait until ``count`` DSNs with this ENVID (and, if given, a recipient with this
    Action) are in ``maildir``; oldest first."""

    parsed: dict[str, Dsn] = {}

    def wanted(data: bytes) -> bool:
        if envelope_id.encode() not in data:
            return False
        dsn = parse_dsn(data)
        if dsn is None or dsn.envelope_id != envelope_id:
            return False
        if action is not None and action not in dsn.actions:
            return False
        # keyed by content: an IMAP client may move the file from new/ to cur/ meanwhile
        parsed[data.decode("utf-8", "replace")] = dsn
        return True

    wait_for_messages(maildir, count, timeout, match=wanted)
    return list(parsed.values())
