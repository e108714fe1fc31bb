"""Issue 15, cases 11-20: one small mechanism each, through the real CLI and real files.

11 MIME nesting depth in reports; 12 template resource limits; 13 encoded-word addresses;
14 templates outside letters/; 15 remote images; 16 signature images outside their
folder; 17 store URLs with a password parameter; 18 private files under any umask;
19 bytes after the signed part of a PDF; 20 header line length, local-part length,
campaign ids and control characters.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli, set_smtp_port, stored_body, tree_digest
from tests.support.rawsmtp import Behaviour, RawServer
from tests.support.smtp import Script, ScriptedServer

KEY = "organisation passphrase"


def log_rows() -> list[dict[str, Any]]:
    result = run_cli("log", "--json")
    assert result.code == 0, result.output
    return json.loads(result.stdout)


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def send(workspace: Path) -> tuple[Any, ScriptedServer]:
    with ScriptedServer(Script()) as server:
        set_smtp_port(workspace, server.port)
        result = run_cli("send", "--yes")
    assert "Traceback" not in result.output, result.output
    return result, server


def png(path: Path) -> Path:
    """A 1×1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0\0")) + chunk(b"IEND", b"")
    )
    return path


# ---------------------------------------------------------------------------
# 11. MIME nesting depth


def nested(depth: int, kind: str) -> bytes:
    if kind == "multipart":
        body = b"Content-Type: text/plain\r\n\r\nhello\r\n"
        for i in range(depth):
            body = (
                b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
                + body
                + b"\r\n--b%d--\r\n" % i
            )
    else:
        body = b"Content-Type: text/plain\r\n\r\nhello\r\n"
        for _ in range(depth):
            body = b"Content-Type: message/rfc822\r\n\r\nFrom: x@y.example\r\n" + body
    return b"From: mailer-daemon@x.example\r\nTo: receipts@campaign.example\r\nSubject: Undelivered Mail\r\n" + body


@pytest.mark.parametrize("kind", ["multipart", "rfc822"])
def test_a_report_nested_3000_deep_is_kept_with_a_reason(workspace: Path, tmp_path: Path, kind: str) -> None:
    # Case 11: RecursionError traceback before.
    report = tmp_path / "deep.eml"
    report.write_bytes(nested(3000, kind))
    result = run_cli("receipts", "import", str(report))
    assert result.code == 0, result.output
    assert "Traceback" not in result.output and "MIME levels deep" in result.stderr
    unmatched = json.loads(run_cli("receipts", "unmatched", "--json").stdout)
    assert len(unmatched) == 1 and "MIME levels deep" in unmatched[0]["note"]


# ---------------------------------------------------------------------------
# 12. Template resource limits (inside the sandbox, no signals)

BOMBS = {
    "multiplication": "{{ 'x' * (3*10**8) }}",
    "power": "{{ 10 ** (10 ** 8) }}",
    "nested-range": "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
    "nested-loops-over-text": "{% set s = 'x' * 100000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
    "macro-recursion": "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "self-include": "{% include 'bomb/en.md.j2' %}",
    "doubling": "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "padding": "{{ 'x'|center(10**9) }}",
    "format-width": "{{ '%0999999999d' % 1 }}",
    "replace-growth": "{{ ('x'*10000)|replace('x', 'x'*10000)|replace('x', 'x'*10000) }}",
    "recursive-loop": "{% for x in [[1]] recursive %}{{ loop([x]) }}{% endfor %}",
}


def bomb(workspace: Path, body: str) -> None:
    folder = workspace / "letters" / "bomb"
    folder.mkdir(exist_ok=True)
    (folder / "en.md.j2").write_text(f"---\nsubject: A letter\n---\n{body}\n")


@pytest.mark.parametrize("name", list(BOMBS))
def test_template_resource_exhaustion_is_one_line(workspace: Path, name: str) -> None:
    # Case 12: tracebacks, or `letters check` / `queue` still running after 60 s.
    bomb(workspace, BOMBS[name])
    before = tree_digest(workspace)
    started = time.monotonic()
    result = run_cli("queue", "bomb", "--to", "ohchr")
    took = time.monotonic() - started
    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    lines = errors(result.stderr)
    assert len(lines) == 1 and "letters/bomb/en.md.j2" in lines[0], result.stderr
    assert took < 15, took
    assert tree_digest(workspace) == before
    started = time.monotonic()
    check = run_cli("letters", "check", "bomb")
    assert check.code == 1 and "Traceback" not in check.output
    assert time.monotonic() - started < 60


