"""Institutions as a table: CSV (and .xlsx) rows ↔ the registry's entries.

Contract:
- :func:`read_table` reads a spreadsheet export as people make them: UTF-8 with or without
  a byte-order mark, or Windows-1251 (what Excel writes for "CSV" in Russian locales),
  separated by ``,`` or ``;`` (or tabs); it says which it found. Nothing else is guessed.
- :func:`entries_from_rows` validates every row with the registry's own model and
  words (:func:`campaign.registry.describe_invalid`), naming the row (as a spreadsheet
  numbers it: the header is row 1) and the column instead of a line. Rows with the same
  ``id`` are one institution with several contacts.
- :func:`rows_from_registry` is the way back: one row per contact (institution columns
  repeated), every translation and custom field in its own column, so an export imports
  again unchanged.
- Raises ``RegistryError`` for anything wrong with the file; writes nothing.

The columns (``LANG`` is a language code, ``KEY`` a field name)::

    id, name, name.LANG, tags, languages, country, timezone, website,
    postal_address, postal_address.LANG, source, checked, max_per_day, office_hours,
    field.KEY,
    email, contact_name, role, salutation, salutation.LANG, contact_source,
    contact_checked, contact_field.KEY

``tags`` and ``languages`` are separated by spaces or commas; ``office_hours`` is written
``mon-fri 09:00-17:00``.
"""

from __future__ import annotations

import codecs
import copy
import csv
import io
import re
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from campaign.errors import RegistryError, UsageError
from campaign.models import Contact, Invalid, Recipient, Registry, parse
from campaign.registry import describe_invalid
from campaign.wording import did_you_mean, plural

MAX_TABLE_BYTES = 5 * 1024 * 1024

INSTITUTION_COLUMNS = (
    "id", "name", "tags", "languages", "country", "timezone", "website", "postal_address",
    "source", "checked", "max_per_day", "office_hours",
)  # fmt: skip
CONTACT_COLUMNS = ("email", "contact_name", "role", "salutation", "contact_source", "contact_checked")
_CONTACT_KEYS = {
    "email": "email",
    "contact_name": "name",
    "role": "role",
    "salutation": "salutation",
    "contact_source": "source",
    "contact_checked": "checked",
}
_PER_LANGUAGE = {"name", "postal_address", "salutation"}
_LISTS = {"tags", "languages"}
_HOURS = re.compile(r"^\s*([a-z,\- ]+?)\s+(\d{1,2}:\d{2})\s*[-–]\s*(\d{1,2}:\d{2})\s*$", re.I)


@dataclass
class Table:
    """A spreadsheet read into text: its header, its rows, and how it was read."""

    label: str
    header: list[str]
    rows: list[list[str]]  # rows[0] is spreadsheet row 2
    encoding: str = "UTF-8"
    delimiter: str = ","

    @property
    def described(self) -> str:
        names = {",": "comma", ";": "semicolon", "\t": "tab"}
        return f"{self.encoding}, {names.get(self.delimiter, repr(self.delimiter))}-separated"


# ---------------------------------------------------------------------------
# Reading the file


def read_table(path: Path, *, encoding: str | None = None, label: str | None = None) -> Table:
    """Read a CSV (or .xlsx) file of institutions. Raises RegistryError."""
    label = label or path.name
    try:
        size = path.stat().st_size
        if size > MAX_TABLE_BYTES:
            raise RegistryError(f"{label}: {size:,} bytes is over the 5 MB limit", hint="split the file")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RegistryError(f"{label}: no such file") from None
    except OSError as err:
        raise RegistryError(f"{label}: cannot read: {err.strerror or err}") from None
    if raw.startswith(b"PK\x03\x04"):
        return _read_xlsx(path, label)
    text, used = _decode(raw, label, encoding)
    if not text.strip():
        raise RegistryError(f"{label}: the file is empty", hint="start it with a header row: id,name,languages,email")
    delimiter = _delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        records = list(reader)
    except csv.Error as err:
        raise RegistryError(f"{label}: row {reader.line_num}: not valid CSV: {err}") from None
    header = [cell.strip() for cell in records[0]]
    return Table(label, header, records[1:], used, delimiter)


