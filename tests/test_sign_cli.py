"""Signing drives through the CLI: keygen, open, list, review, remove, close (sealed cover
page), export (CSV for `pdf batch`, public JSON), verify, prove, and `queue --drive`."""

from __future__ import annotations

import email
import email.policy
import json
import re
from pathlib import Path

import pytest

from campaign import api
from campaign.api import signing as signing_api
from tests.conftest import run_cli, tree_digest
from tests.support.signing import KEY


@pytest.fixture
def keyed(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CAMPAIGN_KEY_PASSPHRASE", KEY)
    assert run_cli("keys", "init").code == 0
    return workspace


def _sign(ws_path: Path, drive_path: str, names: list[str], *, pseudonym: tuple[str, str] | None = None) -> list[str]:
    """Sign through the service the page uses (no browser): the receipts."""
    ws = api.open_workspace(ws_path)
    service = signing_api.signing_service(ws, KEY, processes=0)
    token = drive_path.rsplit("/", 1)[1]
    receipts = []
    try:
        for name in names:
            form = signing_api.Submission(ui_lang="en", name=name, consent=True, signature_kind="typed", city="Berlin")
            if pseudonym and name == pseudonym[0]:
                form.use_pseudonym, form.pseudonym = True, pseudonym[1]
            receipts.append(service.submit(token, form).receipt)
    finally:
        service.close()
    return receipts


def test_keygen_keeps_the_private_half_out_of_the_workspace(keyed: Path, tmp_path: Path) -> None:
    out = tmp_path / "usb" / "names.key"
    out.parent.mkdir()
    result = run_cli("sign", "keygen", "-o", str(out))
    assert result.code == 0, result.output
    assert out.stat().st_mode & 0o777 == 0o600
    assert out.read_text().startswith("campaign-names-private-v1:")
    public = keyed / ".campaign" / "keys" / "names.pub"
    assert public.read_text().startswith("campaign-names-public-v1:")
    again = run_cli("sign", "keygen", "-o", str(tmp_path / "other.key"))
    assert again.code == 1 and "exists already" in again.stderr
    assert not (tmp_path / "other.key").exists()


def test_a_whole_drive_from_open_to_queue(keyed: Path, tmp_path: Path) -> None:
    usb = tmp_path / "names.key"
    assert run_cli("sign", "keygen", "-o", str(usb)).code == 0
    opened = run_cli(
        "sign", "open", "peace-agreement", "--to", "odihr", "--to", "mid", "--allow-pseudonyms", "--fields",
        "city,title", "--closes", "2099-12-31", "--name", "pa-meeting",
    )  # fmt: skip
    assert opened.code == 0, opened.output
    link = re.search(r"link: (http://127\.0\.0\.1:8470(/s/([A-Za-z0-9_-]+)))", opened.stdout)
    assert link is not None
    assert len(link.group(3)) >= 22  # at least 128 bits, URL-safe base64
    listed = json.loads(run_cli("sign", "list", "--json").stdout)
    assert listed[0]["name"] == "pa-meeting" and listed[0]["status"] == "open" and listed[0]["signed"] == 0

    names = ["Maria Ivanova", "Фирӯза Қодирова", "Dilshod Secret", "A Fake Person"]
    receipts = _sign(keyed, link.group(2), names, pseudonym=("Dilshod Secret", "Resident of Khujand"))
    review = run_cli("sign", "review", "pa-meeting")
    assert review.code == 0 and "Resident of Khujand (pseudonym)" in review.stdout and "(sealed)" in review.stdout
    assert "Dilshod Secret" not in review.stdout
    opened_names = run_cli("sign", "review", "pa-meeting", "--names-key", str(usb))
    assert "Dilshod Secret" in opened_names.stdout
    fake = re.search(r"^(\d+)\s+│ A Fake Person", review.stdout, re.M)
    assert fake is not None, review.stdout
    assert run_cli("sign", "remove", "pa-meeting", fake.group(1)).code == 0

    cover = tmp_path / "cover.pdf"
    closed = run_cli("sign", "close", "pa-meeting", "-o", str(cover))
    assert closed.code == 0, closed.output
    assert "3 signatures" in closed.stdout
    import pypdf

    title = " ".join(pypdf.PdfReader(cover).pages[0].extract_text().split())
    assert "Это письмо подписали 3 сторонника" in title  # CLDR "few", not "3 сторонников"
    root = re.search(r"Merkle root: ([0-9a-f]{64})", closed.stdout).group(1)  # type: ignore[union-attr]
    verified = run_cli("pdf", "verify", str(cover))
    assert verified.code == 0, verified.output
    assert "proof" in verified.stdout and root[:16] in verified.stdout
    assert run_cli("sign", "close", "pa-meeting").code == 1  # closed already

    export = tmp_path / "pa-meeting.json"
    assert run_cli("sign", "export", "pa-meeting", "--format", "json", "-o", str(export)).code == 0
    data = json.loads(export.read_text())
    assert data["count"] == 3 and data["root"] == root and len(data["commitments"]) == 3
    text = export.read_text()
    for name in names:
        assert name not in text
    assert run_cli("sign", "verify", str(export)).code == 0
    _follow_the_guide(tmp_path / "pa-meeting-VERIFY.md", export, receipts[1], "Фирӯза Қодирова")
    proved = run_cli("sign", "prove", receipts[1], "--export", str(export), "--name", "Фирӯза Қодирова")
    assert proved.code == 0, proved.output
    assert "included" in proved.stdout and "opens to this name" in proved.stdout
    wrong_name = run_cli("sign", "prove", receipts[1], "--export", str(export), "--name", "Someone Else")
    assert wrong_name.code == 1
    removed = run_cli("sign", "prove", receipts[3], "--export", str(export))
    assert removed.code == 1 and "not in drive" in removed.stderr
    data["commitments"][0] = "0" * 64
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(data))
    bad = run_cli("sign", "verify", str(tampered))
    assert bad.code == 1 and "NOT OK" in bad.stdout

    csv_out = tmp_path / "signatories.csv"
    assert run_cli("sign", "export", "pa-meeting", "-o", str(csv_out)).code == 0
    rows = csv_out.read_text().splitlines()
    assert rows[0] == "name,title,city,signature_image" and len(rows) == 4
    assert "Resident of Khujand,,Berlin," in rows and "Dilshod Secret" not in csv_out.read_text()
    batch = run_cli(
        "pdf", "batch", "peace-agreement", "--to", "wgad", "--supporters", str(csv_out), "--out-dir",
        str(tmp_path / "batch"), "--processes", "1",
    )  # fmt: skip
    assert batch.code == 0, batch.output

    queued = run_cli("queue", "peace-agreement", "--drive", "pa-meeting")
    assert queued.code == 0, queued.output
    assert run_cli("send", "--dry-run").code == 0
    messages = list((keyed / ".campaign" / "outbox").rglob("*.eml"))
    assert len(messages) == 2
    for path in messages:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        parts = [p for p in msg.walk() if p.get_filename()]
        assert [p.get_filename() for p in parts] == ["signatures-pa-meeting.pdf"]
        assert parts[0].get_content() == cover.read_bytes()
    assert json.loads(run_cli("status", "--json").stdout)  # the drive's name is the campaign


