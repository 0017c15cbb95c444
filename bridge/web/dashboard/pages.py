"""What every dashboard page shares: the session cookie, CSRF, language, rendering and error pages.

A page handler is wrapped by `page(...)`: it gets a `View` (request, context, session, language)
only when a live session is present (else the browser goes to the sign-in page), a POST only
after its CSRF token matched (else 403), and service errors become an HTML page with the same
status the JSON API would answer (404 for another merchant's object).
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import BodyPartReader, web
from multidict import MultiDictProxy

from bridge.errors import ApiError, BadRequest
from bridge.services.context import Context
from bridge.services.sessions import Session, load_session
from bridge.web.dashboard.text import TEXT
from bridge.web.i18n import pick_language
from bridge.web.keys import CTX
from bridge.web.templating import page_headers

__all__ = [
    "COOKIE",
    "NO_STORE",
    "View",
    "form_str",
    "language",
    "page",
    "redirect",
    "render",
    "set_cookie",
]

COOKIE = "pb_session"
PATH = "/dashboard"
NO_STORE = page_headers(form_action="'self'")
Who = str  # "merchant": a merchant's session; "admin": the admin's; "any": either
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PageFn = Callable[["View"], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class View:
    request: web.Request
    ctx: Context
    session: Session
    lang: str
    form: Mapping[str, Any]

    @property
    def t(self) -> dict[str, str]:
        return TEXT[self.lang]

    @property
    def merchant_id(self) -> str:
        """The signed-in merchant (merchant-only pages run only for merchants' sessions)."""
        assert self.session.merchant_id is not None
        return self.session.merchant_id

    def render(self, name: str, context: dict[str, Any], status: int = 200) -> web.Response:
        return render(self.request, name, {"session": self.session, **context}, self.lang, status)


def language(request: web.Request) -> str:
    return pick_language(request.headers.get("Accept-Language"), request.query.get("lang"))


def render(request: web.Request, name: str, context: dict[str, Any], lang: str, status: int = 200) -> web.Response:
    path = request.path if request.method == "GET" else PATH  # the language link GETs the same page
    base = {"t": TEXT[lang], "lang": lang, "path": path, "session": None, "nav": None}
    resp = aiohttp_jinja2.render_template(name, request, {**base, **context}, status=status)
    resp.headers.update(NO_STORE)
    return resp


def message(
    request: web.Request, lang: str, status: int, title: str, detail: str, session: Session | None
) -> web.Response:
    return render(
        request, "dashboard/message.html", {"title": title, "detail": detail, "session": session}, lang, status
    )


def redirect(location: str, **query: str) -> web.HTTPSeeOther:
    """303 to a dashboard page (after a POST: the browser GETs the result, a reload does not resubmit)."""
    return web.HTTPSeeOther(location + ("?" + urlencode(query) if query else ""), headers=NO_STORE)


def set_cookie(request: web.Request, resp: web.StreamResponse, name: str, value: str, max_age: int | None) -> None:
    """HttpOnly, SameSite=Strict, only under /dashboard; Secure when the public URL is https."""
    secure = request.app[CTX].settings.public_url.startswith("https://")
    resp.set_cookie(name, value, max_age=max_age, path=PATH, httponly=True, samesite="Strict", secure=secure)


def form_str(form: Mapping[str, Any], name: str, *, max_len: int = 256, required: bool = True) -> str:
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        if required:
            raise BadRequest(f"{name} is required", "invalid_form")
        return ""
    value = value.strip()
    if len(value) > max_len:
        raise BadRequest(f"{name} is longer than {max_len} characters", "invalid_form")
    return value


def csrf_ok(expected: str, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


class _CsrfRefused(Exception):
    """A multipart form whose first field is not the session's CSRF token."""


async def _read_upload(request: web.Request, max_file: int, csrf: str) -> dict[str, Any]:
    """A multipart form read part by part (the app's 64 KiB body limit is for JSON; a picture of a QR
    code is larger): the CSRF token must come first and is checked before anything else is read;
    text fields up to 4 KiB, files (bytes) up to `max_file`, everything together up to `max_file`
    + 64 KiB."""
    form: dict[str, Any] = {}
    reader = await request.multipart()
    total = 0
    while (part := await reader.next()) is not None:
        if len(form) >= 20 or not isinstance(part, BodyPartReader) or not part.name:
            raise BadRequest("unexpected form fields", "invalid_form")
        limit = max_file if part.filename is not None else 4096
        data = bytearray()
        while chunk := await part.read_chunk(65536):
            data.extend(chunk)
            total += len(chunk)
            if len(data) > limit or total > max_file + 65536:
                raise BadRequest(f"{part.name} is larger than {limit // 1024} KiB", "invalid_form")
        if not form and (part.name != "csrf" or not csrf_ok(csrf, data.decode("utf-8", "replace"))):
            raise _CsrfRefused
        form[part.name] = bytes(data) if part.filename is not None else data.decode("utf-8", "replace")
    if not form:
        raise _CsrfRefused
    return form


def page(who: Who = "merchant", *, max_upload: int = 0) -> Callable[[PageFn], Handler]:
    """Wrap a dashboard handler: session, role, CSRF on POST, HTML errors. `max_upload` > 0 accepts
    multipart forms with files up to that size."""

    def wrap(fn: PageFn) -> Handler:
        @functools.wraps(fn)
        async def handler(request: web.Request) -> web.StreamResponse:
            ctx = request.app[CTX]
            lang = language(request)
            t = TEXT[lang]
            session = await load_session(ctx, request.cookies.get(COOKIE, ""))
            if session is None:
                navigation = "text/html" in request.headers.get("Accept", "") and "fragment" not in request.query
                if request.method == "GET" and navigation:
                    raise redirect(f"{PATH}/sign-in")
                return message(request, lang, 401, t["signed_out"], t["signed_out_hint"], None)
            if who == "admin" and not session.is_admin:
                return message(request, lang, 404, t["not_found"], t["not_found_hint"], session)
            if who == "merchant" and session.is_admin:
                return message(request, lang, 403, t["merchant_only"], t["merchant_only_hint"], session)
            form: MultiDictProxy[Any] | dict[str, Any] = {}
            if request.method == "POST":
                if max_upload and request.content_type == "multipart/form-data":
                    try:
                        form = await _read_upload(request, max_upload, session.csrf)
                    except _CsrfRefused:
                        return message(request, lang, 403, t["csrf_title"], t["csrf_hint"], session)
                    except BadRequest as e:
                        return message(request, lang, 400, t["error_title"], e.message, session)
                else:
                    form = await request.post()
                given = form.get("csrf") or request.headers.get("X-CSRF-Token")
                if not csrf_ok(session.csrf, given):
                    return message(request, lang, 403, t["csrf_title"], t["csrf_hint"], session)
            try:
                return await fn(View(request, ctx, session, lang, form))
            except ApiError as e:
                title = t["not_found"] if e.status == 404 else t["error_title"]
                detail = t["not_found_hint"] if e.status == 404 else e.message
                return message(request, lang, e.status, title, detail, session)

        return handler

    return wrap
