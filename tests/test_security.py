"""Nothing private leaks: secrets, files, metadata, tracking; headers survive any Unicode."""

from __future__ import annotations

import email
import email.policy
import re
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaign.errors import CampaignError
from campaign.models import Contact, Recipient, Sender
from campaign.outbox import Target, render_one
from campaign.registry import load_letters, load_registry
from campaign.render import Renderer
from tests.conftest import DATA, ROOT, run_cli, set_smtp_port
from tests.support.smtp import Script, ScriptedServer

SMTP_SECRET = "smtp-Secret-4b1e-ҷ"
IMAP_SECRET = "imap-Secret-77aa"
KEY_SECRET = "key-passphrase-19c3"
P12_SECRET = "p12-passphrase-8d20"
SECRETS = [SMTP_SECRET, IMAP_SECRET, KEY_SECRET, P12_SECRET]


def test_no_secret_reaches_the_database_files_or_output(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAMPAIGN_SMTP_USERNAME", "letters@campaign.example")
    monkeypatch.setenv("CAMPAIGN_SMTP_PASSWORD", SMTP_SECRET)
    monkeypatch.setenv("CAMPAIGN_IMAP_PASSWORD", IMAP_SECRET)
    monkeypatch.setenv("CAMPAIGN_KEY_PASSPHRASE", KEY_SECRET)
    monkeypatch.setenv("CAMPAIGN_P12_PASSPHRASE", P12_SECRET)
    config = workspace / "campaign.toml"
    config.write_text(
        config.read_text()
        + '\n[receipts.imap]\nhost = "127.0.0.1"\nport = 1\nusername = "receipts@campaign.example"\n'
        + "\n[letters]\nattach_pdf = true\n"
    )
    outputs = []
    with ScriptedServer(Script(), auth=True) as server:
        set_smtp_port(workspace, server.port)
        for args in (
            ["keys", "init"],
            ["keys", "issue", "--name", "Supporter", "-o", str(workspace / "s.p12")],
            ["queue", "peace-agreement", "--all"],
            ["send", "--dry-run"],
            ["send", "--yes"],
            ["receipts", "fetch"],  # fails to connect: the error must not carry the password
            [
                "pdf",
                "export",
                "peace-agreement",
                "--to",
                "ohchr",
                "--signer",
                "S",
                "--key",
                str(workspace / "s.p12"),
                "-o",
                str(workspace / "l.pdf"),
            ],
            ["log", "--events", "--json"],
            ["log", "export", "--campaign", "peace-agreement", "-o", str(workspace / "evidence.zip")],
            ["status"],
            ["workers"],
        ):
            result = run_cli(*args)
            outputs.append(result.output)
            assert "Traceback" not in result.output, args
        assert len(server.accepted) == 5
        sent = [a.data for a in server.accepted]
    found = []
    for secret in SECRETS:
        needle = secret.encode()
        for text in outputs:
            if secret in text:
                found.append(("output", secret))
        for path in workspace.rglob("*"):
            if path.is_file() and needle in path.read_bytes():
                found.append((str(path), secret))
        for data in sent:
            if needle in data:
                found.append(("sent message", secret))
    assert found == [], found


def test_state_files_and_folders_are_private(
    smtp_server: ScriptedServer, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAMPAIGN_KEY_PASSPHRASE", KEY_SECRET)
    assert run_cli("keys", "init").code == 0
    assert run_cli("queue", "peace-agreement", "--all").code == 0
    assert run_cli("send", "--dry-run").code == 0
    assert run_cli("send", "--yes").code == 0
    state = workspace / ".campaign"
    for path in [state, *state.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, path
        elif path.name != ".gitignore":
            assert mode == 0o600, (path, oct(mode))


def test_letters_carry_no_tracking_and_no_machine_details(smtp_server: ScriptedServer, workspace: Path) -> None:
    assert run_cli("queue", "peace-agreement", "--all").code == 0
    assert run_cli("send", "--yes").code == 0
    for item in smtp_server.accepted:
        msg = email.message_from_bytes(item.data, policy=email.policy.default)
        html = msg.get_body(preferencelist=("html",)).get_content()
        assert "<img" not in html.lower()
        assert not re.search(r"""(href|src)\s*=\s*["']?https?://""", html, re.I)
        assert not any(h.lower() in ("x-mailer", "user-agent", "x-originating-ip", "received") for h in msg.keys())
        assert msg["Date"].endswith("+0000") or msg["Date"].endswith("-0000")
        assert msg["Message-ID"].endswith("@campaign.example>")
        assert len(msg["To"].addresses) == 1


# -- property tests ------------------------------------------------------------------------

TEXT = st.text(
    alphabet=st.characters(
        exclude_categories=("Cs",),
        include_characters="ғӣқӯҳҷ\u0627\u0644\u05d0\u0301\u0304\u200f👩🏽‍⚖️ \"'\\<>(),;:@",
    ),
    min_size=1,
    max_size=60,
)
SENDER = Sender(name="Civic Platform", email="letters@campaign.example")


def folded_clean(raw: bytes) -> bool:
    """Only CRLF line ends, no bare CR or LF anywhere."""
    return b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")


@pytest.fixture(scope="module")
def subject_letter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Renderer, dict]:
    folder = tmp_path_factory.mktemp("letters") / "letters" / "t"
    folder.mkdir(parents=True)
    (folder / "en.md.j2").write_text(
        '---\nsubject: "{{ contact.name }}: {{ salutation }}"\n---\n{{ salutation }}\n\n{{ recipient.name }}\n'
    )
    return Renderer(folder.parent), load_letters(folder.parent)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(name=TEXT, salutation=TEXT, institution=TEXT)
def test_any_unicode_either_round_trips_or_is_refused(
    subject_letter: tuple[Renderer, dict], name: str, salutation: str, institution: str
) -> None:
    renderer, letters = subject_letter
    try:
        contact = Contact(email="a@inst.example", name=name, salutation=salutation)
        recipient = Recipient(id="x", name=institution, languages=["en"], contacts=[contact])
    except ValueError as err:  # refused by validation: must say why, in one line
        assert str(err)
        return
    try:
        raw, _, subject, _ = render_one(
            renderer,
            letters["t"],
            Target(recipient, contact),
            SENDER,
            message_id="<p@campaign.example>",
            lang=None,
            today=__import__("datetime").date(2026, 11, 28),
        )
    except CampaignError as err:
        assert "\n" not in err.message
        return
    assert all(b < 128 for b in raw) and folded_clean(raw)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == subject
    assert msg["To"].addresses[0].display_name == contact.name
    assert msg["To"].addresses[0].addr_spec == "a@inst.example"


def test_the_shipped_registry_renders_clean_headers() -> None:
    registry = load_registry(ROOT / "recipients.yaml")
    renderer, letters = Renderer(ROOT / "letters"), load_letters(ROOT / "letters")
    for recipient in registry.recipients:
        for contact in recipient.contacts:
            raw, *_ = render_one(
                renderer,
                letters["peace-agreement"],
                Target(recipient, contact),
                SENDER,
                message_id="<p@campaign.example>",
                lang=None,
                today=__import__("datetime").date(2026, 11, 28),
            )
            assert folded_clean(raw)


def test_test_registry_is_valid() -> None:
    assert load_registry(DATA / "workspace" / "recipients.yaml").recipients
