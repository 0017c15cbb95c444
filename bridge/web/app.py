"""The aiohttp application: routes, middleware, and the owned background tasks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web

from bridge.clock import Clock, SystemClock
from bridge.config import Settings
from bridge.services import devices as device_service
from bridge.services import ratelimits
from bridge.services.admin import ensure_admin_token
from bridge.services.context import open_context
from bridge.services.orders import expire_orders
from bridge.web import admin, checkout, compat, dashboard, devices, events, openapi, orders, vmq, webhooks, ws
from bridge.web.hub import DeviceHub
from bridge.web.keys import ADMIN_HASH, CTX, HUB, KEY_CACHE
from bridge.web.middleware import error_middleware
from bridge.web.tasks import spawn, stop

__all__ = ["create_app", "make_runner"]

log = structlog.get_logger("bridge.app")


async def _database(app: web.Application) -> AsyncIterator[None]:
    ctx = app[CTX]
    await ctx.db.open()
    app[HUB].listen()
    # Other instances on this database tell us of their commits (SQLite: nobody else).
    await ctx.db.listen(ctx.bus.broadcast.receive, ctx.bus.broadcast.gap, f"paybridge-listen {ctx.bus.instance}")
    yield
    await app[HUB].close_all()
    await ctx.db.close()


async def _instance(app: web.Application) -> AsyncIterator[None]:
    """This instance's heartbeat row, and the sweep that marks offline the devices of instances
    whose heartbeat ran out (each instance sweeps; a device is taken by one sweep)."""
    ctx = app[CTX]
    ttl = ctx.settings.instance_ttl
    sole = ctx.db.dialect == "sqlite"  # one process: any other instance row is a past run of ours
    await device_service.beat(ctx, ttl_ms=int(ttl * 1000), sole=sole)
    await device_service.sweep_orphans(ctx)

    async def loop() -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                await device_service.beat(ctx, ttl_ms=int(ttl * 1000))
                await device_service.sweep_orphans(ctx)
                await ratelimits.prune(ctx)
            except Exception as e:  # the database may be busy or away; try again next beat
                log.warning("instance.beat_failed", error=repr(e))

    task = spawn(loop(), "instance-heartbeat")
    yield
    await stop(task)
    with contextlib.suppress(Exception):  # best effort: otherwise its row simply runs out
        await device_service.leave(ctx)


async def _expiry(app: web.Application) -> AsyncIterator[None]:
    ctx = app[CTX]

    async def loop() -> None:
        quarantine: set[str] = set()  # orders that failed even to expire: skipped, not retried each tick
        while True:
            try:
                while await expire_orders(ctx, quarantine=quarantine) > 0:
                    pass
            except Exception as e:  # the database may be busy; try again next tick
                log.warning("expiry.failed", error=repr(e))
            await asyncio.sleep(ctx.settings.expiry_interval)

    task = spawn(loop(), "order-expiry")
    yield
    await stop(task)


async def _monitor(app: web.Application) -> AsyncIterator[None]:
    task = spawn(app[HUB].monitor(), "device-monitor")
    yield
    await stop(task)


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    admin_hash: str | None = None,
    extra_contexts: list[Callable[[web.Application], AsyncIterator[None]]] | None = None,
) -> web.Application:
    ctx = open_context(settings, clock or SystemClock())
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body)
    app[CTX] = ctx
    app[ADMIN_HASH] = admin_hash or ensure_admin_token(settings.data_dir, settings.admin_token)[0]
    app[KEY_CACHE] = {}
    app[HUB] = DeviceHub(ctx)
    for module in (admin, orders, devices, ws, webhooks, events, openapi, checkout, compat, dashboard, vmq):
        module.add_routes(app)

    async def close_devices(app: web.Application) -> None:
        app[CTX].bus.close()
        await app[HUB].close_all()

    app.on_shutdown.append(close_devices)
    app.cleanup_ctx.extend(
        [_database, _instance, _expiry, _monitor, webhooks.delivery_worker_ctx, *(extra_contexts or [])]
    )
    return app


def make_runner(app: web.Application) -> web.AppRunner:
    """An AppRunner with our connection limits: headers must arrive within `header_timeout`
    (aiohttp's keep-alive timer also runs from connection start until a full request is parsed,
    so a slowloris client is closed), no access log (we log business events instead)."""
    s = app[CTX].settings
    return web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=5.0, keepalive_timeout=s.header_timeout
    )
