"""recipients.yaml and letters/ → validated models, with errors that name file:line: field.

Contract:
- YAML is read as YAML 1.2 with ruamel.yaml (``no`` stays a string, ``0123`` is not
  octal, ``09:00`` stays text), duplicate keys are errors, a UTF-8 BOM and CRLF line
  endings are fine, files over 5 MB are refused before parsing.
- Every error is a ``RegistryError`` or ``LetterError`` whose message reads like
  ``recipients.yaml:14: recipients[2].contacts[0].email: not a valid address``.
- ``check_registry`` returns warnings (never raises) about addresses nobody confirmed.

Large registries (every member of a parliament) are read fast and only once:

- one parse per process (a memo keyed by the file's SHA-256), and a validated JSON copy in
  ``.campaign/cache/`` keyed the same way, used by every later command;
- a first parse through libyaml (PyYAML's C parser, values made straight from its events)
  with YAML 1.2 core-schema resolution, for the common case: no anchors, aliases or
  tags, no duplicate key, no number in an unusual form. Anything else, and every file
  that does not validate, goes through ruamel.yaml's round-trip parser, which reports
  errors with their line numbers. The two give the same values
  (tests/test_registry_scale.py checks the corpus).

This package is the only home of ruamel.yaml and PyYAML (PyYAML in its `fast` module).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from campaign.errors import CampaignError, LetterError, RegistryError, SelectionError
from campaign.files import write_private
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
from campaign.registry.fast import fast_tree as _fast_tree

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


def read_text(path: Path, *, label: str, limit: int, error: type[CampaignError]) -> str:
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
    try:
        raw = path.read_bytes()
    except OSError as err:  # a folder where a file should be, no permission, an I/O error
        raise error(f"{label}: cannot read: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise error(
            f"{label}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x})",
            hint="save the file as UTF-8",
        ) from err
    return text.replace("\r\n", "\n")


def parse_yaml(text: str, label: str, error: type[CampaignError], *, line_offset: int = 0) -> Any:
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


def line_of(root: Any, loc: Sequence[str | int]) -> int | None:
    """The 1-based line of ``loc`` (a path of keys and indexes) in a tree from :func:`parse_yaml`."""
    return _line_of(root, loc)


def plain_tree(tree: Any, label: str, error: type[CampaignError]) -> Any:
    """A tree from :func:`parse_yaml` as plain dicts, lists and scalars; raises ``error``
    for YAML aliases that expand to more than MAX_VALUES values."""
    try:
        return _plain(tree)
    except OverflowError:
        raise error(
            f"{label}: YAML aliases expand to more than {MAX_VALUES:,} values",
            hint="write the entries out instead of nesting anchors and aliases",
        ) from None


def append_yaml_item(text: str, key: str, item: dict[str, Any], *, label: str, error: type[CampaignError]) -> str:
    """``text`` (a YAML mapping) with ``item`` appended to the list under ``key``, keeping
    comments and layout elsewhere."""
    import io

    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    parse_yaml(text, label, error)  # errors as everywhere else
    loader = _yaml()
    loader.preserve_quotes = True  # "0123" must stay a string
    tree = loader.load(text)
    if not isinstance(tree, dict):
        raise error(f"{label}:1: expected a mapping of fields")
    if tree.get(key) is None:
        tree[key] = CommentedSeq()
    if not isinstance(tree[key], list):
        raise error(f"{label}:{_line_of(tree, [key])}: {key}: expected a list")
    entry = CommentedMap()
    for name, value in item.items():
        if value is not None:
            entry[name] = value
    tree[key].append(entry)
    tree[key].fa.set_block_style()
    dumper = YAML(typ="rt")
    dumper.allow_unicode = True
    dumper.indent(mapping=2, sequence=4, offset=2)
    stream = io.StringIO()
    dumper.dump(tree, stream)
    return stream.getvalue()


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


_MEMO: dict[str, Registry] = {}
"""Registries parsed in this process, by the SHA-256 of their text (models are frozen)."""


def load_registry(path: Path, *, label: str | None = None, cache_dir: Path | None = None) -> Registry:
    """Load and validate recipients.yaml, once per process and content.

    With ``cache_dir``, a validated copy kept there as JSON, keyed by the file's SHA-256,
    is used when present, and written after a parse when the folder's parent (the
    workspace's ``.campaign/``) exists: reading never creates state.

    Raises RegistryError naming the file, line and field.
    """
    label = label or path.name
    text = read_text(path, label=label, limit=MAX_REGISTRY_BYTES, error=RegistryError)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    found = _MEMO.get(digest)
    if found is not None:
        return found
    cached = cache_dir / f"registry-{digest}.json" if cache_dir is not None else None
    registry = None
    if cached is not None and cached.is_file():
        try:
            registry = Registry.model_validate_json(cached.read_bytes(), context={"trusted": True})
        except (OSError, ValueError):
            registry = None  # a damaged cache is ignored and rewritten
    if registry is None:
        registry = _parse_registry(text, label)
        if cached is not None and cached.parent.parent.is_dir():
            _write_cache(cached, registry)
    _MEMO[digest] = registry
    return registry


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
        # Without the defaults: a third of the size, and models that hold only what was set.
        write_private(
            target, registry.model_dump_json(exclude_defaults=True).encode("utf-8"), replace=True, durable=False
        )
    except OSError:
        pass  # a cache that cannot be written costs time, nothing else


def _parse_registry(text: str, label: str) -> Registry:
    fast = _fast_tree(text)
    if isinstance(fast, dict) and isinstance(fast.get("recipients"), list) and fast["recipients"]:
        try:
            return parse(Registry, fast)  # plain values already: no copy (it cost 10 MB at 10,000)
        except (Invalid, OverflowError):
            pass  # the careful path below names the line
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


# ---------------------------------------------------------------------------
# Writing: new institutions appended, existing ones updated, comments kept

_BLOCK_ORDER = (
    "id", "name", "tags", "languages", "country", "timezone", "website", "postal_address",
    "source", "checked", "max_per_day", "office_hours", "fields", "contacts",
)  # fmt: skip
_FLOW_KEYS = {"tags", "languages", "office_hours"}


def _yaml_value(key: str, value: Any) -> Any:
    """A plain value as ruamel will write it in the house style of recipients.yaml:
    short lists and office hours in flow style, multi-line text as a literal block."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

    if isinstance(value, str):
        return LiteralScalarString(value.rstrip("\n") + "\n") if "\n" in value.strip() else value
    if isinstance(value, list):
        seq = CommentedSeq([_yaml_value(key, v) for v in value])
        if key in _FLOW_KEYS or (key == "contacts" and not value):
            seq.fa.set_flow_style()
        return seq
    if isinstance(value, dict) and key == "office_hours":  # quoted, as YAML 1.1 tools would read 09:00 as a number
        mapping = CommentedMap((k, DoubleQuotedScalarString(str(v))) for k, v in value.items())
        mapping.fa.set_flow_style()
        return mapping
    if isinstance(value, dict):
        mapping = CommentedMap((k, _yaml_value(k if key != "fields" else "", v)) for k, v in value.items())
        if key in _FLOW_KEYS:
            mapping.fa.set_flow_style()
        return mapping
    return value