def test_limits_hold_outside_the_main_thread(workspace: Path) -> None:
    # No signals: a web server's worker thread renders letters too.
    from campaign import api
    from campaign.errors import RenderError

    bomb(workspace, BOMBS["nested-range"])
    ws = api.open_workspace(workspace)
    caught: list[BaseException] = []

    def render() -> None:
        try:
            api.preview(ws, "bomb", "ohchr")
        except RenderError as err:
            caught.append(err)

    worker = threading.Thread(target=render)
    worker.start()
    worker.join(30)
    assert not worker.is_alive()
    assert caught and "too much work" in str(caught[0].message)


def test_an_ordinary_letter_is_untouched_by_the_limits(workspace: Path) -> None:
    bomb(workspace, "{% for i in range(200) %}{{ i }} {% endfor %}{{ 'ab' * 50 }} {{ 2 ** 64 }}")
    result = run_cli("preview", "bomb", "--to", "ohchr")
    assert result.code == 0, result.output
    assert "199" in result.stdout and "18446744073709551616" in result.stdout


# ---------------------------------------------------------------------------
# 13, 20. Addresses and names that cannot go into a header


def registry_with(workspace: Path, email_: str, name: str | None = None) -> None:
    path = workspace / "recipients.yaml"
    text = path.read_text().replace("registry@ohchr.example", email_, 1)
    if name is not None:
        text = text.replace("        name: Registry\n", f"        name: {name}\n", 1)
    path.write_text(text)


def test_an_encoded_word_address_is_refused_cleanly(workspace: Path) -> None:
    # Case 13: email-validator accepts it; queue crashed with InvalidHeaderDefect.
    registry_with(workspace, "=?utf-8?b?cmVnaXN0cnk=?=@ohchr.example")
    for args in (["recipients", "check"], ["queue", "peace-agreement", "--to", "ohchr"]):
        result = run_cli(*args)
        assert result.code == 1 and "Traceback" not in result.output
        assert "recipients.yaml:" in result.stderr and "encoded word" in result.stderr
    assert not (workspace / ".campaign").exists()


def test_a_local_part_over_64_is_refused(workspace: Path) -> None:
    # Case 20: RFC 5321 allows 64 octets before the @.
    registry_with(workspace, "r" * 65 + "@ohchr.example")
    result = run_cli("recipients", "check")
    assert result.code == 1 and "at most 64" in result.stderr and "recipients.yaml:" in result.stderr


def test_a_64_octet_local_part_is_fine(workspace: Path) -> None:
    registry_with(workspace, "r" * 64 + "@ohchr.example")
    assert run_cli("recipients", "check").code == 0


def test_an_unfoldable_3000_character_name_is_refused(workspace: Path) -> None:
    # Case 20: a 3,000-character contact name gave a 3,001-byte To: line.
    registry_with(workspace, "registry@ohchr.example", "N" * 3000)
    before = tree_digest(workspace)
    result = run_cli("queue", "peace-agreement", "--to", "ohchr")
    assert result.code == 1 and "Traceback" not in result.output
    assert "To (to <registry@ohchr.example>): a header line of" in result.stderr and "998" in result.stderr
    assert tree_digest(workspace) == before


def test_a_long_name_with_spaces_is_folded_under_998(workspace: Path) -> None:
    registry_with(workspace, "registry@ohchr.example", " ".join(["Office"] * 500))
    assert run_cli("queue", "peace-agreement", "--to", "ohchr").code == 0
    body = stored_body(workspace / ".campaign" / "state.db")
    head = body.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 998


def test_campaign_ids_are_validated_and_escapes_never_printed(workspace: Path) -> None:
    # Case 20: `queue --campaign $'camp\n\e[31mred'` then printed a raw escape in `status`.
    result = run_cli("queue", "peace-agreement", "--to", "ohchr", "--campaign", "camp\n\x1b[31mred")
    assert result.code == 2 and "not a valid campaign name" in result.stderr
    assert "\x1b" not in result.output and "\\x1b" in result.stderr
    assert not (workspace / ".campaign").exists()
    # A name from an older version (or an edited database) is shown escaped, never raw.
    assert run_cli("queue", "peace-agreement", "--to", "ohchr").code == 0
    con = sqlite3.connect(workspace / ".campaign" / "state.db")
    con.execute("UPDATE messages SET campaign = ?", ("old\x1b[2J\x1b[31mname\u202e",))
    con.commit()
    con.close()
    for args in (["status"], ["log"], ["log", "--csv"], ["status", "--json"], ["log", "--json"], ["log", "--events"]):
        shown = run_cli(*args)
        assert shown.code == 0 and "\x1b" not in shown.output and "\u202e" not in shown.output, args
    assert "old\\x1b[2J" in run_cli("status").stdout


