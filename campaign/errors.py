"""The errors `campaign` raises, and what a user should do about each.

Every error the core raises on purpose is a :class:`CampaignError`. It carries a
one-line ``message`` that names the file, line, field or host concerned, and an
optional ``hint``: the next step ("rerun with --update", "set
CAMPAIGN_SMTP_PASSWORD"). The CLI prints the message (and the hint) and exits;
it never shows a traceback for these.

Third-party exceptions are wrapped with ``raise ... from err`` in the module
that is the library's single home (YAML in ``registry``, Jinja2 in ``render``,
SQL in ``store``, SMTP in ``transport``, PDF in ``pdf``).

The tree::

    CampaignError
    ├── WorkspaceError        a missing or malformed workspace, campaign.toml, file modes
    │   └── ConfigError       campaign.toml or CAMPAIGN_* settings that do not validate
    ├── RegistryError         recipients.yaml: syntax, schema, duplicate ids
    ├── LetterError           letters/: missing files, front matter, template syntax
    │   └── RenderError       a letter that fails for one institution (undefined variable,
    │                         header injection, no usable language)
    ├── SelectionError        unknown letter, institution, tag or message id
    ├── StoreError            the state database: corrupt, newer schema, a failed statement
    │   ├── StoreBusyError    retryable: locked by another process, a serialization failure or
    │   │                     deadlock, a connection lost (``retryable = True``)
    │   ├── StoreConflictError a message was not in the state a move expected (a lost lease)
    │   └── SendLockError     another `campaign send` holds this workspace
    ├── TransportError        SMTP: connection, TLS or authentication problems that stop a run
    │   └── SecretError       a password or passphrase that is missing or unreadable
    ├── LedgerError           a broken hash chain or evidence bundle
    ├── ReceiptError          a file given to `receipts import` that is not mail
    ├── ImapError             the IMAP mailbox cannot be reached or read
    ├── PdfError              rendering, signing or verifying a PDF; key files
    ├── CaseError             .campaign/cases/: a case file, its consent, a submission
    ├── SigningError          signing drives: receipts, exports, payloads
    │   └── SubmissionError   a supporter's form that cannot be accepted (a code for the page)
    └── UsageError            a combination of options that cannot work (exit code 2)
"""

from __future__ import annotations


class CampaignError(Exception):
    """A problem the user can fix; ``message`` is one line, ``hint`` the next step."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = " ".join(message.split("\n")).strip()
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class WorkspaceError(CampaignError):
    """The workspace folder, its state folder or campaign.toml cannot be used."""


class ConfigError(WorkspaceError):
    """campaign.toml or a CAMPAIGN_* variable does not validate."""


class RegistryError(CampaignError):
    """recipients.yaml cannot be read or does not validate."""


class LetterError(CampaignError):
    """A letter folder or template cannot be loaded."""


class RenderError(LetterError):
    """A letter cannot be rendered for one institution."""


class SelectionError(CampaignError):
    """An id, tag or name given on the command line matches nothing."""


class StoreError(CampaignError):
    """The state database cannot be opened, migrated or written.

    ``retryable`` says whether the same call may succeed if simply tried again later
    (see :class:`StoreBusyError`); every other store error stops what was running.
    """

    retryable = False


class StoreBusyError(StoreError):
    """The store is busy or briefly unreachable: SQLite locked or busy, a PostgreSQL
    serialization failure, deadlock or lost connection. Nothing was committed (or, for a
    connection lost during COMMIT, possibly was: the store's writes are idempotent)."""

    retryable = True


class StoreConflictError(StoreError):
    """A message was not in the state a move expected (another worker took it over)."""


class SendLockError(StoreError):
    """Another `campaign send` is running on this workspace."""


class TransportError(CampaignError):
    """The SMTP server cannot be used at all: the run stops, messages stay as they were."""


class SecretError(TransportError):
    """A password or passphrase is missing or cannot be read."""


class LedgerError(CampaignError):
    """The event chain or an evidence bundle does not verify."""


class ReceiptError(CampaignError):
    """A file given for import is not mail."""


class ImapError(CampaignError):
    """The IMAP mailbox cannot be reached or read."""


class PdfError(CampaignError):
    """A PDF cannot be rendered, signed or verified, or a key file cannot be used."""


class CaseError(CampaignError):
    """A case file does not validate, or a case may not go to a body (consent, profile).

    Messages name the file, line and field, never a value: case data is sensitive."""


class SigningError(CampaignError):
    """A signing drive, receipt, drive export or supporter's submission that cannot be used."""


class SubmissionError(SigningError):
    """A supporter's submission refused: ``code`` names the reason (the page words it in the
    supporter's language), ``field`` the form field, ``status`` the HTTP status to answer."""

    def __init__(self, code: str, *, field: str | None = None, status: int = 422, detail: str = "") -> None:
        super().__init__(f"{code}{': ' + field if field else ''}{' (' + detail + ')' if detail else ''}")
        self.code = code
        self.field = field
        self.status = status


class UsageError(CampaignError):
    """Options that contradict each other; exit code 2 like any usage error."""

    exit_code = 2
