"""The loopback Postfix and Dovecot themselves (scripts/loopback-mta.sh, loopback-imap.sh).

Standard library only (smtplib, imaplib, email): these tests check that the real
servers behave as the rest of the suite expects: DSN success, unknown-user and
failed-domain bounces, DELAY then expiry reports, and the DSNs over IMAPS/STARTTLS.
Every test uses its own ENVID and Message-ID and only looks at its own mail, so the
tests are independent of each other and of mail already in the Maildirs.
"""

from __future__ import annotations

import imaplib
import re
import smtplib
import ssl
import time
import uuid
from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from tests.support.mailserver import (
    DEFER_DOMAIN,
    FAIL_DOMAIN,
    KNOWN_USER,
    RETURN_PATH,
    UNKNOWN_USER,
    MtaInfo,
    containing,
    maildir_messages,
    require_imap,
    require_mta,
    wait_for_dsns,
    wait_for_messages,
)

DSN_TIMEOUT = 15.0  # a DSN normally arrives in well under a second


def _message(to: str, envid: str) -> tuple[EmailMessage, str]:
    msg = EmailMessage()
    msg["From"] = f"Campaign test <{RETURN_PATH}>"
    msg["To"] = to
    msg["Subject"] = f"loopback test {envid}"
    msg_id = make_msgid(idstring=envid, domain="campaign.example")
    msg["Message-ID"] = msg_id
    msg.set_content(f"Loopback service test, ENVID {envid}.\n")
    return msg, msg_id


def _send(server: MtaInfo, to: str) -> tuple[str, str]:
    """Send one message with full DSN parameters; return (ENVID, Message-ID).

    Asserts that every recipient was accepted at SMTP time (250).
    """
    envid = uuid.uuid4().hex  # 32 hex digits, like "0123456789abcdef0123456789abcdef"
    msg, msg_id = _message(to, envid)
    with smtplib.SMTP(server.host, server.port, timeout=30) as smtp:
        smtp.ehlo("tests.campaign.example")
        assert smtp.has_extn("dsn"), "the loopback Postfix must advertise DSN"
        assert smtp.has_extn("smtputf8"), "the loopback Postfix must advertise SMTPUTF8"
        refused = smtp.sendmail(
            RETURN_PATH,
            [to],
            msg.as_bytes(),
            mail_options=["RET=HDRS", f"ENVID={envid}"],
            rcpt_options=["NOTIFY=SUCCESS,FAILURE,DELAY", f"ORCPT=rfc822;{to}"],
        )
    assert refused == {}, f"refused at SMTP time: {refused}"
    return envid, msg_id


@pytest.mark.mta
def test_delivered_to_maildir_with_success_dsn() -> None:
    server = require_mta()
    envid, msg_id = _send(server, KNOWN_USER)

    delivered = wait_for_messages(server.maildir(KNOWN_USER), 1, DSN_TIMEOUT, match=containing(msg_id))
    assert b"Return-Path: <receipts@campaign.example>" in delivered[0].read_bytes()

    (dsn,) = wait_for_dsns(server.return_path_maildir, envid, DSN_TIMEOUT)
    assert dsn.message.get_content_type() == "multipart/report"
    assert dsn.envelope_id == envid
    (rcpt,) = dsn.recipients
    assert rcpt.action == "delivered"
    assert rcpt.status.startswith("2.")
    assert rcpt.final_recipient == KNOWN_USER
    assert rcpt.original_recipient == KNOWN_USER
    # RET=HDRS: the original headers come back, not the body
    returned = [p for p in dsn.message.walk() if p.get_content_type() == "text/rfc822-headers"]
    assert returned and msg_id in returned[0].get_payload()


@pytest.mark.mta
def test_unknown_user_is_accepted_then_bounced_5_1_1() -> None:
    server = require_mta()
    envid, _ = _send(server, UNKNOWN_USER)  # 250 at RCPT, asserted in _send

    (dsn,) = wait_for_dsns(server.return_path_maildir, envid, DSN_TIMEOUT)
    (rcpt,) = dsn.recipients
    assert rcpt.action == "failed"
    assert rcpt.status == "5.1.1"
    assert rcpt.final_recipient == UNKNOWN_USER


@pytest.mark.mta
def test_failing_domain_is_bounced_5_1_2() -> None:
    server = require_mta()
    to = f"x@{FAIL_DOMAIN}"
    envid, _ = _send(server, to)

    (dsn,) = wait_for_dsns(server.return_path_maildir, envid, DSN_TIMEOUT)
    (rcpt,) = dsn.recipients
    assert rcpt.action == "failed"
    assert rcpt.status == "5.1.2"
    assert rcpt.final_recipient == to
    assert rcpt.diagnostic is not None and "simulated" in rcpt.diagnostic


