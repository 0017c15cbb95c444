"""Orders: a filtered list, a detail page with the order's timeline, closing a pending order."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from aiohttp import web

from bridge.core.states import OrderStatus
from bridge.errors import BadRequest
from bridge.services import orders as service
from bridge.services.views import order_out, timeline_json
from bridge.web.dashboard.pages import PATH, View, page, redirect

__all__ = ["add_routes", "parse_day"]

PAGE_SIZE = 50
STATUSES = tuple(s.value for s in OrderStatus)
DAY_MS = 86_400_000


def parse_day(value: str, name: str) -> int:
    """ "YYYY-MM-DD" (UTC) -> Unix ms at its start."""
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise BadRequest(f"{name} must be a date like 2026-12-03", "invalid_filter") from None
    return int(day.timestamp()) * 1000


def _choice(view: View, name: str, choices: tuple[str, ...]) -> str | None:
    value = view.request.query.get(name, "")
    if not value:
        return None
    if value not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}", "invalid_filter")
    return value


@page("merchant")
async def list_orders(view: View) -> web.StreamResponse:
    q = view.request.query
    filters = {
        "status": _choice(view, "status", STATUSES),
        "channel": _choice(view, "channel", service.ORDER_CHANNELS),
        "from": q.get("from", "")[:10],
        "to": q.get("to", "")[:10],
        "ref": q.get("ref", "").strip()[:128],
    }
    result = await service.list_orders(
        view.ctx,
        view.merchant_id,
        merchant_order_id=filters["ref"] or None,
        status=filters["status"],
        channel=filters["channel"],
        created_from=parse_day(filters["from"], "from") if filters["from"] else None,
        created_to=parse_day(filters["to"], "to") + DAY_MS if filters["to"] else None,
        before=q.get("before") or None,
        limit=PAGE_SIZE,
    )
    orders = [order_out(view.ctx, d) for d in result.items]
    more = None
    if result.has_more:
        keep = {k: v for k, v in filters.items() if v}
        more = f"{PATH}/orders?" + urlencode({**keep, "before": orders[-1]["id"]})
    return view.render(
        "dashboard/orders.html",
        {
            "nav": "orders",
            "orders": orders,
            "filters": filters,
            "statuses": STATUSES,
            "channels": service.ORDER_CHANNELS,
            "more": more,
        },
    )


@page("merchant")
async def order_detail(view: View) -> web.StreamResponse:
    timeline = await service.order_timeline(view.ctx, view.merchant_id, view.request.match_info["id"])
    return view.render(
        "dashboard/order.html",
        {"nav": "orders", **timeline_json(view.ctx, timeline), "done": view.request.query.get("done")},
    )


@page("merchant")
async def close_order(view: View) -> web.StreamResponse:
    order_id = view.request.match_info["id"]
    await service.close_order(view.ctx, view.merchant_id, order_id)
    raise redirect(f"{PATH}/orders/{order_id}", done="closed")


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PATH}/orders", list_orders)
    app.router.add_get(f"{PATH}/orders/{{id}}", order_detail)
    app.router.add_post(f"{PATH}/orders/{{id}}/close", close_order)
