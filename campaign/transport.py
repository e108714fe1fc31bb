"""SMTP with aiosmtplib: one connection, one message per transaction, replies classified.

Contract:
- A connection is opened (greeting, EHLO with the configured name, never this
  machine's, STARTTLS or implicit TLS with certificate verification, AUTH) *before*
  any message is claimed. Problems there raise ``ServerUnavailableError`` (refused,
  4xx greeting: try later) or ``TransportError`` (TLS, authentication, 5xx greeting:
  the run stops and no message changes).
- :meth:`SmtpConnection.send` never raises for a message-level problem: it returns a
  :class:`SendResult` that says what happened and in which phase. A failure before the
  whole message is handed to the kernel is ``temporary`` (nothing was delivered); a
  missing reply after the final dot is ``unknown`` (RFC 5321 4.5.3.2.6: the server
  may have accepted it), which the dispatcher turns into a retry marked as a possible
  duplicate.
- DSNs (RFC 3461) are requested when the server offers ``DSN``: ``RET=HDRS``,
  ``ENVID`` on MAIL FROM, ``NOTIFY=SUCCESS,FAILURE,DELAY`` and an xtext-encoded
  ``ORCPT`` on RCPT TO.
- Exception texts never contain the password: aiosmtplib's do not, and ours are built
  from host, port and the server's reply only.

This module is the only home of aiosmtplib (and of dkimpy: see :func:`dkim_sign`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import aiosmtplib
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from campaign.errors import TransportError

ResultKind = Literal["sent", "temporary", "address", "policy", "permanent", "unknown", "sender", "reconnect"]

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


def prepare_data(wire: bytes) -> bytes:
    """Message bytes as transmitted after DATA: CRLF, dot-stuffed, final dot."""
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(wire)) + b".\r\n"


# ---------------------------------------------------------------------------
# The connection


class SmtpConnection:
    """One SMTP session, reused for many messages (one at a time)."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: aiosmtplib.SMTP | None = None
        self.dsn = False
        self.smtputf8 = False

    @property
    def connected(self) -> bool:
        return self._smtp is not None and self._smtp.is_connected

    def _tls_context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=self.config.ca_file)
        except (OSError, ssl.SSLError) as err:
            raise TransportError(
                f"[smtp] ca_file {self.config.ca_file}: cannot load ({err})",
                hint="point ca_file at the PEM certificate of your server's CA",
            ) from None

    async def open(self) -> None:
        """Connect, secure, greet and log in. Raises TransportError or ServerUnavailableError."""
        cfg = self.config
        if self._smtp is not None:
            await self.close()
        smtp = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            local_hostname=cfg.helo_name,
            timeout=cfg.timeout,
            use_tls=cfg.security == "tls",
            start_tls=cfg.security == "starttls",
            validate_certs=True,
            tls_context=self._tls_context() if cfg.security != "none" else None,
        )
        try:
            await smtp.connect()
            if not smtp.esmtp_extensions:
                await smtp.ehlo()  # aiosmtplib defers EHLO on plain connections; we need the extensions now
            if cfg.username:
                if cfg.password is None:
                    raise TransportError(f"{cfg.where}: a password is needed for {cfg.username}")
                await smtp.login(cfg.username, cfg.password)
        except aiosmtplib.SMTPAuthenticationError as err:
            smtp.close()
            raise TransportError(
                f"{cfg.where}: authentication failed for {cfg.username}: {one_line(err.code, err.message)}",
                hint="check [smtp] username and CAMPAIGN_SMTP_PASSWORD (or `campaign smtp login`); "
                "no message was touched",
            ) from None
        except aiosmtplib.SMTPConnectResponseError as err:
            smtp.close()
            reply = one_line(err.code, err.message)
            if 400 <= err.code < 500:
                raise ServerUnavailableError(
                    f"{cfg.where} is not accepting mail now: {reply}",
                    hint="nothing was sent; run `campaign send` again later, or use --wait",
                ) from None
            raise TransportError(f"{cfg.where} refused the connection: {reply}") from None
        except aiosmtplib.SMTPNotSupported as err:
            smtp.close()
            raise TransportError(
                f"{cfg.where}: {err} (the server does not offer STARTTLS)",
                hint='refusing to send in clear text; use security = "tls" if the server expects TLS from the start',
            ) from None
        except (ssl.SSLError, ssl.CertificateError) as err:
            smtp.close()
            raise TransportError(
                f"{cfg.where}: TLS failed: {getattr(err, 'verify_message', None) or err}",
                hint="if the server uses a private CA, set [smtp] ca_file to its certificate",
            ) from None
        except aiosmtplib.SMTPConnectError as err:
            smtp.close()
            cause = err.__cause__ or err.__context__
            if isinstance(cause, ssl.SSLError):
                raise TransportError(
                    f"{cfg.where}: TLS failed: {getattr(cause, 'verify_message', None) or cause}",
                    hint="if the server uses a private CA, set [smtp] ca_file to its certificate",
                ) from None
            raise ServerUnavailableError(
                f"{cfg.where}: cannot connect: {_reason(err)}",
                hint="check [smtp] host and port, and the network; nothing was sent",
            ) from None
        except aiosmtplib.SMTPResponseException as err:
            smtp.close()
            reply = one_line(err.code, err.message)
            if 400 <= err.code < 500:
                raise ServerUnavailableError(f"{cfg.where}: {reply}", hint="try again later") from None
            raise TransportError(f"{cfg.where}: {reply}") from None
        except (aiosmtplib.SMTPTimeoutError, TimeoutError) as err:
            smtp.close()
            raise ServerUnavailableError(f"{cfg.where}: timed out while connecting ({_reason(err)})") from None
        except (aiosmtplib.SMTPException, OSError) as err:
            smtp.close()
            if "STARTTLS" in str(err):
                raise TransportError(
                    f"{cfg.where}: the server does not offer STARTTLS",
                    hint='refusing to send in clear text; use security = "tls" '
                    "if the server expects TLS from the start",
                ) from None
            cause = err.__cause__ or err.__context__
            if isinstance(err, ssl.SSLError) or isinstance(cause, ssl.SSLError):
                raise TransportError(f"{cfg.where}: TLS failed: {cause or err}") from None
            raise ServerUnavailableError(f"{cfg.where}: cannot connect: {_reason(err)}") from None
        self._smtp = smtp
        self.dsn = smtp.supports_extension("dsn")
        self.smtputf8 = smtp.supports_extension("smtputf8")
        transport = smtp.transport
        if transport is not None and hasattr(transport, "set_write_buffer_limits"):
            # With a zero high-water mark, draining means every byte reached the kernel:
            # that is how a failure in the middle of DATA is told from one after the dot.
            transport.set_write_buffer_limits(high=0)

    def abort(self) -> None:
        """Drop the connection at once, without QUIT (a second Ctrl-C)."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        if smtp.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(smtp.quit(), timeout=5)
        smtp.close()

    async def _rset(self) -> None:
        smtp = self._smtp
        if smtp is None:
            return
        try:
            await smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            await self.close()

    async def send(self, envelope: Envelope, wire: bytes) -> SendResult:
        """One mail transaction. Never raises for message-level problems."""
        smtp = self._smtp
        if smtp is None or not smtp.is_connected:
            return SendResult(kind="reconnect", phase="mail", reply="not connected")
        if envelope.smtputf8 and not self.smtputf8:
            return SendResult(
                kind="permanent",
                phase="mail",
                reply=f"the server does not offer SMTPUTF8, which the address {envelope.rcpt} needs",
            )
        mail_options: list[str] = []
        rcpt_options: list[str] = []
        if smtp.supports_extension("size"):
            mail_options.append(f"SIZE={len(normalize_message_line_endings(wire))}")
        if self.dsn:
            mail_options += ["RET=HDRS", f"ENVID={envelope.envid}"]
            rcpt_options += ["NOTIFY=SUCCESS,FAILURE,DELAY", f"ORCPT={orcpt(envelope.rcpt)}"]
        encoding = "ascii"
        if envelope.smtputf8:
            mail_options.append("SMTPUTF8")
            encoding = "utf-8"
        dsn = self.dsn
        # MAIL FROM: a disconnect here means an idle connection was dropped; reconnect.
        try:
            await smtp.mail(envelope.mail_from, options=mail_options, encoding=encoding)
        except aiosmtplib.SMTPSenderRefused as err:
            await self._rset()
            return _with(classify(err.code, err.message, "mail"), dsn)
        except aiosmtplib.SMTPResponseException as err:
            await self._rset()
            return _with(classify(err.code, err.message, "mail"), dsn)
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as err:
            await self.close()
            return SendResult(kind="reconnect", phase="mail", reply=f"connection lost: {_reason(err)}")
        except (aiosmtplib.SMTPTimeoutError, TimeoutError) as err:
            await self.close()
            return SendResult(kind="temporary", phase="mail", reply=f"timed out: {_reason(err)}", dsn_requested=dsn)
        try:
            await smtp.rcpt(envelope.rcpt, options=rcpt_options, encoding=encoding)
        except aiosmtplib.SMTPResponseException as err:
            await self._rset()
            return _with(classify(err.code, err.message, "rcpt"), dsn)
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError, aiosmtplib.SMTPTimeoutError, TimeoutError) as err:
            await self.close()
            return SendResult(
                kind="temporary", phase="rcpt", reply=f"connection lost: {_reason(err)}", dsn_requested=dsn
            )
        return await self._data(smtp, wire, dsn)

    async def _data(self, smtp: aiosmtplib.SMTP, wire: bytes, dsn: bool) -> SendResult:
        try:
            start = await smtp.execute_command(b"DATA")
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError, aiosmtplib.SMTPTimeoutError, TimeoutError) as err:
            await self.close()
            return SendResult(
                kind="temporary", phase="data", reply=f"connection lost: {_reason(err)}", dsn_requested=dsn
            )
        if start.code != 354:
            await self._rset()
            return _with(classify(start.code, start.message, "data"), dsn)
        protocol = smtp.protocol
        if protocol is None:
            await self.close()
            return SendResult(
                kind="temporary", phase="data", reply="connection lost before the message", dsn_requested=dsn
            )
        # Start reading before writing: a server may answer (e.g. 552) before the last
        # byte is drained, and aiosmtplib drops replies nobody is waiting for.
        reader = asyncio.ensure_future(protocol.read_response(timeout=self.config.data_timeout))
        await asyncio.sleep(0)
        try:
            protocol.write(prepare_data(wire))
            drain = getattr(protocol, "_drain_helper", None)
            if drain is not None:
                await asyncio.wait_for(drain(), timeout=self.config.data_timeout)
        except (TimeoutError, aiosmtplib.SMTPServerDisconnected, ConnectionError, OSError) as err:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            await self.close()
            return SendResult(
                kind="temporary",
                phase="data",
                reply=f"connection lost while sending the message: {_reason(err)}",
                dsn_requested=dsn,
            )
        try:
            reply = await reader
        except aiosmtplib.SMTPReadTimeoutError:
            await self.close()
            return SendResult(
                kind="unknown",
                phase="end",
                dsn_requested=dsn,
                reply=f"no reply within {self.config.data_timeout:g}s after the end of the message",
            )
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as err:
            await self.close()
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
        await self._rset()
        return result


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
