"""Pairing codes, pairing, and device administration (list, show, revoke)."""

from __future__ import annotations

import functools

from aiohttp import web

from bridge.clock import rfc3339
from bridge.core import forwarding
from bridge.core.forwarding import Network, parse_networks
from bridge.core.ratelimit import client_network
from bridge.errors import RateLimited
from bridge.services import devices as service
from bridge.services import ratelimits
from bridge.web.auth import admin_or_merchant, require_merchant
from bridge.web.keys import CTX
from bridge.web.validation import Body, read_json

__all__ = ["add_routes", "client_address"]

DEVICE_CHANNELS = ("alipay", "wechat", "unionpay", "cashbar", "bank")


@functools.lru_cache(maxsize=8)
def _proxies(text: str) -> tuple[Network, ...]:
    return parse_networks(text)


def client_address(request: web.Request) -> str:
    """The client's address for rate limits and logs: the TCP peer, or behind a trusted proxy the
    address that proxy put in X-Forwarded-For (bridge.core.forwarding)."""
    trusted = _proxies(request.app[CTX].settings.trusted_proxies)
    return forwarding.client_address(request.remote, request.headers.getall("X-Forwarded-For", []), trusted)


async def create_pairing_code(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    merchant_id = await require_merchant(request)
    # Shared by every instance on the database (bridge.core.ratelimit says why).
    wait = await ratelimits.take(
        ctx, f"pairing-codes {merchant_id}", limit=ctx.settings.pairing_codes_per_minute, per_s=60.0
    )
    if wait > 0:
        raise RateLimited(
            "too many pairing codes for this merchant (each live code is one more a guess could hit); wait and retry",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    code, expires_at = await service.create_pairing_code(ctx, merchant_id)
    server = ctx.base_url
    pair_url = service.pair_url(server, code)
    return web.json_response(
        {"code": code, "expires_at": rfc3339(expires_at), "pair_url": pair_url, "server": server}, status=201
    )


async def pair(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    network = client_network(client_address(request))  # not the exact address: a /64 or 127/8 walks around it
    # Shared by every instance: N instances must not give a code guesser N times the attempts.
    wait = await ratelimits.take(ctx, f"pairing {network}", limit=ctx.settings.pairing_attempts_per_minute, per_s=60.0)
    if wait > 0:
        raise RateLimited(
            "too many pairing attempts from this network; wait and retry",
            headers={"Retry-After": str(int(wait) + 1)},
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
