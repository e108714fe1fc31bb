"""SMTP: one connection, one message per transaction, a strict client, replies classified.

Contract:
- A connection is opened (greeting, EHLO with the configured name, never this
  machine's, STARTTLS or implicit TLS with certificate verification, AUTH) *before*
  any message is claimed. Problems there raise ``ServerUnavailableError`` (refused,
  4xx greeting: try later) or ``TransportError`` (TLS, authentication, 5xx greeting,
  a broken protocol: the run stops and no message changes).
- The client is strict (see :class:`SmtpConnection`): one reply per command, of the
  class the command expects (``DATA`` → 354 only). An extra, malformed or unsolicited
  reply line ends the connection at once with ``transport.abort()`` (never QUIT or a
  graceful close, which would flush buffered bytes), and the result is ``protocol``.
- :meth:`SmtpConnection.send` never raises for a message-level problem: it returns a
  :class:`SendResult` that says what happened and in which phase. While any byte of
  the message is still in asyncio's buffer (a zero high-water mark makes that exact),
  the final dot has not left: a failure then is ``temporary`` (nothing was delivered)
  and the connection is dropped so the rest is discarded. Once everything was handed
  to the kernel, a missing reply is ``unknown`` (RFC 5321 4.5.3.2.6: the server may
  have accepted it), which the dispatcher turns into a retry marked as a possible
  duplicate.
- DSNs (RFC 3461) are requested when the server offers ``DSN``: ``RET=HDRS``,
  ``ENVID`` on MAIL FROM, ``NOTIFY=SUCCESS,FAILURE,DELAY`` and an xtext-encoded
  ``ORCPT`` on RCPT TO.
- Exception texts never contain the password: they are built from host, port and
  the server's reply only.

The client is written here over asyncio's public Protocol and Transport API, not on
aiosmtplib: an SMTP library hides exactly what this module must see (unsolicited reply
lines, whether the final dot left the process), and the part we need is small (see
docs/ARCHITECTURE.md, "The SMTP client"). This module is also the only home of dkimpy
(see :func:`dkim_signature`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import re
import socket
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from campaign.errors import TransportError

ResultKind = Literal[
    "sent", "temporary", "address", "policy", "permanent", "unknown", "sender", "reconnect", "protocol"
]

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_QUEUE_ID = [
    re.compile(r"queued as ([A-Za-z0-9]+)", re.I),
    re.compile(r"\bid=([A-Za-z0-9-]+)"),
    re.compile(r"\bOK\s+<?([A-Za-z0-9][A-Za-z0-9.@-]{5,})>?\s+-\s+gsmtp", re.I),
    re.compile(r"\b(?:Ok|queued)[:\s]+([A-F0-9]{8,})\b"),
]


class ServerUnavailableError(TransportError):
    """The server cannot take mail now (refused, timed out, 4xx greeting): try later."""


@dataclass(frozen=True)
class SmtpConfig:
    """Everything a connection needs; the password is never part of repr()."""

    host: str
    port: int
    security: Literal["starttls", "tls", "none"]
    helo_name: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    timeout: float = 60.0
    data_timeout: float = 600.0

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Envelope:
    """MAIL FROM / RCPT TO for one message."""

    mail_from: str
    rcpt: str
    envid: str
    smtputf8: bool = False


@dataclass(frozen=True)
class SendResult:
    """What the server made of one message."""

    kind: ResultKind
    phase: str  # connect | mail | rcpt | data | end
    code: int | None = None
    enhanced: str | None = None
    reply: str | None = None
    remote_id: str | None = None
    dsn_requested: bool = False

    @property
    def line(self) -> str:
        return self.reply or self.kind


class Connection(Protocol):
    """What the dispatcher needs from a transport."""

    @property
    def connected(self) -> bool: ...

    async def open(self) -> None: ...

    async def send(self, envelope: Envelope, wire: bytes) -> SendResult: ...

    async def close(self) -> None: ...

    def abort(self) -> None: ...

    def watch(self, callback: Callable[[TransportError], None]) -> None:
        """Call ``callback`` when the server breaks the protocol while no command waits
        (between two messages, say): the connection is already dropped by then."""
        ...


# ---------------------------------------------------------------------------
# Pure helpers


def xtext(value: str) -> str:
    """RFC 3461 xtext: '+', '=' and anything outside '!'..'~' become '+XX'."""
    out = []
    for byte in value.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (ord("+"), ord("=")):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def utf8_addr_xtext(value: str) -> str:
    """RFC 6533 utf-8-addr-xtext: non-ASCII, '+', '=', '\\' and controls as \\x{HEX}."""
    out = []
    for ch in value:
        code = ord(ch)
        if 33 <= code <= 126 and ch not in "+=\\":
            out.append(ch)
        else:
            out.append(f"\\x{{{code:X}}}")
    return "".join(out)


def orcpt(address: str) -> str:
    """The ORCPT parameter value for an address."""
    if address.isascii():
        return f"rfc822;{xtext(address)}"
    return f"utf-8;{utf8_addr_xtext(address)}"


def enhanced_code(message: str) -> str | None:
    match = _ENHANCED.match(message or "")
    return ".".join(match.groups()) if match else None


def remote_queue_id(message: str) -> str | None:
    for pattern in _QUEUE_ID:
        match = pattern.search(message or "")
        if match:
            return match.group(1)
    return None


def one_line(code: int | None, message: str) -> str:
    text = " / ".join(part.strip() for part in (message or "").splitlines() if part.strip())
    return f"{code} {text}".strip() if code is not None else text


def classify(code: int, message: str, phase: str) -> SendResult:
    """A server reply → outcome. 2xx sent; 4xx temporary; 5.1.x address; 5.7.x policy;
    other 5xx permanent; 5.1.x / 5.7.x / 530 at MAIL FROM concern our sender."""
    enhanced = enhanced_code(message)
    reply = one_line(code, message)
    kind: ResultKind
    if 200 <= code < 300:
        kind = "sent"
    elif 400 <= code < 500:
        kind = "temporary"
    elif phase == "mail" and (code == 530 or (enhanced or "").startswith(("5.7.", "5.1."))):
        kind = "sender"
    elif enhanced and enhanced.startswith("5.1."):
        kind = "address"
    elif enhanced and enhanced.startswith("5.7."):
        kind = "policy"
    elif enhanced is None and phase == "rcpt" and code in (550, 551, 553):
        kind = "address"
    else:
        kind = "permanent"
    return SendResult(kind=kind, phase=phase, code=code, enhanced=enhanced, reply=reply)


_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_DOT = re.compile(rb"(?m)^\.")


def prepare_data(wire: bytes) -> bytes:
    """Message bytes as transmitted after DATA (RFC 5321 4.5.2): CRLF line endings,
    dot-stuffed, a final CRLF and the terminating dot."""
    crlf = wire.count(b"\r\n")
    # Stored letters already end every line with CRLF: counted, not rewritten.
    data = wire if wire.count(b"\n") == crlf == wire.count(b"\r") else _LINE_ENDINGS.sub(b"\r\n", wire)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b".") or b"\n." in data:
        data = _LEADING_DOT.sub(b"..", data)
    return data + b".\r\n"


# ---------------------------------------------------------------------------
# Reply framing: one reply per command, anything else is a protocol violation

MAX_REPLY_LINE = 4096  # RFC 5321 4.5.3.1.5 says 512; real servers send a little more
MAX_REPLY_LINES = 100
_REPLY_LINE = re.compile(rb"^([2-5][0-9][0-9])([ -])(.*)$", re.S)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


class ProtocolViolation(Exception):
    """The server broke SMTP's framing (an unexpected, extra or malformed reply)."""


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def message(self) -> str:
        return "\n".join(self.lines)

    @property
    def text(self) -> str:
        return one_line(self.code, self.message)