def test_a_hostile_server_reply_is_printed_escaped(workspace: Path) -> None:
    assert run_cli("queue", "peace-agreement", "--to", "ohchr").code == 0
    reply = b"250 2.0.0 Ok \x1b]0;pwned\x07\x1b[31m queued\r\n"
    with RawServer(Behaviour(replies={"DOT": [reply]})) as server:
        set_smtp_port(workspace, server.port)
        result = run_cli("send", "--yes")
    assert result.code == 0, result.output
    for output in (result.output, run_cli("log").output, run_cli("log", "--events").output):
        assert "\x1b" not in output and "\x07" not in output


# ---------------------------------------------------------------------------
# 14. Templates that resolve outside letters/


def test_a_symlinked_partial_pointing_outside_is_refused(workspace: Path, tmp_path: Path) -> None:
    # Case 14: a symlink in letters/ let {% include %} queue any readable file (a key).
    secret = tmp_path / "secret.key"
    secret.write_text("-----BEGIN PRIVATE KEY-----\nMIIEvQ...\n")
    partial = workspace / "letters" / "_partials" / "closing.en.md.j2"
    partial.unlink()
    partial.symlink_to(secret)
    before = tree_digest(workspace)
    result = run_cli("queue", "peace-agreement", "--to", "wgad")
    assert result.code == 1 and "Traceback" not in result.output
    assert "a symbolic link to a file outside letters/" in result.stderr
    assert "PRIVATE KEY" not in result.output
    assert tree_digest(workspace) == before


