"""Pseudonymous signers' real names, sealed to the organisation's separate X25519 key.

Contract:
- :func:`new_names_key` makes an X25519 key pair (PyNaCl); the private half is written
  by the caller to a file the organiser keeps offline, the public half lives in
  ``.campaign/keys/names.pub``. It is not the ECDSA seal key: reading sealed names needs
  this key, and ``campaign serve`` never loads it.
- :func:`seal_name` encrypts with a libsodium sealed box (an ephemeral key per message:
  the server that seals cannot open what it sealed). :func:`open_name` needs the
  private half.
- Raises :class:`~campaign.errors.SigningError` for a malformed key or sealed value.

This module is the only home of PyNaCl.
"""

from __future__ import annotations

import base64
import unicodedata

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from campaign.errors import SigningError

PUBLIC_PREFIX = "campaign-names-public-v1:"
PRIVATE_PREFIX = "campaign-names-private-v1:"


def new_names_key() -> tuple[str, str]:
    """(private key text, public key text), each one line."""
    key = PrivateKey.generate()
    private = PRIVATE_PREFIX + base64.b64encode(bytes(key)).decode("ascii")
    public = PUBLIC_PREFIX + base64.b64encode(bytes(key.public_key)).decode("ascii")
    return private, public


def _decode(text: str, prefix: str, what: str) -> bytes:
    line = text.strip()
    if not line.startswith(prefix):
        raise SigningError(f"not a {what} (it starts with {prefix})", hint="give the file `campaign sign keygen` wrote")
    try:
        raw = base64.b64decode(line[len(prefix) :], validate=True)
    except ValueError:
        raise SigningError(f"the {what} is damaged (not base64)") from None
    if len(raw) != 32:
        raise SigningError(f"the {what} is damaged (32 bytes expected, not {len(raw)})")
    return raw


def public_from_text(text: str) -> bytes:
    return _decode(text, PUBLIC_PREFIX, "names public key")


def public_of_private(private_text: str) -> str:
    key = PrivateKey(_decode(private_text, PRIVATE_PREFIX, "names private key"))
    return PUBLIC_PREFIX + base64.b64encode(bytes(key.public_key)).decode("ascii")


def seal_name(public_key: bytes, name: str) -> bytes:
    """``name`` (NFC UTF-8) sealed to ``public_key``; only the private half opens it."""
    return bytes(SealedBox(PublicKey(public_key)).encrypt(unicodedata.normalize("NFC", name).encode("utf-8")))


def open_name(private_text: str, sealed: bytes) -> str:
    """The real name inside ``sealed``. Raises SigningError with the wrong key."""
    key = PrivateKey(_decode(private_text, PRIVATE_PREFIX, "names private key"))
    try:
        return SealedBox(key).decrypt(sealed).decode("utf-8")
    except (CryptoError, UnicodeDecodeError):
        raise SigningError("a sealed name does not open with this key (another drive's or another key's)") from None
