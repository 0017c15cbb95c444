"""Shop gateways over HTTP: the merchant's `/v1/compat` and the 易支付 endpoints (V1 at the root, V2 under
/api/pay/). Each answers in its protocol's own shape; nothing here touches SQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bridge.clock import rfc3339
from bridge.core import epay
from bridge.core.amounts import format_fen
from bridge.core.models.compat import Shop, ShopOrderDetail
from bridge.core.states import OrderStatus
from bridge.errors import ApiError, BadRequest, Unauthorized
from bridge.services import compat as service
from bridge.services.checkout import checkout_url
from bridge.services.context import Context
from bridge.services.views import credentials_json
from bridge.web.auth import merchant_route
from bridge.web.keys import CTX
from bridge.web.shop_input import error_page, merged_params, query_params, read_form
from bridge.web.validation import Body, read_json

__all__ = ["add_routes"]


# --- the merchant's credentials ---------------------------------------------------------------


@merchant_route
async def get_compat(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    return web.json_response(credentials_json(ctx, await service.credentials(ctx, merchant_id)))


@merchant_route
async def rotate_compat(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    return web.json_response(credentials_json(ctx, await service.rotate_key(ctx, merchant_id)))


@merchant_route
async def put_compat(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    body = Body(await read_json(request, ctx.settings.max_body, ctx.settings.body_timeout), {"merchant_public_key"})
    if not body.has("merchant_public_key"):
        raise BadRequest("merchant_public_key is required (null clears it)", "missing_field")
    key = body.str("merchant_public_key", required=False, max_len=4096)
    return web.json_response(credentials_json(ctx, await service.set_merchant_public_key(ctx, merchant_id, key)))


# --- 易支付 V1 ---------------------------------------------------------------------------------


async def _submit_params(request: web.Request, ctx: Context) -> dict[str, str]:
    """`pid` in the query string means the parameters are the query (also on a POST); else the form."""
    query = query_params(request)
    if "pid" in query or request.method == "GET":
        return query
    return await read_form(request, ctx.settings.max_body, ctx.settings.body_timeout)


def _shop_order(ctx: Context, protocol: str, p: dict[str, str]) -> service.ShopOrder:
    pay_type = p.get("type") or None
    try:
        channel = epay.channel_for_type(pay_type)
    except ValueError as e:
        raise BadRequest(str(e), "unsupported_type") from None
    return service.shop_order(
        ctx,
        protocol=protocol,
        out_trade_no=p.get("out_trade_no"),
        money=p.get("money"),
        pay_type=pay_type,
        channel=channel,
        name=p.get("name"),
        param=p.get("param"),
        notify_url=p.get("notify_url"),
        return_url=p.get("return_url"),
    )


async def _v1_order(ctx: Context, p: dict[str, str]) -> ShopOrderDetail:
    shop = await service.shop_by_pid(ctx, p.get("pid"))
    service.verify_v1(shop, p)
    return await service.create_shop_order(ctx, shop, _shop_order(ctx, "epay1", p))


async def submit(request: web.Request) -> web.Response:
    """易支付 page payment: verify, create (or find) the order, send the payer to its checkout page."""
    ctx = request.app[CTX]
    try:
        made = await _v1_order(ctx, await _submit_params(request, ctx))
    except ApiError as e:
        return error_page(e)
    raise web.HTTPFound(checkout_url(ctx, made.detail.order.id))


def _epay_error(e: ApiError) -> web.Response:
    return web.json_response({"code": -1, "msg": e.message, "error": e.code})


async def mapi(request: web.Request) -> web.Response:
    """易支付 API payment: the order as JSON with the checkout URL as `payurl`."""
    ctx = request.app[CTX]
    try:
        p = await merged_params(request, ctx.settings.max_body, ctx.settings.body_timeout)
        made = await _v1_order(ctx, p)
    except ApiError as e:
        return _epay_error(e)
    order = made.detail.order
    url = checkout_url(ctx, order.id)
    return web.json_response(
        {
            "code": 1,
            "msg": "success",
            "trade_no": order.id,
            "payurl": url,
            "qrcode": url,
            "money": made.compat.money_str,
            "pay_amount": format_fen(order.pay_amount_cents),
        }
    )


def _epay_order_fields(shop: Shop, made: ShopOrderDetail) -> dict[str, Any]:
    order, compat = made.detail.order, made.compat
    paid = order.status is OrderStatus.PAID
    pay_type = compat.type or epay.CHANNEL_TYPES.get(order.channel, "")
    return {
        "trade_no": order.id,
        "out_trade_no": compat.out_trade_no,
        "type": pay_type,
        "pid": shop.pid,
        "addtime": rfc3339(order.created_at),
        "endtime": rfc3339(order.paid_at) or "",
        "name": compat.name,
        "money": compat.money_str,
        "param": compat.param,
        "status": 1 if paid else 0,
    }


async def api(request: web.Request) -> web.Response:
    """易支付 `api.php?act=order|query`, authenticated with the plain key."""
    ctx = request.app[CTX]
    try:
        p = await merged_params(request, ctx.settings.max_body, ctx.settings.body_timeout)
        shop = await service.shop_by_pid(ctx, p.get("pid"))
        if not service.key_matches(shop, p.get("key", "")):
            raise Unauthorized("key mismatch", "invalid_key")
        act = p.get("act")
        if act == "query":
            return web.json_response({"code": 1, "pid": shop.pid, "active": 1})
        if act != "order":
            raise BadRequest("act must be order or query", "unsupported_act")
        made = await service.find_shop_order(ctx, shop, trade_no=p.get("trade_no"), out_trade_no=p.get("out_trade_no"))
    except ApiError as e:
        return _epay_error(e)
    return web.json_response({"code": 1, "msg": "succ", **_epay_order_fields(shop, made)})


# --- 易支付 V2 (RSA) ---------------------------------------------------------------------------


def _v2_error(e: ApiError) -> web.Response:
    return web.json_response({"code": -1, "msg": e.message, "error": e.code})


async def _v2(request: web.Request, ctx: Context) -> tuple[Shop, dict[str, str]]:
    p = await merged_params(request, ctx.settings.max_body, ctx.settings.body_timeout)
    shop = await service.shop_by_pid(ctx, p.get("pid"))
    service.verify_v2(shop, p, ctx.clock.now_ms())
    return shop, p


async def v2_submit(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        shop, p = await _v2(request, ctx)
        made = await service.create_shop_order(ctx, shop, _shop_order(ctx, "epay2", p))
    except ApiError as e:
        return error_page(e)
    raise web.HTTPFound(checkout_url(ctx, made.detail.order.id))


async def v2_create(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        shop, p = await _v2(request, ctx)
        made = await service.create_shop_order(ctx, shop, _shop_order(ctx, "epay2", p))
    except ApiError as e:
        return _v2_error(e)
    fields: dict[str, str | int] = {
        "code": 0,
        "msg": "success",
        "trade_no": made.detail.order.id,
        "pay_type": "jump",
        "pay_info": checkout_url(ctx, made.detail.order.id),
    }
    return web.json_response(service.sign_v2(shop, fields, ctx.clock.now_ms()))


async def v2_query(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        shop, p = await _v2(request, ctx)
        made = await service.find_shop_order(ctx, shop, trade_no=p.get("trade_no"), out_trade_no=p.get("out_trade_no"))
    except ApiError as e:
        return _v2_error(e)
    order = made.detail.order
    fields: dict[str, str | int] = {
        "code": 0,
        "msg": "success",
        **{k: v for k, v in _epay_order_fields(shop, made).items() if k not in ("pid", "addtime", "endtime")},
        "pid": str(shop.pid),
        "pay_amount": format_fen(order.pay_amount_cents),
    }
    return web.json_response(service.sign_v2(shop, fields, ctx.clock.now_ms()))


def _any(app: web.Application, path: str, handler: Callable[[web.Request], Awaitable[web.Response]]) -> None:
    app.router.add_get(path, handler)
    app.router.add_post(path, handler)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/compat", get_compat)
    app.router.add_put("/v1/compat", put_compat)
    app.router.add_post("/v1/compat/rotate", rotate_compat)
    _any(app, "/submit.php", submit)
    _any(app, "//submit.php", submit)  # v2board / Xboard append /submit.php to a base that may end with /
    _any(app, "/mapi.php", mapi)
    _any(app, "/api.php", api)
    _any(app, "/api/pay/submit", v2_submit)
    _any(app, "/api/pay/create", v2_create)
    _any(app, "/api/pay/query", v2_query)