def _decode(raw: bytes, label: str, encoding: str | None) -> tuple[str, str]:
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise UsageError(f"--encoding {encoding!r}: not an encoding Python knows (e.g. utf-8, cp1251)") from None
        try:
            return raw.decode(encoding).removeprefix("\ufeff"), encoding
        except UnicodeDecodeError as err:
            raise RegistryError(f"{label}: not {encoding} text (byte 0x{raw[err.start]:02x})") from None
    if raw.startswith(codecs.BOM_UTF8):
        try:
            return raw[3:].decode("utf-8"), "UTF-8 with BOM"
        except UnicodeDecodeError as err:
            raise RegistryError(f"{label}: starts as UTF-8 but byte 0x{raw[err.start + 3]:02x} is not") from None
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16"), "UTF-16"
    try:
        return raw.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1251"), "Windows-1251"
    except UnicodeDecodeError as err:
        raise RegistryError(
            f"{label}: neither UTF-8 nor Windows-1251 text (byte 0x{raw[err.start]:02x})",
            hint='save it from your spreadsheet as "CSV UTF-8", or name the encoding with --encoding',
        ) from None


def _delimiter(text: str) -> str:
    sample = "\n".join(text.splitlines()[:20])
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
    except csv.Error:
        first = text.splitlines()[0]
        return max((",", ";", "\t"), key=first.count)


def _read_xlsx(path: Path, label: str) -> Table:
    """The first sheet of an .xlsx workbook, as text cells."""
    try:
        import openpyxl
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        raise RegistryError(
            f"{label}: an Excel workbook; reading .xlsx needs openpyxl",
            hint='save the sheet as "CSV UTF-8" and import that file',
        ) from None
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        with warnings.catch_warnings():
            # openpyxl warns about workbooks other programs wrote without a default style;
            # the cells read the same, and the user can do nothing about it.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"openpyxl\.")
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
            sheet = book.worksheets[0]
            records = [[_cell_text(c) for c in row] for row in sheet.iter_rows(values_only=True)]
            book.close()
    except (OSError, ValueError, KeyError, IndexError, TypeError, zipfile.BadZipFile, InvalidFileException) as err:
        raise RegistryError(
            f"{label}: not a readable .xlsx workbook ({type(err).__name__})",
            hint='open it in your spreadsheet and save it again, or as "CSV UTF-8"',
        ) from None
    while records and not any(records[-1]):
        records.pop()
    if not records:
        raise RegistryError(
            f"{label}: the first sheet is empty", hint="put a header row first: id,name,languages,email"
        )
    header = [cell.strip() for cell in records[0]]
    while header and not header[-1]:
        header.pop()
    return Table(label, header, [r[: len(header)] for r in records[1:]], "Excel workbook", "")


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "date") and callable(value.date):
        return value.date().isoformat()
    return str(value)


# ---------------------------------------------------------------------------
# Rows → registry entries


@dataclass
class _Where:
    """Which spreadsheet row and column each part of an entry came from."""

    rows: list[int] = field(default_factory=list)  # the rows of one institution, first first
    columns: dict[str, str] = field(default_factory=dict)  # entry key or "contacts.N.key" → column


@dataclass(frozen=True)
class Imported:
    """One institution read from the table: its entry and the rows it came from."""

    id: str
    entry: dict[str, Any]
    recipient: Recipient
    rows: tuple[int, ...]


def _check_header(table: Table) -> None:
    known = {*INSTITUTION_COLUMNS, *CONTACT_COLUMNS}
    seen: set[str] = set()
    for index, column in enumerate(table.header):
        where = f"{table.label}: row 1, column {_letter(index)}"
        if not column:
            raise RegistryError(f"{where}: the column has no name", hint="name every column in the header row")
        if column in seen:
            raise RegistryError(f"{where}: {column!r} appears twice", hint="keep one column of each name")
        seen.add(column)
        base, _, rest = column.partition(".")
        if column in known:
            continue
        if base in _PER_LANGUAGE and re.fullmatch(r"[a-z]{2}", rest):
            continue
        if base in ("field", "contact_field") and rest:
            continue
        every = [*INSTITUTION_COLUMNS, *CONTACT_COLUMNS, "name.ru", "field.KEY"]
        raise RegistryError(
            f"{where}: unknown column {column!r}{did_you_mean(column, every)}",
            hint="the columns are listed by `campaign recipients import --help`",
        )
    if "id" not in seen:
        raise RegistryError(
            f"{table.label}: row 1: no `id` column", hint="the header needs at least id, name, languages"
        )


