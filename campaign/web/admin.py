"""The organisers' router: review campaigns in a browser; release or cancel one letter.

Routes (its own application on its own listener, always on loopback; nothing of the
supporters' router answers here, and nothing here answers there):

    GET  /admin/login                 the sign-in form (the token; login.js takes it from #token=…)
    POST /admin/login                 the token → a session cookie → /admin/
    POST /admin/logout
    GET  /admin/                      campaigns with their counts
    GET  /admin/overview?c=NAME       counts, rates, the per-day chart, what waits
    GET  /admin/letters?c=NAME&…      the per-institution table (state, tag, sort, order, page)
    GET  /admin/letter/{id}           one letter's whole history
    GET  /admin/letter/{id}/eml       its exact bytes (an attachment, never rendered)
    GET  /admin/letter/{id}/release   confirmation;  POST: release (an event in the log)
    GET  /admin/letter/{id}/cancel    confirmation;  POST: cancel (an event in the log)
    GET  /admin/replies?c=NAME        replies (automatic ones marked), institutions not answering
    GET  /admin/waiting?c=NAME        what waits and why (`campaign status`'s words)
    GET  /admin/evidence?c=NAME       the evidence bundle (.zip)
    GET  /admin/verify                `log verify` (kept until the chain head moves)
    GET  /admin/drives                signing drives: count, root, signatures per week
    GET  /admin/static/…              admin.css, login.js, fonts

Rules (:class:`AdminGuard`, tested): a request whose Host is not this listener's own
loopback address and port is refused (421) before anything else, against DNS
rebinding; every page but the sign-in form and the static files needs the session
cookie (HttpOnly, SameSite=Strict, path /admin), which only the token printed by
`campaign serve` obtains; the token travels in a POSTed form, never in a URL the
server sees. A POST must come from this origin (``Origin``/``Sec-Fetch-Site``) and carry
the session's CSRF value and a one-time form token. Every value from an institution's
e-mail is escaped by the templates; downloads are attachments with ``nosniff``.
Handlers call :class:`~campaign.api.review.ReviewService` only.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from campaign.api.review import PAGE_SIZES, STATUSES, ReviewService, TableRequest
from campaign.errors import CampaignError, SelectionError, UsageError
from campaign.report import state_chart, timeline_chart, weeks_chart
from campaign.web import admin_i18n as i18n
from campaign.web.security import FormGuard
from campaign.wording import plural

HERE = Path(__file__).resolve().parent
COOKIE = "campaign_admin"
SESSION_SECONDS = 12 * 3600
MAX_FORM = 16 * 1024
PUBLIC = ("/admin/login", "/admin/static/", "/favicon.ico")


def loopback_hosts(port: int) -> frozenset[str]:
    """The Host values a browser sends for this listener (nothing else is answered)."""
    return frozenset({f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"})


@dataclass
class Session:
    csrf: str
    expires: float
    lang: str | None = None


@dataclass
class Sessions:
    """Sessions in memory only: they end with the process."""

    token: str
    items: dict[str, Session] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check_token(self, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    def start(self) -> str:
        key = secrets.token_urlsafe(32)
        with self.lock:
            now = time.monotonic()
            for old in [k for k, s in self.items.items() if s.expires < now]:
                del self.items[old]
            self.items[key] = Session(csrf=secrets.token_urlsafe(24), expires=now + SESSION_SECONDS)
        return key

    def get(self, key: str | None) -> Session | None:
        if not key:
            return None
        with self.lock:
            found = self.items.get(key)
            if found is None or found.expires < time.monotonic():
                self.items.pop(key, None)
                return None
            return found

    def end(self, key: str | None) -> None:
        with self.lock:
            self.items.pop(key or "", None)


class AdminGuard:
    """Host allowlist first, then the session (pure ASGI middleware)."""

    def __init__(self, app: ASGIApp, *, hosts: frozenset[str], sessions: Sessions) -> None:
        self.app = app
        self.hosts = hosts
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        host = headers.get(b"host", b"").decode("latin-1").lower()
        if host not in self.hosts:
            await Response("misdirected request: not the organisers' area\n", 421, media_type="text/plain")(
                scope, receive, send
            )
            return
        path = str(scope.get("path", ""))
        cookie = _cookie(headers.get(b"cookie", b"").decode("latin-1"), COOKIE)
        session = self.sessions.get(cookie)
        scope.setdefault("state", {})["admin_session"] = session
        scope["state"]["admin_cookie"] = cookie
        if session is None and not path.startswith(PUBLIC):
            if scope.get("method") in ("GET", "HEAD") and not path.endswith(("/eml", "/evidence")):
                target = "/admin/login" + ("?expired=1" if cookie else "")
                await RedirectResponse(target, 303)(scope, receive, send)
            else:
                await Response("refused: sign in first\n", 403, media_type="text/plain")(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class AdminSite:
    """The handlers, with what they share: the review service, the sessions, the templates."""

    def __init__(self, service: ReviewService, sessions: Sessions) -> None:
        self.service = service
        self.sessions = sessions
        self.guard = FormGuard()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.notices: dict[str, str] = {}

    # -- helpers -------------------------------------------------------------------

    @staticmethod
    def _session(request: Request) -> Session | None:
        session: Session | None = request.state.admin_session
        return session

    def _lang(self, request: Request) -> str:
        session = self._session(request)
        asked = request.query_params.get("lang")
        lang = i18n.choose_lang(asked, session.lang if session else None, request.headers.get("accept-language"))
        if session is not None and asked in i18n.LANGS:
            session.lang = lang
        return lang

    def _render(self, request: Request, name: str, context: dict[str, Any], *, status: int = 200) -> Response:
        lang = context.get("lang") or self._lang(request)
        session = self._session(request)
        base = {
            "lang": lang,
            "w": i18n.words(lang),
            "langs": [(code, i18n.LANG_NAMES[code]) for code in i18n.LANGS],
            "organisation": self.service.organisation,
            "signed_in": session is not None,
            "csrf": session.csrf if session else "",
            "logout_token": self.guard.issue("logout", session.csrf) if session else "",
            "state_name": lambda s: i18n.words(lang).get(f"s_{s}", s),
            "reason": lambda r: i18n.reason_in(lang, r),
            "path": request.url.path,
            "query": lambda **changes: _query(request, changes),
            "plural": plural,
        }
        base.update(context)
        return self.templates.TemplateResponse(request, f"admin/{name}", base, status_code=status)

    def _error(self, request: Request, message: str, status: int) -> Response:
        return self._render(request, "error.html", {"message": message}, status=status)

    def _campaign(self, request: Request) -> str:
        name = request.query_params.get("c", "")
        if not name or len(name) > 200:
            raise HTTPException(404)
        return name

    def _check_post(self, request: Request, scope: str, values: dict[str, str]) -> str | None:
        """Why a POST is refused (a word code), or None: same origin, session CSRF, one-time token."""
        if _cross_site(request):
            return "form_forged"
        session = self._session(request)
        if session is None:
            return "form_forged"
        problem = self.guard.check(scope, session.csrf, values.get("csrf", ""), values.get("form_token", ""))
        return problem.replace("-", "_") if problem else None

    async def _form(self, request: Request) -> dict[str, str]:
        length = request.headers.get("content-length")
        if length is None or not length.isdigit() or int(length) > MAX_FORM:
            raise HTTPException(413 if length and length.isdigit() else 411)
        form = await request.form(max_files=0, max_fields=10)
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        await form.close()
        return values

    # -- signing in --------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        message = "login_expired" if request.query_params.get("expired") else None
        return self._render(request, "login.html", {"message": message, "login_token": self._login_token()})

    def _login_token(self) -> str:
        return self.guard.issue("login", "login")

    async def login(self, request: Request) -> Response:
        values = await self._form(request)
        if _cross_site(request) or self.guard.check("login", "login", "login", values.get("form_token", "")):
            return self._render(
                request, "login.html", {"message": "form_forged", "login_token": self._login_token()}, status=403
            )
        if not self.sessions.check_token(values.get("token", "").strip()):
            return self._render(
                request, "login.html", {"message": "login_wrong", "login_token": self._login_token()}, status=403
            )
        key = self.sessions.start()
        response = RedirectResponse("/admin/", 303)
        response.set_cookie(COOKIE, key, httponly=True, samesite="strict", path="/admin", max_age=None)
        return response

    async def logout(self, request: Request) -> Response:
        values = await self._form(request)
        if self._check_post(request, "logout", values):
            return self._error(request, i18n.words(self._lang(request))["form_forged"], 403)
        self.sessions.end(request.state.admin_cookie)
        response = RedirectResponse("/admin/login", 303)
        response.delete_cookie(COOKIE, path="/admin")
        return response

    # -- pages -------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        campaigns = await run_in_threadpool(self.service.campaigns)
        return self._render(request, "campaigns.html", {"campaigns": campaigns})

    async def overview(self, request: Request) -> Response:
        lang = self._lang(request)
        name = self._campaign(request)
        overview = await run_in_threadpool(self.service.overview, name)
        checked = await run_in_threadpool(lambda: self.service.verification(compute=False))
        return self._render(
            request,
            "overview.html",
            {
                "o": overview,
                "timeline": timeline_chart(overview, lang),
                "states": state_chart(overview, lang),
                "checked": checked,
                "kinds": ("sent", "delivered", "bounced", "read", "replied"),
            },
        )

    async def letters(self, request: Request) -> Response:
        lang = self._lang(request)
        q = request.query_params
        try:
            table = TableRequest(
                campaign=self._campaign(request),
                status=q.get("status") or None,
                tag=q.get("tag") or None,
                sort=q.get("sort", "institution"),
                descending=q.get("order") == "desc",
                page=int(q.get("page", "1")),
                per_page=int(q.get("per", "50")),
            )
        except ValueError:
            raise UsageError("page and per page are numbers") from None
        page = await run_in_threadpool(self.service.letters, table, lang)
        tags = await run_in_threadpool(self.service.tags)
        return self._render(
            request,
            "letters.html",
            {"page": page, "t": table, "tags": tags, "statuses": STATUSES, "sizes": PAGE_SIZES},
        )

    def _letter_id(self, request: Request) -> int:
        text = request.path_params["id"]
        if not text.isdigit() or len(text) > 18:
            raise HTTPException(404)
        return int(text)

    async def letter(self, request: Request) -> Response:
        lang = self._lang(request)
        history = await run_in_threadpool(self.service.letter, self._letter_id(request), lang)
        notice = self.notices.pop(f"{request.state.admin_cookie}:{history.row.id}", None)
        return self._render(request, "letter.html", {"h": history, "notice": notice})

    async def eml(self, request: Request) -> Response:
        download = await run_in_threadpool(self.service.eml, self._letter_id(request))
        return _attachment(download.filename, download.data, "message/rfc822")

    async def confirm(self, request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ACTIONS:
            raise HTTPException(404)
        history = await run_in_threadpool(self.service.letter, self._letter_id(request), self._lang(request))
        session = self._session(request)
        assert session is not None
        return self._render(
            request,
            "confirm.html",
            {
                "h": history,
                "action": action,
                "form_token": self.guard.issue(f"{action}:{history.row.id}", session.csrf),
            },
        )

    async def act(self, request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ACTIONS:
            raise HTTPException(404)
        row_id = self._letter_id(request)
        values = await self._form(request)
        problem = self._check_post(request, f"{action}:{row_id}", values)
        w = i18n.words(self._lang(request))
        if problem:
            return self._error(request, w[problem], 409 if problem == "form_replayed" else 403)
        if action == "release":
            await run_in_threadpool(self.service.release, row_id)
        else:
            await run_in_threadpool(self.service.cancel, row_id)
        self.notices[f"{request.state.admin_cookie}:{row_id}"] = w["released" if action == "release" else "cancelled"]
        return RedirectResponse(f"/admin/letter/{row_id}", 303)

    async def replies(self, request: Request) -> Response:
        lang = self._lang(request)
        name = self._campaign(request)
        replies = await run_in_threadpool(self.service.replies, name, lang)
        unanswered = await run_in_threadpool(self.service.unanswered, name, lang)
        return self._render(request, "replies.html", {"campaign": name, "replies": replies, "unanswered": unanswered})

    async def waiting(self, request: Request) -> Response:
        overview = await run_in_threadpool(self.service.overview, self._campaign(request))
        return self._render(request, "waiting.html", {"o": overview})

    async def evidence(self, request: Request) -> Response:
        download = await run_in_threadpool(self.service.evidence, self._campaign(request))
        return _attachment(download.filename, download.data, "application/zip")

    async def verify(self, request: Request) -> Response:
        checked = await run_in_threadpool(self.service.verification)
        return self._render(request, "verify.html", {"checked": checked})

    async def drives(self, request: Request) -> Response:
        lang = self._lang(request)
        drives = await run_in_threadpool(self.service.drives)
        charts = [weeks_chart(d, lang, f"weeks-{i}") for i, d in enumerate(drives)]
        return self._render(request, "drives.html", {"drives": list(zip(drives, charts, strict=True))})

    async def root(self, request: Request) -> Response:
        return RedirectResponse("/admin/", 303)

    async def no_icon(self, request: Request) -> Response:
        return Response(status_code=204)

    # -- errors --------------------------------------------------------------------------

    async def on_http(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        w = i18n.words(self._lang(request))
        return self._error(request, w["not_found"] if status == 404 else w["bad_request"], status)

    async def on_campaign_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CampaignError)
        status = 404 if isinstance(exc, SelectionError) and exc.message.startswith("no ") else 400
        return self._error(request, exc.message + (f" ({exc.hint})" if exc.hint else ""), status)

    def router(self) -> Router:
        return Router(
            routes=[
                Route("/", self.root, methods=["GET"]),
                Route("/favicon.ico", self.no_icon, methods=["GET"]),
                Route("/admin", self.root, methods=["GET"]),
                Route("/admin/", self.home, methods=["GET"]),
                Route("/admin/login", self.login_form, methods=["GET"]),
                Route("/admin/login", self.login, methods=["POST"]),
                Route("/admin/logout", self.logout, methods=["POST"]),
                Route("/admin/overview", self.overview, methods=["GET"]),
                Route("/admin/letters", self.letters, methods=["GET"]),
                Route("/admin/letter/{id}", self.letter, methods=["GET"]),
                Route("/admin/letter/{id}/eml", self.eml, methods=["GET"]),
                Route("/admin/letter/{id}/{action:str}", self.confirm, methods=["GET"]),
                Route("/admin/letter/{id}/{action:str}", self.act, methods=["POST"]),
                Route("/admin/replies", self.replies, methods=["GET"]),
                Route("/admin/waiting", self.waiting, methods=["GET"]),
                Route("/admin/evidence", self.evidence, methods=["GET"]),
                Route("/admin/verify", self.verify, methods=["GET"]),
                Route("/admin/drives", self.drives, methods=["GET"]),
                Mount("/admin/static/fonts", app=StaticFiles(directory=str(HERE / "static" / "fonts"))),
                Mount("/admin/static", app=StaticFiles(directory=str(HERE / "admin_static"))),
            ]
        )


ACTIONS = ("release", "cancel")


def _cross_site(request: Request) -> bool:
    """A POST that did not come from this origin's own pages. Browsers send
    ``Sec-Fetch-Site``; ``Origin`` is this origin, or "null" (our pages send no referrer,
    and Chromium then says "null"; the session's tokens still have to match)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    return origin is not None and origin not in ("null", f"http://{request.headers.get('host', '')}")


def _attachment(filename: str, data: bytes, media_type: str) -> Response:
    """A download, never rendered in this origin (``nosniff`` comes with every response)."""
    return Response(
        data,
        media_type=media_type,
        headers={
            "content-disposition": f'attachment; filename="{filename}"',
            "content-security-policy": "default-src 'none'; sandbox",
        },
    )


def _query(request: Request, changes: dict[str, Any]) -> str:
    """This page's query string with some values changed (None removes one)."""
    params = dict(request.query_params)
    params.pop("lang", None)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    return "?" + urlencode(params)
