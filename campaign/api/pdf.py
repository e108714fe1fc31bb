"""Signed PDF letters and keys: keys init/issue, pdf export/verify/batch.

Re-exported by ``campaign.api``; see its docstring for the rules every function follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from campaign import registry as registry_mod
from campaign.config import Workspace
from campaign.errors import (
    CampaignError,
    SelectionError,
    WorkspaceError,
)
from campaign.files import check_target, private_file
from campaign.models import Letter, Recipient, utcnow
from campaign.render import Renderer

if TYPE_CHECKING:
    pass
from campaign.api import _new_state_undone_on_error, _write_private_file, keys_folder, load_registry


def keys_init(ws: Workspace, passphrase: str) -> str:
    """Create the organisation's root certificate and seal key, and the public copy of the
    root certificate (organisation-root.pem); return the root fingerprint."""
    from campaign import pdf
    from campaign.api import keys

    keys.check_public_root_free(ws)
    with _new_state_undone_on_error(ws):
        ws.ensure_state_dir()
        fingerprint = pdf.init_keys(keys_folder(ws), passphrase, organisation=ws.settings.sender.name)
    keys.export_root(ws)
    return fingerprint


def keys_issue(
    ws: Workspace, passphrase: str, *, name: str, email: str | None, p12_passphrase: str, out: Path, force: bool = False
) -> Path:
    """Issue a supporter certificate (PKCS#12, mode 0600) signed by the organisation's root.
    An existing ``out`` is refused before the certificate is issued unless ``force``."""
    from campaign import pdf

    check_target(out, force=force)
    data = pdf.issue_supporter(keys_folder(ws), passphrase, name=name, email=email, p12_passphrase=p12_passphrase)
    _write_private_file(out, data, replace=force)
    return out


@dataclass(frozen=True)
class SignerInput:
    """Who signs a PDF letter: a supporter's name, title, city and signature image."""

    name: str
    title: str | None = None
    city: str | None = None
    signature_image: Path | None = None


def _pdf_content(
    ws: Workspace,
    renderer: Renderer,
    letter: Letter,
    recipient: Recipient,
    *,
    lang: str | None,
    today: date,
    reference: str,
    speaker: Literal["organisation", "supporter"] = "supporter",
) -> Any:
    from campaign import pdf
    from campaign.render import format_date

    contact = recipient.contacts[0] if recipient.contacts else None
    rendered = renderer.render(
        letter, recipient, contact, ws.settings.sender, lang=lang, medium="pdf", today=today, speaker=speaker
    )
    name = recipient.name_in(rendered.lang)
    address = recipient.address_in(rendered.lang)
    if address:
        lines = address.strip().splitlines()
        # Registries often repeat the institution's name as the first address line.
        if lines and " ".join(lines[0].split()).casefold() == " ".join(name.split()).casefold():
            address = "\n".join(lines[1:]) or None
    return pdf.LetterContent(
        lang=rendered.lang,
        subject=rendered.subject,
        body_html=rendered.body_html,
        date_text=format_date(today, rendered.lang),
        reference=reference,
        recipient_name=name,
        postal_address=address,
    )


def _letterhead(ws: Workspace) -> Any:
    from campaign import pdf

    sender = ws.settings.sender
    return pdf.Letterhead(name=sender.name, address=sender.address, email=sender.reply_to or sender.email)


def reference_for(letter_id: str, recipient_id: str, today: date, supporter: int | None = None) -> str:
    """A readable reference number: letter, institution, date (and supporter in a batch)."""
    ref = f"{letter_id}/{recipient_id}/{today:%Y%m%d}"
    return f"{ref}/{supporter}" if supporter is not None else ref


def pdf_export(
    ws: Workspace,
    letter_id: str,
    recipient_id: str,
    signer: SignerInput,
    out: Path,
    *,
    key_file: Path | None,
    passphrase: str,
    lang: str | None = None,
    force: bool = False,
) -> Path:
    """Render one letter to one institution as a signed PDF (the supporter's key or the seal).
    An existing ``out`` is refused before any work unless ``force``."""
    from campaign import pdf

    check_target(out, force=force)

    reg = load_registry(ws)
    letters = registry_mod.load_letters(ws.letters_dir)
    letter = registry_mod.get_letter(letters, letter_id)
    recipient = registry_mod.select_recipients(reg, ids=[recipient_id])[0]
    key = pdf.load_p12(key_file, passphrase) if key_file else pdf.load_seal(keys_folder(ws), passphrase)
    today = utcnow().date()
    renderer = Renderer(ws.letters_dir)
    content = _pdf_content(
        ws, renderer, letter, recipient, lang=lang, today=today, reference=reference_for(letter.id, recipient.id, today)
    )
    person = pdf.Signer(signer.name, signer.title, signer.city or ws.settings.pdf.city, signer.signature_image)
    data = pdf.render_signed(
        pdf.PdfRenderer(), _letterhead(ws), content, person, key, timestamp_url=ws.settings.pdf.timestamp_url
    )
    _write_private_file(out, data, replace=force)
    return out


def pdf_verify(ws: Workspace | None, paths: list[Path], trust: list[Path]) -> list[Any]:
    """Verify signed letters against the given roots (default: this workspace's root)."""
    from campaign import pdf

    roots: list[bytes] = []
    for path in trust:
        try:
            roots.append(path.read_bytes())
        except OSError as err:
            raise SelectionError(f"{path}: cannot read the trust root: {err.strerror}") from None
    if not trust:
        if ws is None or not keys_folder(ws).is_dir():
            raise SelectionError(
                "no trust root: this workspace has no keys",
                hint="pass --trust ROOT.pem (the organisation's published root), or run `campaign keys init`",
            )
        roots.append(pdf.root_certificate_pem(keys_folder(ws)))
    names = [str(p) for p in trust] if trust else ["the workspace's root certificate"]
    pdf.check_trust_roots(roots, names)  # a bad root is one error for the whole run
    results: list[Any] = []
    for path in paths:
        # Every file is checked and reported, whatever happened to the one before it.
        try:
            data = path.read_bytes()
            results.append(pdf.verify_pdf(data, trust_roots=roots, name=str(path), trust_names=names))
        except OSError as err:
            results.append(UnreadableFile(str(path), f"{path}: cannot read: {err.strerror or err}"))
        except CampaignError as err:
            results.append(UnreadableFile(str(path), err.message, err.hint))
    return results


@dataclass(frozen=True)
class UnreadableFile:
    """A file `pdf verify` could not check at all (missing, not a PDF, truncated)."""

    file: str
    message: str
    hint: str | None = None


@dataclass
class BatchResult:
    files: list[Path]
    zip_file: Path | None = None
    print_file: Path | None = None


def pdf_batch(
    ws: Workspace,
    letter_id: str,
    supporters_csv: Path,
    out_dir: Path,
    *,
    ids: list[str],
    tags: list[str],
    passphrase: str,
    everyone: bool = False,
    zip_output: bool = False,
    print_file: Path | None = None,
    processes: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    images: Path | None = None,
    force: bool = False,
) -> BatchResult:
    """One organisation-sealed PDF per supporter and institution, in worker processes.
    Files that exist (letters, the zip, the print file) are refused before any work unless
    ``force``."""
    import zipfile

    from campaign import pdf
    from campaign.outbox import check_selection

    check_selection(ids, tags, everyone)
    if images is not None and not images.is_dir():
        raise SelectionError(f"--images {images}: no such folder")
    supporters = pdf.read_supporters(supporters_csv, images)
    reg = load_registry(ws)
    letters = registry_mod.load_letters(ws.letters_dir)
    letter = registry_mod.get_letter(letters, letter_id)
    recipients = registry_mod.select_recipients(reg, ids=ids, tags=tags, everyone=everyone)
    pdf.load_seal(keys_folder(ws), passphrase)  # a wrong passphrase fails here, once, before any work
    today = utcnow().date()
    renderer = Renderer(ws.letters_dir)
    head = _letterhead(ws)
    jobs, names = [], []
    for n, supporter in enumerate(supporters, start=1):
        person = pdf.Signer(
            supporter.name, supporter.title, supporter.city or ws.settings.pdf.city, supporter.signature_image
        )
        for recipient in recipients:
            content = _pdf_content(
                ws,
                renderer,
                letter,
                recipient,
                lang=None,
                today=today,
                reference=reference_for(letter.id, recipient.id, today, n),
            )
            jobs.append((head, content, person, print_file is not None))
            names.append(f"{n:04d}-{_slug(supporter.name)}-{recipient.id}.pdf")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WorkspaceError(f"{out_dir}: cannot create: {err.strerror}") from err
    zip_file = out_dir / f"{letter.id}-signed-letters.zip" if zip_output else None
    for target in [out_dir / name for name in names] + [p for p in (zip_file, print_file) if p is not None]:
        check_target(target, force=force, hint="choose an empty --out-dir, or add --force to overwrite")
    files: list[Path] = []
    unsigned: list[bytes] = []
    signed_pdfs = pdf.sign_many(
        jobs, keys_folder(ws), passphrase, timestamp_url=ws.settings.pdf.timestamp_url, processes=processes
    )
    # one file at a time, in order, as the pool returns them
    for done, (name, (signed, plain_pdf)) in enumerate(zip(names, signed_pdfs, strict=True), start=1):
        _write_private_file(out_dir / name, signed, replace=force)
        files.append(out_dir / name)
        if plain_pdf is not None:
            unsigned.append(plain_pdf)
        if on_progress:
            on_progress(done, len(jobs))
    result = BatchResult(files)
    if zip_file is not None:
        result.zip_file = zip_file
        try:
            with (
                private_file(zip_file, replace=force) as handle,
                zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as bundle,
            ):
                for path in files:
                    bundle.write(path, path.name)  # each letter signed on its own: never one merged signed file
        except OSError as err:
            raise WorkspaceError(f"{zip_file}: cannot write: {err.strerror or err}") from None
    if print_file is not None:
        _write_private_file(print_file, pdf.merge_unsigned(unsigned), replace=force)
        result.print_file = print_file
    return result


def _slug(text: str) -> str:
    import re
    import unicodedata

    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:40] or "supporter"