def _letter(index: int) -> str:
    """A spreadsheet column letter (0 → A, 26 → AA), to find the cell at once."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


def _split_list(value: str) -> list[str]:
    return [part for part in re.split(r"[\s,;]+", value) if part]


def _hours(value: str) -> Any:
    match = _HOURS.match(value)
    if not match:
        return value  # the model names what is wrong with it
    return {"days": match.group(1).replace(" ", ""), "start": match.group(2), "end": match.group(3)}


def _value(base: str, text: str) -> Any:
    if base in _LISTS:
        return _split_list(text)
    if base == "office_hours":
        return _hours(text)
    if base == "max_per_day":
        return int(text) if text.isdigit() else text
    return text.replace("\r\n", "\n")


def first_rows(table: Table) -> dict[str, int]:
    """Each id in the table and the spreadsheet row where it first appears."""
    column = table.header.index("id") if "id" in table.header else None
    found: dict[str, int] = {}
    if column is None:
        return found
    for offset, cells in enumerate(table.rows):
        rid = cells[column].strip() if column < len(cells) else ""
        if rid:
            found.setdefault(rid, offset + 2)
    return found


def entries_from_rows(table: Table, existing: Mapping[str, Recipient] | None = None) -> list[Imported]:
    """Validate every row; return one entry per institution in the order first seen.

    With ``existing`` (``--update``), a row for a known id changes only the cells it
    fills: per-language values and fields are merged, contacts matched by address, and
    the returned entry holds only what the rows gave (for the writer to change in place).

    Raises RegistryError for the first problem, naming row and column (and how many
    other rows have problems too)."""
    _check_header(table)
    grouped: dict[str, tuple[dict[str, Any], _Where]] = {}
    problems: list[tuple[int, str, str]] = []  # (row, column, message)
    for offset, cells in enumerate(table.rows):
        row = offset + 2
        values = {col: (cells[i].strip() if i < len(cells) else "") for i, col in enumerate(table.header)}
        if len(cells) > len(table.header) and any(c.strip() for c in cells[len(table.header) :]):
            problems.append((row, _letter(len(table.header)), "more cells than the header has columns"))
            continue
        if not any(values.values()):
            continue  # an empty row: spreadsheets leave them
        rid = values.get("id", "")
        if not rid:
            problems.append((row, "id", "required, but empty"))
            continue
        entry, where = grouped.setdefault(rid, ({"id": rid}, _Where()))
        where.rows.append(row)
        first = len(where.rows) == 1
        contact: dict[str, Any] = {}
        for column, text in values.items():
            if not text or column == "id":
                continue
            base, _, rest = column.partition(".")
            if base in _CONTACT_KEYS or base == "contact_field":
                key = _CONTACT_KEYS.get(base, "fields")
                if base == "contact_field":
                    contact.setdefault("fields", {})[rest] = text
                elif rest:
                    current = contact.get(key)
                    contact[key] = {**(current if isinstance(current, dict) else {}), rest: text}
                else:
                    contact[key] = text
                where.columns[f"contacts.{len(entry.get('contacts', []))}.{key}{'.' + rest if rest else ''}"] = column
                continue
            key = "fields" if base == "field" else base
            value = _value(base, text)
            current = entry.get(key)
            if rest and isinstance(current, str):  # name and name.ru for one institution
                problems.append((row, column, f"give either {base} or {base}.LANG columns for one institution"))
                continue
            before = current.get(rest) if rest and isinstance(current, dict) else (None if rest else current)
            if not first and before is not None and before != value:
                problems.append((row, column, f"differs from row {where.rows[0]} of the same id {rid!r}"))
                continue
            if rest:  # name.ru, postal_address.tg, field.desk
                entry[key] = {**(current if isinstance(current, dict) else {}), rest: value}
            else:
                entry[key] = value
            where.columns.setdefault(f"{key}.{rest}" if rest else key, column)
        if contact:
            entry.setdefault("contacts", []).append(contact)
    imported: list[Imported] = []
    for rid, (entry, where) in grouped.items():
        entry.setdefault("contacts", [])
        known = (existing or {}).get(rid)
        merged, positions = _merged(_dump(known), entry) if known is not None else (entry, {})
        try:
            recipient = parse(Recipient, merged)
        except Invalid as err:
            loc, message = describe_invalid(err)
            if known is not None and loc[:1] == ["contacts"] and len(loc) > 1:
                back = {m: i for i, m in positions.items()}
                loc = ["contacts", back[loc[1]], *loc[2:]] if loc[1] in back else ["contacts"]
            row, column = _locate(loc, where, table.header)
            problems.append((row, column, message))
            continue
        dumped = _dump(recipient)
        if known is not None:  # only what the rows gave, for the writer to change in place
            given = {k: dumped[k] for k in entry if k not in ("id", "contacts") and k in dumped}
            contacts = [dumped["contacts"][positions[i]] for i in range(len(entry["contacts"]))]
            dumped = {"id": rid, **given, "contacts": contacts}
        imported.append(Imported(rid, dumped, recipient, tuple(where.rows)))
    if problems:
        problems.sort()
        row, column, message = problems[0]
        others = sorted({r for r, _c, _m in problems[1:] if r != row})
        hint = "nothing was imported; fix it and run the import again"
        if others:
            shown = ", ".join(map(str, others[:8])) + ("…" if len(others) > 8 else "")
            verb = "has" if len(others) == 1 else "have"
            hint = f"{plural(len(others), 'other row')} also {verb} problems ({shown}); nothing was imported"
        raise RegistryError(f"{table.label}: row {row}, column {column}: {message}", hint=hint)
    if not imported:
        raise RegistryError(f"{table.label}: no institutions (only a header)", hint="add one row per institution")
    return imported


def _merged(base: dict[str, Any], entry: dict[str, Any]) -> tuple[dict[str, Any], dict[int, int]]:
    """``base`` (an institution as recipients.yaml has it) with the table's cells on top;
    and where each of the table's contacts landed in the merged contact list."""
    merged = copy.deepcopy(base)
    for key, value in entry.items():
        if key in ("id", "contacts"):
            continue
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and key != "office_hours":
            merged[key] = {**old, **value}
        else:
            merged[key] = value
    contacts: list[dict[str, Any]] = merged.setdefault("contacts", [])
    positions: dict[int, int] = {}
    for index, contact in enumerate(entry["contacts"]):
        email = str(contact.get("email", "")).strip().casefold()
        found = next((n for n, c in enumerate(contacts) if str(c.get("email", "")).casefold() == email), None)
        if found is None:
            contacts.append(dict(contact))
            positions[index] = len(contacts) - 1
            continue
        old_contact = contacts[found]
        for key, value in contact.items():
            old = old_contact.get(key)
            old_contact[key] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
        positions[index] = found
    return merged, positions


