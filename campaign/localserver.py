"""The demo's embedded SMTP server: aiosmtpd on 127.0.0.1, saving what it receives.

Contract: listens on loopback only, on a free port; accepts every message and writes
it to ``mailbox/`` as ``NNNN.eml`` (mode 0600) with its envelope in ``NNNN.json``;
advertises DSN and records the RFC 3461 parameters (stock aiosmtpd answers 555 to
them). With ``simulate_dsn`` it also writes, for each accepted message that asked
for ``NOTIFY=SUCCESS``, a delivery report to ``reports/``, clearly marked as simulated.
Nothing leaves the machine.

This module is the only home of aiosmtpd outside the tests.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from campaign.files import write_private

DSN_PARAMS = ("RET", "ENVID", "NOTIFY", "ORCPT")


class DsnSMTP(SMTP):
    """aiosmtpd's SMTP that accepts (and records) the DSN parameters of RFC 3461."""

    def _getparams(self, params: Any) -> Any:
        result = super()._getparams(params)
        if result is None:
            return None
        for key in DSN_PARAMS:
            result.pop(key, None)
        return result


@dataclass
class Received:
    """One accepted message."""

    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    rcpt_options: list[str]
    data: bytes
    path: Path | None = None


@dataclass
class MailboxHandler:
    """Stores every message; optional simulated success DSNs."""

    mailbox: Path | None = None
    reports: Path | None = None
    reporting_host: str = "demo.localhost"
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-DSN", responses[-1]]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        with self.lock:
            number = len(self.received) + 1
            item = Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                mail_options=list(envelope.mail_options),
                rcpt_options=list(envelope.rcpt_options),
                data=data,
            )
            if self.mailbox is not None:
                item.path = _write_private(self.mailbox / f"{number:04d}.eml", data)
                meta = {
                    "mail_from": item.mail_from,
                    "rcpt_tos": item.rcpt_tos,
                    "mail_options": item.mail_options,
                    "rcpt_options": item.rcpt_options,
                    "helo": session.host_name,
                }
                _write_private(self.mailbox / f"{number:04d}.json", json.dumps(meta, indent=2).encode())
            self.received.append(item)
        queue_id = f"DEMO{number:06d}"
        if self.reports is not None and any("NOTIFY=" in o and "SUCCESS" in o for o in item.rcpt_options):
            report = simulated_dsn(item, queue_id, self.reporting_host)
            _write_private(self.reports / f"{number:04d}-dsn.eml", report)
        return f"250 2.0.0 Ok: queued as {queue_id}"


def _write_private(path: Path, data: bytes) -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(path, data, replace=True, durable=False)
    return path


def _option(options: list[str], name: str) -> str | None:
    for option in options:
        key, _, value = option.partition("=")
        if key.upper() == name:
            return value
    return None


def simulated_dsn(item: Received, queue_id: str, host: str) -> bytes:
    """An RFC 3464 success report for ``item``, marked as simulated by the demo."""
    from datetime import UTC, datetime
    from email.message import Message
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText
    from email.policy import SMTP as SMTP_POLICY
    from email.utils import format_datetime, make_msgid

    now = format_datetime(datetime.now(UTC))
    report = MIMEMultipart("report", report_type="delivery-status", policy=SMTP_POLICY)
    report["From"] = f"Mail Delivery System (SIMULATED by campaign demo) <MAILER-DAEMON@{host}>"
    report["To"] = item.mail_from
    report["Subject"] = "Successful Mail Delivery Report (simulated)"
    report["Date"] = now
    report["Message-ID"] = make_msgid(domain=host)
    report["Auto-Submitted"] = "auto-replied"
    report.attach(
        MIMEText(
            "This is a SIMULATED delivery report written by `campaign demo`.\n"
            "No real server delivered anything: the demo's local SMTP server accepted the letter.\n",
            "plain",
            "us-ascii",
        )
    )
    per_message = Message()
    envid = _option(item.mail_options, "ENVID")
    if envid:
        per_message["Original-Envelope-Id"] = envid.lower()
    per_message["Reporting-MTA"] = f"dns; {host}"
    per_message["X-Campaign-Simulated"] = "yes"
    per_message["Arrival-Date"] = now
    per_recipient = Message()
    orcpt = _option(item.rcpt_options, "ORCPT")
    if orcpt:
        kind, _, address = orcpt.partition(";")
        per_recipient["Original-Recipient"] = f"{kind.lower()};{address.lower()}"
    per_recipient["Final-Recipient"] = f"rfc822; {item.rcpt_tos[0] if item.rcpt_tos else 'unknown'}"
    per_recipient["Action"] = "delivered"
    per_recipient["Status"] = "2.0.0"
    per_recipient["Remote-MTA"] = f"dns; {host}"
    per_recipient["Diagnostic-Code"] = f"smtp; 250 2.0.0 Ok: queued as {queue_id}"
    status = Message()
    status["Content-Type"] = "message/delivery-status"
    status.set_payload([per_message, per_recipient])
    report.attach(status)
    head = item.data.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    report.attach(MIMEText(head + "\n", "rfc822-headers", "us-ascii"))
    return report.as_bytes()


class LocalServer:
    """Start and stop the embedded server (a thread with its own event loop)."""

    def __init__(self, handler: MailboxHandler, *, hostname: str = "127.0.0.1", port: int = 0) -> None:
        self.handler = handler
        self.controller = Controller(
            handler,
            hostname=hostname,
            port=port or _free_port(hostname),
            server_hostname="demo.localhost",
            ready_timeout=10,
        )
        # Let the server accept RFC 3461 parameters.
        self.controller.factory = lambda: DsnSMTP(handler, hostname="demo.localhost")  # type: ignore[method-assign]

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def __enter__(self) -> LocalServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
