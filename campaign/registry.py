"""recipients.yaml and letters/ → validated models, with errors that name file:line: field.

Contract:
- YAML is read as YAML 1.2 with ruamel.yaml (``no`` stays a string, ``0123`` is not
  octal, ``09:00`` stays text), duplicate keys are errors, a UTF-8 BOM and CRLF line
  endings are fine, files over 5 MB are refused before parsing.
- Every error is a ``RegistryError`` or ``LetterError`` whose message reads like
  ``recipients.yaml:14: recipients[2].contacts[0].email: not a valid address``.
- ``check_registry`` returns warnings (never raises) about addresses nobody confirmed.

This module is the only home of ruamel.yaml.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from campaign.errors import LetterError, RegistryError, SelectionError
from campaign.models import (
    FrontMatter,
    Invalid,
    Letter,
    LetterTemplate,
    Recipient,
    Registry,
    nfc,
    parse,
    split_front_matter,
)

MAX_REGISTRY_BYTES = 5 * 1024 * 1024
MAX_TEMPLATE_BYTES = 1024 * 1024
STALE_AFTER = timedelta(days=365)
TEMPLATE_SUFFIX = ".md.j2"
PARTIALS_DIR = "_partials"


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.version = (1, 2)
    yaml.allow_duplicate_keys = False
    return yaml


def read_text(path: Path, *, label: str, limit: int, error: type[RegistryError | LetterError]) -> str:
    """Read a UTF-8 file (BOM allowed, CRLF normalised) no larger than ``limit`` bytes."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise error(f"{label}: no such file") from None
    except OSError as err:
        raise error(f"{label}: cannot read: {err.strerror}") from err
    if size > limit:
        raise error(
            f"{label}: {size:,} bytes is over the {limit // 1048576} MB limit ({limit:,} bytes); "
            "split it or remove what is not needed"
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise error(
            f"{label}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x})",
            hint="save the file as UTF-8",
        ) from err
    return text.replace("\r\n", "\n")


def parse_yaml(text: str, label: str, error: type[RegistryError | LetterError], *, line_offset: int = 0) -> Any:
    """Parse YAML 1.2 text; raise ``error`` with ``label:line`` on any syntax problem.

    ``line_offset``: lines of the file before ``text`` (a letter's opening ``---``)."""
    try:
        return _yaml().load(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        if err.context_mark is not None and (
            "end of stream" in (err.problem or "") or "stream end" in (err.problem or "")
        ):
            mark = err.context_mark  # an unclosed quote: point at where it opened, not at the end
        line = f":{mark.line + 1 + line_offset}" if mark is not None else ""
        problem = err.problem or err.context or "invalid YAML"
        if "duplicate key" in problem:
            problem = problem.split(" with value")[0]
            problem += "; each key may appear once"
        if "\\t" in problem or "'\\t'" in problem:
            problem = "a tab character: indent YAML with spaces"
        raise error(f"{label}{line}: invalid YAML: {problem}") from None
    except YAMLError as err:
        raise error(f"{label}: invalid YAML: {err}") from None
    except ValueError as err:  # ruamel builds dates and numbers itself: 2026-13-45 lands here
        bad = _bad_date_line(text)
        where = f"{label}:{bad + line_offset}" if bad else label
        raise error(f"{where}: invalid value: {err}", hint="dates are written YYYY-MM-DD and must exist") from None


def _bad_date_line(text: str) -> int | None:
    """The line of the first date-looking value that is not a real date."""
    import datetime as dt

    for number, line in enumerate(text.splitlines(), start=1):
        for match in re.finditer(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b", line):
            try:
                dt.date(*(int(g) for g in match.groups()))
            except ValueError:
                return number
    return None


MAX_VALUES = 500_000
"""More values than this after expanding YAML aliases is an alias bomb, not a registry."""


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_VALUES


def _plain(node: Any, budget: _Budget | None = None) -> Any:
    """ruamel's commented containers and scalar subclasses → plain Python values.

    Raises OverflowError when aliases expand to more than MAX_VALUES values."""
    budget = budget or _Budget()
    budget.left -= 1
    if budget.left < 0:
        raise OverflowError
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, int | bool) else k: _plain(v, budget) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v, budget) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _line_of(root: Any, loc: Sequence[str | int]) -> int | None:
    """The 1-based line of ``loc`` in a ruamel round-trip tree (nearest known ancestor)."""
    node = root
    line: int | None = None
    for part in loc:
        lc = getattr(node, "lc", None)
        try:
            if isinstance(node, dict) and part in node:
                if lc is not None:
                    line = lc.key(part)[0] + 1
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                if lc is not None:
                    line = lc.item(part)[0] + 1
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError, AttributeError):
            break
    if line is None and getattr(root, "lc", None) is not None:
        line = root.lc.line + 1
    return line


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _clean_loc(loc: Sequence[Any]) -> list[str | int]:
    """Drop pydantic's union-branch markers (``str``, ``dict[...]``) from a location."""
    known = {"str", "dict[str,str]", "function-after[_slug(), str]"}
    return [p for p in loc if not (isinstance(p, str) and (p in known or "[" in p or "(" in p))]