class _SmtpProtocol(asyncio.Protocol):
    """Bytes in, whole replies out, with strict framing.

    The connection is *expecting* from the moment it opens (the greeting) and from each
    :meth:`expect_reply` until that one reply is complete; otherwise it is *idle*. This is
    the one place that judges unsolicited bytes: any byte that arrives while the connection
    is idle (a reply to nothing, a second reply to one command, a stray line between two
    messages), and any line that is not an SMTP reply, is a violation. A violation aborts
    the transport at once (RST, nothing buffered is flushed), fails the waiting command
    with :class:`ProtocolViolation`, and, when nothing was waiting, is reported through
    ``on_idle_violation`` so the owner need not wait for its next command to learn it.
    Writing uses the transport with a zero high-water mark, so :meth:`drain` returns only
    once every byte has left asyncio for the kernel.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._code: int | None = None
        self._waiter: asyncio.Future[Reply] | None = None
        self._expecting = True  # the greeting comes unasked
        self._early: Reply | None = None  # the greeting, if it came before anyone asked for it
        self.violation: str | None = None
        self.on_idle_violation: Callable[[str], None] | None = None
        self.lost: BaseException | None = None
        self.closed = False
        self._aborted = False
        self.paused = False  # asyncio holds written bytes the kernel has not taken yet
        self._writable = asyncio.Event()
        self._writable.set()

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=0)

    def connection_lost(self, exc: Exception | None) -> None:
        # ``paused`` keeps its value: True means bytes were still waiting in asyncio's
        # buffer when the connection died, and were discarded (never reached the kernel).
        self.closed = True
        self.lost = exc or ConnectionResetError("the server closed the connection")
        self._writable.set()
        self._fail(self.lost)

    def eof_received(self) -> bool | None:
        self.lost = ConnectionResetError("the server closed the connection")
        self._fail(self.lost)
        return None  # close the transport

    def pause_writing(self) -> None:
        self.paused = True
        self._writable.clear()

    def resume_writing(self) -> None:
        self.paused = False
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        if self.violation is not None:
            return
        self._buffer.extend(data)
        while self._buffer and self.violation is None:
            if not self._expecting:
                line = bytes(self._buffer).split(b"\n", 1)[0].rstrip(b"\r")
                self._violate(f"a reply nobody asked for: {_shown(line)}")
                return
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_REPLY_LINE:
                    self._violate("a reply line longer than 4096 bytes")
                return
            raw = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            self._line(raw.rstrip(b"\r\n"))

    # -- parsing

    def _line(self, raw: bytes) -> None:
        match = _REPLY_LINE.match(raw) if len(raw) <= MAX_REPLY_LINE else None
        if match is None and re.fullmatch(rb"[2-5][0-9][0-9]", raw):
            match = _REPLY_LINE.match(raw + b" ")
        if match is None:
            self._violate(f"not an SMTP reply line: {_shown(raw)}")
            return
        code = int(match.group(1))
        if self._code is not None and code != self._code:
            self._violate(f"a multi-line reply changed its code from {self._code} to {code}")
            return
        self._code = code
        self._lines.append(match.group(3).decode("utf-8", "replace").strip())
        if len(self._lines) > MAX_REPLY_LINES:
            self._violate(f"a reply of more than {MAX_REPLY_LINES} lines")
            return
        if match.group(2) == b"-":
            return
        reply = Reply(code, tuple(self._lines))
        self._code, self._lines = None, []
        self._expecting = False
        waiter = self._waiter
        if waiter is None:  # the greeting, before the session asked for it
            self._early = reply
        elif waiter.done():  # its command gave up waiting (timed out): the session is over
            self._violate(f"a reply after its command gave up: {reply.text}")
        else:
            waiter.set_result(reply)

    def _violate(self, what: str) -> None:
        """The server broke the framing: abort at once and tell whoever needs to know."""
        idle = self._waiter is None or self._waiter.done()
        if self.violation is None:
            self.violation = what
        self._writable.set()
        self.abort()
        self._fail(ProtocolViolation(self.violation))
        if idle and self.on_idle_violation is not None:
            self.on_idle_violation(self.violation)

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
            waiter.exception()  # retrieved: a dropped connection must not log "never retrieved"

    def abort(self) -> None:
        """End the connection at once: nothing buffered is sent (RST, no QUIT, no flush)."""
        transport = self.transport
        if transport is None or self._aborted:
            return
        self._aborted = True
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    # -- what the session uses

    def expect_reply(self) -> asyncio.Future[Reply]:
        """Arm for the reply to the command about to be written."""
        if self.violation is not None:
            raise ProtocolViolation(self.violation)
        if self.lost is not None:
            raise self.lost
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        early, self._early = self._early, None
        if early is not None:
            self._waiter.set_result(early)
        else:
            self._expecting = True
        return self._waiter

    def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait until every written byte left asyncio's buffer for the kernel. Raises the
        connection's error, or ProtocolViolation, if that happens first."""
        while self.paused:
            if self.violation is not None:
                raise ProtocolViolation(self.violation)
            if self.lost is not None:
                raise self.lost
            await self._writable.wait()
        if self.violation is not None:
            raise ProtocolViolation(self.violation)

    def unsent(self) -> bool:
        """True while written bytes wait in asyncio's buffer: they have not reached the
        kernel, and dropping the connection discards them."""
        return self.paused


