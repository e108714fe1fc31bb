"""The organisation's root certificate, for the institutions that check its letters.

`campaign keys init` keeps the keys in ``.campaign/keys/`` (private, 0600) and writes a
public copy of the root certificate as ``organisation-root.pem`` in the workspace: the
name the README and `campaign pdf verify --trust` use. `campaign keys export-root`
writes that copy again, anywhere. The certificate is public (mode 0644); the keys never
leave ``.campaign/keys/``.
"""

from __future__ import annotations

from pathlib import Path

from campaign.config import Workspace
from campaign.errors import WorkspaceError
from campaign.files import OVERWRITE_HINT, check_target, write_public

ROOT_FILE = "organisation-root.pem"
"""The public root certificate's file name, everywhere (README, keys init, export-root)."""


def keys_folder(ws: Workspace) -> Path:
    """Where the organisation's keys live (private)."""
    return ws.state_dir / "keys"


def public_root_path(ws: Workspace) -> Path:
    """The public copy of the root certificate that `keys init` writes."""
    return ws.root / ROOT_FILE


def check_public_root_free(ws: Workspace) -> None:
    """Refuse to start `keys init` when an older public root would be left behind.

    Raises WorkspaceError."""
    path = public_root_path(ws)
    if keys_folder(ws).is_dir() and any(keys_folder(ws).iterdir()):
        return  # keys exist: `keys init` refuses for that reason, named by pdf.init_keys
    if path.exists():
        raise WorkspaceError(
            f"{ws.relative(path)}: already exists, from other keys; nothing was created",
            hint="move it away: letters signed with new keys will not verify against it",
        )


def export_root(ws: Workspace, out: Path | None = None, *, force: bool = False) -> tuple[Path, str]:
    """Write the root certificate (PEM, public) to ``out`` (default: organisation-root.pem
    in the workspace); return the path and the root's SHA-256 fingerprint.

    Refuses to overwrite a different file unless ``force``; an identical one is left as it
    is. Raises PdfError (no keys) or WorkspaceError (cannot write)."""
    from campaign import pdf

    folder = keys_folder(ws)
    data = pdf.root_certificate_pem(folder)
    fingerprint = pdf.root_fingerprint(folder)
    target = out if out is not None else public_root_path(ws)
    try:
        if target.is_file() and target.read_bytes() == data:
            return target, fingerprint
        check_target(target, force=force)
        write_public(target, data, replace=force)
    except FileExistsError:
        raise WorkspaceError(f"{target}: already exists; nothing was written", hint=OVERWRITE_HINT) from None
    except OSError as err:
        raise WorkspaceError(f"{target}: cannot write: {err.strerror or err}") from err
    return target, fingerprint
