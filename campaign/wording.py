"""How numbers and sentences are written in everything a user reads.

Contract:
- :func:`plural` is the one way to put a count next to a noun: ``plural(1, "letter")``
  is "1 letter", ``plural(3, "letter")`` is "3 letters", ``plural(2, "reply")`` is
  "2 replies"; give the plural form for an irregular noun. Use it wherever a count
  reaches a person (messages, hints, summaries), never ``f"{n} letters"``.
- :func:`clauses` joins pieces of one message (a server's reply, our explanation, a
  hint) so that they never run together: "550 5.1.1 User unknown; the address was
  refused". Empty pieces are left out, trailing punctuation of a piece that is not the
  last is dropped.
- :func:`did_you_mean` names the closest known word to a misspelt one.
- :func:`plural_category` is the CLDR plural category ("one", "few", "many", "other")
  of a whole number in a language, from Babel's CLDR data (the rules change between CLDR
  releases, Tajik's among them, so they are not copied here), for words kept per category.

Pure functions, no I/O; the lowest level of the house (no module of campaign imported).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterable

_ES_ENDINGS = ("s", "x", "z", "ch", "sh")
_VOWELS = "aeiou"


def plural_form(singular: str) -> str:
    """The regular English plural of a noun (``reply`` → ``replies``, ``address`` →
    ``addresses``). A phrase is pluralised on its first word when it contains " of "
    or " in " ("letter in the queue" → "letters in the queue"), else on its last."""
    for joint in (" of ", " in ", " to ", " for "):
        head, sep, tail = singular.partition(joint)
        if sep:
            return plural_form(head) + sep + tail
    words = singular.rsplit(" ", 1)
    word = words[-1]
    if word.endswith("y") and len(word) > 1 and word[-2] not in _VOWELS:
        word = word[:-1] + "ies"
    elif word.endswith(_ES_ENDINGS):
        word += "es"
    else:
        word += "s"
    return " ".join([*words[:-1], word])


def plural(count: int, singular: str, plural_word: str | None = None) -> str:
    """``count`` followed by the noun in the right number: "1 letter", "0 letters"."""
    noun = singular if count == 1 else (plural_word or plural_form(singular))
    return f"{count:,} {noun}"


def noun(count: int, singular: str, plural_word: str | None = None) -> str:
    """Only the noun in the right number for ``count`` ("letter" or "letters")."""
    return singular if count == 1 else (plural_word or plural_form(singular))


def plural_category(count: int, lang: str) -> str:
    """The CLDR plural category of the whole number ``count`` in ``lang``, from Babel's
    CLDR data: ru 1, 21 → "one"; 2–4, 22 → "few"; 0, 5–20, 25 → "many"; en 1 → "one",
    else "other". A language Babel does not know follows English."""
    return _plural_rule(lang.split("-")[0].split("_")[0].lower())(abs(count))


@functools.lru_cache(maxsize=16)
def _plural_rule(lang: str) -> Callable[[int], str]:
    # Babel is imported when a category is first asked for (a cover page), not by every
    # command that counts something in English.
    from babel import Locale, UnknownLocaleError

    try:
        return Locale.parse(lang).plural_form
    except (UnknownLocaleError, ValueError):
        return Locale.parse("en").plural_form


def clauses(*parts: str | None, sep: str = "; ") -> str:
    """Join the non-empty ``parts`` of one message so they never run together."""
    kept = [" ".join(str(p).split()) for p in parts if p is not None and str(p).strip()]
    out = []
    for index, part in enumerate(kept):
        if index < len(kept) - 1:
            part = part.rstrip(" .;,:")
        out.append(part)
    return sep.join(out)


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`` (did you mean 'name'?)`` when a known word is close to ``word``, else ``""``."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def listing(items: Iterable[str], *, limit: int = 8) -> str:
    """``a, b, c`` (and "… and 3 more" past ``limit``)."""
    items = list(items)
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f" and {len(items) - limit} more"
    return shown
