"""Commands for a team sharing one store: store migrate, workers."""

from __future__ import annotations

from typing import Annotated

import typer

from campaign.cli import common
from campaign.cli.common import out, plain, print_json, state
from campaign.wording import plural

store_app = typer.Typer(
    help="The store that holds the queue and the log (SQLite in .campaign/ or a shared PostgreSQL).\n\n"
    "Example:\n\n    campaign store migrate --to postgresql://campaign@db.example/campaign",
    no_args_is_help=True,
)


@store_app.command("migrate")
def store_migrate(
    ctx: typer.Context,
    to: Annotated[
        str,
        typer.Option(
            "--to", help="Target store URL, e.g. postgresql://user@host/db (no password in it).", metavar="URL"
        ),
    ],
) -> None:
    """Copy this workspace's queue, log and receipts into another (empty) store.

    The hash chain travels unchanged and is verified on arrival. Afterwards point every
    copy of the workspace at it with `\\[store] url` in campaign.toml, `--db` or CAMPAIGN_DB.
    The password comes from PGPASSWORD or ~/.pgpass, never from the URL.

    Example:

        campaign store migrate --to postgresql://campaign@db.example/campaign
    """
    from campaign import api

    ws = state(ctx).workspace()
    result = api.migrate_store(ws, to)
    copied = ", ".join(f"{n} {table}" for table, n in result.copied.items())
    out().print(f"copied into {plain(result.target)}: {copied}")
    out().print(f"chain verified: {plural(result.verification.count, 'event')}, head {result.verification.head}")
    out().print(plain(f'next: set [store] url = "{to}" in campaign.toml (or pass --db)'))


def workers(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List send processes seen in the last day: leases held, letters sent, rate.

    Example:

        campaign --db postgresql://campaign@db.example/campaign workers
    """
    from campaign import api

    ws = state(ctx).workspace()
    rows = api.workers(ws)
    if as_json:
        print_json(rows)
        return
    if not rows:
        out().print("no send process in the last 24 hours")
        return
    t = common.table(
        "worker",
        "label",
        "campaign",
        "state",
        "started (UTC)",
        "last seen",
        "leases",
        "sent",
        "deferred",
        "failed",
        "per minute",
    )
    for r in rows:
        t.add_row(
            r["id"],
            plain(r["label"] or ""),
            plain(r["campaign"] or "all"),
            r["state"],
            r["started_at"][:19].replace("T", " "),
            r["heartbeat_at"][11:19],
            str(r["leases"]),
            str(r["sent"]),
            str(r["deferred"]),
            str(r["failed"]),
            f"{r['rate_per_minute']:g}",
        )
    out().print(t)


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store", rich_help_panel="Teams: a shared PostgreSQL store")
    app.command("workers", rich_help_panel="Teams: a shared PostgreSQL store")(workers)