def _entry_map(entry: dict[str, Any]) -> Any:
    from ruamel.yaml.comments import CommentedMap

    ordered = sorted(entry, key=lambda k: _BLOCK_ORDER.index(k) if k in _BLOCK_ORDER else len(_BLOCK_ORDER))
    return CommentedMap((k, _yaml_value(k, entry[k])) for k in ordered)


def _detect_indent(text: str) -> tuple[int, int, int]:
    """(mapping, sequence, offset) indentation as recipients.yaml writes its list."""
    match = re.search(r"^recipients:[ \t]*(?:#.*)?\n(?:[ \t]*(?:#.*)?\n)*([ ]*)-([ ]+)\S", text, re.M)
    if not match:
        return 2, 4, 2
    offset, gap = len(match.group(1)), len(match.group(2))
    return 2, offset + 1 + gap, offset


def write_registry_entries(path: Path, entries: Sequence[dict[str, Any]], *, label: str | None = None) -> str:
    """Add institutions to recipients.yaml, keeping every comment and the rest of the file.

    ``entries`` are plain values as a validated :class:`Recipient` dumps them. An entry
    whose id exists replaces the keys it gives (contacts matched by address: updated, or
    added); any other is appended. The new text is validated as a whole before the file
    is replaced (atomically, keeping its mode), and returned. Raises RegistryError."""
    import io

    label = label or path.name
    text = read_text(path, label=label, limit=MAX_REGISTRY_BYTES, error=RegistryError)
    yaml = _yaml()
    mapping, sequence, offset = _detect_indent(text)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    yaml.width = 4096  # never re-wrap anyone's long lines
    yaml.preserve_quotes = True  # "09:00" stays quoted, as the author wrote it
    parse_yaml(text, label, RegistryError)  # syntax problems named like everywhere else
    tree = yaml.load(text)
    if not isinstance(tree, dict) or not isinstance(tree.get("recipients"), list):
        raise RegistryError(f"{label}:1: expected a top-level `recipients:` list", hint="fix it, then import again")
    items = tree["recipients"]
    by_id = {item.get("id"): item for item in items if isinstance(item, dict)}
    spaced = re.search(r"\n[ \t]*\n[ \t]*-[ \t]+id:", text) is not None  # a blank line between institutions
    for entry in entries:
        existing = by_id.get(entry["id"])
        if existing is None:
            items.append(_entry_map(entry))
            if spaced:
                items.yaml_set_comment_before_after_key(len(items) - 1, before="\n", indent=offset)
            continue
        for key, value in entry.items():
            if key == "contacts":
                _merge_contacts(existing, value)
            elif key != "id":
                existing[key] = _yaml_value(key, value)
    yaml.version = None  # no "%YAML 1.2" line: the file is read as YAML 1.2 anyway
    out = io.StringIO()
    yaml.dump(tree, out)
    new_text = out.getvalue()
    _parse_registry(new_text, label)  # the same checks as any registry, before writing
    _replace_file(path, new_text)
    return new_text


