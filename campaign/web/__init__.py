"""The web layer: the supporters' signing page (Starlette, served by uvicorn).

It sits beside the CLI on the top floor: it calls ``campaign.api`` (a
:class:`~campaign.api.signing.SigningService`), never the store, and nothing imports it
but the ``campaign serve`` command that starts it. Pages are Jinja2 templates rendered
on the server, with one small script (the signature pad) and no asset from outside the
package, so the page works offline.

Contract:
- :func:`supporters_app` builds the supporters' ASGI application: their router only,
  behind :class:`~campaign.web.security.SecurityHeaders`. An organisers' area is a
  *separate* application with its own router and templates, served by its own
  :class:`Listener` bound to loopback (see :func:`serve`): a supporter's link can never
  reach it, and ``--lan`` never exposes it.
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

from campaign.api.signing import SigningService
from campaign.web.security import SecurityHeaders
from campaign.web.server import Listener, serve
from campaign.web.supporters import SupportersSite

__all__ = ["Listener", "serve", "supporters_app"]


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
