"""campaign.files: every private file is 0600 from its first byte, whole or absent, and
never replaces what it must not (the mechanism behind the per-file fixes of issue 15)."""

from __future__ import annotations

import ast
import errno
import os
import stat
from pathlib import Path

import pytest

from campaign.errors import CaseError
from campaign.files import private_file, save_private, write_private

PACKAGE = Path(__file__).resolve().parent.parent / "campaign"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    old = os.umask(0)
    yield
    os.umask(old)


def test_a_new_file_is_private_whatever_the_umask(tmp_path, open_umask):
    write_private(tmp_path / "a.bin", b"secret", replace=False)
    assert (tmp_path / "a.bin").read_bytes() == b"secret"
    assert _mode(tmp_path / "a.bin") == 0o600


def test_replacing_a_looser_file_leaves_it_private(tmp_path, open_umask):
    target = tmp_path / "old.eml"
    target.write_bytes(b"old")
    target.chmod(0o644)
    write_private(target, b"new", replace=True)
    assert target.read_bytes() == b"new" and _mode(target) == 0o600


def test_without_replace_an_existing_file_is_left_alone(tmp_path):
    target = tmp_path / "report.html"
    target.write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        write_private(target, b"theirs", replace=False)
    assert target.read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temporary file left


def test_a_planted_symlink_is_never_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    (tmp_path / "out.zip").symlink_to(victim)
    with pytest.raises(FileExistsError):
        write_private(tmp_path / "out.zip", b"x", replace=False)
    write_private(tmp_path / "out.zip", b"x", replace=True)  # replaces the link itself
    assert victim.read_bytes() == b"untouched"
    assert not (tmp_path / "out.zip").is_symlink() and (tmp_path / "out.zip").read_bytes() == b"x"


def test_a_failing_writer_leaves_nothing(tmp_path):
    target = tmp_path / "bundle.zip"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError), private_file(target, replace=True) as handle:
        handle.write(b"half")
        raise RuntimeError("the zip failed")
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.zip"]


def test_a_file_system_without_hard_links_still_gets_an_exclusive_file(tmp_path, monkeypatch):
    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")  # what vfat answers

    monkeypatch.setattr(os, "link", no_links)
    write_private(tmp_path / "a.pdf", b"%PDF", replace=False)
    assert (tmp_path / "a.pdf").read_bytes() == b"%PDF" and _mode(tmp_path / "a.pdf") == 0o600
    with pytest.raises(FileExistsError):
        write_private(tmp_path / "a.pdf", b"other", replace=False)
    assert (tmp_path / "a.pdf").read_bytes() == b"%PDF"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdf"]


def test_save_private_names_the_file_in_one_line(tmp_path):
    (tmp_path / "c.yaml").write_text("x")
    with pytest.raises(CaseError) as err:
        save_private(tmp_path / "c.yaml", b"y", replace=False, error=CaseError, label="cases/c.yaml")
    assert err.value.message == "cases/c.yaml: already exists; nothing was written"
    with pytest.raises(CaseError) as err:
        save_private(tmp_path / "missing" / "c.yaml", b"y", replace=True, error=CaseError, label="cases/c.yaml")
    assert err.value.message.startswith("cases/c.yaml: cannot write: ")


# Opening a file for writing with a mode is the job of campaign.files alone; these may
# open one for another reason (a lock file, the SQLite database created before SQLite).
ALLOWED = {"files.py", "config.py", "store/sqlite.py"}


def test_only_campaign_files_creates_private_files():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "open"
                and any(isinstance(a, ast.Constant) and a.value == 0o600 for a in node.args)
            ):
                offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, f"write private files with campaign.files.write_private: {offenders}"
