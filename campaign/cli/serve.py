"""`campaign serve`: the supporters' signing page and the organisers' area (this command
starts the web layer, and is the only module that imports it)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from campaign.cli.common import err, out, plain, state


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1; with --lan the LAN address).")
    ] = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8470,
    lan: Annotated[
        bool,
        typer.Option("--lan", help="Serve the supporters' pages on the LAN, over HTTPS (self-signed, per workspace)."),
    ] = False,
    processes: Annotated[
        int | None,
        typer.Option("--processes", min=0, help="Processes that seal PDFs (default: the number of CPUs; 0: none)."),
    ] = None,
    admin_port: Annotated[
        int,
        typer.Option("--admin-port", min=1, max=65535, help="Port of the organisers' area (always on 127.0.0.1)."),
    ] = 8471,
    admin_only: Annotated[
        bool, typer.Option("--admin-only", help="Only the organisers' area: no signing page, no keys needed.")
    ] = False,
    no_admin: Annotated[bool, typer.Option("--no-admin", help="Only the signing page: no organisers' area.")] = False,
) -> None:
    """Serve the signing page for the open drives and the organisers' area.

    The signing page: http://127.0.0.1:8470, this machine only (passphrase of the
    organisation's keys: CAMPAIGN_KEY_PASSPHRASE). --lan serves the supporters' pages
    (never anything else) over HTTPS on the LAN address for a meeting, and prints the
    certificate's fingerprint and a QR code of the address. No IP address, browser
    detail or access log is kept.

    The organisers' area (campaigns, charts, every letter's history, replies, drives;
    release or cancel a letter): http://127.0.0.1:8471/admin/, always on this machine
    only, even with --lan. It asks for the token printed here (the printed link carries
    it after #, which browsers never send); --admin-only serves it alone. Ctrl-C stops.

    Example:

        campaign serve --lan
    """
    from campaign import web
    from campaign.api import review as review_api

    if admin_only and no_admin:
        from campaign.errors import UsageError

        raise UsageError("--admin-only and --no-admin exclude each other")
    if not no_admin and not admin_only and admin_port == port and (host or "127.0.0.1") == web.ADMIN_HOST:
        from campaign.errors import UsageError

        raise UsageError(f"--admin-port {admin_port} is the signing page's port too: choose another")
    ws = state(ctx).workspace()
    service: Any = None
    setup: Any = None
    listeners: list[Any] = []
    drives: list[Any] = []
    if not admin_only:
        from campaign.api import signing as signing_api
        from campaign.cli.pdf import _passphrase

        passphrase = _passphrase("CAMPAIGN_KEY_PASSPHRASE", "Passphrase for the organisation's keys")
        setup = signing_api.lan_setup(ws, host) if lan else None
        service = signing_api.signing_service(
            ws, passphrase, processes=processes, on_warning=lambda text: err().print(f"warning: {plain(text)}")
        )
    reviewer = review_api.ReviewService(ws) if not no_admin else None
    token = web.new_admin_token()
    try:
        if service is not None:
            from campaign.api import signing as signing_api

            app = web.supporters_app(
                service,
                https=setup is not None,
                tls_fingerprint=signing_api.fingerprint_words(setup.fingerprint) if setup else None,
            )
            listeners.append(
                web.Listener(
                    "supporters",
                    app,
                    setup.host if setup else (host or "127.0.0.1"),
                    port,
                    setup.cert_file if setup else None,
                    setup.key_file if setup else None,
                )
            )
            drives = [d for d in signing_api.list_drives(ws) if d.status == "open"]
        if reviewer is not None:
            listeners.append(
                web.Listener(
                    "organisers", web.admin_app(reviewer, token=token, port=admin_port), web.ADMIN_HOST, admin_port
                )
            )

        def ready(started: list[web.Listener]) -> None:
            for listener in started:
                if listener.name == "supporters":
                    _announce_signing(listener.url, setup, drives)
                else:
                    out().print(f"organisers' area on {plain(listener.url)}/admin/ (this machine only)")
                    out().print(f"  sign in: {plain(listener.url)}/admin/login#token={token}")
                    out().print(
                        "  (the token is asked once per browser; it stays in this terminal, never in a URL sent)"
                    )
            out().file.flush()  # the addresses must reach a log or a pipe now, not at exit

        web.serve(listeners, on_ready=ready)
    finally:
        if service is not None:
            service.close()
        if reviewer is not None:
            reviewer.close()
    out().print("stopped")


def _announce_signing(base: str, setup: Any, drives: list[Any]) -> None:
    from campaign.api import signing as signing_api

    out().print(f"serving the signing page on {plain(base)} (Ctrl-C stops)")
    if setup is not None:
        out().print(f"certificate SHA-256 fingerprint: {setup.fingerprint}")
        out().print("supporters' browsers will warn about it: the page explains the warning and shows the start")
    for d in drives:
        out().print(f"  {plain(d.name)}: {plain(d.url(base))}")
    if setup is not None and drives:
        out().print(signing_api.terminal_qr(drives[0].url(base)))
    if not drives:
        err().print("no open drive yet: campaign sign open LETTER --to ID")


def register(app: typer.Typer) -> None:
    app.command("serve", rich_help_panel="Signing drives")(serve)
