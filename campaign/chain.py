"""The hash chain of the event log: canonical JSON and SHA-256, nothing else.

An event's record is ``{"time", "event", "message", "campaign", "data"}`` where
``time`` is UTC RFC 3339 with milliseconds and a ``Z``, ``message`` the RFC 5322
Message-ID (never a database row id), and ``data`` holds only strings, integers,
booleans, null, lists and objects: no floats. Its canonical JSON has sorted keys,
compact separators and UTF-8 (not ASCII-escaped). Then::

    hash = SHA-256( prev_hash + "\\n" + canonical_json(record) )   (hex, lowercase)

with ``prev_hash`` of the first event being 64 zeros. That is format 1, the format of
every event written before migration ``0008_chain_v2``; those events keep it forever.

Format 2 (every later event) commits to a header before the record::

    header = "campaign-log/2 " + campaign_tag + " " + message_tag
    hash   = SHA-256( prev_hash + "\n" + header + "\n" + SHA-256(canonical_json(record)) )

A tag is an opaque HMAC-SHA-256 of the event's campaign (or Message-ID) under the
workspace's secret key (``.campaign/chain.key``), cut to 32 hex digits, or ``-`` for an
event without one. Because the tags are inside the hash, an evidence bundle can list
every other event as (prev_hash, tags, record digest, hash) without its content, and a
verifier can still tell whether a left-out event belongs to the bundle's campaign or
letters: it carries their tag. The tags reveal nothing about other campaigns' names.

Because nothing in the record depends on where it is stored, the chain survives a move
to another database, and anyone can recompute it with ``sha256sum`` (see VERIFY.md in an
evidence bundle).

Pure functions, no I/O: the store calls them inside the transaction that appends.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

GENESIS = "0" * 64
FORMAT_V1 = 1
FORMAT_V2 = 2
V2_HEADER = "campaign-log/2"
NO_TAG = "-"


_PLAIN = (str, int, bool, type(None))


def _check(value: Any, path: str = "data") -> None:
    if type(value) is dict and all(type(v) in _PLAIN for v in value.values()):
        if all(type(k) is str for k in value):
            return  # the common case: a flat record of text and numbers
    if isinstance(value, float):
        raise ValueError(f"{path}: floats are not allowed in the log (use integers or text)")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: keys must be text")
            _check(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
    elif not (value is None or isinstance(value, str | int | bool)):
        raise ValueError(f"{path}: {type(value).__name__} cannot go in the log")


def canonical_json(value: Any) -> str:
    """Sorted keys, compact separators, no ASCII escaping, no floats."""
    _check(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record(time: str, event: str, message: str | None, campaign: str | None, data: dict[str, Any]) -> dict[str, Any]:
    """The part of an event the hash covers."""
    return {"time": time, "event": event, "message": message, "campaign": campaign, "data": data}


def link(prev_hash: str, rec: dict[str, Any]) -> str:
    """The hash of one event given the previous hash."""
    payload = prev_hash.encode("ascii") + b"\n" + canonical_json(rec).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()


def sha256_hex(data: bytes) -> str:
    """SHA-256 of bytes, lowercase hex (messages, reports, bundles)."""
    return hashlib.sha256(data).hexdigest()


def tag(key: bytes, kind: str, value: str | None) -> str:
    """The opaque tag of a campaign (``kind="campaign"``) or a letter (``kind="message"``,
    its Message-ID) under the workspace key: 32 hex digits, or ``-`` without a value."""
    if not value:
        return NO_TAG
    return hmac.new(key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()[:32]


def record_digest(rec: dict[str, Any]) -> str:
    """SHA-256 of a record's canonical JSON (what a format-2 hash commits to)."""
    return sha256_hex(canonical_json(rec).encode("utf-8"))


def link_v2(prev_hash: str, campaign_tag: str, message_tag: str, digest: str) -> str:
    """The hash of one format-2 event, from its previous hash, tags and record digest."""
    header = f"{V2_HEADER} {campaign_tag} {message_tag}"
    payload = f"{prev_hash}\n{header}\n{digest}".encode("ascii")
    return hashlib.sha256(payload).hexdigest()