def _locate(loc: list[str | int], where: _Where, header: list[str]) -> tuple[int, str]:
    """The spreadsheet row and column of a validation problem at ``loc``."""
    row = where.rows[0]
    if not loc:
        return row, "id"
    if loc[0] == "contacts" and len(loc) > 1 and isinstance(loc[1], int):
        index = loc[1]
        row = where.rows[min(index, len(where.rows) - 1)] if where.rows else row
        rest = [str(p) for p in loc[2:]]
        for size in range(len(rest), 0, -1):
            column = where.columns.get(f"contacts.{index}." + ".".join(rest[:size]))
            if column:
                return row, column
        if rest and rest[0] == "fields" and len(rest) > 1:
            return row, f"contact_field.{rest[1]}"
        return row, "email"
    parts = [str(p) for p in loc]
    for size in range(len(parts), 0, -1):
        column = where.columns.get(".".join(parts[:size]))
        if column:
            return row, column
    if parts[0] == "fields" and len(parts) > 1:
        return row, f"field.{parts[1]}"
    return row, parts[0] if parts[0] in header else parts[0]


def _dump(recipient: Recipient) -> dict[str, Any]:
    """A validated institution as plain values for recipients.yaml (defaults left out)."""
    data = recipient.model_dump(mode="python", exclude_defaults=True)
    if recipient.office_hours is not None:  # all three written out, even the default days
        data["office_hours"] = recipient.office_hours.model_dump(mode="python")
    data["contacts"] = [c.model_dump(mode="python", exclude_defaults=True) for c in recipient.contacts]
    return data