def test_bad_drive_commands_change_nothing(keyed: Path) -> None:
    assert run_cli("sign", "open", "peace-agreement", "--to", "ohchr", "--name", "d1").code == 0
    before = tree_digest(keyed)
    for args, fragment in [
        (("sign", "open", "peace-agreement", "--to", "ohchr", "--name", "d1"), "exists already"),
        (("sign", "remove", "d1", "99"), "no signature #99"),
        (("sign", "export", "d1", "--format", "json", "-o", str(keyed / "x.json")), "still open"),
        (("sign", "prove", "campaign-sign-v1:d1:" + "0" * 64 + ":" + "1" * 64), "not in drive d1"),
    ]:
        result = run_cli(*args)
        assert result.code != 0 and fragment in result.output, (args, result.output)
    after = {k: v for k, v in tree_digest(keyed).items() if not k.endswith("-shm")}
    assert after == {k: v for k, v in before.items() if not k.endswith("-shm")}


def test_a_drive_goes_to_institutions_of_one_language(keyed: Path) -> None:
    """Supporters sign one text: a drive whose institutions read the letter in different
    languages is refused at `sign open`, with one line saying what to do."""
    before = tree_digest(keyed)
    mixed = run_cli("sign", "open", "peace-agreement", "--to", "odihr", "--to", "ohchr", "--name", "mixed")
    assert mixed.code == 1, mixed.output
    assert "2 languages (ru: odihr; en: ohchr)" in mixed.stderr and "open one drive per language" in mixed.stderr
    assert "Traceback" not in mixed.output
    assert tree_digest(keyed) == before
    by_tag = run_cli("sign", "open", "peace-agreement", "--tag", "government")  # mid (ru), tj-embassy (tg)
    assert by_tag.code == 1 and "open one drive per language" in by_tag.stderr
    assert run_cli("sign", "open", "peace-agreement", "--to", "odihr", "--to", "mid", "--name", "ru-drive").code == 0


