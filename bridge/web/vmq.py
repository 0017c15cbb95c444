"""V免签 under `/vmq/<pid>/`: createOrder, getOrder, checkOrder, closeOrder, getState.

The monitor endpoints of V免签 (`appPush`, `appHeart`) are not served: they are the replayable MD5
pushes that Paybridge's signed device channel replaces.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bridge.core import vmq
from bridge.core.models.compat import Shop, ShopOrderDetail
from bridge.core.states import OrderStatus
from bridge.errors import ApiError, BadRequest
from bridge.services import compat as service
from bridge.services.checkout import checkout_url
from bridge.services.compat_notify import compat_return_url
from bridge.services.context import Context
from bridge.web.keys import CTX
from bridge.web.shop_input import error_page, merged_params

__all__ = ["add_routes"]

Handler = Callable[[web.Request, Context, Shop, dict[str, str]], Awaitable[web.Response]]


def _ok(data: Any) -> web.Response:
    return web.json_response({"code": 1, "msg": "成功", "data": data})


def _fail(message: str, code: str = "") -> web.Response:
    return web.json_response({"code": -1, "msg": message, "error": code or None})


def vmq_route(fn: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Resolve `<pid>`, read the parameters (query and form), and answer errors as `{"code": -1, "msg"}`."""

    async def handler(request: web.Request) -> web.Response:
        ctx = request.app[CTX]
        try:
            shop = await service.shop_by_pid(ctx, request.match_info["pid"])
            params = await merged_params(request, ctx.settings.max_body, ctx.settings.body_timeout)
            return await fn(request, ctx, shop, params)
        except ApiError as e:
            return _fail(e.message, e.code)

    return handler


_STATE = {OrderStatus.PENDING: 0, OrderStatus.PAID: 1, OrderStatus.EXPIRED: -1, OrderStatus.CLOSED: -1}


def _order_data(ctx: Context, made: ShopOrderDetail) -> dict[str, Any]:
    order, compat = made.detail.order, made.compat
    return {
        "payId": compat.out_trade_no,
        "orderId": order.id,
        "payType": int(compat.type) if compat.type else 0,
        "price": compat.money_str,
        "reallyPrice": vmq.php_money(order.pay_amount_cents),
        "payUrl": checkout_url(ctx, order.id),
        "isAuto": 1,
        "state": _STATE[order.status],
        "timeOut": max(1, (order.expires_at - order.created_at) // 60_000),
        "date": order.created_at // 1000,
    }


async def create_order(request: web.Request) -> web.Response:
    """Verify, create (or find) the order; `isHtml=1` sends the payer to the checkout page."""
    ctx = request.app[CTX]
    is_html = request.query.get("isHtml") == "1"
    try:
        shop = await service.shop_by_pid(ctx, request.match_info["pid"])
        p = await merged_params(request, ctx.settings.max_body, ctx.settings.body_timeout)
        is_html = p.get("isHtml") == "1"
        pay_type = p.get("type", "")
        service.verify_vmq(
            shop, [p.get("payId", ""), p.get("param", ""), pay_type, p.get("price", "")], p.get("sign", "")
        )
        if pay_type not in vmq.PAY_TYPES:
            raise BadRequest("type must be 1 (WeChat) or 2 (Alipay)", "unsupported_type")
        order = service.shop_order(
            ctx,
            protocol="vmq",
            out_trade_no=p.get("payId"),
            money=p.get("price"),
            pay_type=pay_type,
            channel=vmq.PAY_TYPES[pay_type],
            name="",
            param=p.get("param"),
            notify_url=p.get("notifyUrl"),
            return_url=p.get("returnUrl"),
        )
        made = await service.create_shop_order(ctx, shop, order)
    except ApiError as e:
        return error_page(e) if is_html else _fail(e.message, e.code)
    if is_html:
        raise web.HTTPFound(checkout_url(ctx, made.detail.order.id))
    return _ok(_order_data(ctx, made))


@vmq_route
async def get_order(request: web.Request, ctx: Context, shop: Shop, p: dict[str, str]) -> web.Response:
    made = await service.find_shop_order(ctx, shop, trade_no=p.get("orderId") or None)
    return _ok(_order_data(ctx, made))


@vmq_route
async def check_order(request: web.Request, ctx: Context, shop: Shop, p: dict[str, str]) -> web.Response:
    """Code 1 with the signed return URL once paid; -1 while unpaid, or once expired or closed."""
    made = await service.find_shop_order(ctx, shop, trade_no=p.get("orderId") or None)
    status = made.detail.order.status
    if status is OrderStatus.PAID:
        return _ok(await compat_return_url(ctx, made.detail.order.id) or "")
    return _fail("订单未支付" if status is OrderStatus.PENDING else "订单已过期", f"order_{status.value}")


@vmq_route
async def close_order(request: web.Request, ctx: Context, shop: Shop, p: dict[str, str]) -> web.Response:
    """Close a pending order: `sign = md5(orderId + key)`."""
    order_id = p.get("orderId", "")
    service.verify_vmq(shop, [order_id], p.get("sign", ""))
    await service.close_shop_order(ctx, shop, order_id)
    return _ok(None)


@vmq_route
async def get_state(request: web.Request, ctx: Context, shop: Shop, p: dict[str, str]) -> web.Response:
    """Whether the receiving phone is online: `sign = md5(t + key)`."""
    service.verify_vmq(shop, [p.get("t", "")], p.get("sign", ""))
    state = await service.monitor_state(ctx, shop)
    return _ok({"jkstate": "1" if state else "0"})


def add_routes(app: web.Application) -> None:
    for name, handler in (
        ("createOrder", create_order),
        ("getOrder", get_order),
        ("checkOrder", check_order),
        ("closeOrder", close_order),
        ("getState", get_state),
    ):
        app.router.add_get(f"/vmq/{{pid}}/{name}", handler)
        app.router.add_post(f"/vmq/{{pid}}/{name}", handler)
