"""Merchant API: orders, payments (with manual resolution) and receiving accounts."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.core.amounts import check_fen, parse_amount
from bridge.core.ssrf import check_target
from bridge.core.states import OrderStatus, PaymentStatus
from bridge.errors import BadRequest
from bridge.services import orders as orders_service
from bridge.services import payments as payments_service
from bridge.services.context import Context
from bridge.services.orders import ORDER_CHANNELS, NewOrder
from bridge.services.views import linked_account_json, order_out, page_json, payment_json
from bridge.web.auth import merchant_route
from bridge.web.validation import Body, check_url, query_choice, query_int, read_json

__all__ = ["add_routes"]

ORDER_FIELDS = {
    "merchant_order_id",
    "amount",
    "amount_cents",
    "channel",
    "expires_in",
    "notify_url",
    "return_url",
    "description",
    "metadata",
}
ORDER_STATUSES = tuple(s.value for s in OrderStatus)
PAYMENT_STATUSES = tuple(s.value for s in PaymentStatus)


def _amount(body: Body) -> int:
    if body.has("amount") and body.has("amount_cents"):
        raise BadRequest("send either amount or amount_cents, not both", "invalid_field")
    if body.has("amount"):
        raw = body.obj["amount"]
        if not isinstance(raw, str):
            raise BadRequest('amount must be a string like "10.00" (or send amount_cents)', "invalid_amount")
        try:
            return parse_amount(raw)
        except ValueError as e:
            raise BadRequest(str(e), "invalid_amount") from None
    if body.has("amount_cents"):
        try:
            return check_fen(body.obj["amount_cents"])
        except ValueError as e:
            raise BadRequest(str(e), "invalid_amount") from None
    raise BadRequest("amount is required", "missing_field")


def _notify_url(url: str, allow_private: bool, name: str = "notify_url") -> str:
    """A valid notify_url (or return_url), refused up front when it names a loopback/private address
    (a notify_url is checked again after DNS)."""
    check_url(url, name)
    refused = check_target(url, [], allow_private=allow_private)
    if refused:
        raise BadRequest(
            f"{name}: loopback, private or metadata addresses are refused ({refused})", "forbidden_webhook_target"
        )
    return url


@merchant_route
async def create_order(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    body = Body(await read_json(request, ctx.settings.max_body, ctx.settings.body_timeout), ORDER_FIELDS)
    s = ctx.settings
    notify_url = body.str("notify_url", required=False, max_len=2048)
    return_url = body.str("return_url", required=False, max_len=2048)
    new = NewOrder(
        merchant_order_id=body.str("merchant_order_id", max_len=128) or "",
        amount_cents=_amount(body),
        channel=body.choice("channel", ORDER_CHANNELS) or "any",
        expires_in=body.int("expires_in", required=False, minimum=s.order_ttl_min, maximum=s.order_ttl_max)
        or s.order_ttl_default,
        notify_url=None if notify_url is None else _notify_url(notify_url, ctx.settings.allow_private_webhooks),
        metadata=body.object("metadata") or {},
        return_url=None if return_url is None else _notify_url(return_url, s.allow_private_webhooks, "return_url"),
        description=body.str("description", required=False, max_len=256),
    )
    order, created, warnings = await orders_service.create_order(ctx, merchant_id, new)
    out: dict[str, Any] = order_out(ctx, order)
    if warnings:
        out["warnings"] = warnings
    return web.json_response(out, status=201 if created else 200)


@merchant_route
async def get_order(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    return web.json_response(order_out(ctx, await orders_service.get_order(ctx, merchant_id, request.match_info["id"])))


@merchant_route
async def list_orders(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    status = query_choice(request, "status", ORDER_STATUSES)
    limit = query_int(request, "limit", 50, minimum=1, maximum=500)
    page = await orders_service.list_orders(
        ctx,
        merchant_id,
        merchant_order_id=request.query.get("merchant_order_id"),
        status=status,
        before=request.query.get("starting_after"),
        limit=limit,
    )
    return web.json_response(page_json(page, lambda d: order_out(ctx, d)))


@merchant_route
async def close_order(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    closed = await orders_service.close_order(ctx, merchant_id, request.match_info["id"])
    return web.json_response(order_out(ctx, closed))


@merchant_route
async def list_payments(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    status = query_choice(request, "status", PAYMENT_STATUSES)
    limit = query_int(request, "limit", 50, minimum=1, maximum=500)
    page = await payments_service.list_payments(
        ctx, merchant_id, status=status, before=request.query.get("starting_after"), limit=limit
    )
    return web.json_response(page_json(page, payment_json))


@merchant_route
async def get_payment(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    return web.json_response(
        payment_json(await payments_service.get_payment(ctx, merchant_id, request.match_info["id"]))
    )


@merchant_route
async def match_payment(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    body = Body(await read_json(request, ctx.settings.max_body, ctx.settings.body_timeout), {"order_id"})
    order_id = body.str("order_id", max_len=64) or ""
    payment, order = await payments_service.match_manually(ctx, merchant_id, request.match_info["id"], order_id)
    return web.json_response({"payment": payment_json(payment), "order": order_out(ctx, order)})


@merchant_route
async def ignore_payment(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    return web.json_response(payment_json(await payments_service.ignore(ctx, merchant_id, request.match_info["id"])))


@merchant_route
async def create_account(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    body = Body(
        await read_json(request, ctx.settings.max_body, ctx.settings.body_timeout),
        {"channel", "name", "qr_payload", "device_ids"},
    )
    account = await payments_service.create_account(
        ctx,
        merchant_id,
        channel=body.choice("channel", ("alipay", "wechat", "unionpay")) or "",
        name=body.str("name", max_len=128) or "",
        qr_payload=body.str("qr_payload", required=False, max_len=2048),
        device_ids=body.str_list("device_ids", max_items=32) or [],
    )
    return web.json_response(linked_account_json(account), status=201)


@merchant_route
async def list_accounts(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    accounts = await payments_service.list_accounts(ctx, merchant_id)
    return web.json_response({"data": [linked_account_json(a) for a in accounts]})


@merchant_route
async def link_device(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    body = Body(await read_json(request, ctx.settings.max_body, ctx.settings.body_timeout), {"device_id"})
    device_id = body.str("device_id", max_len=64) or ""
    account_id = request.match_info["id"]
    await payments_service.link_device(ctx, merchant_id, account_id, device_id)
    return web.json_response({"account_id": account_id, "device_id": device_id})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/orders", create_order)
    app.router.add_get("/v1/orders", list_orders)
    app.router.add_get("/v1/orders/{id}", get_order)
    app.router.add_post("/v1/orders/{id}/close", close_order)
    app.router.add_get("/v1/payments", list_payments)
    app.router.add_get("/v1/payments/{id}", get_payment)
    app.router.add_post("/v1/payments/{id}/match", match_payment)
    app.router.add_post("/v1/payments/{id}/ignore", ignore_payment)
    app.router.add_post("/v1/accounts", create_account)
    app.router.add_get("/v1/accounts", list_accounts)
    app.router.add_post("/v1/accounts/{id}/devices", link_device)
