"""Institutions in and out of recipients.yaml as a table: `campaign recipients import|export`.

Importing reads the whole file and validates every row before recipients.yaml is touched;
the file is then rewritten once, atomically, with every comment kept (new institutions at
the end, existing ones changed in place with --update). Exporting writes what the
registry holds, in columns that import again unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from campaign import registry as registry_mod
from campaign import roster
from campaign.config import Workspace
from campaign.errors import RegistryError, WorkspaceError
from campaign.wording import plural


@dataclass(frozen=True)
class ImportedRow:
    """One institution of an import and what happened to it."""

    id: str
    name: str
    contacts: int
    rows: tuple[int, ...]
    action: str  # "added" | "updated"


@dataclass
class ImportReport:
    """What `recipients import` did."""

    file: str
    read_as: str  # "UTF-8, comma-separated", "Windows-1251, semicolon-separated"
    institutions: list[ImportedRow] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for i in self.institutions if i.action == action)


def import_recipients(
    ws: Workspace, path: Path, *, update: bool = False, encoding: str | None = None, dry_run: bool = False
) -> ImportReport:
    """Add the institutions of a CSV/.xlsx file to recipients.yaml (all or nothing).

    An id that recipients.yaml already has is refused unless ``update``. Raises
    RegistryError naming the file, row and column."""
    table = roster.read_table(path, encoding=encoding, label=path.name)
    current = registry_mod.load_registry(ws.registry_path)
    known = {r.id: r for r in current.recipients}
    clashes = [(rid, row) for rid, row in roster.first_rows(table).items() if rid in known]
    if clashes and not update:
        rid, row = clashes[0]
        more = f" (and {plural(len(clashes) - 1, 'other')})" if len(clashes) > 1 else ""
        raise RegistryError(
            f"{path.name}: row {row}, column id: {rid!r} is already in recipients.yaml{more}",
            hint="nothing was imported; add --update to change existing institutions, or use new ids",
        )
    imported = roster.entries_from_rows(table, known if update else None)
    report = ImportReport(path.name, table.described)
    for item in imported:
        report.institutions.append(
            ImportedRow(
                item.id,
                item.recipient.label,
                len(item.recipient.contacts),
                item.rows,
                "updated" if item.id in known else "added",
            )
        )
    if not dry_run:
        registry_mod.write_registry_entries(ws.registry_path, [i.entry for i in imported], label="recipients.yaml")
    return report


def export_recipients(ws: Workspace, out: Path | None = None, *, force: bool = False) -> tuple[str, int]:
    """recipients.yaml as CSV: the text (to print) when ``out`` is None, else written to
    ``out`` (UTF-8 with a byte-order mark, so spreadsheets read Cyrillic and Tajik right).
    Returns (CSV text, number of institutions). Refuses to overwrite a file unless
    ``force``, and recipients.yaml itself always."""
    from campaign.files import OVERWRITE_HINT, check_target, write_public

    current = registry_mod.load_registry(ws.registry_path)
    header, rows = roster.rows_from_registry(current)
    text = roster.write_csv(header, rows)
    if out is not None:
        if out.resolve() == ws.registry_path.resolve():
            raise WorkspaceError(f"{out}: that is the registry itself; nothing was written", hint="choose another -o")
        check_target(out, force=force)
        try:
            write_public(out, text.encode("utf-8-sig"), replace=force)
        except FileExistsError:
            raise WorkspaceError(f"{out}: already exists; nothing was written", hint=OVERWRITE_HINT) from None
        except OSError as err:
            raise WorkspaceError(f"{out}: cannot write: {err.strerror or err}") from err
    return text, len(current.recipients)
