"""`campaign demo`: the whole job on this machine, with nothing leaving it.

The demo builds a throwaway workspace in ``.campaign/demo/`` (recreated each time) from
the workspace's registry and letters, starts an SMTP server on 127.0.0.1 inside the
program, and queues the shipped letter to every institution with an e-mail address. So
that a newcomer sees every language the letters are written in, it adds to the demo's
copy of the registry one clearly fictional institution per other language of the letter
(Russian, Tajik; ``@demo.example`` addresses, tagged ``demo``). Where WeasyPrint's system
libraries are present it makes throwaway keys and attaches a sealed PDF to one letter
(the Tajik one, when there is one); where they are missing it says what
``scripts/system-deps.sh`` would add. Then it sends, imports the delivery reports the
server simulates (labelled as simulated) and verifies the log. Needs nothing but Python.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaign import registry as registry_mod
from campaign.api import (
    LogQuery,
    QueueRequest,
    SendOutcome,
    SendRequest,
    _prepare_send,
    _run_send,
    _write_private_file,
    import_receipts,
    keys_init,
    log,
    open_store,
    queue,
    verify_log,
)
from campaign.config import Workspace, ensure_private_dir, load_workspace, resolve_root
from campaign.errors import WorkspaceError
from campaign.models import Letter, Message
from campaign.store import MessageFilter
from campaign.transitions import Status

if TYPE_CHECKING:
    from campaign.dispatch import Progress
    from campaign.ledger import Verification

DEMO_LETTER = "peace-agreement"

# One fictional reader per language the shipped letters are written in besides English.
DEMO_READERS: dict[str, dict[str, Any]] = {
    "ru": {
        "id": "demo-reads-russian",
        "name": {
            "en": "Demo institution that reads Russian",
            "ru": "Демонстрационное учреждение (читает по-русски)",
        },
        "tags": ["demo"],
        "languages": ["ru"],
        "fields": {"note": "added by campaign demo; not a real institution"},
        "contacts": [{"email": "letters-ru@demo.example"}],
    },
    "tg": {
        "id": "demo-reads-tajik",
        "name": {
            "en": "Demo institution that reads Tajik",
            "tg": "Муассисаи намоишӣ (бо забони тоҷикӣ)",
            "ru": "Демонстрационное учреждение (читает по-таджикски)",
        },
        "tags": ["demo"],
        "languages": ["tg", "ru"],
        "fields": {"note": "added by campaign demo; not a real institution"},
        "contacts": [{"email": "letters-tg@demo.example"}],
    },
}

SYSTEM_DEPS_NOTE = (
    "no signed PDF in this demo: WeasyPrint's system libraries are missing ({reason}); "
    "`sudo bash scripts/system-deps.sh` adds Pango and HarfBuzz, then `make demo` attaches one"
)


@dataclass
class DemoResult:
    """What the demo did, for the CLI to show."""

    workspace: Path
    mailbox: Path
    reports: Path
    queued: int
    postal_only: int
    outcome: SendOutcome
    messages: list[Message]
    verification: Verification | None = None
    receipts: int = 0
    languages: dict[str, int] = field(default_factory=dict)  # letters sent per language
    added: list[str] = field(default_factory=list)  # demo institutions added to the copy
    signed_pdf: Path | None = None  # a copy of the attached, sealed PDF
    signed_for: str | None = None  # the institution whose letter carries it
    pdf_note: str | None = None  # why there is no signed PDF
    case_letters: int = 0  # letters about the fictional example case
    submission: Path | None = None  # the example case's WGEID form
    drive: Any = None  # the signing drive opened for `campaign serve` (api.signing.DriveInfo)


def pdf_unavailable() -> str | None:
    """Why signed PDFs cannot be made here (WeasyPrint's libraries missing), or None."""
    try:
        from campaign import pdf  # noqa: F401  (loads WeasyPrint, which loads Pango)
    except (OSError, ImportError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return first[:120]
    return None


def run(
    directory: str | os.PathLike[str] | None = None,
    *,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> DemoResult:
    """Queue and send the shipped letter to an SMTP server inside this program.

    Works in ``.campaign/demo/`` (recreated each time) so the real state is untouched."""
    from campaign.localserver import LocalServer, MailboxHandler

    root = resolve_root(directory, os.environ)
    for needed in ("recipients.yaml", "letters"):
        if not (root / needed).exists():
            raise WorkspaceError(
                f"{root}: no {needed} here to build the demo from",
                hint="run `campaign demo` in the repository root or a workspace made by `campaign init`",
            )
    source = load_workspace(root) if (root / "campaign.toml").exists() else None
    demo_dir = root / ".campaign" / "demo"
    if demo_dir.exists():
        shutil.rmtree(demo_dir)
    ensure_private_dir(demo_dir)
    shutil.copy2(root / "recipients.yaml", demo_dir / "recipients.yaml")
    shutil.copytree(root / "letters", demo_dir / "letters")
    mailbox, reports = demo_dir / "mailbox", demo_dir / "reports"
    handler = MailboxHandler(mailbox=mailbox, reports=reports)
    with LocalServer(handler) as server:
        (demo_dir / "campaign.toml").write_text(_demo_config(source, server.port), encoding="utf-8")
        ws = load_workspace(demo_dir, env={})
        letters = registry_mod.load_letters(ws.letters_dir)
        letter_id = DEMO_LETTER if DEMO_LETTER in letters else sorted(letters)[0]
        letter = letters[letter_id]
        added = _add_demo_readers(ws, letter.languages)
        result = DemoResult(demo_dir, mailbox, reports, 0, 0, SendOutcome(None), [], added=added)
        registry = registry_mod.load_registry(ws.registry_path)
        emailed = [r.id for r in registry.recipients if r.contacts]
        signed_for = next((DEMO_READERS[lang]["id"] for lang in ("tg", "ru") if lang in letter.languages), None)
        signed_for = signed_for or (emailed[-1] if emailed else None)
        reason = pdf_unavailable()
        if reason is not None:
            result.pdf_note = SYSTEM_DEPS_NOTE.format(reason=reason)
            signed_for = None
        first = [r.id for r in registry.recipients if r.id != signed_for]
        report = queue(ws, QueueRequest(letter=letter_id, ids=first))
        result.queued = report.count("new")
        result.postal_only = report.count("postal-only")
        if signed_for is not None:
            from campaign.api.signing import DEMO_PASSPHRASE

            # throwaway keys; the same passphrase the demo's signing drive uses (printed on purpose)
            passphrase = DEMO_PASSPHRASE
            keys_init(ws, passphrase)
            sealed = load_workspace(demo_dir, env={}, overrides={"letters.attach_pdf": True})
            extra = queue(sealed, QueueRequest(letter=letter_id, ids=[signed_for], key_passphrase=passphrase))
            result.queued += extra.count("new")
            result.signed_for = signed_for
        result.case_letters, result.submission = _demo_case(ws, letters)
        result.queued += result.case_letters
        if on_start:
            on_start(result.queued)
        from campaign.config import SendLock

        request = SendRequest(etiquette=False)
        setup = _prepare_send(ws, request)
        with open_store(ws) as store, SendLock(store.lock_path, shown=ws.relative):
            result.outcome = _run_send(ws, store, request, setup, on_progress=on_progress, on_interrupt=None)
    result.receipts = _import_demo_reports(ws, reports)
    from campaign.api import signing as signing_api

    result.drive = signing_api.demo_drive(ws, letter_id)
    result.messages = log(ws, LogQuery())
    result.verification = verify_log(ws)
    result.languages = dict(Counter(m.lang for m in result.messages if m.status not in (Status.QUEUED, Status.FAILED)))
    if result.signed_for is not None:
        result.signed_pdf = _save_attachment(ws, result.signed_for, demo_dir / "signed-letter.pdf")
    return result


def _demo_case(ws: Workspace, letters: Mapping[str, Letter]) -> tuple[int, Path | None]:
    """The fictional example case: its letter to the WGEID and the WGAD, and its WGEID form."""
    from campaign.api import cases as cases_api
    from campaign.api import load_registry
    from campaign.api import submit as submit_api

    reg = load_registry(ws)
    bodies = [rid for rid in ("un-wgeid", "un-wgad") if (r := reg.get(rid)) is not None and r.contacts]
    if submit_api.DEFAULT_LETTER not in letters or not bodies:
        return 0, None  # a workspace without the UN bodies or the case letter
    cases_api.new_case(ws, None, example=True)
    report = queue(ws, QueueRequest(letter=submit_api.DEFAULT_LETTER, ids=bodies, cases=[cases_api.core.EXAMPLE_ID]))
    form = None
    if "un-wgeid" in bodies:
        prepared = submit_api.prepare(ws, submit_api.PrepareRequest(case=cases_api.core.EXAMPLE_ID, to="un-wgeid"))
        form = prepared.files[0]
    return report.count("new"), form


def _add_demo_readers(ws: Workspace, languages: list[str]) -> list[str]:
    """Append the fictional readers of the letter's other languages to the demo's registry."""
    registry = registry_mod.load_registry(ws.registry_path)
    have = {r.id for r in registry.recipients}
    entries = [reader for lang, reader in DEMO_READERS.items() if lang in languages and reader["id"] not in have]
    if entries:
        registry_mod.write_registry_entries(ws.registry_path, entries, label="recipients.yaml")
    return [entry["id"] for entry in entries]


def _save_attachment(ws: Workspace, recipient: str, target: Path) -> Path | None:
    """Copy the PDF attached to ``recipient``'s letter out of the bytes that were sent."""
    with open_store(ws, create=False) as store:
        found = store.messages(MessageFilter(recipient=recipient))
        if not found:
            return None
        prefix, body = store.wire_bytes(found[0].id)
    message = email.message_from_bytes((prefix or b"") + body, policy=email.policy.default)
    for part in message.walk():
        if part.get_content_type() == "application/pdf":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                _write_private_file(target, data, replace=True)
                return target
    return None


def _import_demo_reports(ws: Workspace, reports: Path) -> int:
    """Import the demo server's simulated delivery reports (clearly labelled as simulated)."""
    files = sorted(reports.glob("*.eml")) if reports.is_dir() else []
    if not files:
        return 0
    return import_receipts(ws, files).recorded


def _toml_text(value: str) -> str:
    return '"""\n' + value.replace("\\", "\\\\").replace('"""', "'''") + '"""' if "\n" in value else _toml_line(value)


def _toml_line(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _demo_config(source: Workspace | None, port: int) -> str:
    sender = source.settings.sender if source else None
    name = sender.name if sender else "Demo Organisation"
    address = sender.email if sender else "letters@campaign.example"
    lines = [
        "# Written by `campaign demo`: a throwaway workspace; the server runs inside the program.",
        "[sender]",
        f"name = {_toml_line(name)}",
        f"email = {_toml_line(address)}",
    ]
    if sender is not None:
        for key in ("address", "signatory", "signatory_title"):
            value = getattr(sender, key)
            if value:
                lines.append(f"{key} = {_toml_text(value)}")
    lines += [
        "",
        "[smtp]",
        'host = "127.0.0.1"',
        f"port = {port}",
        'security = "none"',
        'timeout = "10s"',
        'data_timeout = "30s"',
        "",
        "[sending]",
        "rate = 50",
        "per_domain_rate = 20",
        "",
        "[receipts]",
        f'return_path = "receipts@{address.rpartition("@")[2]}"',
    ]
    city = source.settings.pdf.city if source else None
    if city:
        lines += ["", "[pdf]", f"city = {_toml_line(city)}"]
    return "\n".join(lines) + "\n"
