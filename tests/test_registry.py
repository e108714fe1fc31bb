"""recipients.yaml and letters/: valid files load, broken ones name file:line: field."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from campaign.errors import LetterError, RegistryError, SelectionError
from campaign.registry import check_registry, load_letters, load_registry, select_recipients
from tests.conftest import DATA, ROOT


def write(tmp_path: Path, text: str, name: str = "recipients.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """\
recipients:
  - id: ohchr
    name: OHCHR
    tags: [un]
    languages: [en, ru]
    contacts:
      - email: a@ohchr.example
"""


def test_shipped_registry_loads_and_has_sources() -> None:
    registry = load_registry(ROOT / "recipients.yaml")
    assert len(registry.recipients) >= 10
    ids = {r.id for r in registry.recipients}
    assert {"ohchr", "un-wgad", "osce-odihr", "ru-mfa"} <= ids
    for recipient in registry.recipients:
        for contact in recipient.contacts:
            assert contact.source or recipient.source, f"{recipient.id}: unsourced address {contact.email}"
            assert contact.checked is None and recipient.checked is None  # nobody confirmed them live


def test_test_registry_loads() -> None:
    registry = load_registry(DATA / "workspace" / "recipients.yaml")
    assert registry.get("ohchr") is not None
    assert registry.get("ep-droi").postal_only  # type: ignore[union-attr]


def test_yaml_12_semantics(tmp_path: Path) -> None:
    text = (
        GOOD.replace("languages: [en, ru]", "languages: [en, ru, 'no']").replace("name: OHCHR", "name: no")
        + "    office_hours: {days: mon-fri, start: 09:00, end: '17:00'}\n"
    )
    registry = load_registry(write(tmp_path, text))
    recipient = registry.recipients[0]
    assert recipient.name == "no"  # YAML 1.1 would make this False
    assert recipient.office_hours is not None and recipient.office_hours.start.hour == 9


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "recipients.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode())
    assert load_registry(path).recipients[0].id == "ohchr"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace("a@ohchr.example", "not-an-address"),
            "recipients.yaml:7: recipients[0].contacts[0].email: not a valid address",
        ),
        (GOOD + "  - id: ohchr\n    name: Again\n    languages: [en]\n", "id 'ohchr' is used twice"),
        (
            GOOD.replace("    tags: [un]\n", "    tags: [un]\n    tags: [eu]\n"),
            'recipients.yaml:5: invalid YAML: found duplicate key "tags"',
        ),
        (GOOD.replace("  - id: ohchr", "\t- id: ohchr"), "a tab character"),
        (GOOD.replace("    tags: [un]\n", "    tagz: [un]\n"), "recipients.yaml:4: recipients[0].tagz: unknown key"),
        (
            GOOD.replace("languages: [en, ru]", "languages: [english]"),
            "recipients[0].languages[0]: 'english' is not an ISO 639-1",
        ),
        (GOOD.replace("id: ohchr", "id: OHCHR!"), "recipients.yaml:2: recipients[0].id: 'OHCHR!' is not a valid id"),
        (GOOD + "    timezone: Mars/Olympus\n", "recipients[0].timezone: 'Mars/Olympus' is not an IANA time zone"),
        (GOOD + "    max_per_day: many\n", "recipients[0].max_per_day"),
        (GOOD + "    office_hours: {days: someday}\n", "days are mon, tue"),
        (GOOD + "      - email: A@ohchr.example\n", "appears twice"),
        (
            GOOD.replace(
                "      - email: a@ohchr.example\n",
                '      - email: a@ohchr.example\n        name: "Evil\\r\\nBcc: x@y.example"\n',
            ),
            "contains a line break",
        ),
        ("recipients: []\n", "the list is empty"),
        ("", "the file is empty"),
        ("institutions:\n  - id: x\n", "expected a top-level `recipients:` list"),
        (
            GOOD.replace("    languages: [en, ru]\n", ""),
            "recipients.yaml:2: recipients[0].languages: required, but missing",
        ),
    ],
)
def test_broken_registries_name_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(RegistryError) as info:
        load_registry(write(tmp_path, text))
    assert expected in info.value.message
    assert "\n" not in info.value.message


def test_idn_domains_are_valid_and_normalised(tmp_path: Path) -> None:
    registry = load_registry(write(tmp_path, GOOD.replace("a@ohchr.example", "info@BÜCHER.example")))
    assert registry.recipients[0].contacts[0].email == "info@bücher.example"


def test_oversized_and_non_utf8_files(tmp_path: Path) -> None:
    big = tmp_path / "recipients.yaml"
    big.write_bytes(b"#" * (5 * 1024 * 1024 + 1))
    with pytest.raises(RegistryError, match="over the 5 MB limit"):
        load_registry(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(GOOD.replace("OHCHR", "Caf\xe9").encode("latin-1"))
    with pytest.raises(RegistryError, match=r"latin.yaml:3: not UTF-8"):
        load_registry(latin)


def test_check_warns_about_unconfirmed_addresses() -> None:
    registry = load_registry(DATA / "workspace" / "recipients.yaml")
    warnings = [str(w) for w in check_registry(registry, today=date(2026, 11, 28))]
    assert any("wgad@ohchr.example" in w and "no source" in w for w in warnings)
    assert any("never confirmed" in w for w in warnings)
    assert any("ep-droi" in w and "postal only" in w for w in warnings)


def test_selection_by_id_and_tag() -> None:
    registry = load_registry(DATA / "workspace" / "recipients.yaml")
    assert [r.id for r in select_recipients(registry, ids=["wgad", "ohchr"])] == ["wgad", "ohchr"]
    assert {r.id for r in select_recipients(registry, tags=["un", "osce"])} == {"ohchr", "wgad", "odihr"}
    with pytest.raises(SelectionError, match="no institution with id 'nobody'"):
        select_recipients(registry, ids=["nobody"])
    with pytest.raises(SelectionError, match="no institution has the tag"):
        select_recipients(registry, tags=["martians"])


def test_shipped_letters_load() -> None:
    letters = load_letters(ROOT / "letters")
    assert set(letters["peace-agreement"].languages) == {"en", "ru", "tg"}
    assert "peace-agreement-followup" in letters


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("no front matter\n", "letters/x/en.md.j2:1: missing front matter"),
        ("---\nsubject: [a\n---\nbody\n", "letters/x/en.md.j2:2: invalid YAML"),
        ("---\nsubject: s\ntitle: Hello\n---\nbody\n", "letters/x/en.md.j2:3: title: unknown key"),
        ("---\ndescription: x\n---\nbody\n", "subject: required, but missing"),
    ],
)
def test_broken_letters(tmp_path: Path, content: str, expected: str) -> None:
    folder = tmp_path / "letters" / "x"
    folder.mkdir(parents=True)
    (folder / "en.md.j2").write_text(content)
    with pytest.raises(LetterError) as info:
        load_letters(tmp_path / "letters")
    assert expected in info.value.message


def test_bad_language_file_name(tmp_path: Path) -> None:
    folder = tmp_path / "letters" / "x"
    folder.mkdir(parents=True)
    (folder / "english.md.j2").write_text("---\nsubject: s\n---\n")
    with pytest.raises(LetterError, match="'english' is not a language code"):
        load_letters(tmp_path / "letters")


def test_the_cache_is_used_and_follows_edits(tmp_path: Path) -> None:
    from campaign.registry import remember_registry

    path = write(tmp_path, GOOD)
    # As in a workspace: .campaign/cache. Reading writes the cache only where .campaign/
    # exists (the cache's grandparent was tmp_path's parent, so whether this passed
    # depended on whether another test had parsed the same text in this process first).
    cache = tmp_path / ".campaign" / "cache"
    registry = load_registry(path, cache_dir=cache)
    assert not cache.exists()  # reading never creates state
    cache.parent.mkdir()
    remember_registry(registry, path, cache)
    files = list(cache.glob("registry-*.json"))
    assert len(files) == 1 and oct(files[0].stat().st_mode & 0o777) == "0o600"
    assert load_registry(path, cache_dir=cache) == registry
    path.write_text(GOOD.replace("name: OHCHR", "name: Changed"))
    assert load_registry(path, cache_dir=cache).recipients[0].name == "Changed"
    files[0].write_text("{not json")
    path.write_text(GOOD)
    assert load_registry(path, cache_dir=cache) == registry  # a damaged cache is ignored
