"""The payer's checkout page: `/pay/<order id>`, its status (`/status`, JSON) and QR image (`/qr.png`).

Public: the order id (80 random bits) is the capability. Server-rendered (Jinja2) so it works
without JavaScript (a meta refresh follows the order); `static/checkout.js` polls the status,
counts down and moves on to the return URL by itself. Strict headers: no inline script, no
external origin, no framing, no Referer (the URL is the capability).
"""

from __future__ import annotations

import functools
import io
import re
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp_jinja2
import segno
from aiohttp import web
from markupsafe import Markup

from bridge.clock import rfc3339
from bridge.core.amounts import format_fen
from bridge.core.ratelimit import RateLimiter
from bridge.core.states import OrderStatus
from bridge.errors import NotFound
from bridge.services.checkout import Checkout, checkout_path, load_checkout
from bridge.web.devices import client_address
from bridge.web.i18n import TEXT, pick_language
from bridge.web.keys import CHECKOUT_LIMITER, CHECKOUT_MISSES, CTX
from bridge.web.templating import add_static_route, page_headers, setup_templates

__all__ = ["add_routes", "setup"]

ORDER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
POLL_MS = 2000  # the script's status poll
REFRESH_S = 5  # the no-script meta refresh while the order may still change
NO_STORE = page_headers(form_action="'none'")  # the payer's page has no form


def status_json(c: Checkout) -> dict[str, Any]:
    """`GET /pay/<id>/status`: what the page's script needs to follow the order."""
    return {
        "id": c.order_id,
        "status": c.status.value,
        "amount": format_fen(c.amount_cents),
        "pay_amount": format_fen(c.pay_amount_cents),
        "expires_at": rfc3339(c.expires_at),
        "seconds_left": c.seconds_left,
        "watch": c.watch,
        "return_url": c.return_to,
    }


def setup(app: web.Application) -> None:
    """Attach the shared template environment and the checkout's rate limiters."""
    setup_templates(app)
    # Per (address, order): a page polls every 2 s; this leaves room for reloads and a few tabs.
    app[CHECKOUT_LIMITER] = RateLimiter(rate=60, per=60.0, burst=30)
    # Per address: unknown ids (guessing is hopeless with 80 bits, but each miss costs a query).
    app[CHECKOUT_MISSES] = RateLimiter(rate=30, per=60.0, burst=30)


def _language(request: web.Request) -> str:
    return pick_language(request.headers.get("Accept-Language"), request.query.get("lang"))


def _throttle(request: web.Request, order_id: str) -> str | None:
    """None if this request may go on, else why not ("rate")."""
    addr = client_address(request)
    now = request.app[CTX].clock.now_ms() / 1000
    if request.app[CHECKOUT_MISSES].blocked(addr, now):
        return "rate"
    if not request.app[CHECKOUT_LIMITER].allow(f"{addr} {order_id}", now):
        return "rate"
    return None


async def _load(request: web.Request, pick: str | None = None) -> Checkout | None:
    """The checkout of the path's order, or None if unknown (counted against the address)."""
    order_id = request.match_info["id"]
    ctx = request.app[CTX]
    if ORDER_ID.match(order_id):
        try:
            return await load_checkout(ctx, order_id, pick=pick)
        except NotFound:
            pass
    request.app[CHECKOUT_MISSES].allow(client_address(request), ctx.clock.now_ms() / 1000)
    return None


def _page(request: web.Request, name: str, context: dict[str, Any], status: int = 200) -> web.Response:
    resp = aiohttp_jinja2.render_template(name, request, context, status=status)
    resp.headers.update(NO_STORE)
    return resp


def _message(request: web.Request, lang: str, title_key: str, hint_key: str, status: int) -> web.Response:
    t = TEXT[lang]
    return _page(request, "checkout/message.html", {"t": t, "title": t[title_key], "hint": t[hint_key]}, status)


def _qr(payload: str) -> segno.QRCode | None:
    """The QR code of a payload; None if it is too long for any QR code (an account may hold 2,048 CJK characters)."""
    try:
        return segno.make(payload, error="m")  # segno raises the level when the data leaves room
    except segno.DataOverflowError:
        try:
            return segno.make(payload, error="l")
        except segno.DataOverflowError:
            return None


