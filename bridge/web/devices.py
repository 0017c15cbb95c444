"""Pairing codes, pairing, and device administration (list, show, revoke)."""

from __future__ import annotations

from aiohttp import web

from bridge.clock import rfc3339
from bridge.core.ratelimit import client_network
from bridge.errors import RateLimited
from bridge.services import devices as service
from bridge.web.auth import admin_or_merchant, require_merchant
from bridge.web.keys import CTX, PAIR_CODE_LIMITER, PAIR_LIMITER
from bridge.web.validation import Body, read_json

__all__ = ["add_routes", "client_address"]

DEVICE_CHANNELS = ("alipay", "wechat", "unionpay", "cashbar", "bank")


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


async def create_pairing_code(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    merchant_id = await require_merchant(request)
    codes = request.app[PAIR_CODE_LIMITER]
    if not codes.allow(merchant_id, ctx.clock.now_ms() / 1000):
        wait = max(1, int(codes.retry_after(merchant_id)) + 1)
        raise RateLimited(
            "too many pairing codes for this merchant (each live code is one more a guess could hit); wait and retry",
            headers={"Retry-After": str(wait)},
        )
    code, expires_at = await service.create_pairing_code(ctx, merchant_id)
    server = ctx.base_url
    pair_url = service.pair_url(server, code)
    return web.json_response(
        {"code": code, "expires_at": rfc3339(expires_at), "pair_url": pair_url, "server": server}, status=201
    )


async def pair(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    limiter = request.app[PAIR_LIMITER]
    network = client_network(client_address(request))  # not the exact address: a /64 or 127/8 walks around it
    now = ctx.clock.now_ms() / 1000
    if not limiter.allow(network, now):
        wait = max(1, int(limiter.retry_after(network)) + 1)
        raise RateLimited(
            "too many pairing attempts from this network; wait and retry", headers={"Retry-After": str(wait)}
        )
    body = Body(
        await read_json(request, ctx.settings.max_body, ctx.settings.body_timeout),
        {"code", "public_key", "name", "channels"},
    )
    result = await service.pair_device(
        ctx,
        code=body.str("code", max_len=32) or "",
        public_key=body.str("public_key", max_len=128) or "",
        name=body.str("name", max_len=128) or "",
        channels=body.str_list("channels", choices=DEVICE_CHANNELS) or [],
    )
    return web.json_response(result, status=201)


async def list_devices(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    merchant_id = await admin_or_merchant(request)
    devices = await service.list_devices(ctx, merchant_id)
    return web.json_response({"data": devices})


async def get_device(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    merchant_id = await admin_or_merchant(request)
    d = await service.get_device(ctx, merchant_id, request.match_info["id"])
    return web.json_response(d)


async def revoke_device(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    merchant_id = await admin_or_merchant(request)
    d = await service.revoke_device(ctx, merchant_id, request.match_info["id"])  # the bus closes its socket
    return web.json_response(d)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/pairing-codes", create_pairing_code)
    app.router.add_post("/v1/devices/pair", pair)
    app.router.add_get("/v1/devices", list_devices)
    app.router.add_get("/v1/devices/{id}", get_device)
    app.router.add_delete("/v1/devices/{id}", revoke_device)
