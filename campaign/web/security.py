"""Headers and form protection for the supporters' pages.

Contract:
- :class:`SecurityHeaders` (pure ASGI middleware) adds a strict Content-Security-Policy
  (everything from this origin only, no inline script or style, no framing, forms post
  only here), ``Referrer-Policy: no-referrer``, ``X-Content-Type-Options: nosniff``,
  ``X-Frame-Options: DENY``, a Permissions-Policy that denies sensors, and
  ``Cache-Control: no-store`` on everything but the static assets.
- :class:`FormGuard` issues and checks the two tokens a form carries: ``csrf`` equals
  the one cookie the pages set (HttpOnly, SameSite=Strict, Secure on HTTPS), and
  ``form_token`` is a one-time nonce with its issue time, MACed with a secret that lives
  only in this process. A form is accepted once: a replay, a forged or an expired form
  is refused with a code the page words (``form-replayed``, ``form-forged``,
  ``form-expired``). Nothing here reads the client's address.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; font-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=(), browsing-topics=()"),
]
CSRF_COOKIE = "csrf"
FORM_MAX_AGE = 2 * 3600


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"server"]
                headers.extend(HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, add_headers)


class FormGuard:
    """One-time, MACed form tokens and the double-submitted CSRF cookie."""

    def __init__(self, *, max_age: int = FORM_MAX_AGE, remember: int = 200_000) -> None:
        self._secret = secrets.token_bytes(32)
        self._used: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self.max_age = max_age
        self._remember = remember

    @staticmethod
    def new_csrf() -> str:
        return secrets.token_urlsafe(24)

    def _mac(self, scope: str, nonce: str, issued: str, csrf: str) -> str:
        data = "\x00".join((scope, nonce, issued, csrf)).encode()
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()[:32]

    def issue(self, scope: str, csrf: str) -> str:
        nonce = secrets.token_urlsafe(12)
        issued = str(int(time.time()))
        return f"{nonce}.{issued}.{self._mac(scope, nonce, issued, csrf)}"

    def check(self, scope: str, csrf_cookie: str | None, csrf_field: str, form_token: str) -> str | None:
        """None when the form may be processed (and its nonce is now spent), else a code."""
        if not csrf_cookie or not csrf_field or not hmac.compare_digest(csrf_cookie, csrf_field):
            return "form-forged"
        try:
            nonce, issued, mac = form_token.split(".")
            age = time.time() - int(issued)
        except ValueError:
            return "form-forged"
        if not hmac.compare_digest(mac, self._mac(scope, nonce, issued, csrf_field)):
            return "form-forged"
        if age > self.max_age or age < -60:
            return "form-expired"
        with self._lock:
            if nonce in self._used:
                return "form-replayed"
            self._used[nonce] = time.time()
            while len(self._used) > self._remember:
                self._used.popitem(last=False)
        return None
