"""The fast registry path (libyaml, YAML 1.2 core schema) gives exactly the values of the
careful one (ruamel.yaml round-trip), or steps aside; and a registry is parsed once."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaign import registry
from campaign.errors import CampaignError

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted(
    [ROOT / "recipients.yaml", *ROOT.glob("tests/**/recipients.yaml"), *ROOT.glob("tests/bad_inputs/*/files/*.yaml")]
)
TRICKY = """recipients:
  - id: a
    name: no
    tags: [yes, on, off, NO, "y"]
    languages: [en]
    country: NO
    max_per_day: 010
    checked: 2026-11-20
    office_hours: {days: mon-fri, start: 09:00, end: 17:30}
    contacts:
      - email: a@a.example
        name: 1e3
"""


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_fast_parser_agrees_with_the_careful_one_or_steps_aside(path: Path) -> None:
    try:
        text = path.read_text(encoding="utf-8")
        careful = registry._plain(registry.parse_yaml(text, path.name, CampaignError))
    except (CampaignError, UnicodeDecodeError, OverflowError):
        return  # the careful parser refuses it: nothing to compare
    fast = registry._fast_tree(text)
    if fast is not None:
        assert registry._plain(fast) == careful


def test_yaml_1_1_readings_never_leak_through_the_fast_path() -> None:
    careful = registry._plain(registry.parse_yaml(TRICKY, "tricky", CampaignError))
    fast = registry._fast_tree(TRICKY)
    assert fast is None or registry._plain(fast) == careful  # 010 is unusual: the careful path decides
    assert careful["recipients"][0]["name"] == "no" and careful["recipients"][0]["country"] == "NO"
    plain = TRICKY.replace("max_per_day: 010", "max_per_day: 10").replace("name: 1e3", 'name: "1e3"')
    fast = registry._fast_tree(plain)
    assert fast is not None and registry._plain(fast) == registry._plain(registry.parse_yaml(plain, "t", CampaignError))


def test_duplicate_keys_and_aliases_take_the_careful_path() -> None:
    assert registry._fast_tree("recipients:\n  - id: a\n    id: b\n") is None
    assert registry._fast_tree("x: &a [1]\ny: *a\n") is None


def test_a_registry_is_parsed_once_per_process_and_cached_for_the_next(tmp_path: Path) -> None:
    path = tmp_path / "recipients.yaml"
    path.write_text((ROOT / "tests" / "data" / "workspace" / "recipients.yaml").read_text())
    state = tmp_path / ".campaign"
    cache = state / "cache"
    registry._MEMO.clear()
    first = registry.load_registry(path, cache_dir=cache)
    assert not cache.exists(), "reading never creates state"
    assert registry.load_registry(path, cache_dir=cache) is first  # the memo
    state.mkdir()
    registry._MEMO.clear()
    registry.load_registry(path, cache_dir=cache)
    [cached] = cache.glob("registry-*.json")
    assert oct(cached.stat().st_mode & 0o777) == "0o600"
    registry._MEMO.clear()
    assert registry.load_registry(path, cache_dir=cache) == first  # from the JSON copy
    # ... without checking every address again: the copy holds them validated and normalised
    # (10,000 addresses cost `status` a second when the trusted path was never taken).
    from campaign import models

    registry._MEMO.clear()
    models._validated_address.cache_clear()
    assert registry.load_registry(path, cache_dir=cache) == first
    assert models._validated_address.cache_info().misses == 0