@functools.lru_cache(maxsize=256)  # a merchant has a handful of accounts; encoding one takes ~20 ms
def _qr_svg(payload: str) -> Markup | None:
    qr = _qr(payload)
    if qr is None:
        return None
    svg = qr.svg_inline(scale=4, border=2, omitsize=True, light="#fff", dark="#000")
    return Markup(svg)  # noqa: S704 - segno's own markup; the payload is encoded as modules, never as text


def alipay_link(payload: str) -> str:
    """The deep link that opens Alipay's scanner on this payload (phones only)."""
    return "alipays://platformapi/startapp?saId=10000007&qrcode=" + quote(payload, safe="")


def _clock(seconds: int) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


async def pay_page(request: web.Request) -> web.StreamResponse:
    lang = _language(request)
    if _throttle(request, request.match_info["id"]):
        return _message(request, lang, "title", "too_many", 429)
    c = await _load(request, request.query.get("account"))
    if c is None:
        return _message(request, lang, "not_found", "not_found_hint", 404)
    if c.status is OrderStatus.PAID and c.return_to:
        raise web.HTTPFound(c.return_to, headers=NO_STORE)
    t = TEXT[lang]
    path = checkout_path(c.order_id)
    keep = {"lang": lang} if "lang" in request.query else {}
    account = c.account
    picked = {"account": account.id} if account and c.choices else {}
    context = {
        "t": t,
        "c": c,
        "lang": lang,
        "pay": format_fen(c.pay_amount_cents),
        "asked": format_fen(c.amount_cents),
        "left": _clock(c.seconds_left),
        "qr": _qr_svg(account.qr_payload) if account and c.status is OrderStatus.PENDING else None,
        "alipay_link": alipay_link(account.qr_payload) if account and account.channel == "alipay" else None,
        "qr_png": f"{path}/qr.png?" + urlencode({"account": account.id}) if account else None,
        "choices": [(a, f"{path}?" + urlencode({**keep, "account": a.id})) for a in c.choices],
        "status_url": f"{path}/status",
        "other_lang_url": f"{path}?" + urlencode({"lang": t["other_lang_code"], **picked}),
        "refresh": REFRESH_S if c.watch else None,
        "poll_ms": POLL_MS,
    }
    return _page(request, "checkout/pay.html", context)


async def pay_status(request: web.Request) -> web.Response:
    if _throttle(request, request.match_info["id"]):
        return web.json_response(
            {"error": {"code": "rate_limited", "message": "too many status requests; slow down"}},
            status=429,
            headers={**NO_STORE, "Retry-After": "5"},
        )
    c = await _load(request)
    if c is None:
        return web.json_response(
            {"error": {"code": "not_found", "message": "no such order"}}, status=404, headers=NO_STORE
        )
    return web.json_response(status_json(c), headers=NO_STORE)


async def pay_qr_png(request: web.Request) -> web.Response:
    """The QR code as a PNG to save (WeChat scans QR codes from the photo album, not from SVG)."""
    if _throttle(request, request.match_info["id"]):
        return web.Response(status=429, text="too many requests", headers={**NO_STORE, "Retry-After": "5"})
    c = await _load(request, request.query.get("account"))
    if c is None or c.account is None or c.status is not OrderStatus.PENDING:
        return web.Response(status=404, text="no QR code here", headers=NO_STORE)
    qr = _qr(c.account.qr_payload)
    if qr is None:
        return web.Response(status=404, text="no QR code here", headers=NO_STORE)
    out = io.BytesIO()
    qr.save(out, kind="png", scale=10, border=3)
    headers = {**NO_STORE, "Content-Disposition": f'attachment; filename="pay-{c.order_id[-8:]}.png"'}
    return web.Response(body=out.getvalue(), content_type="image/png", headers=headers)


def add_routes(app: web.Application) -> None:
    setup(app)
    app.router.add_get("/pay/{id}", pay_page)
    app.router.add_get("/pay/{id}/status", pay_status)
    app.router.add_get("/pay/{id}/qr.png", pay_qr_png)
    add_static_route(app)