def test_a_symlinked_letter_pointing_outside_is_refused(workspace: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.md.j2"
    outside.write_text("---\nsubject: x\n---\nhello\n")
    (workspace / "letters" / "evil").mkdir()
    (workspace / "letters" / "evil" / "en.md.j2").symlink_to(outside)
    result = run_cli("letters", "list")
    assert result.code == 1 and "letters/evil/en.md.j2: a symbolic link to a file outside letters/" in result.stderr


def test_a_symlink_inside_letters_is_fine(workspace: Path) -> None:
    partial = workspace / "letters" / "_partials" / "closing.en.md.j2"
    copy = workspace / "letters" / "_partials" / "closing-copy.en.md.j2"
    copy.write_text(partial.read_text())
    partial.unlink()
    partial.symlink_to(copy)
    assert run_cli("queue", "peace-agreement", "--to", "wgad").code == 0


# ---------------------------------------------------------------------------
# 15. Remote images


def test_a_remote_image_is_dropped_from_the_html_part(workspace: Path) -> None:
    # Case 15: a Markdown image put a tracking pixel into the HTML part.
    template = workspace / "letters" / "peace-agreement" / "en.md.j2"
    template.write_text(
        template.read_text().replace(
            "{{ salutation }}", "{{ salutation }}\n\n![our logo](https://tracker.example/pixel.gif?id=7)", 1
        )
    )
    queued = run_cli("queue", "peace-agreement", "--to", "wgad")
    assert queued.code == 0, queued.output
    assert "image 'https://tracker.example/pixel.gif?id=7' dropped" in queued.stderr
    result, server = send(workspace)
    assert result.code == 0
    msg = email.message_from_bytes(server.accepted[0].data, policy=email.policy.default)
    html = msg.get_body(("html",)).get_content()
    assert "<img" not in html and "tracker.example" not in html
    assert "[our logo]" in html


# ---------------------------------------------------------------------------
# 16. Signature images outside the CSV's folder


@pytest.fixture
def keyed(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CAMPAIGN_KEY_PASSPHRASE", KEY)
    assert run_cli("keys", "init").code == 0
    return workspace


def test_a_signature_image_outside_the_csv_folder_is_refused(keyed: Path, tmp_path: Path) -> None:
    # Case 16: `signature_image: ../../outside.png` was accepted.
    png(tmp_path / "outside.png")
    folder = keyed / "supporters"
    folder.mkdir()
    csv = folder / "supporters.csv"
    csv.write_text("name,signature_image\nMaria,../../outside.png\n")
    before = tree_digest(keyed)
    result = run_cli(
        "pdf", "batch", "peace-agreement", "--to", "ohchr", "--supporters", str(csv), "--out-dir", str(keyed / "out")
    )
    assert result.code == 1 and "supporters.csv:2: signature_image '../../outside.png' is outside" in result.stderr
    assert tree_digest(keyed) == before
    images = tmp_path / "images"
    images.mkdir()
    png(images / "maria.png")
    csv.write_text("name,signature_image\nMaria,../outside.png\n")
    result = run_cli(
        "pdf", "batch", "peace-agreement", "--to", "ohchr", "--supporters", str(csv), "--out-dir", str(keyed / "out"),
        "--images", str(images),
    )  # fmt: skip
    assert result.code == 1 and "is outside --images" in result.stderr


@pytest.mark.slow
def test_images_inside_an_explicit_folder_are_used(keyed: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    png(images / "maria.png")
    csv = keyed / "supporters.csv"
    csv.write_text("name,signature_image\nMaria,maria.png\n")
    result = run_cli(
        "pdf", "batch", "peace-agreement", "--to", "ohchr", "--supporters", str(csv), "--out-dir", str(keyed / "out"),
        "--images", str(images), "--processes", "1",
    )  # fmt: skip
    assert result.code == 0, result.output


# ---------------------------------------------------------------------------
# 17. Store URLs with a password parameter


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://campaign@db.example/campaign?password=s3cret",
        "postgres://db.example/x?sslmode=require&PASSWORD=s3cret",
    ],
)
def test_a_store_url_with_a_password_parameter_is_refused(
    workspace: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Case 17: `user:pw@` was refused, `?password=` accepted.
    option = run_cli("--db", url, "status")
    assert option.code == 2 and "--db" in option.stderr and "password parameter" in option.stderr
    monkeypatch.setenv("CAMPAIGN_DB", url)
    env = run_cli("status")
    assert env.code == 1 and "CAMPAIGN_DB" in env.stderr
    monkeypatch.delenv("CAMPAIGN_DB")
    config = workspace / "campaign.toml"
    config.write_text(config.read_text() + f'\n[store]\nurl = "{url}"\n')
    toml = run_cli("status")
    assert toml.code == 1 and "campaign.toml:" in toml.stderr and "store.url" in toml.stderr
    config.write_text(config.read_text().replace(f'\n[store]\nurl = "{url}"\n', ""))
    migrate = run_cli("store", "migrate", "--to", url)
    assert migrate.code == 2 and "password parameter" in migrate.stderr
    for result in (option, env, toml, migrate):
        assert "s3cret" not in result.output


# ---------------------------------------------------------------------------
# 18. Private files whatever the umask


@contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def test_files_holding_letters_events_or_keys_are_0600_under_umask_000(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Case 18: evidence.zip was 0644 at umask 022 and 0666 at umask 000.
    monkeypatch.setenv("CAMPAIGN_KEY_PASSPHRASE", KEY)
    out = tmp_path / "out"
    out.mkdir()
    with umask(0):
        for args in (
            ["queue", "peace-agreement", "--all"],
            ["send", "--dry-run"],
            ["smtp", "dkim-keygen", "--selector", "s1"],
            ["keys", "init"],
        ):
            assert run_cli(*args).code == 0, args
        result, _ = send(workspace)
        assert result.code == 0
        for args in (
            ["log", "export", "--campaign", "peace-agreement", "-o", str(out / "evidence.zip")],
            ["log", "export", "--campaign", "peace-agreement", "-o", str(out / "evidence.zip"), "--force"],
        ):
            assert run_cli(*args).code == 0, args
    loose = []
    for path in [*(workspace / ".campaign").rglob("*"), *out.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        if path.is_dir():
            if mode != 0o700:
                loose.append((str(path), oct(mode)))
        elif path.name != ".gitignore" and mode != 0o600:
            loose.append((str(path), oct(mode)))
    assert not loose, loose
    assert (workspace / ".campaign" / "chain.key").exists()


# ---------------------------------------------------------------------------
# 19. Bytes after the signed part of a PDF


def _incremental_info(signed: bytes) -> bytes:
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(BytesIO(signed))
    info = writer.trailer["/Info"].get_object()
    info[generic.NameObject("/Title")] = generic.TextStringObject("We withdraw this letter")
    info[generic.NameObject("/Author")] = generic.TextStringObject("Someone else")
    writer.update_container(info)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.slow
def test_pdf_verify_names_what_follows_the_signature(keyed: Path, tmp_path: Path) -> None:
    # Case 19: "unmodified: yes" for an /Info update and for bytes after %%EOF.
    letter = tmp_path / "letter.pdf"
    result = run_cli("pdf", "export", "peace-agreement", "--to", "ohchr", "--signer", "Maria", "-o", str(letter))
    assert result.code == 0, result.output
    clean = run_cli("pdf", "verify", str(letter))
    assert clean.code == 0 and "after the signature:" not in clean.stdout
    info = tmp_path / "info.pdf"
    info.write_bytes(_incremental_info(letter.read_bytes()))
    appended = tmp_path / "appended.pdf"
    appended.write_bytes(letter.read_bytes() + b"\n% a note added later\nI did not sign this.\n")
    for path, named in (
        (info, ["Title", "Author", "We withdraw this letter"]),
        (appended, ["bytes were added after the end"]),
    ):
        result = run_cli("pdf", "verify", str(path))
        assert result.code == 1, result.output
        assert "unmodified (nothing added after the signature): NO" in result.stdout
        assert "after the signature:" in result.stdout and "follow the signed part" in result.stdout
        for word in named:
            assert word in result.stdout, (path.name, result.stdout)
