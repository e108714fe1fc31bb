"""The hash chain of the event log: canonical JSON and SHA-256, nothing else.

An event's record is ``{"time", "event", "message", "campaign", "data"}`` where
``time`` is UTC RFC 3339 with milliseconds and a ``Z``, ``message`` the RFC 5322
Message-ID (never a database row id), and ``data`` holds only strings, integers,
booleans, null, lists and objects: no floats. Its canonical JSON has sorted keys,
compact separators and UTF-8 (not ASCII-escaped). Then::

    hash = SHA-256( prev_hash + "\\n" + canonical_json(record) )   (hex, lowercase)

with ``prev_hash`` of the first event being 64 zeros. Because nothing in the record
depends on where it is stored, the chain survives a move to another database, and
anyone can recompute it with ``sha256sum`` (see VERIFY.md in an evidence bundle).

Pure functions, no I/O: the store calls them inside the transaction that appends.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = "0" * 64


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