def _merge_contacts(existing: Any, contacts: list[dict[str, Any]]) -> None:
    current = existing.get("contacts")
    if not isinstance(current, list) or not current:
        existing["contacts"] = _yaml_value("contacts", contacts)
        return
    by_email = {str(c.get("email", "")).casefold(): c for c in current if isinstance(c, dict)}
    for contact in contacts:
        found = by_email.get(str(contact["email"]).casefold())
        if found is None:
            current.append(_yaml_value("contact", contact))
        else:
            for key, value in contact.items():
                found[key] = _yaml_value(key, value)


def _replace_file(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and move it over (same mode)."""
    try:
        mode = path.stat().st_mode & 0o777
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise RegistryError(f"{path.name}: cannot write: {err.strerror or err}") from err


def describe_invalid(err: Invalid) -> tuple[list[str | int], str]:
    """(location without pydantic's markers, message): the words every registry error uses."""
    return _clean_loc(err.loc), _message(err)


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
        warnings.extend(_missing_translations(recipient, label))
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


def _missing_translations(recipient: Recipient, label: str) -> list[Finding]:
    """A name or address given per language that lacks one of the institution's languages."""
    found = []
    for key in ("name", "postal_address"):
        value = getattr(recipient, key)
        if not isinstance(value, dict):
            continue
        missing = [lang for lang in recipient.languages if lang not in value]
        if missing:
            fallback = "en" if "en" in value else next(iter(value))
            found.append(
                Finding(
                    f"{label}: {recipient.id}",
                    f"{key} has no {', '.join(missing)} version; letters in "
                    f"{'that language' if len(missing) == 1 else 'those languages'} use the {fallback} one",
                )
            )
    return found


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
    try:
        folders = sorted(p for p in letters_dir.iterdir() if p.is_dir())
    except OSError as err:
        raise LetterError(f"{letters_dir.name}/: cannot read: {err.strerror or err}") from None
    for folder in folders:
        if folder.name.startswith(("_", ".")):
            continue
        templates: dict[str, LetterTemplate] = {}
        try:
            files = sorted(folder.glob(f"*{TEMPLATE_SUFFIX}"))
        except OSError as err:
            raise LetterError(f"{letters_dir.name}/{folder.name}/: cannot read: {err.strerror or err}") from None
        for file in files:
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
    return LetterTemplate(
        lang=lang,
        path=rel,
        subject=meta.subject,
        description=meta.description,
        body_line=body_line,
        voice=meta.voice,
        case=meta.case,
    )


def get_letter(letters: dict[str, Letter], letter_id: str) -> Letter:
    """The letter named ``letter_id``; raises SelectionError listing the ones that exist."""
    try:
        return letters[letter_id]
    except KeyError:
        known = ", ".join(sorted(letters)) or "none"
        raise SelectionError(
            f"letters/{letter_id}/: no such letter", hint=f"letters in this workspace: {known}"
        ) from None
