"""The supporters' router: the signing page, the signed letter, the receipt, withdrawal.

Routes (nothing else answers on the supporters' listener):

    GET  /                          a neutral page: no list of drives
    GET  /s/{token}                 the letter and the form (?lang=en|ru|tg)
    POST /s/{token}/sign            sign: the done page with the downloads, or the form again with the error
    GET  /s/{token}/done/{id}       the done page again (e.g. in another language): in memory for 10 minutes
    GET  /s/{token}/download/{id}   the sealed PDF, then the receipt (.txt): in memory for 10 minutes, never on disk
    GET  /s/{token}/withdraw        the withdrawal form
    POST /s/{token}/withdraw        withdraw with a receipt
    GET  /static/…                  CSS, the signature pad's script, fonts (all in the package)

Every handler reads the form into a :class:`~campaign.api.signing.Submission` and calls
the :class:`~campaign.api.signing.SigningService`; none reads the client's address,
user agent or forwarded headers. A refused form gets the page again with a message in
the supporter's language and a 4xx status; nothing is stored then.

The language links of every page lead to a GET page showing the same thing
(``lang_path``): a page answering a POST is not at its own address, so its links name
the form's page, or the done page's own GET address; a page with nothing to show again
(after a withdrawal) has no language links.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartParser
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from campaign.api.signing import PageView, SigningService, Submission
from campaign.errors import SubmissionError
from campaign.web import i18n
from campaign.web.security import CSRF_COOKIE, FormGuard

HERE = Path(__file__).resolve().parent
MAX_BODY = 3 * 1024 * 1024
# A request body is at most MAX_BODY (checked before parsing), so an upload never rolls
# over from memory into a temporary file: a supporter's signature never touches the disk.
MultiPartParser.spool_max_size = MAX_BODY + 1
MAX_PART = 1_500_000  # a 1 MB picture as a base64 data URL
DOWNLOAD_SECONDS = 600
_CSRF = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
T = TypeVar("T")
_SAFE_PATH = re.compile(r"^/(?!/)[A-Za-z0-9_./-]*$")
_DATA_URL = re.compile(r"^data:image/(?:png|jpeg);base64,([A-Za-z0-9+/=\s]*)$")
TEXT_FIELDS = (
    "lang", "csrf", "form_token", "name", "sign_as", "pseudonym", "real_name", "city", "title",
    "signature_kind", "typed_signature", "signature_drawn", "passphrase", "consent", "translation_lang", "receipt",
)  # fmt: skip


@dataclass
class _Download:
    filename: str
    media_type: str
    data: bytes


@dataclass
class _Done:
    """What the done page shows (no name): enough to show it again in another language."""

    token: str
    receipt: str
    pdf_key: str
    receipt_key: str


class Kept(Generic[T]):
    """A supporter's files and done page, in memory only, for a few minutes; then forgotten."""

    def __init__(self, seconds: int = DOWNLOAD_SECONDS, limit: int = 2000) -> None:
        self._items: dict[str, tuple[float, T]] = {}
        self._lock = threading.Lock()
        self.seconds = seconds
        self.limit = limit

    def put(self, item: T) -> str:
        key = secrets.token_urlsafe(18)
        now = time.monotonic()
        with self._lock:
            for old in [k for k, (expires, _) in self._items.items() if expires < now]:
                del self._items[old]
            while len(self._items) >= self.limit:
                del self._items[next(iter(self._items))]
            self._items[key] = (now + self.seconds, item)
        return key

    def get(self, key: str) -> T | None:
        with self._lock:
            found = self._items.get(key)
            if found is None or found[0] < time.monotonic():
                self._items.pop(key, None)
                return None
            return found[1]


