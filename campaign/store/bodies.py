"""Letter bodies in the store, compact: zlib against a dictionary shared by similar letters.

Contract:
- ``message_bodies.body`` holds the bytes as stored, ``message_bodies.encoding`` says how:
  NULL (the exact bytes), ``zlib`` (zlib-compressed), or ``zdict:<id>`` (compressed with
  the zlib preset dictionary ``body_dicts.id``). Every reader gets the exact bytes back
  through :func:`decode`: hashing, sending, verifying and exporting never see the
  compression.
- The dictionary of a (campaign, letter, language) is the first body queued for it: the
  letters of one campaign differ in a name and an address, so each further body is a few
  hundred bytes instead of 20 KB (a Russian letter in base64). Dictionaries are written
  once and never change (they are referenced by id).
- Compression is checked when it is done: a body that does not decode to its exact bytes
  is stored raw instead (it never is; the check costs one decompression).
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from campaign.store.sql import Tx

_ZLIB = "zlib"
_ZDICT = "zdict:"
_LEVEL = 6
MAX_DICT = 32 * 1024  # zlib's window: a longer dictionary is cut to its last 32 KiB


def encode(tx: Tx, body: bytes, family: str) -> tuple[bytes, str | None]:
    """(stored bytes, encoding) for ``body``; ``family`` names the dictionary it shares
    (e.g. ``campaign|letter|lang``): the first body of a family becomes its dictionary."""
    row = tx.one("SELECT id, data FROM body_dicts WHERE family = ?", (family,))
    if row is None:
        tx.execute("INSERT INTO body_dicts (family, data) VALUES (?, ?)", (family, zlib.compress(body[-MAX_DICT:], 9)))
        row = tx.one("SELECT id, data FROM body_dicts WHERE family = ?", (family,))
        assert row is not None
    dict_id = int(row["id"])
    zdict = _dictionary(tx, dict_id, bytes(row["data"]))
    packer = zlib.compressobj(_LEVEL, zdict=zdict)
    packed = packer.compress(body) + packer.flush()
    unpacker = zlib.decompressobj(zdict=zdict)
    if unpacker.decompress(packed) + unpacker.flush() != body:  # never expected: then keep it raw
        return body, None
    return packed, f"{_ZDICT}{dict_id}"


def decode(tx: Tx, stored: Any, encoding: str | None) -> bytes:
    """The exact bytes of a stored body. Raises zlib.error or ValueError on damage."""
    data = bytes(stored) if stored is not None else b""
    if encoding is None:
        return data
    if encoding == _ZLIB:
        return zlib.decompress(data)
    if encoding.startswith(_ZDICT):
        dict_id = int(encoding[len(_ZDICT) :])
        row = tx.one("SELECT data FROM body_dicts WHERE id = ?", (dict_id,))
        if row is None:
            raise ValueError(f"the dictionary {dict_id} of a stored body is missing")
        unpacker = zlib.decompressobj(zdict=_dictionary(tx, dict_id, bytes(row["data"])))
        return unpacker.decompress(data) + unpacker.flush()
    raise ValueError(f"unknown body encoding {encoding!r}")


def _dictionary(tx: Tx, dict_id: int, packed: bytes) -> bytes:
    """A dictionary, unpacked once per store connection (ids are never reused in a database)."""
    cache: dict[int, bytes] | None = getattr(tx.store, "_body_dicts", None)
    if cache is None:
        cache = {}
        tx.store._body_dicts = cache  # type: ignore[attr-defined]
    if dict_id not in cache:
        cache[dict_id] = zlib.decompress(packed)
    return cache[dict_id]


def compress_existing(tx: Any) -> None:
    """Migration step: store every existing body zlib-compressed, in place, a batch at a time."""
    last = 0
    while True:
        rows = tx.rows(
            "SELECT id, body FROM message_bodies WHERE encoding IS NULL AND id > ? ORDER BY id LIMIT 500", (last,)
        )
        if not rows:
            return
        for row in rows:
            data = bytes(row["body"])
            packed = zlib.compress(data, _LEVEL)
            if len(packed) < len(data):
                tx.execute("UPDATE message_bodies SET body = ?, encoding = ? WHERE id = ?", (packed, _ZLIB, row["id"]))
        last = int(rows[-1]["id"])