def _shown(raw: bytes) -> str:
    text = raw[:80].decode("utf-8", "replace")
    return repr(_UNSAFE.sub("?", text))


# ---------------------------------------------------------------------------
# The connection


class SmtpConnection:
    """One SMTP session, reused for many messages (one at a time), with a strict client.

    Every command expects one reply of one class (MAIL and RCPT 2xx, DATA 354 only, the
    end of the message 2xx/4xx/5xx). A violation of the protocol (an extra line, a
    malformed line, a reply to nothing, a 2xx to DATA) ends the connection at once with
    ``transport.abort()``, never QUIT or a graceful close (either would flush buffered
    bytes, possibly the rest of a message and its final dot), and the outcome follows the
    phase: before any body byte was written, nothing was sent; once the final dot may have
    reached the kernel, the outcome is unknown (a possible duplicate). Such a result has
    ``kind="protocol"``: the dispatcher stops the run instead of burning an attempt per
    letter on a broken or hostile server.
    """

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._proto: _SmtpProtocol | None = None
        self.extensions: dict[str, str] = {}
        self.dsn = False
        self.smtputf8 = False
        self._watcher: Callable[[TransportError], None] | None = None

    @property
    def connected(self) -> bool:
        proto = self._proto
        return proto is not None and not proto.closed and proto.violation is None

    def watch(self, callback: Callable[[TransportError], None]) -> None:
        self._watcher = callback
        if self._proto is not None:
            self._proto.on_idle_violation = self._idle_violation

    def _idle_violation(self, what: str) -> None:
        if self._watcher is not None:
            self._watcher(self._violated_between(what))

    def _violated_between(self, what: str) -> TransportError:
        return TransportError(
            f"{self.config.where}: the server broke the SMTP protocol while no command was waiting ({what}); "
            "the connection was dropped",
            hint="check [smtp] host and port, or ask the server's operator; letters not yet sent were kept "
            "for the next run",
        )

    def _tls_context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=self.config.ca_file)
        except (OSError, ssl.SSLError) as err:
            raise TransportError(
                f"[smtp] ca_file {self.config.ca_file}: cannot load ({err})",
                hint="point ca_file at the PEM certificate of your server's CA",
            ) from None

    # -- low level

    async def _command(self, line: str | None, *, timeout: float, encoding: str = "ascii") -> Reply:
        """Write one command (or nothing, for the greeting) and read its one reply."""
        proto = self._proto
        if proto is None:
            raise ConnectionResetError("not connected")
        waiter = proto.expect_reply()
        if line is not None:
            if _UNSAFE.search(line):
                raise ValueError(f"refusing to send a command with a control character: {line[:40]!r}")
            proto.write(line.encode(encoding) + b"\r\n")
        async with asyncio.timeout(timeout):
            return await waiter

    def _drop(self) -> None:
        """End the connection at once: nothing buffered is sent (RST, no QUIT, no flush)."""
        proto, self._proto = self._proto, None
        if proto is not None:
            proto.on_idle_violation = None
            proto.abort()

    async def _ehlo(self) -> None:
        cfg = self.config
        reply = await self._command(f"EHLO {cfg.helo_name}", timeout=cfg.timeout)
        if reply.code == 250:
            self.extensions = {}
            for line in reply.lines[1:]:
                name, _, params = line.partition(" ")
                if "=" in name and name.upper().startswith("AUTH="):  # old servers: AUTH=LOGIN
                    name, params = "AUTH", name[5:] + " " + params
                self.extensions[name.upper()] = params.strip()
            return
        if reply.code >= 500:
            reply = await self._command(f"HELO {cfg.helo_name}", timeout=cfg.timeout)
            if reply.code == 250:
                self.extensions = {}
                return
        raise _ReplyError(reply)

    async def _starttls(self) -> None:
        cfg = self.config
        if "STARTTLS" not in self.extensions:
            raise TransportError(
                f"{cfg.where}: the server does not offer STARTTLS",
                hint='refusing to send in clear text; use security = "tls" if the server expects TLS from the start',
            )
        reply = await self._command("STARTTLS", timeout=cfg.timeout)
        if reply.code != 220:
            raise _ReplyError(reply)
        proto = self._proto
        assert proto is not None and proto.transport is not None
        loop = asyncio.get_running_loop()
        transport = await asyncio.wait_for(
            loop.start_tls(proto.transport, proto, self._tls_context(), server_hostname=cfg.host),
            timeout=cfg.timeout,
        )
        if transport is None:
            raise ConnectionResetError("the connection closed during the TLS handshake")
        proto.transport = transport
        transport.set_write_buffer_limits(high=0)
        await self._ehlo()

    async def _login(self) -> None:
        cfg = self.config
        assert cfg.username is not None
        if cfg.password is None:
            raise TransportError(f"{cfg.where}: a password is needed for {cfg.username}")
        mechanisms = self.extensions.get("AUTH", "").upper().split()
        if "PLAIN" in mechanisms or not mechanisms:
            token = base64.b64encode(f"\0{cfg.username}\0{cfg.password}".encode()).decode("ascii")
            reply = await self._command(f"AUTH PLAIN {token}", timeout=cfg.timeout)
        elif "LOGIN" in mechanisms:
            reply = await self._command("AUTH LOGIN", timeout=cfg.timeout)
            for value in (cfg.username, cfg.password):
                if reply.code != 334:
                    break
                reply = await self._command(base64.b64encode(value.encode()).decode("ascii"), timeout=cfg.timeout)
        else:
            raise TransportError(
                f"{cfg.where}: the server offers no login method we use (AUTH {' '.join(mechanisms)})",
                hint="campaign logs in with AUTH PLAIN or LOGIN, over TLS",
            )
        if reply.code != 235:
            raise TransportError(
                f"{cfg.where}: authentication failed for {cfg.username}: {reply.text}",
                hint="check [smtp] username and CAMPAIGN_SMTP_PASSWORD (or `campaign smtp login`); "
                "no message was touched",
            )

    # -- the session

    async def open(self) -> None:
        """Connect, secure, greet and log in. Raises TransportError or ServerUnavailableError."""
        cfg = self.config
        if self._proto is not None:
            await self.close()
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if cfg.security == "tls" else None
        try:
            try:
                async with asyncio.timeout(cfg.timeout):
                    _, proto = await loop.create_connection(
                        _SmtpProtocol, cfg.host, cfg.port, ssl=tls, server_hostname=cfg.host if tls else None
                    )
            except TimeoutError:
                raise ServerUnavailableError(f"{cfg.where}: timed out while connecting") from None
            except ssl.SSLError as err:
                raise _tls_failed(cfg, err) from None
            except OSError as err:
                raise ServerUnavailableError(
                    f"{cfg.where}: cannot connect: {err.strerror or err}",
                    hint="check [smtp] host and port, and the network; nothing was sent",
                ) from None
            self._proto = proto
            greeting = await self._command(None, timeout=cfg.timeout)
            if greeting.code != 220:
                if 400 <= greeting.code < 500:
                    raise ServerUnavailableError(
                        f"{cfg.where} is not accepting mail now: {greeting.text}",
                        hint="nothing was sent; run `campaign send` again later, or use --wait",
                    )
                raise TransportError(f"{cfg.where} refused the connection: {greeting.text}")
            await self._ehlo()
            if cfg.security == "starttls":
                await self._starttls()
            if cfg.username:
                await self._login()
        except _ReplyError as err:
            self._drop()
            reply = err.reply
            if 400 <= reply.code < 500:
                raise ServerUnavailableError(f"{cfg.where}: {reply.text}", hint="try again later") from None
            raise TransportError(f"{cfg.where}: {reply.text}") from None
        except ProtocolViolation as err:
            self._drop()
            raise TransportError(
                f"{cfg.where}: the server broke the SMTP protocol while connecting ({err})",
                hint="check [smtp] host and port: is this an SMTP server? nothing was sent",
            ) from None
        except (ssl.SSLError, ssl.CertificateError) as err:
            self._drop()
            raise _tls_failed(cfg, err) from None
        except TimeoutError:
            self._drop()
            raise ServerUnavailableError(f"{cfg.where}: timed out while connecting (no reply)") from None
        except OSError as err:
            self._drop()
            if isinstance(err.__cause__, ssl.SSLError):
                raise _tls_failed(cfg, err.__cause__) from None
            raise ServerUnavailableError(f"{cfg.where}: cannot connect: {_reason(err)}") from None
        except BaseException:
            self._drop()
            raise
        self.dsn = "DSN" in self.extensions
        self.smtputf8 = "SMTPUTF8" in self.extensions
        if self._watcher is not None and self._proto is not None:
            self._proto.on_idle_violation = self._idle_violation

    def abort(self) -> None:
        """Drop the connection at once, without QUIT (a second Ctrl-C)."""
        self._drop()

    async def close(self) -> None:
        """QUIT and close, between messages only (never with a message half written)."""
        proto = self._proto
        if proto is None:
            return
        if not proto.closed and proto.violation is None and not proto.unsent():
            with contextlib.suppress(Exception):
                await self._command("QUIT", timeout=5)
        self._drop()

    async def _rset(self) -> None:
        try:
            reply = await self._command("RSET", timeout=self.config.timeout)
            if reply.code != 250:
                self._drop()
        except (ProtocolViolation, OSError, TimeoutError):
            self._drop()

    async def send(self, envelope: Envelope, wire: bytes) -> SendResult:
        """One mail transaction. Never raises for message-level problems. A protocol
        violation's reply names the server: it becomes the run's one error line."""
        if self._proto is not None and self._proto.violation is not None:
            # Broken while idle (a stray line after the last message, say): never a silent reconnect.
            error = self._violated_between(self._proto.violation)
            self._drop()
            return SendResult(kind="protocol", phase="mail", reply=f"{error.message}; nothing of this letter was sent")
        result = await self._transaction(envelope, wire)
        where = self.config.where
        if result.kind == "protocol" and not (result.reply or "").startswith(where):
            result = dataclasses.replace(result, reply=f"{where}: {result.reply or 'protocol violation'}")
        return result

    async def _transaction(self, envelope: Envelope, wire: bytes) -> SendResult:
        cfg = self.config
        dsn = self.dsn
        if not self.connected:
            self._drop()
            return SendResult(kind="reconnect", phase="mail", reply="not connected")
        if envelope.smtputf8 and not self.smtputf8:
            return SendResult(
                kind="permanent",
                phase="mail",
                reply=f"the server does not offer SMTPUTF8, which the address {envelope.rcpt} needs",
            )
        data = prepare_data(wire)
        mail = f"MAIL FROM:<{envelope.mail_from}>"
        rcpt = f"RCPT TO:<{envelope.rcpt}>"
        if "SIZE" in self.extensions:
            mail += f" SIZE={len(data) - 3}"
        if envelope.smtputf8:
            mail += " SMTPUTF8"
        if dsn:
            mail += f" RET=HDRS ENVID={xtext(envelope.envid)}"
            rcpt += f" NOTIFY=SUCCESS,FAILURE,DELAY ORCPT={orcpt(envelope.rcpt)}"
        encoding = "utf-8" if envelope.smtputf8 else "ascii"
        phase = "mail"
        try:
            # MAIL FROM: a connection that died while idle means a reconnect, nothing sent.
            try:
                reply = await self._command(mail, timeout=cfg.timeout, encoding=encoding)
            except (OSError, ConnectionError) as err:
                self._drop()
                return SendResult(kind="reconnect", phase="mail", reply=f"connection lost: {_reason(err)}")
            if not 200 <= reply.code < 300:
                return await self._refused(reply, "mail", dsn)
            phase = "rcpt"
            reply = await self._command(rcpt, timeout=cfg.timeout, encoding=encoding)
            if not 200 <= reply.code < 300:
                return await self._refused(reply, "rcpt", dsn)
            phase = "data"
            reply = await self._command("DATA", timeout=cfg.timeout)
            if reply.code != 354:
                if 200 <= reply.code < 300:
                    self._drop()
                    return SendResult(
                        kind="protocol",
                        phase="data",
                        code=reply.code,
                        reply=f"the server answered DATA with {reply.text} instead of 354; nothing was sent",
                        dsn_requested=dsn,
                    )
                return await self._refused(reply, "data", dsn)
        except ProtocolViolation as err:
            self._drop()
            return SendResult(
                kind="protocol",
                phase=phase,
                reply=f"the server broke the SMTP protocol ({err}); nothing was sent",
                dsn_requested=dsn,
            )
        except (OSError, TimeoutError, ValueError) as err:
            self._drop()
            return SendResult(
                kind="temporary", phase=phase, reply=f"connection lost: {_reason(err)}", dsn_requested=dsn
            )
        return await self._body(data, dsn)

    async def _body(self, data: bytes, dsn: bool) -> SendResult:
        """Write the message and its final dot, then read the one reply."""
        cfg = self.config
        proto = self._proto
        assert proto is not None
        try:
            # Armed before writing: a server may answer (e.g. 552) before the last byte is drained.
            waiter = proto.expect_reply()
            proto.write(data)
        except (ProtocolViolation, OSError) as err:
            self._drop()
            return SendResult(
                kind="protocol" if isinstance(err, ProtocolViolation) else "temporary",
                phase="data",
                reply=f"connection lost before the message: {_reason(err)}",
                dsn_requested=dsn,
            )
        try:
            async with asyncio.timeout(cfg.data_timeout):
                await proto.drain()
        except (ProtocolViolation, OSError, TimeoutError) as err:
            # The final dot is the last byte written: while anything is still in asyncio's
            # buffer, the dot never left, and dropping the connection discards it.
            unsent = proto.unsent()
            self._drop()
            what = f"timed out after {cfg.data_timeout:g}s" if isinstance(err, TimeoutError) else _reason(err)
            if unsent:
                kind: ResultKind = "protocol" if isinstance(err, ProtocolViolation) else "temporary"
                return SendResult(
                    kind=kind,
                    phase="data",
                    reply=f"connection lost while sending the message ({what}); its end was never sent",
                    dsn_requested=dsn,
                )
            return SendResult(
                kind="protocol" if isinstance(err, ProtocolViolation) else "unknown",
                phase="end",
                reply=f"connection lost after the end of the message: {what}",
                dsn_requested=dsn,
            )
        try:
            async with asyncio.timeout(cfg.data_timeout):
                reply = await waiter
        except TimeoutError:
            self._drop()
            return SendResult(
                kind="unknown",
                phase="end",
                dsn_requested=dsn,
                reply=f"no reply within {cfg.data_timeout:g}s after the end of the message",
            )
        except ProtocolViolation as err:
            self._drop()
            return SendResult(
                kind="protocol",
                phase="end",
                dsn_requested=dsn,
                reply=f"the server broke the SMTP protocol after the end of the message ({err})",
            )
        except OSError as err:
            self._drop()
            return SendResult(
                kind="unknown",
                phase="end",
                dsn_requested=dsn,
                reply=f"connection lost after the end of the message: {_reason(err)}",
            )
        result = _with(classify(reply.code, reply.message, "end"), dsn)
        if result.kind == "sent":
            return SendResult(
                kind="sent",
                phase="end",
                code=result.code,
                enhanced=result.enhanced,
                reply=result.reply,
                remote_id=remote_queue_id(reply.message),
                dsn_requested=dsn,
            )
        if reply.code == 421:
            self._drop()
        else:
            await self._rset()
        return result

    async def _refused(self, reply: Reply, phase: str, dsn: bool) -> SendResult:
        if reply.code == 421:  # the server is closing the connection
            self._drop()
        else:
            await self._rset()
        return _with(classify(reply.code, reply.message, phase), dsn)