def test_queue_drive_refuses_a_letter_changed_since_the_drive_opened(keyed: Path) -> None:
    assert run_cli("sign", "open", "peace-agreement", "--to", "odihr", "--to", "mid", "--name", "ru-drive").code == 0
    [drive] = signing_api.list_drives(api.open_workspace(keyed))
    _sign(keyed, drive.path, ["Maria Ivanova"])
    assert run_cli("sign", "close", "ru-drive").code == 0
    # the supporters consented to these institutions, in this language, only
    outside = run_cli("queue", "peace-agreement", "--drive", "ru-drive", "--to", "ohchr")
    assert outside.code == 1 and "consented to odihr, mid only" in outside.stderr
    other_lang = run_cli("queue", "peace-agreement", "--drive", "ru-drive", "--lang", "en")
    assert other_lang.code == 2 and "signed the ru text" in other_lang.stderr
    template = keyed / "letters" / "peace-agreement" / "ru.md.j2"
    original = template.read_text()
    template.write_text(original.replace("\n\n", "\n\nДобавленный после сбора подписей абзац.\n\n", 1))
    before = tree_digest(keyed)
    changed = run_cli("queue", "peace-agreement", "--drive", "ru-drive")
    assert changed.code == 1, changed.output
    assert "has changed since the drive opened" in changed.stderr and drive.text_sha256[:16] in changed.stderr
    assert "Traceback" not in changed.output
    assert {k: v for k, v in tree_digest(keyed).items() if not k.endswith("-shm")} == {
        k: v for k, v in before.items() if not k.endswith("-shm")
    }
    template.write_text(original)
    queued = run_cli("queue", "peace-agreement", "--drive", "ru-drive")
    assert queued.code == 0, queued.output
    store = api.open_store(api.open_workspace(keyed))
    try:
        from campaign.store import MessageFilter

        letters = store.messages(MessageFilter(campaign="ru-drive"))
    finally:
        store.close()
    assert sorted((m.recipient, m.lang) for m in letters) == [("mid", "ru"), ("odihr", "ru")]


@pytest.mark.postgres
def test_drives_move_to_postgresql_with_the_workspace(keyed: Path, pg_url: str) -> None:
    opened = run_cli("sign", "open", "peace-agreement", "--to", "tj-embassy", "--name", "moving")
    assert opened.code == 0, opened.output
    path = re.search(r"link: \S+?(/s/\S+)", opened.stdout).group(1)  # type: ignore[union-attr]
    receipts = _sign(keyed, path, ["Maria Ivanova", "Фирӯза Қодирова"])
    assert run_cli("store", "migrate", "--to", pg_url).code == 0
    listed = json.loads(run_cli("--db", pg_url, "sign", "list", "--json").stdout)
    assert [(d["name"], d["signed"]) for d in listed] == [("moving", 2)]
    assert run_cli("--db", pg_url, "sign", "open", "peace-agreement", "--to", "ohchr", "--name", "next").code == 0
    assert run_cli("--db", pg_url, "sign", "close", "moving").code == 0
    proved = run_cli("--db", pg_url, "sign", "prove", receipts[0])
    assert proved.code == 0 and "leaf" in proved.stdout


