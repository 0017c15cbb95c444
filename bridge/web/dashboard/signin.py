"""Signing in (a merchant API key or the admin token, posted in a form: never in a URL) and out."""

from __future__ import annotations

import secrets

import structlog
from aiohttp import web

from bridge.services import sessions as service
from bridge.web.dashboard.pages import (
    COOKIE,
    NO_STORE,
    PATH,
    View,
    csrf_ok,
    language,
    page,
    redirect,
    render,
    set_cookie,
)
from bridge.web.dashboard.text import TEXT
from bridge.web.devices import client_address
from bridge.web.keys import ADMIN_HASH, CTX, SIGN_IN_LIMITER

__all__ = ["add_routes"]

log = structlog.get_logger("bridge.dashboard")

SIGN_IN_COOKIE = "pb_sign_in"  # the sign-in form's own CSRF token (there is no session yet)
MAX_SECRET = 200


def _form(request: web.Request, lang: str, *, error: str | None = None, status: int = 200) -> web.Response:
    token = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(24)
    resp = render(request, "dashboard/sign_in.html", {"csrf": token, "error": error}, lang, status)
    set_cookie(request, resp, SIGN_IN_COOKIE, token, max_age=3600)
    return resp


async def sign_in_page(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    if await service.load_session(ctx, request.cookies.get(COOKIE, "")) is not None:
        raise redirect(PATH)
    return _form(request, language(request))


async def sign_in(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    lang = language(request)
    t = TEXT[lang]
    form = await request.post()
    if not csrf_ok(request.cookies.get(SIGN_IN_COOKIE, ""), form.get("csrf")) or not request.cookies.get(
        SIGN_IN_COOKIE
    ):
        return render(
            request, "dashboard/message.html", {"title": t["csrf_title"], "detail": t["csrf_hint"]}, lang, 403
        )
    limiter = request.app[SIGN_IN_LIMITER]
    addr = client_address(request)
    now = ctx.clock.now_ms() / 1000
    if limiter.blocked(addr, now):
        resp = _form(request, lang, error=t["too_many_sign_ins"], status=429)
        resp.headers["Retry-After"] = str(max(1, int(limiter.retry_after(addr)) + 1))
        return resp
    secret = form.get("secret")
    session = None
    if isinstance(secret, str) and 0 < len(secret.strip()) <= MAX_SECRET:
        session = await service.sign_in(ctx, secret.strip(), request.app[ADMIN_HASH])
    if session is None:
        limiter.allow(addr, now)  # a failure costs a token; successes cost nothing
        log.info("dashboard.sign_in_failed", address=addr)
        return _form(request, lang, error=t["wrong_key"], status=401)
    log.info("dashboard.signed_in", merchant_id=session.merchant_id, admin=session.is_admin, address=addr)
    resp = web.HTTPSeeOther(PATH, headers=NO_STORE)
    set_cookie(request, resp, COOKIE, session.id, max_age=None)
    resp.del_cookie(SIGN_IN_COOKIE, path=PATH)
    raise resp


@page("any")
async def sign_out(view: View) -> web.StreamResponse:
    await service.sign_out(view.ctx, view.session.id)
    log.info("dashboard.signed_out", merchant_id=view.session.merchant_id, admin=view.session.is_admin)
    resp = redirect(f"{PATH}/sign-in")
    resp.del_cookie(COOKIE, path=PATH)
    raise resp


@page("any")
async def home(view: View) -> web.StreamResponse:
    raise redirect(f"{PATH}/admin" if view.session.is_admin else f"{PATH}/phones")


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, home)
    app.router.add_get(f"{PATH}/sign-in", sign_in_page)
    app.router.add_post(f"{PATH}/sign-in", sign_in)
    app.router.add_post(f"{PATH}/sign-out", sign_out)
