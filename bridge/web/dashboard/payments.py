"""Payments: the unmatched queue first (with its reason and the orders each may pay), then the rest."""

from __future__ import annotations

from aiohttp import web

from bridge.core.states import PaymentStatus
from bridge.services import payments as service
from bridge.services.views import payment_json, unmatched_json
from bridge.web.dashboard.pages import PATH, View, form_str, page, redirect

__all__ = ["add_routes"]


@page("merchant")
async def payments(view: View) -> web.StreamResponse:
    queue = [unmatched_json(view.ctx, u) for u in await service.unmatched_queue(view.ctx, view.merchant_id)]
    recent = await service.list_payments(view.ctx, view.merchant_id, status=None, before=None, limit=50)
    return view.render(
        "dashboard/payments.html",
        {
            "nav": "payments",
            "queue": queue,
            "recent": [payment_json(p) for p in recent.items if p.status is not PaymentStatus.UNMATCHED],
            "done": view.request.query.get("done"),
        },
    )


@page("merchant")
async def match(view: View) -> web.StreamResponse:
    payment_id = view.request.match_info["id"]
    order_id = form_str(view.form, "order_id", max_len=64)
    await service.match_manually(view.ctx, view.merchant_id, payment_id, order_id)
    raise redirect(f"{PATH}/orders/{order_id}", done="matched")


@page("merchant")
async def ignore(view: View) -> web.StreamResponse:
    await service.ignore(view.ctx, view.merchant_id, view.request.match_info["id"])
    raise redirect(f"{PATH}/payments", done="ignored")


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PATH}/payments", payments)
    app.router.add_post(f"{PATH}/payments/{{id}}/match", match)
    app.router.add_post(f"{PATH}/payments/{{id}}/ignore", ignore)
