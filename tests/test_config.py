"""campaign.toml: valid settings, precedence, and errors naming file:line: dotted.key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from campaign.config import load_settings, load_workspace
from campaign.errors import ConfigError, WorkspaceError
from campaign.models import parse_duration
from tests.conftest import ROOT

BASE = """\
[sender]
name = "Org"
email = "letters@org.example"

[smtp]
host = "smtp.org.example"
port = 587
security = "starttls"

[sending]
rate = 1.0
per_domain_rate = 0.2
max_age = "3d"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "campaign.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_and_scaffold_configs_validate() -> None:
    settings = load_settings(ROOT / "campaign.toml", env={})
    assert settings.sender.email == "letters@campaign.example"
    scaffold = load_settings(ROOT / "campaign" / "scaffold" / "campaign.toml", env={})
    assert scaffold.smtp.security == "starttls"


def test_defaults_and_helo_name(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, BASE), env={})
    assert settings.sending.max_age == timedelta(days=3)
    assert settings.helo_name == "org.example"  # never this machine's hostname
    assert settings.return_path == "letters@org.example"


def test_environment_and_options_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    settings = load_settings(path, env={"CAMPAIGN_SMTP_PORT": "2525", "CAMPAIGN_SENDING_RATE": "5"})
    assert settings.smtp.port == 2525 and settings.sending.rate == 5
    settings = load_settings(path, env={"CAMPAIGN_SENDING_RATE": "5"}, overrides={"sending.rate": 9})
    assert settings.sending.rate == 9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BASE.replace("port = 587", 'port = "many"'), "campaign.toml:7: smtp.port: expected a whole number"),
        (BASE.replace("port = 587", "prot = 587"), "campaign.toml:7: smtp.prot: unknown key"),
        (
            BASE.replace('security = "starttls"', 'security = "none"'),
            'security = "none" is allowed only for a loopback host',
        ),
        (BASE.replace('security = "starttls"', 'security = "ssl"'), "campaign.toml:8: smtp.security"),
        (
            BASE.replace('max_age = "3d"', 'max_age = "three days"'),
            "campaign.toml:13: sending.max_age: 'three days' is not a duration",
        ),
        (
            BASE.replace('email = "letters@org.example"', 'email = "nope"'),
            "campaign.toml:3: sender.email: not a valid address",
        ),
        (BASE.replace('[sender]\nname = "Org"\nemail = "letters@org.example"\n', ""), "sender: required, but missing"),
        (BASE + '[store]\nurl = "postgresql://u:secret@db.example/c"\n', "the store URL carries a password"),
        (BASE.replace("rate = 1.0", "rate = 1.0\nrate = 2.0"), "campaign.toml:12: invalid TOML"),
        (BASE + "[colour]\nx = 1\n", "campaign.toml:14: colour: unknown key"),
    ],
)
def test_broken_configs(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), env={})
    assert expected in info.value.message
    assert "secret" not in info.value.message


def test_bad_environment_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="environment CAMPAIGN_SMTP_PORT: smtp.port"):
        load_settings(write(tmp_path, BASE), env={"CAMPAIGN_SMTP_PORT": "x"})


def test_missing_workspace(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="not a campaign workspace"):
        load_workspace(tmp_path, env={})
    with pytest.raises(WorkspaceError, match="no such folder"):
        load_workspace(tmp_path / "nope", env={})


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("10m", 600), ("1h30m", 5400), ("3d", 259200), ("2w", 1209600), (45, 45)]
)
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds
