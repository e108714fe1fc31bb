"""Settings and the workspace: campaign.toml < CAMPAIGN_* environment < command-line options.

A workspace is a folder with ``campaign.toml``, ``recipients.yaml`` and ``letters/``.
Program state lives in ``.campaign/`` inside it (mode 0700, git-ignored).

Every setting can be overridden from the environment as ``CAMPAIGN_<SECTION>_<KEY>``
(``CAMPAIGN_SMTP_HOST``, ``CAMPAIGN_SENDING_RATE``); ``CAMPAIGN_WORKSPACE`` picks the
folder and ``CAMPAIGN_DB`` the store. Secrets never live in campaign.toml: they come from
``CAMPAIGN_SMTP_PASSWORD`` / ``CAMPAIGN_IMAP_PASSWORD`` or the system keyring, read only
when needed and never logged. Errors name the file and the dotted key
(``campaign.toml:12: smtp.port: ...``).

This module is the only home of keyring.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator

from campaign.errors import ConfigError, SecretError, SendLockError, UsageError, WorkspaceError
from campaign.models import Duration, Email, OneLine, Sender, StrictModel, describe_error

CONFIG_FILE = "campaign.toml"
REGISTRY_FILE = "recipients.yaml"
LETTERS_DIR = "letters"
STATE_DIR = ".campaign"
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the usual names for them."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SmtpSettings(StrictModel):
    """[smtp]: the submission server letters go through."""

    host: OneLine = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: OneLine | None = None
    helo_name: OneLine | None = None
    ca_file: OneLine | None = None
    timeout: Duration = timedelta(seconds=60)
    data_timeout: Duration = timedelta(minutes=10)
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4

    @field_validator("helo_name")
    @classmethod
    def _check_helo(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9.-]+|\[[0-9a-fA-F.:]+\]", value):
            raise ValueError(f"{value!r} is not a host name for EHLO")
        return value

    @model_validator(mode="after")
    def _plaintext_only_on_loopback(self) -> SmtpSettings:
        if self.security == "none" and not is_loopback(self.host):
            raise ValueError(
                f'security = "none" is allowed only for a loopback host, not {self.host!r}; use "starttls" or "tls"'
            )
        return self


class SendingSettings(StrictModel):
    """[sending]: pace and persistence."""

    rate: Annotated[float, Field(gt=0, le=10000)] = 1.0
    per_domain_rate: Annotated[float, Field(gt=0, le=10000)] = 0.2
    max_age: Duration = timedelta(days=3)
    retry_min: Duration = timedelta(minutes=1)
    retry_max: Duration = timedelta(hours=1)
    # Shared store: how long a claim stays with its worker unless renewed. A live worker
    # renews every third of it, so a slow send keeps its letters; a dead one loses them.
    lease: Duration = timedelta(minutes=15)
    # How often a running `campaign send` says it is alive (`campaign workers`), idle or not.
    heartbeat: Duration = timedelta(seconds=30)

    @field_validator("heartbeat")
    @classmethod
    def _heartbeat_is_positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=0.1):
            raise ValueError("must be at least 0.1s")
        return value

    @field_validator("lease")
    @classmethod
    def _lease_can_be_renewed(cls, value: timedelta) -> timedelta:
        # Renewed every third of a lease: a lease of a few seconds could run out between
        # two renewals on a busy machine, and another worker would send the letter again.
        if value < timedelta(seconds=3):
            raise ValueError("must be at least 3s (a worker renews its leases every third of a lease)")
        return value


class ImapSettings(StrictModel):
    """[receipts.imap]: the mailbox reports and replies arrive in."""

    host: OneLine
    port: Annotated[int, Field(ge=1, le=65535)] = 993
    username: OneLine
    folder: OneLine = "INBOX"
    security: Literal["tls", "starttls"] = "tls"
    ca_file: OneLine | None = None
    timeout: Duration = timedelta(seconds=60)


class ReceiptsSettings(StrictModel):
    """[receipts]: where delivery reports go and what is asked for."""

    return_path: Email | None = None
    verp: bool = False
    read_receipts: bool = False
    imap: ImapSettings | None = None


class DkimSettings(StrictModel):
    """[dkim]: sign every letter with the sender domain's key."""

    selector: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    domain: OneLine
    key_file: OneLine


class LettersSettings(StrictModel):
    """[letters]: what goes with each letter."""

    attach_pdf: bool = False


class PdfSettings(StrictModel):
    """[pdf]: signed PDF letters."""

    timestamp_url: OneLine | None = None
    city: OneLine | None = None


class StoreSettings(StrictModel):
    """[store]: where the queue and log live (default: .campaign/state.db)."""

    url: OneLine | None = None
    # How long one statement waits for another process's lock before it counts as busy.
    busy_timeout: Duration = timedelta(seconds=30)
    # How long `campaign send` keeps retrying a busy store before it stops (letters the
    # server accepted are then saved to .campaign/recovery/ and recorded by the next run).
    retry_for: Duration = timedelta(minutes=5)

    @field_validator("url")
    @classmethod
    def _no_password(cls, value: str | None) -> str | None:
        if value is not None:
            check_store_url(value)
        return value


_SECRET_PARAMETERS = {"password", "sslpassword", "passfile", "sslkey"}


def check_store_url(url: str) -> str:
    """Refuse store URLs that are not PostgreSQL or SQLite, or that carry a password
    (``user:pw@`` or a ``?password=`` parameter). The messages never repeat the URL, which
    may hold the secret."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        raise ValueError("not a URL: use postgresql://user@host/db (or sqlite:///path)") from None
    if parts.scheme not in ("postgresql", "postgres", "sqlite"):
        shown = url if not (password or parts.query) else f"{parts.scheme}://…"
        raise ValueError(f"{shown!r}: use postgresql://user@host/db (or sqlite:///path)")
    if password:
        raise ValueError("the store URL carries a password; remove it and use PGPASSWORD, ~/.pgpass or the keyring")
    names = {name.strip().lower() for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
    secret = sorted(names & _SECRET_PARAMETERS)
    if secret:
        raise ValueError(
            f"the store URL carries a secret in its {secret[0]} parameter; remove it and use PGPASSWORD, "
            "~/.pgpass or the keyring"
        )
    return url


class Settings(StrictModel):
    """Everything campaign.toml can say."""

    sender: Sender
    smtp: SmtpSettings = SmtpSettings()
    sending: SendingSettings = SendingSettings()
    receipts: ReceiptsSettings = ReceiptsSettings()
    dkim: DkimSettings | None = None
    letters: LettersSettings = LettersSettings()
    pdf: PdfSettings = PdfSettings()
    store: StoreSettings = StoreSettings()

    @property
    def helo_name(self) -> str:
        """EHLO name: the configured one, else the sender's domain, never this machine's name."""
        return self.smtp.helo_name or self.sender.domain.encode("idna").decode("ascii")

    @property
    def return_path(self) -> str:
        return self.receipts.return_path or self.sender.email


@dataclass(frozen=True)
class Workspace:
    """A campaign folder and its resolved settings."""

    root: Path
    settings: Settings

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def registry_path(self) -> Path:
        return self.root / REGISTRY_FILE

    @property
    def letters_dir(self) -> Path:
        return self.root / LETTERS_DIR

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def outbox_dir(self) -> Path:
        return self.state_dir / "outbox"

    @property
    def store_url(self) -> str:
        return self.settings.store.url or f"sqlite:///{self.state_dir / 'state.db'}"

    def relative(self, path: Path) -> str:
        """``path`` relative to the workspace when inside it, for messages."""
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    def ensure_state_dir(self) -> Path:
        """Create ``.campaign/`` (mode 0700) with a .gitignore; return it."""
        return ensure_private_dir(self.state_dir, gitignore=True)


class SendLock:
    """One `campaign send` per SQLite database: an exclusive flock on ``path`` (beside the
    database file, so every name for the same file finds the same lock). ``path=None``
    (a shared PostgreSQL queue) takes no lock. Raises SendLockError when it is held."""

    def __init__(self, path: Path | None, *, shown: Callable[[Path], str] = str) -> None:
        self.path = path
        self.shown = shown
        self.handle: Any = None

    def __enter__(self) -> SendLock:
        import fcntl

        if self.path is None:
            return self
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        self.handle = os.fdopen(fd, "r+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            self.handle = None
            raise SendLockError(
                f"{self.shown(self.path)}: another `campaign send` is using this database",
                hint="wait for it to finish (or stop it with Ctrl-C); two senders on one SQLite file would race",
            ) from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"{os.getpid()}\n")
        self.handle.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            import fcntl

            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


def ensure_private_dir(path: Path, *, gitignore: bool = False) -> Path:
    """Create ``path`` and its missing parents with mode 0700; tighten an existing one."""
    try:
        created = not path.exists()
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
        if gitignore and created:
            (path / ".gitignore").write_text("# campaign state: never commit\n*\n")
    except OSError as err:
        raise WorkspaceError(f"{path}: cannot create the state folder: {err.strerror}") from err
    return path


def resolve_root(directory: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    """The workspace folder: -C, else CAMPAIGN_WORKSPACE, else the current folder."""
    chosen = directory if directory is not None else env.get("CAMPAIGN_WORKSPACE") or "."
    root = Path(chosen).expanduser()
    if not root.is_dir():
        raise WorkspaceError(f"{root}: no such folder", hint="create one with `campaign init DIR`")
    return root.resolve()


def load_workspace(
    directory: str | os.PathLike[str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Workspace:
    """Find the workspace and resolve its settings.

    Raises WorkspaceError when there is no campaign.toml, ConfigError when it does not validate.
    """
    env = os.environ if env is None else env
    root = resolve_root(directory, env)
    path = root / CONFIG_FILE
    if not path.is_file():
        raise WorkspaceError(
            f"{path}: not a campaign workspace (no {CONFIG_FILE})",
            hint="run `campaign init DIR` to create one, or pass -C DIR",
        )
    settings = load_settings(path, env=env, overrides=overrides, labels=labels)
    return Workspace(root=root, settings=settings)


ENV_ALIASES = {"CAMPAIGN_DB": "store.url"}


def load_settings(
    path: Path,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Settings:
    """Read campaign.toml, apply CAMPAIGN_* variables, then ``overrides`` (dotted keys;
    ``labels`` names the option each came from, e.g. ``{"store.url": "--db"}``).

    Raises ConfigError naming the file, line and dotted key (UsageError when the bad value
    came from a command-line option).
    """
    env = os.environ if env is None else env
    name = path.name
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{name}: cannot read: {err.strerror}") from err
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{name}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start})",
            hint="save the file as UTF-8",
        ) from err
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        line = _toml_error_line(str(err))
        detail = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(err))
        where = f"{name}:{line}" if line else name
        raise ConfigError(f"{where}: invalid TOML: {detail}") from err

    origin: dict[str, str] = {}
    for section, model in _SECTIONS.items():
        for field in model.model_fields:
            var = f"CAMPAIGN_{section}_{field}".upper()
            if var in env:
                data.setdefault(section, {})
                if isinstance(data[section], dict):
                    data[section][field] = env[var]
                    origin[f"{section}.{field}"] = f"environment {var}"
    for var, dotted in ENV_ALIASES.items():
        if env.get(var):
            section, _, field = dotted.partition(".")
            data.setdefault(section, {})
            if isinstance(data[section], dict):
                data[section][field] = env[var]
                origin[dotted] = f"environment {var}"
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, field = dotted.partition(".")
        data.setdefault(section, {})
        if isinstance(data[section], dict):
            data[section][field] = value
            origin[dotted] = f"option {(labels or {}).get(dotted, '--' + field.replace('_', '-'))}"
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        dotted = ".".join(str(part) for part in first["loc"])
        message = _pydantic_message(first)
        named = re.match(r"^([a-z_]+\.[a-z_]+) ", message)
        if not dotted and named:  # a check across sections names its key in the message
            dotted, message = named.group(1), message[len(named.group(1)) :].strip()
        if dotted in origin:
            if origin[dotted].startswith("option "):
                raise UsageError(f"{origin[dotted][len('option ') :]}: {message}") from None
            raise ConfigError(f"{origin[dotted]}: {dotted}: {message}") from None
        overridden = sorted({where for key, where in origin.items() if key.startswith(dotted + ".")})
        if overridden:
            raise ConfigError(f"{name} with {', '.join(overridden)}: {dotted}: {message}") from None
        line = locate_toml_key(text, [str(p) for p in first["loc"]])
        where = f"{name}:{line}" if line else name
        hint = None
        if first["type"] == "extra_forbidden":
            hint = "check the spelling; the keys are listed in the comments `campaign init` writes"
        elif first["type"] == "missing" and dotted.startswith("sender"):
            hint = "add a [sender] section with name and email"
        raise ConfigError(f"{where}: {dotted}: {message}", hint=hint) from None


_SECTIONS: dict[str, type[StrictModel]] = {
    "sender": Sender,
    "smtp": SmtpSettings,
    "sending": SendingSettings,
    "receipts": ReceiptsSettings,
    "dkim": DkimSettings,
    "letters": LettersSettings,
    "pdf": PdfSettings,
    "store": StoreSettings,
}


def _toml_error_line(message: str) -> int | None:
    match = re.search(r"at line (\d+)", message)
    return int(match.group(1)) if match else None


def _pydantic_message(error: Mapping[str, Any]) -> str:
    return describe_error(error)


def locate_toml_key(text: str, path: list[str]) -> int | None:
    """Best-effort line number of a dotted key in TOML text (for error messages)."""
    lines = text.splitlines()
    keys = [p for p in path if not p.isdigit()]
    if not keys:
        return None
    # Find the deepest [section] header that prefixes the path, then the key below it.
    start, depth = 0, 0
    for i, line in enumerate(lines):
        header = re.match(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$", line)
        if header:
            names = [n.strip().strip('"') for n in header.group(1).split(".")]
            if names == keys[: len(names)] and len(names) >= depth:
                start, depth = i, len(names)
    if depth == len(keys):
        return start + 1
    target = keys[depth]
    for i in range(start + (1 if depth else 0), len(lines)):
        if depth and re.match(r"^\s*\[", lines[i]):
            break
        if re.match(rf"^\s*\"?{re.escape(target)}\"?\s*=", lines[i]):
            return i + 1
    return start + 1 if depth else None


# ---------------------------------------------------------------------------
# Secrets

KEYRING_SERVICE = "campaign"


def get_secret(env_var: str, account: str, *, env: Mapping[str, str] | None = None) -> str:
    """A password from ``env_var``, else from the system keyring under ``account``.

    Raises SecretError (one line, never containing the secret).
    """
    env = os.environ if env is None else env
    value = env.get(env_var)
    if value:
        return value
    try:
        import keyring
        import keyring.errors

        stored = keyring.get_password(KEYRING_SERVICE, account)
    except Exception as err:  # keyring backends raise many unrelated types
        raise SecretError(
            f"no password in {env_var} and the system keyring is not usable here ({type(err).__name__})",
            hint=f"set {env_var} in the environment of this command",
        ) from None
    if not stored:
        raise SecretError(
            f"no password for {account}: {env_var} is not set and the keyring has none",
            hint=f"set {env_var}, or store it with `campaign smtp login`",
        )
    return str(stored)


def keyring_secret(account: str) -> str | None:
    """A password from the system keyring, or None when there is none (or no keyring)."""
    try:
        import keyring

        stored = keyring.get_password(KEYRING_SERVICE, account)
    except Exception:  # keyring backends raise many unrelated types; no keyring means no secret
        return None
    return str(stored) if stored else None


def store_account(url: str) -> str:
    """The keyring account for a PostgreSQL store: ``postgres:user@host:port/db``."""
    parts = urlsplit(url)
    return f"postgres:{parts.username or ''}@{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


def store_secret(account: str, secret: str) -> str:
    """Save a password in the system keyring; return the backend's name.

    Raises SecretError when no keyring backend is available.
    """
    try:
        import keyring

        backend = keyring.get_keyring()
        keyring.set_password(KEYRING_SERVICE, account, secret)
    except Exception as err:  # keyring backends raise many unrelated types
        raise SecretError(
            f"the system keyring is not usable here ({type(err).__name__})",
            hint="set CAMPAIGN_SMTP_PASSWORD in the environment instead",
        ) from None
    return type(backend).__name__


def smtp_account(settings: Settings) -> str:
    """The keyring account name for the SMTP password."""
    user = settings.smtp.username or settings.sender.email
    return f"smtp:{user}@{settings.smtp.host}:{settings.smtp.port}"


def imap_account(imap: ImapSettings) -> str:
    """The keyring account name for the IMAP password."""
    return f"imap:{imap.username}@{imap.host}:{imap.port}"