# ---------------------------------------------------------------------------
# Registry → rows


def rows_from_registry(registry: Registry) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per contact, postal-only institutions in one row each."""
    langs = {
        key: sorted({lang for r in registry.recipients for lang in _langs(getattr(r, key))})
        for key in ("name", "postal_address")
    }
    salutation_langs = sorted(
        {
            lang
            for r in registry.recipients
            for c in r.contacts
            if isinstance(c.salutation, dict)
            for lang in c.salutation
        }
    )
    fields = sorted({k for r in registry.recipients for k in r.fields})
    contact_fields = sorted({k for r in registry.recipients for c in r.contacts for k in c.fields})
    header = ["id"]
    header += ["name"] if any(isinstance(r.name, str) for r in registry.recipients) else []
    header += [f"name.{lang}" for lang in langs["name"]]
    header += ["tags", "languages", "country", "timezone", "website"]
    header += ["postal_address"] if any(isinstance(r.postal_address, str) for r in registry.recipients) else []
    header += [f"postal_address.{lang}" for lang in langs["postal_address"]]
    header += ["source", "checked", "max_per_day", "office_hours", *(f"field.{k}" for k in fields)]
    header += ["email", "contact_name", "role", "salutation", *(f"salutation.{lang}" for lang in salutation_langs)]
    header += ["contact_source", "contact_checked", *(f"contact_field.{k}" for k in contact_fields)]
    rows = []
    for r in registry.recipients:
        base: dict[str, str] = {
            "id": r.id,
            "tags": " ".join(r.tags),
            "languages": " ".join(r.languages),
            "country": r.country or "",
            "timezone": r.timezone or "",
            "website": r.website or "",
            "source": r.source or "",
            "checked": _date(r.checked),
            "max_per_day": str(r.max_per_day or ""),
            "office_hours": _office_hours(r),
        }
        base.update(_per_language("name", r.name))
        base.update(_per_language("postal_address", r.postal_address))
        base.update({f"field.{k}": v for k, v in r.fields.items()})
        contacts: list[Contact | None] = list(r.contacts) or [None]
        for contact in contacts:
            row = dict(base)
            if contact is not None:
                row.update(
                    {
                        "email": contact.email,
                        "contact_name": contact.name or "",
                        "role": contact.role or "",
                        "contact_source": contact.source or "",
                        "contact_checked": _date(contact.checked),
                    }
                )
                row.update(_per_language("salutation", contact.salutation))
                row.update({f"contact_field.{k}": v for k, v in contact.fields.items()})
            rows.append([row.get(column, "") for column in header])
    return header, rows


def _langs(value: Any) -> Iterable[str]:
    return value.keys() if isinstance(value, dict) else ()


def _per_language(key: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {f"{key}.{lang}": text for lang, text in value.items()}
    return {key: value}


def _date(value: date | None) -> str:
    return value.isoformat() if value else ""


def _office_hours(r: Recipient) -> str:
    hours = r.office_hours
    if hours is None:
        return ""
    end = "24:00" if hours.end.hour == 23 and hours.end.minute == 59 else hours.end.strftime("%H:%M")
    return f"{hours.days} {hours.start:%H:%M}-{end}"


def write_csv(header: list[str], rows: list[list[str]]) -> str:
    """The CSV text (comma-separated, quoted where needed, CRLF as RFC 4180 says)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()
