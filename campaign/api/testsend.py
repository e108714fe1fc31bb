"""`campaign send --test-to`: a copy of what institutions would get, to the organiser.

A test copy is rendered like the real letter (or taken from the queue), then gets its own
Message-ID, envelope id and return path, so no delivery report or reply to it can ever
match the real letter. It is logged (``test_sent``, outside every campaign, so evidence
bundles leave it out), counts against no cap, and changes no letter.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

from campaign import registry as registry_mod
from campaign.api import load_registry, now_ms, open_store, pick_contact, smtp_config
from campaign.chain import sha256_hex
from campaign.config import Workspace
from campaign.errors import SelectionError, UsageError
from campaign.models import Message
from campaign.store import MessageFilter

MAX_WITHOUT_TO = 10


@dataclass(frozen=True)
class TestSendRequest:
    to_address: str
    campaign: str | None = None
    recipients: tuple[str, ...] = ()
    lang: str | None = None


@dataclass
class TestCopy:
    institution: str
    letter: str
    lang: str
    subject: str
    result: str  # the server's reply, or what went wrong
    sent: bool


@dataclass
class TestSendResult:
    copies: list[TestCopy] = field(default_factory=list)


def test_send(ws: Workspace, request: TestSendRequest) -> TestSendResult:
    """Send one test copy per chosen institution to ``request.to_address``."""
    from campaign import outbox
    from campaign.dispatch import send_direct
    from campaign.models import normalize_address
    from campaign.pacing import ms_to_dt
    from campaign.render import Renderer, date_header, message_bytes, new_envid, new_message_id, test_copy
    from campaign.transport import Envelope, SmtpConnection

    try:
        to_address = normalize_address(request.to_address)
    except ValueError as err:
        raise UsageError(f"--test-to {request.to_address!r}: {err}") from None
    with open_store(ws, create=False) as store:
        letters = store.messages(MessageFilter(campaign=request.campaign))
        chosen: dict[tuple[str, str], Message] = {}
        for m in letters:
            if request.recipients and m.recipient not in request.recipients:
                continue
            chosen.setdefault((m.campaign, m.recipient), m)
        if not chosen:
            raise SelectionError(
                "no queued letter matches" + (f" --to {', '.join(request.recipients)}" if request.recipients else ""),
                hint="queue the letter first (`campaign queue LETTER --to ID`), then test it",
            )
        if len(chosen) > MAX_WITHOUT_TO and not request.recipients:
            raise UsageError(
                f"that would send {len(chosen)} test copies to {to_address}; choose institutions with --to ID"
            )
        bodies = {key: store.wire_bytes(m.id)[1] for key, m in chosen.items()}
    sender = ws.settings.sender
    renderer: Any = None
    registry: Any = None
    templates: Any = None
    local, _, domain = ws.settings.return_path.rpartition("@")
    items = []
    shown = []
    for key, m in chosen.items():
        body = bodies[key]
        lang, subject = m.lang, m.subject
        if request.lang:
            registry = registry or load_registry(ws)
            templates = templates or registry_mod.load_letters(ws.letters_dir)
            renderer = renderer or Renderer(ws.letters_dir)
            recipient = registry_mod.select_recipients(registry, ids=[m.recipient])[0]
            contact = pick_contact(recipient, m.email)
            if contact is None:
                continue
            msg, rendered = outbox.build_one(
                renderer,
                registry_mod.get_letter(templates, m.letter),
                outbox.Target(recipient, contact),
                sender,
                message_id=m.message_id,
                lang=request.lang,
                today=ms_to_dt(now_ms()).date(),
            )
            body, lang, subject = message_bytes(msg), rendered.lang, rendered.subject
        copy = test_copy(body, to_address=to_address, message_id=new_message_id(sender.domain), institution=m.recipient)
        wire = date_header(ms_to_dt(now_ms())) + copy
        envelope = Envelope(
            mail_from=f"{local}+test-{secrets.token_hex(6)}@{domain}", rcpt=to_address, envid=new_envid()
        )
        items.append((envelope, wire))
        shown.append((m, lang, subject, sha256_hex(wire)))
    config = smtp_config(ws)
    results = asyncio.run(send_direct(lambda: SmtpConnection(config), items))
    out = TestSendResult()
    with open_store(ws) as store:
        for (m, lang, subject, sha), result in zip(shown, results, strict=True):
            sent = result.kind == "sent"
            store.append_event(
                now_ms(),
                "test_sent",
                data={
                    "campaign": m.campaign,
                    "institution": m.recipient,
                    "letter": m.letter,
                    "lang": lang,
                    "to": to_address,
                    "sha256": sha,
                    "reply": result.reply,
                    "delivered_to_test_address": sent,
                },
            )
            out.copies.append(TestCopy(m.recipient, m.letter, lang, subject, result.line, sent))
    return out