@pytest.mark.mta
@pytest.mark.slow
def test_deferred_domain_reports_delay_then_expiry() -> None:
    """DELAY report within seconds, FAILURE (expired) after maximal_queue_lifetime (20 s)."""
    server = require_mta()
    to = f"x@{DEFER_DOMAIN}"
    started = time.monotonic()
    envid, _ = _send(server, to)

    (delayed,) = wait_for_dsns(server.return_path_maildir, envid, DSN_TIMEOUT, action="delayed")
    (rcpt,) = delayed.recipients
    assert rcpt.status == "4.4.1"
    assert rcpt.final_recipient == to
    delay_after = time.monotonic() - started

    (failed,) = wait_for_dsns(server.return_path_maildir, envid, 60.0, action="failed")
    (rcpt,) = failed.recipients
    assert rcpt.status == "4.4.1"  # the last temporary reason, now final
    assert rcpt.final_recipient == to
    expired_after = time.monotonic() - started
    assert delay_after < expired_after
    print(f"DELAY report after {delay_after:.1f} s, expiry report after {expired_after:.1f} s")


def _imap_dsn_roundtrip(conn: imaplib.IMAP4, envid: str) -> None:
    """INBOX holds the DSN for ``envid``; move it to Processed and find it there."""
    typ, _ = conn.select("INBOX")
    assert typ == "OK"
    typ, data = conn.uid("SEARCH", "BODY", envid)
    assert typ == "OK"
    uids = data[0].split()
    assert len(uids) == 1, f"expected one DSN for {envid} in INBOX, got {uids}"
    typ, fetched = conn.uid("FETCH", uids[0], "(BODY.PEEK[])")
    assert typ == "OK"
    raw = next(part[1] for part in fetched if isinstance(part, tuple))
    assert b"multipart/report" in raw and b"report-type=delivery-status" in raw
    assert f"Original-Envelope-Id: {envid}".encode() in raw

    typ, data = conn.create("Processed")
    assert typ == "OK" or b"ALREADYEXISTS" in data[0], data
    typ, _ = conn.uid("MOVE", uids[0], "Processed")
    assert typ == "OK"
    typ, data = conn.uid("SEARCH", "BODY", envid)
    assert typ == "OK" and data[0].split() == []
    typ, _ = conn.select("Processed")
    assert typ == "OK"
    typ, data = conn.uid("SEARCH", "BODY", envid)
    assert typ == "OK" and len(data[0].split()) == 1


@pytest.mark.mta
@pytest.mark.imap
def test_imaps_with_verified_certificate_sees_dsns() -> None:
    server = require_mta()
    box = require_imap()
    envid, _ = _send(server, KNOWN_USER)
    wait_for_dsns(server.return_path_maildir, envid, DSN_TIMEOUT)

    with imaplib.IMAP4_SSL(box.host, box.tls_port, ssl_context=box.ssl_context(), timeout=30) as conn:
        conn.login(box.user, box.password)
        _imap_dsn_roundtrip(conn, envid)
        conn.close()
    # moved away from INBOX on disk too
    assert maildir_messages(server.return_path_maildir, containing(envid)) == []


@pytest.mark.mta
@pytest.mark.imap
def test_imap_starttls_sees_dsns() -> None:
    server = require_mta()
    box = require_imap()
    envid, _ = _send(server, f"y@{FAIL_DOMAIN}")
    wait_for_dsns(server.return_path_maildir, envid, DSN_TIMEOUT)

    with imaplib.IMAP4(box.host, box.port, timeout=30) as conn:
        assert "STARTTLS" in conn.capabilities
        typ, _ = conn.starttls(ssl_context=box.ssl_context())
        assert typ == "OK"
        assert "STARTTLS" not in conn.capabilities  # re-read after TLS
        conn.login(box.user, box.password)
        _imap_dsn_roundtrip(conn, envid)
        conn.close()


@pytest.mark.imap
def test_imap_rejects_wrong_password_and_unknown_ca() -> None:
    box = require_imap()
    with imaplib.IMAP4_SSL(box.host, box.tls_port, ssl_context=box.ssl_context(), timeout=30) as conn:
        with pytest.raises(imaplib.IMAP4.error, match=re.compile("auth", re.I)):
            conn.login(box.user, box.password + "-wrong")
    # the system trust store does not know the throwaway test CA
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(box.host, box.tls_port, ssl_context=ssl.create_default_context(), timeout=30)
