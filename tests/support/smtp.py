"""A scriptable SMTP server on loopback for tests (aiosmtpd), and a recording sink.

``ScriptedServer`` runs in a thread and can, per test: answer 421 at greeting; give
any reply to MAIL, RCPT or DATA (a list consumed in order, then 250); reset the
connection in the middle of DATA or after the final dot; stall for a while at any
step; refuse STARTTLS or offer it with a given (e.g. self-signed) certificate;
reject authentication; advertise DSN and SMTPUTF8 and record every parameter.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Accepted:
    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    rcpt_options: list[str]
    data: bytes
    helo: str | None


@dataclass
class Script:
    """What the server should do. Reply lists are consumed one per command."""

    greeting: str | None = None  # e.g. "421 4.3.2 try later": answer this and close
    mail: list[str] = field(default_factory=list)
    rcpt: list[str] = field(default_factory=list)
    data_start: list[str] = field(default_factory=list)  # reply to the DATA command itself
    data_end: list[str] = field(default_factory=list)  # reply after the final dot
    reset_mid_data: int = 0  # the next N messages: read a little, stop reading, reset
    reset_after_dot: int = 0  # the next N messages: read all, then reset without replying
    stall_after_dot: float = 0.0  # seconds to wait before replying after the dot
    stall_rcpt: float = 0.0
    dsn: bool = True
    smtputf8: bool = True
    auth_ok: bool = True
    delay_ms: int = 0  # delay before every reply after DATA (benchmarks)
    # Called (in the server's thread, the client waiting for the reply) with the number of
    # the message just received, before the reply after its final dot: to act mid-run.
    on_data: Callable[[int], None] | None = None


class _Handler:
    def __init__(self, server: ScriptedServer) -> None:
        self.server = server

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.server.ehlo_names.append(hostname)
        extra = []
        if self.server.script.dsn:
            extra.append("250-DSN")
        lines = [r for r in responses[:-1] if self.server.script.smtputf8 or "SMTPUTF8" not in r]
        return [*lines, *extra, responses[-1]]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.server.pop("mail")
        if reply and not reply.startswith("2"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.server.script.stall_rcpt:
            await asyncio.sleep(self.server.script.stall_rcpt)
        reply = self.server.pop("rcpt")
        if reply and not reply.startswith("2"):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        script = self.server.script
        if script.delay_ms:
            await asyncio.sleep(script.delay_ms / 1000)
        with self.server.lock:
            if script.reset_after_dot > 0:
                script.reset_after_dot -= 1
                self.server.record(envelope, session, accepted=False)
                assert server.transport is not None
                server.transport.abort()
                return "250 never seen"
        if script.on_data is not None:
            with self.server.lock:
                number = len(self.server.accepted) + len(self.server.unconfirmed) + 1
            script.on_data(number)
        if script.stall_after_dot:
            await asyncio.sleep(script.stall_after_dot)
        reply = self.server.pop("data_end")
        if reply and not reply.startswith("2"):
            return reply
        number = self.server.record(envelope, session, accepted=True)
        return f"250 2.0.0 Ok: queued as T{number:05d}"


class _ScriptedSMTP(SMTP):
    def __init__(self, handler: _Handler, server: ScriptedServer, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._scripted = server

    def _getparams(self, params: Any) -> Any:
        result = super()._getparams(params)
        if result is None:
            return None
        for key in ("RET", "ENVID", "NOTIFY", "ORCPT"):
            result.pop(key, None)
        return result

    async def _handle_client(self) -> None:
        greeting = self._scripted.script.greeting
        self._scripted.connections += 1
        if greeting:
            await self.push(greeting)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()

    async def smtp_DATA(self, arg: str) -> None:
        script = self._scripted.script
        reply = self._scripted.pop("data_start")
        if reply and not reply.startswith(("2", "3")):
            await self.push(reply)
            return
        with self._scripted.lock:
            reset = script.reset_mid_data > 0
            if reset:
                script.reset_mid_data -= 1
        if not reset:
            await super().smtp_DATA(arg)
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        await self._reader.readline()
        assert self.transport is not None
        self.transport.pause_reading()
        await asyncio.sleep(0.3)
        self._scripted.resets += 1
        self.transport.abort()


class ScriptedServer:
    """Start with ``with ScriptedServer(script) as server:``; ``server.port``."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        auth: bool = False,
        port: int | None = None,
    ) -> None:
        self.script = script or Script()
        self.port = port or free_port()
        self.accepted: list[Accepted] = []
        self.unconfirmed: list[Accepted] = []
        self.ehlo_names: list[str] = []
        self.connections = 0
        self.resets = 0
        self.lock = threading.RLock()
        handler = _Handler(self)
        kwargs: dict[str, Any] = {
            "hostname": "mx.test-server.example",
            "data_size_limit": 64 * 1024 * 1024,
            "enable_SMTPUTF8": True,
        }
        if tls_context is not None:
            kwargs["tls_context"] = tls_context
            kwargs["require_starttls"] = require_starttls
        if auth:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_require_tls"] = False
            kwargs["auth_required"] = True
        self.controller = Controller(handler, hostname="127.0.0.1", port=self.port, ready_timeout=10)
        self.controller.factory = lambda: _ScriptedSMTP(handler, self, **kwargs)  # type: ignore[method-assign]

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        return AuthResult(success=self.script.auth_ok, handled=False)

    def pop(self, kind: str) -> str | None:
        with self.lock:
            replies: list[str] = getattr(self.script, kind)
            return replies.pop(0) if replies else None

    def record(self, envelope: Envelope, session: Session, *, accepted: bool) -> int:
        item = Accepted(
            mail_from=str(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            mail_options=list(envelope.mail_options),
            rcpt_options=list(envelope.rcpt_options),
            data=envelope.original_content or b"",
            helo=session.host_name,
        )
        with self.lock:
            (self.accepted if accepted else self.unconfirmed).append(item)
            return len(self.accepted) + len(self.unconfirmed)

    def __enter__(self) -> ScriptedServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.accepted) < count and time.monotonic() < deadline:
            time.sleep(0.01)