def _follow_the_guide(guide: Path, export: Path, receipt: str, name: str) -> None:
    """VERIFY.md's recipes, run as written: the Python root and the shell commitment."""
    import subprocess
    import sys

    text = guide.read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)  # type: ignore[union-attr]
    script = guide.parent / "root.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script), str(export)], capture_output=True, text=True, check=True)
    assert "count 3 matches" in done.stdout and "matches" in done.stdout.splitlines()[1]
    _, _, salt, commitment = receipt.split(":")
    t = json.loads(export.read_text())["letter_sha256"]
    shell = re.findall(r"```sh\n(.*?)```", text, re.S)[1]
    line = next(x for x in shell.splitlines() if x.startswith("{ printf"))
    line = line.replace("'Your Name'", "'" + name + "'")
    done = subprocess.run(["bash", "-c", f"SALT={salt}; T={t}; {line}"], capture_output=True, text=True, check=True)
    assert done.stdout.split()[0] == commitment


def test_the_demo_opens_a_drive_to_serve(tmp_path: Path) -> None:
    import shutil

    from tests.conftest import ROOT

    root = tmp_path / "repo"
    root.mkdir()
    shutil.copytree(ROOT / "letters", root / "letters")
    for name in ("recipients.yaml", "campaign.toml"):
        shutil.copy2(ROOT / name, root / name)
    result = run_cli("-C", str(root), "demo")
    assert result.code == 0, result.output
    assert "signing drive demo is open" in result.stdout
    assert f"CAMPAIGN_KEY_PASSPHRASE='{signing_api.DEMO_PASSPHRASE}'" in result.stdout
    link = re.search(r"then open (http://127\.0\.0\.1:8470/s/\S+)", result.stdout)
    assert link is not None
    listed = json.loads(run_cli("-C", str(root / ".campaign" / "demo"), "sign", "list", "--json").stdout)
    assert listed[0]["name"] == "demo" and link.group(1).endswith(listed[0]["path"])


def test_fingerprints_and_names_print_as_they_are() -> None:
    """rich turned ":AB:" in a certificate fingerprint into an emoji (🆎), ":CD:" into 💿."""
    import contextlib
    import io

    from campaign.cli import common

    common.reset_consoles()
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            common.out().print("fingerprint: 12:AB:98:CD:01, a name with :smile:")
    finally:
        common.reset_consoles()
    assert buffer.getvalue() == "fingerprint: 12:AB:98:CD:01, a name with :smile:\n"


def test_a_removal_the_wal_keeps_is_a_warning_not_silence(keyed: Path) -> None:
    """The WAL checkpoint after a deletion failed silently (suppress(Exception)) when
    another program was reading: the names stayed in state.db-wal and nobody knew."""
    import sqlite3

    assert run_cli("sign", "open", "peace-agreement", "--to", "ohchr", "--name", "d1").code == 0
    [drive] = signing_api.list_drives(api.open_workspace(keyed))
    _sign(keyed, drive.path, ["Kamila Removed", "Rustam Stays"])
    reader = sqlite3.connect(keyed / ".campaign" / "state.db", isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM signatures").fetchone()
        removed = run_cli("sign", "remove", "d1", "1")
        assert removed.code == 0, removed.output
        assert "removed 1 signature(s) from d1" in removed.stdout
        [line] = removed.stderr.splitlines()
        assert line.startswith("warning: ") and "write-ahead log" in line and "Kamila" not in line
        kept = [p.name for p in (keyed / ".campaign").iterdir() if p.is_file() and b"Kamila Removed" in p.read_bytes()]
        assert kept  # as the warning says
    finally:
        reader.execute("COMMIT")
        reader.close()
    quiet = run_cli("sign", "remove", "d1", "2")
    assert quiet.code == 0 and quiet.stderr == ""
    for path in (keyed / ".campaign").rglob("*"):
        if path.is_file():
            assert b"Kamila Removed" not in path.read_bytes(), path
