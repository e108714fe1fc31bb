"""`campaign serve`: the supporters' signing page (this command starts the web layer)."""

from __future__ import annotations

from typing import Annotated

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
) -> None:
    """Serve the signing page for the open drives (passphrase: CAMPAIGN_KEY_PASSPHRASE).

    Default: http://127.0.0.1:8470, this machine only. --lan serves the supporters'
    pages (never anything else) over HTTPS on the LAN address for a meeting, and prints
    the certificate's fingerprint and a QR code of the address. No IP address, browser
    detail or access log is kept. Ctrl-C stops it.

    Example:

        campaign serve --lan
    """
    from campaign import web
    from campaign.api import signing as signing_api
    from campaign.cli.pdf import _passphrase

    ws = state(ctx).workspace()
    passphrase = _passphrase("CAMPAIGN_KEY_PASSPHRASE", "Passphrase for the organisation's keys")
    setup = signing_api.lan_setup(ws, host) if lan else None
    service = signing_api.signing_service(ws, passphrase, processes=processes)
    try:
        app = web.supporters_app(
            service,
            https=setup is not None,
            tls_fingerprint=signing_api.fingerprint_words(setup.fingerprint) if setup else None,
        )
        listener = web.Listener(
            "supporters",
            app,
            setup.host if setup else (host or "127.0.0.1"),
            port,
            setup.cert_file if setup else None,
            setup.key_file if setup else None,
        )
        drives = [d for d in signing_api.list_drives(ws) if d.status == "open"]

        def ready(listeners: list[web.Listener]) -> None:
            base = listeners[0].url
            out().print(f"serving the signing page on {plain(base)} (Ctrl-C stops)")
            if setup is not None:
                out().print(f"certificate SHA-256 fingerprint: {setup.fingerprint}")
                out().print(
                    "supporters' browsers will warn about it: the page explains the warning and shows the start"
                )
            for d in drives:
                out().print(f"  {plain(d.name)}: {plain(d.url(base))}")
            if setup is not None and drives:
                out().print(signing_api.terminal_qr(drives[0].url(base)))
            if not drives:
                err().print("no open drive yet: campaign sign open LETTER --to ID")
            out().file.flush()  # the addresses must reach a log or a pipe now, not at exit

        web.serve([listener], on_ready=ready)
    finally:
        service.close()
    out().print("stopped")


def register(app: typer.Typer) -> None:
    app.command("serve", rich_help_panel="Signing drives")(serve)
