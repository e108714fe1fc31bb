"""The web layer: the supporters' signing page and the organisers' area (Starlette, uvicorn).

It sits beside the CLI on the top floor: it calls ``campaign.api`` (a
:class:`~campaign.api.signing.SigningService`), never the store, and nothing imports it
but the ``campaign serve`` command that starts it. Pages are Jinja2 templates rendered
on the server, with one small script (the signature pad) and no asset from outside the
package, so the page works offline.

Contract:
- :func:`supporters_app` builds the supporters' ASGI application: their router only,
  behind :class:`~campaign.web.security.SecurityHeaders`.
- :func:`admin_app` builds the organisers' area (``campaign.web.admin``): a *separate*
  application with its own router, templates and static files, behind the same headers
  and :class:`~campaign.web.admin.AdminGuard` (Host allowlist, session). `campaign
  serve` gives it its own :class:`Listener`, always on loopback: a supporter's link can
  never reach it, and ``--lan`` never exposes it. The supporters' modules import
  nothing of it.
- :func:`serve` runs any number of listeners (application, address, port, optional TLS)
  in one event loop under one task group: a listener that fails stops the others, and
  Ctrl-C or SIGTERM stops all. Access logs are off, uvicorn's own messages are reduced
  to one line without client addresses, and ``X-Forwarded-For`` is never read.

This package is the only home of Starlette, uvicorn and python-multipart, and the second
home of Jinja2 (its own templates; letters are rendered by ``campaign.render``).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from campaign.api.review import ReviewService
from campaign.api.signing import SigningService
from campaign.errors import CampaignError
from campaign.web.admin import AdminGuard, AdminSite, Sessions, loopback_hosts
from campaign.web.security import SecurityHeaders
from campaign.web.server import Listener, serve
from campaign.web.supporters import SupportersSite

__all__ = ["ADMIN_HOST", "Listener", "admin_app", "new_admin_token", "serve", "supporters_app"]

ADMIN_HOST = "127.0.0.1"


def supporters_app(service: SigningService, *, https: bool = False, tls_fingerprint: str | None = None) -> Starlette:
    """The supporters' application: the signing pages and their static assets, nothing else."""
    site = SupportersSite(service, https=https, tls_fingerprint=tls_fingerprint)
    app = Starlette(
        debug=False,
        routes=site.router().routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={HTTPException: site.not_found, 404: site.not_found, 405: site.not_found},
    )
    app.state.site = site
    return app


def new_admin_token() -> str:
    """The organisers' token (256 bits), printed by `campaign serve` and kept only in memory."""
    import secrets

    return secrets.token_urlsafe(32)


def admin_app(service: ReviewService, *, token: str, port: int) -> Starlette:
    """The organisers' application for a listener on 127.0.0.1:``port``: its router only."""
    sessions = Sessions(token)
    site = AdminSite(service, sessions)
    app = Starlette(
        debug=False,
        routes=site.router().routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(AdminGuard, hosts=loopback_hosts(port), sessions=sessions),
        ],
        exception_handlers={
            HTTPException: site.on_http,
            404: site.on_http,
            405: site.on_http,
            CampaignError: site.on_campaign_error,
        },
    )
    app.state.site = site
    return app