class _ReplyError(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


def _tls_failed(cfg: SmtpConfig, err: BaseException) -> TransportError:
    return TransportError(
        f"{cfg.where}: TLS failed: {getattr(err, 'verify_message', None) or err}",
        hint="if the server uses a private CA, set [smtp] ca_file to its certificate",
    )


def _with(result: SendResult, dsn: bool) -> SendResult:
    return SendResult(
        kind=result.kind,
        phase=result.phase,
        code=result.code,
        enhanced=result.enhanced,
        reply=result.reply,
        remote_id=result.remote_id,
        dsn_requested=dsn,
    )


def _reason(err: BaseException) -> str:
    text = str(err).strip()
    cause = err.__cause__ or err.__context__
    if not text and cause is not None:
        text = str(cause).strip()
    return text or type(err).__name__


class NullConnection:
    """Accepts everything instantly: used by `campaign plan` to simulate a run."""

    dsn = False

    def __init__(self) -> None:
        self._open = False

    @property
    def connected(self) -> bool:
        return self._open

    async def open(self) -> None:
        self._open = True

    async def send(self, envelope: Envelope, wire: bytes) -> SendResult:
        return SendResult(kind="sent", phase="end", code=250, reply="250 simulated")

    async def close(self) -> None:
        self._open = False

    def abort(self) -> None:
        self._open = False

    def watch(self, callback: Callable[[TransportError], None]) -> None:
        pass  # never breaks the protocol


# ---------------------------------------------------------------------------
# DKIM (dkimpy)

DKIM_HEADERS = [
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"content-type",
    b"mime-version",
    b"content-language",
    b"in-reply-to",
    b"references",
]


def dkim_signature(message: bytes, *, selector: str, domain: str, private_key: bytes) -> bytes:
    """The ``DKIM-Signature:`` header line(s) for the exact bytes ``message`` (relaxed/relaxed).

    Raises TransportError when the key cannot be used.
    """
    import dkim

    try:
        header = dkim.sign(
            message,
            selector.encode("ascii"),
            domain.encode("idna"),
            private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[h for h in DKIM_HEADERS if _has_header(message, h)],
        )
    except (dkim.DKIMException, ValueError, TypeError) as err:
        raise TransportError(f"DKIM signing failed: {err}", hint="check [dkim] key_file, selector and domain") from None
    return bytes(header)


def _has_header(message: bytes, name: bytes) -> bool:
    head = message.split(b"\r\n\r\n", 1)[0].lower()
    return head.startswith(name + b":") or (b"\r\n" + name + b":") in head


def dkim_keygen(bits: int = 2048) -> tuple[bytes, str]:
    """A new RSA key for DKIM: (private key PEM, public key base64 for the DNS TXT record)."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(public).decode("ascii")


def dkim_verify(message: bytes, dns: Callable[[bytes], bytes | None]) -> bool:
    """Check a message's DKIM signature with ``dns`` answering TXT lookups (tests, offline)."""
    import dkim

    try:
        return bool(dkim.verify(message, dnsfunc=lambda name, timeout=5: dns(name)))
    except dkim.DKIMException:
        return False
