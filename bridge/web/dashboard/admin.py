"""The admin's pages: merchants (create, usage), system health, the metrics (all phones: the phones page)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.errors import StoreError
from bridge.services import admin as service
from bridge.services.views import health_json, merchant_usage_json, new_merchant_json
from bridge.web.dashboard.pages import NO_STORE, PATH, View, form_str, page
from bridge.web.keys import HUB

__all__ = ["add_routes"]


async def _context(view: View) -> dict[str, Any]:
    try:
        health = health_json(await service.health(view.ctx))
    except StoreError as e:  # the page still opens and says so
        health = {"database": {"ok": False, "error": str(e)}, "devices": {}, "deliveries": None, "sender": None}
    health["connected"] = len(view.request.app[HUB])
    return {
        "nav": "admin",
        "health": health,
        "merchants": [merchant_usage_json(m) for m in await service.list_merchants(view.ctx)],
        "created": None,
    }


@page("admin")
async def admin(view: View) -> web.StreamResponse:
    return view.render("dashboard/admin.html", await _context(view))


@page("admin")
async def create_merchant(view: View) -> web.StreamResponse:
    created = await service.create_merchant(view.ctx, form_str(view.form, "name", max_len=128))
    context = await _context(view)
    context["created"] = new_merchant_json(created)  # its API key and webhook secret: shown this once
    return view.render("dashboard/admin.html", context, status=201)


@page("admin")
async def metrics(view: View) -> web.StreamResponse:
    """/metrics for the signed-in admin's browser (Prometheus scrapes /metrics with the admin token)."""
    body = generate_latest(view.ctx.metrics.registry)
    return web.Response(body=body, headers={**NO_STORE, "Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PATH}/admin", admin)
    app.router.add_post(f"{PATH}/admin/merchants", create_merchant)
    app.router.add_get(f"{PATH}/admin/metrics", metrics)
