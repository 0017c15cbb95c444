"""Admin routes (merchants), health and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.services import admin as service
from bridge.services.views import merchant_json
from bridge.web.auth import require_admin, require_merchant
from bridge.web.keys import CTX, HUB
from bridge.web.validation import Body, read_json

__all__ = ["add_routes"]


async def create_merchant(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    await require_admin(request)
    body = Body(await read_json(request, ctx.settings.max_body, ctx.settings.body_timeout), {"name"})
    merchant = await service.create_merchant(ctx, body.str("name", max_len=128) or "")
    return web.json_response(merchant, status=201)


async def me(request: web.Request) -> web.Response:
    """The merchant an API key belongs to (operators check they hold the right key)."""
    ctx = request.app[CTX]
    merchant_id = await require_merchant(request)
    return web.json_response(merchant_json(await service.get_merchant(ctx, merchant_id)))


async def healthz(request: web.Request) -> web.Response:
    ctx = request.app[CTX]

    await service.database_ok(ctx)
    return web.json_response({"status": "ok", "connected_devices": len(request.app[HUB])})


async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    await require_admin(request)
    body = generate_latest(ctx.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/merchants", create_merchant)
    app.router.add_get("/v1/me", me)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