def _message(err: Invalid) -> str:
    if err.kind == "extra_forbidden":
        return "unknown key; check the spelling (see the README for the keys)"
    if err.kind == "missing":
        return "required, but missing"
    if err.kind == "too_short" and "languages" in err.loc:
        return "list at least one language"
    return err.message


def validation_error(
    err: Invalid, tree: Any, label: str, error: type[RegistryError | LetterError], line_offset: int = 0
) -> RegistryError | LetterError:
    """The first validation problem as ``label:line: dotted.field: message``."""
    loc = _clean_loc(err.loc)
    line = _line_of(tree, loc)
    where = f"{label}:{line + line_offset}" if line else label
    field = _dotted(loc) or "(top level)"
    return error(f"{where}: {field}: {_message(err)}")


def load_registry(path: Path, *, label: str | None = None, cache_dir: Path | None = None) -> Registry:
    """Load and validate recipients.yaml.

    With ``cache_dir``, a validated copy kept there as JSON, keyed by the file's SHA-256,
    is used when present (YAML parsing costs about a millisecond per institution; a send
    of a large campaign should not pay it every time). Reading never writes the cache:
    :func:`remember_registry` does, after a command that changed state succeeded.

    Raises RegistryError naming the file, line and field.
    """
    label = label or path.name
    text = read_text(path, label=label, limit=MAX_REGISTRY_BYTES, error=RegistryError)
    cached = _cache_path(cache_dir, text) if cache_dir is not None else None
    if cached is not None and cached.is_file():
        try:
            return parse(Registry, json.loads(cached.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            pass  # a damaged cache is ignored and rewritten
    return _parse_registry(text, label)


def remember_registry(registry: Registry, path: Path, cache_dir: Path) -> None:
    """Write the cache for an already validated registry (no parsing)."""
    text = read_text(path, label=path.name, limit=MAX_REGISTRY_BYTES, error=RegistryError)
    target = _cache_path(cache_dir, text)
    if not target.is_file():
        _write_cache(target, registry)


def _cache_path(cache_dir: Path, text: str) -> Path:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return cache_dir / f"registry-{digest}.json"


def _write_cache(target: Path, registry: Registry) -> None:
    try:
        target.parent.mkdir(mode=0o700, exist_ok=True)
        for old in target.parent.glob("registry-*.json"):
            old.unlink(missing_ok=True)
        tmp = target.with_suffix(".tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(registry.model_dump_json())
        os.replace(tmp, target)
    except OSError:
        pass  # a cache that cannot be written costs time, nothing else


def _parse_registry(text: str, label: str) -> Registry:
    tree = parse_yaml(text, label, RegistryError)
    if tree is None:
        raise RegistryError(
            f"{label}: the file is empty", hint="start it with `recipients:` and a list of institutions"
        )
    if not isinstance(tree, dict) or "recipients" not in tree:
        raise RegistryError(
            f"{label}:1: expected a top-level `recipients:` list",
            hint="see the example written by `campaign init`",
        )
    if tree["recipients"] is None or tree["recipients"] == []:
        line = _line_of(tree, ["recipients"])
        raise RegistryError(f"{label}:{line}: recipients: the list is empty; add at least one institution")
    _check_duplicates(tree, label)
    try:
        plain = _plain(tree)
    except OverflowError:
        anchor = next(
            (n for n, line in enumerate(text.splitlines(), 1) if re.search(r"(^|\s)[&*][A-Za-z0-9_-]+", line)), 1
        )
        raise RegistryError(
            f"{label}:{anchor}: YAML aliases expand to more than {MAX_VALUES:,} values",
            hint="write the entries out instead of nesting anchors and aliases",
        ) from None
    try:
        return parse(Registry, plain)
    except Invalid as err:
        raise validation_error(err, tree, label, RegistryError) from None


def _check_duplicates(tree: Any, label: str) -> None:
    """Duplicate ids and addresses, named at the line of the second occurrence."""
    items = tree.get("recipients") if isinstance(tree, dict) else None
    if not isinstance(items, list):
        return
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        rid = item.get("id")
        if isinstance(rid, str):
            if rid in seen:
                line = _line_of(tree, ["recipients", index, "id"])
                raise RegistryError(
                    f"{label}:{line}: recipients[{index}].id: id {rid!r} is used twice "
                    f"(first at recipients[{seen[rid]}]); ids must be unique"
                )
            seen[rid] = index
        contacts = item.get("contacts")
        if isinstance(contacts, list):
            emails: set[str] = set()
            for c_index, contact in enumerate(contacts):
                email = contact.get("email") if isinstance(contact, dict) else None
                if isinstance(email, str):
                    key = email.strip().casefold()
                    if key in emails:
                        line = _line_of(tree, ["recipients", index, "contacts", c_index, "email"])
                        raise RegistryError(
                            f"{label}:{line}: recipients[{index}].contacts[{c_index}].email: {email} appears twice; "
                            "list each address once"
                        )
                    emails.add(key)


@dataclass(frozen=True)
class Finding:
    """Something worth a look that does not stop anything."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def check_registry(registry: Registry, *, today: date, label: str = "recipients.yaml") -> list[Finding]:
    """Warn about contacts nobody sourced or confirmed recently, and postal-only institutions."""
    warnings: list[Finding] = []
    for recipient in registry.recipients:
        if recipient.postal_only:
            warnings.append(Finding(f"{label}: {recipient.id}", "postal only: no e-mail contact; letters go by post"))
        for contact in recipient.contacts:
            where = f"{label}: {recipient.id} <{contact.email}>"
            source = contact.source or recipient.source
            checked = contact.checked or recipient.checked
            if not source:
                warnings.append(Finding(where, "no source: record where this address was published"))
            if checked is None:
                warnings.append(
                    Finding(where, "never confirmed: confirm the address and set `checked:` before a real send")
                )
            elif today - checked > STALE_AFTER:
                warnings.append(
                    Finding(where, f"last confirmed {checked.isoformat()}, over a year ago: confirm it again")
                )
    return warnings


def select_recipients(
    registry: Registry,
    *,
    ids: Iterable[str] = (),
    tags: Iterable[str] = (),
    everyone: bool = False,
) -> list[Recipient]:
    """Institutions by id (in the order given) or by any of the tags; all with ``everyone``.

    Raises SelectionError naming an unknown id or a tag nobody has.
    """
    ids, tags = list(ids), list(tags)
    if everyone:
        return list(registry.recipients)
    chosen: list[Recipient] = []
    for rid in ids:
        recipient = registry.get(rid)
        if recipient is None:
            known = ", ".join(r.id for r in registry.recipients[:8])
            raise SelectionError(
                f"recipients.yaml: no institution with id {rid!r}",
                hint=f"known ids include: {known}; see `campaign recipients list`",
            )
        if recipient not in chosen:
            chosen.append(recipient)
    for tag in tags:
        tagged = [r for r in registry.recipients if tag in r.tags]
        if not tagged:
            raise SelectionError(
                f"recipients.yaml: no institution has the tag {tag!r}",
                hint="see the tags with `campaign recipients list`",
            )
        chosen.extend(r for r in tagged if r not in chosen)
    return chosen


# ---------------------------------------------------------------------------
# Letters


def load_letters(letters_dir: Path) -> dict[str, Letter]:
    """Discover ``letters/<id>/<lang>.md.j2`` and parse each front matter.

    Folders starting with ``_`` (partials) are not letters. Raises LetterError.
    """
    if not letters_dir.is_dir():
        raise LetterError(f"{letters_dir.name}/: no such folder", hint="create it with a letter, see `campaign init`")
    letters: dict[str, Letter] = {}
    for folder in sorted(p for p in letters_dir.iterdir() if p.is_dir()):
        if folder.name.startswith(("_", ".")):
            continue
        templates: dict[str, LetterTemplate] = {}
        for file in sorted(folder.glob(f"*{TEMPLATE_SUFFIX}")):
            template = load_letter_template(letters_dir, file)
            templates[template.lang] = template
        if not templates:
            continue
        try:
            letters[folder.name] = parse(Letter, {"id": folder.name, "templates": templates})
        except Invalid:
            raise LetterError(
                f"letters/{folder.name}/: {folder.name!r} is not a valid letter id: "
                "use lowercase letters, digits and hyphens"
            ) from None
    return letters


def load_letter_template(letters_dir: Path, file: Path) -> LetterTemplate:
    """One ``<lang>.md.j2`` file: validate its name and front matter."""
    rel = file.relative_to(letters_dir).as_posix()
    label = f"letters/{rel}"
    if not file.resolve().is_relative_to(letters_dir.resolve()):
        raise LetterError(
            f"{label}: a symbolic link to a file outside letters/: refused",
            hint="a letter may only use files inside letters/; copy the text in instead of linking to it",
        )
    lang = file.name[: -len(TEMPLATE_SUFFIX)]
    if not re.fullmatch(r"[a-z]{2}", lang):
        raise LetterError(f"{label}: {lang!r} is not a language code; name files <lang>.md.j2, e.g. en.md.j2")
    text = nfc(read_text(file, label=label, limit=MAX_TEMPLATE_BYTES, error=LetterError))
    front, _body, body_line = split_front_matter(text)
    if front is None:
        raise LetterError(
            f"{label}:1: missing front matter",
            hint="start the file with ---, a line `subject: ...`, and ---",
        )
    tree = parse_yaml(front, label, LetterError, line_offset=1)
    if not isinstance(tree, dict):
        raise LetterError(f"{label}:2: front matter: expected `subject: ...`")
    try:
        meta = parse(FrontMatter, _plain(tree))
    except Invalid as err:
        raise validation_error(err, tree, label, LetterError, line_offset=1) from None  # +1: the opening ---
    return LetterTemplate(lang=lang, path=rel, subject=meta.subject, description=meta.description, body_line=body_line)


def get_letter(letters: dict[str, Letter], letter_id: str) -> Letter:
    """The letter named ``letter_id``; raises SelectionError listing the ones that exist."""
    try:
        return letters[letter_id]
    except KeyError:
        known = ", ".join(sorted(letters)) or "none"
        raise SelectionError(
            f"letters/{letter_id}/: no such letter", hint=f"letters in this workspace: {known}"
        ) from None