class SupportersSite:
    """The handlers, with what they share: the service, the form guard, the templates."""

    def __init__(self, service: SigningService, *, https: bool = False, tls_fingerprint: str | None = None) -> None:
        self.service = service
        self.https = https
        self.tls_fingerprint = tls_fingerprint
        self.guard = FormGuard()
        self.downloads: Kept[_Download] = Kept()
        self.done_pages: Kept[_Done] = Kept()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))

    # -- helpers -------------------------------------------------------------------

    def _lang(self, request: Request, form: FormData | None = None) -> str:
        chosen = form.get("lang") if form is not None else request.query_params.get("lang")
        return i18n.choose_lang(chosen if isinstance(chosen, str) else None, request.headers.get("accept-language"))

    def _csrf(self, request: Request) -> tuple[str, bool]:
        """The browser's CSRF token (from its cookie), or a new one made once per request."""
        cookie = request.cookies.get(CSRF_COOKIE)
        if cookie and _CSRF.match(cookie):
            return cookie, False
        made = getattr(request.state, "new_csrf", None)
        if made is None:
            made = request.state.new_csrf = self.guard.new_csrf()
        return made, True

    def _render(
        self,
        request: Request,
        name: str,
        lang: str,
        context: dict[str, Any],
        *,
        status: int = 200,
        lang_path: str | None = None,
    ) -> Response:
        """A page; its language links lead to ``lang_path`` (a GET address), by default the
        request's own address when it was a GET, else nowhere (no language links)."""
        csrf, fresh = self._csrf(request)
        if lang_path is None and request.method == "GET" and _SAFE_PATH.match(request.url.path):
            lang_path = request.url.path
        base = {
            "lang": lang,
            "lang_path": lang_path,
            "w": i18n.words(lang),
            "langs": [(code, i18n.LANG_NAMES[code]) for code in i18n.LANGS],
            "csrf": csrf,
            "tls_fingerprint": self.tls_fingerprint if self.https else None,
            "organisation": self.service.organisation,
        }
        base.update(context)
        response = self.templates.TemplateResponse(request, f"supporters/{name}", base, status_code=status)
        # Only a page with a form sets the cookie (an error page for /favicon.ico must not
        # replace the token of the form the supporter is filling in).
        if fresh and "form_token" in context:
            response.set_cookie(
                CSRF_COOKIE, csrf, httponly=True, samesite="strict", secure=self.https, path="/s/", max_age=None
            )
        return response

    def _page_context(self, view: PageView, token: str, lang: str, csrf: str) -> dict[str, Any]:
        names = [name for _, name in view.institutions]
        return {
            "view": view,
            "token": token,
            "institutions": ", ".join(names),
            "reference": names[0] if names else "",
            "form_token": self.guard.issue(f"sign:{token}", csrf),
            "lang_names": i18n.LANG_NAMES,
        }

    async def _form(self, request: Request) -> FormData:
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            raise SubmissionError("bad-request", status=411)
        if int(length) > MAX_BODY:
            raise SubmissionError("too-big", status=413)
        try:
            form = await request.form(max_files=1, max_fields=40, max_part_size=MAX_PART)
        except HTTPException as err:
            raise SubmissionError(
                "too-big" if "size" in str(err.detail).lower() else "bad-request", status=400
            ) from None
        for key in set(form.keys()):
            if len(form.getlist(key)) > 1 or (key in TEXT_FIELDS and not isinstance(form.get(key), str)):
                await form.close()
                raise SubmissionError("bad-request", status=400)
        return form

    def _check_origin(self, request: Request) -> str | None:
        """A cross-site post is refused even before the tokens are looked at."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return "form-forged"
        origin = request.headers.get("origin")
        if origin is not None and origin != "null":
            host = request.headers.get("host", "")
            if origin.split("://", 1)[-1] != host:
                return "form-forged"
        return None

    # -- handlers ------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        lang = self._lang(request)
        return self._render(request, "home.html", lang, {})

    async def no_icon(self, request: Request) -> Response:
        return Response(status_code=204)

    async def page(self, request: Request) -> Response:
        token = request.path_params["token"]
        lang = self._lang(request)
        try:
            view = await run_in_threadpool(self.service.page, token, lang)
        except SubmissionError as err:
            return self._error(request, lang, err)
        csrf, _ = self._csrf(request)
        return self._render(request, "page.html", lang, self._page_context(view, token, lang, csrf))

    def _error(self, request: Request, lang: str, err: SubmissionError) -> Response:
        message = i18n.error_text(lang, err.code, err.field)
        return self._render(request, "error.html", lang, {"message": message, "code": err.code}, status=err.status)

    async def sign(self, request: Request) -> Response:
        token = request.path_params["token"]
        lang = self._lang(request)
        values: dict[str, str] = {}
        form: FormData | None = None
        try:
            view = await run_in_threadpool(self.service.page, token, lang)
        except SubmissionError as err:
            return self._error(request, lang, err)
        try:
            if not view.open:
                raise SubmissionError("closed", status=410)
            form = await self._form(request)
            lang = self._lang(request, form)
            values = {k: v for k, v in form.items() if isinstance(v, str) and k in TEXT_FIELDS}
            problem = self._check_origin(request) or self.guard.check(
                f"sign:{token}", request.cookies.get(CSRF_COOKIE), values.get("csrf", ""), values.get("form_token", "")
            )
            if problem:
                raise SubmissionError(problem, status=409 if problem == "form-replayed" else 403)
            submission = await self._submission(form, values, lang)
            signed = await run_in_threadpool(self.service.submit, token, submission)
        except SubmissionError as err:
            if form is not None:
                await form.close()
            if err.code in ("not-found",):
                return self._error(request, lang, err)
            view = await run_in_threadpool(self.service.page, token, lang)
            csrf, _ = self._csrf(request)
            context = self._page_context(view, token, lang, csrf)
            context["error"] = i18n.error_text(lang, err.code, err.field, _limit(err))
            context["error_field"] = err.field
            context["values"] = {k: v for k, v in values.items() if k not in ("csrf", "form_token", "signature_drawn")}
            return self._render(request, "page.html", lang, context, status=err.status, lang_path=f"/s/{token}")
        await form.close()
        pdf_key = self.downloads.put(_Download(signed.filename, "application/pdf", signed.pdf))
        receipt_file = (
            "campaign signing receipt\n"
            f"drive: {signed.drive}\n"
            f"letter text SHA-256: {signed.text_sha256}\n"
            f"receipt: {signed.receipt}\n"
        )
        receipt_key = self.downloads.put(
            _Download(f"{signed.drive}-receipt.txt", "text/plain; charset=utf-8", receipt_file.encode())
        )
        done = _Done(token, signed.receipt, pdf_key, receipt_key)
        return self._done_page(request, lang, view, done, self.done_pages.put(done))

    def _done_page(self, request: Request, lang: str, view: PageView, done: _Done, key: str) -> Response:
        return self._render(
            request,
            "done.html",
            lang,
            {"view": view, "token": done.token, "done": done},
            lang_path=f"/s/{done.token}/done/{key}",
        )

    async def done(self, request: Request) -> Response:
        """The done page again, e.g. in another language, while its downloads are kept."""
        token, key = request.path_params["token"], request.path_params["key"]
        lang = self._lang(request)
        done = self.done_pages.get(key)
        if done is None or not secrets.compare_digest(done.token, token):
            return self._error(request, lang, SubmissionError("not-found", status=404))
        try:
            view = await run_in_threadpool(self.service.page, token, lang)
        except SubmissionError as err:
            return self._error(request, lang, err)
        return self._done_page(request, lang, view, done, key)

    async def _submission(self, form: FormData, values: dict[str, str], lang: str) -> Submission:
        kind = values.get("signature_kind", "typed")
        data = b""
        if kind == "drawn":
            match = _DATA_URL.match(values.get("signature_drawn", ""))
            if not match:
                raise SubmissionError(
                    "signature-missing" if not values.get("signature_drawn") else "signature-not-an-image",
                    field="signature",
                )
            try:
                data = base64.b64decode("".join(match.group(1).split()), validate=True)
            except (binascii.Error, ValueError):
                raise SubmissionError("signature-not-an-image", field="signature") from None
        elif kind == "upload":
            upload = form.get("signature_file")
            if not isinstance(upload, UploadFile):
                raise SubmissionError("signature-missing", field="signature")
            data = await upload.read(1_000_001)
            if len(data) > 1_000_000:
                raise SubmissionError("signature-too-large", field="signature", status=413)
        return Submission(
            ui_lang=lang,
            name=values.get("name", ""),
            consent=values.get("consent") == "yes",
            signature_kind=kind,
            signature_data=data,
            typed_signature=values.get("typed_signature", ""),
            pseudonym=values.get("pseudonym", ""),
            use_pseudonym=values.get("sign_as") == "pseudonym",
            real_name=values.get("real_name", ""),
            city=values.get("city", ""),
            title=values.get("title", ""),
            passphrase=values.get("passphrase", ""),
            translation_lang=values.get("translation_lang") or None,
        )

    async def download(self, request: Request) -> Response:
        item = self.downloads.get(request.path_params["key"])
        lang = self._lang(request)
        if item is None:
            return self._error(request, lang, SubmissionError("not-found", status=404))
        return Response(
            item.data,
            media_type=item.media_type,
            headers={"content-disposition": f'attachment; filename="{item.filename}"'},
        )

    async def withdraw_form(self, request: Request) -> Response:
        token = request.path_params["token"]
        lang = self._lang(request)
        try:
            view = await run_in_threadpool(self.service.page, token, lang)
        except SubmissionError as err:
            return self._error(request, lang, err)
        csrf, _ = self._csrf(request)
        return self._render(
            request,
            "withdraw.html",
            lang,
            {"view": view, "token": token, "form_token": self.guard.issue(f"withdraw:{token}", csrf)},
        )

    async def withdraw(self, request: Request) -> Response:
        token = request.path_params["token"]
        lang = self._lang(request)
        values: dict[str, str] = {}
        form: FormData | None = None
        try:
            view = await run_in_threadpool(self.service.page, token, lang)
        except SubmissionError as err:
            return self._error(request, lang, err)
        try:
            form = await self._form(request)
            lang = self._lang(request, form)
            values = {k: v for k, v in form.items() if isinstance(v, str) and k in TEXT_FIELDS}
            problem = self._check_origin(request) or self.guard.check(
                f"withdraw:{token}",
                request.cookies.get(CSRF_COOKIE),
                values.get("csrf", ""),
                values.get("form_token", ""),
            )
            if problem:
                raise SubmissionError(problem, status=409 if problem == "form-replayed" else 403)
            await run_in_threadpool(self.service.withdraw, token, values.get("receipt", ""))
            await form.close()
        except SubmissionError as err:
            if form is not None:
                await form.close()
            csrf, _ = self._csrf(request)
            return self._render(
                request,
                "withdraw.html",
                lang,
                {
                    "view": view,
                    "token": token,
                    "form_token": self.guard.issue(f"withdraw:{token}", csrf),
                    "error": i18n.error_text(lang, err.code, err.field),
                },
                status=err.status,
                lang_path=f"/s/{token}/withdraw",
            )
        # Nothing to show again at a GET address: this page has no language links.
        return self._render(request, "withdrawn.html", lang, {"view": view, "token": token})

    async def not_found(self, request: Request, exc: Exception) -> Response:
        lang = self._lang(request)
        status = getattr(exc, "status_code", 404)
        code = "not-found" if status == 404 else "bad-request"
        return self._error(request, lang, SubmissionError(code, status=status if status >= 400 else 404))

    def router(self) -> Router:
        return Router(
            routes=[
                Route("/", self.home, methods=["GET"]),
                Route("/favicon.ico", self.no_icon, methods=["GET"]),
                Route("/s/{token}", self.page, methods=["GET"]),
                Route("/s/{token}/sign", self.sign, methods=["POST"]),
                Route("/s/{token}/done/{key}", self.done, methods=["GET"]),
                Route("/s/{token}/download/{key}", self.download, methods=["GET"]),
                Route("/s/{token}/withdraw", self.withdraw_form, methods=["GET"]),
                Route("/s/{token}/withdraw", self.withdraw, methods=["POST"]),
                Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
            ]
        )


def _limit(err: SubmissionError) -> str | None:
    match = re.search(r"\((\d+)\)$", err.message)
    return match.group(1) if match else None
