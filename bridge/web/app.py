"""The aiohttp application: routes, middleware, and the owned background tasks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web

from bridge.clock import Clock, SystemClock
from bridge.config import Settings
from bridge.core.ratelimit import RateLimiter
from bridge.errors import Unavailable
from bridge.services.admin import ensure_admin_token
from bridge.services.context import Context
from bridge.services.orders import expire_orders
from bridge.store.database import Tx, open_database
from bridge.web import admin, checkout, compat, dashboard, devices, events, openapi, orders, vmq, webhooks, ws
from bridge.web.hub import DeviceHub
from bridge.web.keys import ADMIN_HASH, CTX, HUB, KEY_CACHE, PAIR_CODE_LIMITER, PAIR_LIMITER
from bridge.web.middleware import error_middleware
from bridge.web.tasks import spawn, stop

__all__ = ["create_app", "make_runner"]

log = structlog.get_logger("bridge.app")


async def _database(app: web.Application) -> AsyncIterator[None]:
    ctx = app[CTX]
    await ctx.db.open()

    def all_offline(tx: Tx) -> None:  # nothing is connected to a process that just started
        tx.execute("UPDATE devices SET status = 'offline', connected_since = NULL WHERE status != 'offline'")

    for attempt in range(1, 6):
        # Another instance on the same PostgreSQL database may be updating device rows in another
        # order: a deadlock (Unavailable) fails this write and must not stop the start; try again.
        try:
            await ctx.db.write(all_offline)
            break
        except Unavailable as e:
            if attempt == 5:
                raise
            log.warning("db.startup_write_retry", attempt=attempt, error=str(e))
            await asyncio.sleep(0.1 * attempt)
    yield
    await app[HUB].close_all()
    await ctx.db.close()


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
    ctx = Context(
        settings=settings,
        db=open_database(
            settings.database,
            synchronous=settings.sqlite_synchronous,
            busy_timeout_ms=settings.sqlite_busy_timeout,
            key_file=settings.secrets_key_path,
            pg_timeouts=(
                settings.pg_statement_timeout,
                settings.pg_lock_timeout,
                settings.pg_idle_in_transaction_timeout,
            ),
        ),
        clock=clock or SystemClock(),
    )
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body)
    app[CTX] = ctx
    app[ADMIN_HASH] = admin_hash or ensure_admin_token(settings.data_dir, settings.admin_token)[0]
    app[KEY_CACHE] = {}
    app[PAIR_LIMITER] = RateLimiter(
        rate=settings.pairing_attempts_per_minute, per=60.0, burst=settings.pairing_attempts_per_minute
    )
    app[PAIR_CODE_LIMITER] = RateLimiter(
        rate=settings.pairing_codes_per_minute, per=60.0, burst=settings.pairing_codes_per_minute
    )
    app[HUB] = DeviceHub(ctx)
    for module in (admin, orders, devices, ws, webhooks, events, openapi, checkout, compat, dashboard, vmq):
        module.add_routes(app)

    async def close_devices(app: web.Application) -> None:
        app[CTX].bus.close()
        await app[HUB].close_all()

    app.on_shutdown.append(close_devices)
    app.cleanup_ctx.extend([_database, _expiry, _monitor, webhooks.delivery_worker_ctx, *(extra_contexts or [])])
    return app


def make_runner(app: web.Application) -> web.AppRunner:
    """An AppRunner with our connection limits: headers must arrive within `header_timeout`
    (aiohttp's keep-alive timer also runs from connection start until a full request is parsed,
    so a slowloris client is closed), no access log (we log business events instead)."""
    s = app[CTX].settings
    return web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=5.0, keepalive_timeout=s.header_timeout
    )
