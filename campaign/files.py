"""Private files: the one way campaign writes a file a stranger must not read.

Contract (every key, letter, report, bundle, cache and journal goes through here):
- The file is mode 0600 from its first byte, whatever the umask, and an existing file
  keeps no looser mode: the bytes go to a new temporary file beside the target.
- A reader never sees half a file: the temporary file is synced, then takes the name.
- ``replace=False`` never replaces anything, a symlink planted at the name included:
  FileExistsError, and the target is as it was. (On a file system without hard links, a
  USB stick formatted FAT, the file is created in place with O_EXCL instead.)
- ``write_private`` raises OSError; ``save_private`` turns it into the caller's one-line
  error naming the file.
- One rule for a file a command is asked to write (``-o``, ``--out-dir``, ``--print-file``):
  ``check_target`` refuses an existing one before any work unless ``force`` (the CLI's
  shared ``--force``, ``campaign.cli.common.ForceOpt``), and the write itself then passes
  ``replace=force``. ``write_public`` is the same write for a file meant to be shared.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from campaign.errors import CampaignError, WorkspaceError

_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def write_private(path: Path, data: bytes, *, replace: bool, durable: bool = True) -> None:
    """Write ``data`` to ``path`` as described in the module's contract."""
    with private_file(path, replace=replace, durable=durable) as handle:
        handle.write(data)


OVERWRITE_HINT = "choose another name, or add --force to overwrite it"


def check_target(
    path: Path, *, force: bool, error: type[CampaignError] = WorkspaceError, hint: str = OVERWRITE_HINT
) -> None:
    """Refuse, before any work, to write ``path`` when it is a folder, or a file (or a
    symlink) that exists and ``force`` is not given: "already exists; nothing was written"."""
    if path.is_dir():
        raise error(f"{path}: is a folder; give a file name")
    if not force and (path.exists() or path.is_symlink()):
        raise error(f"{path}: already exists; nothing was written", hint=hint)


def write_public(path: Path, data: bytes, *, replace: bool) -> None:
    """``write_private`` for a file meant to be shared (a registry export, the root
    certificate): readable by everyone (0644) once it takes its name. Raises OSError."""
    with private_file(path, replace=replace) as handle:
        handle.write(data)
        os.fchmod(handle.fileno(), 0o644)


def save_private(
    path: Path,
    data: bytes,
    *,
    replace: bool,
    error: type[CampaignError] = WorkspaceError,
    label: str | None = None,
    hint: str = OVERWRITE_HINT,
) -> None:
    """``write_private`` with its failures as one line of ``error`` naming ``label`` (the
    path by default): "already exists; nothing was written", or "cannot write: <why>"."""
    name = label or str(path)
    try:
        write_private(path, data, replace=replace)
    except FileExistsError:
        raise error(f"{name}: already exists; nothing was written", hint=hint) from None
    except OSError as err:
        raise error(f"{name}: cannot write: {err.strerror or err}") from None


@contextlib.contextmanager
def private_file(path: Path, *, replace: bool, durable: bool = True) -> Iterator[BinaryIO]:
    """A binary handle whose bytes become ``path`` when the block ends without an error
    (for writers that stream, such as a zip); nothing is left behind when it raises.
    ``durable=False`` skips the fsync, for files that cost nothing to lose in a power cut
    (a cache, the demo server's mailbox)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | _NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _link_new(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as err:
        if err.errno not in _NO_LINKS:
            raise
        _copy_new(tmp, path)


def _copy_new(tmp: Path, path: Path) -> None:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | _NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out, tmp.open("rb") as source:
            os.fchmod(out.fileno(), 0o600)
            while chunk := source.read(1 << 20):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
